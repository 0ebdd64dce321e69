"""Surrogates of the project's fixed-point nets, and warm starts: `fix` started from a surrogate's guess.

A model with one fixed-point solve (`Model.solve`, `Model.readout`: wormhole, resnet_fp, small) maps an
input `x` to a state `z*(x)` (a pytree: every layer of every block) and reads its output from it. A
two-layer surrogate (`twnn_jax.surrogate`) learns `x -> z*(x)` on flattened inputs and states. Its guess
can replace the solve (one pass: `readout(surrogate(x))`) or start it (`z0`): the fixed point is the
same, the iterations fewer when the guess is close.

In training (`TrainConfig.warm_start == "surrogate"`) the surrogate lives in `TrainState.surrogate` and
learns alongside the network: every step it gives `z0` for the batch (no gradient flows to it through
`fix`), then takes one Adam step of its own loss on the batch's detached fixed points.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from . import surrogate

SMALL_EVAL_SET = 64  # an evaluation set smaller than this is topped up with fresh samples in `study`
SURROGATE_LR = 3e-3  # Adam step size of the surrogate trained alongside (ours)
_OPT = optax.adam(SURROGATE_LR)


def check_model(model) -> None:
    """ValueError unless `model` exposes its fixed point (one solve, then a read-out)."""
    if model.solve is None or model.readout is None:
        raise ValueError(f"warm_start needs a model with one fixed-point solve (wormhole, resnet_fp, small); "
                         f"model {model.kind!r} has none")


def state_template(model, params, x_one, settings):
    """The (shape-only) state pytree of one sample's solve, and its flat size."""
    state = jax.eval_shape(lambda p, x: model.solve(p, x, 0.0, settings)[0], params, x_one)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), state)
    flat, unravel = ravel_pytree(zeros)
    return unravel, flat.shape[0]


def init_state(key, n_in: int, n_state: int, hidden: int) -> dict:
    """A surrogate trained alongside: parameters whose output layer starts at zero (the first guesses are the
    cold start's zeros, so early training is not slowed by a random guess) and its Adam state."""
    params = surrogate.init_surrogate(key, n_in, n_state, hidden)
    params["w2"] = jnp.zeros_like(params["w2"])
    return {"params": params, "opt": _OPT.init(params)}


def guess(params, x, unravel):
    """The surrogate's states for a batch `x` (batch, ...) as a batch of state pytrees (no gradient)."""
    flat = surrogate.predict(jax.lax.stop_gradient(params), x.reshape(x.shape[0], -1))
    return jax.vmap(unravel)(flat)


def apply_from(model, params, x, gate_bias, settings, probe, z0):
    """One sample through the model with its solve started at `z0`: (output, stats, gates, state)."""
    state, stats, g = model.solve(params, x, gate_bias, settings, probe, z0)
    return model.readout(params, x, state), stats, g, state


def update(sur: dict, x, state):
    """One Adam step of the surrogate on a batch of (detached) fixed points; returns (new sur, mean relative
    error of its guess before the step)."""
    target = jax.vmap(lambda s: ravel_pytree(s)[0])(jax.lax.stop_gradient(state))
    x = x.reshape(x.shape[0], -1)
    err = jnp.mean(surrogate.relative_error(surrogate.predict(sur["params"], x), target))
    grads = jax.grad(surrogate.loss)(sur["params"], x, target)
    updates, opt = _OPT.update(grads, sur["opt"], sur["params"])
    return {"params": optax.apply_updates(sur["params"], updates), "opt": opt}, err


# ---- a surrogate of a trained net (twnn surrogate) -----------------------------------------------------
def solve_batch(model, params, x, gate_bias, settings, z0=None):
    """Per sample over a batch: (output, FixStats, flat fixed point (batch, n)); `z0` a batch of states or None."""
    probe = None
    if z0 is None:
        out, stats, _, state = jax.vmap(lambda xi: apply_from(model, params, xi, gate_bias, settings, probe, None))(x)
    else:
        out, stats, _, state = jax.vmap(
            lambda xi, zi: apply_from(model, params, xi, gate_bias, settings, probe, zi))(x, z0)
    return out, stats, jax.vmap(lambda s: ravel_pytree(s)[0])(state)


def one_pass(model, params, sur_params, x, unravel):
    """The model's outputs with the surrogate's guess in place of the solve: one pass, no iteration."""
    z = guess(sur_params, x, unravel)
    return jax.vmap(lambda xi, zi: model.readout(params, xi, zi))(x, z)


def study(trainer, state, live, *, hidden: int = 64, steps: int = 3000, n_train: int = 4096, n_test: int = 512,
          seed: int = 0, repeats: int = 10) -> dict:
    """Train a surrogate of a trained net's fixed point and measure it (the numbers of `twnn surrogate`).

    Pairs: `n_train` inputs drawn by the task's sampler (digits: the training split) and their fixed points.
    Held out: the task's evaluation set (digits: the 360 test images) and, when it has fewer than
    `SMALL_EVAL_SET` samples (sine: 8 windows), fresh samples from another key, up to `n_test` in all.
    Reports the relative error of the fixed point, the task metric with the surrogate in place of the
    solve (digits: test accuracy; sine: free-running RMSE too), the time per batch of the solve and of the
    one pass, and the forward iterations of solves started at zeros and at the surrogate's guess
    (per-sample distribution of the saving).
    """
    from .train import solve_settings

    model, task = trainer.model, trainer.task
    check_model(model)
    params = state.params
    settings = solve_settings(trainer.config, live)
    gate = live.gate
    key = jax.random.PRNGKey(seed)
    k_train, k_test = jax.random.split(key)
    x_train, _ = task.sample(k_train, n_train)
    x_eval, y_eval = task.eval_set
    x_test = x_eval
    if x_eval.shape[0] < SMALL_EVAL_SET:  # sine: 8 windows; fresh phases from another key (digits: the test split only)
        x_test = jnp.concatenate([x_eval, task.sample(k_test, n_test - x_eval.shape[0])[0]])
    unravel, n_state = state_template(model, params, x_train[0], settings)

    solve = jax.jit(lambda p, x: solve_batch(model, p, x, gate, settings))
    _, st_train, z_train = solve(params, x_train)
    out_test, st_test, z_test = solve(params, x_test)
    flat = lambda x: x.reshape(x.shape[0], -1)  # noqa: E731
    fit = surrogate.fit(flat(x_train), z_train, hidden=hidden, steps=steps, seed=seed,
                        x_test=flat(x_test), z_test=z_test, every=max(1, steps // 10))
    sp = fit.params
    rel = jax.device_get(surrogate.relative_error(surrogate.predict(sp, flat(x_test)), z_test))

    # the task metric, solve against one pass, on the task's evaluation set
    fast = jax.jit(lambda p, s, x: one_pass(model, p, s, x, unravel))
    out_eval_solve = out_test[: x_eval.shape[0]]
    out_eval_fast = fast(params, sp, x_eval)
    metric_solve = float(task.loss(out_eval_solve, y_eval)[1])
    metric_fast = float(task.loss(out_eval_fast, y_eval)[1])

    # warm starts on the held-out inputs: iterations from zeros against from the guess
    z0 = guess(sp, x_test, unravel)
    warm_solve = jax.jit(lambda p, x, z: solve_batch(model, p, x, gate, settings, z))
    out_warm, st_warm, z_warm = warm_solve(params, x_test, z0)
    cold, hot = jax.device_get((st_test.iters, st_warm.iters))
    saved = cold - hot

    result = {
        "task": task.name, "model": model.kind, "hidden": hidden, "steps": steps, "n_train": int(n_train),
        "n_test": int(x_test.shape[0]), "state_size": int(n_state),
        "relative_error_mean": float(rel.mean()), "relative_error_median": float(jnp.median(rel)),
        "relative_error_p90": float(jnp.percentile(rel, 90)),
        "held_out_error_during_fit": fit.held_out.tolist(), "fit_every": fit.every,
        "metric_name": task.metric_name, "metric_solve": metric_solve, "metric_surrogate": metric_fast,
        "solve_converged_frac": float(jnp.mean(st_test.converged)),
        "warm_converged_frac": float(jnp.mean(st_warm.converged)),
        "fixed_point_change_warm": float(jnp.max(jnp.abs(z_warm - z_test))),
        "fwd_iters_cold": surrogate.distribution(cold), "fwd_iters_warm": surrogate.distribution(hot),
        "fwd_iters_saved": surrogate.distribution(saved),
        "fwd_iters_ratio": float(cold.mean() / max(hot.mean(), 1e-9)),
        "batch": int(x_test.shape[0]),
        "time_solve_s": surrogate.time_per_batch(solve, params, x_test, repeats=repeats),
        "time_one_pass_s": surrogate.time_per_batch(fast, params, sp, x_test, repeats=repeats),
        "time_warm_solve_s": surrogate.time_per_batch(
            jax.jit(lambda p, s, x: warm_solve(p, x, guess(s, x, unravel))), params, sp, x_test, repeats=repeats),
    }
    if trainer.generate is not None and task.generate is not None:  # sine: free-running, solve and one pass
        def predict(x):
            return fast(params, sp, x), jnp.zeros((x.shape[0],), jnp.int32)

        result["free_running_rmse_solve"] = float(trainer.generate(params, live)["rmse"])
        result["free_running_rmse_surrogate"] = float(task.generate(predict)["rmse"])
    return result


SUMMARY_DIR = "surrogate"  # inside a run directory: surrogate/summary.json


def study_run(directory, *, hidden: int = 64, steps: int = 3000, n_train: int = 4096, repeats: int = 10) -> dict:
    """`study` for the run saved in `directory`; writes `directory/surrogate/summary.json` and returns it.

    ValueError (one line) when `directory` holds no run, or the run's model has no single fixed point."""
    from pathlib import Path

    from .checkpoint import dumps_strict, load_checkpoint, write_atomic
    from .experiments.provenance import code_version
    from .train import live_controls, trainer_for

    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: not a directory (give a run directory written by twnn train)")
    try:
        config, state = load_checkpoint(directory)
    except FileNotFoundError as err:
        raise ValueError(f"{err}") from None
    trainer = trainer_for(config)
    try:
        check_model(trainer.model)
    except ValueError as err:
        raise ValueError(f"{directory}: {err}") from None
    result = study(trainer, state, live_controls(config), hidden=hidden, steps=steps, n_train=n_train,
                   repeats=repeats)
    result = {"run": str(directory), "trained_steps": int(state.step), "code": code_version(), **result}
    write_atomic(directory / SUMMARY_DIR / "summary.json", (dumps_strict(result, indent=1) + "\n").encode())
    return result


def summary_text(r: dict) -> str:
    """`study`'s numbers as a few lines for people (what `twnn surrogate` prints)."""
    c, w, s = r["fwd_iters_cold"], r["fwd_iters_warm"], r["fwd_iters_saved"]
    lines = [
        f"surrogate of {r['task']} / {r['model']} (state of {r['state_size']} values), two layers, hidden "
        f"{r['hidden']}, {r['steps']} steps on {r['n_train']} pairs",
        f"  relative error on {r['n_test']} held-out inputs: mean {r['relative_error_mean']:.4f}, median "
        f"{r['relative_error_median']:.4f}, p90 {r['relative_error_p90']:.4f}",
        f"  {r['metric_name']} on the evaluation set: solve {r['metric_solve']:.4g}, surrogate (one pass) "
        f"{r['metric_surrogate']:.4g}",
    ]
    if "free_running_rmse_solve" in r:
        lines.append(f"  free-running RMSE: solve {r['free_running_rmse_solve']:.4g}, surrogate "
                     f"{r['free_running_rmse_surrogate']:.4g}")
    lines += [
        f"  time per batch of {r['batch']}: solve {1e3 * r['time_solve_s']:.3g} ms, one pass "
        f"{1e3 * r['time_one_pass_s']:.3g} ms, warm-started solve {1e3 * r['time_warm_solve_s']:.3g} ms",
        f"  forward iterations per sample: from zeros mean {c['mean']:.2f} (median {c['median']:g}, max "
        f"{c['max']:g}), from the surrogate mean {w['mean']:.2f} (median {w['median']:g}, max {w['max']:g}); "
        f"{r['fwd_iters_ratio']:.2f}x fewer",
        f"  saved per sample: median {s['median']:g}, p10 {s['p10']:g}, p90 {s['p90']:g}, min {s['min']:g}",
    ]
    return "\n".join(lines)
