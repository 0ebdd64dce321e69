"""Part 1, the paper's Table III on scikit-learn's 8x8 digits: plain residual nets of a few depths against the
wormhole residual net of the paper's Fig. 5 (`resnet_fp`), same budget, several seeds, with training time
(compile timed apart) and compiled memory."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from ..runs import evaluate_run
from ..train import TrainConfig, live_controls, trainer_for
from .measure import checkpoint_steps, fit, loop_compile_s, mean_std, param_count, step_cost
from .plan import ONE_TEST_SAMPLE, Plan

logger = logging.getLogger(__name__)


def label(kind: str, depth: int) -> str:
    if kind == "resnet_fp":
        return "TWNN residual (resnet_fp)"
    return f"plain residual, {depth} blocks"


def twnn_config(plan: Plan) -> TrainConfig:
    """The TWNN net of this part; parts 2, 4 and 5a study the nets trained with it."""
    return _config(plan, "resnet_fp", 4)


def _config(plan: Plan, kind: str, depth: int) -> TrainConfig:
    return TrainConfig(task="digits", model=kind, depth=depth, hidden=plan.digits_hidden, lr=1e-3, batch_size=64)


def part_digits(plan: Plan, seeds: int) -> tuple[dict, dict]:
    """Table III analog. Returns (results, the trained TWNN states by seed)."""
    rows = []
    twnn = {}
    for kind, depth in [("resnet_plain", d) for d in plan.plain_depths] + [("resnet_fp", 4)]:
        cfg = _config(plan, kind, depth)
        trainer, live = trainer_for(cfg), live_controls(cfg)
        state0 = trainer.init(0)
        step_compile_s, memory = step_cost(trainer, state0, live)
        compile_s = loop_compile_s(trainer, state0, live)
        accuracy = lambda s, trainer=trainer, live=live: evaluate_run(trainer, s, live)[0]["eval_metric"]  # noqa: E731
        per_seed = []
        for seed in range(seeds):
            state, log = fit(trainer, trainer.init(seed), live, plan.digits_steps, checkpoint=accuracy,
                             at=checkpoint_steps(plan.digits_steps), desc=f"digits {label(kind, depth)} seed {seed}")
            summary, _ = evaluate_run(trainer, state, live)
            n_test = int(trainer.task.eval_set[1].shape[0])
            per_seed.append({
                "seed": seed, "accuracy": 100 * summary["eval_metric"], "test_loss": summary["eval_loss"],
                "test_correct": int(round(summary["eval_metric"] * n_test)),
                "test_fwd_iters_mean": summary["eval_fwd_iters_mean"],
                "test_converged_frac": summary["eval_converged_frac"],
                **{key: log[key] for key in ("first_step_s", "train_s", "train_cpu_s", "ms_per_step",
                                             "ms_per_step_median", "cpu_ms_per_step")},
                "final_train_loss": float(np.mean(log["loss"][-50:])),
                "train_fwd_iters_last": float(np.mean(log["fwd_iters"][-50:])),
                "curve": [(k, 100 * a) for k, a in log["checkpoints"]],
            })
            if kind == "resnet_fp":
                twnn[seed] = state
            logger.info("digits %s seed %d: acc %.2f%%, %.1f s", label(kind, depth), seed,
                        per_seed[-1]["accuracy"], log["train_s"])
        acc_mean, acc_std = mean_std([r["accuracy"] for r in per_seed])
        train_mean, train_std = mean_std([r["train_s"] for r in per_seed])
        rows.append({
            "label": label(kind, depth), "model": kind, "depth": depth if kind == "resnet_plain" else 4,
            "wormholes": 2 if kind == "resnet_fp" else 0, "hidden": plan.digits_hidden,
            "params": param_count(state0.params), "compile_s": compile_s, "step_compile_s": step_compile_s,
            "memory": memory, "accuracy_mean": acc_mean, "accuracy_std": acc_std,
            "train_s_mean": train_mean, "train_s_std": train_std,
            "ms_per_step_mean": mean_std([r["ms_per_step"] for r in per_seed])[0],
            "ms_per_step_median": float(np.median([r["ms_per_step_median"] for r in per_seed])),
            "cpu_ms_per_step_mean": mean_std([r["cpu_ms_per_step"] for r in per_seed])[0],
            "train_cpu_s_mean": mean_std([r["train_cpu_s"] for r in per_seed])[0],
            "steps_to_95": steps_to(per_seed, 95.0),
            "first_step_s_mean": mean_std([r["first_step_s"] for r in per_seed])[0],
            "per_seed": per_seed,
        })
    result = {"steps": plan.digits_steps, "lr": 1e-3, "batch_size": 64, "seeds": seeds, "rows": rows,
              "one_test_sample_points": ONE_TEST_SAMPLE, "n_test": 360, "split_seed": 0}
    if plan.memory_unrolled:
        base = twnn_config(plan)
        cfg = dataclasses.replace(base, grad_mode="unrolled", unroll_capacity=base.max_iter)
        trainer = trainer_for(cfg)
        seconds, memory = step_cost(trainer, trainer.init(0), live_controls(cfg))
        result["twnn_unrolled_memory"] = {"grad_mode": "unrolled", "unroll_capacity": cfg.unroll_capacity,
                                          "compile_s": seconds, "memory": memory}
    result["verdict"] = verdict(rows)
    return result, twnn


def steps_to(per_seed: list[dict], level: float) -> dict:
    """First checkpoint step where test accuracy reached `level`, per seed (None: never)."""
    firsts = [next((k for k, a in r["curve"] if a >= level), None) for r in per_seed]
    reached = [k for k in firsts if k is not None]
    return {"level": level, "per_seed": firsts, "median": float(np.median(reached)) if reached else None,
            "all_reached": len(reached) == len(firsts)}


def verdict(rows: list[dict]) -> dict:
    """Plain-words comparison of the TWNN row with the plain rows; gaps under one test sample are no win."""
    twnn = next(r for r in rows if r["model"] == "resnet_fp")
    plain = [r for r in rows if r["model"] == "resnet_plain"]
    out = {"comparisons": []}
    for r in plain:
        gap = twnn["accuracy_mean"] - r["accuracy_mean"]
        stds = [s for s in (twnn["accuracy_std"], r["accuracy_std"]) if s is not None]
        spread = max(stds) if stds else None
        samples = gap / ONE_TEST_SAMPLE
        if abs(gap) < ONE_TEST_SAMPLE:
            word = "no difference (under one test sample)"
        elif spread is None:
            word = "one seed only: no seed spread to judge the gap against"
        elif abs(gap) <= 2 * spread:
            word = "within the seed spread (not a meaningful difference)"
        else:
            side = "higher" if gap > 0 else "lower"
            word = f"TWNN {side}, beyond twice the seed std (few seeds: suggestive, not a significance test)"
        out["comparisons"].append({"against": r["label"], "gap_points": gap, "gap_samples": samples,
                                   "seed_std_max": spread, "words": word})
    cheap = min(plain, key=lambda r: r["ms_per_step_median"])
    out["time_ratio_vs_fastest_plain"] = twnn["ms_per_step_median"] / max(1e-9, cheap["ms_per_step_median"])
    out["cpu_ratio_vs_fastest_plain"] = twnn["cpu_ms_per_step_mean"] / max(1e-9, cheap["cpu_ms_per_step_mean"])
    out["fastest_plain"] = cheap["label"]
    return out

