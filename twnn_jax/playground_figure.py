"""The 2-D playground's phase plane as a plain Plotly dict (as figures.py): numbers in, a dict out; no JAX.

Drawn from `playground.plane(...)`: the contracting region shaded (spectral norm of the iterated map's
Jacobian < 1), arrows of f(z) - z, the fixed points, a path per start point (red when it did not converge),
and an invisible grid of click targets (a click on the plane selects the nearest one: a new start point).
"""

from __future__ import annotations

import numpy as np

from .figures import base_figure
from .playground import LIMIT

CLICK_GRID = 23  # click targets per side
PATH_COLORS = ("rgb(31,119,180)", "rgb(44,160,44)", "rgb(148,103,189)", "rgb(23,190,207)", "rgb(140,86,75)",
               "rgb(188,189,34)", "rgb(227,119,194)", "rgb(127,127,127)")
FAIL_COLOR = "rgb(214,39,40)"
SHADE_COLOR = "rgba(60,170,90,0.22)"


def click_targets() -> np.ndarray:
    axis = np.round(np.linspace(-1.0, 1.0, CLICK_GRID), 4)
    return np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)


def _arrow_segments(grid: np.ndarray, d: np.ndarray, spacing: float):
    """Line segments (with None gaps) for arrows from each grid point along d, length at most 0.85 spacing."""
    length = np.linalg.norm(d, axis=1)
    scale = np.where(length > 0, np.minimum(1.0, 0.85 * spacing / np.maximum(length, 1e-12)), 0.0)
    tip = grid + d * scale[:, None]
    xs, ys = [], []
    for (x0, y0), (x1, y1), n in zip(grid, tip, length):
        xs += [x0, x1, None]
        ys += [y0, y1, None]
        if n > 0:  # the head: two short strokes back from the tip
            ux, uy = (x1 - x0), (y1 - y0)
            size = np.hypot(ux, uy)
            if size > 1e-9:
                ux, uy = ux / size * 0.3 * spacing * min(1, size / spacing + 0.3), uy / size * 0.3 * spacing * min(
                    1, size / spacing + 0.3)
                for s in (0.45, -0.45):
                    c, si = np.cos(s), np.sin(s)
                    xs += [x1, x1 - (c * ux - si * uy), None]
                    ys += [y1, y1 - (si * ux + c * uy), None]
    return xs, ys


def phase_plane_figure(out: dict, starts, title: str = "Playground: a 2-D fixed-point map",
                       subtitle: str = "") -> dict:
    """The phase plane for `out = playground.plane(knobs, starts)`."""
    axis = np.asarray(out["shade_axis"], float)
    norms = np.asarray(out["norms"], float)
    traces = [{
        "type": "heatmap", "name": "contracts (‖J‖ < 1)", "x": axis.tolist(), "y": axis.tolist(),
        "z": norms.round(4).tolist(), "zmin": 0.0, "zmax": 2.0, "showscale": False, "hoverongaps": False,
        "colorscale": [[0.0, SHADE_COLOR], [0.5, SHADE_COLOR], [0.5, "rgba(255,255,255,0)"],
                       [1.0, "rgba(255,255,255,0)"]],
        "hovertemplate": "z1 %{x:.2f}, z2 %{y:.2f}<br>‖J‖ %{z:.3f}<extra>contraction</extra>",
        "meta": {"contracting_share": float(np.mean(norms < 1))}}]
    grid = np.asarray(out["grid"], float)
    spacing = 2 * LIMIT / (round(np.sqrt(len(grid))) - 1)
    xs, ys = _arrow_segments(grid, np.asarray(out["arrows"], float), spacing)
    traces.append({"type": "scatter", "mode": "lines", "name": "f(z) − z", "x": xs, "y": ys,
                   "line": {"color": "rgba(90,90,90,0.55)", "width": 1}, "hoverinfo": "skip"})
    targets = click_targets()
    traces.append({"type": "scatter", "mode": "markers", "name": "click targets", "x": targets[:, 0].tolist(),
                   "y": targets[:, 1].tolist(), "showlegend": False,
                   "marker": {"size": 14, "color": "rgba(0,0,0,0.003)"},
                   "selected": {"marker": {"color": "rgba(0,0,0,0.003)"}},
                   "unselected": {"marker": {"opacity": 1}},
                   "hovertemplate": "start here: (%{x:.2f}, %{y:.2f})<extra>click</extra>"})
    converged = np.asarray(out["converged"], bool)
    for i, path in enumerate(out["path_list"]):
        path = np.asarray(path, float)
        ok = bool(converged[i])
        color = PATH_COLORS[i % len(PATH_COLORS)] if ok else FAIL_COLOR
        iters = int(out["iters"][i])
        label = f"path {i + 1}: {iters} iterations, " + ("converged" if ok else "NOT converged")
        traces.append({"type": "scatter", "mode": "lines+markers", "name": label, "x": path[:, 0].tolist(),
                       "y": path[:, 1].tolist(), "line": {"color": color, "width": 1.5, "dash": None if ok else "dot"},
                       "marker": {"size": [10] + [4] * (len(path) - 1), "color": color,
                                  "symbol": ["circle-open"] + ["circle"] * (len(path) - 1)},
                       "unselected": {"marker": {"opacity": 1}},
                       "meta": {"path": i, "converged": ok, "iters": iters, "start": [float(v) for v in starts[i]]},
                       "hovertemplate": f"{label}<br>" + "(%{x:.3f}, %{y:.3f})<extra></extra>"})
    fixed = np.asarray(out["fixed"], float).reshape(-1, 2)
    fixed_norms = np.asarray(out["fixed_norms"], float)
    traces.append({"type": "scatter", "mode": "markers", "name": "fixed point", "x": fixed[:, 0].tolist(),
                   "y": fixed[:, 1].tolist(), "customdata": fixed_norms.round(3).tolist(),
                   "marker": {"size": 15, "symbol": "star", "color": "rgb(20,20,20)",
                              "line": {"color": "white", "width": 1}},
                   "unselected": {"marker": {"opacity": 1}},
                   "hovertemplate": "fixed point (%{x:.3f}, %{y:.3f})<br>‖J‖ there %{customdata}<extra></extra>"})
    meta = {"kind": "playground", "paths": len(out["path_list"]), "converged": converged.tolist(),
            "iters": [int(i) for i in out["iters"]], "fixed": fixed.round(4).tolist(), "subtitle": subtitle,
            "starts": [[float(a), float(b)] for a, b in starts]}
    span = [-LIMIT, LIMIT]
    layout = {"xaxis": {"range": span, "zeroline": False, "constrain": "domain"},
              "yaxis": {"range": span, "zeroline": False, "scaleanchor": "x", "scaleratio": 1},
              "legend": {"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1.0, "yanchor": "top"},
              "margin": {"l": 60, "r": 20, "t": 60, "b": 50}, "clickmode": "event+select", "dragmode": False}
    return base_figure(traces, title, "z1 (first layer)", "z2 (second layer)", height=560, meta=meta, layout=layout)
