"""The one iteration routine behind every solve: forward, tangent and adjoint.

`iterate(step, x0, ...)` repeats `x <- step(x)` (plain), a damped version of it, or Anderson
acceleration, until the residual `||step(x) - x||` is at most `tol`, the residual stops being
finite, or `max_iter` steps have been taken. It works on one sample; under `jax.vmap` every sample
keeps its own counter and a sample that has finished stops changing while the slowest one runs on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

SOLVERS = ("plain", "damped", "anderson")
NORMS = ("max", "l2")


class FixStats(NamedTuple):
    """Statistics of one solve (per sample under `jax.vmap`).

    iters:      int32, steps taken.
    residual:   the last residual `||z_t - z_{t-1}||` (divided by `||z_t||` for a relative test);
                `inf` once a step produced a non-finite value.
    converged:  bool, the residual reached `tol`. False after `max_iter` or on a non-finite step.
    diverged:   bool, a step produced a non-finite value; the returned state is the last finite one.
    trajectory: the residual at every step, shape `(capacity,)`, entries past `iters` are NaN
                (never computed); `None` unless a capacity was asked for.
    """

    iters: jax.Array
    residual: jax.Array
    converged: jax.Array
    diverged: jax.Array
    trajectory: jax.Array | None = None


class Settings(NamedTuple):
    """The static (compile-time) choices of an iteration. Numbers that users change live are not here."""

    solver: str = "plain"
    norm: str = "max"
    relative: bool = False
    trajectory: int = 0
    anderson_memory: int = 5


def tree_norm(x, norm: str) -> jax.Array:
    """Max-abs (`"max"`) or Euclidean (`"l2"`) norm over all leaves of a pytree."""
    leaves = [jnp.ravel(leaf) for leaf in jax.tree.leaves(x) if jnp.size(leaf) > 0]
    if not leaves:
        return jnp.zeros(())
    largest = jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)) for leaf in leaves]))
    if norm == "max":
        return largest
    # Euclidean, scaled by the largest entry: squares of entries past sqrt(dtype max) (~1.8e19 in float32)
    # would overflow to inf, and a finite step would read as non-finite (or ||d|| / inf = 0 as converged).
    scale = jnp.where((largest > 0) & jnp.isfinite(largest), largest, 1)
    return scale * jnp.sqrt(sum(jnp.sum(jnp.square(leaf / scale)) for leaf in leaves))


def _tree_where(cond, a, b):
    return jax.tree.map(lambda u, v: jnp.where(cond, u, v), a, b)


def anderson_init(x, memory: int):
    """The empty history `anderson_next` starts from: `memory` rows of the flattened x and of f(x)."""
    flat, _ = ravel_pytree(x)
    n = flat.shape[0]
    return (jnp.zeros((memory, n), flat.dtype), jnp.zeros((memory, n), flat.dtype))


def anderson_next(x, fx, t, hist, *, memory: int, mixing, reg):
    """One Anderson (type II) update with a history of the last `memory` pairs (x, f(x))."""
    flat_x, unravel = ravel_pytree(x)
    flat_fx, _ = ravel_pytree(fx)
    xs, fs = hist
    slot = t % memory
    xs = lax.dynamic_update_index_in_dim(xs, flat_x, slot, 0)
    fs = lax.dynamic_update_index_in_dim(fs, flat_fx, slot, 0)
    g = fs - xs
    valid = jnp.arange(memory) < jnp.minimum(t + 1, memory)
    both = valid[:, None] & valid[None, :]
    if jnp.finfo(g.dtype).bits < 32:  # the least-squares solve has no half-precision kernels: do it in float32
        g = g.astype(jnp.float32)
    gram = jnp.where(both, g @ g.T, 0.0)
    n_valid = jnp.sum(valid)
    scale = jnp.trace(gram) / n_valid + jnp.finfo(gram.dtype).tiny
    diag = jnp.where(valid, reg * scale, 1.0)
    gram = gram + jnp.diag(diag)
    ones = valid.astype(gram.dtype)
    system = jnp.block([[jnp.zeros((1, 1), gram.dtype), ones[None, :]], [ones[:, None], gram]])
    # Residuals so small that the regularised Gram matrix underflows (or non-finite ones) make the system
    # singular: solve a harmless one instead and take the plain step. Swapping the system *before* the solve
    # keeps unrolled gradients finite too (a NaN inside a discarded branch still poisons its gradient).
    sane = jnp.all(jnp.isfinite(gram)) & (reg * scale >= jnp.finfo(gram.dtype).tiny)
    system = jnp.where(sane, system, jnp.eye(memory + 1, dtype=gram.dtype))
    rhs = jnp.zeros((memory + 1,), gram.dtype).at[0].set(1.0)
    alpha = jnp.linalg.solve(system, rhs)[1:].astype(fs.dtype)
    new = mixing * (alpha @ fs) + (1.0 - mixing) * (alpha @ xs)
    # A singular (or nearly) system gives a non-finite mix: fall back to the plain step for that sample.
    new = jnp.where(sane & jnp.all(jnp.isfinite(new)), new, flat_fx)
    return unravel(new), (xs, fs)


def iterate(
    step: Callable,
    x0,
    *,
    tol,
    max_iter,
    settings: Settings = Settings(),
    damping=0.5,
    anderson_mixing=1.0,
    anderson_reg=1e-6,
    scan_length: int = 0,
):
    """Iterate `x <- step(x)` from `x0`; returns `(x, FixStats)`. See the module docstring.

    The loop carries only the step count, the state, the last residual (and the optional trajectory
    and Anderson history): whether to go on, and the statistics, are read off the last residual.
    Under `jax.vmap` the batching rule of `lax.while_loop` freezes samples whose condition is false.
    `scan_length > 0` runs a `lax.scan` of that many steps instead, each masked by the same condition,
    so that the loop can be differentiated by backprop ("unrolled" gradients).
    """
    dtype = jnp.result_type(*jax.tree.leaves(x0)) if jax.tree.leaves(x0) else jnp.float32
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.float32
    tol = jnp.asarray(tol, dtype)
    max_iter = jnp.asarray(max_iter, jnp.int32)
    damping = jnp.asarray(damping, dtype)
    capacity = settings.trajectory
    tiny = jnp.finfo(dtype).tiny

    def residual_of(x, fx):
        r = tree_norm(jax.tree.map(jnp.subtract, fx, x), settings.norm).astype(dtype)
        if settings.relative:
            # a step to (nearly) zero divides by `tiny`: cap at the largest finite value, so that only a
            # non-finite step reads as inf (diverged); a huge relative residual is just "not converged"
            ratio = r / jnp.maximum(tree_norm(fx, settings.norm).astype(dtype), tiny)
            r = jnp.where(jnp.isfinite(r), jnp.minimum(ratio, jnp.finfo(dtype).max), r)
        return lax.stop_gradient(r)

    def go_on(carry):
        t, _, r = carry[:3]
        # `r > tol` is False for NaN, `r < inf` is False for inf: a non-finite residual stops the loop
        return (t == 0) | ((r > tol) & (r < jnp.inf) & (t < max_iter))

    def body(carry):
        t, x, _, traj, hist = carry
        fx = step(x)
        r = residual_of(x, fx)
        finite = jnp.isfinite(r)
        if settings.solver == "plain":
            x_new = fx
        elif settings.solver == "damped":
            x_new = jax.tree.map(lambda a, b: a + damping * (b - a), x, fx)
        else:
            x_new, hist = anderson_next(
                x, fx, t, hist, memory=settings.anderson_memory, mixing=anderson_mixing, reg=anderson_reg
            )
            x_new = _tree_where(r <= tol, fx, x_new)  # once converged, hand back f(x): closer than the mix
        x = _tree_where(finite, x_new, x)  # a non-finite step is not taken
        if capacity:
            idx = jnp.minimum(t, capacity - 1)
            traj = traj.at[idx].set(jnp.where(t < capacity, jnp.where(finite, r, jnp.inf), traj[idx]))
        return t + 1, x, r, traj, hist

    init = (
        jnp.zeros((), jnp.int32),
        x0,
        jnp.full((), jnp.inf, dtype),
        jnp.full((max(capacity, 1),), jnp.nan, dtype),
        anderson_init(x0, settings.anderson_memory) if settings.solver == "anderson" else (),
    )
    if scan_length:
        def masked(carry, _):
            return _tree_where(go_on(carry), body(carry), carry), None

        final, _ = lax.scan(masked, init, None, length=scan_length)
    else:
        final = lax.while_loop(go_on, body, init)
    t, x, r, traj, _ = final
    finite = jnp.isfinite(r)
    stats = FixStats(
        iters=t,
        residual=jnp.where(finite, r, jnp.inf),
        converged=finite & (r <= tol),
        diverged=~finite,
        trajectory=traj if capacity else None,
    )
    return x, stats
