"""Measurement for the paper experiment: timed training through the library's loop, compile time and
memory of a step, rank statistics (`scipy.stats`), the machine's load.

Training runs through `twnn_jax.train.train` (the library's compiled loop of steps): `fit` calls it once
per segment, a segment ending at each step where a checkpoint is evaluated or a timing chunk ends.
Every step is the same compiled step whatever the segments are, so the numbers do not depend on them.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable

import jax
import numpy as np
from scipy import stats
from tqdm import tqdm

from ..train import Trainer, TrainState, train


def load() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - platforms without getloadavg
        return None


def machine() -> str:
    """Architecture, CPU model (where /proc/cpuinfo names it) and CPU count, e.g. "x86_64, AMD EPYC, 2 CPU(s)". The
    CPU model is worth recording: XLA compiles for the CPU it runs on, and another CPU rounds some sums
    differently, which the growth rule's random threshold crossings turn into other sizes (the same commit gave
    other figures for seed 003's brackets on another machine, and the same ones run after run on one)."""
    model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        pass
    return ", ".join(x for x in (platform.machine(), model, f"{os.cpu_count()} CPU(s)") if x)


def spearman(a, b) -> dict:
    """Spearman rank correlation (ties averaged) with its two-sided p-value, from `scipy.stats.spearmanr`.

    rho and p are None when either input is constant (the correlation is undefined there).
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = len(a)
    if n < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return {"rho": None, "p": None, "n": n}
    result = stats.spearmanr(a, b)
    return {"rho": float(result.statistic), "p": float(result.pvalue), "n": n}


def mean_std(values) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    v = np.asarray(values, float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


def param_count(params) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(params)))


def step_cost(trainer: Trainer, state: TrainState, live) -> tuple[float, dict | None]:
    """The training step compiled ahead of time: (lower + compile seconds, its compiled memory in bytes)."""
    t0 = time.perf_counter()
    compiled = trainer.step.lower(state, live).compile()
    seconds = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    if mem is None:
        return seconds, None
    names = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes")
    return seconds, {name: int(getattr(mem, name)) for name in names if hasattr(mem, name)}


def loop_compile_s(trainer: Trainer, state: TrainState, live) -> float:
    """Seconds of the training loop's first call with zero steps: its compilation (nothing is trained; a
    trainer whose loop already ran in this process, or a compilation cache, makes it near zero)."""
    t0 = time.perf_counter()
    jax.block_until_ready(trainer.run(state, live, 0))
    return time.perf_counter() - t0


def checkpoint_steps(steps: int) -> tuple[int, ...]:
    """Denser early (where learning curves move), then evenly: 5, 10, 25, 50, 100, ... up to `steps`."""
    early = [5, 10, 25, 50, 75, 100, 150, 200, 300, 400]
    late = np.linspace(0, steps, 11).round().astype(int)[1:]
    return tuple(sorted({k for k in early + list(late) if 1 < k <= steps}))


def every(n: int, count: int) -> np.ndarray:
    """About `count` indices spread over range(n), always including the last."""
    return np.unique(np.linspace(0, n - 1, min(n, count)).round().astype(int))


def fit(trainer: Trainer, state: TrainState, live, steps: int, *, checkpoint: Callable | None = None,
        at=(), chunks: int = 10, desc: str = "train") -> tuple[TrainState, dict]:
    """Train `steps` steps through `train.train`; the first step and the `checkpoint(state)` calls are timed apart.

    `checkpoint(state)` runs after step 1, after every step number in `at` and after the last step. The
    steps after the first are timed in segments (ending at the checkpoints and at least `chunks` times),
    each in wall and process-CPU seconds: on a shared machine the median segment rate and the CPU time
    are steadier than the total wall time. A progress bar (stderr) counts the steps. Returns (state, log)
    with first_step_s, train_s, train_cpu_s, ms_per_step, ms_per_step_median, cpu_ms_per_step, the
    per-step loss and mean forward iterations, and the checkpoint results as (step, value) pairs.
    """
    with tqdm(total=steps, desc=desc, unit="step", leave=False, dynamic_ncols=True) as bar:
        t0 = time.perf_counter()
        state, history = train(trainer, 1, state=state, live=live)
        first = time.perf_counter() - t0
        bar.update(1)
        points = [(1, checkpoint(state))] if checkpoint is not None else []
        want = {int(k) for k in at} if checkpoint is not None else set()
        stops = want | {int(k) for k in np.linspace(1, steps, chunks + 1).round()[1:]} | {steps}
        wall = cpu = 0.0
        rates = []
        done = 1
        for k in sorted(s for s in stops if 1 < s <= steps):
            t0, c0 = time.perf_counter(), time.process_time()
            state, rows = train(trainer, k - done, state=state, live=live)  # returns once the steps are read
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            wall, cpu = wall + dt, cpu + dc
            rates.append(1000 * dt / (k - done))
            history += rows
            bar.update(k - done)
            done = k
            if checkpoint is not None and (k in want or k == steps):
                points.append((k, checkpoint(state)))
    loss = np.asarray([math.nan if h["loss"] is None else h["loss"] for h in history], float)
    iters = np.asarray([h["fwd_iters_mean"] for h in history], float)
    n = max(1, steps - 1)
    return state, {"first_step_s": first, "train_s": wall, "train_cpu_s": cpu, "steps": steps,
                   "ms_per_step": 1000 * wall / n, "ms_per_step_median": float(np.median(rates)) if rates else None,
                   "cpu_ms_per_step": 1000 * cpu / n, "loss": loss, "fwd_iters": iters, "checkpoints": points}
