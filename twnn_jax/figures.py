"""Pure Plotly figure builders for training runs: plain numbers in, a Plotly figure dict out.

Shared by the dashboard, the CLI's HTML report and the paper experiment. Nothing here imports Streamlit
or JAX, reads files or keeps state: every function takes numpy arrays (or lists of `train.summarize` dicts, one
per step, called `history`) and returns a new figure as a plain dict, `{"data": [traces], "layout": {...}}`
(numpy arrays inside), which `plotly.graph_objects.Figure(fig)`, `plotly.io.to_html(fig)` and
`st.plotly_chart(fig)` all take. Plain dicts, not `go.Figure`: the dashboard redraws seven figures every
couple of seconds while training runs, and Plotly's property validation cost ~0.1 s of Python a redraw.

>>> fig = loss_figure([{"step": 1, "loss": 0.5, "metric": 0.5}])      # doctest: +SKIP
>>> plotly.io.write_html(fig, "loss.html")                              # doctest: +SKIP

Every figure sets `layout.uirevision`, so a chart rebuilt with new data keeps the user's zoom, and
`layout.meta` with the numbers it was drawn from (tests and benchmarks read it in the page).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "convergence_figure",
    "converged_fraction_figure",
    "digits_accuracy_figure",
    "gate_sweep_figure",
    "order_and_adding_figure",
    "settle_figure",
    "sine_generation_figure",
    "gates_figure",
    "iterations_figure",
    "iterations_histogram",
    "loss_figure",
    "sample_scatter_figure",
    "sine_figure",
    "sweep_figure",
    "MAX_POINTS",
]

MAX_POINTS = 400  # a line over training keeps at most this many points (strided, last point kept)

FWD_COLOR = "#1f77b4"
BWD_COLOR = "#ff7f0e"
TOL_COLOR = "#d62728"
BAD_COLOR = "#d62728"
TARGET_COLOR = "#7f7f7f"
GATE_COLORS = ("#9467bd", "#17becf", "#8c564b")


def scatter_trace(x, y, **props) -> dict:
    """A Plotly scatter trace as a plain dict (the builders of every `*_figures` module use it)."""
    return {"type": "scatter", "x": x, "y": y, **props}


def _merge(base: dict, extra: dict) -> dict:
    """A new dict: `base` updated by `extra`, nested dicts merged key by key and None values left out (as
    Plotly's update_layout does). Neither argument is changed, and no nested dict of theirs is shared."""
    out = {}
    for key in [*base, *(k for k in extra if k not in base)]:
        a, b = base.get(key), extra.get(key)
        value = a if b is None else b
        if isinstance(value, dict):  # merged into a new dict (a copy when only one side has one)
            value = _merge(a if isinstance(a, dict) else {}, b if isinstance(b, dict) else {})
        if value is not None:
            out[key] = value
    return out


def base_figure(traces: list, title: str, xtitle: str, ytitle: str, *, height: int = 330, meta: dict | None = None,
            layout: dict | None = None) -> dict:
    """The figure dict with this module's common layout; `layout` is merged over it."""
    common = {
        "title": {"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 15}},
        "xaxis": {"title": {"text": xtitle}},
        "yaxis": {"title": {"text": ytitle}},
        "height": height,
        "margin": {"l": 60, "r": 20, "t": 70, "b": 45},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0,
                   "font": {"size": 11}},
        "uirevision": "keep",
        "hovermode": "closest",
    }
    return {"data": traces, "layout": {**_merge(common, layout or {}), "meta": meta or {}}}


def note_annotation(text: str) -> dict:
    """A grey note in the middle of an empty plot (a layout annotation)."""
    return {"text": text, "x": 0.5, "y": 0.85, "xref": "paper", "yref": "paper", "showarrow": False,
            "font": {"size": 14, "color": "#888"}}


# the right-hand axis of a plot with two y axes (as plotly.subplots.make_subplots(secondary_y=True) lays it out)
_SECOND_Y = {"xaxis": {"domain": [0.0, 0.94]}, "yaxis2": {"anchor": "x", "overlaying": "y", "side": "right"}}


def history_column(history: Sequence[dict], name: str, dtype=float) -> np.ndarray:
    """One key of a run's per-step rows as an array (NaN where a row has None or lacks it)."""
    out = []
    for h in history:
        v = h.get(name)
        out.append(np.nan if v is None else v)
    return np.asarray(out, dtype=dtype)


def thin_indices(n: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most `max_points` of `n` evenly strided points, always keeping the last."""
    if n <= max_points:
        return np.arange(n)
    idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    return idx


def _finite_or_nan(a) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    return np.where(np.isfinite(a), a, np.nan)


def _decades(values) -> float:
    """How many powers of ten the positive finite values span (0 when fewer than two)."""
    a = np.asarray([v for v in values if v is not None], float) if not isinstance(values, np.ndarray) else values
    a = a[np.isfinite(a) & (a > 0)]
    return float(np.log10(a.max() / a.min())) if a.size > 1 else 0.0


def _fmt(x) -> str:
    if x is None or not math.isfinite(float(x)):
        return str(x)
    return f"{float(x):.3g}"


# ----------------------------------------------------------------------------------------------
# Over training
# ----------------------------------------------------------------------------------------------


def loss_figure(history: Sequence[dict], *, metric_name: str | None = None, title: str = "Loss") -> dict:
    """Training loss per step (log y) with a running mean; the task metric on a second axis.

    `metric_name` adds the metric (skip it when it equals the loss, as for the sine task's MSE).
    Steps whose loss or gradient was not finite (`skipped`) are marked with red crosses.
    """
    traces: list = []
    layout: dict = {"yaxis": {"type": "log", "exponentformat": "power"}}
    if metric_name is not None:
        layout = _merge(layout, _SECOND_Y)
    n = len(history)
    if n == 0:
        layout["annotations"] = [note_annotation("no steps yet: press Play or Step")]
    else:
        idx = thin_indices(n)
        steps = history_column(history, "step")[idx]
        loss = history_column(history, "loss")
        pos = np.where(np.isfinite(loss) & (loss > 0), loss, np.nan)
        window = max(1, min(50, n // 10))
        smooth = _running_mean(pos, window)
        traces.append(scatter_trace(steps, pos[idx], mode="lines", name="loss", opacity=0.35,
                               line={"color": FWD_COLOR, "width": 1}))
        traces.append(scatter_trace(steps, smooth[idx], mode="lines", name=f"loss (mean of {window})",
                               line={"color": FWD_COLOR, "width": 2.5}))
        skipped = history_column(history, "skipped", dtype=bool) if "skipped" in history[0] else np.zeros(n, bool)
        bad = np.flatnonzero(skipped | ~np.isfinite(loss))
        if bad.size:
            bad = bad[thin_indices(bad.size, 300)]
            top = np.nanmax(pos) if np.any(np.isfinite(pos)) else 1.0
            traces.append(scatter_trace(history_column(history, "step")[bad], np.full(bad.size, top), mode="markers",
                                   name="skipped (non-finite)", marker={"symbol": "x", "color": BAD_COLOR, "size": 9}))
        if metric_name is not None:
            metric = _finite_or_nan(history_column(history, "metric"))
            traces.append(scatter_trace(steps, _running_mean(metric, window)[idx], mode="lines", name=metric_name,
                                   line={"color": "#2ca02c", "width": 2}, yaxis="y2"))
            layout["yaxis2"].update(title={"text": metric_name}, showgrid=False)
            finite = metric[np.isfinite(metric)]
            if finite.size and finite.min() >= 0 and finite.max() <= 1:  # a rate (accuracy): show all of [0, 1]
                layout["yaxis2"]["range"] = [0, 1.02]
    last = history[-1] if n else {}
    return base_figure(traces, title, "training step", "loss", layout=layout,
                   meta={"kind": "loss", "steps": n, "last_step": last.get("step"), "last_loss": last.get("loss")})


def _running_mean(a: np.ndarray, window: int) -> np.ndarray:
    """Mean over the trailing `window` finite values (NaN where there is none)."""
    a = np.asarray(a, float)
    if window <= 1:
        return a
    ok = np.isfinite(a)
    csum = np.concatenate([[0.0], np.cumsum(np.where(ok, a, 0.0))])
    ccount = np.concatenate([[0], np.cumsum(ok)])
    hi = np.arange(1, a.size + 1)
    lo = np.maximum(0, hi - window)
    count = ccount[hi] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (csum[hi] - csum[lo]) / np.maximum(count, 1), np.nan)


def iterations_figure(history: Sequence[dict], *, max_iter: int | None = None,
                      title: str = "Iterations over training") -> dict:
    """Forward and backward iteration counts per step (mean and max over the batch).

    Steps where some sample's forward solve (or backward solve) did not converge are marked with red
    crosses (circles for the backward). `max_iter` draws the cap as a dotted line.
    """
    traces: list = []
    layout: dict = {}
    n = len(history)
    if n == 0:
        layout["annotations"] = [note_annotation("no steps yet: press Play or Step")]
    else:
        idx = thin_indices(n)
        steps = history_column(history, "step")
        for prefix, color, label in (("fwd", FWD_COLOR, "forward"), ("bwd", BWD_COLOR, "backward")):
            mean = history_column(history, f"{prefix}_iters_mean")
            mx = history_column(history, f"{prefix}_iters_max")
            traces.append(scatter_trace(steps[idx], mean[idx], mode="lines", name=f"{label} mean",
                                   line={"color": color, "width": 2.5}))
            traces.append(scatter_trace(steps[idx], mx[idx], mode="lines", name=f"{label} max",
                                   line={"color": color, "width": 1, "dash": "dot"}))
            frac_key = "converged_frac" if prefix == "fwd" else "bwd_converged_frac"
            frac = history_column(history, frac_key)
            bad = np.flatnonzero(frac < 1.0)
            if bad.size:
                bad = bad[thin_indices(bad.size)]
                traces.append(scatter_trace(
                    steps[bad], mx[bad], mode="markers", name=f"{label} not converged",
                    marker={"symbol": "x" if prefix == "fwd" else "circle-open", "color": BAD_COLOR, "size": 8},
                    customdata=np.round(100 * (1 - frac[bad]), 1),
                    hovertemplate="step %{x}: %{customdata}% of samples not converged<extra></extra>",
                ))
        peak = np.nanmax(np.concatenate([history_column(history, "fwd_iters_max"),
                                         history_column(history, "bwd_iters_max")]))
        if max_iter is not None and np.isfinite(peak) and peak >= 0.5 * max_iter:  # the cap matters: show it
            traces.append(scatter_trace([steps[0], steps[-1]], [max_iter, max_iter], mode="lines",
                                   name=f"max_iter {max_iter}", line={"color": "#999", "dash": "dash", "width": 1}))
    last = history[-1] if n else {}
    return base_figure(traces, title, "training step", "iterations per sample", layout=layout,
                   meta={"kind": "iterations", "steps": n, "last_step": last.get("step"),
                         "fwd_iters_mean": last.get("fwd_iters_mean"), "bwd_iters_mean": last.get("bwd_iters_mean")})


def converged_fraction_figure(history: Sequence[dict], *, title: str = "Converged fraction per step") -> dict:
    """Fraction of the batch whose forward / backward solve converged, per training step."""
    n = len(history)
    idx = thin_indices(n)
    steps = history_column(history, "step")[idx]
    traces = [
        scatter_trace(steps, history_column(history, "converged_frac")[idx], mode="lines", name="forward",
                 line={"color": FWD_COLOR, "width": 2.5}),
        scatter_trace(steps, history_column(history, "bwd_converged_frac")[idx], mode="lines", name="backward",
                 line={"color": BWD_COLOR, "width": 1.5, "dash": "dot"}),
    ]
    layout: dict = {"yaxis": {"range": [-0.02, 1.02]}}
    if n == 0:
        layout["annotations"] = [note_annotation("no steps yet")]
    return base_figure(traces, title, "training step", "fraction of samples", layout=layout,
                   meta={"kind": "converged_fraction", "steps": n})


# two plots side by side, 62 % and 38 % of the width 0.12 apart (as make_subplots(rows=1, cols=2,
# column_widths=[0.62, 0.38], horizontal_spacing=0.12) lays them out)
_GATES_LEFT, _GATES_RIGHT = [0.0, 0.5456], [0.6656, 1.0]


def gates_figure(history: Sequence[dict], gates: np.ndarray | None = None, *,
                 title: str = "Gate activity") -> dict:
    """Left: the mean gate value (0 = wormhole shut, 1 = open) over training. Right: the distribution
    of the latest step's per-sample gate values, one histogram per wormhole (`gates`: (B, n_wormholes))."""
    traces: list = []
    notes = [{"text": text, "x": sum(domain) / 2, "y": 1.0, "xref": "paper", "yref": "paper", "xanchor": "center",
              "yanchor": "bottom", "showarrow": False, "font": {"size": 16}}
             for text, domain in (("mean gate over training", _GATES_LEFT), ("latest step, per sample", _GATES_RIGHT))]
    layout: dict = {
        "xaxis": {"anchor": "y", "domain": _GATES_LEFT, "title": {"text": "training step"}},
        "yaxis": {"anchor": "x", "domain": [0.0, 1.0], "range": [-0.02, 1.02], "title": {"text": "gate"}},
        "xaxis2": {"anchor": "y2", "domain": _GATES_RIGHT, "range": [0, 1], "title": {"text": "gate value"}},
        "yaxis2": {"anchor": "x2", "domain": [0.0, 1.0], "title": {"text": "samples"}},
        "legend": {"x": 0.99, "xanchor": "right", "y": 0.98, "yanchor": "top", "bgcolor": "rgba(255,255,255,0.7)"},
    }
    n = len(history)
    if n:
        idx = thin_indices(n)
        traces.append(scatter_trace(history_column(history, "step")[idx], history_column(history, "gate_mean")[idx],
                                    mode="lines",
                               name="mean gate", line={"color": GATE_COLORS[0], "width": 2.5}, showlegend=False,
                               xaxis="x", yaxis="y"))
    if gates is not None and np.size(gates):
        g = np.asarray(gates, float).reshape(len(gates), -1)
        for k in range(g.shape[1]):
            traces.append({"type": "histogram", "x": g[:, k], "name": f"wormhole {k + 1}", "opacity": 0.7,
                           "showlegend": g.shape[1] > 1, "marker": {"color": GATE_COLORS[k % len(GATE_COLORS)]},
                           "xbins": {"start": 0.0, "end": 1.0001, "size": 0.05}, "xaxis": "x2", "yaxis": "y2"})
        layout["barmode"] = "overlay"
    elif gates is not None:
        notes.append(note_annotation("this model has no wormholes (no gates)"))
    if not n and gates is None:
        notes.append(note_annotation("no steps yet: press Play or Step"))
    layout["annotations"] = notes
    return base_figure(traces, title, "training step", "gate", layout=layout, meta={"kind": "gates", "steps": n})


# ----------------------------------------------------------------------------------------------
# One step, per sample
# ----------------------------------------------------------------------------------------------


def convergence_figure(
    trajectories: Sequence[np.ndarray],
    tol: float,
    *,
    steps: Sequence[int] | None = None,
    title: str = "Forward solve: residual per iteration",
    tol_label: str = "tol",
    max_samples: int = 8,
    iters: np.ndarray | None = None,
    color: str | None = None,
) -> dict:
    """Residual against iteration for recent training steps, log y, with the tolerance as a line.

    `trajectories`: oldest to newest, each `(batch, capacity)` residuals, NaN past the last iteration
    (`fwd_trajectory` / `bwd_trajectory` of a step's metrics). The newest step is drawn bold, older
    ones fade. `max_samples` samples per step are drawn. `iters` (the newest step's per-sample
    counts) notes solves that ran past the recorded capacity. `color`: the lines' colour (default: blue, or
    orange when the title names the backward solve).
    """
    color = color or (BWD_COLOR if "backward" in title.lower() else FWD_COLOR)
    traces: list = []
    trajs = [np.asarray(t, float) for t in trajectories]
    trajs = [t.reshape(1, -1) if t.ndim == 1 else t for t in trajs]
    steps = list(steps) if steps is not None else list(range(1, len(trajs) + 1))
    capacity = max((t.shape[1] for t in trajs), default=0)
    n = len(trajs)
    floor = 1e-12
    longest = 0
    every: list = []
    blocks = []  # per step: (step, x, y) with the samples' lines joined by NaN gaps
    for t, s in zip(trajs, steps):
        rows = t[:max_samples]
        recorded = ~np.isnan(rows)
        if not recorded.any():
            blocks.append((s, np.zeros(0), np.zeros(0)))
            continue
        used = int(np.max(np.where(recorded.any(0))[0])) + 1  # columns up to the longest solve
        y = np.where(np.isfinite(rows[:, :used]), np.maximum(rows[:, :used], floor), np.nan)
        every.extend(y[np.isfinite(y)].tolist())
        longest = max(longest, used)
        ys = np.concatenate([y, np.full((y.shape[0], 1), np.nan)], axis=1).ravel()
        xs = np.tile(np.append(np.arange(1.0, used + 1), np.nan), y.shape[0])
        blocks.append((s, xs, ys))
    # three layers: older steps faint, the few before the latest lighter, the latest bold
    groups = [(blocks[: max(n - 4, 0)], 0.14, 1.0, False), (blocks[max(n - 4, 0): n - 1], 0.4, 1.2, False),
              (blocks[n - 1:], 1.0, 2.5, True)]
    for group, opacity, width, newest in groups:
        group = [g for g in group if g[1].size]
        if not group:
            continue
        first, last = group[0][0], group[-1][0]
        name = f"step {last} (latest)" if newest else (f"step {first}" if first == last else f"steps {first}–{last}")
        traces.append(scatter_trace(
            np.concatenate([g[1] for g in group]), np.concatenate([g[2] for g in group]),
            customdata=np.concatenate([np.full(g[1].size, g[0]) for g in group]),
            mode="lines+markers" if newest else "lines", name=name, opacity=opacity,
            line={"color": color, "width": width}, marker={"size": 4},
            hovertemplate="step %{customdata}, iteration %{x}<br>residual %{y:.2e}<extra></extra>",
        ))
    x_end = max(longest, 2)
    # the tolerance line spans the x range (half an iteration each side): no fixed axis range, so a
    # user's zoom survives redraws (Plotly's uirevision keeps it only while the figure leaves the range unset)
    traces.append(scatter_trace([0.5, x_end + 0.5], [tol, tol], mode="lines", name=f"{tol_label} = {tol:.0e}",
                           line={"color": TOL_COLOR, "dash": "dash", "width": 2}, hoverinfo="skip"))
    layout: dict = {
        "yaxis": {"type": "log", "exponentformat": "power", "dtick": 1 if _decades(every + [tol]) >= 2 else None},
        "xaxis": {"dtick": 1 if x_end <= 12 else None},
        # the legend under the axis: the plot itself stays free for the lines and the tolerance
        "legend": {"orientation": "h", "x": 0.0, "xanchor": "left", "y": -0.22, "yanchor": "top"},
        "margin": {"t": 50, "b": 70},
    }
    if n == 0:
        layout["annotations"] = [note_annotation("no steps yet: press Play or Step")]
    elif iters is not None and capacity and np.max(iters) > capacity:
        layout["annotations"] = [{
            "text": f"some solves ran {int(np.max(iters))} iterations; the first {capacity} are shown",
            "x": 1.0, "y": 0.0, "xref": "paper", "yref": "paper", "xanchor": "right", "yanchor": "bottom",
            "showarrow": False, "font": {"size": 11, "color": "#666"}}]
    return base_figure(traces, title, "iteration", "residual ‖zₜ − zₜ₋₁‖", height=360, layout=layout,
                   meta={"kind": "convergence", "tol": float(tol), "steps": steps[-n:] if n else [],
                         "last_step": steps[-1] if n else None})


def iterations_histogram(fwd_iters: np.ndarray | None, bwd_iters: np.ndarray | None = None, *,
                         title: str = "Iterations per sample (latest steps)") -> dict:
    """Distribution over samples of forward and backward iteration counts (integer bins, overlaid)."""
    traces: list = []
    layout: dict = {"barmode": "overlay", "bargap": 0.05}
    span = 0
    for arr, color, label in ((fwd_iters, FWD_COLOR, "forward"), (bwd_iters, BWD_COLOR, "backward")):
        if arr is None or np.size(arr) == 0:
            continue
        a = np.asarray(arr).astype(int).ravel()
        counts = np.bincount(a - a.min())
        x = np.arange(a.min(), a.max() + 1)
        traces.append({"type": "bar", "x": x, "y": counts, "name": label, "marker": {"color": color},
                       "opacity": 0.65})
        span = max(span, int(a.max()))
    if not traces:
        layout["annotations"] = [note_annotation("no steps yet: press Play or Step")]
    elif span <= 15:
        layout["xaxis"] = {"dtick": 1}
    return base_figure(traces, title, "iterations", "samples", layout=layout, meta={"kind": "histogram"})


def sine_figure(series: np.ndarray, target: np.ndarray, *, sample: int = 0, title: str | None = None,
                window: np.ndarray | None = None) -> dict:
    """The free-running generated wave against the target (one sample of a batch when 2-d).

    `window` (optional): the true values that seeded the generation, drawn before t = 0.
    """
    series = np.asarray(series, float)
    target = np.asarray(target, float)
    if series.ndim == 2:
        series, target = series[sample], target[sample]
        window = None if window is None else np.asarray(window, float)[sample]
    t = np.arange(series.size)
    rmse = float(np.sqrt(np.nanmean((series - target) ** 2))) if series.size else float("nan")
    traces: list = []
    if window is not None:
        w = np.asarray(window, float).ravel()
        traces.append(scatter_trace(np.arange(-w.size, 0), w, mode="lines", name="seed window",
                               line={"color": "#2ca02c", "width": 2}))
    traces.append(scatter_trace(t, target, mode="lines", name="target",
                           line={"color": TARGET_COLOR, "width": 2, "dash": "dash"}))
    traces.append(scatter_trace(t, _finite_or_nan(series), mode="lines", name="generated (free-running)",
                           line={"color": FWD_COLOR, "width": 2.5}))
    title = title or f"Free-running generation (RMSE {_fmt(rmse)})"
    return base_figure(traces, title, "time step (model output fed back)", "value", meta={"kind": "sine", "rmse": rmse})


def sample_scatter_figure(fwd_iters: np.ndarray, sample_loss: np.ndarray, *, converged: np.ndarray | None = None,
                          title: str = "Evaluation set: iterations vs error per sample") -> dict:
    """Each evaluation sample: forward iterations against its loss (non-converged ones in red)."""
    it = np.asarray(fwd_iters, float).ravel()
    loss = _finite_or_nan(sample_loss).ravel()
    conv = np.ones_like(it, bool) if converged is None else np.asarray(converged, bool).ravel()
    jitter = (np.random.default_rng(0).random(it.size) - 0.5) * 0.3
    traces: list = []
    layout: dict = {}
    for mask, color, name in ((conv, FWD_COLOR, "converged"), (~conv, BAD_COLOR, "not converged")):
        if mask.any():
            traces.append(scatter_trace(it[mask] + jitter[mask], loss[mask], mode="markers", name=name,
                                   marker={"color": color, "size": 6, "opacity": 0.6}))
    if it.size == 0:
        layout["annotations"] = [note_annotation("no evaluation yet")]
    pos = loss[np.isfinite(loss)]
    if pos.size and np.all(pos > 0) and pos.max() / max(pos.min(), 1e-30) > 100:
        layout["yaxis"] = {"type": "log"}
    return base_figure(traces, title, "forward iterations", "sample loss", layout=layout, meta={"kind": "samples"})


def sweep_figure(values: Sequence[float], fwd_iters_mean: Sequence[float], fwd_iters_max: Sequence[float],
                 error: Sequence[float], *, control: str, error_name: str = "loss",
                 converged_frac: Sequence[float] | None = None, current: float | None = None,
                 log_x: bool = False) -> dict:
    """How forward iterations (left axis) and the error (right axis) respond to one control."""
    x = np.asarray(values, float)
    traces = [
        scatter_trace(x, np.asarray(fwd_iters_mean, float), mode="lines+markers", name="fwd iters (mean)",
                 line={"color": FWD_COLOR, "width": 2.5}),
        scatter_trace(x, np.asarray(fwd_iters_max, float), mode="lines", name="fwd iters (max)",
                 line={"color": FWD_COLOR, "width": 1, "dash": "dot"}),
        scatter_trace(x, _finite_or_nan(error), mode="lines+markers", name=error_name,
                 line={"color": "#2ca02c", "width": 2}, yaxis="y2"),
    ]
    if converged_frac is not None:
        frac = np.asarray(converged_frac, float)
        bad = frac < 1
        if bad.any():
            traces.append(scatter_trace(x[bad], np.asarray(fwd_iters_max, float)[bad], mode="markers",
                                   name="some not converged", marker={"symbol": "x", "color": BAD_COLOR, "size": 9}))
    if current is not None and x.size:
        top = float(np.nanmax(np.asarray(fwd_iters_max, float))) if x.size else 1.0
        traces.append(scatter_trace([current, current], [0, top], mode="lines", name=f"current {control}",
                               line={"color": "#999", "dash": "dash", "width": 1.5}, hoverinfo="skip"))
    layout = _merge(_SECOND_Y, {"yaxis2": {"title": {"text": error_name}, "showgrid": False, "tickformat": ".3g"}})
    if log_x:
        layout["xaxis"].update(type="log", exponentformat="power", dtick=1 if _decades(x) >= 2 else None)
    return base_figure(traces, f"Sweep of {control} (fixed network, evaluation set)", control, "forward iterations",
                   layout=layout, meta={"kind": "sweep", "control": control})


# ----------------------------------------------------------------------------------------------
# The paper experiment (`twnn_jax.experiments`): one figure per part, from its results dict
# ----------------------------------------------------------------------------------------------

PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#d62728", "#ff7f0e", "#17becf")


def _grid(rows: int, cols: int, titles: Sequence[str]) -> dict:
    """The layout of a rows x cols grid of plots, a title above each, numbered 1.. row by row (as
    plotly.subplots.make_subplots lays them out); `_cell(k)` puts a trace on plot k."""
    hspace, vspace = 0.2 / cols, 0.3 / rows
    width, height = (1 - hspace * (cols - 1)) / cols, (1 - vspace * (rows - 1)) / rows
    layout: dict = {}
    notes = []
    for r in range(rows):
        for c in range(cols):
            k = r * cols + c + 1
            n = "" if k == 1 else str(k)
            x0, y1 = c * (width + hspace), 1 - r * (height + vspace)
            layout[f"xaxis{n}"] = {"domain": [x0, x0 + width], "anchor": f"y{n}"}
            layout[f"yaxis{n}"] = {"domain": [max(0.0, y1 - height), y1], "anchor": f"x{n}"}
            if k <= len(titles):
                notes.append({"text": titles[k - 1], "x": x0 + width / 2, "y": y1, "xref": "paper", "yref": "paper",
                              "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 14}})
    layout["annotations"] = notes
    layout["legend"] = {"orientation": "h", "x": 0.0, "xanchor": "left", "y": -0.12, "yanchor": "top"}
    layout["margin"] = {"t": 80, "b": 90}
    return layout


def _cell(k: int) -> dict:
    return {"xaxis": "x" if k == 1 else f"x{k}", "yaxis": "y" if k == 1 else f"y{k}"}


def _axis(layout: dict, name: str, **props) -> None:
    layout[name].update(props)


def digits_accuracy_figure(digits: dict) -> dict:
    """Table III analog: test accuracy per net (bars: mean over seeds, error bars: std, dots: each seed), and
    test accuracy while training (mean over seeds). `digits`: the experiment's part-1 results."""
    layout = _grid(1, 2, ("Test accuracy (each dot a seed)", "Test accuracy while training"))
    traces: list = []
    for i, r in enumerate(digits["rows"]):
        color = PALETTE[i % len(PALETTE)]
        seeds = [s["accuracy"] for s in r["per_seed"]]
        traces.append({"type": "bar", "x": [r["label"]], "y": [r["accuracy_mean"]], "marker": {"color": color},
                       "name": r["label"], "error_y": {"type": "data", "array": [r["accuracy_std"] or 0.0]},
                       "showlegend": False, **_cell(1)})
        traces.append(scatter_trace([r["label"]] * len(seeds), seeds, mode="markers", showlegend=False,
                               name=f"{r['label']}, per seed", marker={"color": "black", "size": 7}, **_cell(1)))
        curves = np.array([[a for _, a in s["curve"]] for s in r["per_seed"]], float)
        steps = [k for k, _ in r["per_seed"][0]["curve"]]
        traces.append(scatter_trace(steps, curves.mean(0), mode="lines+markers", name=r["label"],
                               line={"color": color}, **_cell(2)))
    low = min(min(s["accuracy"] for s in r["per_seed"]) for r in digits["rows"])
    _axis(layout, "yaxis", title={"text": "accuracy (%)"}, range=[max(0.0, low - 3), 100])
    _axis(layout, "yaxis2", title={"text": "accuracy (%), mean over seeds"})
    _axis(layout, "xaxis2", title={"text": "training step"}, type="log")
    title = (f"8x8 digits, {digits['n_test']} test samples (1 sample = {digits['one_test_sample_points']:.2f} "
             "points)")
    return base_figure(traces, title, "", "", height=500, layout=layout, meta={"kind": "digits_accuracy"})


def settle_figure(settle: dict) -> dict:
    """Forward iterations against confidence and against loss, per test sample of one trained net (jittered),
    correct and wrong answers apart. `settle`: the experiment's part-2 results."""
    s = settle["samples"]
    first = settle["per_seed"][0]
    rho = lambda x: "n/a" if x["rho"] is None else f"{x['rho']:+.2f}"  # noqa: E731
    layout = _grid(1, 2, (f"confidence (Spearman {rho(first['iters_vs_confidence'])})",
                          f"per-sample loss (Spearman {rho(first['iters_vs_loss'])})"))
    iters = np.asarray(s["iters"], float)
    jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(iters))
    correct = np.asarray(s["correct"], bool)
    traces: list = []
    for ok, name, color in ((True, "correct", FWD_COLOR), (False, "wrong", BAD_COLOR)):
        sel = correct == ok
        for k, key in ((1, "confidence"), (2, "loss")):
            traces.append(scatter_trace(iters[sel] + jitter[sel], np.asarray(s[key], float)[sel], mode="markers",
                                   name=name, showlegend=k == 1, legendgroup=name,
                                   marker={"color": color, "size": 5, "opacity": 0.6}, **_cell(k)))
    for axis in ("xaxis", "xaxis2"):
        _axis(layout, axis, title={"text": "forward iterations (both blocks, jittered)"})
    _axis(layout, "yaxis", title={"text": "max softmax"})
    _axis(layout, "yaxis2", title={"text": "cross-entropy"}, type="log")
    return base_figure(traces, f"Do easy inputs settle faster? (trained TWNN, test set, seed {s['seed']})", "", "",
                   height=500, layout=layout, meta={"kind": "settle"})


def sine_generation_figure(sine: dict) -> dict:
    """Per case, the free-running generated wave against the target; then the free-running RMSE while
    training. `sine`: the experiment's part-3 results."""
    cases = sine["cases"]
    n = len(cases)
    titles = [f"{c['n_freqs']} frequenc{'y' if c['n_freqs'] == 1 else 'ies'}, window {c['window']}: free-running "
              f"RMSE {c['free_rmse']:.3f} (constant 0.5: {c['constant_rmse']:.3f})" for c in cases]
    layout = _grid(n + 1, 1, titles + ["free-running RMSE while training"])
    traces: list = []
    for i, c in enumerate(cases):
        t = np.arange(len(c["target"][0]))
        traces.append(scatter_trace(t, _finite_or_nan(c["series"][0]), mode="lines", name="generated (free-running)",
                               legendgroup="generated", showlegend=i == 0,
                               line={"color": BAD_COLOR, "width": 3}, **_cell(i + 1)))
        traces.append(scatter_trace(t, c["target"][0], mode="lines", name="target", legendgroup="target",
                               showlegend=i == 0, line={"color": "black", "dash": "dot"}, **_cell(i + 1)))
        points = c["free_rmse_during_training"]
        traces.append(scatter_trace([k for k, _ in points], [v for _, v in points], mode="lines+markers",
                               name=f"{c['n_freqs']} freq, window {c['window']}",
                               line={"color": PALETTE[i % len(PALETTE)]}, **_cell(n + 1)))
    if n:
        _axis(layout, f"xaxis{'' if n == 1 else n}", title={"text": "steps after the true window"})
    _axis(layout, f"xaxis{n + 1}", title={"text": "training step"})
    _axis(layout, f"yaxis{n + 1}", type="log")
    layout["legend"]["y"] = -0.3 / (n + 1)
    return base_figure(traces, "Sine generation, model's outputs fed back (paper Fig. 6 analog)", "", "",
                   height=300 * (n + 1), layout=layout, meta={"kind": "sine_generation"})


def gate_sweep_figure(gate: dict) -> dict:
    """Forward and backward iterations, and test accuracy, against the gate bias of a trained net; the nets
    trained at a bias as diamonds. `gate`: the experiment's part-4 results."""
    sweep = gate["sweep"]
    x = [r["gate"] for r in sweep]
    layout = _grid(1, 2, ("iterations vs gate bias", "test accuracy vs gate bias"))
    traces = [
        scatter_trace(x, [r["fwd_iters_mean"] for r in sweep], mode="lines+markers", name="forward (test mean)",
                 line={"color": FWD_COLOR}, **_cell(1)),
        scatter_trace(x, [r["bwd_iters_mean"] for r in sweep], mode="lines+markers", name="backward (one batch, mean)",
                 line={"color": BWD_COLOR}, **_cell(1)),
        scatter_trace(x, [r["fwd_iters_max"] for r in sweep], mode="lines", name="forward (test max)",
                 line={"color": FWD_COLOR, "dash": "dot"}, **_cell(1)),
        scatter_trace(x, [r["accuracy"] for r in sweep], mode="lines+markers", line={"color": PALETTE[1]},
                 name=f"trained at {gate['trained_gate']:g}, evaluated at x", **_cell(2)),
        scatter_trace([r["gate"] for r in gate["trained_at"]], [r["accuracy"] for r in gate["trained_at"]],
                 mode="markers", marker={"size": 11, "symbol": "diamond", "color": PALETTE[2]},
                 name="trained and evaluated at x", **_cell(2)),
    ]
    for axis in ("xaxis", "xaxis2"):
        _axis(layout, axis, title={"text": "gate bias"})
    _axis(layout, "yaxis", title={"text": "iterations (both blocks)"}, type="log")
    _axis(layout, "yaxis2", title={"text": "accuracy (%)"})
    return base_figure(traces, "Gate bias: how long the net thinks, and what it costs", "", "", height=500,
                   layout=layout, meta={"kind": "gate_sweep"})


def order_and_adding_figure(sweep_order: dict, adding: dict) -> dict:
    """Left: forward iterations in layer order and all at once per gate bias. Right: the adding problem's
    training loss (smoothed) and test MSE per net and length, with the baseline. Parts 5a and 5b."""
    so = sweep_order["rows"]
    layout = _grid(1, 2, ("Sweep order: forward iterations (test mean)", "Adding problem: MSE (log)"))
    labels = [f"gate {r['gate']:g}" for r in so]
    traces: list = [
        {"type": "bar", "x": labels, "y": [r["layer_iters_mean"] for r in so], "name": "layer order",
         "marker": {"color": FWD_COLOR}, **_cell(1)},
        {"type": "bar", "x": labels, "y": [r["jacobi_iters_mean"] for r in so], "name": "all at once (jacobi)",
         "marker": {"color": BWD_COLOR}, **_cell(1)},
    ]
    dashes = ("solid", "dot", "dash", "dashdot")
    for r in adding["rows"]:
        color = PALETTE[2] if r["model"] == "wormhole_rnn" else PALETTE[4]
        dash = dashes[adding["T"].index(r["T"]) % len(dashes)]
        loss = np.asarray(r["train_loss_curve"], float)
        smooth = np.convolve(loss, np.ones(9) / 9, mode="valid") if len(loss) >= 9 else loss
        name = f"{r['model']} T={r['T']}"
        traces.append(scatter_trace(np.asarray(r["train_loss_steps"])[len(loss) - len(smooth):], smooth, mode="lines",
                               name=f"{name} train (smoothed)", line={"color": color, "dash": dash}, **_cell(2)))
        points = r["test_mse_during_training"]
        traces.append(scatter_trace([k for k, _ in points], [v for _, v in points], mode="markers", name=f"{name} test",
                               marker={"color": color, "size": 9, "symbol": "x"}, **_cell(2)))
    if adding["rows"]:
        steps = max(r["steps"] for r in adding["rows"])
        baseline = adding["rows"][0]["baseline_mse"]
        traces.append(scatter_trace([1, steps], [baseline, baseline], mode="lines", name=f"baseline {baseline:.3f}",
                               line={"dash": "dash", "color": TARGET_COLOR}, **_cell(2)))
    _axis(layout, "yaxis", title={"text": "iterations"})
    _axis(layout, "yaxis2", title={"text": "MSE"}, type="log")
    _axis(layout, "xaxis2", title={"text": "training step"})
    layout["barmode"] = "group"
    return base_figure(traces, "Sweep order and a long-range check", "", "", height=500, layout=layout,
                   meta={"kind": "order_and_adding"})
