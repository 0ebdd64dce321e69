"""The per-sample inspector (dashboard/inspector.py, twnn_jax/inspector_figures.py): AppTest and the figures.

The click in a real page is in test_dashboard_teaching_browser.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr
from streamlit.components.v2.bidi_component.main import _make_trigger_id
from streamlit.proto.WidgetStates_pb2 import WidgetState
from test_dashboard_apptest import _decode, _stop_trainers, chart_specs, live_chart_elements, query, runner_of  # noqa: F401
from test_dashboard_teaching import new_app, views

from twnn_dashboard import inspector, panels
from twnn_jax import inspector_figures
from twnn_jax.settle_trace import settle_for


def specs(at) -> dict:
    return {s["layout"].get("meta", {}).get("kind"): s for s in chart_specs(at)}


def click(at, key: str, value: dict):
    """Fire the chart component's "click" trigger as the browser does (its trigger widget), then run."""
    el = next(e for e in live_chart_elements(at) if e.proto.id.endswith(f"-{key}"))
    states = at._tree.get_widget_states()
    payload = json.dumps([{"event": "click", "value": value}])
    ws = WidgetState(id=_make_trigger_id(el.proto.id, "events"), json_trigger_value=payload)
    states.widgets.append(ws)
    at._run(states)
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_order_and_spearman_and_tile_lookup():
    iters = np.array([3, 9, 5, 9, 1, 7, 2, 8])
    conf = np.array([0.9, 0.2, 0.5, 0.4, 0.99, 0.3, 0.95, 0.1])
    slowest, fastest = inspector_figures.order_by_iterations(iters, conf, k=3)
    assert slowest == [1, 3, 7] and fastest == [4, 6, 0]  # ties: least confident first among the slowest
    assert inspector_figures.order_by_iterations(iters, conf, k=12)[0] == [1, 3, 7, 5]  # at most half each
    assert inspector_figures.spearman(iters, conf) == pytest.approx(spearmanr(iters, conf).statistic)
    assert inspector_figures.spearman([3, 3, 3], [1, 2, 3]) is None
    fig = inspector_figures.gallery_figure(np.random.default_rng(0).random((8, 64)), iters, confidence=conf,
                                           correct=conf > 0.3, k=3)
    for index, x0, y0 in fig["layout"]["meta"]["tiles"]:
        assert inspector_figures.tile_at(fig["layout"]["meta"], x0 + 4, y0 + 4) == index
    assert inspector_figures.tile_at(fig["layout"]["meta"], -50, -50) is None


def test_digits_gallery_has_12_and_12_ordered_and_spearman_is_scipys():
    at = new_app(task="digits")
    runner = runner_of(at)
    ev = runner.evaluate()
    iters = np.asarray(ev["fwd_iters"])
    kinds = specs(at)
    gallery, scatter = kinds["inspector_gallery"], kinds["inspector_scatter"]
    meta = gallery["layout"]["meta"]
    assert len(meta["slowest"]) == 12 == len(meta["fastest"])
    assert meta["iters_slowest"] == sorted(meta["iters_slowest"], reverse=True)
    assert meta["iters_slowest"] == [int(iters[i]) for i in meta["slowest"]]
    assert meta["iters_fastest"] == sorted(meta["iters_fastest"]) == [int(iters[i]) for i in meta["fastest"]]
    assert meta["iters_slowest"][0] == iters.max() and meta["iters_fastest"][0] == iters.min()
    assert min(meta["iters_slowest"]) >= max(meta["iters_fastest"])
    z = np.asarray(_decode(gallery["data"][0]["z"]), float)  # the 24 digits as 8x8 images in one mosaic
    assert np.isfinite(z).sum() == 24 * 64
    rho = spearmanr(iters, np.asarray(ev["confidence"])).statistic
    assert scatter["layout"]["meta"]["spearman"] == pytest.approx(rho)
    assert f"Spearman ρ = {rho:+.2f}" in scatter["layout"]["title"]["text"]
    assert "Inspector" in [h.value for h in at.subheader]
    html = panels.figures_html(runner)
    assert "Slowest and fastest inputs" in html and "Spearman" in html


def test_clicking_a_digit_makes_it_the_settling_sample_without_compiling():
    at = new_app(task="digits")
    runner = runner_of(at)
    meta = specs(at)["inspector_gallery"]["layout"]["meta"]
    fn = settle_for(runner.config)
    compiled = (fn._cache_size(), runner.trainer.evaluate._cache_size())
    target = meta["fastest"][3]
    assert views(at)[1]["layout"]["meta"]["sample"] != target
    click(at, inspector.GALLERY_KEY, {"x": 1.0, "y": 2.0, "customdata": target})
    network, settle = views(at)
    assert settle["layout"]["meta"]["sample"] == target == network["layout"]["meta"]["sample"]
    assert query(at)["sample"] == str(target)
    assert specs(at)["inspector_gallery"]["layout"]["meta"]["chosen"] == target  # the tile framed
    # a click on the image itself (no customdata): the tile under the point
    index, x0, y0 = meta["tiles"][1]
    click(at, inspector.GALLERY_KEY, {"x": x0 + 3.5, "y": y0 + 3.5, "customdata": None})
    assert views(at)[1]["layout"]["meta"]["sample"] == index
    # a dot of the scatter
    click(at, inspector.SCATTER_KEY, {"x": 4.1, "y": 0.5, "customdata": 17})
    assert views(at)[1]["layout"]["meta"]["sample"] == 17
    assert (fn._cache_size(), runner.trainer.evaluate._cache_size()) == compiled


def test_sine_windows_as_lines_and_the_error_scatter():
    at = new_app(task="sine")
    runner = runner_of(at)
    ev = runner.evaluate()
    kinds = specs(at)
    gallery, scatter = kinds["inspector_gallery"], kinds["inspector_scatter"]
    meta = gallery["layout"]["meta"]
    n = len(ev["fwd_iters"])
    assert len(meta["slowest"]) == len(meta["fastest"]) == min(12, n // 2) and not meta["images"]
    assert gallery["data"][0]["type"] == "scatter" and gallery["data"][0]["name"] == "windows"
    expected = inspector_figures.spearman(ev["fwd_iters"], ev["sample_loss"])
    assert scatter["layout"]["meta"]["spearman"] == expected
    target = meta["slowest"][-1]
    click(at, inspector.GALLERY_KEY, {"customdata": target})
    assert views(at)[1]["layout"]["meta"]["sample"] == target
