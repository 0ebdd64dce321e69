"""Part 3, the paper's Fig. 6: the `small` net on sine waves, free-running generation against the target and
baselines (the constant 0.5; for one step ahead also persistence)."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np

from ..runs import evaluate_run
from ..train import TrainConfig, live_controls, solve_settings, trainer_for
from .measure import every, fit, loop_compile_s
from .plan import Plan

logger = logging.getLogger(__name__)


def one_step(trainer, params, live, windows: np.ndarray) -> np.ndarray:
    """The model's next-value prediction for each window (teacher forcing), through the public `model.apply`."""
    settings = solve_settings(trainer.config, live)
    apply = jax.jit(jax.vmap(lambda w, p: trainer.model.apply(p, w, live.gate, settings)[0][0], (0, None)))
    return np.asarray(apply(jnp.asarray(windows, jnp.float32), params), float)


def dominant_period(series: np.ndarray) -> float | None:
    """The period (in steps) of the strongest frequency of a series (None for a flat or non-finite one)."""
    x = np.asarray(series, float) - np.mean(series)
    if not np.all(np.isfinite(x)) or np.allclose(x, 0):
        return None
    power = np.abs(np.fft.rfft(x)) ** 2
    k = int(np.argmax(power[1:]) + 1)
    return float(len(x) / k)


def part_sine(plan: Plan) -> dict:
    cases = []
    for n_freqs, window in plan.sine_cases:
        cfg = TrainConfig(task="sine", model="small", hidden=plan.sine_hidden, n_freqs=n_freqs, window=window,
                          lr=1e-3)
        trainer, live = trainer_for(cfg), live_controls(cfg)
        state0 = trainer.init(0)
        compile_s = loop_compile_s(trainer, state0, live)
        stride = max(1, plan.sine_steps // plan.sine_checkpoints)
        free_rmse = lambda s, trainer=trainer, live=live: evaluate_run(trainer, s, live)[0]["sine_free_running_rmse"]  # noqa: E731
        at = tuple(range(stride, plan.sine_steps + 1, stride))
        state, log = fit(trainer, state0, live, plan.sine_steps, checkpoint=free_rmse, at=at,
                         desc=f"sine {n_freqs} freq, window {window}")
        _, gen = evaluate_run(trainer, state, live)
        series, target = np.asarray(gen["series"], float), np.asarray(gen["target"], float)
        x0 = np.asarray(trainer.task.eval_set[0], float)
        # one step ahead (teacher forcing): every window of the true series predicts its next value
        full = np.concatenate([x0, target], axis=1)
        n_pred = target.shape[1]
        windows = np.stack([full[:, p:p + window] for p in range(n_pred)], 1).reshape(-1, window)
        nxt = target.reshape(-1)
        pred = one_step(trainer, state.params, live, windows)
        err = series - target
        idx = every(len(log["loss"]), 200)
        cases.append({
            "n_freqs": n_freqs, "window": window, "hidden": plan.sine_hidden, "steps": plan.sine_steps, "lr": 1e-3,
            "compile_s": compile_s, "train_s": log["train_s"],
            "final_train_loss": float(np.mean(log["loss"][-50:])),
            "one_step_mse": float(np.mean((pred - nxt) ** 2)),
            "one_step_mse_persistence": float(np.mean((windows[:, -1] - nxt) ** 2)),
            "one_step_mse_constant": float(np.mean((0.5 - nxt) ** 2)),
            "free_rmse": float(np.sqrt(np.mean(err ** 2))),
            "free_rmse_first50": float(np.sqrt(np.mean(err[:, :50] ** 2))),
            "free_rmse_last50": float(np.sqrt(np.mean(err[:, -50:] ** 2))),
            "constant_rmse": float(np.sqrt(np.mean((target - 0.5) ** 2))),
            "free_steps": int(target.shape[1]), "n_sequences": int(target.shape[0]),
            "generated_std": float(np.std(series)), "target_std": float(np.std(target)),
            "generated_period": dominant_period(series[0]), "target_period": dominant_period(target[0]),
            "gen_fwd_iters_mean": float(np.mean(gen["fwd_iters"])),
            "free_rmse_during_training": log["checkpoints"],
            "series": series[:2], "target": target[:2],
            "loss_curve": log["loss"][idx], "loss_curve_steps": idx + 1,
        })
        logger.info("sine n_freqs=%d window=%d: free RMSE %.4f (constant %.4f)", n_freqs, window,
                    cases[-1]["free_rmse"], cases[-1]["constant_rmse"])
    return {"cases": cases}
