"""The "Solve vs one pass" section under AppTest (dashboard/surrogate_view.py, twnn_jax/solve_vs_pass.py).

The section in a real Chromium, with its screenshot, is in test_dashboard_teaching_browser.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_dashboard_apptest import APP, _stop_trainers, chart_specs, runner_of  # noqa: F401
from test_dashboard_teaching import TIMEOUT, new_app

from twnn_dashboard import panels, surrogate_view
from twnn_jax import solve_vs_pass

pytestmark = pytest.mark.e2e


def section(at) -> dict:
    return {spec["layout"]["meta"]["kind"]: spec for spec in chart_specs(at)
            if spec["layout"].get("meta", {}).get("kind") in ("surrogate_guess", "surrogate_error", "warm_iterations")}


def test_without_warm_starts_the_section_says_how_and_the_toggle_rebuilds_the_run():
    at = new_app(task="digits")
    runner = runner_of(at)
    assert runner.config.warm_start is None and runner.state.surrogate is None
    assert not section(at)
    assert any("Warm starts are off" in i.value for i in at.info), [i.value for i in at.info]
    toggle = at.toggle(key=surrogate_view.TOGGLE_KEY)
    assert toggle.value is False and toggle.label == "Train with warm starts"
    toggle.set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    rebuilt = runner_of(at)
    assert rebuilt is not runner and runner.closed
    assert rebuilt.config.warm_start == "surrogate" and rebuilt.state.surrogate is not None
    assert at.selectbox(key="warm_start").value == "surrogate"  # the sidebar's setting follows the toggle
    assert at.query_params["warm_start"] in ("surrogate", ["surrogate"])
    assert set(section(at)) == {"surrogate_guess", "surrogate_error", "warm_iterations"}
    # and back off: a new run from zeros
    at.toggle(key=surrogate_view.TOGGLE_KEY).set_value(False).run()
    assert not at.exception
    assert runner_of(at).config.warm_start is None and not section(at)


def test_with_warm_starts_the_section_shows_the_chosen_sample_the_error_history_and_the_iterations():
    at = new_app(task="digits", warm_start="surrogate")
    runner = runner_of(at)
    assert runner.config.warm_start == "surrogate"
    runner.step(30)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    figs = section(at)
    assert set(figs) == {"surrogate_guess", "surrogate_error", "warm_iterations"}

    # the error chart holds the history's surrogate_error, step by step
    history = [h for h in runner.snapshot()["history"] if h.get("surrogate_error") is not None]
    assert len(history) == 30 and figs["surrogate_error"]["layout"]["meta"]["points"] == 30
    assert figs["surrogate_error"]["data"][0]["x"] == [h["step"] for h in history]
    assert np.allclose(figs["surrogate_error"]["data"][0]["y"], [h["surrogate_error"] for h in history])

    # the guess beside the fixed point of the sample of "One input settling" (slowest by default)
    chosen = int(np.argmax(runner.evaluate()["fwd_iters"]))
    guess = figs["surrogate_guess"]
    assert guess["layout"]["meta"]["index"] == chosen
    z, g = np.asarray(guess["data"][0]["y"]), np.asarray(guess["data"][1]["y"])
    assert z.shape == g.shape and z.size > 10 and np.all(np.isfinite(g))
    assert np.abs(z).max() > 0 and not np.allclose(z, g)  # a guess, not a copy of the fixed point

    # the iterations: every evaluation sample, cold (the page's own evaluation) and warm
    iters = figs["warm_iterations"]
    cold = np.asarray(iters["data"][0]["y"])
    assert np.array_equal(cold, np.asarray(runner.evaluate()["fwd_iters"]))
    assert iters["layout"]["meta"]["index"] == chosen and len(iters["data"][1]["y"]) == cold.size

    # another sample: the same compiled function (the index is traced)
    fn = solve_vs_pass.compare_for(runner.config)
    compiled = fn._cache_size()
    at.selectbox(key="sample").set_value(3).run()
    assert not at.exception
    figs = section(at)
    assert figs["surrogate_guess"]["layout"]["meta"]["index"] == 3
    assert figs["warm_iterations"]["layout"]["meta"]["index"] == 3
    assert fn._cache_size() == compiled == 1

    # a live control changes the numbers without compiling
    at.slider(key="gate").set_value(0.0).run()
    assert not at.exception and fn._cache_size() == 1

    html = panels.figures_html(runner)
    assert "Surrogate&#x27;s relative error" in html or "Surrogate's relative error" in html
    assert "Forward iterations on the evaluation set" in html


def test_warm_start_on_a_model_without_a_solve_is_a_one_line_error():
    # The sidebar offers only what the library accepts (dashboard/controls.py): asked for in the URL, warm starts
    # on adding (wormhole_rnn, no single solve) are refused in one line naming the library's reason, and the run
    # starts without them.
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(task="adding", warm_start="surrogate")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["_runner"].config.warm_start is None
    notes = [i.value for i in at.sidebar.info]
    assert len(notes) == 1 and notes[0].startswith("warm_start=surrogate does not apply here (") and \
        notes[0].endswith("); using none.") and "\n" not in notes[0], notes
