"""A run's self-contained HTML report: the training curves and solver statistics as Plotly figures.

`write_report(path, history, config=..., summary=..., generated=...)` writes one HTML file with
plotly.js inlined (it opens offline). `history` is the list of per-step dicts of `train.summarize`
(non-finite numbers may be None). The figures are the dashboard's builders (`twnn_jax.figures`);
Plotly itself is imported only when a report is rendered.
"""

from __future__ import annotations

import html
from pathlib import Path

from .checkpoint import json_safe, write_atomic


def report_figures(history, *, config=None, metric_name=None, generated=None, last_metrics=None) -> list:
    """The report's figures, in order, from the figure builders of `twnn_jax.figures`.

    `last_metrics`: the last step's raw metrics (gates per sample; residual trajectories when the run
    recorded them); `generated`: the sine task's free-running generation.
    """
    import numpy as np

    from . import figures

    last = last_metrics or {}
    figs = [
        figures.loss_figure(history, metric_name=metric_name),
        figures.iterations_figure(history, max_iter=getattr(config, "max_iter", None)),
        figures.converged_fraction_figure(history),
        figures.gates_figure(history, None if last.get("gates") is None else np.asarray(last["gates"])),
    ]
    if generated is not None:
        figs.append(figures.sine_figure(generated["series"], generated["target"]))
    if last.get("fwd_trajectory") is not None:
        figs.append(figures.convergence_figure([np.asarray(last["fwd_trajectory"])], getattr(config, "tol", 1e-3),
                                               steps=[history[-1]["step"]] if history else None,
                                               iters=np.asarray(last["fwd_iters"])))
    if last.get("bwd_trajectory") is not None:
        figs.append(figures.convergence_figure([np.asarray(last["bwd_trajectory"])], getattr(config, "bwd_tol", 1e-4),
                                               steps=[history[-1]["step"]] if history else None,
                                               title="Backward (adjoint) solve: residual per iteration",
                                               tol_label="bwd_tol", iters=np.asarray(last["bwd_iters"])))
    return figs


def _table(rows: dict) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items()
    )
    return f"<table>{cells}</table>"


def render_report(history, *, config=None, summary=None, generated=None, last_metrics=None,
                  metric_name=None, title="twnn run") -> str:
    """The report as one HTML string (plotly.js inlined once). See `report_figures` for the arguments."""
    import plotly.io as pio

    figs = report_figures(history, config=config, metric_name=metric_name, generated=generated,
                         last_metrics=last_metrics)
    parts = [pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), default_width="100%")
             for i, fig in enumerate(figs)]
    summary_html = _table(json_safe(summary)) if summary else ""
    config_html = _table(config.to_dict() if hasattr(config, "to_dict") else dict(config or {}))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:1200px}}table{{border-collapse:collapse;margin:.5em 0}}
th,td{{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:13px}}th{{background:#f4f4f4}}
.cols{{display:flex;gap:2em;flex-wrap:wrap}}</style></head>
<body><h1>{html.escape(title)}</h1>
<div class="cols"><div><h2>Summary</h2>{summary_html}</div><div><h2>Config</h2>{config_html}</div></div>
{"".join(parts)}
</body></html>
"""


def write_report(path, history, **kw) -> Path:
    """Write `render_report(history, **kw)` to `path` atomically; returns the path."""
    path = Path(path)
    write_atomic(path, render_report(history, **kw).encode("utf-8"))
    return path
