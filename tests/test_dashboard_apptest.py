"""The dashboard driven headless with Streamlit's AppTest: controls, URL parameters, chart specs, stepping.

AppTest cannot fire `st.fragment(run_every=...)`; live redrawing is covered by test_dashboard_browser.py.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jax
import numpy as np
import plotly
import pytest
from streamlit.testing.v1 import AppTest

import twnn_dashboard
from twnn_dashboard import controls, live_chart, panels, session
from twnn_jax.settle_trace import settle_for

APP = str(Path(twnn_dashboard.__file__).parent / "app.py")
TIMEOUT = 120


@pytest.fixture(autouse=True)
def _stop_trainers():
    yield
    session.stop_all()


def new_app(**query) -> AppTest:
    # The page opens on digits (controls.PAGE_DEFAULTS); these tests were written for sine (its generation
    # chart, its quick compilation) and ask for it unless they name a task.
    query.setdefault("task", "sine")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def runner_of(at: AppTest) -> session.Runner:
    return at.session_state["_runner"]


def metric(at: AppTest, label: str) -> str:
    for m in at.metric:
        if m.label == label:
            return m.value
    raise AssertionError(f"no metric {label!r}: {[m.label for m in at.metric]}")


def query(at: AppTest) -> dict[str, str]:
    """The page's query parameters as plain strings."""
    return {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}


def _decode(value):
    """Plotly's JSON packs numpy arrays as {'dtype', 'bdata'}; unpack them."""
    if isinstance(value, dict) and "bdata" in value and "dtype" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        return arr.reshape(value["shape"]) if "shape" in value and isinstance(value["shape"], list) else arr
    return value


def live_chart_elements(at: AppTest) -> list:
    """The page's elements of the live-chart component (dashboard/live_chart.py)."""
    return [el for el in at.get("bidi_component") if el.proto.component_name.endswith("twnn_live_chart")]


def chart_specs(at: AppTest) -> list[dict]:
    """Every Plotly figure on the page: the live charts (an in-place component) and any st.plotly_chart."""
    specs = [json.loads(json.loads(el.proto.json)["figure"]) for el in live_chart_elements(at)]
    return specs + [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def charts(at: AppTest) -> dict:
    """Plotly specs on the page by figure kind (layout.meta.kind), plus the backward solve as 'convergence_bwd'."""
    out = {}
    for spec in chart_specs(at):
        kind = spec["layout"].get("meta", {}).get("kind")
        title = spec["layout"]["title"]["text"]
        if kind == "convergence" and title.startswith("Backward"):
            kind = "convergence_bwd"
        out[kind] = spec
    return out


def tol_trace(spec: dict) -> dict:
    lines = [t for t in spec["data"] if t.get("name", "").startswith(("tol", "bwd_tol"))]
    assert len(lines) == 1, [t.get("name") for t in spec["data"]]
    return lines[0]


def click_step(at: AppTest, times: int = 1) -> None:
    for _ in range(times):
        at.button(key="step").click().run()
        assert not at.exception, [e.value for e in at.exception]


# ------------------------------------------------------------------------------------------------


def test_every_control_exists_and_can_be_set():
    at = new_app()
    expected = {"task", "solver", "grad_mode", "seed", "tol", "max_iter", "gate", "damping", "bwd_tol", "lr",
                "model", "warm_start", "grow"}
    assert set(controls.CONTROLS) == expected
    # live controls: set each, the runner takes the value, the URL follows
    at.select_slider(key="tol").set_value(1e-5)
    at.select_slider(key="max_iter").set_value(50)
    at.slider(key="gate").set_value(3.0)
    at.slider(key="damping").set_value(0.3)
    at.select_slider(key="bwd_tol").set_value(1e-6)
    at.select_slider(key="lr").set_value(1e-2)
    at.run()
    assert not at.exception
    live = runner_of(at).live_values
    assert live == {"tol": 1e-5, "max_iter": 50, "gate": 3.0, "damping": 0.3, "bwd_tol": 1e-6, "lr": 1e-2}
    qp = query(at)
    assert qp["tol"] == "1e-05" and qp["gate"] == "3.0" and qp["max_iter"] == "50" and qp["lr"] == "0.01"
    # model controls: each builds a new run with that setting
    first = runner_of(at)
    at.selectbox(key="solver").set_value("anderson")
    at.selectbox(key="grad_mode").set_value("one_step")
    at.number_input(key="seed").set_value(7)
    at.selectbox(key="task").set_value("sine")
    at.run()
    assert not at.exception
    r = runner_of(at)
    assert r is not first and first.closed
    assert (r.config.solver, r.config.grad_mode, r.config.seed) == ("anderson", "one_step", 7)
    assert query(at)["solver"] == "anderson" and query(at)["seed"] == "7"
    assert r.live_values["tol"] == 1e-5  # live values carried over
    assert set(at.selectbox(key="task").options) == {"sine", "digits", "adding", "copy", "brackets-easy",
                                                      "brackets-hard"}


def test_url_parameters_in_range_are_applied():
    url = {"task": "sine", "solver": "damped", "grad_mode": "unrolled", "seed": "3", "tol": "2e-05",
             "max_iter": "40", "gate": "1.5", "damping": "0.25", "bwd_tol": "1e-06", "lr": "0.003",
           "model": "none", "warm_start": "none", "grow": "off"}
    at = new_app(**url)
    assert not at.warning, [w.value for w in at.warning]
    assert at.select_slider(key="tol").value == 2e-5  # off the 1-3 grid: kept exactly
    assert at.select_slider(key="max_iter").value == 40
    assert at.slider(key="gate").value == 1.5
    assert at.slider(key="damping").value == 0.25
    assert at.select_slider(key="bwd_tol").value == 1e-6
    assert at.select_slider(key="lr").value == 0.003
    assert at.number_input(key="seed").value == 3
    r = runner_of(at)
    assert (r.config.task, r.config.solver, r.config.grad_mode, r.config.seed) == ("sine", "damped", "unrolled", 3)
    assert r.live_values == {"tol": 2e-5, "max_iter": 40, "gate": 1.5, "damping": 0.25, "bwd_tol": 1e-6, "lr": 0.003}
    # the URL written back reproduces the same view (the controls, and the network view's own parameters)
    assert {k: v for k, v in query(at).items() if k in controls.CONTROLS} == {k: controls.CONTROLS[k].format(
        controls.CONTROLS[k].parse(v)) for k, v in url.items()}
    assert set(query(at)) - set(controls.CONTROLS) <= set(controls.VIEW_PARAMS)


def test_url_parameters_out_of_range_warn_and_fall_back():
    at = new_app(tol="5", gate="abc", max_iter="0", solver="newton", task="brackets", lr="-1", seed="1.5", bogus="1")
    text = " ".join(w.value for w in at.warning)
    for name, allowed in [("tol", "[1e-08, 1.0]"), ("gate", "[-20"), ("max_iter", "[1, 10000]"),
                          ("solver", "plain, damped, anderson"), ("task", "sine, digits, adding"),
                          ("lr", "[1e-06, 1.0]"), ("seed", "integer")]:
        assert f"`{name}=" in text, name
        assert allowed in text, (name, allowed, text)
    assert "bogus" in text
    d = controls.defaults()
    for key in ("tol", "gate", "max_iter", "solver", "task", "lr", "seed"):
        assert at.session_state[key] == d[key], key
    assert query(at)["tol"] == controls.CONTROLS["tol"].format(d["tol"])
    assert "bogus" not in query(at)
    # it keeps working
    click_step(at)
    assert metric(at, "Step") == "1"
    # the warnings go once the user changes a control
    at.slider(key="gate").set_value(0.0).run()
    assert not at.warning


def test_step_advances_and_charts_have_log_axes_tol_lines_and_traces():
    at = new_app()
    assert metric(at, "Step") == "0"
    specs = charts(at)
    assert specs["convergence"]["layout"]["yaxis"]["type"] == "log"
    click_step(at, 2)
    assert metric(at, "Step") == "2"
    assert runner_of(at).step_count == 2
    specs = charts(at)
    assert {"convergence", "convergence_bwd", "iterations", "histogram", "loss", "sine", "gates"} <= set(specs)
    # drawn by the component that updates them in place (one element per key), with the small template
    # (the network views, drawn once the warm-up thread has compiled them, are tested in test_dashboard_teaching.py)
    assert sorted(key for el in live_chart_elements(at) if (key := el.proto.id.rsplit("-", 1)[-1]) not in
                  ("chart_network", "chart_settle")) == sorted(
        ["chart_fwd", "chart_bwd", "chart_iters", "chart_hist", "chart_loss", "chart_sine", "chart_gates",
         "chart_inspect_gallery", "chart_inspect_scatter"])  # the inspector's two (dashboard/inspector.py)
    assert not at.get("plotly_chart")
    assert all(spec["layout"]["template"] == live_chart.TEMPLATE for spec in specs.values())
    assert all(spec["config"] == live_chart.CONFIG for spec in specs.values())
    # the component gets strings and booleans only: Streamlit would look for data frames in any other value
    # (importing pandas and pyarrow, ~1.5 s, before the first chart)
    assert all(isinstance(v, (str, bool)) for el in live_chart_elements(at) for v in json.loads(el.proto.json).values())
    for kind, tol in (("convergence", 1e-3), ("convergence_bwd", 1e-4)):
        spec = specs[kind]
        assert spec["layout"]["yaxis"]["type"] == "log"
        line = tol_trace(spec)
        assert list(map(float, _decode(line["y"]))) == [tol, tol]
        residuals = [t for t in spec["data"] if t.get("name", "").startswith("step")]
        assert len(residuals) == 2 and residuals[-1]["name"] == "step 2 (latest)"
        y = np.asarray([np.nan if v is None else v for v in _decode(residuals[-1]["y"])], float)
        assert np.isfinite(y).any() and np.all(y[np.isfinite(y)] > 0)
    assert specs["loss"]["layout"]["yaxis"]["type"] == "log"
    assert [t["name"] for t in specs["iterations"]["data"]][:4] == ["forward mean", "forward max", "backward mean",
                                                                      "backward max"]
    assert specs["sine"]["data"][-1]["name"].startswith("generated")
    # a live change shows at once in the chart's tolerance line, and needs no recompilation
    at.select_slider(key="tol").set_value(1e-6).run()
    assert list(map(float, _decode(tol_trace(charts(at)["convergence"])["y"]))) == [1e-6, 1e-6]
    click_step(at)
    assert session.compile_counts(runner_of(at).trainer)["run"] == 1


def test_plotly_js_is_served_beside_the_app_and_charts_fall_back_without_static_serving(monkeypatch):
    at = new_app()
    assert live_chart.in_place_available()  # .streamlit/config.toml turns static serving on
    # the served bundle is the plotly.js version of the installed plotly package, and draws every trace on the page
    from twnn_dashboard.static_files import plotly_js_version

    full_bundle = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    assert plotly_js_version(live_chart.PLOTLY_JS) == plotly_js_version(full_bundle) is not None
    assert chart_specs(at) and all(live_chart.bundle_draws(spec) for spec in chart_specs(at))
    assert len(chart_specs(at)) == len(live_chart_elements(at))  # every chart through the component
    assert not live_chart.bundle_draws({"data": [{"type": "scatter3d"}]})  # a type the bundle lacks: st.plotly_chart
    assert any("Charts update in place" in m.value for m in at.markdown)
    device = f"Computing on **{jax.default_backend().upper()}**"  # "Under the hood" names the device in use
    assert any(device in m.value for m in at.markdown)
    # without static serving the browser could not load plotly.js: the page uses st.plotly_chart instead
    live_chart.in_place_available.cache_clear()
    monkeypatch.setattr(live_chart.st, "get_option", lambda name: False)
    try:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert not live_chart_elements(at)
        assert {"convergence", "convergence_bwd", "iterations", "histogram", "loss", "sine", "gates"} <= set(
            charts(at))
        # and says why, and how to get the faster charts
        assert any("static file serving is off" in m.value and "twnn dashboard" in m.value for m in at.markdown)
    finally:
        live_chart.in_place_available.cache_clear()


def test_live_controls_never_recompile():
    at = new_app()
    click_step(at)
    trainer = runner_of(at).trainer
    before = session.compile_counts(trainer)
    for key, value in [("tol", 1e-6), ("max_iter", 20), ("gate", 4.0), ("damping", 0.2), ("bwd_tol", 1e-3),
                       ("lr", 3e-2)]:
        widget = at.slider(key=key) if key in ("gate", "damping") else at.select_slider(key=key)
        widget.set_value(value).run()
        click_step(at)
    assert runner_of(at).trainer is trainer
    assert session.compile_counts(trainer) == before
    assert runner_of(at).history[-1]["max_iter"] == 20 and runner_of(at).history[-1]["gate"] == 4.0


def test_reset_presets_and_play_pause():
    at = new_app()
    click_step(at, 3)
    at.button(key="reset").click().run()
    assert metric(at, "Step") == "0" and runner_of(at).step_count == 0
    at.button(key="preset_near_divergence").click().run()
    assert (at.session_state["gate"], at.session_state["tol"], at.session_state["max_iter"]) == (20.0, 1e-7, 20)
    assert runner_of(at).live_values["max_iter"] == 20
    at.button(key="preset_defaults").click().run()
    assert at.session_state["gate"] == controls.CONTROLS["gate"].default
    # Play starts the session's worker; the button turns into Pause; Pause stops it
    at.button(key="play").click().run()
    r = runner_of(at)
    assert r.playing and at.button(key="play").label == "Pause" and at.button(key="step").disabled
    deadline = time.time() + 60
    while r.step_count < 5 and time.time() < deadline:
        time.sleep(0.1)
    assert r.step_count >= 5
    at.button(key="play").click().run()
    assert not r.playing and at.button(key="play").label == "Play"
    assert session.playing_count() == 0


def test_auto_pause_at_step():
    at = new_app()
    at.number_input(key="pause_at").set_value(12).run()
    at.button(key="play").click().run()
    r = runner_of(at)
    deadline = time.time() + 60
    while r.playing and time.time() < deadline:
        time.sleep(0.1)
    assert not r.playing and r.step_count == 12
    at.run()
    assert "auto-paused at step 12" in " ".join(s.value for s in at.success)
    assert metric(at, "Step") == "12"


def test_auto_pause_at_loss_and_the_trainer_cap(monkeypatch):
    at = new_app()
    at.number_input(key="pause_loss").set_value(10.0).run()  # any finite loss is below 10
    at.button(key="play").click().run()
    r = runner_of(at)
    wait = time.time() + 60
    while r.playing and time.time() < wait:
        time.sleep(0.1)
    assert not r.playing and r.step_count == 1 and "reached the target" in r.message
    # the server-wide cap on training sessions: past it, Play waits in line with a visible message (it used
    # to be refused); Pause leaves the line
    monkeypatch.setattr(session, "MAX_TRAINERS", 0)
    at.number_input(key="pause_loss").set_value(0.0).run()
    at.button(key="play").click().run()
    r = runner_of(at)
    wait = time.time() + 30
    while session.waiting_count() == 0 and time.time() < wait:
        time.sleep(0.05)
    at.run()
    assert r.playing and session.waiting_count() == 1 and session.playing_count() == 0 and r.step_count == 1
    assert any("Waiting to train" in w.value and "number 1 in line" in w.value for w in at.info)
    at.button(key="play").click().run()  # now labelled Pause
    assert not r.playing
    r.pause(wait=10)
    assert session.waiting_count() == 0


@pytest.mark.parametrize("task", ["digits", "adding"])
def test_other_tasks_build_step_and_draw(task):
    at = new_app(task=task)
    click_step(at)
    r = runner_of(at)
    assert r.config.task == task and r.step_count == 1
    specs = charts(at)
    assert "samples" in specs and "sine" not in specs  # per-sample evaluation instead of the generated wave
    assert metric(at, "Accuracy") != "–"
    gates = specs["gates"]
    assert any(t["type"] == "histogram" for t in gates["data"])


def test_sweep_and_exports():
    at = new_app()
    click_step(at)
    at.selectbox(key="sweep_control").set_value("gate").run()
    at.button(key="sweep_run").click().run()
    assert not at.exception
    sweep = charts(at)["sweep"]
    names = [t["name"] for t in sweep["data"]]
    assert "fwd iters (mean)" in names and any(n.startswith("eval loss") for n in names)
    assert len(_decode(sweep["data"][0]["x"])) == 12
    assert runner_of(at).step_count == 1  # nothing trained
    r = runner_of(at)
    csv_text = panels.history_csv(r)
    assert csv_text.splitlines()[0].startswith("step,loss,metric") and len(csv_text.splitlines()) == 2
    run = json.loads(panels.run_json(r))
    assert run["config"]["task"] == "sine" and run["steps"] == 1 and len(run["history"]) == 1
    html = panels.figures_html(r)
    assert html.count("plotly-graph-div") >= 6
    labels = {b.proto.label for b in at.get("download_button")}
    assert labels == {"Metrics (CSV)", "Run (JSON)", "Figures (HTML)"}


def test_nonfinite_steps_are_reported_and_reset_recovers():
    """A step whose loss or gradient is not finite leaves the parameters as they were and says so on the page."""
    at = new_app()
    r = runner_of(at)
    click_step(at)
    r.history[-1]["skipped"] = True  # what the library reports for a non-finite step
    r.history[-1]["loss"] = float("nan")
    at.run()
    assert any("non-finite" in e.value for e in at.error)
    assert metric(at, "Loss") == "nan"

    def refuse(token):
        raise AssertionError(f"non-strict JSON token {token} in the run export")

    exported = json.loads(panels.run_json(r), parse_constant=refuse)  # strict JSON: NaN is null
    assert exported["history"][-1]["loss"] is None
    at.button(key="reset").click().run()
    assert metric(at, "Step") == "0" and not any("non-finite" in e.value for e in at.error)


def _code_spans(markdown: str) -> tuple[str, list[str]]:
    """CommonMark's code spans: (the text outside them, their contents). A run of n backticks opens a span that
    the next run of exactly n closes; an unclosed run is literal text. Contents lose one padding space each side."""
    outside, spans, i = [], [], 0
    while i < len(markdown):
        if markdown[i] != "`":
            outside.append(markdown[i])
            i += 1
            continue
        j = i
        while j < len(markdown) and markdown[j] == "`":
            j += 1
        k, close = j, None
        while k < len(markdown):
            if markdown[k] != "`":
                k += 1
                continue
            m = k
            while m < len(markdown) and markdown[m] == "`":
                m += 1
            if m - k == j - i:
                close = (k, m)
                break
            k = m
        if close is None:
            outside.append(markdown[i:j])
            i = j
            continue
        content = markdown[j:close[0]]
        if len(content) > 2 and content[0] == content[-1] == " " and content.strip(" "):
            content = content[1:-1]
        spans.append(content)
        i = close[1]
    return "".join(outside), spans


HOSTILE = {
    "tol": "`[link](http://evil.example/a) ![img](http://evil.example/i.png) <img src=x onerror=alert(1)>",
    "gate": "<script>alert(1)</script><b>bold</b>",
    "lr": "``` **bold** _it_ [x]: http://evil.example ``",
    "max_iter": "9" * 5000,
    "seed": "`",
    "[link](http://evil.example)![i](http://evil.example/i.png)": "1",
}


def test_hostile_url_values_are_shown_as_inert_text():
    """What a shared link sends is echoed in the warning as a code span, cut to a sensible length: no Markdown
    link, image, HTML or formatting of the sender's reaches the page."""
    at = new_app(**HOSTILE)
    warnings = [w.value for w in at.warning]
    assert len(warnings) == len(HOSTILE), warnings
    shown = []
    for text in warnings:
        outside, spans = _code_spans(text)
        assert len(text) < 400, text
        for token in ("`", "<", ">", "](", "![", "http", "**", "_it_"):
            assert token not in outside, (token, text)
        shown += spans
    for key, raw in HOSTILE.items():
        sent = key if key not in controls.CONTROLS else f"{key}={raw}"  # an unknown name: the name
        cut = sent if len(sent) <= 60 else sent[:60] + "…"
        assert cut in shown, (cut, shown)
    assert any("…" in s for s in shown)  # the 5,000-character value is cut
    d = controls.defaults()
    for key in ("tol", "gate", "lr", "max_iter", "seed"):
        assert at.session_state[key] == d[key], key
    click_step(at)  # and the page works
    assert metric(at, "Step") == "1"


def test_code_span_reader_follows_commonmark():
    assert _code_spans("a `b` c") == ("a  c", ["b"])
    assert _code_spans("`` a`b ``") == ("", ["a`b"])
    assert _code_spans("x ` y") == ("x ` y", [])
    assert controls.inert("`") == "`` ` ``" and _code_spans(controls.inert("`"))[1] == ["`"]


def test_preload_builds_and_compiles_what_the_default_page_uses():
    """`twnn dashboard` warms the default page's run in the background (dashboard/preload.py): the page opened
    without URL parameters gets that very runner (its first results cached), and compiles nothing new."""
    from twnn_dashboard import preload

    preload.warm_default()
    config = preload.default_config()
    trainer = session.get_trainer(config)
    before = session.compile_counts(trainer)
    assert all(n is None or n >= 1 for n in before.values()), before  # the preload compiled each of them
    settle = settle_for(config)
    settle_before = settle._cache_size()
    assert settle_before >= 1
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)  # no URL parameters: the page's own defaults
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    runner = runner_of(at)
    assert runner.config == config
    assert runner.trainer.run is trainer.run and runner.trainer.evaluate is trainer.evaluate  # the same build
    assert runner._warm_thread is None  # the preload's runner: warmed already, no warm-up thread of its own
    assert runner.session_id is not None  # now the page's
    assert any(key[0] == "evaluate" for key in runner._aux_cache)  # what the preload computed, kept
    assert preload.claim(config, "another page") is None  # offered once only
    runner.evaluate()
    runner.settle(0)
    assert session.compile_counts(trainer) == before
    assert settle._cache_size() == settle_before


def test_the_repl_check_the_app_skips_is_streamlits():
    """dashboard/app.py skips Streamlit's once-per-process REPL check (~1 s of the first page) by setting the flag
    that the check reads; a Streamlit that renamed it would silently bring the second back."""
    import inspect

    import streamlit.delta_generator as dg

    assert "_use_warning_has_been_displayed" in inspect.getsource(dg._maybe_print_use_warning)
    assert "is_repl" in inspect.getsource(dg._maybe_print_use_warning)


def _fresh_preload(monkeypatch):
    """dashboard/preload.py with its offer and events as in a process that has just started a preload."""
    import threading

    from twnn_dashboard import preload

    for name in ("_built", "_started", "_page_shown"):
        monkeypatch.setattr(preload, name, threading.Event())
    monkeypatch.setattr(preload, "_offered", [])
    preload._started.set()
    return preload


def test_a_page_with_other_settings_declines_the_preloaded_runner(monkeypatch):
    """The preload's runner goes to the first page only if it has the default settings; another page closes it
    (no run is left training for nobody), and no later page is offered it."""
    from types import SimpleNamespace

    preload = _fresh_preload(monkeypatch)
    closed = []
    offered = SimpleNamespace(config=preload.default_config(), closed=False, close=lambda wait: closed.append(wait))
    preload._offered.append(offered)
    preload._built.set()
    assert preload.claim(session.make_config(task="sine"), "page 1") is None
    assert closed == [False]
    assert preload.claim(preload.default_config(), "page 2") is None


def test_a_preload_that_fails_leaves_the_page_to_build_its_own(monkeypatch):
    """A failing preload never keeps a page waiting in `claim`: the page gets None and builds its runner."""
    preload = _fresh_preload(monkeypatch)

    def broken():
        raise RuntimeError("no defaults")

    monkeypatch.setattr(preload, "default_config", broken)
    preload.warm_default()
    assert preload._built.is_set() and preload._offered == []
    assert preload.claim(session.make_config(task="sine"), "page") is None


class _StubRunner:
    """Stands in for `session.Runner` in the preload: records when the training loop is compiled."""

    closed = False

    def __init__(self, config, warm_up=True):
        self.compiled = []

    def first_page_calls(self):
        return []

    def compile_training(self):
        self.compiled.append("training")


def test_the_preload_compiles_training_after_the_page_has_shown_and_not_for_a_closed_runner(monkeypatch):
    """The training loop is compiled once the first page has shown and `BROWSER_DRAWS_S` has passed; a runner
    closed while the preload waits (a page with another task, the process exiting) ends the wait, uncompiled."""
    import threading

    preload = _fresh_preload(monkeypatch)
    monkeypatch.setattr(session, "Runner", _StubRunner)
    monkeypatch.setattr(preload, "BROWSER_DRAWS_S", 0.2)
    preload._page_shown.set()
    preload.warm_default()
    assert preload._offered[0].compiled == ["training"]

    preload = _fresh_preload(monkeypatch)
    monkeypatch.setattr(preload, "TRAINING_WAITS_S", 600.0)  # no page shows
    thread = threading.Thread(target=preload.warm_default, daemon=True)
    thread.start()
    preload._built.wait(60)
    runner = preload._offered[0]
    assert thread.is_alive()  # waiting for a page
    runner.closed = True
    thread.join(60)  # far less than the 600 s it would wait for a page
    assert not thread.is_alive() and runner.compiled == []
