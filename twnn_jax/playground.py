"""The 2-D playground: a fixed-point map whose state is two numbers, drawn as a phase plane.

Two layers of one unit each, with a gated wormhole from the second back to the first; both update from
the previous state (one iteration of the map):

    z1 <- tanh(w1 * x + g * v * z2 + b1),   z2 <- tanh(w2 * z1 + b2),   g = sigmoid(gate_bias)

The iteration is the damped one of the project's solver (`z <- z + damping * (f(z) - z)`, damping 1 is the
plain iteration), replayed and recorded by `settle_trace.trace_iterate` (the statistics come from
`_iterate.iterate` itself). `plane(knobs, starts)` returns everything the picture needs in one jitted call:
the arrows `f(z) - z` on a grid, the spectral norm of the iterated map's 2x2 Jacobian on a finer grid (the
map contracts where it is < 1), the fixed points (every root of the 1-D equation they satisfy, refined by
bisection), and the path from each start point. Every knob is a traced value and the shapes are static
(`MAX_STARTS` start points, unused ones masked), so moving a knob or adding a start point never recompiles.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .settle_trace import trace_iterate

W1, B1, W2, B2 = 1.5, 0.0, 2.0, 0.0  # the preset's fixed weights (the knobs are the wormhole's)
LIMIT = 1.1  # the plane shown: [-LIMIT, LIMIT]^2 (tanh keeps the map's values inside (-1, 1))
ARROWS = 15  # arrows per side
SHADE = 61  # contraction grid points per side
ROOT_GRID = 801  # z1 sampled for sign changes of the fixed-point equation
BISECT = 40  # bisection steps per root
MAX_STARTS = 8  # start points (a static size)
CAPACITY = 200  # iterations of a path recorded


class Knobs(NamedTuple):
    """The playground's live values (all traced)."""

    gate_bias: float = -1.0
    v: float = -2.5
    x: float = 0.5
    tol: float = 1e-4
    damping: float = 1.0
    max_iter: int = 100


def step(z, gate_bias, v, x):
    """One application of the map f to z = (z1, z2)."""
    g = jax.nn.sigmoid(gate_bias)
    z1 = jnp.tanh(W1 * x + g * v * z[1] + B1)
    z2 = jnp.tanh(W2 * z[0] + B2)
    return jnp.stack([z1, z2])


def _damped(z, knobs: Knobs):
    return z + knobs.damping * (step(z, knobs.gate_bias, knobs.v, knobs.x) - z)


def jacobian_norm(z, knobs: Knobs):
    """Spectral norm of the iterated (damped) map's 2x2 Jacobian at z."""
    jac = jax.jacfwd(_damped)(z, knobs)
    return jnp.linalg.norm(jac, 2)


def fixed_points(knobs: Knobs):
    """Every fixed point: z2 = tanh(w2 z1 + b2) and h(z1) = tanh(w1 x + g v z2 + b1) - z1 = 0, whose roots lie
    in (-1, 1); found by sign changes on a grid and bisection. Returns (points (ROOT_GRID-1, 2), mask)."""

    def h(z1):
        z2 = jnp.tanh(W2 * z1 + B2)
        return step(jnp.stack([z1, z2]), knobs.gate_bias, knobs.v, knobs.x)[0] - z1

    grid = jnp.linspace(-1.0, 1.0, ROOT_GRID)
    values = jax.vmap(h)(grid)
    lo, hi = grid[:-1], grid[1:]
    mask = (jnp.sign(values[:-1]) != jnp.sign(values[1:])) | (values[:-1] == 0)
    mask &= ~((values[1:] == 0) & (values[:-1] != 0))  # a root on a grid point is counted once

    def bisect(_, bounds):
        a, b = bounds
        mid = 0.5 * (a + b)
        left = jnp.sign(jax.vmap(h)(a)) != jnp.sign(jax.vmap(h)(mid))
        return jnp.where(left, a, mid), jnp.where(left, mid, b)

    a, b = jax.lax.fori_loop(0, BISECT, bisect, (lo, hi))
    z1 = 0.5 * (a + b)
    return jnp.stack([z1, jnp.tanh(W2 * z1 + B2)], axis=1), mask


def paths(knobs: Knobs, starts):
    """The damped iteration from each start point (MAX_STARTS, 2), recorded: (states (MAX_STARTS, CAPACITY+1, 2),
    residuals (MAX_STARTS, CAPACITY), iters, converged, diverged)."""

    def one(z0):
        states, residuals, stats, _ = trace_iterate(
            lambda z: step(z, knobs.gate_bias, knobs.v, knobs.x), z0, tol=knobs.tol, max_iter=knobs.max_iter,
            solver="damped", damping=knobs.damping, capacity=CAPACITY)
        return states, residuals, stats.iters, stats.converged, stats.diverged

    return jax.vmap(one)(starts)


def _plane(knobs: Knobs, starts):
    axis = jnp.linspace(-LIMIT, LIMIT, ARROWS)
    grid = jnp.stack(jnp.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    arrows = jax.vmap(lambda z: step(z, knobs.gate_bias, knobs.v, knobs.x) - z)(grid)
    shade_axis = jnp.linspace(-LIMIT, LIMIT, SHADE)
    shade = jnp.stack(jnp.meshgrid(shade_axis, shade_axis), axis=-1).reshape(-1, 2)
    norms = jax.vmap(lambda z: jacobian_norm(z, knobs))(shade).reshape(SHADE, SHADE)
    points, mask = fixed_points(knobs)
    point_norms = jax.vmap(lambda z: jacobian_norm(z, knobs))(points)
    states, residuals, iters, converged, diverged = paths(knobs, starts)
    return {"grid": grid, "arrows": arrows, "shade_axis": shade_axis, "norms": norms, "fixed": points,
            "fixed_mask": mask, "fixed_norms": point_norms, "states": states, "residuals": residuals,
            "iters": iters, "converged": converged, "diverged": diverged}


plane_jit = jax.jit(_plane)


def check(knobs: Knobs) -> None:
    """A one-line error for a knob out of range."""
    if not np.isfinite([knobs.gate_bias, knobs.v, knobs.x, knobs.tol, knobs.damping]).all():
        raise ValueError("playground: every value must be a finite number")
    if not knobs.tol > 0:
        raise ValueError(f"playground: tol must be > 0, got {knobs.tol}")
    if not 0 < knobs.damping <= 1:
        raise ValueError(f"playground: damping must be in (0, 1], got {knobs.damping}")
    if not 1 <= int(knobs.max_iter) <= CAPACITY:
        raise ValueError(f"playground: max_iter must be in [1, {CAPACITY}], got {knobs.max_iter}")


def plane(knobs: Knobs, starts) -> dict:
    """The phase plane for these knobs and start points (a list of (z1, z2), at most MAX_STARTS), as numpy
    arrays; the paths cut to the start points given and each to its own length."""
    check(knobs)
    starts = np.asarray(starts, np.float32).reshape(-1, 2)
    if len(starts) > MAX_STARTS:
        raise ValueError(f"playground: at most {MAX_STARTS} start points, got {len(starts)}")
    padded = np.zeros((MAX_STARTS, 2), np.float32)
    padded[: len(starts)] = starts
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    traced = Knobs(f32(knobs.gate_bias), f32(knobs.v), f32(knobs.x), f32(knobs.tol), f32(knobs.damping),
                   jnp.asarray(int(knobs.max_iter), jnp.int32))
    out = {k: np.asarray(v) for k, v in plane_jit(traced, jnp.asarray(padded)).items()}
    n = len(starts)
    for key in ("states", "residuals", "iters", "converged", "diverged"):
        out[key] = out[key][:n]
    out["fixed"] = out["fixed"][out["fixed_mask"]]
    out["fixed_norms"] = out["fixed_norms"][out["fixed_mask"]]
    out["path_list"] = [out["states"][i, : int(out["iters"][i]) + 1] for i in range(n)]
    return out


def _cache_size() -> int:
    return plane_jit._cache_size()
