"""Recurrent cells as one step over time: the gated wormhole GRU (a fixed point every time step), an LSTM, and the
GRU baseline's step, all scanned by one routine that can also measure gradients back in time.

A cell is `Cell(init, carry0, step)`:
  init(key) -> params (the cell's and the output head's)
  carry0(dtype) -> the state carried from one time step to the next, one flat vector
  step(params, carry, x_t, gate_bias, settings, probe) -> (carry, output_t, FixStats or None, gates)

`wormhole_gru`: at every time step a stack of `layers` GRU layers whose state is the fixed point of one sweep of
the stack (`twnn_jax.fix`). Layer i reads the layer below (layer 0 reads x_t) and its own state of the previous
time step, as in a stacked GRU; a gated wormhole feeds the top layer's state back into layer 0's candidate,
`n_0 = tanh(W x_t + b + r * (U h_0) + g V s_top)`, `g = sigmoid(q . s_top + d + gate_bias)`, as in the
feed-forward wormhole net (`twnn_jax.wormhole`). Gates shut: one sweep is an ordinary stacked GRU.

Why GRU-like and not LSTM-like: the GRU's update `h = (1 - z) n + z h_prev` is a convex combination of bounded
values, so the stack's state stays in [-1, 1] and the sweep's Jacobian with respect to the top state is bounded
by `||V||` (the spectral bound) times the other layers' weights, as in the feed-forward wormhole net; an LSTM's
cell state is unbounded, and a fixed point over (h, c) has no such bound. The paper's Algorithm 1 also names
the GRU as a block.

`scan_cell(..., perturb=eps)` adds `eps[t]` to the state that step t reads (the state after step t - 1; the initial
state for t = 0): the gradient of the loss with respect to `eps` at zero is the gradient with respect to the
state at each time step (`state_gradients`), the quantity of the vanishing-gradient claim.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._fix import fix
from .contraction import jacobian_norm
from .models import Model, dense, dense_init, no_solve, over_time
from .wormhole import SolveSettings, bounded

WORMHOLE_GRU_LAYERS = 2


class Cell(NamedTuple):
    init: Callable
    carry0: Callable
    step: Callable


def _gru_layer_init(key, n_in, hidden):
    k = jax.random.split(key, 3)
    return {"zr": dense_init(k[0], n_in + hidden, 2 * hidden), "n_x": dense_init(k[1], n_in, hidden),
            "n_h": dense_init(k[2], hidden, hidden)}


def _gru_update(p, x, h, extra=0.0):
    """One GRU update of state `h` from input `x`; `extra` is added to the candidate's pre-activation."""
    hidden = h.shape[0]
    zr = jax.nn.sigmoid(dense(p["zr"], jnp.concatenate([x, h])))
    z, r = zr[:hidden], zr[hidden:]
    n = jnp.tanh(dense(p["n_x"], x) + r * dense(p["n_h"], h) + extra)
    return (1 - z) * n + z * h


def gru_cell(n_in, n_out, hidden) -> Cell:
    """The step of `models.gru` (same parameters): the baseline GRU, for `state_gradients`."""

    def init(key):
        k1, k2 = jax.random.split(key)
        layer = _gru_layer_init(k1, n_in, hidden)
        return {**layer, "head": dense_init(k2, hidden, n_out)}

    def step(params, h, x_t, gate_bias, settings, probe=None):
        h = _gru_update(params, x_t, h)
        return h, dense(params["head"], h), None, jnp.zeros((0,), h.dtype)

    return Cell(init, lambda dtype: jnp.zeros(hidden, dtype), step)


def lstm_cell(n_in, n_out, hidden) -> Cell:
    """A standard LSTM (forget-gate bias 1); the carry is [h, c]."""

    def init(key):
        k1, k2 = jax.random.split(key)
        gates = dense_init(k1, n_in + hidden, 4 * hidden)
        gates["b"] = gates["b"].at[hidden:2 * hidden].set(1.0)
        return {"gates": gates, "head": dense_init(k2, hidden, n_out)}

    def step(params, carry, x_t, gate_bias, settings, probe=None):
        h, c = carry[:hidden], carry[hidden:]
        a = dense(params["gates"], jnp.concatenate([x_t, h]))
        i, f, o = (jax.nn.sigmoid(a[k * hidden:(k + 1) * hidden]) for k in range(3))
        c = f * c + i * jnp.tanh(a[3 * hidden:])
        h = o * jnp.tanh(c)
        return jnp.concatenate([h, c]), dense(params["head"], h), None, jnp.zeros((0,), h.dtype)

    return Cell(init, lambda dtype: jnp.zeros(2 * hidden, dtype), step)


def wgru_sweep(state, params, x_t, prev, gate_bias):
    """One layer-order sweep of the stack: each layer sees the new state below it; the wormhole the old top."""
    hole = params["hole"]
    top = state[-1]
    g = jax.nn.sigmoid(hole["q"] @ top + hole["d"] + gate_bias)
    new, below = [], x_t
    for i, layer in enumerate(params["layers"]):
        extra = g * (hole["v"] @ top) if i == 0 else 0.0
        h = _gru_update(layer, below, prev[i], extra)
        if "active" in params:  # a growing stack (twnn_jax.wormhole_gru_growth): inactive units stay exactly 0
            h = h * jax.lax.stop_gradient(params["active"][i])
        new.append(h)
        below = h
    return tuple(new)


def wgru_gate(params, top, gate_bias):
    """The wormhole's gate (shape (1,)) for the top layer's state `top`."""
    hole = params["hole"]
    return jax.nn.sigmoid(hole["q"] @ top + hole["d"] + gate_bias)[None]


def wormhole_gru_cell(n_in, n_out, hidden, layers: int = WORMHOLE_GRU_LAYERS) -> Cell:
    """The gated wormhole GRU (module docstring): `layers` GRU layers of `hidden` units, wormhole top -> 0."""
    if layers < 1:
        raise ValueError(f"a wormhole GRU needs at least one layer, got {layers}")

    def init(key):
        k = jax.random.split(key, layers + 2)
        sizes = (n_in,) + (hidden,) * (layers - 1)
        v = jax.random.normal(k[layers], (hidden, hidden))
        return {
            "layers": [_gru_layer_init(k[i], sizes[i], hidden) for i in range(layers)],
            "hole": {"v": 0.5 * v / jnp.linalg.norm(v, 2), "q": jnp.zeros(hidden), "d": jnp.zeros(())},
            "head": dense_init(k[layers + 1], hidden, n_out),
        }

    def split(carry):
        return tuple(carry[i * hidden:(i + 1) * hidden] for i in range(layers))

    def step(params, carry, x_t, gate_bias, settings: SolveSettings, probe=None):
        # `params["hole"]["v"]` is already inside the spectral bound (`bound` below, once per sequence)
        if settings.sweep != "layer":
            raise ValueError(f"the wormhole GRU sweeps in layer order only; got sweep={settings.sweep!r}")
        dtype = carry.dtype
        prev = split(carry)
        z0 = tuple(jnp.zeros(hidden, dtype) for _ in range(layers))
        state, stats = fix(
            wgru_sweep, z0, params, x_t, prev, jnp.asarray(gate_bias, dtype),
            tol=settings.tol, max_iter=settings.max_iter, damping=settings.damping, bwd_tol=settings.bwd_tol,
            solver=settings.solver, grad_mode=settings.grad_mode, trajectory=settings.trajectory,
            unroll_capacity=settings.unroll_capacity, probe=probe,
        )
        return jnp.concatenate(state), dense(params["head"], state[-1]), stats, wgru_gate(params, state[-1],
                                                                                              gate_bias)

    return Cell(init, lambda dtype: jnp.zeros(layers * hidden, dtype), step)


def bound(params, settings: SolveSettings):
    """`params` with the wormhole weight (if any) scaled into the spectral bound; gradients flow through."""
    if "hole" not in params:
        return params
    v = params["hole"]["v"]
    if "active" in params:  # a growing stack: no gradient reaches an inactive unit's wormhole weights, not even
        a = jax.lax.stop_gradient(params["active"])  # through the spectral norm's singular vectors
        v = v * a[0][:, None] * a[-1][None, :]
    return {**params, "hole": {**params["hole"], "v": bounded(v, settings.spectral_bound)}}


def scan_cell(cell: Cell, params, xs, gate_bias, settings: SolveSettings, probe=None, perturb=None):
    """Run `cell` over the sequence `xs` (T, features) of one sample: (outputs (T, n_out), FixStats over time,
    mean gate per wormhole). `perturb` (T, carry size): `perturb[t]` is added to the state step t reads."""
    params = bound(params, settings)
    carry0 = cell.carry0(xs.dtype)
    eps = jnp.zeros((xs.shape[0],) + carry0.shape, xs.dtype) if perturb is None else perturb

    def body(carry, inputs):
        x_t, e_t = inputs
        carry, out, stats, gates = cell.step(params, carry + e_t, x_t, gate_bias, settings, probe)
        if stats is None:
            stats = no_solve(xs.dtype)
        return carry, (out, stats, gates)

    _, (outs, stats, gates) = jax.lax.scan(body, carry0, (xs, eps))
    return outs, over_time(stats), jnp.mean(gates, 0)


def state_gradients(cell: Cell, params, xs, ys, loss, gate_bias, settings: SolveSettings):
    """Per sample and time step, ||d loss / d state that step t reads|| (batch (B, T, ...) in, (B, T) out).

    Entry t is the state after step t - 1 (entry 0: the initial state), so entry T - 1 is the state the last step
    reads; `loss(outputs, y)` is the task's loss of one sample's outputs (first value)."""

    def one(x, y):
        def of_eps(eps):
            outs, _, _ = scan_cell(cell, params, x, gate_bias, settings, perturb=eps)
            return loss(outs[None], y[None])[0]

        eps = jnp.zeros((x.shape[0],) + cell.carry0(x.dtype).shape, x.dtype)
        return jnp.linalg.norm(jax.grad(of_eps)(eps), axis=-1)

    return jax.vmap(one)(xs, ys)


def as_model(kind: str, cell: Cell, n_wormholes: int) -> Model:
    """A `models.Model` from a cell: apply = `scan_cell`; for a fixed-point cell, the contraction estimate of
    the first time step's sweep (from a zero state)."""

    def apply(params, xs, gate_bias, settings: SolveSettings, probe=None):
        return scan_cell(cell, params, xs, gate_bias, settings, probe)

    contraction = None
    if n_wormholes:
        def contraction(params, xs, gate_bias, settings: SolveSettings):
            params = bound(params, settings)
            carry0 = cell.carry0(xs.dtype)
            carry, _, _, _ = cell.step(params, carry0, xs[0], gate_bias, settings)
            layers = len(params["layers"])
            hidden = carry.shape[0] // layers
            split = lambda c: tuple(c[i * hidden:(i + 1) * hidden] for i in range(layers))  # noqa: E731
            gb = jnp.asarray(gate_bias, xs.dtype)
            f = lambda z: wgru_sweep(z, params, xs[0], split(carry0), gb)  # noqa: E731
            return jacobian_norm(f, split(jax.lax.stop_gradient(carry)))

    return Model(kind, cell.init, apply, n_wormholes, bool(n_wormholes), contraction)


CELLS = {"wormhole_gru": wormhole_gru_cell, "lstm": lstm_cell, "gru": gru_cell}
RECURRENT_KINDS = ("wormhole_gru", "lstm")  # the model kinds this module adds (`models.gru` is the GRU)


def cell_for(kind: str, n_in: int, n_out: int, hidden: int) -> Cell:
    if kind not in CELLS:
        raise ValueError(f"recurrent cell must be one of {tuple(CELLS)}, got {kind!r}")
    return CELLS[kind](n_in, n_out, hidden)


def recurrent_model(kind: str, n_in: int, n_out: int, hidden: int) -> Model:
    """The model of a kind this module adds (RECURRENT_KINDS)."""
    if kind not in RECURRENT_KINDS:
        raise ValueError(f"model must be one of {RECURRENT_KINDS}, got {kind!r}")
    return as_model(kind, cell_for(kind, n_in, n_out, hidden), 1 if kind == "wormhole_gru" else 0)
