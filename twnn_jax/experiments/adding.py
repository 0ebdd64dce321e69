"""Part 5b, a long-range check: the adding problem, the wormhole RNN against a GRU, same budget."""

from __future__ import annotations

import logging

import numpy as np

from ..runs import evaluate_run
from ..train import TrainConfig, live_controls, trainer_for
from .measure import every, fit, loop_compile_s, param_count
from .plan import ADDING_BASELINE, Plan

logger = logging.getLogger(__name__)


def part_adding(plan: Plan) -> dict:
    rows = []
    for length, kind in ((t, k) for t in plan.adding_lens for k in ("wormhole_rnn", "gru")):
        cfg = TrainConfig(task="adding", model=kind, hidden=plan.adding_hidden, seq_len=length,
                          lr=plan.adding_lr, batch_size=64)
        trainer, live = trainer_for(cfg), live_controls(cfg)
        state0 = trainer.init(0)
        compile_s = loop_compile_s(trainer, state0, live)
        mse = lambda s, trainer=trainer, live=live: evaluate_run(trainer, s, live)[0]["eval_loss"]  # noqa: E731
        at = tuple(range(plan.adding_eval_every, plan.adding_steps + 1, plan.adding_eval_every))
        state, log = fit(trainer, state0, live, plan.adding_steps, checkpoint=mse, at=at,
                         desc=f"adding T={length} {kind}")
        summary, _ = evaluate_run(trainer, state, live)
        y = np.asarray(trainer.task.eval_set[1], float)
        idx = every(len(log["loss"]), 200)
        rows.append({
            "model": kind, "T": length, "steps": plan.adding_steps, "hidden": plan.adding_hidden,
            "lr": plan.adding_lr, "params": param_count(state0.params), "compile_s": compile_s,
            **{key: log[key] for key in ("train_s", "ms_per_step", "ms_per_step_median", "cpu_ms_per_step")},
            "test_mse": summary["eval_loss"], "test_acc_004": 100 * summary["eval_metric"],
            "baseline_mse": ADDING_BASELINE, "eval_set_variance": float(np.var(y)),
            "fwd_iters_mean": summary["eval_fwd_iters_mean"],
            "test_mse_during_training": log["checkpoints"],
            "train_loss_curve": log["loss"][idx], "train_loss_steps": idx + 1,
        })
        logger.info("adding T=%d %s: test MSE %.4f (baseline %.4f)", length, kind, rows[-1]["test_mse"],
                    ADDING_BASELINE)
    return {"rows": rows, "T": list(plan.adding_lens)}
