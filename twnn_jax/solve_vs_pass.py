"""Solve against one pass: a run's surrogate (warm starts, `twnn_jax.warm`) next to the fixed point it guesses.

`compare_for(config)` is one jitted function per run structure (shared by runs that differ only in seed
and live controls, as `train.trainer_for` is): `(params, surrogate params, live, index) -> dict` with the
fixed point of evaluation sample `index` and the surrogate's guess of it (flattened states), and the
forward iterations of every evaluation sample's solve started from zeros (cold) and from the guess
(warm). The live values and the index are traced: changing them never recompiles.

The figures are plain dicts (Plotly's JSON form), like `twnn_jax.figures`: the guess beside the fixed
point over units, the surrogate's relative error over training (the history's `surrogate_error`), and
the iterations saved per sample.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import warm
from .figures import base_figure, note_annotation, scatter_trace
from .settings import TrainConfig
from .train import structure_of

COLD, WARM, GUESS = "#1f77b4", "#ff7f0e", "#d62728"


def build_compare(model, task, config: TrainConfig):
    """The (un-jitted) comparison for a model with one fixed-point solve on `task`'s evaluation set."""
    from .train import solve_settings

    warm.check_model(model)
    x_eval = jnp.asarray(task.eval_set[0])

    def compare(params, sur_params, live, index):
        settings = solve_settings(config, live)
        unravel, _ = warm.state_template(model, params, x_eval[0], settings)
        _, cold, z_star = warm.solve_batch(model, params, x_eval, live.gate, settings)
        z0 = warm.guess(sur_params, x_eval, unravel)
        _, hot, _ = warm.solve_batch(model, params, x_eval, live.gate, settings, z0)
        flat_guess = jax.vmap(lambda s: ravel_pytree(s)[0])(z0)
        return {"fixed_point": z_star[index], "guess": flat_guess[index], "cold_iters": cold.iters,
                "warm_iters": hot.iters, "index": index}

    return compare


@functools.lru_cache(maxsize=8)
def _built(structure: TrainConfig):
    from .train import trainer_for

    trainer = trainer_for(structure)
    return jax.jit(build_compare(trainer.model, trainer.task, structure))


def compare_for(config: TrainConfig):
    """The jitted comparison `(params, surrogate params, live, index) -> dict` for runs of `config`'s structure."""
    return _built(structure_of(config))


def relative_error(fixed_point, guess) -> float:
    """||guess - z*|| / ||z*|| (0 when both are zero)."""
    z, g = np.asarray(fixed_point, float), np.asarray(guess, float)
    norm = float(np.linalg.norm(z))
    return float(np.linalg.norm(g - z)) / norm if norm > 0 else float(np.linalg.norm(g))


def guess_figure(out: dict, *, subtitle: str = "") -> dict:
    """The fixed point of one sample and the surrogate's guess of it, unit by unit (flattened state)."""
    z, g = np.asarray(out["fixed_point"], float), np.asarray(out["guess"], float)
    units = np.arange(z.shape[0])
    traces = [
        {"type": "bar", "x": units.tolist(), "y": z.tolist(), "name": "fixed point z* (solve)",
         "marker": {"color": COLD}, "opacity": 0.75},
        scatter_trace(units.tolist(), g.tolist(), name="surrogate's guess (one pass)", mode="lines+markers",
                 line={"color": GUESS, "width": 1.5}, marker={"size": 4}),
    ]
    title = (f"Sample {int(out['index'])}: surrogate vs fixed point (relative error "
             f"{relative_error(z, g):.3g})")
    return base_figure(traces, title, "unit (the state's values, layer after layer)", "value", height=320,
                   meta={"kind": "surrogate_guess", "subtitle": subtitle, "index": int(out["index"]),
                         "relative_error": relative_error(z, g)})


def error_figure(history: Sequence[dict]) -> dict:
    """The surrogate's relative error on each training batch (before its own step), over training."""
    rows = [h for h in history if h.get("surrogate_error") is not None]
    steps = [int(h["step"]) for h in rows]
    errors = [float(h["surrogate_error"]) for h in rows]
    traces = [scatter_trace(steps, errors, name="surrogate error", mode="lines", line={"color": GUESS})]
    layout = {"yaxis": {"type": "log"}}
    if not rows:
        layout["annotations"] = [note_annotation("No steps yet: press Play or Step")]
    return base_figure(traces, "Surrogate's relative error over training", "step", "‖guess − z*‖ / ‖z*‖", height=300,
                   layout=layout, meta={"kind": "surrogate_error", "points": len(rows)})


def iterations_figure(out: dict) -> dict:
    """Forward iterations of every evaluation sample, from zeros and from the surrogate's guess."""
    cold, hot = np.asarray(out["cold_iters"], int), np.asarray(out["warm_iters"], int)
    samples = np.arange(cold.shape[0])
    i = int(out["index"])
    traces = [
        scatter_trace(samples.tolist(), cold.tolist(), name="from zeros (cold)", mode="markers",
                 marker={"color": COLD, "size": 5}),
        scatter_trace(samples.tolist(), hot.tolist(), name="from the surrogate (warm)", mode="markers",
                 marker={"color": WARM, "size": 5}),
        scatter_trace([i, i], [int(cold[i]), int(hot[i])], name=f"sample {i}", mode="lines+markers",
                 line={"color": "#444", "width": 2}, marker={"size": 9, "symbol": "diamond"}),
    ]
    summary = iterations_summary(out)
    title = (f"Forward iterations on the evaluation set: mean {summary['cold_mean']:.1f} cold, "
             f"{summary['warm_mean']:.1f} warm ({summary['ratio']:.2f}x fewer)")
    return base_figure(traces, title, "evaluation sample", "forward iterations", height=320,
                   meta={"kind": "warm_iterations", **summary})


def iterations_summary(out: dict) -> dict:
    """Means and the per-sample saving of the warm start (plain numbers)."""
    cold, hot = np.asarray(out["cold_iters"], float), np.asarray(out["warm_iters"], float)
    saved = cold - hot
    return {"index": int(out["index"]), "cold_mean": float(cold.mean()), "warm_mean": float(hot.mean()),
            "ratio": float(cold.mean() / max(hot.mean(), 1e-9)), "saved_median": float(np.median(saved)),
            "saved_min": float(saved.min()), "saved_max": float(saved.max()),
            "sample_cold": int(cold[int(out["index"])]), "sample_warm": int(hot[int(out["index"])])}
