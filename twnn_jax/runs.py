"""Runs: what a finished (or interrupted) training run is summarised by.

`evaluate_run` is the one evaluate-and-summarise routine: the CLI, the experiments and the dashboard's
export all report a trained state through it.
"""

from __future__ import annotations

import jax
import numpy as np


def evaluate_run(trainer, state, live) -> tuple[dict, dict | None]:
    """Evaluation-set numbers as plain Python values, and the sine's free-running generation (or None)."""
    ev = jax.device_get(trainer.evaluate(state.params, live))
    result = {
        "eval_loss": float(ev["loss"]),
        "eval_metric": float(ev["metric"]),
        "eval_fwd_iters_mean": float(np.mean(ev["fwd_iters"])),
        "eval_converged_frac": float(np.mean(ev["fwd_converged"])),
    }
    generated = None
    if trainer.generate is not None:
        generated = jax.device_get(trainer.generate(state.params, live))
        result["sine_free_running_rmse"] = float(generated["rmse"])
    return result, generated
