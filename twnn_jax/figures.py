"""Pure Plotly figure builders for training runs: plain numbers in, `plotly.graph_objects.Figure` out.

Shared by the dashboard and the CLI's HTML report. Nothing here imports Streamlit or JAX, reads
files or keeps state: every function takes numpy arrays (or lists of `train.summarize` dicts, one
per step, called `history`) and returns a new figure.

>>> fig = loss_figure([{"step": 1, "loss": 0.5, "metric": 0.5}])      # doctest: +SKIP
>>> fig.write_html("loss.html")                                         # doctest: +SKIP

Every figure sets `layout.uirevision`, so a chart rebuilt with new data keeps the user's zoom, and
`layout.meta` with the numbers it was drawn from (tests and benchmarks read it in the page).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = [
    "convergence_figure",
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


def _layout(fig: go.Figure, title: str, xtitle: str, ytitle: str, *, height: int = 330, meta: dict | None = None):
    fig.update_layout(
        title=dict(text=title, x=0.0, xanchor="left", font=dict(size=15)),
        xaxis_title=xtitle,
        yaxis_title=ytitle,
        height=height,
        margin=dict(l=60, r=20, t=70, b=45),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0, font=dict(size=11)),
        uirevision="keep",
        hovermode="closest",
        meta=meta or {},
    )
    return fig


def _empty_note(fig: go.Figure, text: str) -> None:
    fig.add_annotation(text=text, x=0.5, y=0.85, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=14, color="#888"))


def _column(history: Sequence[dict], name: str, dtype=float) -> np.ndarray:
    out = []
    for h in history:
        v = h.get(name)
        out.append(np.nan if v is None else v)
    return np.asarray(out, dtype=dtype)


def _stride(n: int, max_points: int = MAX_POINTS) -> np.ndarray:
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


def loss_figure(history: Sequence[dict], *, metric_name: str | None = None, title: str = "Loss") -> go.Figure:
    """Training loss per step (log y) with a running mean; the task metric on a second axis.

    `metric_name` adds the metric (skip it when it equals the loss, as for the sine task's MSE).
    Steps whose loss or gradient was not finite (`skipped`) are marked with red crosses.
    """
    fig = make_subplots(specs=[[{"secondary_y": metric_name is not None}]])
    n = len(history)
    if n == 0:
        _empty_note(fig, "no steps yet: press Play or Step")
    else:
        idx = _stride(n)
        steps = _column(history, "step")[idx]
        loss = _column(history, "loss")
        pos = np.where(np.isfinite(loss) & (loss > 0), loss, np.nan)
        window = max(1, min(50, n // 10))
        smooth = _running_mean(pos, window)
        fig.add_trace(go.Scatter(x=steps, y=pos[idx], mode="lines", name="loss", opacity=0.35,
                                 line=dict(color=FWD_COLOR, width=1)))
        fig.add_trace(go.Scatter(x=steps, y=smooth[idx], mode="lines", name=f"loss (mean of {window})",
                                 line=dict(color=FWD_COLOR, width=2.5)))
        skipped = _column(history, "skipped", dtype=bool) if "skipped" in history[0] else np.zeros(n, bool)
        bad = np.flatnonzero(skipped | ~np.isfinite(loss))
        if bad.size:
            bad = bad[_stride(bad.size, 300)]
            top = np.nanmax(pos) if np.any(np.isfinite(pos)) else 1.0
            fig.add_trace(go.Scatter(x=_column(history, "step")[bad], y=np.full(bad.size, top), mode="markers",
                                     name="skipped (non-finite)", marker=dict(symbol="x", color=BAD_COLOR, size=9)))
        if metric_name is not None:
            metric = _finite_or_nan(_column(history, "metric"))
            fig.add_trace(go.Scatter(x=steps, y=_running_mean(metric, window)[idx], mode="lines",
                                     name=metric_name, line=dict(color="#2ca02c", width=2)), secondary_y=True)
            fig.update_yaxes(title_text=metric_name, secondary_y=True, showgrid=False)
            finite = metric[np.isfinite(metric)]
            if finite.size and finite.min() >= 0 and finite.max() <= 1:  # a rate (accuracy): show all of [0, 1]
                fig.update_yaxes(range=[0, 1.02], secondary_y=True)
    fig.update_yaxes(type="log", exponentformat="power", secondary_y=False)
    last = history[-1] if n else {}
    return _layout(fig, title, "training step", "loss",
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
                      title: str = "Iterations over training") -> go.Figure:
    """Forward and backward iteration counts per step (mean and max over the batch).

    Steps where some sample's forward solve (or backward solve) did not converge are marked with red
    crosses (circles for the backward). `max_iter` draws the cap as a dotted line.
    """
    fig = go.Figure()
    n = len(history)
    if n == 0:
        _empty_note(fig, "no steps yet: press Play or Step")
    else:
        idx = _stride(n)
        steps = _column(history, "step")
        for prefix, color, label in (("fwd", FWD_COLOR, "forward"), ("bwd", BWD_COLOR, "backward")):
            mean = _column(history, f"{prefix}_iters_mean")
            mx = _column(history, f"{prefix}_iters_max")
            fig.add_trace(go.Scatter(x=steps[idx], y=mean[idx], mode="lines", name=f"{label} mean",
                                     line=dict(color=color, width=2.5)))
            fig.add_trace(go.Scatter(x=steps[idx], y=mx[idx], mode="lines", name=f"{label} max",
                                     line=dict(color=color, width=1, dash="dot")))
            frac_key = "converged_frac" if prefix == "fwd" else "bwd_converged_frac"
            frac = _column(history, frac_key)
            bad = np.flatnonzero(frac < 1.0)
            if bad.size:
                bad = bad[_stride(bad.size)]
                fig.add_trace(go.Scatter(
                    x=steps[bad], y=mx[bad], mode="markers", name=f"{label} not converged",
                    marker=dict(symbol="x" if prefix == "fwd" else "circle-open", color=BAD_COLOR, size=8),
                    customdata=np.round(100 * (1 - frac[bad]), 1),
                    hovertemplate="step %{x}: %{customdata}% of samples not converged<extra></extra>",
                ))
        peak = np.nanmax(np.concatenate([_column(history, "fwd_iters_max"), _column(history, "bwd_iters_max")]))
        if max_iter is not None and np.isfinite(peak) and peak >= 0.5 * max_iter:  # the cap matters: show it
            fig.add_trace(go.Scatter(x=[steps[0], steps[-1]], y=[max_iter, max_iter], mode="lines",
                                     name=f"max_iter {max_iter}", line=dict(color="#999", dash="dash", width=1)))
    last = history[-1] if n else {}
    return _layout(fig, title, "training step", "iterations per sample",
                   meta={"kind": "iterations", "steps": n, "last_step": last.get("step"),
                         "fwd_iters_mean": last.get("fwd_iters_mean"), "bwd_iters_mean": last.get("bwd_iters_mean")})


def gates_figure(history: Sequence[dict], gates: np.ndarray | None = None, *,
                 title: str = "Gate activity") -> go.Figure:
    """Left: the mean gate value (0 = wormhole shut, 1 = open) over training. Right: the distribution
    of the latest step's per-sample gate values, one histogram per wormhole (`gates`: (B, n_wormholes))."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.12,
                        subplot_titles=("mean gate over training", "latest step, per sample"))
    n = len(history)
    if n:
        idx = _stride(n)
        fig.add_trace(go.Scatter(x=_column(history, "step")[idx], y=_column(history, "gate_mean")[idx], mode="lines",
                                 name="mean gate", line=dict(color=GATE_COLORS[0], width=2.5), showlegend=False),
                      row=1, col=1)
    if gates is not None and np.size(gates):
        g = np.asarray(gates, float).reshape(len(gates), -1)
        for k in range(g.shape[1]):
            fig.add_trace(go.Histogram(x=g[:, k], name=f"wormhole {k + 1}", opacity=0.7, showlegend=g.shape[1] > 1,
                                       marker_color=GATE_COLORS[k % len(GATE_COLORS)],
                                       xbins=dict(start=0.0, end=1.0001, size=0.05)), row=1, col=2)
        fig.update_layout(barmode="overlay")
    elif gates is not None:
        _empty_note(fig, "this model has no wormholes (no gates)")
    if not n and gates is None:
        _empty_note(fig, "no steps yet: press Play or Step")
    fig.update_yaxes(range=[-0.02, 1.02], title_text="gate", row=1, col=1)
    fig.update_xaxes(title_text="training step", row=1, col=1)
    fig.update_xaxes(title_text="gate value", range=[0, 1], row=1, col=2)
    fig.update_yaxes(title_text="samples", row=1, col=2)
    fig = _layout(fig, title, "training step", "gate", meta={"kind": "gates", "steps": n})
    fig.update_layout(xaxis_title="training step", yaxis_title="gate",
                      legend=dict(x=0.99, xanchor="right", y=0.98, yanchor="top", bgcolor="rgba(255,255,255,0.7)"))
    return fig


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
) -> go.Figure:
    """Residual against iteration for recent training steps, log y, with the tolerance as a line.

    `trajectories`: oldest to newest, each `(batch, capacity)` residuals, NaN past the last iteration
    (`fwd_trajectory` / `bwd_trajectory` of a step's metrics). The newest step is drawn bold, older
    ones fade. `max_samples` samples per step are drawn. `iters` (the newest step's per-sample
    counts) notes solves that ran past the recorded capacity. `color`: the lines' colour (default: blue, or
    orange when the title names the backward solve).
    """
    color = color or (BWD_COLOR if "backward" in title.lower() else FWD_COLOR)
    fig = go.Figure()
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
        fig.add_trace(go.Scatter(
            x=np.concatenate([g[1] for g in group]), y=np.concatenate([g[2] for g in group]),
            customdata=np.concatenate([np.full(g[1].size, g[0]) for g in group]),
            mode="lines+markers" if newest else "lines", name=name, opacity=opacity,
            line=dict(color=color, width=width), marker=dict(size=4),
            hovertemplate="step %{customdata}, iteration %{x}<br>residual %{y:.2e}<extra></extra>",
        ))
    x_end = max(longest, 2)
    # the tolerance line spans the x range (half an iteration each side): no fixed axis range, so a
    # user's zoom survives redraws (Plotly's uirevision keeps it only while the figure leaves the range unset)
    fig.add_trace(go.Scatter(x=[0.5, x_end + 0.5], y=[tol, tol], mode="lines", name=f"{tol_label} = {tol:.0e}",
                             line=dict(color=TOL_COLOR, dash="dash", width=2), hoverinfo="skip"))
    if n == 0:
        _empty_note(fig, "no steps yet: press Play or Step")
    elif iters is not None and capacity and np.max(iters) > capacity:
        fig.add_annotation(text=f"some solves ran {int(np.max(iters))} iterations; the first {capacity} are shown",
                           x=1.0, y=0.0, xref="paper", yref="paper", xanchor="right", yanchor="bottom",
                           showarrow=False, font=dict(size=11, color="#666"))
    fig.update_yaxes(type="log", exponentformat="power", dtick=1 if _decades(every + [tol]) >= 2 else None)
    fig.update_xaxes(dtick=1 if x_end <= 12 else None)
    fig = _layout(fig, title, "iteration", "residual ‖zₜ − zₜ₋₁‖",
                  meta={"kind": "convergence", "tol": float(tol), "steps": steps[-n:] if n else [],
                        "last_step": steps[-1] if n else None})
    # the legend under the axis: the plot itself stays free for the lines and the tolerance
    fig.update_layout(legend=dict(orientation="h", x=0.0, xanchor="left", y=-0.22, yanchor="top"),
                      margin=dict(t=50, b=70), height=360)
    return fig


def iterations_histogram(fwd_iters: np.ndarray | None, bwd_iters: np.ndarray | None = None, *,
                         title: str = "Iterations per sample (latest steps)") -> go.Figure:
    """Distribution over samples of forward and backward iteration counts (integer bins, overlaid)."""
    fig = go.Figure()
    any_data = False
    span = 0
    for arr, color, label in ((fwd_iters, FWD_COLOR, "forward"), (bwd_iters, BWD_COLOR, "backward")):
        if arr is None or np.size(arr) == 0:
            continue
        a = np.asarray(arr).astype(int).ravel()
        counts = np.bincount(a - a.min())
        x = np.arange(a.min(), a.max() + 1)
        fig.add_trace(go.Bar(x=x, y=counts, name=label, marker_color=color, opacity=0.65))
        any_data = True
        span = max(span, int(a.max()))
    if not any_data:
        _empty_note(fig, "no steps yet: press Play or Step")
    fig.update_layout(barmode="overlay", bargap=0.05)
    if any_data and span <= 15:
        fig.update_xaxes(dtick=1)
    return _layout(fig, title, "iterations", "samples", meta={"kind": "histogram"})


def sine_figure(series: np.ndarray, target: np.ndarray, *, sample: int = 0, title: str | None = None,
                window: np.ndarray | None = None) -> go.Figure:
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
    fig = go.Figure()
    if window is not None:
        w = np.asarray(window, float).ravel()
        fig.add_trace(go.Scatter(x=np.arange(-w.size, 0), y=w, mode="lines", name="seed window",
                                 line=dict(color="#2ca02c", width=2)))
    fig.add_trace(go.Scatter(x=t, y=target, mode="lines", name="target",
                             line=dict(color=TARGET_COLOR, width=2, dash="dash")))
    fig.add_trace(go.Scatter(x=t, y=_finite_or_nan(series), mode="lines", name="generated (free-running)",
                             line=dict(color=FWD_COLOR, width=2.5)))
    title = title or f"Free-running generation (RMSE {_fmt(rmse)})"
    return _layout(fig, title, "time step (model output fed back)", "value",
                   meta={"kind": "sine", "rmse": rmse})


def sample_scatter_figure(fwd_iters: np.ndarray, sample_loss: np.ndarray, *, converged: np.ndarray | None = None,
                          title: str = "Evaluation set: iterations vs error per sample") -> go.Figure:
    """Each evaluation sample: forward iterations against its loss (non-converged ones in red)."""
    it = np.asarray(fwd_iters, float).ravel()
    loss = _finite_or_nan(sample_loss).ravel()
    conv = np.ones_like(it, bool) if converged is None else np.asarray(converged, bool).ravel()
    jitter = (np.random.default_rng(0).random(it.size) - 0.5) * 0.3
    fig = go.Figure()
    for mask, color, name in ((conv, FWD_COLOR, "converged"), (~conv, BAD_COLOR, "not converged")):
        if mask.any():
            fig.add_trace(go.Scatter(x=it[mask] + jitter[mask], y=loss[mask], mode="markers", name=name,
                                     marker=dict(color=color, size=6, opacity=0.6)))
    if it.size == 0:
        _empty_note(fig, "no evaluation yet")
    pos = loss[np.isfinite(loss)]
    if pos.size and np.all(pos > 0) and pos.max() / max(pos.min(), 1e-30) > 100:
        fig.update_yaxes(type="log")
    return _layout(fig, title, "forward iterations", "sample loss", meta={"kind": "samples"})


def sweep_figure(values: Sequence[float], fwd_iters_mean: Sequence[float], fwd_iters_max: Sequence[float],
                 error: Sequence[float], *, control: str, error_name: str = "loss",
                 converged_frac: Sequence[float] | None = None, current: float | None = None,
                 log_x: bool = False) -> go.Figure:
    """How forward iterations (left axis) and the error (right axis) respond to one control."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x = np.asarray(values, float)
    fig.add_trace(go.Scatter(x=x, y=np.asarray(fwd_iters_mean, float), mode="lines+markers", name="fwd iters (mean)",
                             line=dict(color=FWD_COLOR, width=2.5)))
    fig.add_trace(go.Scatter(x=x, y=np.asarray(fwd_iters_max, float), mode="lines", name="fwd iters (max)",
                             line=dict(color=FWD_COLOR, width=1, dash="dot")))
    fig.add_trace(go.Scatter(x=x, y=_finite_or_nan(error), mode="lines+markers", name=error_name,
                             line=dict(color="#2ca02c", width=2)), secondary_y=True)
    if converged_frac is not None:
        frac = np.asarray(converged_frac, float)
        bad = frac < 1
        if bad.any():
            fig.add_trace(go.Scatter(x=x[bad], y=np.asarray(fwd_iters_max, float)[bad], mode="markers",
                                     name="some not converged", marker=dict(symbol="x", color=BAD_COLOR, size=9)))
    if current is not None and x.size:
        top = float(np.nanmax(np.asarray(fwd_iters_max, float))) if x.size else 1.0
        fig.add_trace(go.Scatter(x=[current, current], y=[0, top], mode="lines", name=f"current {control}",
                                 line=dict(color="#999", dash="dash", width=1.5), hoverinfo="skip"))
    if log_x:
        fig.update_xaxes(type="log", exponentformat="power", dtick=1 if _decades(x) >= 2 else None)
    fig.update_yaxes(title_text="forward iterations", secondary_y=False)
    fig.update_yaxes(title_text=error_name, secondary_y=True, showgrid=False, tickformat=".3g")
    return _layout(fig, f"Sweep of {control} (fixed network, evaluation set)", control, "forward iterations",
                   meta={"kind": "sweep", "control": control})
