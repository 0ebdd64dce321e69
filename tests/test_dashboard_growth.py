"""The dashboard's tasks, models and growth (seed 003): the choices it offers follow the library's checks, every
task renders, and a growing net's "Network size" section draws and follows training without recompiling.

The page under AppTest; the live redrawing of the section in a real browser is in
test_dashboard_growth_browser.py. Every task x model combination, compiled one after another, takes minutes:
`TWNN_DASHBOARD_MATRIX=1 python -m pytest tests/test_dashboard_growth.py -k matrix` runs it.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from test_dashboard_apptest import charts, click_step, metric, new_app, query, runner_of

from twnn_dashboard import controls, growth_view, panels, session
from twnn_jax import growth_figures
from twnn_jax.settings import CHOICES
from twnn_jax.tasks import BRACKET_TASKS

SEQUENCE_MODELS = {"wormhole_rnn", "gru", "wormhole_gru", "lstm"}


@pytest.fixture(autouse=True)
def _stop_trainers():
    yield
    session.stop_all()


def _shown(at, kind: str = "selectbox") -> dict:
    return {w.key: w for w in at.get(kind) if w.key in controls.CONTROLS}


# ---- the figures ------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_size_and_units_figures_draw_what_they_are_given():
    history = [{"step": s, "size": 1 + s // 10 - int(s == 25), "added": int(s % 10 == 0), "deleted": int(s == 25)}
               for s in range(1, 41)]
    fig = growth_figures.size_figure(history, max_size=100)
    meta = fig["layout"]["meta"]
    assert meta["kind"] == "size" and meta["last_size"] == 5 and meta["sizes_seen"] == [1, 2, 3, 4, 5]
    assert (meta["ups"], meta["downs"]) == (5, 1)  # 10, 20, 26 (back from the deletion at 25), 30, 40; 25
    names = [t["name"] for t in fig["data"]]
    assert names == ["active neurons", "size up", "size down"] and "of 100 slots" in fig["layout"]["title"][
        "text"]
    assert list(fig["data"][1]["x"]) == [10, 20, 26, 30, 40] and list(fig["data"][2]["x"]) == [25]
    empty = growth_figures.size_figure([], max_size=100)
    assert empty["data"] == [] and "no steps yet" in empty["layout"]["annotations"][0]["text"]

    active = np.zeros(100)
    active[[0, 3, 7]] = 1
    score = np.where(active > 0, [0.2 if i != 3 else 0.01 for i in range(100)], 0.0)
    units = growth_figures.units_figure(active, score, threshold=0.05)
    meta = units["layout"]["meta"]
    assert (meta["active"], meta["slots"], meta["below_threshold"], meta["active_slots"]) == (3, 100, 1, [0, 3, 7])
    by_name = {t["name"]: list(t["customdata"]) for t in units["data"]}
    assert by_name["neuron (score above threshold)"] == [0, 7] and by_name["neuron at or below threshold"] == [3]
    assert len(by_name["free slot"]) == 97 and "3 of 100" in units["layout"]["title"]["text"]


# ---- the choices: the library's checks, not the page's ------------------------------------------------------
@pytest.mark.unit
def test_choices_offered_follow_the_task():
    # one task of each kind (building a task's first run compiles its data generation: seconds each); every
    # task: test_matrix_every_task_and_model_renders_and_steps
    for task in ("sine", "adding", "brackets-easy"):
        models = set(controls.offered("model", {"task": task}))
        grow = controls.offered("grow", {"task": task, "model": None})
        if task in BRACKET_TASKS:
            assert models == {None} and grow == ("off", "on")  # seed 003's own RNN, which may grow
            assert controls.offered("warm_start", {"task": task, "model": None}) == (None,)
        else:  # a wormhole net may grow (sine's small net); adding's wormhole RNN may not
            assert grow == (("off", "on") if task == "sine" else ("off",)), (task, grow)
            assert (models - {None} <= SEQUENCE_MODELS) == (task in ("adding", "copy")), (task, models)
            assert None in models
        if task in ("adding", "copy"):
            assert models == SEQUENCE_MODELS | {None}  # the gated wormhole cell and both baselines
            assert controls.offered("grow", {"task": task, "model": "wormhole_gru"}) == ("off", "on")  # it grows
            assert controls.offered("grow", {"task": task, "model": "lstm"}) == ("off",)
        # and every value offered is one the library builds a run of
        for model in models:
            assert session.refusal(task=task, model=model) is None
    assert "grow must be off" in session.refusal(task="digits", grow="on")
    assert session.refusal(task="sine", grow="on") is None
    assert "does not fit" in session.refusal(task="adding", model="resnet_fp")


@pytest.mark.e2e
def test_copy_with_an_lstm_renders_and_a_model_that_stops_fitting_goes_back_to_the_default():
    at = new_app(task="copy", model="lstm")
    r = runner_of(at)
    assert (r.config.task, r.trainer.model.kind) == ("copy", "lstm")
    shown = _shown(at)
    assert set(shown["model"].options) == {"wormhole_rnn", "gru", "wormhole_gru", "lstm",
                                           "none (the task's own: wormhole_rnn)"}
    assert "grow" not in shown and "warm_start" not in shown  # neither applies to copy with an lstm
    assert any("has no fixed point" in i.value for i in at.info)  # the solve views say so
    assert "convergence" not in charts(at) and "loss" in charts(at)
    click_step(at)
    assert runner_of(at).step_count == 1 and metric(at, "Fwd iters") == "–"

    at.selectbox(key="task").set_value("brackets-easy").run()
    assert not at.exception, [e.value for e in at.exception]
    r = runner_of(at)
    assert (r.config.task, r.config.model, r.trainer.model.kind) == ("brackets-easy", None, "tanh_rnn")
    notes = [i.value for i in at.sidebar.info]
    assert notes == ["model=lstm does not apply here (model must be none for the brackets-easy task: it trains seed "
                     "003's tanh RNN); using none."], notes
    shown = _shown(at)
    assert "model" not in shown and shown["grow"].value == "off" and shown["grow"].options == ["off", "on"]
    assert query(at)["model"] == "none" and query(at)["grow"] == "off"
    at.selectbox(key="grow").set_value("on").run()
    assert not at.exception and runner_of(at).trainer.model.kind == "growing_rnn" and not at.sidebar.info


@pytest.mark.e2e
def test_grow_asked_for_where_it_does_not_apply_is_refused_in_one_line():
    at = new_app(task="digits", grow="on")
    notes = [i.value for i in at.sidebar.info]
    assert notes == ["grow=on does not apply here (grow must be off for the digits task with model resnet_fp; "
                     "growth (seed 003) is for brackets-easy, brackets-hard and the models small, wormhole and "
                     "wormhole_gru (sine's own model is small)); using off."], notes
    assert runner_of(at).config.grow == "off" and "grow" not in _shown(at)


# ---- growth live -------------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_growth_section_follows_training_without_recompiling():
    at = new_app(task="brackets-easy", grow="on", warm_start="surrogate")  # no warm starts without a fixed point
    assert [i.value for i in at.sidebar.info] == ["warm_start=surrogate does not apply here (warm_start must be none "
                                                  "for the brackets-easy task: seed 003's tanh RNN has no fixed "
                                                  "point); using none."]
    r = runner_of(at)
    assert (r.trainer.model.kind, r.config.hidden) == ("growing_rnn", 100)
    assert _shown(at)["grow"].value == "on" and "model" not in _shown(at)
    specs = charts(at)
    assert specs["size"]["layout"]["meta"]["steps"] == 0 and specs["units"]["layout"]["meta"]["active"] == 1
    assert "convergence" not in specs and "gates" not in specs
    assert metric(at, "Neurons") == "–"
    assert [c.value for c in at.caption if c.value.startswith("**What you see:** how many neurons")]

    click_step(at)  # compiles the training loop
    counts = session.compile_counts(r.trainer)
    sizes = []
    for _ in range(3):
        assert r.step(150) == 150
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        size = charts(at)["size"]["layout"]["meta"]
        sizes.append(size["last_size"])
        units = charts(at)["units"]["layout"]["meta"]
        assert units["active"] == size["last_size"] == int(metric(at, "Neurons"))  # the same net in both
    assert size["steps"] == 451 and size["ups"] >= 2 and len(size["sizes_seen"]) >= 3, size
    assert len(set(sizes)) > 1, sizes  # it grew while the page watched
    assert session.compile_counts(r.trainer) == counts and counts["run"] == 1  # never recompiled

    html = panels.figures_html(r)
    assert "Active neurons per step" in html and "slots active" in html
    run = json.loads(panels.run_json(r))
    assert [h["size"] for h in run["history"]][-1] == sizes[-1]
    assert growth_view.applies(r)


# ---- every task and model, one after another (minutes: opt-in) ---------------------------------------------
MATRIX = [(task, model) for task in CHOICES["task"] if task not in ("adding", "copy") for model in (None,)] + [
    (task, model) for task in ("adding", "copy") for model in sorted(SEQUENCE_MODELS)]


@pytest.mark.e2e
@pytest.mark.skipif(not os.environ.get("TWNN_DASHBOARD_MATRIX"), reason="minutes of compilation: set "
                    "TWNN_DASHBOARD_MATRIX=1 to run every task x model")
@pytest.mark.parametrize("task,model", MATRIX)
def test_matrix_every_task_and_model_renders_and_steps(task, model):
    query = {"task": task} if model is None else {"task": task, "model": model}
    at = new_app(**query)
    click_step(at)
    r = runner_of(at)
    assert r.step_count == 1 and r.error is None and r.config.model == model
    specs = charts(at)
    assert "loss" in specs and ("convergence" in specs) == r.trainer.model.uses_fix
    html = panels.figures_html(r)
    assert html.count("plotly-graph-div") >= 1


@pytest.mark.unit
def test_a_growing_sine_net_shows_its_size_beside_the_solve_views():
    """Growth on a wormhole net (sine's small net, `twnn_jax.wormhole_growth`): the solve views stay and the
    "Network size" section joins them, the same net in the chart and the readout."""
    at = new_app(task="sine", grow="on")
    r = runner_of(at)
    assert (r.config.grow, r.trainer.model.kind) == ("on", "small")
    click_step(at)
    assert r.step(300) == 300
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    specs = charts(at)
    assert {"size", "convergence", "network", "sine"} <= set(specs)
    size = specs["size"]["layout"]["meta"]
    assert size["steps"] == 301 and size["ups"] >= 1 and size["last_size"] == int(metric(at, "Neurons"))
    assert specs["network"]["layout"]["meta"]["free_slots"] == r.config.hidden - size["last_size"]  # h's free slots
    assert specs["size"]["layout"]["xaxis"]["title"]["text"] == "training step (one batch each)"


@pytest.mark.unit
def test_a_growing_wormhole_gru_on_adding_shows_its_size():
    """Growth on the gated wormhole GRU (`twnn_jax.wormhole_gru_growth`): the page offers it, the size chart and
    the readout follow it, and the network and settling views draw the stack with its masks."""
    at = new_app(task="adding", model="wormhole_gru", grow="on")
    r = runner_of(at)
    assert (r.config.grow, r.trainer.model.kind) == ("on", "wormhole_gru") and r.units() is None
    assert _shown(at)["grow"].value == "on"
    click_step(at)
    assert r.step(200) == 200
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    specs = charts(at)
    assert {"size", "convergence", "network"} <= set(specs)
    size = specs["size"]["layout"]["meta"]
    assert size["steps"] == 201 and size["ups"] >= 1 and size["last_size"] == int(metric(at, "Neurons"))
    assert size["last_size"] == sum(int(a.sum()) for a in r.state.params["active"])
    # the diagram draws the free slots as rings: in L1, L2 and the previous state's column (both layers)
    slots = 2 * r.config.hidden  # two layers
    assert specs["network"]["layout"]["meta"]["free_slots"] == 2 * (slots - size["last_size"]) > 0
    labels = [a["text"] for a in specs["network"]["layout"]["annotations"]]
    assert any(t.startswith("<b>L1</b><br>") and f" of {r.config.hidden}" in t for t in labels), labels


@pytest.mark.unit
def test_a_net_growing_its_wormholes_shows_their_count():
    """grow=wormholes (the wormhole model's 6 candidate wormholes, `twnn_jax.wormhole_growth.holes_of`): the page
    offers it, the size chart counts wormholes out of 6, the readout says so, and the network view draws only the
    open ones' gates."""
    at = new_app(task="sine", model="wormhole", grow="wormholes")
    r = runner_of(at)
    assert (r.config.grow, r.trainer.model.kind) == ("wormholes", "wormhole") and r.units() is None
    assert _shown(at)["grow"].value == "wormholes"
    click_step(at)
    assert r.step(400) == 400
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    specs = charts(at)
    assert {"size", "convergence", "network"} <= set(specs)
    size = specs["size"]["layout"]["meta"]
    assert (size["what"], size["max_size"], size["steps"]) == ("wormholes", 6, 401)
    assert size["ups"] >= 1 and size["last_size"] == int(metric(at, "Wormholes"))
    assert size["last_size"] == int(r.state.params["seg"]["holes_active"].sum())
    assert "wormholes" in specs["size"]["layout"]["yaxis"]["title"]["text"]
