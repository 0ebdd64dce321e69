"""Checks of the TWNN paper's claims on CPU-sized tasks: `run_paper` trains, measures and writes a report.

>>> results = run_paper("assets", quick=True, seeds=1)              # doctest: +SKIP

Writes `out_dir/experiment/RESULTS.md` (Markdown tables and plain-words verdicts), `results.json` (every raw
number) and one self-contained Plotly HTML file per figure (plus PNG when `kaleido` or `matplotlib` is
importable; neither is a dependency). The parts:

1. Table III analog on scikit-learn's 8x8 digits (fixed 360-sample test split): plain residual nets of a few
   depths against the wormhole residual net of the paper's Fig. 5 (`resnet_fp`), same budget, several seeds,
   with training time (compile timed apart) and compiled memory.
2. "Easy inputs settle faster": per test sample, forward iterations against confidence and loss (Spearman).
3. Fig. 6 analog: the `small` net on sine waves, free-running generation against the target and baselines.
4. Gate bias against forward/backward iterations and accuracy, and nets trained at other gate biases.
5. Sweep order (layer order against all-at-once) and a long-range check (the adding problem).

Timings are wall-clock seconds on whatever machine runs this; on a shared machine they are noisy, so the
report records the load average next to them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .train import LiveControls, TrainConfig, Trainer, TrainState, build_trainer, live_controls
from .wormhole import SolveSettings

logger = logging.getLogger(__name__)

ONE_TEST_SAMPLE = 100.0 / 360.0  # accuracy points of one digits test sample
ADDING_BASELINE = 1.0 / 6.0  # MSE of always answering 1.0 (the sum of two U(0, 1) has variance 1/6)


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much of each part to run (`run_paper` picks the full or the quick plan)."""

    digits_hidden: int
    digits_steps: int
    plain_depths: tuple[int, ...]
    gate_sweep: tuple[float, ...]
    gate_train: tuple[float, ...]  # extra nets trained at these gate biases (seed 0); the default gate is reused
    sweep_gates: tuple[float, ...]
    contraction: bool
    memory_unrolled: bool
    sine_hidden: int
    sine_steps: int
    sine_cases: tuple[tuple[int, int], ...]  # (n_freqs, window)
    sine_checkpoints: int
    adding_lens: tuple[int, ...]
    adding_steps: int
    adding_hidden: int
    adding_lr: float
    adding_eval_every: int
    compiler_options: tuple[tuple[str, object], ...] = ()  # XLA options for every compile (quick: cheap compiles)


FULL = Plan(
    digits_hidden=64, digits_steps=1500, plain_depths=(2, 4, 8),
    gate_sweep=tuple(float(g) for g in range(-8, 7)), gate_train=(-6.0, 2.0), sweep_gates=(-6.0, -2.0, 0.0, 2.0),
    contraction=True, memory_unrolled=True,
    sine_hidden=32, sine_steps=6000, sine_cases=((1, 16), (2, 16), (2, 32)), sine_checkpoints=12,
    adding_lens=(50, 200), adding_steps=800, adding_hidden=32, adding_lr=1e-3, adding_eval_every=100,
)
QUICK = Plan(
    digits_hidden=16, digits_steps=12, plain_depths=(2, 8),
    gate_sweep=(-4.0, 0.0, 4.0), gate_train=(), sweep_gates=(-2.0,),
    contraction=False, memory_unrolled=False,
    sine_hidden=16, sine_steps=20, sine_cases=((1, 16), (2, 16)), sine_checkpoints=2,
    adding_lens=(20,), adding_steps=4, adding_hidden=16, adding_lr=1e-3, adding_eval_every=2,
    compiler_options=(("xla_backend_optimization_level", 0),),  # halves compile time; quick timings mean nothing
)


# --------------------------------------------------------------------------------------------- numbers


def _rank(a) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    a = np.asarray(a, dtype=float)
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    end = np.cumsum(counts)
    return ((end - counts + 1 + end) / 2.0)[inverse]


def spearman(a, b) -> dict:
    """Spearman rank correlation (average ranks for ties) and a two-sided p-value (normal approximation)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = len(a)
    ra, rb = _rank(a), _rank(b)
    if n < 3 or ra.std() == 0 or rb.std() == 0:
        return {"rho": None, "p": None, "n": n}
    rho = float(np.corrcoef(ra, rb)[0, 1])
    t = rho * math.sqrt((n - 2) / max(1e-12, 1 - rho * rho))
    return {"rho": rho, "p": float(math.erfc(abs(t) / math.sqrt(2))), "n": n}


def _mean_std(values) -> tuple[float, float | None]:
    v = np.asarray(values, float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


def _param_count(params) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(params)))


def _clean(obj):
    """JSON-ready copy: numpy to Python, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.ndarray, jax.Array)):
        return _clean(np.asarray(obj).tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - platforms without getloadavg
        return None


# --------------------------------------------------------------------------------------------- training


class Built(NamedTuple):
    """A trainer with its functions compiled once (ahead of time), the step's compile time and memory."""

    cfg: TrainConfig
    trainer: Trainer
    live: LiveControls
    state0: TrainState  # trainer.init(0)
    step: Callable
    evaluate: Callable
    generate: Callable | None
    contraction: Callable | None
    compile_s: float  # the training step's lower + compile, seconds
    memory: dict | None  # the training step's compiled memory, bytes


def _memory(compiled) -> dict | None:
    mem = compiled.memory_analysis()
    if mem is None:
        return None
    names = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes")
    return {name: int(getattr(mem, name)) for name in names if hasattr(mem, name)}


def _build(cfg: TrainConfig, plan: Plan, *, contraction: bool = False, step_only: bool = False) -> Built:
    """Build the trainer and compile its step (timed), evaluate, generate and contraction."""
    trainer = build_trainer(cfg)
    live = live_controls(cfg)
    state0 = trainer.init(0)
    options = dict(plan.compiler_options) or None
    t0 = time.perf_counter()
    step = trainer.step.lower(state0, live).compile(options)
    compile_s = time.perf_counter() - t0
    compiled = lambda fn: fn.lower(state0.params, live).compile(options)  # noqa: E731
    evaluate = generate = contraction_fn = None
    if not step_only:
        evaluate = compiled(trainer.evaluate)
        generate = compiled(trainer.generate) if trainer.generate is not None else None
        if contraction and trainer.contraction is not None:
            contraction_fn = compiled(trainer.contraction)
    return Built(cfg, trainer, live, state0, step, evaluate, generate, contraction_fn, compile_s, _memory(step))


def _fit(step, state, live, steps: int, *, checkpoint=None, at=(), chunks: int = 10) -> tuple:
    """Run `steps` steps of a compiled step. The first step and `checkpoint(state)` calls are timed apart.

    `checkpoint(state)` runs after step 1, after every step number in `at` and after the last step. The
    steps after the first are timed in chunks (at the checkpoints and at least `chunks` times), each chunk
    in wall and process-CPU seconds: on a shared machine the median chunk rate and the CPU time are
    steadier than the total wall time. Returns (state, log) with first_step_s, train_s, train_cpu_s,
    ms_per_step, ms_per_step_median, per-step loss and mean forward iterations, and the checkpoint
    results as (step, value) pairs.
    """
    t0 = time.perf_counter()
    state, metrics = step(state, live)
    jax.block_until_ready(state)
    first = time.perf_counter() - t0
    losses, iters = [metrics["loss"]], [metrics["fwd_iters"]]
    points = [(1, checkpoint(state))] if checkpoint is not None else []
    stops = set(int(k) for k in at) if checkpoint is not None else set()
    stops |= {int(k) for k in np.linspace(1, steps, chunks + 1).round()[1:]} | {steps}
    wall = cpu = 0.0
    rates = []
    t0, c0, k0 = time.perf_counter(), time.process_time(), 1
    for k in range(2, steps + 1):
        state, metrics = step(state, live)
        losses.append(metrics["loss"])
        iters.append(metrics["fwd_iters"])
        if k in stops:
            jax.block_until_ready(state)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            wall, cpu = wall + dt, cpu + dc
            rates.append(1000 * dt / (k - k0))
            if checkpoint is not None and (k in at or k == steps):
                points.append((k, checkpoint(state)))
            t0, c0, k0 = time.perf_counter(), time.process_time(), k
    losses = np.asarray(jax.device_get(losses), float)
    iters = np.asarray([np.mean(i) for i in jax.device_get(iters)], float)
    n = max(1, steps - 1)
    return state, {"first_step_s": first, "train_s": wall, "train_cpu_s": cpu, "steps": steps,
                   "ms_per_step": 1000 * wall / n, "ms_per_step_median": float(np.median(rates)) if rates else None,
                   "cpu_ms_per_step": 1000 * cpu / n, "loss": losses, "fwd_iters": iters, "checkpoints": points}


def _checkpoint_steps(steps: int) -> tuple[int, ...]:
    """Denser early (where learning curves move), then evenly: 5, 10, 25, 50, 100, ... up to `steps`."""
    early = [5, 10, 25, 50, 75, 100, 150, 200, 300, 400]
    late = np.linspace(0, steps, 11).round().astype(int)[1:]
    return tuple(sorted({k for k in early + list(late) if 1 < k <= steps}))


def _every(n: int, count: int) -> np.ndarray:
    """About `count` indices spread over range(n), always including the last."""
    idx = np.unique(np.linspace(0, n - 1, min(n, count)).round().astype(int))
    return idx


# --------------------------------------------------------------------------------------------- part 1


def _digits_label(kind: str, depth: int) -> str:
    if kind == "resnet_fp":
        return "TWNN residual (resnet_fp)"
    return f"plain residual, {depth} blocks"


def part_digits(plan: Plan, seeds: int) -> tuple[dict, dict]:
    """Table III analog. Returns (results, trained TWNN states by seed with their trainer and compiled step)."""
    rows = []
    twnn = {}
    models = [("resnet_plain", d) for d in plan.plain_depths] + [("resnet_fp", 4)]
    for kind, depth in models:
        cfg = TrainConfig(task="digits", model=kind, depth=depth, hidden=plan.digits_hidden, lr=1e-3, batch_size=64)
        b = _build(cfg, plan, contraction=kind == "resnet_fp" and plan.contraction)
        acc_fn = lambda s, b=b: float(b.evaluate(s.params, b.live)["metric"])  # noqa: E731
        per_seed = []
        for seed in range(seeds):
            state, log = _fit(b.step, b.trainer.init(seed), b.live, plan.digits_steps, checkpoint=acc_fn,
                              at=_checkpoint_steps(plan.digits_steps))
            ev = jax.device_get(b.evaluate(state.params, b.live))
            per_seed.append({
                "seed": seed, "accuracy": 100 * float(ev["metric"]), "test_loss": float(ev["loss"]),
                "test_correct": int(np.sum(ev["sample_metric"])),
                "test_fwd_iters_mean": float(np.mean(ev["fwd_iters"])),
                "test_converged_frac": float(np.mean(ev["fwd_converged"])),
                **{key: log[key] for key in ("first_step_s", "train_s", "train_cpu_s", "ms_per_step",
                                             "ms_per_step_median", "cpu_ms_per_step")},
                "final_train_loss": float(np.mean(log["loss"][-50:])),
                "train_fwd_iters_last": float(np.mean(log["fwd_iters"][-50:])),
                "curve": [(k, 100 * a) for k, a in log["checkpoints"]],
            })
            if kind == "resnet_fp":
                twnn[seed] = state
            logger.info("digits %s seed %d: acc %.2f%%, %.1f s", _digits_label(kind, depth), seed,
                        per_seed[-1]["accuracy"], log["train_s"])
        acc_mean, acc_std = _mean_std([r["accuracy"] for r in per_seed])
        train_mean, train_std = _mean_std([r["train_s"] for r in per_seed])
        rows.append({
            "label": _digits_label(kind, depth), "model": kind, "depth": depth if kind == "resnet_plain" else 4,
            "wormholes": 2 if kind == "resnet_fp" else 0, "hidden": plan.digits_hidden,
            "params": _param_count(b.state0.params), "compile_s": b.compile_s, "memory": b.memory,
            "accuracy_mean": acc_mean, "accuracy_std": acc_std,
            "train_s_mean": train_mean, "train_s_std": train_std,
            "ms_per_step_mean": _mean_std([r["ms_per_step"] for r in per_seed])[0],
            "ms_per_step_median": float(np.median([r["ms_per_step_median"] for r in per_seed])),
            "cpu_ms_per_step_mean": _mean_std([r["cpu_ms_per_step"] for r in per_seed])[0],
            "train_cpu_s_mean": _mean_std([r["train_cpu_s"] for r in per_seed])[0],
            "steps_to_95": _steps_to(per_seed, 95.0),
            "first_step_s_mean": _mean_std([r["first_step_s"] for r in per_seed])[0],
            "per_seed": per_seed,
        })
        if kind == "resnet_fp":
            twnn_ctx = {"built": b, "states": twnn}
    result = {"steps": plan.digits_steps, "lr": 1e-3, "batch_size": 64, "seeds": seeds, "rows": rows,
              "one_test_sample_points": ONE_TEST_SAMPLE, "n_test": 360, "split_seed": 0}
    if plan.memory_unrolled:
        base = twnn_ctx["built"].cfg
        u = _build(dataclasses.replace(base, grad_mode="unrolled", unroll_capacity=base.max_iter), plan, step_only=True)
        result["twnn_unrolled_memory"] = {"grad_mode": "unrolled", "unroll_capacity": u.cfg.unroll_capacity,
                                          "compile_s": u.compile_s, "memory": u.memory}
    result["verdict"] = _digits_verdict(rows)
    return result, twnn_ctx


def _steps_to(per_seed: list[dict], level: float) -> dict:
    """First checkpoint step where test accuracy reached `level`, per seed (None: never)."""
    firsts = [next((k for k, a in r["curve"] if a >= level), None) for r in per_seed]
    reached = [k for k in firsts if k is not None]
    return {"level": level, "per_seed": firsts, "median": float(np.median(reached)) if reached else None,
            "all_reached": len(reached) == len(firsts)}


def _digits_verdict(rows: list[dict]) -> dict:
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


# --------------------------------------------------------------------------------------------- part 2


def part_settle(ctx: dict) -> dict:
    """Per test sample: forward iterations against confidence (max softmax) and loss, for each trained TWNN."""
    b = ctx["built"]
    per_seed = []
    samples = None
    for seed, state in ctx["states"].items():
        ev = jax.device_get(b.evaluate(state.params, b.live))
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


# --------------------------------------------------------------------------------------------- part 3


def _settings(cfg: TrainConfig, live) -> SolveSettings:
    return SolveSettings(tol=live.tol, max_iter=live.max_iter, damping=live.damping, bwd_tol=live.bwd_tol,
                         solver=cfg.solver, grad_mode=cfg.grad_mode, sweep=cfg.sweep,
                         spectral_bound=cfg.spectral_bound)


def _one_step(b: Built, params, windows: np.ndarray, plan: Plan) -> np.ndarray:
    """The model's next-value prediction for each window (teacher forcing), through the public `model.apply`."""
    settings = _settings(b.cfg, b.live)
    apply = jax.jit(jax.vmap(lambda w, p: b.trainer.model.apply(p, w, b.live.gate, settings)[0][0], (0, None)))
    windows = jnp.asarray(windows, jnp.float32)
    compiled = apply.lower(windows, params).compile(dict(plan.compiler_options) or None)
    return np.asarray(compiled(windows, params), float)


def _dominant_period(series: np.ndarray) -> float | None:
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
        b = _build(cfg, plan)
        every = max(1, plan.sine_steps // plan.sine_checkpoints)
        free_rmse = lambda s, b=b: float(b.generate(s.params, b.live)["rmse"])  # noqa: E731
        at = tuple(range(every, plan.sine_steps + 1, every))
        state, log = _fit(b.step, b.state0, b.live, plan.sine_steps, checkpoint=free_rmse, at=at)
        gen = jax.device_get(b.generate(state.params, b.live))
        series, target = np.asarray(gen["series"], float), np.asarray(gen["target"], float)
        x0 = np.asarray(b.trainer.task.eval_set[0], float)
        # one step ahead (teacher forcing): every window of the true series predicts its next value
        full = np.concatenate([x0, target], axis=1)
        n_pred = target.shape[1]
        windows = np.stack([full[:, p:p + window] for p in range(n_pred)], 1).reshape(-1, window)
        nxt = target.reshape(-1)
        pred = _one_step(b, state.params, windows, plan)
        err = series - target
        cases.append({
            "n_freqs": n_freqs, "window": window, "hidden": plan.sine_hidden, "steps": plan.sine_steps, "lr": 1e-3,
            "compile_s": b.compile_s, "train_s": log["train_s"],
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
            "generated_period": _dominant_period(series[0]), "target_period": _dominant_period(target[0]),
            "gen_fwd_iters_mean": float(np.mean(gen["fwd_iters"])),
            "free_rmse_during_training": log["checkpoints"],
            "series": series[:2], "target": target[:2],
            "loss_curve": log["loss"][_every(len(log["loss"]), 200)],
            "loss_curve_steps": _every(len(log["loss"]), 200) + 1,
        })
        logger.info("sine n_freqs=%d window=%d: free RMSE %.4f (constant %.4f)", n_freqs, window,
                    cases[-1]["free_rmse"], cases[-1]["constant_rmse"])
    return {"cases": cases}


# --------------------------------------------------------------------------------------------- part 4


def part_gate(plan: Plan, ctx: dict, digits: dict) -> dict:
    b = ctx["built"]
    cfg = b.cfg
    state = ctx["states"][0]
    sweep = []
    for g in plan.gate_sweep:
        live = live_controls(cfg, gate=g)
        ev = jax.device_get(b.evaluate(state.params, live))
        _, m = b.step(state, live)  # one gradient on a fixed batch; the state is not kept
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
        if b.contraction is not None:
            row["contraction_mean"] = float(np.mean(b.contraction(state.params, live)))
        sweep.append(row)
    trained = []
    base = next(r for r in digits["rows"] if r["model"] == "resnet_fp")["per_seed"][0]
    timing = ("train_s", "ms_per_step", "ms_per_step_median", "cpu_ms_per_step")
    trained.append({"gate": cfg.gate, "accuracy": base["accuracy"], "test_fwd_iters_mean": base["test_fwd_iters_mean"],
                    **{key: base[key] for key in timing}, "seed": 0, "reused": True})
    for g in plan.gate_train:
        live = live_controls(cfg, gate=g)
        s, log = _fit(b.step, b.trainer.init(0), live, plan.digits_steps)
        ev = jax.device_get(b.evaluate(s.params, live))
        trained.append({"gate": g, "accuracy": 100 * float(ev["metric"]),
                        "test_fwd_iters_mean": float(np.mean(ev["fwd_iters"])),
                        **{key: log[key] for key in timing}, "seed": 0, "reused": False})
        logger.info("gate-trained net at %.1f: acc %.2f%%", g, trained[-1]["accuracy"])
    trained.sort(key=lambda r: r["gate"])
    return {"trained_gate": cfg.gate, "sweep": sweep, "trained_at": trained,
            "note": "sweep: the seed-0 TWNN net trained at the default gate bias, evaluated at each bias"}


# --------------------------------------------------------------------------------------------- part 5


def part_sweep_order(plan: Plan, ctx: dict) -> dict:
    built = ctx["built"]
    cfg = built.cfg
    state = ctx["states"][0]
    jacobi = build_trainer(dataclasses.replace(cfg, sweep="jacobi")).evaluate.lower(state.params, built.live).compile(
        dict(plan.compiler_options) or None)
    rows = []
    for g in plan.sweep_gates:
        live = live_controls(cfg, gate=g)
        a = jax.device_get(built.evaluate(state.params, live))
        b = jax.device_get(jacobi(state.params, live))
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


def part_adding(plan: Plan) -> dict:
    rows = []
    for length, kind in ((t, k) for t in plan.adding_lens for k in ("wormhole_rnn", "gru")):
        cfg = TrainConfig(task="adding", model=kind, hidden=plan.adding_hidden, seq_len=length,
                          lr=plan.adding_lr, batch_size=64)
        b = _build(cfg, plan)
        mse = lambda s, b=b: float(b.evaluate(s.params, b.live)["loss"])  # noqa: E731
        at = tuple(range(plan.adding_eval_every, plan.adding_steps + 1, plan.adding_eval_every))
        state, log = _fit(b.step, b.state0, b.live, plan.adding_steps, checkpoint=mse, at=at)
        ev = jax.device_get(b.evaluate(state.params, b.live))
        y = np.asarray(b.trainer.task.eval_set[1], float)
        rows.append({
            "model": kind, "T": length, "steps": plan.adding_steps, "hidden": plan.adding_hidden,
            "lr": plan.adding_lr, "params": _param_count(b.state0.params), "compile_s": b.compile_s,
            **{key: log[key] for key in ("train_s", "ms_per_step", "ms_per_step_median", "cpu_ms_per_step")},
            "test_mse": float(ev["loss"]), "test_acc_004": 100 * float(ev["metric"]),
            "baseline_mse": ADDING_BASELINE, "eval_set_variance": float(np.var(y)),
            "fwd_iters_mean": float(np.mean(ev["fwd_iters"])),
            "test_mse_during_training": log["checkpoints"],
            "train_loss_curve": log["loss"][_every(len(log["loss"]), 200)],
            "train_loss_steps": _every(len(log["loss"]), 200) + 1,
        })
        logger.info("adding T=%d %s: test MSE %.4f (baseline %.4f)", length, kind, rows[-1]["test_mse"],
                    ADDING_BASELINE)
    return {"rows": rows, "T": list(plan.adding_lens)}


# --------------------------------------------------------------------------------------------- figures


def build_figures(results: dict) -> dict:
    """Plotly figures from a results dict (pure: no training, no files)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figs = {}
    palette = ["#636efa", "#00cc96", "#ab63fa", "#ef553b", "#ffa15a", "#19d3f3"]

    d = results["digits"]
    fig = make_subplots(rows=1, cols=2,
                        subplot_titles=("Test accuracy (each dot a seed)", "Test accuracy while training"))
    for i, r in enumerate(d["rows"]):
        color = palette[i % len(palette)]
        fig.add_trace(go.Bar(x=[r["label"]], y=[r["accuracy_mean"]], marker_color=color, name=r["label"],
                             error_y={"type": "data", "array": [r["accuracy_std"] or 0.0]}, showlegend=False), 1, 1)
        fig.add_trace(go.Scatter(x=[r["label"]] * len(r["per_seed"]), y=[s["accuracy"] for s in r["per_seed"]],
                                 mode="markers", marker={"color": "black", "size": 7}, showlegend=False), 1, 1)
        curves = np.array([[a for _, a in s["curve"]] for s in r["per_seed"]])
        steps = [k for k, _ in r["per_seed"][0]["curve"]]
        fig.add_trace(go.Scatter(x=steps, y=curves.mean(0), mode="lines+markers", name=r["label"],
                                 line={"color": color}), 1, 2)
    lo = min(min(s["accuracy"] for s in r["per_seed"]) for r in d["rows"])
    fig.update_yaxes(title_text="accuracy (%)", range=[max(0, lo - 3), 100], row=1, col=1)
    fig.update_yaxes(title_text="accuracy (%), mean over seeds", row=1, col=2)
    fig.update_xaxes(title_text="training step", type="log", row=1, col=2)
    fig.update_layout(title=f"8x8 digits, 360 test samples (1 sample = {ONE_TEST_SAMPLE:.2f} points)",
                      height=480, width=1200)
    figs["digits_accuracy"] = fig

    s = results["settle"]["samples"]
    iters = np.asarray(s["iters"], float)
    jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(iters))
    correct = np.asarray(s["correct"], bool)
    rs = results["settle"]["per_seed"][0]

    def rho(x):
        return "n/a" if x["rho"] is None else f"{x['rho']:+.2f}"

    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"confidence (Spearman {rho(rs['iters_vs_confidence'])})",
        f"per-sample loss (Spearman {rho(rs['iters_vs_loss'])})"))
    for ok, name, color in ((True, "correct", "#636efa"), (False, "wrong", "#ef553b")):
        sel = correct == ok
        for col, key in ((1, "confidence"), (2, "loss")):
            fig.add_trace(go.Scatter(x=iters[sel] + jitter[sel], y=np.asarray(s[key], float)[sel], mode="markers",
                                     marker={"color": color, "size": 5, "opacity": 0.6}, name=name,
                                     showlegend=col == 1), 1, col)
    fig.update_xaxes(title_text="forward iterations (both blocks, jittered)")
    fig.update_yaxes(title_text="max softmax", row=1, col=1)
    fig.update_yaxes(title_text="cross-entropy", type="log", row=1, col=2)
    fig.update_layout(title=f"Do easy inputs settle faster? (trained TWNN, test set, seed {s['seed']})",
                      height=480, width=1200)
    figs["settle"] = fig

    cases = results["sine"]["cases"]
    fig = make_subplots(rows=len(cases) + 1, cols=1, subplot_titles=[
        f"{c['n_freqs']} frequenc{'y' if c['n_freqs'] == 1 else 'ies'}, window {c['window']}: free-running RMSE "
        f"{c['free_rmse']:.3f} (constant 0.5: {c['constant_rmse']:.3f})" for c in cases
    ] + ["free-running RMSE while training"])
    for i, c in enumerate(cases):
        t = np.arange(len(c["target"][0]))
        fig.add_trace(go.Scatter(x=t, y=c["series"][0], mode="lines", line={"color": "#ef553b", "width": 3},
                                 name="generated (free-running)", showlegend=i == 0), i + 1, 1)
        fig.add_trace(go.Scatter(x=t, y=c["target"][0], mode="lines", line={"color": "black", "dash": "dot"},
                                 name="target", showlegend=i == 0), i + 1, 1)
        pts = c["free_rmse_during_training"]
        fig.add_trace(go.Scatter(x=[k for k, _ in pts], y=[v for _, v in pts], mode="lines+markers",
                                 name=f"{c['n_freqs']} freq, window {c['window']}",
                                 line={"color": palette[i % len(palette)]}), len(cases) + 1, 1)
    fig.update_xaxes(title_text="steps after the true window", row=len(cases), col=1)
    fig.update_xaxes(title_text="training step", row=len(cases) + 1, col=1)
    fig.update_yaxes(type="log", row=len(cases) + 1, col=1)
    fig.update_layout(title="Sine generation, model's outputs fed back (paper Fig. 6 analog)",
                      height=300 * (len(cases) + 1), width=1100)
    figs["sine_generation"] = fig

    g = results["gate"]["sweep"]
    gates = [r["gate"] for r in g]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("iterations vs gate bias", "test accuracy vs gate bias"))
    fig.add_trace(go.Scatter(x=gates, y=[r["fwd_iters_mean"] for r in g], mode="lines+markers",
                             name="forward (test mean)"), 1, 1)
    fig.add_trace(go.Scatter(x=gates, y=[r["bwd_iters_mean"] for r in g], mode="lines+markers",
                             name="backward (one batch, mean)"), 1, 1)
    fig.add_trace(go.Scatter(x=gates, y=[r["fwd_iters_max"] for r in g], mode="lines", line={"dash": "dot"},
                             name="forward (test max)"), 1, 1)
    fig.add_trace(go.Scatter(x=gates, y=[r["accuracy"] for r in g], mode="lines+markers",
                             name=f"trained at {results['gate']['trained_gate']:g}, evaluated at x"), 1, 2)
    tr = results["gate"]["trained_at"]
    fig.add_trace(go.Scatter(x=[r["gate"] for r in tr], y=[r["accuracy"] for r in tr], mode="markers",
                             marker={"size": 11, "symbol": "diamond"}, name="trained and evaluated at x"), 1, 2)
    fig.update_xaxes(title_text="gate bias")
    fig.update_yaxes(title_text="iterations (both blocks)", type="log", row=1, col=1)
    fig.update_yaxes(title_text="accuracy (%)", row=1, col=2)
    fig.update_layout(title="Gate bias: how long the net thinks, and what it costs", height=480, width=1200)
    figs["gate_sweep"] = fig

    so, ad = results["sweep_order"]["rows"], results["adding"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Sweep order: forward iterations (test mean)",
                                                        "Adding problem: MSE (log)"))
    labels = [f"gate {r['gate']:g}" for r in so]
    fig.add_trace(go.Bar(x=labels, y=[r["layer_iters_mean"] for r in so], name="layer order"), 1, 1)
    fig.add_trace(go.Bar(x=labels, y=[r["jacobi_iters_mean"] for r in so], name="all at once (jacobi)"), 1, 1)
    dashes = ["solid", "dot", "dash", "dashdot"]
    for r in ad["rows"]:
        color = palette[2] if r["model"] == "wormhole_rnn" else palette[4]
        dash = dashes[ad["T"].index(r["T"]) % len(dashes)]
        loss = np.asarray(r["train_loss_curve"], float)
        smooth = np.convolve(loss, np.ones(9) / 9, mode="valid") if len(loss) >= 9 else loss
        name = f"{r['model']} T={r['T']}"
        fig.add_trace(go.Scatter(x=np.asarray(r["train_loss_steps"])[len(loss) - len(smooth):], y=smooth,
                                 mode="lines", name=f"{name} train (smoothed)",
                                 line={"color": color, "dash": dash}), 1, 2)
        pts = r["test_mse_during_training"]
        fig.add_trace(go.Scatter(x=[k for k, _ in pts], y=[v for _, v in pts], mode="markers",
                                 marker={"color": color, "size": 9, "symbol": "x"}, name=f"{name} test"), 1, 2)
    steps = max(r["steps"] for r in ad["rows"])
    fig.add_trace(go.Scatter(x=[1, steps], y=[ADDING_BASELINE] * 2, mode="lines",
                             line={"dash": "dash", "color": "gray"}, name="baseline 1/6"), 1, 2)
    fig.update_yaxes(title_text="iterations", row=1, col=1)
    fig.update_yaxes(title_text="MSE", type="log", row=1, col=2)
    fig.update_xaxes(title_text="training step", row=1, col=2)
    fig.update_layout(barmode="group", height=480, width=1200, title="Sweep order and a long-range check")
    figs["order_and_adding"] = fig
    return figs


def _png_with_matplotlib(fig, path: Path) -> bool:
    """A plain rendering of a Plotly figure's traces (one panel per subplot) when matplotlib is importable."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = []
    for trace in fig.data:
        key = (getattr(trace, "xaxis", None) or "x", getattr(trace, "yaxis", None) or "y")
        if key not in panels:
            panels.append(key)
    fig_m, axes = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)), squeeze=False)
    for trace in fig.data:
        key = (getattr(trace, "xaxis", None) or "x", getattr(trace, "yaxis", None) or "y")
        ax = axes[panels.index(key)][0]
        x = list(trace.x) if trace.x is not None else []
        y = list(trace.y) if trace.y is not None else []
        if trace.type == "bar":
            ax.bar([str(v) for v in x], y, label=trace.name, alpha=0.6)
        else:
            mode = trace.mode or "lines"
            ax.plot(x, y, "-" if "lines" in mode else "", marker="o" if "markers" in mode else None,
                    markersize=3, label=trace.name)
    for (ax,) in axes:
        ax.legend(fontsize=7)
    title = fig.layout.title.text if fig.layout.title else None
    if title:
        fig_m.suptitle(title)
    fig_m.tight_layout()
    fig_m.savefig(path, dpi=100)
    plt.close(fig_m)
    return True


def write_figures(results: dict, folder: Path) -> dict:
    """HTML for every figure (sharing one plotly.min.js in the folder); PNG via kaleido or matplotlib if importable."""
    written = {}
    try:
        import kaleido  # noqa: F401

        has_kaleido = True
    except ImportError:
        has_kaleido = False
    for name, fig in build_figures(results).items():
        html = folder / f"{name}.html"
        fig.write_html(html, include_plotlyjs="directory", full_html=True)  # one shared plotly.min.js
        files = {"html": html.name}
        png = folder / f"{name}.png"
        done = False
        if has_kaleido:
            try:
                fig.write_image(png)
                done = True
            except Exception as err:  # kaleido needs a browser in recent versions; fall back
                logger.warning("kaleido could not write %s: %s", png, err)
        if not done:
            done = _png_with_matplotlib(fig, png)
        if done:
            files["png"] = png.name
        written[name] = files
    return written


# --------------------------------------------------------------------------------------------- report


def _f(x, fmt="{:.2f}", none="n/a"):
    return none if x is None else fmt.format(x)


def _pm(mean, std, fmt="{:.2f}"):
    return fmt.format(mean) + ("" if std is None else " ± " + fmt.format(std))


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _speed_words(rows: list[dict]) -> str:
    medians = {r["label"]: r["steps_to_95"]["median"] for r in rows}
    if any(m is None for m in medians.values()):
        return "Not every net reached 95% in this budget."
    lo, hi = min(medians.values()), max(medians.values())
    text = ("Per step the nets are within a factor of two at this checkpoint resolution" if hi <= 2 * lo else
            f"Per step the fastest learner is {min(medians, key=medians.get)}")
    seconds = {r["label"]: r["steps_to_95"]["median"] * r["ms_per_step_median"] / 1000 for r in rows}
    twnn = next(r["label"] for r in rows if r["model"] == "resnet_fp")
    plain = min((v, k) for k, v in seconds.items() if k != twnn)
    return (text + f"; in wall time (steps x median ms/step) the TWNN got there in about {seconds[twnn]:.2f} s, "
            f"the quickest plain net ({plain[1]}) in {plain[0]:.2f} s.")


def _gate_words(g: dict, d: dict) -> str:
    sweep, trained = g["sweep"], g["trained_at"]
    if not sweep:
        return ""
    first, last = sweep[0], sweep[-1]
    best = max(sweep, key=lambda r: r["accuracy"])
    text = (f"**In words.** Opening the gates (bias {first['gate']:g} to {last['gate']:g}; mean gate "
            f"{first['gate_value_mean']:.2f} to {last['gate_value_mean']:.2f}) raised the forward iterations from "
            f"{first['fwd_iters_mean']:.1f} to {last['fwd_iters_mean']:.1f} and the backward ones from "
            f"{first['bwd_iters_mean']:.1f} to {last['bwd_iters_mean']:.1f} (means; both blocks); "
            + ("every forward and backward solve converged. "
               if all(r["fwd_converged_frac"] == 1 and r["bwd_converged_frac"] == 1 for r in sweep)
               else "some solves did not converge (see the converged columns). ")
            + f"The net trained at {g['trained_gate']:g} is most accurate at bias {best['gate']:g} "
            f"({best['accuracy']:.2f}%)"
            + (": changing the gate after training moves the net away from what it learned, in both directions."
               if best["gate"] == g["trained_gate"] else ", not at the bias it was trained at."))
    if len(trained) > 1:
        twnn = next(r for r in d["rows"] if r["model"] == "resnet_fp")
        spread = twnn["accuracy_std"]
        parts = ", ".join(f"{r['accuracy']:.2f}% at {r['gate']:g} ({r['test_fwd_iters_mean']:.1f} iterations)"
                          for r in trained)
        text += (f" Trained and evaluated at one bias: {parts}; one seed each, to be read against the seed std of "
                 f"Table 1 ({_f(spread)} points) and one test sample = {ONE_TEST_SAMPLE:.2f} points.")
        most = max(trained, key=lambda r: r["test_fwd_iters_mean"])
        top = max(trained, key=lambda r: r["accuracy"])
        if top["accuracy"] - min(r["accuracy"] for r in trained) < ONE_TEST_SAMPLE:
            text += " The accuracies do not differ."
        elif most is top:
            text += " The net that iterated most was the most accurate."
        else:
            text += " More iterations did not buy accuracy here."
    return text


def _oversubscribed(meta: dict) -> bool:
    loads = [x[0] for x in (meta.get("load_start"), meta.get("load_end")) if x]
    return bool(loads) and bool(meta.get("cpus")) and max(loads) > meta["cpus"]


def write_report(results: dict) -> str:
    """RESULTS.md text from a results dict."""
    meta, d = results["meta"], results["digits"]
    out = [
        "# TWNN paper claims, checked on CPU-sized tasks",
        "",
        f"Written by `twnn_jax.experiment.run_paper(quick={meta['quick']}, seeds={meta['seeds']})` in "
        f"{meta['wall_s']:.0f} s on {meta['machine']} (JAX {meta['jax']}, backend {meta['backend']}). "
        f"Load average at start {meta['load_start']}, at end {meta['load_end']}: timings are wall-clock on a "
        "possibly shared machine, compare them within this run only. Raw numbers: `results.json`.",
        "",
        *([f"**The machine was oversubscribed** (1-minute load above its {meta['cpus']} CPUs) during this run: "
           "wall-clock timings and time ratios below are uncertain by a factor of several (XLA's CPU threads "
           "compete with other processes); accuracies and iteration counts are not affected.", ""]
          if _oversubscribed(meta) else []),
        *(["**Quick run**: tiny budgets that only exercise the plumbing; none of the numbers below says anything "
           "about the paper's claims.", ""] if meta["quick"] else []),
        "## 1. Table III analog: 8x8 digits",
        "",
        f"scikit-learn digits, fixed split (1437 train / {d['n_test']} test, split seed {d['split_seed']}); every "
        f"net trained {d['steps']} steps, Adam lr {d['lr']}, batch {d['batch_size']}, hidden width "
        f"{d['rows'][0]['hidden']}, gradient clipping 1.0, {d['seeds']} seed(s) (init and batch order). The TWNN "
        "net is the paper's Fig. 5: embed, blocks B1-B2 iterated to a fixed point through a gated wormhole B2->B1, "
        "then B3-B4 likewise, then the head (gate bias -2, tol 1e-3, max_iter 300, implicit gradients). "
        f"One test sample is {ONE_TEST_SAMPLE:.2f} accuracy points. Training time excludes compilation "
        "(timed apart) and evaluation; memory is the compiled training step's temporary buffers "
        "(`memory_analysis().temp_size_in_bytes`). Accuracy is the last step's (no early stopping, no selection "
        "on the test set).",
        "",
    ]
    rows = []
    for r in d["rows"]:
        temp = r["memory"]["temp_size_in_bytes"] / 1024 if r["memory"] else None
        args = r["memory"]["argument_size_in_bytes"] / 1024 if r["memory"] else None
        accs = ", ".join(f"{s['accuracy']:.2f}" for s in r["per_seed"])
        reach = r["steps_to_95"]
        reach = _f(reach["median"], "{:.0f}") + ("" if reach["all_reached"] else " (not all seeds)")
        rows.append([r["label"], r["params"], _pm(r["accuracy_mean"], r["accuracy_std"]), accs, reach,
                     _pm(r["train_s_mean"], r["train_s_std"], "{:.1f}"), _f(r["ms_per_step_median"]),
                     _f(r["cpu_ms_per_step_mean"]), _f(r["compile_s"], "{:.1f}"), _f(r["first_step_s_mean"], "{:.3f}"),
                     _f(temp, "{:.0f}"), _f(args, "{:.0f}"),
                     _f(np.mean([s["test_fwd_iters_mean"] for s in r["per_seed"]]), "{:.1f}")])
    out.append(_table(["model", "params", "test acc % (mean ± std)", "per seed", "steps to 95% (median)",
                       "train s (wall)", "ms/step (median)", "CPU ms/step", "compile s", "first step s",
                       "step temp KiB", "step args KiB", "fwd iters (test)"], rows))
    out += ["", "Train s: wall seconds for steps 2..N (mean ± std over seeds); ms/step: the median over ~10 "
            "timed chunks, steadier than the total under contention; CPU ms/step: process CPU time (all "
            "threads) per step. Steps to 95%: first evaluated step (5, 10, 25, 50, 75, 100, 150, 200, ...) "
            "with test accuracy >= 95%. Args: parameters, optimizer state and controls passed to the step. "
            "Temp: XLA's scratch for the compiled step; at these sizes it is not monotone in depth.", ""]
    if "twnn_unrolled_memory" in d:
        u = d["twnn_unrolled_memory"]
        twnn = next(r for r in d["rows"] if r["model"] == "resnet_fp")
        a = twnn["memory"]["temp_size_in_bytes"] / 1024
        b = u["memory"]["temp_size_in_bytes"] / 1024
        out += [f"Memory check: the same TWNN step differentiated by unrolling (backprop through up to "
                f"{u['unroll_capacity']} stored iterations) needs {b:.0f} KiB of temporaries against {a:.0f} KiB "
                f"with implicit gradients ({b / max(a, 1e-9):.0f}x): the paper's memory argument holds for the "
                "implicit (fixed-point adjoint) gradient, independent of how many iterations run.", ""]
    v = d["verdict"]
    words = []
    for c in v["comparisons"]:
        words.append(f"- TWNN vs {c['against']}: {c['gap_points']:+.2f} points ({c['gap_samples']:+.1f} test "
                     f"samples; largest seed std {_f(c['seed_std_max'])}): **{c['words']}**.")
    out += ["**In words.** The paper reports TWNN 96.54% against ResNet-36 88.25% / ResNet-50 90.63% on its "
            "task. Here:", *words,
            f"- Cost: a TWNN training step took {v['time_ratio_vs_fastest_plain']:.0f}x the wall time "
            f"({v['cpu_ratio_vs_fastest_plain']:.0f}x the CPU time) of the fastest plain net's step "
            f"({v['fastest_plain']}): every step runs forward fixed-point solves and adjoint solves of many "
            "sweeps each, in a `while_loop`, against one pass through a few small matrices.",
            "- Speed of learning (the paper's 'reaches accuracy faster'): median steps to 95% test accuracy: "
            + "; ".join(f"{r['label']}: {_f(r['steps_to_95']['median'], '{:.0f}')}" for r in d["rows"])
            + f". {_speed_words(d['rows'])}", ""]

    s = results["settle"]
    out += ["## 2. Do easy inputs settle faster?", "",
            "Trained TWNN nets, every test sample: forward iterations (sum over both fixed-point blocks) against "
            "the model's confidence (max softmax) and the per-sample cross-entropy. Spearman rank correlation "
            "(ties averaged; p from the normal approximation). Easy-settles-faster predicts a negative "
            "correlation with confidence and a positive one with loss.", ""]
    rows = [[p["seed"], _f(p["iters_vs_confidence"]["rho"], "{:+.3f}"), _f(p["iters_vs_confidence"]["p"], "{:.1e}"),
             _f(p["iters_vs_loss"]["rho"], "{:+.3f}"), _f(p["iters_vs_loss"]["p"], "{:.1e}"),
             _f(p["iters_mean"], "{:.1f}"), f"{p['iters_min']}-{p['iters_max']}", _f(p["iters_mean_correct"], "{:.1f}"),
             _f(p["iters_mean_wrong"], "{:.1f}"), p["n_wrong"]] for p in s["per_seed"]]
    out += [_table(["seed", "rho(iters, confidence)", "p", "rho(iters, loss)", "p", "mean iters", "range",
                    "iters if correct", "iters if wrong", "# wrong"], rows), ""]
    rc, rl = s["rho_confidence_mean"], s["rho_loss_mean"]
    if rc is not None and rl is not None:
        agree = rc < 0 and rl > 0
        strength = max(abs(rc), abs(rl))
        size = "weak" if strength < 0.3 else ("moderate" if strength < 0.5 else "strong")
        out += [f"**In words.** Mean rho over seeds: {rc:+.3f} with confidence, {rl:+.3f} with loss. "
                + (f"The signs agree with 'easy inputs settle faster'; the association is {size}." if agree else
                   "The signs do not both agree with 'easy inputs settle faster'.") + " See `settle.html`.", ""]

    out += ["## 3. Sine generation after training (Fig. 6 analog)", "",
            "The paper's small net (Algorithm 3: tanh hidden, sigmoid output, output fed back to the hidden layer "
            "through a wormhole) trained one step ahead on random-phase windows, lr 1e-3, batch 64. Judged "
            "free-running: start from the true window of 8 evaluation sequences, feed the model's outputs back "
            "for the whole horizon. Baselines: the constant 0.5 (the signal's mean) for free running, and for one "
            "step ahead the constant and 'repeat the last value' (persistence).", ""]
    rows = []
    for c in results["sine"]["cases"]:
        rows.append([c["n_freqs"], c["window"], c["hidden"], c["steps"], f"{c['free_rmse']:.4f}",
                     f"{c['free_rmse_first50']:.4f}", f"{c['free_rmse_last50']:.4f}", f"{c['constant_rmse']:.4f}",
                     f"{c['one_step_mse']:.2e}", f"{c['one_step_mse_persistence']:.2e}",
                     f"{c['one_step_mse_constant']:.2e}", f"{c['generated_std']:.3f} / {c['target_std']:.3f}",
                     f"{_f(c['generated_period'], '{:.1f}')} / {_f(c['target_period'], '{:.1f}')}"])
    out += [_table(["freqs", "window", "hidden", "steps", f"free RMSE ({results['sine']['cases'][0]['free_steps']} "
                    "steps)", "first 50", "last 50", "constant 0.5 RMSE", "one-step MSE", "persistence MSE",
                    "constant MSE", "std gen / target", "period gen / target"], rows), ""]
    words = []
    for c in results["sine"]["cases"]:
        ratio = c["free_rmse"] / max(c["constant_rmse"], 1e-12)
        verdict = ("beats the constant baseline clearly" if ratio < 0.5 else
                   "is no better than the constant baseline" if ratio >= 1 else
                   "beats the constant baseline only modestly")
        pts = c["free_rmse_during_training"]
        best = min(pts, key=lambda p: p[1])
        words.append(f"- {c['n_freqs']} frequenc{'y' if c['n_freqs'] == 1 else 'ies'}, window {c['window']}: "
                     f"free-running RMSE {c['free_rmse']:.4f} vs {c['constant_rmse']:.4f} ({ratio:.2f}x): {verdict}. "
                     f"Best free-running RMSE during training {best[1]:.4f} at step {best[0]}.")
    out += ["**In words.**", *words, ""]

    g = results["gate"]
    out += ["## 4. Gate bias vs iterations vs accuracy", "",
            f"The seed-0 TWNN net (trained at gate bias {g['trained_gate']:g}) evaluated at each gate bias: forward "
            "iterations and accuracy on the test set; backward (adjoint) iterations from one gradient computation "
            "on a fixed training batch (no update kept)."
            + (" Norm of J: power-iteration estimate of the spectral norm of d(sweep)/d(state) at the fixed point, "
               "mean of 8 test samples, the larger of the two blocks; a norm above 1 does not by itself mean "
               "divergence (the spectral radius is what matters)." if g["sweep"] and "contraction_mean" in
               g["sweep"][0] else ""),
            ""]
    has_c = bool(g["sweep"]) and "contraction_mean" in g["sweep"][0]
    rows = [[f"{r['gate']:g}", f"{r['gate_value_mean']:.3f}", f"{r['fwd_iters_mean']:.1f}", r["fwd_iters_max"],
             f"{r['fwd_converged_frac']:.3f}", f"{r['bwd_iters_mean']:.1f}", r["bwd_iters_max"],
             f"{r['bwd_converged_frac']:.3f}", f"{r['accuracy']:.2f}"]
            + ([f"{r['contraction_mean']:.3f}"] if has_c else []) for r in g["sweep"]]
    out += [_table(["gate bias", "mean gate", "fwd iters mean", "fwd max", "fwd converged", "bwd iters mean",
                    "bwd max", "bwd converged", "test acc %"] + (["norm of J"] if has_c else []), rows), ""]
    rows = [[f"{r['gate']:g}", f"{r['accuracy']:.2f}", f"{r['test_fwd_iters_mean']:.1f}", f"{r['train_s']:.1f}",
             _f(r["ms_per_step_median"], "{:.1f}"), _f(r["cpu_ms_per_step"], "{:.1f}"),
             "Table 1, seed 0" if r["reused"] else "trained here"] for r in g["trained_at"]]
    out += ["Nets trained at a gate bias (seed 0 each, same budget as Table 1) and evaluated at it:", "",
            _table(["gate bias", "test acc %", "fwd iters (test)", "train s (wall)", "ms/step (median)",
                    "CPU ms/step", "source"], rows), ""]
    out += [_gate_words(g, d), ""]

    so = results["sweep_order"]
    out += ["## 5a. Sweep order: layer order vs all at once", "",
            "The same trained parameters (seed 0) solved with the layer-order sweep (each layer sees the new "
            "activation below it) and the all-at-once (Jacobi) sweep (each layer sees the previous state). Both have "
            "the same fixed point, so accuracy should match up to the tolerance.", ""]
    rows = [[f"{r['gate']:g}", f"{r['layer_iters_mean']:.1f}", f"{r['jacobi_iters_mean']:.1f}",
             f"{r['jacobi_iters_mean'] / max(r['layer_iters_mean'], 1e-9):.2f}",
             f"{r['layer_converged_frac']:.3f} / {r['jacobi_converged_frac']:.3f}",
             f"{r['layer_accuracy']:.2f} / {r['jacobi_accuracy']:.2f}", f"{r['max_logit_diff']:.1e}"]
            for r in so["rows"]]
    out += [_table(["gate bias", "layer iters", "jacobi iters", "ratio", "converged (layer / jacobi)",
                    "acc % (layer / jacobi)", "max abs logit diff"], rows), ""]
    if so["rows"]:
        ratios = [r["jacobi_iters_mean"] / max(r["layer_iters_mean"], 1e-9) for r in so["rows"]]
        same = all(abs(r["layer_accuracy"] - r["jacobi_accuracy"]) < ONE_TEST_SAMPLE for r in so["rows"])
        out += [f"**In words.** All-at-once sweeps needed {min(ratios):.2f}-{max(ratios):.2f}x the iterations of "
                "layer-order sweeps (information crosses one layer per sweep instead of the whole stack)"
                + ("; the answers agree (accuracy within one test sample)." if same else
                   "; accuracy differs by a test sample or more at some gate bias.")
                + " The logits differ by up to the last column: the stopping test is on the state change "
                "(tol 1e-3), not on the distance to the exact fixed point.", ""]

    ad = results["adding"]
    out += [f"## 5b. Long-range check: the adding problem, T = {', '.join(str(t) for t in ad['T'])}", "",
            "Sum of the two marked values in a sequence of T random values; always answering 1.0 gives MSE 1/6 = "
            "0.167 (the test set's own variance is the bar for 'learned nothing'). Same budget for both nets "
            "(steps, batch 64, lr, hidden); the shorter length is a sanity check that the task is learnable "
            "in this budget at all.", ""]
    rows = [[r["T"], r["model"], r["hidden"], r["params"], r["steps"], f"{r['test_mse']:.4f}",
             f"{r['baseline_mse']:.3f}",
             f"{r['eval_set_variance']:.3f}", f"{r['test_acc_004']:.1f}", f"{r['train_s']:.1f}",
             _f(r["ms_per_step_median"], "{:.1f}"), f"{r['fwd_iters_mean']:.0f}"] for r in ad["rows"]]
    out += [_table(["T", "model", "hidden", "params", "steps", "test MSE", "baseline", "test-set var(y)",
                    "abs err < 0.04 (%)", "train s", "ms/step (median)", "fwd iters (all T steps)"], rows), ""]
    words = []
    for r in ad["rows"]:
        ratio = r["test_mse"] / ADDING_BASELINE
        words.append(f"T={r['T']}: {r['model']} reaches {ratio:.2f}x the baseline MSE"
                     + (" (learned it)" if ratio < 0.1 else " (partly)" if ratio < 0.7 else " (did not learn it)"))
    out += ["**In words.** " + "; ".join(words) + "."]
    for t in ad["T"]:
        if not any(r["test_mse"] / ADDING_BASELINE < 0.7 for r in ad["rows"] if r["T"] == t):
            out[-1] += f" At T={t} neither net learned the task in this budget."
    out.append("")
    files = ", ".join(f"`{v['html']}`" for v in results.get("figures", {}).values())
    out += ["## Figures", "", f"Self-contained Plotly HTML: {files}."
            + (" PNG copies written." if any("png" in v for v in results.get("figures", {}).values()) else
               " No PNG: neither kaleido nor matplotlib is importable here."), ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------- entry


def run_paper(out_dir="assets", quick: bool = False, seeds: int = 3) -> dict:
    """Run every part, write `out_dir/experiment/{RESULTS.md, results.json, *.html}`; returns the results dict.

    quick=True: tiny budgets (seconds; what the tests run). The full run takes minutes on two CPU cores.
    """
    if int(seeds) < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    seeds = int(seeds)
    plan = QUICK if quick else FULL
    folder = Path(out_dir) / "experiment"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = {"meta": {"quick": bool(quick), "seeds": seeds, "plan": dataclasses.asdict(plan),
                        "jax": jax.__version__, "backend": jax.default_backend(),
                        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s)", "cpus": os.cpu_count(),
                        "load_start": _load()}}
    t = time.perf_counter()
    results["digits"], ctx = part_digits(plan, seeds)  # ctx: the trained TWNN nets, for parts 2, 4 and 5a
    timings = {"digits": time.perf_counter() - t}
    for name, fn in (("settle", lambda: part_settle(ctx)), ("sine", lambda: part_sine(plan)),
                     ("gate", lambda: part_gate(plan, ctx, results["digits"])),
                     ("sweep_order", lambda: part_sweep_order(plan, ctx)), ("adding", lambda: part_adding(plan))):
        t = time.perf_counter()
        results[name] = fn()
        timings[name] = time.perf_counter() - t
        logger.info("part %s done in %.1f s", name, timings[name])
    results["figures"] = write_figures(results, folder)
    results["meta"]["part_s"] = timings
    results["meta"]["wall_s"] = time.perf_counter() - t0
    results["meta"]["load_end"] = _load()
    results = _clean(results)
    (folder / "results.json").write_text(json.dumps(results, indent=1, allow_nan=False))
    (folder / "RESULTS.md").write_text(write_report(results))
    return results
