"""The "Playground" section under AppTest (dashboard/playground.py): renders, follows its knobs, reads its start
points from the URL, never recompiles. The click on the plane is in test_dashboard_playground_browser.py."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from test_dashboard_apptest import APP, _stop_trainers, chart_specs, query  # noqa: F401

from twnn_jax import playground

pytestmark = pytest.mark.e2e
TIMEOUT = 300


def plane_spec(at) -> dict | None:
    for spec in chart_specs(at):
        if spec["layout"].get("meta", {}).get("kind") == "playground":
            return spec
    return None


def paths(spec: dict) -> list[dict]:
    return [t for t in spec["data"] if "path" in (t.get("meta") or {})]


def test_hidden_by_default_and_nothing_computed():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert plane_spec(at) is None
    assert any(s.label == "Show" and s.key == "pg" for s in at.toggle)


def test_start_points_from_the_url_the_gate_changes_the_paths_without_recompiling():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["pg"] = "on"
    at.query_params["pg_starts"] = "0.50,-0.20;-0.80,0.70"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    spec = plane_spec(at)
    assert spec is not None
    meta = spec["layout"]["meta"]
    assert meta["starts"] == [[0.5, -0.2], [-0.8, 0.7]]
    drawn = paths(spec)
    assert [t["meta"]["start"] for t in drawn] == [[0.5, -0.2], [-0.8, 0.7]]
    assert [t["x"][0] for t in drawn] == pytest.approx([0.5, -0.8])
    assert len(meta["fixed"]) == 1
    assert all(meta["converged"])  # the default gate bias (-1): the paths spiral in
    assert query(at)["pg_starts"] == "0.50,-0.20;-0.80,0.70"
    compiled = playground._cache_size()
    assert compiled >= 1

    at.slider(key="pg_gate").set_value(4.0).run()  # the wormhole wide open: the paths circle for ever
    assert not at.exception, [e.value for e in at.exception]
    opened = plane_spec(at)
    assert opened["layout"]["meta"]["converged"] == [False, False]
    assert [t["x"] for t in paths(opened)] != [t["x"] for t in drawn]
    assert any("Not converged" in e.value for e in at.error)
    assert query(at)["pg_gate"] == "4.0"

    at.slider(key="pg_damping").set_value(0.1).run()
    at.slider(key="pg_max_iter").set_value(200).run()
    at.select_slider(key="pg_tol").set_value(1e-3).run()
    at.slider(key="pg_v").set_value(-1.0).run()
    assert not at.exception, [e.value for e in at.exception]
    assert plane_spec(at)["layout"]["meta"]["converged"] == [True, True]
    assert playground._cache_size() == compiled  # no recompilation for any knob
    # what the HTML export takes (playground.figures): the plane as last drawn
    assert at.session_state["_pg_fig"]["layout"]["meta"]["converged"] == [True, True]


def test_a_bad_start_point_in_the_url_is_a_warning():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["pg"] = "on"
    at.query_params["pg_starts"] = "0.5;x"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("pg_starts" in w.value and "rejected" in w.value for w in at.warning)
    assert plane_spec(at)["layout"]["meta"]["starts"] == [list(p) for p in [(-0.9, -0.9), (0.9, 0.9), (-0.9, 0.9),
                                                                              (0.9, -0.9)]]
