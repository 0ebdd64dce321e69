"""Figures of a growing network (seed 003, `twnn_jax.growth`): its size over training and its neurons now.

Pure builders in the manner of `twnn_jax.figures` (plain numbers in, a Plotly figure dict out, `layout.meta`
with the numbers drawn, `layout.uirevision` so a redraw keeps the zoom). The dashboard draws them live
(dashboard/panels.py); `history` is a list of per-step rows carrying `size`, `added` and `deleted`, as the
growth trainer writes them (metrics.jsonl of `twnn train --task brackets-hard --grow on`).

>>> fig = size_figure([{"step": 1, "size": 1, "added": 0, "deleted": 0}], max_size=100)
>>> fig["layout"]["meta"]["last_size"]
1
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .figures import FWD_COLOR, base_figure, history_column, note_annotation, scatter_trace, thin_indices

ADD_COLOR = "#2ca02c"
DELETE_COLOR = "#d62728"
LOW_COLOR = "#ff7f0e"  # a neuron at or below the score threshold (the rule may delete it)
FREE_COLOR = "#c7c7c7"


def size_figure(history: Sequence[dict], *, max_size: int, title: str = "Active neurons per step",
                xtitle: str = "training step", what: str = "neurons") -> dict:
    """Active neurons (or what grows: `what`) per training step (a step line), with the steps where the size
    went up (green) or down (red) since the previous row of `history` (a thinned history marks the net change
    between its rows); the number of slots (`max_size`) in the title."""
    traces: list = []
    layout: dict = {"yaxis": {"rangemode": "tozero"}}
    rows = [h for h in history if h.get("size") is not None]
    n = len(rows)
    if n == 0:
        layout["annotations"] = [note_annotation("no steps yet: press Play or Step")]
    else:
        steps, size = history_column(rows, "step"), history_column(rows, "size")
        idx = thin_indices(n)
        traces.append(scatter_trace(steps[idx], size[idx], mode="lines", name=f"active {what}",
                               line={"color": FWD_COLOR, "width": 2.5, "shape": "hv"}))
        change = np.diff(size, prepend=size[0])
        for up, color, symbol, label in ((True, ADD_COLOR, "triangle-up", "size up"),
                                         (False, DELETE_COLOR, "triangle-down", "size down")):
            events = np.flatnonzero(change > 0 if up else change < 0)
            events = events[thin_indices(events.size, 300)]
            if events.size:
                traces.append(scatter_trace(steps[events], size[events], mode="markers", name=label,
                                       marker={"symbol": symbol, "color": color, "size": 8}))
    last = rows[-1] if n else {}
    meta = {"kind": "size", "what": what, "steps": n, "last_step": last.get("step"), "last_size": last.get("size"),
            "max_size": int(max_size),
            "sizes_seen": sorted({int(h["size"]) for h in rows}) if n else [],
            "ups": int(np.sum(change > 0)) if n else 0, "downs": int(np.sum(change < 0)) if n else 0}
    return base_figure(traces, f"{title} (of {max_size} slots)", xtitle, f"active {what}", layout=layout, meta=meta)


def units_figure(active, score, *, threshold: float, title: str = "Neurons") -> dict:
    """The net's slots as a grid of dots: a neuron (active slot) filled, blue when its score is above the
    threshold, orange at or below it (the add/delete rule may delete it); a free slot as a grey ring.
    Hover shows each slot's score."""
    active = np.asarray(active, float) > 0
    score = np.asarray(score, float)
    slots = active.size
    cols = max(1, math.ceil(math.sqrt(slots)))
    x, y = np.arange(slots) % cols, -(np.arange(slots) // cols)
    low = active & (score <= threshold)
    groups = (("neuron (score above threshold)", active & ~low, FWD_COLOR, "circle", 16),
              ("neuron at or below threshold", low, LOW_COLOR, "circle", 16),
              ("free slot", ~active, FREE_COLOR, "circle-open", 10))
    traces = []
    for name, mask, color, symbol, size in groups:
        i = np.flatnonzero(mask)
        traces.append(scatter_trace(x[i], y[i], mode="markers", name=name, customdata=i,
                               text=[f"slot {k}: score {score[k]:.3g}" if active[k] else f"slot {k}: free" for k in i],
                               hovertemplate="%{text}<extra></extra>",
                               marker={"color": color, "symbol": symbol, "size": size,
                                       "line": {"width": 1.5, "color": color}}))
    hidden_axis = {"showgrid": False, "showticklabels": False, "zeroline": False, "title": {"text": ""}}
    layout = {"xaxis": {**hidden_axis, "range": [-0.7, cols - 0.3]},
              "yaxis": {**hidden_axis, "range": [-(math.ceil(slots / cols)) + 0.3, 0.7], "scaleanchor": "x"}}
    n_active = int(active.sum())
    meta = {"kind": "units", "active": n_active, "slots": int(slots), "below_threshold": int(low.sum()),
            "active_slots": np.flatnonzero(active).tolist(), "threshold": float(threshold)}
    return base_figure(traces, f"{title}: {n_active} of {slots} slots active", "", "", height=360, layout=layout,
                   meta=meta)
