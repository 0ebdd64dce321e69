"""Backward (adjoint) statistics that leave a jitted step as ordinary outputs.

The adjoint solve runs inside the transpose of a linear solve, where it can return nothing but a
cotangent. So `fix` takes an optional *probe*: a float array of zeros that enters the solution with a
zero effect, and whose cotangent the adjoint solve fills with its statistics. Differentiate the
loss with respect to the probe as well and decode that gradient with `backward_stats`:

>>> probe = backward_probe()                          # one per sample: backward_probe((batch,))
>>> loss = lambda p, probe: jnp.sum(fix(f, z0, p, probe=probe)[0])
>>> value, grads, bstats = value_and_grad_with_stats(loss)(params, probe)   # doctest: +SKIP
>>> bstats.iters, bstats.residual, bstats.converged                       # doctest: +SKIP

When several `fix` calls share one probe, their statistics add up: `iters` is the total number of
adjoint steps, `residual` the sum of final residuals and `converged` is True only when every solve
converged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

_HEADER = 3  # iters, residual, number of solves that failed to converge


class BackwardStats(NamedTuple):
    """Statistics of the adjoint solve `u = g + J^T u` (per sample when the probe is batched).

    iters:      adjoint steps taken (summed over the solves that share the probe).
    residual:   final adjoint residual, relative to `||g||`.
    converged:  bool, every adjoint solve reached its tolerance.
    failures:   number of adjoint solves that did not converge.
    trajectory: residual at each adjoint step, NaN-padded; `None` unless a capacity was asked for.
    """

    iters: jax.Array
    residual: jax.Array
    converged: jax.Array
    failures: jax.Array
    trajectory: jax.Array | None = None


def backward_probe(batch_shape: tuple[int, ...] = (), trajectory: int = 0, dtype=jnp.float32) -> jax.Array:
    """Zeros to pass as `fix(..., probe=...)`; batch_shape gives one slot per sample under vmap."""
    if trajectory < 0:
        raise ValueError(f"trajectory capacity must be >= 0, got {trajectory}")
    return jnp.zeros(tuple(batch_shape) + (_HEADER + trajectory,), dtype)


def encode(stats, capacity: int, dtype) -> jax.Array:
    """Pack a FixStats of the adjoint solve into the probe's layout (used by `fix`)."""
    header = jnp.stack(
        [
            stats.iters.astype(dtype),
            jnp.asarray(stats.residual, dtype),
            (~stats.converged).astype(dtype),
        ]
    )
    if capacity == 0:
        return header
    traj = stats.trajectory
    if traj is None:
        traj = jnp.full((capacity,), jnp.nan, dtype)
    traj = jnp.asarray(traj, dtype)[:capacity]
    traj = jnp.pad(traj, (0, capacity - traj.shape[0]), constant_values=jnp.nan)
    return jnp.concatenate([header, traj])


def backward_stats(probe_grad: jax.Array) -> BackwardStats:
    """Decode the gradient with respect to a probe into BackwardStats."""
    failures = jnp.round(probe_grad[..., 2]).astype(jnp.int32)
    traj = probe_grad[..., _HEADER:] if probe_grad.shape[-1] > _HEADER else None
    return BackwardStats(
        iters=jnp.round(probe_grad[..., 0]).astype(jnp.int32),
        residual=probe_grad[..., 1],
        converged=failures == 0,
        failures=failures,
        trajectory=traj,
    )


def value_and_grad_with_stats(fun: Callable, *, has_aux: bool = False) -> Callable:
    """Like `jax.value_and_grad(fun)` for `fun(params, probe, *rest)`, plus the backward statistics.

    Returns `g(params, probe, *rest) -> (value, grads, BackwardStats)`; `value` is `(loss, aux)` when
    `has_aux`. Everything is a plain output, so `g` can sit inside `jax.jit`.
    """
    vg = jax.value_and_grad(fun, argnums=(0, 1), has_aux=has_aux)

    def wrapped(params, probe, *rest):
        value, (grads, probe_grad) = vg(params, probe, *rest)
        return value, grads, backward_stats(probe_grad)

    return wrapped
