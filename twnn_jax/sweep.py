"""Sweeps: a grid of runs (tol x gate x max_iter x seed, and any live control, solver, gradient mode) trained
as one compiled program, sharded over every device.

>>> grid = make_grid(TrainConfig(task="digits"), {"tol": (1e-3, 1e-4), "seed": (0, 1)})   # doctest: +SKIP
>>> result = run_sweep(grid, steps=200)                                                  # doctest: +SKIP
>>> result.rows[0]["eval_metric"]     # one dict per configuration, in grid order           # doctest: +SKIP
>>> write_sweep(result, "runs/sweep")  # sweep.csv, sweep.json, heatmaps.html, summary.json  # doctest: +SKIP

How. The live controls are traced values (`LiveControls`) and the seed reaches only `Trainer.init`, so
configurations that differ in them share one trainer (`train.trainer_for`). Their states and controls
are stacked along a leading "configs" axis: `jax.vmap` of `Trainer.init` and `Trainer.run` trains them
all in one program, and `jax.shard_map` over a one-axis `Mesh` of every device gives each device its own
slice of configurations (padded to a multiple of the device count with copies of the last one). Nothing
is communicated while training: each device runs its own loops. Under `jax.distributed` the mesh spans
every process's devices (see `init_distributed`) and the results are gathered to every process.
Solver and gradient mode are static (they change the compiled step): each combination is one such
program, run one after another.

Each configuration gets exactly the steps, data and initial weights of its own run through
`train.train` (the same `Trainer.run` in calls of `STEPS_PER_CALL` steps); the numbers agree with
that run's up to float rounding of the batched computation (tests/test_sweep.py).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import math
import os
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .checkpoint import dumps_strict, write_atomic
from .settings import LIVE, SETTINGS, LiveControls, SettingError, TrainConfig, check_value, parse_value, shorten
from .train import STEPS_PER_CALL, trainer_for

# The axes a sweep may span: every live control, the seed, and two static choices (one program each).
STATIC_AXES = ("solver", "grad_mode")
AXES = (*LIVE, "seed", *STATIC_AXES)
# The default grid; an axis not named here (and not given) takes the base config's value.
DEFAULT_AXES = {"tol": (1e-2, 1e-3, 1e-4), "gate": (-4.0, -2.0, 0.0, 2.0), "max_iter": (300,), "seed": (0, 1)}
MAX_CONFIGS = 65_536
MESH_AXIS = "configs"
FINAL_WINDOW = 10  # final_loss / final_metric: mean of the last 10 steps (as a run's summary.json)
# the per-configuration numbers of the table, after the axes
METRICS = ("final_loss", "final_metric", "fwd_iters_mean", "fwd_iters_max", "bwd_iters_mean", "skipped_frac",
           "not_converged_frac", "bwd_not_converged_frac", "eval_loss", "eval_metric", "eval_fwd_iters_mean",
           "eval_converged_frac")
SWEEP_CSV, SWEEP_JSON, HEATMAPS_HTML, SUMMARY_JSON = "sweep.csv", "sweep.json", "heatmaps.html", "summary.json"


class Grid(NamedTuple):
    """A sweep: the base config (every setting that is not an axis) and the values of each axis (AXES order)."""

    base: TrainConfig
    axes: dict


class SweepResult(NamedTuple):
    grid: Grid
    steps: int
    rows: list  # one dict per configuration: index, the axes' values, METRICS
    losses: np.ndarray  # (configurations, steps): the training loss of every step
    info: dict  # devices, processes, programs, padding, seconds


# ---- the grid ------------------------------------------------------------------------------------------
def parse_axis(name: str, text: str) -> tuple:
    """A comma-separated list of values of setting `name`, each read by the settings' strict `parse_value`.

    ValueError (one line naming the setting) for an unknown axis, an empty item, a bad value or a repeat."""
    if name not in AXES:
        raise ValueError(f"{shorten(name)!r} cannot be swept; the axes are {', '.join(AXES)}")
    items = [item.strip() for item in text.split(",")]
    if not any(items) or not all(items):
        raise SettingError(name, "a comma-separated list, each value " + SETTINGS[name].allowed, repr(shorten(text)))
    values = tuple(parse_value(name, item) for item in items)
    if None in values:  # an off word of an optional setting: no axis is optional today
        raise SettingError(name, SETTINGS[name].allowed, repr(shorten(text)))
    repeated = sorted({SETTINGS[name].show(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{name}: {', '.join(repeated)} given more than once; each value of an axis once")
    return values


def make_grid(base: TrainConfig, axes: dict | None = None) -> Grid:
    """The grid of `base` over `axes` (name -> values); axes not given: DEFAULT_AXES, else the base's value."""
    axes = dict(axes or {})
    unknown = sorted(set(axes) - set(AXES))
    if unknown:
        raise ValueError(f"{', '.join(unknown)} cannot be swept; the axes are {', '.join(AXES)}")
    full = {}
    for name in AXES:
        values = tuple(axes.get(name) or DEFAULT_AXES.get(name) or (getattr(base, name),))
        for v in values:
            check_value(name, v)
        full[name] = values
    size = math.prod(len(v) for v in full.values())
    if size > MAX_CONFIGS:
        raise ValueError(f"the grid has {size} configurations; at most {MAX_CONFIGS} (give fewer values per axis)")
    return Grid(base, full)


def grid_configs(grid: Grid) -> list[TrainConfig]:
    """Every configuration of the grid, the last axis (grad_mode) fastest."""
    return [dataclasses.replace(grid.base, **dict(zip(AXES, combo)))
            for combo in itertools.product(*(grid.axes[name] for name in AXES))]


# ---- devices and processes -----------------------------------------------------------------------------
def distributed_settings(coordinator: str | None = None, num_processes: int | None = None,
                         process_id: int | None = None, environ=os.environ) -> tuple | None:
    """(coordinator address, process count, process id) from the arguments, else the environment variables
    JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID; None when no coordinator is named."""
    coordinator = coordinator or environ.get("JAX_COORDINATOR_ADDRESS") or None
    if coordinator is None:
        if num_processes not in (None, 1) or process_id not in (None, 0):
            raise ValueError("--num-processes and --process-id need --coordinator (or JAX_COORDINATOR_ADDRESS)")
        return None

    def number(value, env, what, low):
        text = str(value) if value is not None else environ.get(env)
        if text is None:
            raise ValueError(f"{what} is needed with a coordinator: give it as a flag or set {env}")
        if not text.strip().isdigit() or int(text) < low:
            raise ValueError(f"{what} must be an integer >= {low}; got {shorten(text)!r}")
        return int(text)

    count = number(num_processes, "JAX_NUM_PROCESSES", "--num-processes", 1)
    index = number(process_id, "JAX_PROCESS_ID", "--process-id", 0)
    if index >= count:
        raise ValueError(f"--process-id must be below --num-processes ({count}); got {index}")
    return coordinator, count, index


def init_distributed(settings: tuple | None) -> None:
    """`jax.distributed.initialize` with (coordinator, count, id), before JAX touches a device; None: nothing."""
    if settings is not None:
        coordinator, count, index = settings
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=count, process_id=index)


def device_info() -> dict:
    devices = jax.devices()
    return {"backend": jax.default_backend(), "kind": devices[0].device_kind, "count": len(devices),
            "local_count": jax.local_device_count(), "process_count": jax.process_count(),
            "process_index": jax.process_index(), "jax": jax.__version__}


def _host(tree):
    """A tree of global arrays as numpy arrays, whole on every process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def _global(mesh: Mesh, array: np.ndarray) -> jax.Array:
    """`array` (every process holds all of it) as one array sharded along its first axis over `mesh`."""
    return jax.make_array_from_callback(array.shape, NamedSharding(mesh, P(MESH_AXIS)), lambda index: array[index])


# ---- training ------------------------------------------------------------------------------------------
def _eval_summary(trainer, params, live) -> dict:
    ev = trainer.evaluate(params, live)
    return {"eval_loss": ev["loss"], "eval_metric": ev["metric"],
            "eval_fwd_iters_mean": jnp.mean(ev["fwd_iters"].astype(jnp.float32)),
            "eval_converged_frac": jnp.mean(ev["fwd_converged"].astype(jnp.float32))}


def _train_group(configs: list[TrainConfig], steps: int, mesh: Mesh) -> tuple[dict, dict, dict]:
    """Train configurations that share a trainer (only live controls and seed differ) as one sharded program.

    Returns (per-step columns (configs, steps) of the summary keys, evaluation numbers per configuration,
    seconds spent compiling and running). Each program is compiled ahead of its first call (`lower().compile()`),
    so the two are timed apart."""
    trainer = trainer_for(configs[0])
    size = mesh.devices.size
    padded = configs + [configs[-1]] * (-len(configs) % size)
    seeds = _global(mesh, np.asarray([c.seed for c in padded], np.int32))
    lives = LiveControls(*(_global(mesh, np.asarray([getattr(c, name) for c in padded],
                                                    np.int32 if SETTINGS[name].type is int else np.float32))
                           for name in LIVE))
    seconds = {"compile": 0.0, "train": 0.0}

    def compiled(f, *args):
        """f over one configuration -> vmap over the device's configurations, shard_map over the mesh, compiled."""
        # check_vma=False: the solver's loops start from constants (the same on every device) and carry
        # per-configuration values; nothing here is communicated, so there is nothing for the check to guard
        program = jax.jit(jax.shard_map(jax.vmap(f), mesh=mesh, in_specs=P(MESH_AXIS), out_specs=P(MESH_AXIS),
                                        check_vma=False))
        start = time.perf_counter()
        program = program.lower(*args).compile()
        seconds["compile"] += time.perf_counter() - start
        return program

    def timed(program, *args):
        start = time.perf_counter()
        out = _host(program(*args))
        seconds["train"] += time.perf_counter() - start
        return out

    init = compiled(trainer.init, seeds)
    start = time.perf_counter()
    state = jax.block_until_ready(init(seeds))
    seconds["train"] += time.perf_counter() - start
    programs: dict = {}  # call length -> program (at most two: STEPS_PER_CALL and the rest)
    columns: dict = {}
    done = 0
    while done < steps:
        n = min(STEPS_PER_CALL, steps - done)
        if n not in programs:
            def chunk(state, live, n=n):
                state, out = trainer.run(state, live, n)
                return state, {"count": out["count"], "rows": out["rows"]}

            programs[n] = compiled(chunk, state, lives)
        start = time.perf_counter()
        state, out = programs[n](state, lives)
        out = _host(out)
        seconds["train"] += time.perf_counter() - start
        for key, rows in out["rows"].items():
            columns.setdefault(key, []).append(rows[:, :n])
        done += n
    evaluate = compiled(lambda params, live: _eval_summary(trainer, params, live), state.params, lives)
    evaluation = timed(evaluate, state.params, lives)
    keep = len(configs)
    columns = {k: np.concatenate(v, axis=1)[:keep] for k, v in columns.items()}
    return columns, {k: v[:keep] for k, v in evaluation.items()}, seconds


def _mean_last(a: np.ndarray, n: int) -> np.ndarray:
    """Per row: the mean of the finite values among the last `n` (NaN when none), as a run's summary."""
    tail = a[:, -n:].astype(float)
    finite = np.isfinite(tail)
    count = finite.sum(1)
    return np.where(count > 0, np.where(finite, tail, 0.0).sum(1) / np.maximum(count, 1), np.nan)


def _table(configs, columns, evaluation) -> list[dict]:
    f = {k: np.asarray(v, float) for k, v in columns.items()}
    numbers = {
        "final_loss": _mean_last(f["loss"], FINAL_WINDOW),
        "final_metric": _mean_last(f["metric"], FINAL_WINDOW),
        "fwd_iters_mean": _mean_last(f["fwd_iters_mean"], f["loss"].shape[1]),
        "fwd_iters_max": f["fwd_iters_max"].max(1),
        "bwd_iters_mean": _mean_last(f["bwd_iters_mean"], f["loss"].shape[1]),
        "skipped_frac": f["skipped"].mean(1),
        "not_converged_frac": (f["converged_frac"] < 1.0).mean(1),
        "bwd_not_converged_frac": (f["bwd_converged_frac"] < 1.0).mean(1),
        **{k: np.asarray(v, float) for k, v in evaluation.items()},
    }
    rows = []
    for i, config in enumerate(configs):
        row = {name: getattr(config, name) for name in AXES}
        row.update({k: numbers[k][i].item() for k in METRICS})
        rows.append(row)
    return rows


def run_sweep(grid: Grid, steps: int, *, devices=None) -> SweepResult:
    """Train every configuration of `grid` for `steps` steps: one sharded program per (solver, grad_mode)."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}")
    configs = grid_configs(grid)
    mesh = Mesh(np.asarray(jax.devices() if devices is None else devices), (MESH_AXIS,))
    groups: dict = {}
    for i, config in enumerate(configs):
        groups.setdefault(tuple(getattr(config, name) for name in STATIC_AXES), []).append(i)
    losses = np.zeros((len(configs), steps), np.float32)
    rows: list = [None] * len(configs)
    start = time.perf_counter()
    seconds = {"compile": 0.0, "train": 0.0}
    for indices in groups.values():
        group = [configs[i] for i in indices]
        columns, evaluation, spent = _train_group(group, steps, mesh)
        seconds = {k: seconds[k] + spent[k] for k in seconds}
        for i, row in zip(indices, _table(group, columns, evaluation)):
            rows[i] = {"index": i, **row}
        losses[indices] = columns["loss"]
    size = mesh.devices.size
    info = {
        "devices": device_info() | {"mesh": size},
        "configurations": len(configs),
        "programs": len(groups),
        "padded_to": sum(len(g) + (-len(g) % size) for g in groups.values()),
        "seconds": round(time.perf_counter() - start, 3),
        "compile_seconds": round(seconds["compile"], 3),  # of that, compiling the programs
        "train_seconds": round(seconds["train"], 3),  # and running them (init, training, evaluation, transfers)
    }
    return SweepResult(grid, steps, rows, losses, info)


# ---- output --------------------------------------------------------------------------------------------
def table_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()})
    return buffer.getvalue()


def heatmap_grid(rows: list[dict], key: str) -> tuple[list, list, np.ndarray]:
    """(tols, gates, values[tol, gate]): `key` averaged over every other axis (NaN where none is finite)."""
    tols = sorted({r["tol"] for r in rows}, reverse=True)
    gates = sorted({r["gate"] for r in rows})
    z = np.full((len(tols), len(gates)), np.nan)
    for i, t in enumerate(tols):
        for j, g in enumerate(gates):
            values = [r[key] for r in rows if r["tol"] == t and r["gate"] == g
                      and r[key] is not None and math.isfinite(r[key])]
            if values:
                z[i, j] = float(np.mean(values))
    return tols, gates, z


def summary(result: SweepResult, metric_name: str) -> dict:
    from .experiments.provenance import code_version

    rows = [r for r in result.rows if r["eval_loss"] is not None and math.isfinite(r["eval_loss"])]
    best = min(rows, key=lambda r: r["eval_loss"]) if rows else None
    return {
        "task": result.grid.base.task, "steps": result.steps, "metric_name": metric_name,
        "axes": {k: list(v) for k, v in result.grid.axes.items()},
        "base_config": {k: v for k, v in result.grid.base.to_dict().items() if k not in AXES},
        **result.info,
        "best_by_eval_loss": best,
        "files": [SWEEP_CSV, SWEEP_JSON, HEATMAPS_HTML, SUMMARY_JSON],
        "code": code_version(),
    }


def write_sweep(result: SweepResult, out) -> dict:
    """Write the table (CSV and strict JSON), the heatmaps (HTML) and summary.json into `out`; returns the summary."""
    from .sweep_figures import heatmaps_html

    out = Path(out)
    metric_name = trainer_for(result.grid.base).task.metric_name
    info = summary(result, metric_name)
    write_atomic(out / SWEEP_CSV, table_csv(result.rows).encode())
    table = {"columns": list(result.rows[0]), "rows": result.rows, "steps": result.steps,
             "losses": result.losses.tolist()}
    write_atomic(out / SWEEP_JSON, (dumps_strict(table) + "\n").encode())
    write_atomic(out / HEATMAPS_HTML, heatmaps_html(result.rows, metric_name, info).encode())
    write_atomic(out / SUMMARY_JSON, (dumps_strict(info, indent=2) + "\n").encode())
    return info
