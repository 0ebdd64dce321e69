"""The teaching views under AppTest: "Network" and "One input settling" (dashboard/teaching.py).

Live redrawing, the slider in a real page and the screenshots are in test_dashboard_browser.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_dashboard_apptest import APP, _decode, _stop_trainers, chart_specs, query, runner_of  # noqa: F401

from twnn_dashboard import panels, teaching
from twnn_jax import network_figures
from twnn_jax.settle_trace import network_layout, settle_for

pytestmark = pytest.mark.e2e
TIMEOUT = 300  # a first run compiles the training step and the page's evaluations (slow on a busy 2-core machine)


def new_app(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    runner = runner_of(at)
    # The warm-up thread compiles the views; the page shows "Compiling…" there until then, and in a browser
    # the section's own timer redraws it (AppTest cannot fire timers). Sections further down the page may
    # wait for the same compilations, so the views can be stale even when the compilation has finished by
    # the end of the run: wait for the warm-up, then redraw once if the views are not drawn.
    if runner._warm_thread is not None:
        runner._warm_thread.join(TIMEOUT)
    if "network" not in {spec["layout"].get("meta", {}).get("kind") for spec in chart_specs(at)}:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def views(at) -> tuple[dict, dict]:
    specs = {spec["layout"].get("meta", {}).get("kind"): spec for spec in chart_specs(at)}
    return specs["network"], specs["settle"]


def arcs(network: dict) -> list[dict]:
    return [t for t in network["data"] if t.get("meta", {}).get("arc") is not None]


@pytest.mark.parametrize("task", ["sine", "digits", "adding"])
def test_the_views_render_on_every_task_with_one_arc_per_wormhole_and_the_solves_count(task):
    at = new_app(task=task)
    runner = runner_of(at)
    network, settle = views(at)
    layout = network_layout(runner.trainer.model, runner.trainer.task)
    assert len(arcs(network)) == runner.trainer.model.n_wormholes == network["layout"]["meta"]["arcs"] > 0
    meta = settle["layout"]["meta"]
    ev = runner.evaluate()
    index = meta["sample"]
    assert index == int(np.argmax(ev["fwd_iters"]))  # the default: the slowest sample
    trace = runner.settle(index)
    z = np.asarray(_decode(settle["data"][0]["z"]))
    # units x iterations: every state and output unit, and the start plus every iteration of the solve
    assert z.shape == (len(network_figures.heatmap_rows(layout)), int(trace["count"]) + 1)
    if layout.recurrent:
        assert meta["count"] == int(trace["step_iters"][int(trace["time_step"])])
        assert int(np.sum(trace["step_iters"])) == int(ev["fwd_iters"][index])
    else:
        assert meta["count"] == int(ev["fwd_iters"][index])
    assert meta["iteration"] == meta["count"]  # the fixed point by default
    assert query(at)["sample"] == "slowest" and query(at)["iter"] == "end"
    assert "Network" in [h.value for h in at.subheader] and "One input settling" in [h.value for h in at.subheader]
    # backward: the adjoint of every fixed-point unit at every backward iteration of this sample's adjoint solve
    compiled = settle_for(runner.config)._cache_size()
    at.radio(key=teaching.DIR_KEY).set_value("backward").run()
    assert not at.exception, [e.value for e in at.exception]
    network, settle = views(at)
    meta = settle["layout"]["meta"]
    adjoint = runner.settle(index)["adjoint"]
    z = np.asarray(_decode(settle["data"][0]["z"]), dtype=float)  # NaN (None): resnet_fp's block 1 before it starts
    assert meta["direction"] == "backward" and meta["sample"] == index
    assert z.shape == (len(network_figures.heatmap_rows(layout, network_figures.BACKWARD_ROLES)),
                       int(adjoint["count"]) + 1)
    assert meta["count"] == int(adjoint["count"]) == meta["iteration"] and query(at)["dir"] == "backward"
    if not layout.recurrent:  # the library's own backward count for this sample (all time steps' when recurrent)
        from test_settle_trace import _sample_grad

        from twnn_jax.settings import live_controls

        _, bst = _sample_grad(runner.trainer, runner.snapshot()["params"],
                              live_controls(runner.config, **runner.live_values), index)
        assert meta["count"] == int(bst.iters) == int(adjoint["iters"])
    np.testing.assert_allclose(z[:, -1], np.asarray(adjoint["final"], float)[
        network_figures.heatmap_rows(layout, network_figures.BACKWARD_ROLES)], rtol=1e-5, atol=1e-8)
    assert settle_for(runner.config)._cache_size() == compiled


def test_gate_bias_widens_the_arcs_and_tol_adds_columns_before_any_step():
    at = new_app(task="digits")
    network, settle = views(at)
    widths, columns = network["layout"]["meta"]["arc_widths"], settle["layout"]["meta"]["iterations"]
    at.slider(key="gate").set_value(4.0)
    at.select_slider(key="tol").set_value(1e-6)
    at.run()
    assert not at.exception
    assert runner_of(at).step_count == 0
    network, settle = views(at)
    assert all(w2 > w1 + 3 for w1, w2 in zip(widths, network["layout"]["meta"]["arc_widths"]))
    assert settle["layout"]["meta"]["iterations"] > columns


def test_slider_and_sample_change_the_picture_without_compiling():
    at = new_app(task="digits")
    runner = runner_of(at)
    network, settle = views(at)
    fn = settle_for(runner.config)
    compiled = (fn._cache_size(), runner.trainer.evaluate._cache_size())
    at.slider(key="iter").set_value(0).run()
    assert not at.exception
    start, _ = views(at)
    assert start["layout"]["meta"]["iteration"] == 0 and query(at)["iter"] == "0"
    layout = network_layout(runner.trainer.model, runner.trainer.task)
    state_units = [r for c, col in enumerate(layout.columns) if col.role == "state"
                   for r in range(layout.offsets[c], layout.offsets[c] + col.size)]
    at_start = np.asarray([start["layout"]["meta"]["unit_values"][r] for r in state_units], dtype=float)
    assert np.all((at_start == 0) | np.isnan(at_start))  # every fixed-point unit starts at zero (block 2: not yet)
    at_end = np.asarray([network["layout"]["meta"]["unit_values"][r] for r in state_units], dtype=float)
    assert np.count_nonzero(at_end) > len(state_units) // 2
    at.selectbox(key="sample").set_value("fastest").run()
    assert not at.exception
    fastest, settle2 = views(at)
    ev = runner.evaluate()
    assert fastest["layout"]["meta"]["sample"] == int(np.argmin(ev["fwd_iters"])) != settle["layout"]["meta"]["sample"]
    at.selectbox(key="sample").set_value(7).run()
    assert views(at)[0]["layout"]["meta"]["sample"] == 7 and query(at)["sample"] == "7"
    # the other direction, and the slider on it: the same trace, nothing compiled
    at.radio(key=teaching.DIR_KEY).set_value("backward").run()
    assert not at.exception
    back_network, back = views(at)
    assert back["layout"]["meta"]["direction"] == "backward" and query(at)["dir"] == "backward"
    at.slider(key="iter").set_value(1).run()
    assert views(at)[1]["layout"]["meta"]["iteration"] == 1
    assert views(at)[0]["layout"]["meta"]["unit_values"] != back_network["layout"]["meta"]["unit_values"]
    at.radio(key=teaching.DIR_KEY).set_value("forward").run()
    assert views(at)[1]["layout"]["meta"]["direction"] == "forward"
    at.button(key="settle_flip").click().run()  # the switch (shortcut B)
    assert views(at)[1]["layout"]["meta"]["direction"] == "backward" == at.radio(key=teaching.DIR_KEY).value
    assert (fn._cache_size(), runner.trainer.evaluate._cache_size()) == compiled


def test_view_state_comes_from_the_url_and_bad_values_warn():
    at = new_app(task="digits", sample="5", iter="2")
    network, settle = views(at)
    assert network["layout"]["meta"]["sample"] == 5 and settle["layout"]["meta"]["iteration"] == 2
    assert query(at)["sample"] == "5" and query(at)["iter"] == "2" and not at.warning
    at = new_app(task="digits", sample="5", iter="1", dir="backward")
    back = views(at)[1]["layout"]["meta"]
    assert back["direction"] == "backward" and back["iteration"] == 1
    assert query(at)["dir"] == "backward" and not at.warning
    at = new_app(task="digits", dir="sideways")
    assert any("dir" in w.value and "rejected" in w.value for w in at.warning)
    assert views(at)[1]["layout"]["meta"]["direction"] == "forward"
    at = new_app(task="digits", sample="<b>x</b>")
    assert any("sample" in w.value and "rejected" in w.value for w in at.warning)
    assert views(at)[0]["layout"]["meta"]["sample"] == int(np.argmax(runner_of(at).evaluate()["fwd_iters"]))


def test_play_iterations_starts_at_zero_and_steps_and_the_export_has_the_views():
    at = new_app(task="sine")
    at.button(key="settle_play").click().run()
    assert not at.exception
    first = views(at)[1]["layout"]["meta"]["iteration"]
    assert first == 0 and at.session_state["_settle_play"]
    at.run()  # a rerun while playing moves on by one iteration (the fragment's timer does this in the page)
    assert views(at)[1]["layout"]["meta"]["iteration"] == 1
    at.button(key="settle_stop").click().run()
    assert not at.session_state["_settle_play"]
    html = panels.figures_html(runner_of(at))
    assert "One input settling" in html and "wormhole y " in html  # the settling view and the network's arc
    assert "backward (adjoint)" in html  # the backward settling view too
    # closed, the views compute nothing and are not drawn
    at.toggle(key=teaching.OPEN_KEY).set_value(False).run()
    assert not at.exception
    assert not [s for s in chart_specs(at) if s["layout"].get("meta", {}).get("kind") in ("network", "settle")]


def test_the_page_opens_on_digits_and_the_quiet_preset_is_the_sine_wave_with_the_defaults():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert runner_of(at).config.task == "digits" == query(at)["task"]
    at.button(key="preset_quiet").click().run()
    assert not at.exception, [e.value for e in at.exception]
    runner = runner_of(at)
    assert runner.config.task == "sine" and query(at)["task"] == "sine"
    from twnn_jax.settings import SETTINGS

    assert runner.live_values == {k: SETTINGS[k].default for k in runner.live_values}


def test_the_sample_picker_value_falls_back_to_the_slowest():
    """A picker value the page has not validated yet (an inspector fragment can run while the views compile)
    reads as the slowest sample, never an error (a CI run once saw a traceback from a text value here)."""
    iters = np.array([3, 9, 1, 5])
    assert teaching.choose_sample(iters, "slowest") == 1 and teaching.choose_sample(iters, "fastest") == 2
    assert teaching.choose_sample(iters, 3) == 3 and teaching.choose_sample(iters, np.int64(7)) == 3
    assert teaching.choose_sample(iters, "a label, not an index") == 1 and teaching.choose_sample(iters, None) == 1


def test_the_gated_wormhole_gru_draws_one_time_steps_cell_and_its_sliders_compile_nothing():
    at = new_app(task="adding", model="wormhole_gru")
    runner = runner_of(at)
    assert runner.trainer.model.kind == "wormhole_gru" and not at.warning
    assert not [i.value for i in at.info if "no fixed point" in i.value]
    steps, hidden = runner.config.seq_len, runner.config.hidden
    network, settle = views(at)
    layout = network_layout(runner.trainer.model, runner.trainer.task)
    assert [c.name for c in layout.columns] == ["h_t−1", "x_t", "L1", "L2", "out"]
    assert len(arcs(network)) == 1 == network["layout"]["meta"]["arcs"] and "L2 → L1" in arcs(network)[0]["name"]
    meta = settle["layout"]["meta"]
    ev = runner.evaluate()
    index = meta["sample"]
    assert index == int(np.argmax(ev["fwd_iters"]))
    trace = runner.settle(index)
    assert int(np.sum(trace["step_iters"])) == int(ev["fwd_iters"][index])  # every time step's solve
    assert meta["count"] == int(trace["step_iters"][int(trace["time_step"])]) == meta["iteration"]
    z = np.asarray(_decode(settle["data"][0]["z"]))
    assert z.shape == (len(network_figures.heatmap_rows(layout)), meta["count"] + 1)
    fn = settle_for(runner.config)
    compiled = (fn._cache_size(), runner.trainer.evaluate._cache_size())
    # another time step, the iteration slider, the backward solve: the same compiled trace
    at.selectbox(key=teaching.TSTEP_KEY).set_value(3).run()
    assert not at.exception, [e.value for e in at.exception]
    network, settle = views(at)
    assert f"time step 3 of {steps}" in network["layout"]["meta"]["subtitle"] and query(at)["tstep"] == "3"
    assert settle["layout"]["meta"]["count"] == int(runner.settle(index, 3)["step_iters"][3])
    at.slider(key="iter").set_value(0).run()
    assert not at.exception, [e.value for e in at.exception]
    start, _ = views(at)
    assert start["layout"]["meta"]["iteration"] == 0 and query(at)["iter"] == "0"
    values = np.asarray(start["layout"]["meta"]["unit_values"], dtype=float)
    state = slice(layout.offsets[2], layout.offsets[4])
    assert np.all(values[state] == 0)  # the fixed-point layers start at zero
    assert np.count_nonzero(values[:layout.offsets[1]]) > 0  # h_t−1: what step 2 left
    at.radio(key=teaching.DIR_KEY).set_value("backward").run()
    assert not at.exception, [e.value for e in at.exception]
    _, back = views(at)
    adjoint = runner.settle(index, 3)["adjoint"]
    assert back["layout"]["meta"]["direction"] == "backward"
    assert np.asarray(_decode(back["data"][0]["z"])).shape == (2 * hidden, int(adjoint["count"]) + 1)
    at.slider(key="iter").set_value(1).run()
    assert views(at)[1]["layout"]["meta"]["iteration"] == 1
    assert (fn._cache_size(), runner.trainer.evaluate._cache_size()) == compiled
