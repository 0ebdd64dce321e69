"""Page sections: the readout, the live charts, the sweep, export and help.

Each `render_*` function draws one section from a `Runner` (see session.py) with the pure figure
builders of `twnn_jax.figures`. Nothing here computes anything about the network itself.
"""

from __future__ import annotations

import csv
import io
import math

import jax
import numpy as np
import plotly.io as pio
import streamlit as st

from twnn_jax import figures
from twnn_jax.checkpoint import dumps_strict
from twnn_jax.settle_trace import TRACED_KINDS
from twnn_jax.tasks import BRACKET_TASKS

from . import growth_view, live_chart
from .controls import CONTROLS
from .session import MAX_TRAINERS, Runner, compile_counts, playing_count

CONTRACTION_WARN = 0.9
HIST_STEPS = 10  # the histogram pools the per-sample counts of this many recent steps
TRAJ_STEPS = 12  # convergence panels draw this many recent steps


def solves(runner: Runner) -> bool:
    """The run's model finds fixed points (the solve views apply); gru, lstm, resnet_plain and seed 003's RNN
    compute in one pass."""
    return bool(runner.trainer.model.uses_fix)


def no_solve_text(runner: Runner) -> str:
    return (f"Model **{runner.trainer.model.kind}** has no fixed point: it computes its output in one pass, so "
            "the views of the solves (convergence, iteration counts, gate activity) do not apply to it.")


def describe(runner: Runner) -> str:
    """The line under the page title: what runs, and what a training step does."""
    text = f"Task **{runner.trainer.task.name}** · model **{runner.trainer.model.kind}**"
    if runner.config.task in BRACKET_TASKS:
        grows = "grows and prunes itself (seed 003)" if runner.config.grow == "on" else "has a fixed size"
        return (text + f" (up to {runner.config.hidden} neurons). A tanh RNN learns to predict the next symbol of a "
                f"bracket text, 40 symbols a step, and {grows}; it has no fixed point, so solver, gradient mode "
                "and the live controls do not apply.")
    text += f" · solver **{runner.config.solver}** · gradients **{runner.config.grad_mode}**. "
    if not solves(runner):
        return text + "This model has no fixed point: each step is an ordinary forward and backward pass."
    return text + ("Each training step solves a fixed point forward, and another (the adjoint) backward: watch "
                   "both settle.")


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


# ----------------------------------------------------------------------------------------------
# Readout and messages
# ----------------------------------------------------------------------------------------------


def render_readout(runner: Runner, snap: dict) -> None:
    """st.metric row: step, loss, metric, iterations and convergence, contraction, speed; then alerts."""
    history = snap["history"]
    last = history[-1] if history else {}
    task = runner.trainer.task
    contraction = _contraction(runner)
    rate = runner.steps_per_second()
    cols = st.columns(7)
    cols[0].metric("Step", snap["step"], help="Training steps taken since the last reset.")
    cols[1].metric("Loss", _short(last.get("loss")), help="Training loss of the latest batch.")
    if task.metric_name != "mse":
        cols[2].metric(task.metric_name.split("(")[0].capitalize(), _short(last.get("metric")), help=task.metric_name)
    else:
        gen = runner.generate() if runner.trainer.generate is not None else None
        cols[2].metric("Gen. RMSE", _short(float(gen["rmse"])) if gen else "–",
                       help="Root-mean-square error of the free-running generation on the evaluation phases.")
    has_solve = solves(runner)
    for col, prefix, name, frac in ((cols[3], "fwd", "Fwd iters", "converged_frac"),
                                    (cols[4], "bwd", "Bwd iters", "bwd_converged_frac")):
        shown = last if has_solve else {}  # a model without a fixed point iterates nothing: "–"
        value = f"{shown[f'{prefix}_iters_mean']:.1f} / {shown[f'{prefix}_iters_max']}" if shown else "–"
        conv = f"{100 * shown[frac]:.0f}% converged" if shown else None
        col.metric(name, value, delta=conv, delta_color="off" if not shown or shown[frac] == 1 else "inverse",
                   delta_arrow="off",
                   help=f"{'Forward' if prefix == 'fwd' else 'Adjoint (backward)'} iterations per sample in the latest "
                   "step, mean / max (all the model's solves of a sample added up), and the share of samples whose "
                   "solve reached its tolerance before max_iter (–: the model has no fixed point).")
    if growth_view.applies(runner):
        size = last.get("size")
        if runner.config.grow == "wormholes":
            cols[5].metric("Wormholes", size if size is not None else "–",
                           help=f"Active wormholes after the latest step (of "
                           f"{len(runner.trainer.model.spec.wormholes)} slots): the network opens and closes "
                           "wormholes by seed 003's rule.")
        else:
            cols[5].metric("Neurons", size if size is not None else "–",
                           help=f"Active neurons after the latest step (of {runner.config.hidden} slots): the network "
                           "grows and prunes itself by seed 003's rule.")
    else:
        cols[5].metric("‖J‖", _short(contraction) if contraction is not None else "–",
                       help="Power-iteration estimate of the Jacobian norm of one sweep at the fixed point (largest "
                       "over 8 evaluation samples). Below 1 the iteration contracts; near 1 it slows; above 1 it may "
                       "diverge.")
    cols[6].metric("Steps/s", f"{rate:.0f}" if rate is not None and runner.playing else "–",
                   help="Training speed over the last 5 s while playing.")
    _alerts(runner, history, contraction)


def _short(x) -> str:
    """A number in at most ~6 characters: 0.137, 6.3e-8, 1.2e3."""
    if x is None:
        return "–"
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    mantissa, exp = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exp)}"


def _contraction(runner: Runner) -> float | None:
    try:
        c = runner.contraction()
    except Exception:  # noqa: BLE001 - a failed estimate is shown as missing
        return None
    if c is None:
        return None
    c = np.asarray(c, float)
    return float(np.max(c)) if c.size and np.all(np.isfinite(c)) else float("inf")


def _alerts(runner: Runner, history: list[dict], contraction: float | None) -> None:
    if runner.compiling:
        st.info("Compiling the training step for this configuration (once per task/solver/gradient mode; "
                "10–20 s on a CPU)…", icon=":material/hourglass_top:")
    if runner.error:
        st.error(f"{runner.error}. The last good state is kept; press Reset to start over.", icon=":material/error:")
    if runner.message:
        show = {"info": st.info, "success": st.success, "warning": st.warning, "error": st.error}
        show.get(runner.message_level, st.info)(runner.message)
    if not history:
        return
    last = history[-1]
    recent = history[-20:]
    bad_loss = sum(1 for h in recent if not math.isfinite(h["loss"]))
    bad_grad = sum(1 for h in recent if h["skipped"] and math.isfinite(h["loss"]))
    if (bad_loss or bad_grad) and not (runner.message and "non-finite" in runner.message):
        parts = []
        if bad_loss:
            parts.append(f"{bad_loss} of the last {len(recent)} steps had a non-finite loss")
        if bad_grad:
            parts.append(f"{bad_grad} of the last {len(recent)} steps had a finite loss but a non-finite gradient")
        st.error("; ".join(parts) + ". Those updates were skipped and the parameters kept. Lower the gate bias, "
                 "tolerance or learning rate — or Reset.", icon=":material/warning:")
    if last.get("fwd_diverged_frac", 0) > 0:
        st.error(f"{100 * last['fwd_diverged_frac']:.0f}% of the latest step's forward solves diverged "
                 "(a non-finite value appeared).", icon=":material/warning:")
    if last["converged_frac"] < 1:
        st.warning(f"{100 * (1 - last['converged_frac']):.0f}% of the latest step's samples stopped at "
                   f"max_iter = {last['max_iter']} before reaching tol = {last['tol']:.0e}: their gradients are "
                   "computed at a point that is not a fixed point.", icon=":material/warning:")
    elif last["bwd_converged_frac"] < 1:
        st.warning(f"{100 * (1 - last['bwd_converged_frac']):.0f}% of the latest step's adjoint solves stopped "
                   f"before reaching bwd_tol = {last['bwd_tol']:.0e}: their gradients are approximate.",
                   icon=":material/warning:")
    if contraction is not None:
        if not math.isfinite(contraction) or contraction >= 1.0:
            st.error(f"‖J‖ ≈ {_fmt(contraction)} ≥ 1: one sweep can stretch some directions, so convergence is no "
                     "longer guaranteed — the solves may slow down or diverge. Lower the gate bias to close the "
                     "wormholes, or Reset.", icon=":material/local_fire_department:")
        elif contraction >= CONTRACTION_WARN:
            st.warning(f"‖J‖ ≈ {contraction:.3f} is approaching 1: the forward and backward solves slow down sharply "
                       "near 1 and may diverge past it.", icon=":material/thermostat:")


# ----------------------------------------------------------------------------------------------
# Live charts
# ----------------------------------------------------------------------------------------------


def build_figures(runner: Runner, snap: dict) -> dict:
    """Every live figure from one snapshot (pure builders; the runner only supplies numbers)."""
    details = snap["details"][-TRAJ_STEPS:]
    history = snap["history"]
    live = snap["live"]
    task = runner.trainer.task
    figs = {}
    if not solves(runner):  # no fixed point: no solve views; the learning views and, when it grows, its size
        figs["loss"] = figures.loss_figure(history, metric_name=None if task.metric_name == "mse"
                                           else task.metric_name)
        if runner.trainer.generate is not None:  # (the samples' scatter is of iterations: none here)
            figs["sine"] = _second_figure(runner, snap)
        figs.update(growth_view.figures(runner, snap))
        return figs
    steps = [d["step"] for d in details]
    fwd = [d["fwd_trajectory"] for d in details if d["fwd_trajectory"] is not None]
    bwd = [d["bwd_trajectory"] for d in details if d["bwd_trajectory"] is not None]
    latest = details[-1] if details else None
    figs["fwd"] = figures.convergence_figure(
        fwd, live["tol"], steps=steps, title="Forward solve: residual per iteration", tol_label="tol",
        iters=latest["fwd_iters"] if latest else None)
    figs["bwd"] = figures.convergence_figure(
        bwd, live["bwd_tol"], steps=steps, title="Backward (adjoint) solve: residual per iteration",
        tol_label="bwd_tol", iters=latest["bwd_iters"] if latest else None)
    for key in ("fwd", "bwd"):
        figs[key]["layout"]["meta"].update(
            gate=live["gate"], bwd_tol=live["bwd_tol"],
            # the live values the newest drawn step ran with
            **{f"data_{k}": latest[k] if latest else None for k in ("tol", "bwd_tol", "gate")})
    figs["iters"] = figures.iterations_figure(history, max_iter=int(live["max_iter"]))
    pooled = details[-HIST_STEPS:]
    figs["hist"] = figures.iterations_histogram(
        np.concatenate([d["fwd_iters"] for d in pooled]) if pooled else None,
        np.concatenate([d["bwd_iters"] for d in pooled]) if pooled else None,
        title=f"Iterations per sample (last {len(pooled)} steps)" if pooled else "Iterations per sample")
    figs["loss"] = figures.loss_figure(history, metric_name=None if task.metric_name == "mse" else task.metric_name)
    figs["sine" if runner.trainer.generate is not None else "samples"] = _second_figure(runner, snap)
    figs["gates"] = figures.gates_figure(history, latest["gates"] if latest else None)
    figs.update(growth_view.figures(runner, snap))  # a growing wormhole net (sine's small net, grow on)
    return figs


def _second_figure(runner: Runner, snap: dict) -> dict:
    """Beside the loss: the sine task's free-running generation, else the evaluation set's samples."""
    task = runner.trainer.task
    if runner.trainer.generate is not None:
        gen = runner.generate()
        return figures.sine_figure(gen["series"], gen["target"], window=np.asarray(task.eval_set[0]),
                                   title=f"Free-running generation at step {snap['step']} "
                                         f"(RMSE {float(gen['rmse']):.3g})")
    ev = runner.evaluate()
    return figures.sample_scatter_figure(ev["fwd_iters"], ev["sample_loss"], converged=ev["fwd_converged"])


EXPLAIN = {
    "fwd": "**What you see:** for the latest training steps, how far each sample's state moved per iteration "
           "(one line per sample; the newest step bold, older ones faded). The solve stops when the line drops "
           "below the red tolerance line. **Try:** tighten *tol* and watch the lines extend; open the gates "
           "(*gate bias* up) and they fall more slowly.",
    "bwd": "**What you see:** the adjoint solve u = g + Jᵀu that gives the gradient, iterated with the same routine. "
           "Its residual is shown relative to ‖g‖ (the incoming gradient), and the solve stops when it drops "
           "below the dashed line at bwd_tol. **Try:** loosen *backward tolerance*; switch *gradient mode* "
           "to one_step (a single step) or unrolled.",
    "iters": "**What you see:** forward and backward iterations per sample over training (mean bold, max dotted); red "
             "marks where some sample hit *max_iter* unconverged. **Try:** the *Near divergence* preset.",
    "hist": "**What you see:** how the iteration counts spread over samples — a network can think longer on some "
            "inputs than on others. **Try:** open the gates and watch the forward counts spread.",
    "loss": "**What you see:** the training loss per step (faint) and its running mean (bold), log scale; red "
            "crosses are steps skipped for a non-finite loss or gradient. **Try:** raise the learning rate.",
    "sine": "**What you see:** the net generating the wave on its own — each output is fed back as the next input "
            "(green: the true window it starts from). Early on it drifts off; as it learns it tracks the target.",
    "samples": "**What you see:** the fixed evaluation set, one dot per sample: forward iterations against that "
               "sample's loss. Do the hard samples take longer?",
    "gates": "**What you see:** how open the wormholes are (0 shut, 1 open): the mean over training and the latest "
             "per-sample spread. The gate bias shifts every gate; the net also learns its own gate weights.",
}

CHART_KEYS = {"fwd": "chart_fwd", "bwd": "chart_bwd", "iters": "chart_iters", "hist": "chart_hist",
              "loss": "chart_loss", "sine": "chart_sine", "samples": "chart_samples", "gates": "chart_gates"}


def _chart(figs: dict, name: str) -> None:
    live_chart.show(figs[name], key=CHART_KEYS[name])
    st.caption(EXPLAIN[name])


def render_charts(runner: Runner, snap: dict, frozen: bool) -> None:
    """The live panels. While frozen the last figures are redrawn unchanged (zoom and pan survive)."""
    figs = st.session_state.get("_frozen_figs") if frozen else None
    if figs is None:
        figs = build_figures(runner, snap)
        if frozen:  # marked in their meta: the page (and a test) can tell them from the last live figures
            figs = {name: {**fig, "layout": {**fig.get("layout", {}),
                                             "meta": {**(fig.get("layout", {}).get("meta") or {}), "frozen": True}}}
                    for name, fig in figs.items()}
        st.session_state["_frozen_figs"] = figs if frozen else None
    st.session_state["_last_figs"] = figs
    if frozen:
        st.info("View frozen: charts keep their zoom and stop updating (training goes on). Unfreeze to catch up.",
                icon=":material/ac_unit:")
    if "fwd" not in figs:  # a model without a fixed point
        st.subheader("Convergence of the solves", anchor="convergence")
        st.info(no_solve_text(runner), icon=":material/block:")
    else:
        with st.container(key="panel_convergence"):
            st.subheader("Convergence of the solves", anchor="convergence")
            left, right = st.columns(2)
            with left:
                _chart(figs, "fwd")
            with right:
                _chart(figs, "bwd")
        st.subheader("Iteration counts", anchor="iterations")
        left, right = st.columns([3, 2])
        with left:
            _chart(figs, "iters")
        with right:
            _chart(figs, "hist")
    st.subheader("Learning", anchor="learning")
    beside = next((name for name in ("sine", "samples") if name in figs), None)
    left, right = st.columns(2) if beside else (st.container(), None)
    with left:
        _chart(figs, "loss")
    if beside:
        with right:
            _chart(figs, beside)
    if "gates" in figs:
        st.subheader("Gate activity", anchor="gates")
        _chart(figs, "gates")
    growth_view.render(figs)


# ----------------------------------------------------------------------------------------------
# Exploration without training
# ----------------------------------------------------------------------------------------------

SWEEPABLE = ("tol", "gate", "max_iter")


def _sweep_values(control: str, low, high, points: int) -> list:
    if control == "gate":
        return [float(v) for v in np.linspace(low, high, points)]
    values = np.geomspace(low, high, points)
    if control == "max_iter":
        return sorted({int(round(v)) for v in values})
    return [float(f"{v:.3g}") for v in values]


def render_sweep(runner: Runner) -> None:
    st.subheader("Explore without training", anchor="explore")
    if not solves(runner):
        st.caption(f"Sweeping tol, gate bias or max_iter over the evaluation set does not apply to model "
                   f"{runner.trainer.model.kind}: it has no fixed point.")
        return
    st.caption("Hold the current network fixed and sweep one control over a range: how many forward iterations "
               "does the evaluation set need, and how does the error respond? Nothing is trained; the live "
               "controls keep their values.")
    c1, c2, c3, c4 = st.columns([1, 2, 1, 1], vertical_alignment="bottom")
    control = c1.selectbox("Control to sweep", SWEEPABLE, key="sweep_control")
    if control == "gate":
        low, high = c2.slider("Range", -20.0, 20.0, (-8.0, 8.0), step=0.5, key="sweep_range_gate")
    elif control == "tol":
        opts = CONTROLS["tol"].options
        low, high = c2.select_slider("Range", opts, value=(1e-7, 1e-1), key="sweep_range_tol",
                                     format_func=lambda v: f"{v:.0e}")
    else:
        opts = CONTROLS["max_iter"].options
        low, high = c2.select_slider("Range", opts, value=(1, 100), key="sweep_range_max_iter")
    points = c3.number_input("Points", 3, 40, 12, key="sweep_points")
    if c4.button("Run sweep", key="sweep_run", type="primary"):
        if low == high:
            st.warning("Pick a range with two different ends.")
        else:
            values = _sweep_values(control, low, high, int(points))
            with st.spinner(f"Evaluating {len(values)} settings of {control}…"):
                rows = runner.sweep(control, values)
            st.session_state["_sweep"] = {"control": control, "rows": rows, "step": runner.step_count,
                                          "current": runner.live_values[control]}
    result = st.session_state.get("_sweep")
    if result:
        rows = result["rows"]
        task = runner.trainer.task
        fig = figures.sweep_figure(rows["values"], rows["fwd_iters_mean"], rows["fwd_iters_max"], rows["loss"],
                                   control=result["control"], error_name=f"eval loss ({task.name})",
                                   converged_frac=rows["converged_frac"], current=result["current"],
                                   log_x=result["control"] in ("tol", "max_iter"))
        live_chart.show(fig, key="chart_sweep")
        st.caption(f"Network as of step {result['step']}, evaluation set of {task.name}. Red crosses: some samples "
                   "hit max_iter unconverged. A looser tol or a lower max_iter stops earlier — at what cost in error?")


# ----------------------------------------------------------------------------------------------
# Export and help
# ----------------------------------------------------------------------------------------------


def history_csv(runner: Runner) -> str:
    history = runner.snapshot()["history"]
    buf = io.StringIO()
    if history:
        writer = csv.DictWriter(buf, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    return buf.getvalue()


def run_json(runner: Runner) -> str:
    snap = runner.snapshot()
    return dumps_strict({"config": runner.config.to_dict(), "live": snap["live"], "steps": snap["step"],
                         "history": snap["history"]}, indent=1)  # strict JSON: non-finite numbers as null


def figures_html(runner: Runner) -> str:
    figs = build_figures(runner, runner.snapshot())
    if runner.trainer.model.kind in TRACED_KINDS:
        from . import teaching  # the network views (teaching.py imports this package's controls)

        figs.update(teaching.figures(runner))
    from . import inspector, playground, surrogate_view  # inspector; the phase plane, when shown; solve vs pass

    figs.update(inspector.figures(runner))
    figs.update(playground.figures())
    figs.update(surrogate_view.figures(runner))
    parts = ["<html><head><meta charset='utf-8'><title>twnn run</title></head><body>",
             f"<h1>twnn run: {runner.config.task}, step {runner.step_count}</h1>"]
    for i, fig in enumerate(figs.values()):
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0)))
    parts.append("</body></html>")
    return "\n".join(parts)


def render_export(runner: Runner) -> None:
    st.subheader("Export this run", anchor="export")
    name = f"twnn_{runner.config.task}_{runner.config.solver}_{runner.config.grad_mode}_seed{runner.config.seed}"
    row = st.container(horizontal=True)
    row.download_button("Metrics (CSV)", data=lambda: history_csv(runner), file_name=f"{name}.csv", mime="text/csv",
                       key="export_csv", on_click="ignore", icon=":material/table:")
    row.download_button("Run (JSON)", data=lambda: run_json(runner), file_name=f"{name}.json",
                       mime="application/json", key="export_json", on_click="ignore", icon=":material/data_object:")
    row.download_button("Figures (HTML)", data=lambda: figures_html(runner), file_name=f"{name}.html",
                       mime="text/html", key="export_html", on_click="ignore", icon=":material/monitoring:")
    st.caption("One row per step: loss, metric, iteration counts, convergence, and the live control values in force "
               "at that step. The HTML opens offline (plotly.js is embedded). The URL of this page reproduces the "
               "controls.")


def render_help(runner: Runner, *, render_s: float | None = None, chart_tick: float | None = None,
                readout_s: float | None = None) -> None:
    with st.expander("How to use this dashboard"):
        st.markdown(
            "- **Play / Pause** (`P`), **Step** (`S`), **Reset** (`X`): keyboard shortcuts work anywhere on the page "
            "except inside a text field.\n"
            "- **Live controls** (tolerance, max iterations, gate bias, damping, backward tolerance, learning rate) "
            "take effect at the next training step, without recompiling.\n"
            "- **Task, solver, gradient mode, seed** start a new run (the first run of a task/solver/gradient-mode "
            "combination compiles for 10–20 s).\n"
            "- **Auto-pause** stops training at a step count or when the loss reaches a target.\n"
            "- **Freeze view** stops redrawing the charts so you can zoom and hover; training continues. Zoom also "
            "survives ordinary redraws.\n"
            "- **Charts every** sets how often the charts redraw while training: each redraw costs the server and "
            "the browser CPU that training could use (on a 2-core machine, training in the page ran at 0.90–0.96x its "
            "headless speed with 2 s charts, 0.95–0.98x with 5 s charts). Charts scrolled out of view wait and "
            "redraw when they come back. When drawing takes more than 8% of the "
            "time, the interval stretches.\n"
            "- **Share**: the URL holds every control (`?task=sine&tol=0.001&gate=-2.0…`); opening it reproduces "
            "the view. A value out of range is reported and replaced by the default.")
    with st.expander("Under the hood"):
        counts = compile_counts(runner.trainer)
        st.markdown(
            f"- Model **{runner.trainer.model.kind}** on task **{runner.trainer.task.name}**, hidden "
            f"{runner.config.hidden}, batch {runner.config.batch_size}, residual trajectories of the first "
            f"{runner.config.trajectory} iterations recorded.\n"
            f"- Computing on **{jax.default_backend().upper()}** ({jax.devices()[0].device_kind}, "
            f"{jax.device_count()} device(s)), JAX {jax.__version__}.\n"
            f"- jit cache entries (a new entry = a compilation): "
            + ", ".join(f"`{k}` {v}" for k, v in counts.items() if v is not None) + ".\n"
            f"- Sessions training on this server now: {playing_count()} (limit {MAX_TRAINERS}).\n"
            + ("- Charts update in place (plotly.js from this app's static files).\n" if live_chart.in_place_available()
               else "- Charts are redrawn whole by `st.plotly_chart` (slower, and a zoom resets more often): static "
               "file serving is off. Start with `twnn dashboard`, or run `streamlit run dashboard/app.py` from the "
               "repository root, whose `.streamlit/config.toml` turns it on.\n")
            + (f"- Drawing the charts takes {1000 * render_s:.0f} ms on the server; while training they are redrawn "
               f"every {chart_tick:.1f} s (never more than 8% of the time)"
               + (f", the readout at least every {readout_s:g} s" if readout_s else "") + ".\n"
               if render_s and chart_tick else "")
        )
        st.caption("digits: the trajectory shown is the first fixed-point block's; adding: the last time step's. "
                   "Iteration counts add up every solve of a sample.")
