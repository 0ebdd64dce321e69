"""Wormhole segments: a stack of layers plus gated connections from later layers back to earlier ones.

The whole segment's state (every layer's activation) is the fixed point of one *sweep* of the
layers. A wormhole `(j, i)` feeds layer j's activation back into the input of layer i (i <= j)
through a gate `sigmoid(q . h_j + d + gate_bias)`: `d`, `q` are learned, `gate_bias` is the user's
live control. Gates shut (very negative bias): the sweep is an ordinary feed-forward pass and the
state settles in one sweep plus the check. Gates open: the net "thinks longer".

Everything here is for one sample; vmap over a batch for per-sample iteration counts. A segment whose
params carry `active` (one 0/1 array per layer, twnn_jax.wormhole_growth) multiplies each layer's
activation by it: its inactive units are 0 in every state, so they take no part and get no gradient.
One whose params carry `holes_active` (one 0/1 per wormhole) multiplies each wormhole's gate by it: an
inactive wormhole's gate is 0, it carries nothing and gets no gradient.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._fix import fix
from .contraction import jacobian_norm

LAYER_KINDS = ("dense", "residual")
SWEEPS = ("layer", "jacobi")
ACTIVATIONS = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu}


class SegmentSpec(NamedTuple):
    """Static shape of a segment: widths of input and layers, layer kind, wormholes (j, i)."""

    n_in: int
    widths: tuple[int, ...]
    wormholes: tuple[tuple[int, int], ...]
    kind: str = "dense"
    activations: tuple[str, ...] | None = None  # per layer, default tanh


class SolveSettings(NamedTuple):
    """How a segment is solved. Numbers may be traced (live controls); strings/ints are static."""

    tol: float | jax.Array = 1e-3
    max_iter: int | jax.Array = 300
    damping: float | jax.Array = 0.5
    bwd_tol: float | jax.Array = 1e-4
    solver: str = "plain"
    grad_mode: str = "implicit"
    sweep: str = "layer"
    trajectory: int = 0
    unroll_capacity: int | None = None
    spectral_bound: float | None = 0.9


def check_spec(spec: SegmentSpec) -> None:
    if spec.kind not in LAYER_KINDS:
        raise ValueError(f"layer kind must be one of {LAYER_KINDS}, got {spec.kind!r}")
    n = len(spec.widths)
    if n < 1:
        raise ValueError("a segment needs at least one layer")
    for j, i in spec.wormholes:
        if not (0 <= i <= j < n):
            raise ValueError(f"wormhole ({j}, {i}) must go from a later layer j back to an earlier i, 0<=i<=j<{n}")
    if spec.kind == "residual":
        sizes = (spec.n_in,) + tuple(spec.widths)
        if len(set(sizes)) != 1:
            raise ValueError(f"residual layers need equal widths, got input {spec.n_in} and {spec.widths}")
    if spec.activations is not None:
        if len(spec.activations) != n:
            raise ValueError(f"give one activation per layer ({n}), got {len(spec.activations)}")
        for a in spec.activations:
            if a not in ACTIVATIONS:
                raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {a!r}")


def init_segment(key, spec: SegmentSpec, *, hole_scale: float = 0.5):
    """Parameters with feed-forward weights ~ 1/sqrt(fan_in) and small wormhole weights."""
    check_spec(spec)
    sizes = (spec.n_in,) + tuple(spec.widths)
    keys = jax.random.split(key, len(spec.widths) + len(spec.wormholes))
    layers = []
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        scale = 1.0 / jnp.sqrt(fan_in) if spec.kind == "dense" else 0.5 / jnp.sqrt(fan_in)
        layers.append({"w": scale * jax.random.normal(keys[k], (fan_out, fan_in)), "b": jnp.zeros(fan_out)})
    holes = []
    for k, (j, i) in enumerate(spec.wormholes):
        n_src, n_dst = spec.widths[j], spec.widths[i]
        v = jax.random.normal(keys[len(spec.widths) + k], (n_dst, n_src))
        v = hole_scale * v / jnp.linalg.norm(v, 2)
        holes.append({"v": v, "q": jnp.zeros(n_src), "d": jnp.zeros(())})
    return {"layers": layers, "holes": holes}


def bounded(v, bound):
    """Scale `v` down so its spectral norm is at most `bound` (no change when already inside)."""
    if bound is None:
        return v
    sigma = jnp.linalg.norm(v, 2)
    return v * jnp.minimum(1.0, bound / jnp.maximum(sigma, 1e-12))


def bound_holes(params, bound):
    """`params` with every wormhole weight scaled into the spectral bound (see `bounded`)."""
    if bound is None:
        return params
    return {**params, "holes": [{**h, "v": bounded(h["v"], bound)} for h in params["holes"]]}


def _masked_holes(params, spec: SegmentSpec):
    """A growing segment's wormhole weights times its active masks (units, wormholes): no gradient reaches an
    inactive unit's or wormhole's weights, not even through the spectral norm of `bounded` (its singular
    vectors are ~1e-17 there)."""
    holes = params["holes"]
    if "active" in params:
        a = jax.lax.stop_gradient(params["active"])
        holes = [{**h, "v": h["v"] * a[i][:, None] * a[j][None, :]} for h, (j, i) in zip(holes, spec.wormholes)]
    if "holes_active" in params:
        on = jax.lax.stop_gradient(params["holes_active"])
        holes = [{**h, "v": h["v"] * on[k]} for k, h in enumerate(holes)]
    return {**params, "holes": holes}


def gates(params, spec: SegmentSpec, state, gate_bias):
    """Gate value of every wormhole for the given state, shape (n_wormholes,); 0 for an inactive wormhole."""
    if not spec.wormholes:
        return jnp.zeros((0,))
    g = jnp.stack(
        [jax.nn.sigmoid(h["q"] @ state[j] + h["d"] + gate_bias) for h, (j, _) in zip(params["holes"], spec.wormholes)]
    )
    if "holes_active" in params:  # a segment whose wormholes grow (twnn_jax.wormhole_growth)
        g = g * jax.lax.stop_gradient(params["holes_active"])
    return g


def sweep(state, params, x, gate_bias, spec: SegmentSpec, order: str = "layer", spectral_bound=None):
    """One pass over the layers: in layer order (each layer sees the new activation below it) or
    all layers at once from the old state ("jacobi")."""
    acts = spec.activations or ("tanh",) * len(spec.widths)
    holes_v = [h["v"] for h in bound_holes(params, spectral_bound)["holes"]]
    g = gates(params, spec, state, gate_bias)
    new = list(state)
    below = x
    for i, layer in enumerate(params["layers"]):
        pre = layer["w"] @ below + layer["b"]
        for k, (j, dst) in enumerate(spec.wormholes):
            if dst == i:
                pre = pre + g[k] * (holes_v[k] @ state[j])
        h = ACTIVATIONS[acts[i]](pre)
        if "active" in params:  # a growing segment (twnn_jax.wormhole_growth): inactive units stay exactly 0
            h = h * jax.lax.stop_gradient(params["active"][i])
        if spec.kind == "residual":
            h = below + h
        new[i] = h
        below = h if order == "layer" else state[i]
    return tuple(new)


def solve_segment(params, x, gate_bias, spec: SegmentSpec, settings: SolveSettings, probe=None, z0=None):
    """The segment's fixed point for one sample: returns (state, FixStats, gates at the fixed point).

    `z0`: where the iteration starts (a state: one array per layer); None: zeros. A warm start changes
    the iterations, not the fixed point's gradient (none flows to `z0`)."""
    if settings.sweep not in SWEEPS:
        raise ValueError(f"sweep must be one of {SWEEPS}, got {settings.sweep!r}")
    dtype = jnp.result_type(x, *jax.tree.leaves(params))
    z0 = tuple(jnp.zeros(w, dtype) for w in spec.widths) if z0 is None else tuple(jnp.asarray(a, dtype) for a in z0)
    # bound the wormhole weights once per solve, not in every sweep (an SVD each); gradients flow through it
    params = bound_holes(_masked_holes(params, spec), settings.spectral_bound)
    state, stats = fix(
        lambda z, p, x, gb: sweep(z, p, x, gb, spec, settings.sweep),
        z0,
        params,
        x,
        jnp.asarray(gate_bias, dtype),
        tol=settings.tol,
        max_iter=settings.max_iter,
        damping=settings.damping,
        bwd_tol=settings.bwd_tol,
        solver=settings.solver,
        grad_mode=settings.grad_mode,
        trajectory=settings.trajectory,
        unroll_capacity=settings.unroll_capacity,
        probe=probe,
    )
    return state, stats, gates(params, spec, state, gate_bias)


def segment_contraction(params, x, gate_bias, spec: SegmentSpec, settings: SolveSettings, iters: int = 20):
    """Power-iteration estimate of ||d sweep / d state|| at the segment's fixed point (one sample).

    Returns `(estimate, state)`: the fixed point too, for a caller that feeds it to the next block.
    """
    state, _, _ = solve_segment(params, x, gate_bias, spec, settings)
    state = jax.lax.stop_gradient(state)
    params = bound_holes(params, settings.spectral_bound)
    sweep_fn = lambda z: sweep(z, params, x, gate_bias, spec, settings.sweep)  # noqa: E731
    return jacobian_norm(sweep_fn, state, iters=iters), state
