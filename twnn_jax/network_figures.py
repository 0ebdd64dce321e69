"""Pure Plotly figure builders for the network picture and one input settling (plain dicts, as figures.py).

`network_figure` draws a `settle_trace.Layout`: columns of units (coloured by their value), faint forward
connections, and each wormhole as an arc from the later layer back to the earlier one whose width and
opacity are its gate (0 shut, 1 open) and whose colour is the sign of its weight (`weight_balance`).
`settling_heatmap` draws a `settle_trace` timeline (forward, or the adjoint's backward one) as a units x
iterations heatmap with the residual of each iteration above it. Numbers in, dicts out; no JAX.
"""

from __future__ import annotations

import numpy as np

from .figures import base_figure, note_annotation
from .settle_trace import Layout

ARC_COLOR = "rgb(230,120,20)"  # a wormhole whose weights are positive (they add the later layer's state)
ARC_NEG_COLOR = "rgb(0,150,136)"  # ... negative (they subtract it); mixed weights: in between, through grey
ARC_MID_COLOR = "rgb(150,150,150)"
RECUR_COLOR = "rgb(120,120,120)"
# negative blue, zero light grey, positive red (spelled out: plotly.js's "RdBu" and plotly.py's run opposite ways)
COLORSCALE = [[0.0, "rgb(33,102,172)"], [0.25, "rgb(146,197,222)"], [0.5, "rgb(232,232,232)"],
              [0.75, "rgb(244,165,130)"], [1.0, "rgb(178,24,43)"]]
PENDING_COLOR = "rgba(150,150,150,0.35)"
ARC_MIN_WIDTH, ARC_MAX_WIDTH = 1.0, 14.0


def _unit_y(size: int) -> np.ndarray:
    """Heights of a column's units in [0.05, 0.95] (one unit sits in the middle)."""
    if size == 1:
        return np.array([0.5])
    spread = min(0.9, 0.03 * size)  # short columns stay short
    return np.linspace(0.5 + spread / 2, 0.5 - spread / 2, size)


def value_range(values) -> float:
    """The colour scale's half-range: the largest finite |value| (at least 1e-6)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(max(np.max(np.abs(v)) if v.size else 1.0, 1e-6))


def arc_width(gate: float) -> float:
    return ARC_MIN_WIDTH + (ARC_MAX_WIDTH - ARC_MIN_WIDTH) * float(np.clip(gate, 0.0, 1.0))


def weight_balance(v) -> float:
    """Sign of a wormhole's weight matrix in [-1, 1]: sum(V) / sum(|V|) (+1: every entry positive, -1: every
    entry negative, 0: they cancel, or V is zero)."""
    v = np.asarray(v, float)
    total = float(np.sum(np.abs(v)))
    return float(np.sum(v) / total) if total > 0 else 0.0


def _rgb(text: str) -> np.ndarray:
    return np.array([float(c) for c in text[4:-1].split(",")])


def arc_color(balance: float) -> str:
    """The arc's colour for a `weight_balance`: orange (+1) through grey (0) to teal (-1)."""
    b = float(np.clip(balance, -1.0, 1.0)) if np.isfinite(balance) else 0.0
    end = _rgb(ARC_COLOR if b >= 0 else ARC_NEG_COLOR)
    c = _rgb(ARC_MID_COLOR) + abs(b) * (end - _rgb(ARC_MID_COLOR))
    return "rgb({:.0f},{:.0f},{:.0f})".format(*c)


SELF_LOOP_WIDTH = 0.05  # half the width of a wormhole from a layer to itself (a loop over its column)


def _arc(x0: float, x1: float, y: float, height: float, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A quadratic Bezier from (x0, y) over the top to (x1, y); a loop over the column where x0 == x1."""
    t = np.linspace(0.0, 1.0, n)
    if x0 == x1:
        return x0 + SELF_LOOP_WIDTH * np.sin(2 * np.pi * t), y + height * np.sin(np.pi * t)
    xm, ym = (x0 + x1) / 2, y + height
    return ((1 - t) ** 2 * x0 + 2 * (1 - t) * t * xm + t ** 2 * x1,
            (1 - t) ** 2 * y + 2 * (1 - t) * t * ym + t ** 2 * y)


def network_figure(layout: Layout, values, gate_means, hole_norms, *, sample_gates=None, scale: float | None = None,
                   title: str = "Network", subtitle: str = "", hole_balance=None, value_name: str = "value",
                   pending: str = "not computed yet (its block has not started)", free=None) -> dict:
    """The network: `values` (units,) every unit's value in layout order (NaN: `pending`, drawn grey),
    `gate_means` (n_wormholes,) each wormhole's mean gate (arc width and opacity), `hole_norms` its weight's
    spectral norm, `hole_balance` its `weight_balance` (arc colour; None: all positive), `sample_gates` the
    chosen sample's gates (hover). `scale`: the colour scale's half-range; `value_name`: what the units show.
    `free` (units,) bool: a growing net's free slots (`settle_trace.free_slots`), drawn as grey rings."""
    values = np.asarray(values, float)
    gate_means = np.asarray(gate_means, float).reshape(-1)
    scale = value_range(values) if scale is None else scale
    cols = layout.columns
    xs = np.arange(len(cols), dtype=float)
    offsets = layout.offsets
    traces: list = []
    # forward connections, faint: each unit of a column (or of the link's units) to a few units of the target
    fx, fy = [], []
    for link in layout.forward_links:
        ya, yb = _unit_y(cols[link.source].size), _unit_y(cols[link.target].size)
        if link.units is not None:
            ya = ya[link.units[0]:link.units[1]]
        picks = np.unique(np.linspace(0, len(yb) - 1, min(4, len(yb))).round().astype(int))
        for a in ya[:: max(1, len(ya) // 16)]:
            for b in yb[picks]:
                fx += [xs[link.source], xs[link.target], None]
                fy += [a, b, None]
    traces.append({"type": "scatter", "x": fx, "y": fy, "mode": "lines", "hoverinfo": "skip", "showlegend": False,
                   "line": {"color": "rgba(128,128,128,0.12)", "width": 1}, "name": "forward"})
    top = 0.5 + max(min(0.9, 0.03 * c.size) for c in cols) / 2
    bottom = 1.0 - top
    arc_top = top + 0.02 + max([(0.12 + 0.08 * abs(h.source - h.target)) / 2 for h in layout.wormholes] or [0.0])
    # wormholes: arcs over the top, from the later column back to the earlier one
    widths, colors = [], []
    for k, hole in enumerate(layout.wormholes):
        g = float(gate_means[hole.gate]) if gate_means.size else float("nan")
        g_draw = 0.0 if not np.isfinite(g) else g
        span = abs(xs[hole.source] - xs[hole.target])
        ax, ay = _arc(xs[hole.source], xs[hole.target], top + 0.02, 0.12 + 0.08 * span)
        name = f"{cols[hole.source].name} → {cols[hole.target].name}"
        sample = "" if sample_gates is None else f"<br>this sample's gate {float(sample_gates[hole.gate]):.3f}"
        balance = 1.0 if hole_balance is None else float(hole_balance[k])
        sign = "mostly positive" if balance > 0.2 else "mostly negative" if balance < -0.2 else "mixed"
        text = (f"wormhole {name}<br>mean gate {g:.3f} (0 shut, 1 open){sample}"
                f"<br>‖V‖ = {float(hole_norms[k]):.3g}<br>weights {sign}: Σv / Σ|v| = {balance:+.2f}")
        widths.append(arc_width(g_draw))
        colors.append(arc_color(balance))
        traces.append({"type": "scatter", "x": ax, "y": ay, "mode": "lines", "name": f"wormhole {name}",
                       "line": {"color": colors[-1], "width": widths[-1], "shape": "spline"},
                       "opacity": 0.25 + 0.75 * float(np.clip(g_draw, 0, 1)), "hoverinfo": "text",
                       "text": [text] * len(ax), "showlegend": False, "meta": {"arc": k}})
        # the arrow head at the earlier layer
        traces.append({"type": "scatter", "x": [ax[-1]], "y": [ay[-1]], "mode": "markers", "hoverinfo": "skip",
                       "showlegend": False, "opacity": 0.25 + 0.75 * float(np.clip(g_draw, 0, 1)),
                       "marker": {"symbol": "triangle-down", "size": 8 + widths[-1], "color": colors[-1]}})
    carry_notes = []
    for source, target in layout.carry:  # the state the next time step reads: dotted, below the column labels
        depth = -0.06 - 0.02 * abs(source - target)
        ax, ay = _arc(xs[source], xs[target], bottom - 0.24, depth)
        text = (f"{cols[source].name} at time t becomes part of the next time step's {cols[target].name}"
                " (not a wormhole: no fixed point over time)")
        traces.append({"type": "scatter", "x": ax, "y": ay, "mode": "lines", "hoverinfo": "text",
                       "text": [text] * len(ax), "showlegend": False, "name": "to the next time step",
                       "line": {"color": RECUR_COLOR, "width": 1.5, "dash": "dot"}})
        carry_notes.append((abs(source - target), {
            "x": (xs[source] + xs[target]) / 2, "y": bottom - 0.25 + depth / 2, "yanchor": "top", "showarrow": False,
            "font": {"size": 11, "color": "#888"}, "text": f"to the next time step's {cols[target].name}"}))
    # units
    ux, uy, uc, ut, px, py, pt, fx, fy, ft = [], [], [], [], [], [], [], [], [], []
    free = np.zeros(len(values), bool) if free is None else np.asarray(free, bool)
    for c, col in enumerate(cols):
        ys = _unit_y(col.size)
        for u in range(col.size):
            v = values[offsets[c] + u]
            label = f"{col.name} unit {u + 1} of {col.size}"
            if free[offsets[c] + u]:
                fx.append(xs[c])
                fy.append(ys[u])
                ft.append(f"{label}<br>free slot: the net may grow a unit here")
            elif np.isfinite(v):
                ux.append(xs[c])
                uy.append(ys[u])
                uc.append(v)
                ut.append(f"{label}<br>{value_name} {v:.4g}")
            else:
                px.append(xs[c])
                py.append(ys[u])
                pt.append(f"{label}<br>{pending}")
    size = 9 if max(c.size for c in cols) <= 40 else 6
    traces.append({"type": "scatter", "x": ux, "y": uy, "mode": "markers", "hoverinfo": "text", "text": ut,
                   "name": "units", "showlegend": False,
                   "marker": {"size": size, "color": uc, "colorscale": COLORSCALE,
                              "cmin": -scale, "cmax": scale, "line": {"width": 0.5, "color": "rgba(80,80,80,0.6)"},
                              "colorbar": {"title": {"text": value_name}, "thickness": 12, "len": 0.8}}})
    if px:
        traces.append({"type": "scatter", "x": px, "y": py, "mode": "markers", "hoverinfo": "text", "text": pt,
                       "name": "not yet computed", "showlegend": False,
                       "marker": {"size": size, "color": PENDING_COLOR, "line": {"width": 0.5, "color": "#999"}}})
    if fx:
        traces.append({"type": "scatter", "x": fx, "y": fy, "mode": "markers", "hoverinfo": "text", "text": ft,
                       "name": "free slots", "showlegend": False,
                       "marker": {"size": size, "color": "rgba(0,0,0,0)", "line": {"width": 1, "color": "#bbb"}}})
    in_use = [col.size - int(np.sum(free[offsets[c]:offsets[c] + col.size])) for c, col in enumerate(cols)]
    annotations = [{"x": xs[c], "y": bottom - 0.05, "showarrow": False, "yanchor": "top", "font": {"size": 12},
                    "text": f"<b>{col.name}</b><br>{col.size if n == col.size else f'{n} of {col.size}'}"}
                   for c, (col, n) in enumerate(zip(cols, in_use))]
    if carry_notes:  # the carry arcs' note once, under the longest
        annotations.append(max(carry_notes, key=lambda note: note[0])[1])
    # the fixed-point blocks: a box around the columns solved together
    shapes = []
    state_cols = [c for c, col in enumerate(cols) if col.role == "state"]
    blocks = [state_cols] if layout.kind != "resnet_fp" else [state_cols[: len(state_cols) // 2],
                                                               state_cols[len(state_cols) // 2:]]
    for b, block in enumerate(blocks):
        shapes.append({"type": "rect", "x0": xs[block[0]] - 0.3, "x1": xs[block[-1]] + 0.3, "y0": bottom - 0.01,
                       "y1": top + 0.01, "line": {"color": "rgba(128,128,128,0.5)", "dash": "dot", "width": 1},
                       "fillcolor": "rgba(128,128,128,0.04)", "layer": "below"})
        annotations.append({"x": (xs[block[0]] + xs[block[-1]]) / 2, "y": bottom - 0.16, "showarrow": False,
                            "text": "fixed point" + (f" {b + 1}" if len(blocks) > 1 else ""), "yanchor": "top",
                            "font": {"size": 11, "color": "#888"}})
    if not layout.wormholes:
        annotations.append(note_annotation("this model has no wormholes"))
    lay = {
        "xaxis": {"visible": False, "range": [-0.6, len(cols) - 0.4]},
        "yaxis": {"visible": False, "range": [bottom - (0.42 if layout.recurrent else 0.22), arc_top + 0.04]},
        "annotations": annotations, "shapes": shapes, "margin": {"l": 10, "r": 10, "t": 60, "b": 10},
        "title": {"text": title + (f"<br><sup>{subtitle}</sup>" if subtitle else "")},
    }
    meta = {"kind": "network", "arcs": len(layout.wormholes), "arc_widths": widths, "arc_colors": colors,
            "gate_means": [float(g) for g in gate_means], "units": layout.units, "free_slots": int(np.sum(free)),
            "unit_values": [None if not np.isfinite(v) else float(v) for v in values]}
    return base_figure(traces, title, "", "", height=420, meta=meta, layout=lay)


FORWARD_ROLES, BACKWARD_ROLES = ("state", "output"), ("state",)  # the columns each direction's heatmap shows


def heatmap_rows(layout: Layout, roles=FORWARD_ROLES) -> list[int]:
    """The units the heatmap shows: those that change while settling (forward: the state and output columns;
    backward, `BACKWARD_ROLES`: the fixed-point layers, the only ones with an adjoint)."""
    rows = []
    for c, col in enumerate(layout.columns):
        if col.role in roles:
            rows += list(range(layout.offsets[c], layout.offsets[c] + col.size))
    return rows


def settling_heatmap(layout: Layout, values, residual, count: int, iteration: int, *, scale: float | None = None,
                     title: str = "One input settling", subtitle: str = "", direction: str = "forward") -> dict:
    """Units x iterations: `values` (timeline, units) from `settle_trace` (`direction` "backward": its
    `adjoint` entry), the first `count + 1` columns drawn; `residual` (timeline,) above it (log scale); a marker
    line at `iteration` (the slider)."""
    if direction not in ("forward", "backward"):
        raise ValueError(f"direction must be forward or backward, got {direction!r}")
    backward = direction == "backward"
    roles = BACKWARD_ROLES if backward else FORWARD_ROLES
    value_name = "adjoint" if backward else "value"
    values = np.asarray(values, float)[: count + 1]
    rows = heatmap_rows(layout, roles)
    z = values[:, rows].T  # units x iterations
    scale = value_range(z) if scale is None else scale
    labels, ticks, ticktext, shapes = [], [], [], []
    row = 0
    for col in layout.columns:
        if col.role not in roles:
            continue
        labels += [f"{col.name}·{u + 1}" for u in range(col.size)]
        ticks.append(row + (col.size - 1) / 2)
        ticktext.append(col.name)
        if row:
            shapes.append({"type": "line", "xref": "x", "yref": "y", "x0": -0.5, "x1": count + 0.5, "y0": row - 0.5,
                           "y1": row - 0.5, "line": {"color": "rgba(128,128,128,0.8)", "width": 1}})
        row += col.size
    iters = np.arange(count + 1)
    traces = [{"type": "heatmap", "z": z, "x": iters, "y": np.arange(len(rows)), "colorscale": COLORSCALE,
               "zmin": -scale, "zmax": scale, "text": [labels[r:r + 1] * (count + 1)
                                                                             for r in range(len(rows))],
               "hovertemplate": "%{text} after %{x} " + ("backward " if backward else "") + "iterations: "
               + value_name + " %{z:.4g}<extra></extra>",
               "colorbar": {"title": {"text": value_name}, "thickness": 12, "len": 0.7, "y": 0.35}}]
    res = np.asarray(residual, float)[: count + 1]
    traces.append({"type": "scatter", "x": iters[1:], "y": np.where(res[1:] > 0, res[1:], np.nan),
                   "mode": "lines+markers", "name": "residual", "xaxis": "x", "yaxis": "y2", "showlegend": False,
                   "line": {"color": "#1f77b4"}, "marker": {"size": 4},
                   "hovertemplate": "iteration %{x}: residual %{y:.3g}<extra></extra>"})
    iteration = int(np.clip(iteration, 0, count))
    shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": iteration, "x1": iteration, "y0": 0, "y1": 1,
                   "line": {"color": "rgba(0,0,0,0.8)", "width": 2, "dash": "dot"}})
    n_rows = len(rows)
    lay = {
        "xaxis": {"title": {"text": "backward iteration (0: the start, the loss's gradient)" if backward
                            else "iteration (0: the start, state zero)"}, "range": [-0.5, count + 0.5]},
        "yaxis": {"domain": [0.0, 0.74], "tickvals": ticks, "ticktext": ticktext, "autorange": "reversed",
                  "range": None},
        "yaxis2": {"domain": [0.8, 1.0], "type": "log", "anchor": "x",
                   "title": {"text": "residual / ‖g‖" if backward else "residual"}},
        "shapes": shapes,
        "title": {"text": title + (f"<br><sup>{subtitle}</sup>" if subtitle else "")},
        "margin": {"t": 70},
    }
    meta = {"kind": "settle", "units": n_rows, "iterations": count + 1, "count": count, "iteration": iteration,
            "direction": direction}
    if count <= 20:  # a short solve: one tick per iteration (not 0.5, 1.5, ...)
        lay["xaxis"]["dtick"] = 1
    fig = base_figure(traces, title, "iteration", "", height=max(380, min(700, 160 + 2 * n_rows)), meta=meta,
                      layout=lay)
    if count < 1:
        fig["layout"]["annotations"] = [note_annotation("no iterations recorded")]
    return fig
