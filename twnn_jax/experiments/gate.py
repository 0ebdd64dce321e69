"""Part 4: the gate bias against forward/backward iterations and accuracy for a trained TWNN net, and nets
trained at other gate biases."""

from __future__ import annotations

import logging

import jax
import numpy as np

from ..runs import evaluate_run
from ..train import Trainer, live_controls
from .measure import fit
from .plan import Plan

logger = logging.getLogger(__name__)


def part_gate(plan: Plan, trainer: Trainer, state, digits: dict) -> dict:
    """`trainer`, `state`: the seed-0 TWNN net of part 1 (its config carries the gate it was trained at)."""
    cfg = trainer.config
    sweep = []
    for g in plan.gate_sweep:
        live = live_controls(cfg, gate=g)
        ev = jax.device_get(trainer.evaluate(state.params, live))
        _, m = trainer.step(state, live)  # one gradient on a fixed batch; the state is not kept
        m = jax.device_get(m)
        row = {
            "gate": g, "accuracy": 100 * float(ev["metric"]), "test_loss": float(ev["loss"]),
            "fwd_iters_mean": float(np.mean(ev["fwd_iters"])), "fwd_iters_max": int(np.max(ev["fwd_iters"])),
            "fwd_converged_frac": float(np.mean(ev["fwd_converged"])),
            "gate_value_mean": float(np.mean(ev["gates"])),
            "bwd_iters_mean": float(np.mean(m["bwd_iters"])), "bwd_iters_max": int(np.max(m["bwd_iters"])),
            "bwd_converged_frac": float(np.mean(m["bwd_converged"])),
            "batch_fwd_iters_mean": float(np.mean(m["fwd_iters"])),
        }
        if plan.contraction and trainer.contraction is not None:
            row["contraction_mean"] = float(np.mean(trainer.contraction(state.params, live)))
        sweep.append(row)
    trained = []
    base = next(r for r in digits["rows"] if r["model"] == "resnet_fp")["per_seed"][0]
    timing = ("train_s", "ms_per_step", "ms_per_step_median", "cpu_ms_per_step")
    trained.append({"gate": cfg.gate, "accuracy": base["accuracy"], "test_fwd_iters_mean": base["test_fwd_iters_mean"],
                    **{key: base[key] for key in timing}, "seed": 0, "reused": True})
    for g in plan.gate_train:
        live = live_controls(cfg, gate=g)
        s, log = fit(trainer, trainer.init(0), live, plan.digits_steps, desc=f"digits TWNN at gate {g:g}")
        summary, _ = evaluate_run(trainer, s, live)
        trained.append({"gate": g, "accuracy": 100 * summary["eval_metric"],
                        "test_fwd_iters_mean": summary["eval_fwd_iters_mean"],
                        **{key: log[key] for key in timing}, "seed": 0, "reused": False})
        logger.info("gate-trained net at %.1f: acc %.2f%%", g, trained[-1]["accuracy"])
    trained.sort(key=lambda r: r["gate"])
    return {"trained_gate": cfg.gate, "sweep": sweep, "trained_at": trained,
            "note": "sweep: the seed-0 TWNN net trained at the default gate bias, evaluated at each bias"}
