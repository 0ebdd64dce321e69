"""The teaching views: the network drawn live ("Network") and one input settling ("One input settling").

The network picture and the units x iterations heatmap are built by `twnn_jax.network_figures` from one
evaluation sample's trace (`Runner.settle`, i.e. `twnn_jax.settle_trace`): the current parameters and the
current live values, so they work before the first step and while paused, and moving tol or the gate
bias redraws them at once. Choosing another sample or moving the iteration slider never recompiles
(the sample index is a traced value; the slider only picks a column of the trace already on the host).

The settling view shows the forward solve or, switched to "backward", the adjoint solve of the chosen sample's
loss (the one the gradient is computed from); both come from the same trace, so switching compiles nothing.

State in the URL (registered in `controls.VIEW_PARAMS`): `sample` (slowest, fastest or an index of the
evaluation set), `iter` (end, or an iteration), `tstep` (recurrent models: slowest or a time step), `dir`
(forward or backward).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from twnn_jax import network_figures
from twnn_jax.settle_trace import CAPACITY, TRACED_KINDS, free_slots, hole_params, network_layout, settle_for

from . import live_chart
from .controls import VIEW_PARAMS
from .session import Runner

SAMPLE_KEY, ITER_KEY, TSTEP_KEY, DIR_KEY = "sample", "iter", "tstep", "dir"
DIRECTIONS = ("forward", "backward")
OPEN_KEY = "network_open"  # the views shown (closed: nothing is evaluated for them)
PICKS = ("slowest", "fastest")
ANIMATE_S = 0.35  # seconds per iteration while the settling plays


def _pick(raw: str):
    if raw in PICKS:
        return raw
    value = int(raw) if raw.isdigit() and len(raw) < 7 else None
    if value is None:
        raise ValueError(f"must be {' or '.join(PICKS)}, or a sample number (0, 1, …)")
    return value


def _iteration(raw: str):
    if raw == "end":
        return "end"
    if raw.isdigit() and len(raw) < 7:
        return int(raw)
    raise ValueError("must be end or an iteration number (0, 1, …)")


def _time_step(raw: str):
    if raw == "slowest":
        return "slowest"
    if raw.isdigit() and len(raw) < 7:
        return int(raw)
    raise ValueError("must be slowest or a time step (0, 1, …)")


def _direction(raw: str):
    if raw in DIRECTIONS:
        return raw
    raise ValueError(f"must be {' or '.join(DIRECTIONS)}")


VIEW_PARAMS.update({SAMPLE_KEY: _pick, ITER_KEY: _iteration, TSTEP_KEY: _time_step, DIR_KEY: _direction})

EXPLAIN_NETWORK = (
    "**What you see:** the network's layers as columns of units (left: the input), coloured by their value for "
    "the chosen sample (red positive, blue negative) at the iteration of the slider below. Grey lines: the "
    "forward connections. Arcs: the wormholes, from a later layer back to an earlier one; an arc's "
    "width and opacity are its mean gate over the evaluation set (thin and faint: shut, thick: open), its colour "
    "the sign of its weights (orange: mostly positive, it adds the later layer's state; teal: mostly negative, "
    "it subtracts it; grey: mixed). With *backward* chosen below, the units show their adjoint instead. Dotted "
    "boxes: the layers solved together to a fixed point. Hover a unit or an arc for its numbers. **Try:** move "
    "*gate bias* up and watch the arcs widen; press *Play iterations* and watch the earlier layer change "
    "again when the wormhole sends the later layer's state back.")
EXPLAIN_SETTLE = (
    "**What you see:** one input settling: each row is a unit, each column an iteration of the forward solve "
    "(column 0 is the start, every state zero; the last column is the fixed point). Above, the residual "
    "‖z_t − z_{t−1}‖ of each iteration; the solve stops when it falls below *tol*. The dotted line is the "
    "slider's iteration, which the network picture shows. **Try:** tighten *tol* (more columns), open the gates "
    "(rows keep changing for longer), pick the fastest sample to compare; switch to *backward* to watch the "
    "gradient settle.")
EXPLAIN_BACKWARD = (
    "**What you see:** the backward (adjoint) solve for the same input: the gradient of this sample's loss with "
    "respect to the fixed point, *g*, is sent back through the network by iterating u ← g + Jᵀu (J: the "
    "fixed-point map's Jacobian) until it settles; the training step's gradient is computed from the final *u*. "
    "Each row is a fixed-point unit, each column a backward iteration (column 0: *g* itself). Above, the residual "
    "relative to ‖g‖; it stops below *backward tolerance*. For resnet_fp the later block (B3, B4) settles first, "
    "then hands its gradient to B1, B2. Rows that stay zero are layers a sweep recomputes from below without "
    "reading their old value (in the default layer-by-layer sweep only the last layer and the wormholes' sources "
    "carry an adjoint). **Try:** open "
    "the gates (the wormhole carries the gradient back too: "
    "more columns), tighten *backward tolerance*.")


COMPILE_POLL_S = 1.0  # while the warm-up thread compiles the trace, look again this often


def tick_kind(runner: Runner, frozen: bool) -> str | None:
    """Why the teaching fragment reruns by itself: "animate" (the settling plays), "compile" (waiting for the
    trace's compilation), "charts" (with the charts while training), or None."""
    if not st.session_state.get(OPEN_KEY, True):
        return None
    if st.session_state.get("_settle_play"):
        return "animate"
    if runner.trainer.model.kind in TRACED_KINDS and settle_for(runner.config)._cache_size() == 0 and runner.warming_up:
        return "compile"
    return None if frozen or not runner.playing else "charts"


def tick(kind: str | None, chart_tick: float) -> float | None:
    return {"animate": ANIMATE_S, "compile": COMPILE_POLL_S, "charts": chart_tick}.get(kind)


def _start_play() -> None:
    st.session_state["_settle_play"] = True
    st.session_state["_settle_ticked"] = False
    st.session_state[ITER_KEY] = 0


def _toggled() -> None:
    st.session_state["_settle_play"] = False


def _slider_moved() -> None:
    st.session_state["_settle_play"] = False
    st.session_state["_iter_at_end"] = st.session_state[ITER_KEY] >= st.session_state.get("_iter_count", 0)


def _stop_play() -> None:
    st.session_state["_settle_play"] = False


def _flip_direction() -> None:
    st.session_state["_settle_play"] = False
    st.session_state[DIR_KEY] = DIRECTIONS[1 - DIRECTIONS.index(st.session_state.get(DIR_KEY, "forward"))]


def choose_sample(iters: np.ndarray, pick) -> int:
    """The sample index for a picker value: "fastest", an index (clipped to the set), else the slowest (the
    default, also for a value the picker has not validated yet, e.g. while the views compile)."""
    if pick == "fastest":
        return int(np.argmin(iters))
    if isinstance(pick, (int, np.integer)) and not isinstance(pick, bool):
        return int(np.clip(pick, 0, len(iters) - 1))
    return int(np.argmax(iters))


def _sample_label(i: int, ev: dict, task_name: str) -> str:
    text = f"#{i} · {int(ev['fwd_iters'][i])} iterations"
    if task_name == "digits":
        label = int(np.argmax(ev["output"][i]))
        text += f" · read as {label}"
        if "confidence" in ev:
            text += f" ({100 * float(ev['confidence'][i]):.0f}% sure)"
    return text


def hole_norms(layout, params) -> list[float]:
    """Each wormhole weight's spectral norm (before the run's spectral bound)."""
    return [float(np.linalg.norm(np.asarray(hole_params(params, h)["v"]), 2)) for h in layout.wormholes]


def hole_balances(layout, params) -> list[float]:
    """Each wormhole weight's sign (`network_figures.weight_balance`): the arcs' colours."""
    return [network_figures.weight_balance(np.asarray(hole_params(params, h)["v"])) for h in layout.wormholes]


def build(runner: Runner, params, pick="slowest", iteration="end", time_step="slowest",
          direction="forward") -> dict:
    """The two figures and what they were drawn from, for the current network and live values; `direction`
    "backward": the settling view (and the units' colours) show the adjoint solve."""
    trainer = runner.trainer
    layout = network_layout(trainer.model, trainer.task)
    ev = runner.evaluate()
    index = choose_sample(np.asarray(ev["fwd_iters"]), pick)
    trace = runner.settle(index, -1 if time_step == "slowest" else int(time_step))
    backward = direction == "backward"
    timeline = trace["adjoint"] if backward else trace
    count = int(timeline["count"])
    k = count if iteration == "end" else int(np.clip(iteration, 0, count))
    values = np.asarray(timeline["values"], float)
    rows = network_figures.heatmap_rows(layout, network_figures.BACKWARD_ROLES if backward
                                        else network_figures.FORWARD_ROLES)
    scale = network_figures.value_range(values[: count + 1, rows])
    gates = np.asarray(ev["gates"], float).reshape(len(ev["fwd_iters"]), -1)
    gate_means = gates.mean(0) if gates.size else np.zeros(0)
    where = f"sample #{index} of the evaluation set"
    if layout.recurrent:
        where += f", time step {int(trace['time_step'])} of {len(trace['step_iters'])}"
    if backward:
        solve_iters = int(timeline["iters"])
    else:
        solve_iters = int(trace["step_iters"][int(trace["time_step"])]) if layout.recurrent else int(trace["iters"])
    cut = f" (the first {CAPACITY} of each solve shown)" if solve_iters > count else ""
    state = "converged" if bool(timeline["converged"]) else "NOT converged"
    subtitle = f"{where} · after {k} of {solve_iters} {direction} iterations{cut} · {state}"
    if backward and runner.config.grad_mode != "implicit":
        subtitle += f" · this run's gradient ({runner.config.grad_mode}) does not solve it"
    # the network: the forward state at the slider's iteration, or the adjoint (its gates: the fixed point's)
    gate_row = int(trace["count"]) if backward else k
    network = network_figures.network_figure(
        layout, values[k], gate_means, hole_norms(layout, params),
        sample_gates=np.asarray(trace["gates"][gate_row], float), scale=scale, title="Network", subtitle=subtitle,
        hole_balance=hole_balances(layout, params), value_name="adjoint" if backward else "value",
        pending="no adjoint (not a fixed-point layer)" if backward else "not computed yet (its block has not started)",
        free=free_slots(layout, params))
    settle = network_figures.settling_heatmap(
        layout, values, timeline["residual"], count, k, scale=scale, direction=direction,
        title="One input settling" + (" — backward (adjoint)" if backward else ""), subtitle=f"{where} · {state}")
    for fig in (network, settle):
        fig["layout"]["meta"].update(sample=index, iteration=k, count=count, solve_iters=solve_iters,
                                     subtitle=subtitle, direction=direction)
    return {"network": network, "settle": settle, "index": index, "count": count, "iteration": k, "ev": ev,
            "trace": trace, "layout": layout, "direction": direction}


def figures(runner: Runner) -> dict:
    """The teaching figures for the HTML export: the page's choices when known, else the slowest sample; the
    settling view in both directions (the page's at its slider position, the other at its end)."""
    try:
        view = {key: st.session_state.get(f"_view_{key}") for key in (SAMPLE_KEY, ITER_KEY, TSTEP_KEY, DIR_KEY)}
    except Exception:  # noqa: BLE001 - outside a script run: the defaults
        view = {}
    params = runner.snapshot()["params"]
    pick, time_step = view.get(SAMPLE_KEY) or "slowest", view.get(TSTEP_KEY) or "slowest"
    shown = view.get(DIR_KEY) if view.get(DIR_KEY) in DIRECTIONS else "forward"
    out = build(runner, params, pick, view.get(ITER_KEY) if view.get(ITER_KEY) is not None else "end", time_step,
                shown)
    other = build(runner, params, pick, "end", time_step, DIRECTIONS[1 - DIRECTIONS.index(shown)])
    settles = {shown: out["settle"], other["direction"]: other["settle"]}
    return {"network": out["network"], "settle": settles["forward"], "settle_backward": settles["backward"]}


def _widget_value(key: str, default):
    value = st.session_state.get(key, default)
    return default if value is None else value


def render(runner: Runner, kind: str | None, frozen: bool) -> None:
    """The two sections. `kind`: why this fragment reruns by itself (`tick_kind` when the page was drawn);
    when that changes, the whole page reruns so that the fragment's timer follows."""
    trainer = runner.trainer
    head = st.columns([6, 1], vertical_alignment="bottom")
    head[0].subheader("Network", anchor="network")
    head[1].toggle("Show", key=OPEN_KEY, value=True, on_change=_toggled,
                   help="Show the network and the settling views (hidden: nothing is computed for them).")
    if not st.session_state[OPEN_KEY]:
        _follow(runner, kind, frozen)
        return
    if trainer.model.kind not in TRACED_KINDS:
        st.info(f"Model {trainer.model.kind} has no fixed point to draw.")
        return
    if settle_for(runner.config)._cache_size() == 0:
        if runner.warming_up:  # compiled by the runner's warm-up thread; the rest of the page is usable meanwhile
            st.info("Compiling the network views for this configuration (first visit only, a few seconds)…",
                    icon=":material/hourglass_top:")
            _follow(runner, kind, frozen)
            return
        with st.spinner("Compiling the network views for this configuration (first visit only, a few seconds)…"):
            runner.settle(0)
    ev = runner.evaluate()
    n = len(ev["fwd_iters"])
    options = (*PICKS, *range(n))
    pick = _widget_value(SAMPLE_KEY, "slowest")
    if pick not in options:
        pick = "slowest"
    st.session_state[SAMPLE_KEY] = pick
    row = st.columns([2.2, 1.2, 3, 1.2] if trainer.task.sequence else [2.2, 3.2, 1.2], vertical_alignment="bottom")
    iters = np.asarray(ev["fwd_iters"])
    row[0].selectbox(
        "Sample", options, key=SAMPLE_KEY,
        format_func=lambda o: (f"{o} (#{choose_sample(iters, o)}, {int(iters[choose_sample(iters, o)])} iterations)"
                               if o in PICKS else _sample_label(o, ev, trainer.task.name)),
        help="Which input of the evaluation set to watch: the slowest to settle (default), the fastest, or any.")
    time_step = "slowest"
    if trainer.task.sequence:
        t_options = ("slowest", *range(int(trainer.config.seq_len)))
        time_step = _widget_value(TSTEP_KEY, "slowest")
        if time_step not in t_options:
            time_step = "slowest"
        st.session_state[TSTEP_KEY] = time_step
        row[1].selectbox("Time step", t_options, key=TSTEP_KEY,
                         help="Recurrent model: every time step solves its own fixed point; which one to watch.")
    direction = _widget_value(DIR_KEY, "forward")
    if direction not in DIRECTIONS:
        direction = "forward"
    st.session_state[DIR_KEY] = direction
    trace = runner.settle(choose_sample(iters, pick), -1 if time_step == "slowest" else int(time_step))
    count = int((trace["adjoint"] if direction == "backward" else trace)["count"])
    # the slider: at the end (the fixed point) unless moved; it stays at the end when the count changes
    stored = st.session_state.get(ITER_KEY)
    at_end = st.session_state.get("_iter_at_end")
    if at_end is None:  # the first run: from the URL, else the end
        at_end = stored in (None, "end")
    playing = bool(st.session_state.get("_settle_play"))
    if playing:
        position = min(int(stored or 0) + (1 if st.session_state.get("_settle_ticked") else 0), count)
        st.session_state["_settle_ticked"] = True
        if position >= count:
            st.session_state["_settle_play"] = False
            st.session_state["_settle_ticked"] = False
    elif at_end or not isinstance(stored, int):
        position = count
    else:
        position = int(np.clip(int(stored), 0, count))
    st.session_state[ITER_KEY] = position
    st.session_state["_iter_count"] = count
    slider_col = row[-2]
    slider_col.slider("Iteration", 0, count, key=ITER_KEY, on_change=_slider_moved,
                      help="Which iteration of the solve the pictures show (forward or backward, as chosen under "
                      "*One input settling*; 0: the start, the right end: where it settled). Arrow keys move it one "
                      "iteration when it has the focus.")
    position = int(st.session_state[ITER_KEY])
    st.session_state["_iter_at_end"] = position == count and not st.session_state.get("_settle_play")
    if st.session_state.get("_settle_play"):
        row[-1].button("Stop", key="settle_stop", on_click=_stop_play, icon=":material/stop:", width="stretch",
                       help="Stop the settling animation.")
    else:
        row[-1].button("Play iterations", key="settle_play", on_click=_start_play, icon=":material/play_arrow:",
                       shortcut="I", width="stretch",
                       help="Show the solve iteration by iteration from the start (shortcut I).")
    out = build(runner, runner.snapshot()["params"], pick, position, time_step, direction)
    st.session_state["_view_sample"], st.session_state["_view_iter"] = pick, position
    st.session_state["_view_tstep"], st.session_state["_view_dir"] = time_step, direction
    _write_url(pick, "end" if st.session_state["_iter_at_end"] else position, time_step if trainer.task.sequence
               else None, direction)
    st.caption(out["network"]["layout"]["meta"]["subtitle"])
    live_chart.show(out["network"], key="chart_network")
    st.caption(EXPLAIN_NETWORK)
    st.subheader("One input settling", anchor="settling")
    turn = st.columns([6, 1.4], vertical_alignment="bottom")
    turn[1].button("Switch", key="settle_flip", on_click=_flip_direction, icon=":material/swap_horiz:",
                   shortcut="B", width="stretch",
                   help="Switch between the forward and the backward solve (shortcut B).")
    turn[0].radio(
        "Direction", DIRECTIONS, key=DIR_KEY, on_change=_stop_play, horizontal=True,
        format_func=lambda d: "Forward: the state" if d == "forward" else "Backward: the adjoint (gradient)",
        help="The forward solve (the state settling to the fixed point) or the backward one (the adjoint the "
        "gradient is computed from). The iteration slider above and the network's colours follow it.")
    live_chart.show(out["settle"], key="chart_settle")
    st.caption(EXPLAIN_BACKWARD if direction == "backward" else EXPLAIN_SETTLE)
    _follow(runner, kind, frozen)


def _follow(runner: Runner, kind: str | None, frozen: bool) -> None:
    if tick_kind(runner, frozen) != kind:
        st.rerun(scope="app")  # the fragment's own timer must start, stop or change


def _write_url(pick, iteration, time_step, direction="forward") -> None:
    wanted = {SAMPLE_KEY: str(pick), ITER_KEY: str(iteration), DIR_KEY: direction}
    if time_step is not None:
        wanted[TSTEP_KEY] = str(time_step)
    for key, value in wanted.items():
        if st.query_params.get(key) != value:
            st.query_params[key] = value
