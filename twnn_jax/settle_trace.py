"""One input settling: every unit's value at every forward iteration, for one evaluation sample.

The dashboard's teaching views ("Network", "One input settling") draw the network and how the state of
its units changes while one input settles. The training step records nothing of this: the trace is a
separate evaluation function (`settle_for(config)`, jitted once per trainer structure), called only by a
page that shows it, so training pays nothing for it.

    layout = network_layout(trainer.model, trainer.task)     # columns of units and the wormholes
    trace = settle_for(config)(params, live, index)          # one sample's timeline (arrays)

`layout` describes the picture: columns of units (input, fixed layers, the fixed-point layers, output)
and the wormholes between columns. `trace["values"][t]` holds every column's units (in layout order,
concatenated) after `t` iterations; `t = 0` is the start (state zero), `t = trace["count"]` the fixed
point. For `resnet_fp` the two fixed-point blocks settle one after the other on one timeline (B3, B4 are
NaN until B1, B2 have settled); for the recurrent models (`wormhole_rnn`, `wormhole_gru`) the timeline is
one time step's solve (the slowest one unless `time_step` is given). The iteration replays the solver's own
update (`_iterate.iterate`), and the statistics come from `iterate` itself; tests check that both end at the
same state and count. `wormhole_gru`'s picture has a column of its own for the previous time step's state
(`h_t−1`, every layer's), which the layers read; its `Link`s say which layer reads which part.
`index` and the live values are traced: another sample, tol or gate bias never recompiles.

`trace["adjoint"]` is the backward view of the same sample (`ADJOINT`): the adjoint solve `u = g + J^T u`
that `fix` runs for the gradient of this sample's loss (g: the loss's cotangent on the fixed point, through
every later block or time step), replayed the same way, unit by unit, with its count and residuals.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._iterate import Settings, anderson_init, anderson_next, iterate, tree_norm
from .models import Model, dense
from .recurrent import bound, cell_for, wgru_gate, wgru_sweep
from .settings import LiveControls, TrainConfig
from .train import solve_settings, structure_of
from .wormhole import SegmentSpec, bound_holes, gates, solve_segment, sweep

CAPACITY = 120  # iterations of one solve recorded (a static size); a longer solve shows its first CAPACITY
TRACED_KINDS = ("small", "wormhole", "resnet_fp", "wormhole_rnn", "wormhole_gru")


class Column(NamedTuple):
    """One column of units in the network picture."""

    name: str  # "x", "L1", "B1", "y", ...
    size: int
    role: str  # "input" (given), "fixed" (computed once), "state" (a fixed-point layer), "output"


class Wormhole(NamedTuple):
    source: int  # column index of the later layer
    target: int  # column index of the earlier layer it feeds
    gate: int  # index into the model's gates vector
    params: tuple  # the path of its parameters: ("seg", "holes", 0), ("block12", "holes", 0); wormhole_gru: ("hole",)


class Link(NamedTuple):
    """Forward connections drawn from one column to another: from every unit of `source`, or only from its units
    `units` = (start, stop)."""

    source: int
    target: int
    units: tuple[int, int] | None = None


class Layout(NamedTuple):
    kind: str
    columns: tuple[Column, ...]
    wormholes: tuple[Wormhole, ...]
    links: tuple[Link, ...] = ()  # the forward connections; empty: each column to the next
    carry: tuple[tuple[int, int], ...] = ()  # recurrent: (from, to) columns, the state the next time step reads

    @property
    def recurrent(self) -> bool:
        """One time step's cell: its state feeds the next time step (`carry`)."""
        return bool(self.carry)

    @property
    def forward_links(self) -> tuple[Link, ...]:
        return self.links or tuple(Link(c, c + 1) for c in range(len(self.columns) - 1))

    @property
    def offsets(self) -> tuple[int, ...]:
        """Where each column's units start in a `values` row."""
        return tuple(int(v) for v in np.cumsum([0] + [c.size for c in self.columns])[:-1])

    @property
    def units(self) -> int:
        return sum(c.size for c in self.columns)


def network_layout(model: Model, task) -> Layout:
    """The columns and wormholes of `model` (one of `TRACED_KINDS`) as the pictures draw them."""
    spec: SegmentSpec | None = model.spec
    if model.kind not in TRACED_KINDS:
        raise ValueError(f"no network picture for model {model.kind!r}; it has one for {', '.join(TRACED_KINDS)}")
    if model.kind == "wormhole_gru":
        return _gru_layout(model, task)
    n = len(spec.widths)
    if model.kind == "small":
        cols = (Column("x", task.n_in, "input"), Column("h", spec.widths[0], "state"), Column("y", 1, "state"))
        holes = tuple(Wormhole(1 + j, 1 + i, k, ("seg", "holes", k)) for k, (j, i) in enumerate(spec.wormholes))
        return Layout(model.kind, cols, holes)
    if model.kind == "wormhole":
        cols = ((Column("x", task.n_in, "input"),) + tuple(Column(f"L{i + 1}", w, "state")
                                                            for i, w in enumerate(spec.widths))
                + (Column("out", task.n_out, "output"),))
        holes = tuple(Wormhole(1 + j, 1 + i, k, ("seg", "holes", k)) for k, (j, i) in enumerate(spec.wormholes))
        return Layout(model.kind, cols, holes)
    if model.kind == "resnet_fp":
        h = spec.widths[0]
        cols = (Column("x", task.n_in, "input"), Column("embed", h, "fixed"),
                *(Column(f"B{i + 1}", h, "state") for i in range(2 * n)), Column("out", task.n_out, "output"))
        holes = tuple(Wormhole(2 + b * n + j, 2 + b * n + i, b * len(spec.wormholes) + k, (block, "holes", k))
                      for b, block in enumerate(("block12", "block34")) for k, (j, i) in enumerate(spec.wormholes))
        return Layout(model.kind, cols, holes)
    # wormhole_rnn: one time step's cell, fed [x_t, h_{t-1}]
    hidden = spec.widths[-1]
    cols = ((Column("x_t, h_t−1", spec.n_in, "input"),) + tuple(Column(f"L{i + 1}", w, "state")
                                                                 for i, w in enumerate(spec.widths))
            + (Column("out", task.n_out, "output"),))
    assert spec.n_in == task.n_in + hidden
    holes = tuple(Wormhole(1 + j, 1 + i, k, ("seg", "holes", k)) for k, (j, i) in enumerate(spec.wormholes))
    return Layout(model.kind, cols, holes, carry=((len(spec.widths), 0),))


def _gru_shape(model: Model) -> tuple[int, int]:
    """A wormhole GRU's (layers, hidden), read from its parameters' shapes (nothing is computed)."""
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    return len(shapes["layers"]), shapes["hole"]["v"].shape[0]


def _gru_layout(model: Model, task) -> Layout:
    """wormhole_gru: one time step's cell. Layer i reads the layer below (layer 1: x_t) and its own state of the
    previous time step (the `h_t−1` column, left of x_t as time runs left to right: every layer's state, in layer
    order); the wormhole feeds the top layer back into layer 1; every layer's state is the next step's `h_t−1`."""
    layers, hidden = _gru_shape(model)
    cols = (Column("h_t−1", layers * hidden, "input"), Column("x_t", task.n_in, "input"),
            *(Column(f"L{i + 1}", hidden, "state") for i in range(layers)), Column("out", task.n_out, "output"))
    links = (Link(1, 2), *(Link(0, 2 + i, (i * hidden, (i + 1) * hidden)) for i in range(layers)),
             *(Link(2 + i, 3 + i) for i in range(layers)))
    hole = Wormhole(1 + layers, 2, 0, ("hole",))
    return Layout(model.kind, cols, (hole,), links, carry=tuple((2 + i, 0) for i in range(layers)))


def free_slots(layout: Layout, params) -> np.ndarray | None:
    """For a growing net (`twnn_jax.wormhole_growth`, `wormhole_gru_growth`): True for every unit, in layout order,
    that is a free slot (inactive: the net may grow a unit there); None for a net that does not grow."""
    masks = params.get("active") if layout.kind == "wormhole_gru" else params.get("seg", {}).get("active")
    if masks is None:
        return None
    masks = [np.asarray(m) > 0 for m in masks]
    states = iter(masks)
    active = [np.concatenate(masks) if layout.kind == "wormhole_gru" and c == 0 else
              next(states) if col.role == "state" else np.ones(col.size, bool) for c, col in enumerate(layout.columns)]
    return ~np.concatenate(active)


def hole_params(params, hole: Wormhole) -> dict:
    node = params
    for key in hole.params:
        node = node[key]
    return node


# ----------------------------------------------------------------------------------------------
# The iteration, recorded
# ----------------------------------------------------------------------------------------------


def trace_iterate(step, x0, *, tol, max_iter, solver: str = "plain", damping=0.5, capacity: int = CAPACITY,
                  anderson_memory: int = 5, anderson_mixing=1.0, anderson_reg=1e-6):
    """`iterate`'s update replayed in a `lax.scan` of `capacity` steps, keeping every state.

    Returns `(states, residuals, stats, x)`: `states` has a leading axis of `capacity + 1` (the start, then
    the state after each step; after the solve stops the last state repeats), `residuals` the residual of
    each step (NaN past the stop), and `stats` and `x` what the real `iterate` returns on the same problem."""
    x0_dtype = jnp.result_type(*jax.tree.leaves(x0))
    tol = jnp.asarray(tol, x0_dtype)
    max_iter = jnp.asarray(max_iter, jnp.int32)
    damping = jnp.asarray(damping, x0_dtype)
    settings = Settings(solver=solver, anderson_memory=anderson_memory)

    def go_on(t, r):
        return (t == 0) | ((r > tol) & (r < jnp.inf) & (t < max_iter))

    def body(carry, _):
        t, x, r, hist = carry
        active = go_on(t, r)
        fx = step(x)
        r_new = lax.stop_gradient(tree_norm(jax.tree.map(jnp.subtract, fx, x), "max").astype(x0_dtype))
        finite = jnp.isfinite(r_new)
        if solver == "plain":
            x_new, hist_new = fx, hist
        elif solver == "damped":
            x_new, hist_new = jax.tree.map(lambda a, b: a + damping * (b - a), x, fx), hist
        else:
            x_new, hist_new = anderson_next(x, fx, t, hist, memory=anderson_memory, mixing=anderson_mixing,
                                             reg=anderson_reg)
            x_new = jax.tree.map(lambda a, b: jnp.where(r_new <= tol, a, b), fx, x_new)
        x_new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), x_new, x)
        new = (t + 1, x_new, r_new, hist_new)
        carry = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, carry)
        return carry, (carry[1], jnp.where(active, jnp.where(finite, r_new, jnp.inf), jnp.nan))

    hist0 = anderson_init(x0, anderson_memory) if solver == "anderson" else ()
    init = (jnp.zeros((), jnp.int32), x0, jnp.full((), jnp.inf, x0_dtype), hist0)
    _, (xs, residuals) = lax.scan(body, init, None, length=capacity)
    states = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), x0, xs)
    x, stats = iterate(step, x0, tol=tol, max_iter=max_iter, settings=settings, damping=damping,
                       anderson_mixing=anderson_mixing, anderson_reg=anderson_reg)
    return states, residuals, stats, x


class FixedPointMap(NamedTuple):
    """The map one solve iterates (`step`), the gates of a state (`gates`, one per wormhole) and the start."""

    step: Callable
    gates: Callable
    start: tuple


def _segment_map(seg_params, x, gate_bias, spec: SegmentSpec, cfg: TrainConfig) -> FixedPointMap:
    """The map `solve_segment` iterates for the input `x` (the wormhole weights bounded as it does)."""
    dtype = jnp.result_type(x, *jax.tree.leaves(seg_params))  # as solve_segment
    p = bound_holes(seg_params, cfg.spectral_bound)
    gb = jnp.asarray(gate_bias, dtype)
    return FixedPointMap(lambda z: sweep(z, p, x, gb, spec, cfg.sweep), lambda z: gates(p, spec, z, gb),
                         tuple(jnp.zeros(w, dtype) for w in spec.widths))


def _gru_map(bounded_params, x_t, prev, gate_bias) -> FixedPointMap:
    """The map the wormhole GRU's step iterates at one time step: input `x_t`, the previous time step's state
    `prev` (one array per layer), `bounded_params` with the wormhole weight bounded (as `scan_cell` does)."""
    dtype = prev[0].dtype  # as the cell's step: the carry's
    gb = jnp.asarray(gate_bias, dtype)
    return FixedPointMap(lambda z: wgru_sweep(z, bounded_params, x_t, prev, gb),
                         lambda z: wgru_gate(bounded_params, z[-1], gb), tuple(jnp.zeros_like(h) for h in prev))


def _forward_trace(m: FixedPointMap, cfg: TrainConfig, live: LiveControls, capacity):
    """One forward solve of `m` (as the model runs it), recorded: (states (capacity+1, units) per layer, gates
    (capacity+1, n_holes), residuals, stats, the solve's fixed point)."""
    states, residuals, stats, fixed = trace_iterate(m.step, m.start, tol=live.tol, max_iter=live.max_iter,
                                                    solver=cfg.solver, damping=live.damping, capacity=capacity)
    return states, jax.vmap(m.gates)(states), residuals, stats, fixed


def _adjoint_trace(m: FixedPointMap, cfg: TrainConfig, live: LiveControls, fixed, rhs, capacity):
    """The adjoint solve of `m` (as `fix` runs it for the gradient), recorded: `u = rhs + J^T u` at the fixed
    point `fixed`, started from `rhs` (the loss's cotangent on the fixed point), with the tolerance `bwd_tol`
    relative to ||rhs||. Returns (states, residuals relative to ||rhs||, stats, the adjoint)."""
    dtype = jnp.result_type(*jax.tree.leaves(fixed))
    _, vjp_z = jax.vjp(m.step, fixed)
    step = lambda u: jax.tree.map(jnp.add, rhs, vjp_z(u)[0])  # noqa: E731 - the map fix's adjoint solve iterates
    scale = jnp.maximum(tree_norm(rhs, "max"), jnp.finfo(dtype).tiny)
    states, residuals, stats, u = trace_iterate(step, rhs, tol=live.bwd_tol.astype(dtype) * scale,
                                                max_iter=live.max_iter, solver=cfg.solver, damping=live.damping,
                                                capacity=capacity)
    return states, residuals / scale, stats._replace(residual=stats.residual / scale), u


def _timeline(solves, capacity):
    """Several solves one after the other on one timeline of `len(solves) * capacity + 1` columns.

    Each solve: (states (capacity+1, u), gates (capacity+1, g), residuals (capacity,), count). Before a solve
    starts its units and gates are NaN; after it ends they keep its last state."""
    length = len(solves) * capacity + 1
    t = jnp.arange(length)
    start = jnp.int32(0)
    values, gate_cols, residual = [], [], jnp.full((length,), jnp.nan)
    for states, g, res, count in solves:
        k = jnp.clip(t - start, 0, count)
        began = (t >= start)[:, None]
        values.append(jnp.where(began, states[k], jnp.nan))
        gate_cols.append(jnp.where(began, g[k], jnp.nan))
        inside = (t > start) & (t <= start + count)
        residual = jnp.where(inside, res[jnp.clip(t - start - 1, 0, capacity - 1)], residual)
        start = start + count
    return jnp.concatenate(values, 1), jnp.concatenate(gate_cols, 1), residual, start


def build_settle(model: Model, task, cfg: TrainConfig, capacity: int = CAPACITY):
    """The (unjitted) trace function `(params, live, index, time_step=-1) -> dict` for one evaluation sample.

    Returns plain arrays: `values` (timeline, units) in `network_layout` order, `gates` (timeline,
    n_wormholes), `residual` (timeline,), `count` (the timeline's last valid index: iterations recorded),
    `iters` (the solves' real iteration count), `converged`, `output` (the model's output at the fixed point),
    `time_step` and `step_iters` (per time step: the recurrent models; else one entry), and `adjoint`: the
    backward (adjoint) solve of the same solve(s) for this sample's loss, on a timeline of its own (see
    `ADJOINT`)."""
    layout = network_layout(model, task)
    spec = model.spec
    first_state = min(c for c, col in enumerate(layout.columns) if col.role == "state")
    lead_units = layout.offsets[first_state]
    cell = cell_for(model.kind, task.n_in, task.n_out, _gru_shape(model)[1]) if model.kind == "wormhole_gru" else None

    def settle(params, live: LiveControls, index, time_step=-1):
        x = jnp.asarray(task.eval_set[0])[index]
        y = jnp.asarray(task.eval_set[1])[index]
        gb = live.gate
        s = solve_settings(cfg, live)
        head = (lambda z: z[:0]) if model.kind == "small" else (lambda z: dense(params["head"], z))  # noqa: E731

        def sample_loss(out):
            return task.loss(out[None], y[None])[0]

        chosen = jnp.int32(0)
        if model.kind == "wormhole_gru":
            solves, lead, adjoint_solves, output, step_iters, step_conv, chosen = _gru_solves(
                cell, params, x, sample_loss, s, cfg, live, time_step, capacity)
        elif model.kind in ("small", "wormhole", "wormhole_rnn"):
            inp = x
            if model.kind == "wormhole_rnn":  # every time step's solve (as the model runs them); trace one

                def one(hprev, x_t):
                    state, st, _ = solve_segment(params["seg"], jnp.concatenate([x_t, hprev]), gb, spec, s)
                    return state[-1], (hprev, st.iters, st.converged, head(state[-1]))

                _, (hprevs, step_iters, step_conv, output) = lax.scan(one, jnp.zeros(spec.widths[-1], x.dtype), x)
                chosen = _chosen_step(time_step, step_iters)
                inp = jnp.concatenate([x[chosen], hprevs[chosen]])
            m = _segment_map(params["seg"], inp, gb, spec, cfg)
            states, g, res, st, fixed = _forward_trace(m, cfg, live, capacity)
            if model.kind != "wormhole_rnn":
                output = fixed[-1] if model.kind == "small" else head(fixed[-1])
                step_iters, step_conv = st.iters[None], st.converged[None]
                readout = (lambda z: z[-1]) if model.kind == "small" else (lambda z: head(z[-1]))  # noqa: E731
                rhs = jax.grad(lambda z: sample_loss(readout(z)))(fixed)
            else:  # the loss's cotangent on the chosen step's fixed point, through every later time step

                def later(e):
                    def one_e(hprev, xt):
                        x_t, t = xt
                        state, _, _ = solve_segment(params["seg"], jnp.concatenate([x_t, hprev]), gb, spec, s)
                        h = state[-1] + jnp.where(t == chosen, e, jnp.zeros_like(e))
                        return h, head(h)

                    _, outs = lax.scan(one_e, jnp.zeros(spec.widths[-1], x.dtype), (x, jnp.arange(x.shape[0])))
                    return sample_loss(outs)

                rhs = (*_zeros_like(fixed[:-1]), jax.grad(later)(jnp.zeros_like(fixed[-1])))
            solves = [(jnp.concatenate([_flat(states), jax.vmap(head)(states[-1])], 1), g, res,
                       jnp.minimum(st.iters, capacity))]
            lead = inp
            a_states, a_res, a_st, a_u = _adjoint_trace(m, cfg, live, fixed, rhs, capacity)
            adjoint_solves = [(_flat(a_states), a_res, a_st, _flat(a_u))]
        else:  # resnet_fp: the two blocks one after the other, the second from the first's fixed point
            h = jnp.tanh(dense(params["embed"], x))
            m1 = _segment_map(params["block12"], h, gb, spec, cfg)
            s1, g1, r1, st1, fixed1 = _forward_trace(m1, cfg, live, capacity)
            m2 = _segment_map(params["block34"], fixed1[-1], gb, spec, cfg)
            s2, g2, r2, st2, fixed2 = _forward_trace(m2, cfg, live, capacity)
            output = head(fixed2[-1])
            step_iters, step_conv = (st1.iters + st2.iters)[None], (st1.converged & st2.converged)[None]
            tail = jnp.concatenate([_flat(s2), jax.vmap(head)(s2[-1])], 1)
            solves = [(_flat(s1), g1, r1, jnp.minimum(st1.iters, capacity)),
                      (tail, g2, r2, jnp.minimum(st2.iters, capacity))]
            lead = jnp.concatenate([x, h])

            def after(e1, e2):  # the loss from perturbed fixed points; block 2 re-solved as the model does
                z2, _, _ = solve_segment(params["block34"], fixed1[-1] + e1[-1], gb, spec, s)
                return sample_loss(head(z2[-1] + e2[-1]))

            rhs1, rhs2 = jax.grad(after, argnums=(0, 1))(_zeros_like(fixed1), _zeros_like(fixed2))
            # backward: block 2 (B3, B4) first, then block 1 from the cotangent block 2 hands back
            a2, ar2, ast2, au2 = _adjoint_trace(m2, cfg, live, fixed2, rhs2, capacity)
            a1, ar1, ast1, au1 = _adjoint_trace(m1, cfg, live, fixed1, rhs1, capacity)
            adjoint_solves = [(_flat(a2), ar2, ast2, _flat(au2)), (_flat(a1), ar1, ast1, _flat(au1))]
        vals, gts, residual, count = _timeline(solves, capacity)
        values = jnp.concatenate([jnp.broadcast_to(lead, (vals.shape[0], lead.shape[0])), vals], 1)
        assert values.shape[1] == layout.units, (values.shape, layout.units)
        return {"values": values, "gates": gts, "residual": residual, "count": count, "iters": jnp.sum(step_iters),
                "converged": jnp.all(step_conv), "output": output, "time_step": jnp.asarray(chosen, jnp.int32),
                "step_iters": step_iters, "index": jnp.asarray(index, jnp.int32),
                "adjoint": _adjoint_timeline(adjoint_solves, layout, lead_units, capacity)}

    return settle


def _flat(states):
    return jnp.concatenate(states, -1)


def _zeros_like(tree):
    return jax.tree.map(jnp.zeros_like, tree)


def _chosen_step(time_step, step_iters):
    """The time step to trace: `time_step` (clipped to the sequence), or the slowest when it is negative."""
    return jnp.where(time_step < 0, jnp.argmax(step_iters), jnp.clip(time_step, 0, step_iters.shape[0] - 1))


def _gru_solves(cell, params, x, sample_loss, s, cfg: TrainConfig, live: LiveControls, time_step, capacity):
    """wormhole_gru: every time step's solve as the model runs it (`cell.step` over the sequence, the wormhole
    weight bounded once as `scan_cell` does), then the chosen time step's forward and adjoint solves recorded.
    Returns what `build_settle` needs of one branch: (solves, lead, adjoint solves, output, step_iters,
    step_converged, chosen)."""
    p = bound(params, s)
    layers, hidden = len(p["layers"]), p["hole"]["v"].shape[0]
    carry0 = cell.carry0(x.dtype)

    def split(carry):
        return tuple(carry[i * hidden:(i + 1) * hidden] for i in range(layers))

    def one(carry, x_t):
        new, out, st, _ = cell.step(p, carry, x_t, live.gate, s)
        return new, (carry, st.iters, st.converged, out)

    _, (prevs, step_iters, step_conv, output) = lax.scan(one, carry0, x)
    chosen = _chosen_step(time_step, step_iters)
    m = _gru_map(p, x[chosen], split(prevs[chosen]), live.gate)
    states, g, res, st, fixed = _forward_trace(m, cfg, live, capacity)
    head = lambda z: dense(p["head"], z)  # noqa: E731

    def later(e):  # the loss with `e` added to the chosen step's state: its output and what later steps read
        def one_e(carry, xt):
            x_t, t = xt
            new, _, _, _ = cell.step(p, carry, x_t, live.gate, s)
            new = new + jnp.where(t == chosen, e, jnp.zeros_like(e))
            return new, head(new[(layers - 1) * hidden:])

        _, outs = lax.scan(one_e, carry0, (x, jnp.arange(x.shape[0])))
        return sample_loss(outs)

    rhs = split(jax.grad(later)(jnp.zeros_like(carry0)))
    a_states, a_res, a_st, a_u = _adjoint_trace(m, cfg, live, fixed, rhs, capacity)
    solves = [(jnp.concatenate([_flat(states), jax.vmap(head)(states[-1])], 1), g, res,
               jnp.minimum(st.iters, capacity))]
    lead = jnp.concatenate([prevs[chosen], x[chosen]])  # the columns h_t−1, x_t
    return solves, lead, [(_flat(a_states), a_res, a_st, _flat(a_u))], output, step_iters, step_conv, chosen


ADJOINT = """The `adjoint` entry of a trace: `values` (timeline, units) the adjoint state of every fixed-point unit
(NaN for the other columns, and for a block whose backward solve has not started), `residual` (timeline,) relative
to the size of the solve's right-hand side (as `bwd_tol` is), `count`, `iters` (the real iteration count, summed
over the solves), `converged`, `solve_iters` (per solve, in backward order: resnet_fp's block 2 first) and
`final` (units,) the adjoint each solve ends at (the real solve's, not capped by the capacity), in layout
order (NaN outside the fixed-point columns)."""


def _adjoint_timeline(solves, layout: Layout, lead_units: int, capacity: int) -> dict:
    """The adjoint solves (backward order) on one timeline, their units put back in layout order."""
    empty = jnp.zeros((capacity + 1, 0))
    vals, _, residual, count = _timeline([(v, empty, r, jnp.minimum(st.iters, capacity)) for v, r, st, _ in solves],
                                         capacity)
    widths = [v.shape[1] for v, _, _, _ in solves]
    finals = [u for _, _, _, u in solves]
    bounds = np.cumsum([0] + widths)
    order = list(range(len(solves)))[::-1] if len(solves) > 1 else [0]  # backward order -> layout order
    vals = jnp.concatenate([vals[:, bounds[i]:bounds[i + 1]] for i in order], 1)
    final = jnp.concatenate([finals[i] for i in order])
    tail = layout.units - lead_units - vals.shape[1]

    def pad(a):
        nan = functools.partial(jnp.full, fill_value=jnp.nan, dtype=a.dtype)
        return jnp.concatenate([nan(a.shape[:-1] + (lead_units,)), a, nan(a.shape[:-1] + (tail,))], -1)

    return {"values": pad(vals), "residual": residual, "count": count,
            "iters": sum(st.iters for _, _, st, _ in solves),
            "converged": jnp.all(jnp.stack([st.converged for _, _, st, _ in solves])),
            "solve_iters": jnp.stack([st.iters for _, _, st, _ in solves]), "final": pad(final)}


# ----------------------------------------------------------------------------------------------
# One compiled trace per trainer structure
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _settle_built(structure: TrainConfig):
    from .train import trainer_for

    trainer = trainer_for(structure)
    return jax.jit(build_settle(trainer.model, trainer.task, structure))


def settle_for(config: TrainConfig):
    """The jitted trace `(params, live, index, time_step=-1) -> dict` for runs of `config`'s structure
    (shared by every run that differs only in seed and live controls, as `train.trainer_for` is)."""
    return _settle_built(structure_of(config))


def timeline_columns(trace: dict) -> int:
    """Columns of the settling view: the start plus every recorded iteration."""
    return int(trace["count"]) + 1
