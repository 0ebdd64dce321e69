"""Part 5a, sweep order: the same trained TWNN parameters solved in layer order and all at once (Jacobi)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from ..train import Trainer, live_controls, trainer_for
from .plan import Plan


def part_sweep_order(plan: Plan, trainer: Trainer, state) -> dict:
    """`trainer`, `state`: the seed-0 TWNN net of part 1, trained with the layer-order sweep."""
    cfg = trainer.config
    jacobi = trainer_for(dataclasses.replace(cfg, sweep="jacobi"))
    rows = []
    for g in plan.sweep_gates:
        live = live_controls(cfg, gate=g)
        a = jax.device_get(trainer.evaluate(state.params, live))
        b = jax.device_get(jacobi.evaluate(state.params, live))
        rows.append({
            "gate": g, "layer_iters_mean": float(np.mean(a["fwd_iters"])),
            "jacobi_iters_mean": float(np.mean(b["fwd_iters"])),
            "layer_iters_max": int(np.max(a["fwd_iters"])), "jacobi_iters_max": int(np.max(b["fwd_iters"])),
            "layer_accuracy": 100 * float(a["metric"]), "jacobi_accuracy": 100 * float(b["metric"]),
            "layer_converged_frac": float(np.mean(a["fwd_converged"])),
            "jacobi_converged_frac": float(np.mean(b["fwd_converged"])),
            "max_logit_diff": float(np.max(np.abs(np.asarray(a["output"]) - np.asarray(b["output"])))),
        })
    return {"rows": rows, "note": "the same trained parameters (seed 0, trained with layer order) solved both ways"}
