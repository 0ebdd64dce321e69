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



def _paper() -> dict:
    """A results dict of the paper experiment's shape (`twnn_jax.experiments.run_paper`), small numbers."""
    seed = lambda acc: {"accuracy": acc, "curve": [(1, 10.0), (5, 60.0), (12, acc)]}  # noqa: E731
    rows = [{"label": label, "model": model, "accuracy_mean": 90.0 + i, "accuracy_std": 0.5 if i else None,
             "per_seed": [seed(90.0 + i), seed(91.0 + i)]}
            for i, (label, model) in enumerate([("plain residual, 2 blocks", "resnet_plain"),
                                                ("TWNN residual (resnet_fp)", "resnet_fp")])]
    case = lambda n: {"n_freqs": n, "window": 16, "free_rmse": 0.1, "constant_rmse": 0.3,  # noqa: E731
                      "series": np.sin(np.arange(30.0))[None], "target": np.cos(np.arange(30.0))[None],
                      "free_rmse_during_training": [(10, 0.3), (20, 0.1)]}
    gate = [{"gate": g, "fwd_iters_mean": 5.0 + g, "bwd_iters_mean": 7.0 + g, "fwd_iters_max": 9 + g,
             "accuracy": 95.0 - g} for g in (0.0, 1.0)]
    adding = [{"model": m, "T": 20, "steps": 4, "baseline_mse": 1 / 6, "train_loss_curve": [0.3, 0.2, 0.2, 0.1],
               "train_loss_steps": [1, 2, 3, 4], "test_mse_during_training": [(2, 0.2), (4, 0.15)]}
              for m in ("wormhole_rnn", "gru")]
    return {
        "digits": {"rows": rows, "n_test": 360, "one_test_sample_points": 100 / 360},
        "settle": {"per_seed": [{"iters_vs_confidence": {"rho": -0.4}, "iters_vs_loss": {"rho": None}}],
                   "samples": {"seed": 0, "iters": [3, 5, 9], "confidence": [0.9, 0.8, 0.4],
                               "loss": [0.01, 0.1, 2.0], "correct": [True, True, False]}},
        "sine": {"cases": [case(1), case(2)]},
        "gate": {"sweep": gate, "trained_gate": -2.0, "trained_at": [{"gate": -2.0, "accuracy": 97.0}]},
        "sweep_order": {"rows": [{"gate": -2.0, "layer_iters_mean": 10.0, "jacobi_iters_mean": 25.0}]},
        "adding": {"rows": adding, "T": [20]},
    }


PAPER = {
    "paper digits": lambda: figures.digits_accuracy_figure(_paper()["digits"]),
    "paper settle": lambda: figures.settle_figure(_paper()["settle"]),
    "paper sine": lambda: figures.sine_generation_figure(_paper()["sine"]),
    "paper gate": lambda: figures.gate_sweep_figure(_paper()["gate"]),
    "paper order and adding": lambda: figures.order_and_adding_figure(_paper()["sweep_order"], _paper()["adding"]),
    "converged fraction": lambda: figures.converged_fraction_figure(_history(30)),
    "converged fraction, empty": lambda: figures.converged_fraction_figure([]),
}
CASES.update(PAPER)


@pytest.mark.parametrize("name", PAPER)
def test_paper_figures_put_each_trace_on_an_axis_of_their_grid(name):
    fig = PAPER[name]()
    layout = fig["layout"]
    for trace in fig["data"]:
        assert "xaxis" + trace.get("xaxis", "x")[1:] in layout, (name, trace.get("name"))
        assert "yaxis" + trace.get("yaxis", "y")[1:] in layout, (name, trace.get("name"))


def test_paper_figures_show_the_results():
    paper = _paper()
    digits = figures.digits_accuracy_figure(paper["digits"])
    bars = [t for t in digits["data"] if t["type"] == "bar"]
    assert [b["y"][0] for b in bars] == [90.0, 91.0] and bars[0]["error_y"]["array"] == [0.0]
    settle = figures.settle_figure(paper["settle"])
    assert [a["text"] for a in settle["layout"]["annotations"]] == ["confidence (Spearman -0.40)",
                                                                    "per-sample loss (Spearman n/a)"]
    sine = figures.sine_generation_figure(paper["sine"])
    assert sum(t["name"] == "target" for t in sine["data"]) == 2 and sine["layout"]["yaxis3"]["type"] == "log"
    order = figures.order_and_adding_figure(paper["sweep_order"], paper["adding"])
    assert order["data"][-1]["name"] == "baseline 0.167" and list(order["data"][-1]["y"]) == [1 / 6, 1 / 6]


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
