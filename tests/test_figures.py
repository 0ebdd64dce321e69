"""The figure builders return plain Plotly dicts: nothing validates them on the way to the browser, so
these tests run each through Plotly's own validation (`go.Figure` rejects an unknown property)."""

from __future__ import annotations

import copy

import numpy as np
import plotly.graph_objects as go
import pytest

from twnn_jax import figures


def _history(n: int, *, skipped: bool = False) -> list[dict]:
    return [{"step": i + 1, "loss": float(np.exp(-i / 50)) if not (skipped and i % 7 == 0) else float("nan"),
             "metric": 0.5 + 0.4 * i / max(n, 1), "fwd_iters_mean": 3.0 + i % 3, "fwd_iters_max": 5 + i % 4,
             "bwd_iters_mean": 4.0, "bwd_iters_max": 9, "converged_frac": 1.0 if i % 11 else 0.75,
             "bwd_converged_frac": 1.0 if i % 13 else 0.5, "gate_mean": 0.2, "skipped": skipped and i % 7 == 0}
            for i in range(n)]


_TRAJ = [np.where(np.arange(20) < 4 + k, 10.0 ** -np.arange(20.0), np.nan)[None].repeat(3, 0) for k in range(6)]

CASES = {
    "loss, empty": lambda: figures.loss_figure([]),
    "loss, skipped steps": lambda: figures.loss_figure(_history(600, skipped=True)),
    "loss with accuracy": lambda: figures.loss_figure(_history(80), metric_name="accuracy"),
    "iterations, empty": lambda: figures.iterations_figure([]),
    "iterations near max_iter": lambda: figures.iterations_figure(_history(500), max_iter=8),
    "gates, empty": lambda: figures.gates_figure([]),
    "gates, no wormholes": lambda: figures.gates_figure(_history(20), np.zeros((4, 0))),
    "gates": lambda: figures.gates_figure(_history(20), np.linspace(0, 1, 32).reshape(16, 2)),
    "convergence, empty": lambda: figures.convergence_figure([], 1e-3),
    "convergence, past capacity": lambda: figures.convergence_figure(_TRAJ, 1e-3, steps=range(10, 16),
                                                                     iters=np.array([40, 3])),
    "histogram, empty": lambda: figures.iterations_histogram(None, None),
    "histogram": lambda: figures.iterations_histogram(np.array([3, 4, 4]), np.array([7, 30])),
    "sine": lambda: figures.sine_figure(np.sin(np.arange(40.0))[None], np.cos(np.arange(40.0))[None],
                                        window=np.ones((1, 8))),
    "samples": lambda: figures.sample_scatter_figure(np.array([3, 4, 9]), np.array([1e-5, 0.1, 2.0]),
                                                     converged=np.array([1, 1, 0])),
    "sweep": lambda: figures.sweep_figure([1e-6, 1e-4, 1e-2], [9, 5, 2], [12, 7, 3], [0.1, 0.2, np.inf],
                                          control="tol", converged_frac=[0.5, 1, 1], current=1e-4, log_x=True),
}


@pytest.mark.parametrize("name", CASES)
def test_every_figure_is_valid_plotly(name):
    fig = CASES[name]()
    assert set(fig) == {"data", "layout"}
    validated = go.Figure(fig)  # raises ValueError on a property Plotly does not know
    assert validated.layout.meta["kind"] == fig["layout"]["meta"]["kind"]
    assert validated.layout.uirevision == "keep"
    assert len(validated.data) == len(fig["data"])


def test_figure_specs_carry_what_the_charts_show():
    conv = figures.convergence_figure(_TRAJ, 1e-4, steps=range(10, 16))
    assert conv["layout"]["yaxis"]["type"] == "log"
    tol = conv["data"][-1]
    assert tol["name"] == "tol = 1e-04" and list(tol["y"]) == [1e-4, 1e-4]
    assert conv["data"][-2]["name"] == "step 15 (latest)"
    assert conv["layout"]["meta"]["steps"] == list(range(10, 16))
    loss = figures.loss_figure(_history(30), metric_name="accuracy")
    assert loss["data"][-1]["yaxis"] == "y2" and loss["layout"]["yaxis2"]["range"] == [0, 1.02]
    empty = figures.iterations_figure([])
    assert empty["data"] == [] and "no steps yet" in empty["layout"]["annotations"][0]["text"]


def test_builders_share_no_state_between_figures():
    """Layout pieces are merged into new dicts: changing one figure leaves the next one alone."""
    before = copy.deepcopy(figures._SECOND_Y)
    a = figures.sweep_figure([1, 2], [3, 4], [5, 6], [0.1, 0.2], control="max_iter")
    a["layout"]["xaxis"]["type"] = "log"
    a["layout"]["yaxis2"]["title"]["text"] = "changed"
    b = figures.sweep_figure([1, 2], [3, 4], [5, 6], [0.1, 0.2], control="max_iter")
    assert figures._SECOND_Y == before
    assert "type" not in b["layout"]["xaxis"] and b["layout"]["yaxis2"]["title"]["text"] == "loss"
