"""Part 2, "easy inputs settle faster": per test sample, forward iterations against the trained TWNN net's
confidence (max softmax) and its loss, as Spearman rank correlations."""

from __future__ import annotations

import jax
import numpy as np

from ..train import Trainer
from .measure import spearman


def part_settle(trainer: Trainer, states: dict, live) -> dict:
    """For each trained TWNN (`states`: seed -> state) on every test sample."""
    per_seed = []
    samples = None
    for seed, state in states.items():
        ev = jax.device_get(trainer.evaluate(state.params, live))
        iters = np.asarray(ev["fwd_iters"], float)
        conf = np.asarray(ev["confidence"], float)
        loss = np.asarray(ev["sample_loss"], float)
        correct = np.asarray(ev["sample_metric"]) > 0.5
        per_seed.append({
            "seed": seed, "iters_vs_confidence": spearman(iters, conf), "iters_vs_loss": spearman(iters, loss),
            "iters_mean_correct": float(iters[correct].mean()) if correct.any() else None,
            "iters_mean_wrong": float(iters[~correct].mean()) if (~correct).any() else None,
            "n_wrong": int((~correct).sum()), "iters_min": int(iters.min()), "iters_max": int(iters.max()),
            "iters_mean": float(iters.mean()),
        })
        if samples is None:
            samples = {"seed": seed, "iters": iters.astype(int), "confidence": conf, "loss": loss, "correct": correct}
    rho_c = [r["iters_vs_confidence"]["rho"] for r in per_seed if r["iters_vs_confidence"]["rho"] is not None]
    rho_l = [r["iters_vs_loss"]["rho"] for r in per_seed if r["iters_vs_loss"]["rho"] is not None]
    return {"per_seed": per_seed, "samples": samples,
            "rho_confidence_mean": float(np.mean(rho_c)) if rho_c else None,
            "rho_loss_mean": float(np.mean(rho_l)) if rho_l else None,
            "note": "iterations are the sum over the net's two fixed-point blocks (tol 1e-3, max-abs residual)"}
