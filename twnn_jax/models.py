"""Models for the tasks, each a pure `init(key) -> params` and a per-sample `apply`.

apply(params, x, gate_bias, settings, probe) -> (output, FixStats, gates)
  x is one sample; vmap over the batch. `FixStats` sums the iterations of every fixed-point solve
  in the model (two blocks, or one solve per time step); `gates` is each wormhole's gate value.

Kinds:
  wormhole      dense layers with a wormhole from the last back to the first (default for digits)
  resnet_fp     paper Fig. 5: residual blocks B1..B4, fixed-point blocks B2->B1 and B4->B3
  resnet_plain  the same residual blocks with no wormholes, `depth` of them, no fixed point
  small         paper Algorithm 3 (tanh hidden, sigmoid output), output fed back to the hidden layer
  wormhole_rnn  a recurrent net whose every step is a wormhole segment's fixed point
  gru           a small GRU, the recurrent baseline
  wormhole_gru  stacked GRU layers per time step, their state a fixed point with a gated wormhole (recurrent.py)
  lstm          an LSTM, the other recurrent baseline (recurrent.py)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._iterate import FixStats
from .wormhole import SegmentSpec, SolveSettings, init_segment, segment_contraction, solve_segment

MODEL_KINDS = ("wormhole", "resnet_fp", "resnet_plain", "small", "wormhole_rnn", "gru", "wormhole_gru", "lstm")


class Model(NamedTuple):
    kind: str
    init: Callable
    apply: Callable
    n_wormholes: int
    uses_fix: bool
    contraction: Callable | None = None  # (params, x, gate_bias, settings) -> estimate of ||J|| (max over blocks)
    # one-solve models (wormhole, resnet_fp, small), for surrogates and warm starts (twnn_jax.warm):
    solve: Callable | None = None  # (params, x, gate_bias, settings, probe=None, z0=None) -> (state, stats, gates)
    readout: Callable | None = None  # (params, x, state) -> output; apply = readout after solve
    spec: SegmentSpec | None = None  # the fixed-point segment's shape (resnet_fp: each of its two blocks')


def dense_init(key, n_in, n_out, scale=1.0):
    """A dense layer's parameters {w, b} (shared by the feed-forward and recurrent models)."""
    return {"w": scale * jax.random.normal(key, (n_out, n_in)) / jnp.sqrt(n_in), "b": jnp.zeros(n_out)}


def dense(p, x):
    """The dense layer w x + b."""
    return p["w"] @ x + p["b"]


def no_solve(dtype=jnp.float32):
    """The statistics of a model with no fixed point to solve (zero iterations, converged)."""
    zero = jnp.zeros((), jnp.int32)
    return FixStats(zero, jnp.zeros((), dtype), jnp.ones((), bool), jnp.zeros((), bool), None)


def _combine(stats: list[FixStats]) -> FixStats:
    """Several solves of one sample: total iterations, worst residual, all converged, first trajectory."""
    return FixStats(
        iters=sum(s.iters for s in stats),
        residual=jnp.max(jnp.stack([s.residual for s in stats])),
        converged=jnp.all(jnp.stack([s.converged for s in stats])),
        diverged=jnp.any(jnp.stack([s.diverged for s in stats])),
        trajectory=stats[0].trajectory,
    )


def over_time(stats: FixStats) -> FixStats:
    """Solves stacked over time steps: total iterations, worst residual, last step's trajectory."""
    return FixStats(
        iters=jnp.sum(stats.iters),
        residual=jnp.max(stats.residual),
        converged=jnp.all(stats.converged),
        diverged=jnp.any(stats.diverged),
        trajectory=None if stats.trajectory is None else stats.trajectory[-1],
    )


WORMHOLE_LAYERS = 3  # the wormhole model's layers


def every_wormhole(layers: int = WORMHOLE_LAYERS) -> tuple[tuple[int, int], ...]:
    """Every wormhole (j, i), i <= j, that a segment of `layers` layers can have, longest first (the wormhole
    model's own, last to first, leads): what a wormhole net whose wormholes grow (grow=wormholes) chooses from."""
    return tuple(sorted(((j, i) for j in range(layers) for i in range(j + 1)), key=lambda h: (h[1] - h[0], h[1])))


def wormhole_classifier(n_in, n_out, hidden=64, layers=WORMHOLE_LAYERS, wormholes=None) -> Model:
    wormholes = tuple(wormholes) if wormholes is not None else ((layers - 1, 0),)
    spec = SegmentSpec(n_in=n_in, widths=(hidden,) * layers, wormholes=wormholes)

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"seg": init_segment(k1, spec), "head": dense_init(k2, hidden, n_out)}

    def solve(params, x, gate_bias, settings: SolveSettings, probe=None, z0=None):
        return solve_segment(params["seg"], x, gate_bias, spec, settings, probe, z0)

    def readout(params, x, state):
        return dense(params["head"], state[-1])

    def apply(params, x, gate_bias, settings: SolveSettings, probe=None, z0=None):
        state, stats, g = solve(params, x, gate_bias, settings, probe, z0)
        return readout(params, x, state), stats, g

    def contraction(params, x, gate_bias, settings):
        return segment_contraction(params["seg"], x, gate_bias, spec, settings)[0]

    return Model("wormhole", init, apply, len(wormholes), True, contraction, solve, readout, spec)


def resnet_fp(n_in, n_out, hidden=64) -> Model:
    """Paper Fig. 5: embed, [B1 B2] looped B2->B1, [B3 B4] looped B4->B3, head."""
    spec = SegmentSpec(n_in=hidden, widths=(hidden, hidden), wormholes=((1, 0),), kind="residual")

    def init(key):
        k = jax.random.split(key, 4)
        return {
            "embed": dense_init(k[0], n_in, hidden),
            "block12": init_segment(k[1], spec),
            "block34": init_segment(k[2], spec),
            "head": dense_init(k[3], hidden, n_out),
        }

    def solve(params, x, gate_bias, settings: SolveSettings, probe=None, z0=None):
        """The state is both blocks' fixed points, (s1, s2); `z0` one of the same structure."""
        h = jnp.tanh(dense(params["embed"], x))
        z1, z2 = (None, None) if z0 is None else z0
        s1, st1, g1 = solve_segment(params["block12"], h, gate_bias, spec, settings, probe, z1)
        s2, st2, g2 = solve_segment(params["block34"], s1[-1], gate_bias, spec, settings, probe, z2)
        return (s1, s2), _combine([st1, st2]), jnp.concatenate([g1, g2])

    def readout(params, x, state):
        return dense(params["head"], state[1][-1])

    def apply(params, x, gate_bias, settings: SolveSettings, probe=None, z0=None):
        state, stats, g = solve(params, x, gate_bias, settings, probe, z0)
        return readout(params, x, state), stats, g

    def contraction(params, x, gate_bias, settings):
        h = jnp.tanh(dense(params["embed"], x))
        c1, s1 = segment_contraction(params["block12"], h, gate_bias, spec, settings)
        c2, _ = segment_contraction(params["block34"], s1[-1], gate_bias, spec, settings)
        return jnp.maximum(c1, c2)

    return Model("resnet_fp", init, apply, 2, True, contraction, solve, readout, spec)


def resnet_plain(n_in, n_out, hidden=64, depth=4) -> Model:
    """Plain residual net: `depth` blocks `h + tanh(W h + b)`, no fixed point."""

    def init(key):
        k = jax.random.split(key, depth + 2)
        blocks = [dense_init(k[i + 1], hidden, hidden, 0.5) for i in range(depth)]
        return {"embed": dense_init(k[0], n_in, hidden), "blocks": blocks, "head": dense_init(k[-1], hidden, n_out)}

    def apply(params, x, gate_bias, settings, probe=None):
        h = jnp.tanh(dense(params["embed"], x))
        for block in params["blocks"]:
            h = h + jnp.tanh(dense(block, h))
        return dense(params["head"], h), no_solve(x.dtype), jnp.zeros((0,))

    return Model("resnet_plain", init, apply, 0, False)


def small_net(window, hidden=32) -> Model:
    """Paper Algorithm 3 with a wormhole: hidden = tanh(W1 x + b1 + g V y), y = sigmoid(w2 hidden + b2)."""
    spec = SegmentSpec(n_in=window, widths=(hidden, 1), wormholes=((1, 0),), activations=("tanh", "sigmoid"))

    def init(key):
        return {"seg": init_segment(key, spec, hole_scale=1.0)}

    def solve(params, x, gate_bias, settings: SolveSettings, probe=None, z0=None):
        return solve_segment(params["seg"], x, gate_bias, spec, settings, probe, z0)

    def readout(params, x, state):
        return state[-1]

    def apply(params, x, gate_bias, settings: SolveSettings, probe=None, z0=None):
        state, stats, g = solve(params, x, gate_bias, settings, probe, z0)
        return readout(params, x, state), stats, g

    def contraction(params, x, gate_bias, settings):
        return segment_contraction(params["seg"], x, gate_bias, spec, settings)[0]

    return Model("small", init, apply, 1, True, contraction, solve, readout, spec)


def wormhole_rnn(n_in, n_out, hidden=32) -> Model:
    """Each time step: a 2-layer wormhole segment fed [x_t, h_{t-1}], solved to its fixed point."""
    spec = SegmentSpec(n_in=n_in + hidden, widths=(hidden, hidden), wormholes=((1, 0),))

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"seg": init_segment(k1, spec), "head": dense_init(k2, hidden, n_out)}

    def apply(params, xs, gate_bias, settings: SolveSettings, probe=None):
        def step(h, x_t):
            state, stats, g = solve_segment(params["seg"], jnp.concatenate([x_t, h]), gate_bias, spec,
                                            settings, probe)
            return state[-1], (dense(params["head"], state[-1]), stats, g)

        _, (outs, stats, g) = jax.lax.scan(step, jnp.zeros(hidden, xs.dtype), xs)
        return outs, over_time(stats), jnp.mean(g, 0)

    def contraction(params, xs, gate_bias, settings):
        # the first time step's map (from a zero hidden state): a cheap, representative estimate
        x0 = jnp.concatenate([xs[0], jnp.zeros(hidden, xs.dtype)])
        return segment_contraction(params["seg"], x0, gate_bias, spec, settings)[0]

    return Model("wormhole_rnn", init, apply, 1, True, contraction, spec=spec)


def gru(n_in, n_out, hidden=32) -> Model:
    def init(key):
        k = jax.random.split(key, 4)
        return {
            "zr": dense_init(k[0], n_in + hidden, 2 * hidden),
            "n_x": dense_init(k[1], n_in, hidden),
            "n_h": dense_init(k[2], hidden, hidden),
            "head": dense_init(k[3], hidden, n_out),
        }

    def apply(params, xs, gate_bias, settings, probe=None):
        def step(h, x_t):
            zr = jax.nn.sigmoid(dense(params["zr"], jnp.concatenate([x_t, h])))
            z, r = zr[:hidden], zr[hidden:]
            n = jnp.tanh(dense(params["n_x"], x_t) + r * dense(params["n_h"], h))
            h = (1 - z) * n + z * h
            return h, dense(params["head"], h)

        _, outs = jax.lax.scan(step, jnp.zeros(hidden, xs.dtype), xs)
        return outs, no_solve(xs.dtype), jnp.zeros((0,))

    return Model("gru", init, apply, 0, False)


def build_model(kind: str, task, hidden: int, depth: int = 4, wormholes=None) -> Model:
    """The model of `kind` sized for `task`; `wormholes`: the wormhole model's (None: its one, last to first)."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"model must be one of {MODEL_KINDS}, got {kind!r}")
    sequence_kinds = ("wormhole_rnn", "gru", "wormhole_gru", "lstm")
    if task.sequence != (kind in sequence_kinds):
        fits = sequence_kinds if task.sequence else tuple(k for k in MODEL_KINDS if k not in sequence_kinds)
        raise ValueError(f"model {kind!r} does not fit task {task.name!r}; use one of {fits}")
    if kind == "small" and task.n_out != 1:
        raise ValueError("model 'small' has one sigmoid output; it fits the sine task")
    if kind == "wormhole":
        return wormhole_classifier(task.n_in, task.n_out, hidden, wormholes=wormholes)
    if kind == "resnet_fp":
        return resnet_fp(task.n_in, task.n_out, hidden)
    if kind == "resnet_plain":
        return resnet_plain(task.n_in, task.n_out, hidden, depth)
    if kind == "small":
        return small_net(task.n_in, hidden)
    if kind == "wormhole_rnn":
        return wormhole_rnn(task.n_in, task.n_out, hidden)
    if kind in ("wormhole_gru", "lstm"):
        from .recurrent import recurrent_model  # recurrent.py builds on this module

        return recurrent_model(kind, task.n_in, task.n_out, hidden)
    return gru(task.n_in, task.n_out, hidden)


DEFAULT_MODEL = {"sine": "small", "digits": "resnet_fp", "adding": "wormhole_rnn", "copy": "wormhole_rnn",
                 "brackets-easy": "tanh_rnn", "brackets-hard": "tanh_rnn"}  # seed 003: twnn_jax.growth
