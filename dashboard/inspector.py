"""The per-sample inspector ("Inspector"): which evaluation inputs settle slowly, which fast, and how sure
the network is of them.

Drawn from `Runner.evaluate()` (the evaluation set with the current parameters and live values, cached per
step and live values), by `twnn_jax.inspector_figures`: the 12 slowest and the 12 fastest inputs as tiles
(digits: 8x8 images; sine: the windows as small lines), and a scatter of forward iterations against
confidence (sine: error) with Spearman's rank correlation. Clicking a tile (or a dot) makes that sample the
chosen one of the "One input settling" view (dashboard/teaching.py): the same session state and URL
parameter (`sample`) its sample picker uses. Nothing is compiled for it: evaluate's result is reused, and
the settling view's trace takes the sample index as a traced value.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from twnn_jax import inspector_figures

from . import live_chart, teaching
from .session import Runner

TASKS = ("digits", "sine")
GALLERY_KEY, SCATTER_KEY = "chart_inspect_gallery", "chart_inspect_scatter"
EXPLAIN = (
    "**What you see:** the evaluation inputs the network needed the most forward iterations for (left) and the "
    "fewest (right), each with its iterations and how sure the network is (digits: its largest softmax "
    "probability; a green frame when it reads the digit right, red when wrong; sine: the error of its next "
    "value). Below, every evaluation sample: iterations against confidence, with Spearman's rank correlation "
    "— the paper's *easy inputs settle faster* is a negative ρ for confidence. **Try:** click a tile (or a dot) "
    "to watch that input settle in *One input settling* above; train a while and watch ρ change.")


def _inputs_and_scores(runner: Runner, ev: dict) -> dict:
    task = runner.trainer.task
    x, y = (np.asarray(a) for a in task.eval_set)
    if task.name == "digits":
        correct = np.argmax(np.asarray(ev["output"]), -1) == y
        return {"inputs": x, "confidence": np.asarray(ev["confidence"], float), "correct": correct,
                "score": np.asarray(ev["confidence"], float), "score_name": "confidence"}
    return {"inputs": x, "error": np.asarray(ev["sample_loss"], float), "score": np.asarray(ev["sample_loss"], float),
            "score_name": "error"}


def chosen_index(ev: dict) -> int:
    """The settling view's sample (its picker's value: slowest, fastest or an index)."""
    pick = st.session_state.get(teaching.SAMPLE_KEY) or "slowest"
    return teaching.choose_sample(np.asarray(ev["fwd_iters"]), pick)


def build(runner: Runner, chosen: int | None = None) -> dict:
    """The gallery and the scatter for the current network and live values."""
    ev = runner.evaluate()
    d = _inputs_and_scores(runner, ev)
    iters = np.asarray(ev["fwd_iters"])
    gallery = inspector_figures.gallery_figure(
        d["inputs"], iters, confidence=d.get("confidence"), correct=d.get("correct"), error=d.get("error"),
        chosen=chosen, title="Slowest and fastest inputs")
    scatter = inspector_figures.iterations_scatter(
        iters, d["score"], score_name=d["score_name"], correct=d.get("correct"), chosen=chosen,
        title=f"Iterations against {d['score_name']}")
    return {"gallery": gallery, "scatter": scatter}


def figures(runner: Runner) -> dict:
    """The inspector's figures for the HTML export (none for tasks it does not show)."""
    if runner.trainer.task.name not in TASKS:
        return {}
    try:
        chosen = chosen_index(runner.evaluate())
    except Exception:  # noqa: BLE001 - outside a script run: no chosen sample
        chosen = None
    out = build(runner, chosen)
    return {"inspect_gallery": out["gallery"], "inspect_scatter": out["scatter"]}


def choose(index: int) -> None:
    """Make `index` the settling view's sample (shown at its fixed point, the views opened)."""
    st.session_state[teaching.SAMPLE_KEY] = int(index)
    st.session_state["_iter_at_end"] = True
    st.session_state["_settle_play"] = False
    st.session_state[teaching.OPEN_KEY] = True
    st.session_state["_inspect_rerun"] = True


def clicked_sample(event, tiles_meta: dict | None) -> int | None:
    """The sample a click (`{"x", "y", "customdata"}` from the chart) points at."""
    if not isinstance(event, dict):
        return None
    data = event.get("customdata")
    if isinstance(data, list | tuple):
        data = data[0] if data else None
    if isinstance(data, int | float) and not isinstance(data, bool):
        return int(data)
    if tiles_meta is not None and isinstance(event.get("x"), int | float) and isinstance(event.get("y"), int | float):
        return inspector_figures.tile_at(tiles_meta, float(event["x"]), float(event["y"]))
    return None


def _on_click(key: str) -> None:
    state = st.session_state.get(key)
    event = state.get("click") if hasattr(state, "get") else getattr(state, "click", None)
    index = clicked_sample(event, st.session_state.get("_inspect_meta") if key == GALLERY_KEY else None)
    n = st.session_state.get("_inspect_n", 0)
    if index is not None and 0 <= index < n:
        choose(index)


def _gallery_clicked() -> None:
    _on_click(GALLERY_KEY)


def _scatter_clicked() -> None:
    _on_click(SCATTER_KEY)


def render(runner: Runner) -> None:
    """The section (a fragment of the page: it redraws with the live charts while training)."""
    if st.session_state.pop("_inspect_rerun", False):
        st.rerun(scope="app")  # a click chose a sample: the settling view (another fragment) must redraw
    task = runner.trainer.task
    st.subheader("Inspector", anchor="inspector")
    if task.name not in TASKS:
        st.caption(f"The inspector shows digits and sine windows; task {task.name} has none to show.")
        return
    ev = runner.evaluate()
    chosen = chosen_index(ev)
    out = build(runner, chosen)
    st.session_state["_inspect_meta"] = out["gallery"]["layout"]["meta"]
    st.session_state["_inspect_n"] = len(ev["fwd_iters"])
    live_chart.show(out["gallery"], key=GALLERY_KEY, on_click=_gallery_clicked)
    live_chart.show(out["scatter"], key=SCATTER_KEY, on_click=_scatter_clicked)
    st.caption(EXPLAIN)
