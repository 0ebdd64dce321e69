"""A sweep's heatmaps over tol x gate (forward iterations, final loss, evaluation metric) and their HTML page.

Plain Plotly dicts in the style of `twnn_jax.figures` (its common layout); Plotly is imported only to write
the page. Each cell is the mean over the other axes (seeds, max_iter, ...) of the configurations with
that tol and gate.
"""

from __future__ import annotations

import html
import math

import numpy as np

from .checkpoint import json_safe
from .figures import base_figure

HEATMAPS = (  # (column of the sweep table, title, colour scale)
    ("fwd_iters_mean", "Forward iterations per step (training mean)", "Viridis"),
    ("final_loss", "Final training loss (mean of the last 10 steps)", "Magma"),
    ("eval_metric", "Evaluation {metric}", "Cividis"),
)


def _label(x: float) -> str:
    return f"{x:g}"


def heatmap_figure(tols, gates, z: np.ndarray, *, title: str, key: str, colorscale: str = "Viridis") -> dict:
    """One heatmap: rows tol (large to small), columns gate, cells `z[tol, gate]` written in the cell."""
    z = np.asarray(z, float)
    text = [["" if not math.isfinite(v) else f"{v:.3g}" for v in row] for row in z]
    trace = {"type": "heatmap", "x": [_label(g) for g in gates], "y": [_label(t) for t in tols],
             "z": np.where(np.isfinite(z), z, None).tolist(), "text": text, "texttemplate": "%{text}",
             "colorscale": colorscale, "hovertemplate": "gate %{x}<br>tol %{y}<br>" + key + " %{z:.4g}<extra></extra>"}
    return base_figure([trace], title, "gate bias", "tol", height=120 + 45 * max(len(tols), 2),
                   layout={"xaxis": {"type": "category"}, "yaxis": {"type": "category"}},
                   meta={"kind": "sweep_heatmap", "key": key, "tols": list(tols), "gates": list(gates),
                         "z": json_safe(z)})


def sweep_heatmaps(rows: list[dict], metric_name: str) -> list[dict]:
    from .sweep import heatmap_grid

    figs = []
    for key, title, scale in HEATMAPS:
        tols, gates, z = heatmap_grid(rows, key)
        figs.append(heatmap_figure(tols, gates, z, title=title.format(metric=metric_name), key=key, colorscale=scale))
    return figs


def heatmaps_html(rows: list[dict], metric_name: str, info: dict) -> str:
    """The page: a line about the sweep, then the three heatmaps (plotly.js inlined once; opens offline)."""
    import plotly.io as pio

    figs = sweep_heatmaps(rows, metric_name)
    parts = [pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), default_width="100%")
             for i, fig in enumerate(figs)]
    axes = ", ".join(f"{k} ({len(v)})" for k, v in info["axes"].items() if len(v) > 1)
    line = (f"{info['task']}: {info['configurations']} configurations over {axes}, {info['steps']} steps each, "
            f"on {info['devices']['count']} {info['devices']['backend']} device(s); "
            f"each cell: the mean over the axes other than tol and gate.")
    title = f"twnn sweep: {info['task']}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:1000px}}</style></head>
<body><h1>{html.escape(title)}</h1><p>{html.escape(line)}</p>
{"".join(parts)}
</body></html>
"""
