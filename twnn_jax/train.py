"""Training: a config record, live controls, a jitted step, a jitted run of steps, evaluation, a loop.

>>> cfg = TrainConfig(task="sine")                                      # doctest: +SKIP
>>> trainer = build_trainer(cfg)                                        # doctest: +SKIP
>>> state = trainer.init(cfg.seed)                                      # doctest: +SKIP
>>> state, metrics = trainer.step(state, live_controls(cfg))           # doctest: +SKIP
>>> state, out = trainer.run(state, live_controls(cfg), 32)            # doctest: +SKIP
>>> rows = summarize_run(out)   # 32 per-step summaries                 # doctest: +SKIP

`trainer.run` runs up to `STEPS_PER_CALL` steps inside one compiled loop (`lax.while_loop`). Small
networks take tens of microseconds a step, while a call of a jitted function from Python costs
hundreds: the loop is what makes training fast. Every step of it runs the same compiled step, so a run
of n steps gives exactly the state of n calls of `run` with one step each. `run_calls` keeps two calls
in flight (JAX dispatches asynchronously): the next call computes while Python reads the last one.

`LiveControls` (the live settings of `twnn_jax.settings`: tol, max_iter, gate, damping, bwd_tol, lr) are
traced arrays: changing them between steps never recompiles. Everything else in `TrainConfig` is static:
changing it builds a new trainer. `TrainConfig`, `LiveControls` and the checks are declared in settings.py.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import warm as warm_start
from ._backward_stats import backward_probe, value_and_grad_with_stats
from .models import DEFAULT_MODEL, Model, build_model, every_wormhole
from .settings import (  # noqa: F401 - re-exported: the config and live-control names live in settings.py
    CHOICES,
    LIVE,
    RANGES,
    LiveControls,
    TrainConfig,
    check_config,
    check_value,
    live_controls,
)
from .tasks import BRACKET_TASKS, Task, adding_task, copy_task, digits_task, sine_task
from .wormhole import SolveSettings

# The most steps one call of `Trainer.run` takes. Reading a call's results costs Python time (the GIL)
# per call. Measured with the dashboard training sine (benchmarks/bench_dashboard_cpu.py, 6 windows each):
# with 512 instead of 128 its Python threads used 0.24-0.31 of a core instead of 0.40-0.58, and XLA's
# compute thread was busy 0.97 of the time instead of 0.93 (charts frozen; 0.81-0.93 instead of 0.78-0.87
# with charts every 2 s). 512 steps of the small nets take ~15 ms.
STEPS_PER_CALL = 512
# The per-step scalars every step computes (in the compiled step): what `summarize` returns and
# metrics.jsonl holds. gate_mean is absent for models without gates.
SUMMARY_KEYS = ("step", "loss", "metric", "skipped", "grad_norm", "fwd_iters_mean", "fwd_iters_max",
                "bwd_iters_mean", "bwd_iters_max", "converged_frac", "bwd_converged_frac", "fwd_diverged_frac",
                "fwd_residual_max", "gate_mean", "surrogate_error")


class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array
    surrogate: dict | None = None  # warm_start "surrogate": its parameters and Adam state (twnn_jax.warm)


class Trainer(NamedTuple):
    """A built run: pure functions over TrainState (init, step and evaluate are jitted)."""

    config: TrainConfig
    task: Task
    model: Model
    init: Callable  # seed -> TrainState
    step: Callable  # (state, live) -> (state, metrics)
    run: Callable  # (state, live, n, stop_below=-inf) -> (state, out): up to STEPS_PER_CALL steps; `summarize_run`
    evaluate: Callable  # (params, live) -> dict of per-sample arrays on the evaluation set
    generate: Callable | None  # sine only: (params, live) -> dict(series, target, fwd_iters, rmse)
    contraction: Callable | None  # (params, live) -> per-sample ||J|| estimate on 8 evaluation samples


def build_task(cfg: TrainConfig) -> Task:
    if cfg.task == "sine":
        return sine_task(cfg.n_freqs, cfg.window)
    if cfg.task == "digits":
        return digits_task(cfg.split_seed)
    if cfg.task == "adding":
        return adding_task(cfg.seq_len)
    return copy_task(cfg.seq_len)


def optimizer_for(clip_norm):
    def make(learning_rate):
        adam = optax.adam(learning_rate)
        return adam if clip_norm is None else optax.chain(optax.clip_by_global_norm(clip_norm), adam)

    return optax.inject_hyperparams(make)(learning_rate=1e-3)


def _tree_all_finite(tree):
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.array(True)


def solve_settings(cfg: TrainConfig, live: LiveControls) -> SolveSettings:
    """The solver settings of a run: the live controls' traced values with the config's static choices.

    The one mapping from (config, live controls) to `SolveSettings`: the trainer's functions, the
    experiments and the benchmarks all call it.
    """
    return SolveSettings(
        tol=live.tol, max_iter=live.max_iter, damping=live.damping, bwd_tol=live.bwd_tol,
        solver=cfg.solver, grad_mode=cfg.grad_mode, sweep=cfg.sweep, trajectory=cfg.trajectory,
        unroll_capacity=cfg.unroll_capacity, spectral_bound=cfg.spectral_bound,
    )


def build_trainer(cfg: TrainConfig, *, batch_sharding=None, rule: bool = True) -> Trainer:
    """`batch_sharding` (a `jax.sharding.Sharding` of a batch's leading axis): split every training batch over
    devices as it says, data-parallel (twnn_jax.data_parallel); None: wherever the state lives. `rule` False: a
    growing config's trainer without the add/delete rule (its model as it grows: with grow=wormholes, every
    candidate wormhole), for callers that apply `wormhole_growth.growing_step` themselves."""
    check_config(cfg)
    if cfg.task in BRACKET_TASKS:  # seed 003's tanh RNN, fixed or growing
        from .growth import build_growth_trainer

        return build_growth_trainer(cfg)
    task = build_task(cfg)
    model = build_model(cfg.model or DEFAULT_MODEL[cfg.task], task, cfg.hidden, cfg.depth,
                        wormholes=every_wormhole() if cfg.grow == "wormholes" else None)
    opt = optimizer_for(cfg.clip_norm)
    capacity = cfg.trajectory
    warm = cfg.warm_start == "surrogate"
    if warm:
        warm_start.check_model(model)

    def forward(params, x, live, probe):
        s = solve_settings(cfg, live)
        return jax.vmap(lambda xi, pi: model.apply(params, xi, live.gate, s, pi))(x, probe)

    def forward_warm(params, x, live, probe, sur):
        """`forward` with every solve started from the surrogate's guess; also returns the fixed points."""
        s = solve_settings(cfg, live)
        unravel, _ = warm_start.state_template(model, params, x[0], s)
        z0 = warm_start.guess(sur["params"], x, unravel)
        return jax.vmap(lambda xi, pi, zi: warm_start.apply_from(model, params, xi, live.gate, s, pi, zi))(x, probe, z0)

    def init(seed) -> TrainState:
        k_model, k_data = jax.random.split(jax.random.PRNGKey(seed))
        params = model.init(k_model)
        sur = None
        if warm:
            x_one = task.eval_set[0][0]
            _, n_state = warm_start.state_template(model, params, x_one, solve_settings(cfg, live_controls(cfg)))
            sur = warm_start.init_state(jax.random.fold_in(k_model, 1), x_one.size, n_state, cfg.surrogate_hidden)
        return TrainState(params, opt.init(params), jnp.zeros((), jnp.int32), k_data, sur)

    def step(state: TrainState, live: LiveControls):
        key, k_batch = jax.random.split(state.key)
        x, y = task.sample(k_batch, cfg.batch_size)
        if batch_sharding is not None:
            x, y = jax.lax.with_sharding_constraint((x, y), batch_sharding)
        probe = backward_probe((cfg.batch_size,), capacity)

        def loss_fn(params, probe):
            if warm:
                out, stats, gates, z_star = forward_warm(params, x, live, probe, state.surrogate)
            else:
                (out, stats, gates), z_star = forward(params, x, live, probe), None
            loss, metric = task.loss(out, y)
            return loss, (metric, stats, gates, z_star)

        (loss, (metric, stats, gates, z_star)), grads, bst = value_and_grad_with_stats(loss_fn, has_aux=True)(
            state.params, probe
        )
        # A step whose loss or gradient is not finite changes nothing but the step count and the batch key,
        # and says so in `skipped`. Not `optax.apply_if_finite` (optax 0.2.8): it wraps the optimizer state
        # in an ApplyIfFiniteState (the checkpoint layout changes, so saved runs would no longer resume, and
        # `hyperparams` moves to `.inner_state`), it tests the gradient but not the loss, and after
        # `max_consecutive_errors` skipped steps it applies the non-finite update anyway.
        finite = jnp.isfinite(loss) & _tree_all_finite(grads)
        hyper = dict(state.opt_state.hyperparams)
        hyper["learning_rate"] = live.lr
        opt_state = state.opt_state._replace(hyperparams=hyper)
        safe_grads = jax.tree.map(lambda g: jnp.where(finite, g, 0.0), grads)
        updates, new_opt = opt.update(safe_grads, opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        sur, sur_error = state.surrogate, None
        if warm:  # the surrogate's own step on the detached fixed points (twnn_jax.warm)
            sur, sur_error = warm_start.update(state.surrogate, x, z_star)
            sur = keep(sur, state.surrogate)
        new_state = TrainState(keep(new_params, state.params), keep(new_opt, state.opt_state),
                               state.step + 1, key, sur)
        metrics = {
            "step": state.step + 1,
            "loss": loss,
            "metric": metric,
            "skipped": ~finite,
            "grad_norm": optax.tree.norm(safe_grads),
            "fwd_iters": stats.iters,
            "fwd_residual": stats.residual,
            "fwd_converged": stats.converged,
            "fwd_diverged": stats.diverged,
            "bwd_iters": bst.iters,
            "bwd_residual": bst.residual,
            "bwd_converged": bst.converged,
            "gates": gates,
            # the per-step summary (SUMMARY_KEYS), computed here so that a run of steps keeps only scalars
            "fwd_iters_mean": jnp.mean(stats.iters.astype(jnp.float32)),
            "fwd_iters_max": jnp.max(stats.iters),
            "bwd_iters_mean": jnp.mean(bst.iters.astype(jnp.float32)),
            "bwd_iters_max": jnp.max(bst.iters),
            "converged_frac": jnp.mean(stats.converged.astype(jnp.float32)),
            "bwd_converged_frac": jnp.mean(bst.converged.astype(jnp.float32)),
            "fwd_diverged_frac": jnp.mean(stats.diverged.astype(jnp.float32)),
            "fwd_residual_max": jnp.max(stats.residual),
        }
        if gates.size:
            metrics["gate_mean"] = jnp.mean(gates)
        if sur_error is not None:
            metrics["surrogate_error"] = sur_error
        if capacity:
            metrics["fwd_trajectory"] = stats.trajectory
            metrics["bwd_trajectory"] = bst.trajectory
        return new_state, metrics

    def evaluate(params, live: LiveControls):
        x, y = task.eval_set
        probe = backward_probe((x.shape[0],), 0)
        out, stats, gates = forward(params, x, live, probe)
        loss, metric = task.loss(out, y)
        per_sample = jax.vmap(lambda o, t: task.loss(o[None], t[None]))(out, y)
        result = {
            "loss": loss, "metric": metric, "sample_loss": per_sample[0], "sample_metric": per_sample[1],
            "fwd_iters": stats.iters, "fwd_residual": stats.residual, "fwd_converged": stats.converged,
            "gates": gates, "output": out,
        }
        if task.eval_extras is not None:  # the task's own per-sample numbers (digits: confidence)
            result.update(task.eval_extras(out, y))
        return result

    generate = None
    if task.generate is not None:  # the task's free-running generation (sine)
        def generate(params, live: LiveControls):
            def predict(x):
                out, stats, _ = forward(params, x, live, backward_probe((x.shape[0],), 0))
                return out, stats.iters

            return task.generate(predict)

        generate = jax.jit(generate)

    contraction = None
    if model.contraction is not None:
        def contraction(params, live: LiveControls):
            x = task.eval_set[0][:8]
            return jax.vmap(lambda xi: model.contraction(params, xi, live.gate, solve_settings(cfg, live)))(x)

        contraction = jax.jit(contraction)

    init_jit = jax.jit(init)  # one compilation (cached on disk) instead of a dispatch per operation

    def init_state(seed) -> TrainState:
        return init_jit(jnp.asarray(seed, jnp.int32))  # a fixed dtype: every seed shares the one compilation

    init_state.__doc__ = init.__doc__
    init_state._cache_size = init_jit._cache_size
    trainer = Trainer(cfg, task, model, init_state, jax.jit(step), run_steps_of(step), jax.jit(evaluate), generate,
                      contraction)
    if cfg.grow != "off" and rule:  # units (or wormholes) of the wormhole net added and deleted by seed 003's rule
        from .wormhole_growth import growing_trainer

        return growing_trainer(trainer)
    return trainer


def run_steps_of(step: Callable, row_keys: tuple[str, ...] = SUMMARY_KEYS) -> Callable:
    """`Trainer.run` for the step function `step(state, live) -> (state, metrics)`: a jitted
    `run_steps(state, live, n, stop_below=-inf)`, its rows the metrics `row_keys` that the step has."""

    def run(state: TrainState, live: LiveControls, n, stop_below):
        """`n` steps (at most STEPS_PER_CALL) in one compiled loop, or fewer: it stops after the first step
        whose loss is <= `stop_below` (-inf: never). Returns the state and {"count": steps taken, "rows":
        each summary key stacked over the steps (the first `count` entries are valid), "last": the last
        step's full metrics}."""
        _, shapes = jax.eval_shape(step, state, live)
        rows = {k: jnp.zeros((STEPS_PER_CALL,), shapes[k].dtype) for k in row_keys if k in shapes}
        last = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
        n = jnp.clip(jnp.asarray(n, jnp.int32), 0, STEPS_PER_CALL)

        def cond(carry):
            i, _, _, _, reached = carry
            return (i < n) & ~reached

        def body(carry):
            i, state, rows, _, _ = carry
            state, metrics = step(state, live)
            rows = {k: rows[k].at[i].set(metrics[k]) for k in rows}
            return i + 1, state, rows, metrics, metrics["loss"] <= stop_below

        count, state, rows, last, _ = jax.lax.while_loop(cond, body, (jnp.int32(0), state, rows, last, False))
        return state, {"count": count, "rows": rows, "last": last}

    run_jit = jax.jit(run)

    def run_steps(state: TrainState, live: LiveControls, n: int, stop_below: float = -math.inf):
        # fixed dtypes: a Python int and an int32 array would be two compilations
        return run_jit(state, live, np.int32(n), np.float32(stop_below))

    run_steps.__doc__ = run.__doc__
    run_steps._cache_size = run_jit._cache_size  # what the no-recompilation checks read
    return run_steps


@functools.lru_cache(maxsize=16)
def _built_trainer(structure: TrainConfig) -> Trainer:
    return build_trainer(structure)


_building = threading.RLock()  # one build at a time: two threads asking for the same new trainer (the dashboard's
# preload and its first page) get one build, not two racing ones (lru_cache alone lets both build)


def trainer_for(config: TrainConfig) -> Trainer:
    """`build_trainer(config)`, built once per process for configs that differ only in seed and live controls.

    The one trainer cache of the project (CLI, dashboard, experiments, tests). The live controls reach the
    jitted functions as traced `LiveControls` and the seed only `init`, so such configs share one compiled
    step: a resumed run, a new seed or another gate starts at once. The returned trainer carries `config`.
    """
    for name in LiveControls._fields:
        check_value(name, getattr(config, name))
    with _building:
        return _built_trainer(structure_of(config))._replace(config=config)


def structure_of(config: TrainConfig) -> TrainConfig:
    """`config` with its live controls and seed at their defaults: what shapes the compiled functions (the key of
    every cache of built functions: trainers, settling traces, solve-vs-pass comparisons)."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                if f.name in LiveControls._fields or f.name == "seed"}
    return dataclasses.replace(config, **defaults)


def summarize(metrics: dict) -> dict:
    """Per-step scalars (plain Python numbers, SUMMARY_KEYS) from a step's metrics: what metrics.jsonl holds."""
    values = jax.device_get({k: metrics[k] for k in SUMMARY_KEYS if k in metrics})
    return {k: values[k].item() if k in values else None for k in SUMMARY_KEYS}


def summarize_run(out: dict) -> list[dict]:
    """The per-step summaries (as `summarize` gives them) of a `Trainer.run` call, in step order."""
    count, rows = jax.device_get((out["count"], out["rows"]))
    count = int(count)
    keys = [k for k in SUMMARY_KEYS if k in rows] + [k for k in rows if k not in SUMMARY_KEYS]  # + a trainer's own
    absent = {k: None for k in SUMMARY_KEYS if k not in rows}
    columns = [rows[k][:count].tolist() for k in keys]  # plain Python numbers
    return [{**dict(zip(keys, values)), **absent} for values in zip(*columns)]


class Call(NamedTuple):
    """One call of `Trainer.run` that `run_calls` should make; `tag` comes back with its results."""

    live: LiveControls
    n: int
    stop_below: float = -math.inf
    tag: object = None


def run_calls(trainer: Trainer, state: TrainState, plan: Callable[[int], Call | None],
              in_flight: int | Callable[[], int] = 2):
    """Train call after call (two in flight by default): yields (state, rows, last, call) per finished call, in order.

    `plan(step)` is asked for the next call before the previous one's results are read; `step` is the step
    count the state will have when that call starts (None from plan: no further call). `rows` are the
    call's per-step summaries (`summarize_run`), `last` its last step's full metrics (on the device).
    After a call that stopped early (its loss reached `stop_below`) the generator ends: the call dispatched
    after it started from a state that was never reached and is dropped. The caller may stop iterating
    at any time; the state it last received is consistent.

    `in_flight` (or a function giving it before each call): 2, the next call is queued while the previous
    one runs; 1, each call waits until the previous one finished. Several loops sharing one CPU device
    need 1: XLA starts a queued call as soon as the one it depends on ends, on the same thread, so a loop
    that always has a call queued keeps that thread and the other loops wait.
    """
    step = int(state.step)
    pending = None
    while True:
        if pending is not None and (in_flight() if callable(in_flight) else in_flight) < 2:
            jax.block_until_ready(pending[1]["count"])
        call = plan(step)
        dispatched = None
        if call is not None and call.n > 0:
            base = pending[0] if pending is not None else state
            dispatched = (*trainer.run(base, call.live, call.n, call.stop_below), call)
            step += min(call.n, STEPS_PER_CALL)
        if pending is not None:
            new_state, out, done = pending
            rows = summarize_run(out)
            yield new_state, rows, out["last"], done
            if len(rows) < min(done.n, STEPS_PER_CALL):
                return
        if dispatched is None:
            return
        pending = dispatched


def train(
    trainer: Trainer,
    steps: int,
    *,
    state: TrainState | None = None,
    live: LiveControls | None = None,
    callback: Callable[[list[dict], TrainState], bool | None] | None = None,
    stop_below: float | None = None,
) -> tuple[TrainState, list[dict]]:
    """Run `steps` steps; returns the final state and the history (one `summarize` dict a step).

    Steps run STEPS_PER_CALL at a time (`run_calls`). `callback(rows, state)` runs after each call with
    that call's summaries and the state after them; returning True stops there. `stop_below`: stop after
    the first step whose loss is <= this.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    cfg = trainer.config
    state = trainer.init(cfg.seed) if state is None else state
    live = live_controls(cfg) if live is None else live
    stop = -math.inf if stop_below is None else stop_below
    start = int(state.step)
    history: list[dict] = []

    def plan(step: int) -> Call | None:
        left = steps - (step - start)
        return Call(live, min(STEPS_PER_CALL, left), stop) if left > 0 else None

    for reached, rows, _, _ in run_calls(trainer, state, plan):
        state = reached
        history.extend(rows)
        if callback is not None and callback(rows, state):
            break
    return state, history
