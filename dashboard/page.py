"""The page: sidebar controls, the session's runner, and the sections in order."""

from __future__ import annotations

import time

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from . import controls, inspector, panels, playground, preload, surrogate_view, teaching
from .session import Runner, compile_counts, make_config

REDRAW_CHOICES = (1, 2, 5, 10)  # seconds between chart redraws while training (a user setting, "redraw")
# Chart redraws cost CPU that training could use: a few ms of Python on the server (figures are plain
# dicts, twnn_jax/figures.py), and in the browser Streamlit's re-render of the fragment plus Plotly for the
# charts in view (charts update in place, dashboard/live_chart.py; charts out of view wait). On 2 cores,
# paired with headless runs of the same steps, training in the page ran at 0.90-0.96x headless with 2 s
# charts (run medians), 0.95-0.98x with 5 s charts, 0.94-0.98x frozen (benchmarks/bench_dashboard.py).
REDRAW_DEFAULT = 2
READOUT_MAX_S = 2.0  # the readout ticks at the chart interval or this, whichever is shorter
RENDER_BUDGET = 0.08  # redraw the charts at most this share of the time: drawing takes the GIL from training


def _session_runner(model: dict, live: dict) -> Runner:
    """This session's runner; a new one when task, solver, gradient mode or seed changed."""
    runner: Runner | None = st.session_state.get("_runner")
    key = tuple(model[k] for k in controls.REBUILD_KEYS)
    if runner is None or runner.closed or st.session_state.get("_runner_key") != key:
        was_playing = runner is not None and runner.playing
        if runner is not None:
            runner.close(wait=False)
        ctx = get_script_run_ctx(suppress_warning=True)
        config, session_id = make_config(**model, **live), ctx.session_id if ctx else None
        try:
            runner = preload.claim(config, session_id) or Runner(config, session_id=session_id)
        except ValueError as err:  # a combination the library rejects (warm starts on a model without a solve)
            st.error(f"Cannot start this run: {err}")
            st.stop()
        st.session_state["_runner"] = runner
        st.session_state["_runner_key"] = key
        st.session_state.pop("_sweep", None)
        st.session_state["_frozen_figs"] = None
        if was_playing:
            runner.play()
    if runner.live_values != live:
        try:
            runner.set_live(live)
        except ValueError as err:  # widgets stay in range; this guards the library's checks
            st.error(f"Live control rejected: {err}")
        else:
            runner.wait_applied()  # while training: draw this run with steps that used the new values
    return runner


def _toggle_play(runner: Runner) -> None:
    if runner.playing:
        runner.pause()
    else:
        runner.play()


def _step(runner: Runner) -> None:
    if not runner.playing:
        runner.step(1)


def _render_toolbar(runner: Runner) -> tuple[bool, float]:
    """Play / Step / Reset, auto-pause, redraw interval, freeze. Returns (frozen, redraw seconds)."""
    c = st.columns([1.05, 1, 1, 1.25, 1.25, 0.9, 1.1], vertical_alignment="bottom")
    c[0].button("Pause" if runner.playing else "Play", key="play", on_click=_toggle_play, args=(runner,),
                type="primary", icon=":material/pause:" if runner.playing else ":material/play_arrow:",
                shortcut="P", help="Start or pause training (shortcut P).", width="stretch")
    c[1].button("Step", key="step", on_click=_step, args=(runner,), disabled=runner.playing,
                icon=":material/skip_next:", shortcut="S", help="One training step (shortcut S).", width="stretch")
    c[2].button("Reset", key="reset", on_click=runner.reset, icon=":material/restart_alt:", shortcut="X",
                help="Back to the initial network, same settings (shortcut X).", width="stretch")
    at_step = c[3].number_input("Auto-pause at step", min_value=0, max_value=10_000_000, value=0, step=100,
                                key="pause_at", help="Pause when the step count reaches this (0: off).")
    below = c[4].number_input("Auto-pause at loss ≤", min_value=0.0, value=0.0, step=0.001, format="%.4f",
                              key="pause_loss", help="Pause when the training loss falls to this (0: off).")
    runner.set_auto_pause(int(at_step) or None, float(below) or None)
    redraw = c[5].selectbox("Charts every", REDRAW_CHOICES, index=REDRAW_CHOICES.index(REDRAW_DEFAULT),
                            format_func=lambda s: f"{s} s", key="redraw",
                            help="How often the charts redraw while training (the readout above them updates "
                            f"at least every {READOUT_MAX_S:.0f} s). Redrawing takes CPU from training, mostly in "
                            "the browser: slower redraws, faster training.")
    frozen = c[6].toggle("Freeze view", key="freeze",
                         help="Stop redrawing the charts so zoom and hover survive; training goes on.")
    return frozen, float(redraw)


def main() -> None:
    controls.read_url_once()
    sidebar = st.sidebar
    sidebar.title("twnn live")
    sidebar.subheader("Model", help="Changing any of these starts a new run.")
    model = controls.render_model_controls(sidebar)
    sidebar.subheader("Live controls", help="Applied at the next step; no recompilation.")
    live = controls.render_live_controls(sidebar)
    sidebar.subheader("Presets", help="Set several live controls at once.")
    controls.render_presets(sidebar)
    controls.write_url({**model, **live})

    runner = _session_runner(model, live)
    st.session_state["_view_playing"] = runner.playing

    st.title("Temporal wormhole networks, live")
    st.caption(panels.describe(runner))
    for warning in controls.url_warnings():
        st.warning(warning, icon=":material/link_off:")
    frozen, redraw = _render_toolbar(runner)
    # What the first view needs, compiled first (the runner's warm-up thread compiles the rest meanwhile):
    # the readout's ||J|| (contraction), and the sine task's generation or the other tasks' evaluation.
    first_view = ("contraction", "generate" if runner.trainer.generate is not None else "evaluate")
    counts = compile_counts(runner.trainer)
    if any(counts[name] == 0 for name in first_view if counts[name] is not None):
        with st.spinner("Compiling this configuration's evaluation functions (first visit only, a few seconds)…"):
            for name in first_view:
                getattr(runner, name)()

    ticking = min(redraw, READOUT_MAX_S) if runner.playing else None
    # charts: slow the redraw when drawing is slow, so training keeps >= 1 - RENDER_BUDGET of its speed
    chart_tick = max(redraw, min(10.0, st.session_state.get("_render_s", 0.0) / RENDER_BUDGET))

    @st.fragment(run_every=ticking)
    def readout() -> None:
        r: Runner = st.session_state["_runner"]
        r.touch()
        if r.playing != st.session_state.get("_view_playing"):
            st.rerun()  # playing flipped (auto-pause, error): redraw the whole page once
        panels.render_readout(r, r.snapshot())

    @st.fragment(run_every=None if frozen or not runner.playing else chart_tick)
    def charts() -> None:
        r: Runner = st.session_state["_runner"]
        start = time.perf_counter()
        panels.render_charts(r, r.snapshot(), bool(st.session_state.get("freeze")))
        took = time.perf_counter() - start
        if r.playing:  # a redraw while training (not one that waited for a compilation)
            st.session_state["_render_s"] = 0.7 * st.session_state.get("_render_s", took) + 0.3 * took

    teach_kind = teaching.tick_kind(runner, frozen)

    @st.fragment(run_every=teaching.tick(teach_kind, chart_tick))
    def teach() -> None:
        teaching.render(st.session_state["_runner"], teach_kind, frozen)

    @st.fragment(run_every=None if frozen or not runner.playing else chart_tick)
    def solve_vs_pass() -> None:
        surrogate_view.render(st.session_state["_runner"])

    @st.fragment(run_every=None if frozen or not runner.playing else chart_tick)
    def inspect() -> None:
        inspector.render(st.session_state["_runner"])

    readout()
    teach()
    inspect()
    charts()
    solve_vs_pass()
    st.divider()
    st.fragment(panels.render_sweep)(runner)
    st.divider()
    st.fragment(playground.render)()
    st.divider()
    panels.render_export(runner)
    panels.render_help(runner, render_s=st.session_state.get("_render_s"), chart_tick=chart_tick,
                       readout_s=READOUT_MAX_S)
    preload.page_shown()
