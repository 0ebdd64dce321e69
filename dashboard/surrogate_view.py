"""The "Solve vs one pass" section: a run's surrogate of the fixed point (warm starts) against the solve.

A toggle trains with warm starts (`warm_start="surrogate"`, a model setting: turning it on or off starts
a new run, like the sidebar's "Warm start"). With warm starts on, for the sample chosen in "One input
settling" (sample 0 before that view has chosen one): the surrogate's guess beside the fixed point, the
surrogate's error over training (the history's `surrogate_error`), and the forward iterations of every
evaluation sample from zeros and from the guess, for the current parameters and live values
(`twnn_jax.solve_vs_pass`: one jitted function per run structure; sample and live values are traced).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from twnn_jax import solve_vs_pass

from . import live_chart
from .session import Runner

TOGGLE_KEY = "_warm_toggle"
SETTING = "warm_start"
ON = "surrogate"

EXPLAIN = (
    "**What you see:** left, the fixed point z* of the chosen sample (bars, found by the iterative solve) and the "
    "guess of a two-layer feed-forward surrogate trained alongside the network (line, one pass, no iteration); "
    "right, the surrogate's relative error on each training batch. Below, every evaluation sample's forward "
    "iterations when the solve starts from zeros (blue) and from the surrogate's guess (orange): the fixed point "
    "is the same, the iterations fewer when the guess is close. **Try:** train a few hundred steps and watch "
    "the error fall and the orange points drop; tighten *tol* (more iterations to save); pick another sample in "
    "“One input settling”.")
OFF_TEXT = ("Warm starts are off: every solve starts from zeros. Turn on **Train with warm starts** above (or "
            "choose *Warm start: surrogate* in the sidebar) to train a feed-forward surrogate of the fixed point "
            "alongside the network and start every solve from its guess; this starts a new run.")


def _toggled() -> None:
    st.session_state[SETTING] = ON if st.session_state[TOGGLE_KEY] else None


def sample_index(runner: Runner) -> int:
    """The sample of the "One input settling" view (its pick resolved on the evaluation set), else 0."""
    pick = st.session_state.get("_view_sample")
    if pick is None:
        return 0
    from .teaching import choose_sample

    iters = np.asarray(runner.evaluate()["fwd_iters"])
    return choose_sample(iters, pick)


def compare(runner: Runner, index: int) -> dict:
    """The comparison for the current parameters and live values (cached per step, live values and sample)."""
    fn = solve_vs_pass.compare_for(runner.config)
    state, step = runner.state_and_step()  # parameters and surrogate of the same step
    return runner.cached(("solve_vs_pass", index), lambda p, live: fn(p[0], p[1], live, np.int32(index)),
                       params_at=((state.params, state.surrogate["params"]), step))


def figures(runner: Runner, index: int | None = None) -> dict:
    """The section's figures (also for the HTML export); empty without warm starts."""
    if runner.config.warm_start != ON:
        return {}
    if index is None:
        try:
            index = sample_index(runner)
        except Exception:  # noqa: BLE001 - outside a script run: sample 0
            index = 0
    out = compare(runner, index)
    return {"surrogate_guess": solve_vs_pass.guess_figure(out),
            "surrogate_error": solve_vs_pass.error_figure(runner.snapshot()["history"]),
            "warm_iterations": solve_vs_pass.iterations_figure(out)}


def render(runner: Runner) -> None:
    st.subheader("Solve vs one pass", anchor="solve-vs-pass")
    if st.session_state.get(SETTING, runner.config.warm_start) != runner.config.warm_start:
        st.rerun(scope="app")  # the toggle changed the setting: build the new run
    st.session_state[TOGGLE_KEY] = runner.config.warm_start == ON
    has_solve = runner.trainer.model.solve is not None
    st.toggle("Train with warm starts", key=TOGGLE_KEY, on_change=_toggled, disabled=not has_solve,
              help="Start every forward solve from the guess of a feed-forward surrogate of the fixed point, trained "
              "alongside the network (the warm_start setting; changing it starts a new run).")
    if not has_solve:
        st.info(f"Model {runner.trainer.model.kind} has no single fixed-point solve to warm-start.")
        return
    if runner.config.warm_start != ON:
        st.info(OFF_TEXT, icon=":material/bolt:")
        return
    figs = figures(runner)
    meta = figs["warm_iterations"]["layout"]["meta"]
    cols = st.columns(2)
    with cols[0]:
        live_chart.show(figs["surrogate_guess"], key="chart_surrogate_guess")
    with cols[1]:
        live_chart.show(figs["surrogate_error"], key="chart_surrogate_error")
    live_chart.show(figs["warm_iterations"], key="chart_warm_iterations")
    st.caption(f"Chosen sample: {meta['sample_cold']} iterations from zeros, {meta['sample_warm']} from the guess. "
               f"Over the evaluation set the warm start saves a median of {meta['saved_median']:g} iterations "
               f"per sample (from {meta['saved_min']:g} to {meta['saved_max']:g}).")
    st.caption(EXPLAIN)
