"""The paper experiment end to end on its quick plan: files written, tables filled, numbers sane."""

import json
import math
import re

import numpy as np
import pytest

from twnn_jax.experiment import _rank, run_paper, spearman

NUMBER = r"-?\d+(?:\.\d+)?"


def test_rank_averages_ties():
    np.testing.assert_allclose(_rank([3, 1, 3, 2]), [3.5, 1, 3.5, 2])


def test_spearman_matches_known_values():
    x = np.arange(10.0)
    assert spearman(x, x**3)["rho"] == pytest.approx(1.0)
    assert spearman(x, -x)["rho"] == pytest.approx(-1.0)
    assert spearman(x, np.ones(10))["rho"] is None  # constant: undefined, not NaN
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(size=200)
    ra, rb = _rank(a), _rank(b)
    assert spearman(a, b)["rho"] == pytest.approx(np.corrcoef(ra, rb)[0, 1])
    scipy_stats = pytest.importorskip("scipy.stats")
    ties = rng.integers(0, 5, size=100)
    assert spearman(ties, b[:100])["rho"] == pytest.approx(scipy_stats.spearmanr(ties, b[:100])[0])


def test_run_paper_quick(tmp_path):
    results = run_paper(tmp_path, quick=True, seeds=1)
    folder = tmp_path / "experiment"

    report = (folder / "RESULTS.md").read_text()
    lines = report.splitlines()
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    header = cells(next(line for line in lines if line.startswith("| model | params |")))
    rows = {cells(line)[0]: dict(zip(header, cells(line))) for line in lines
            if line.startswith("| plain residual") or line.startswith("| TWNN residual")}
    labels = ("plain residual, 2 blocks", "plain residual, 8 blocks", "TWNN residual (resnet_fp)")
    for label in labels:
        assert label in rows, f"{label!r} row missing from the digits table"
        row = rows[label]
        accuracy = float(re.match(NUMBER, row["test acc % (mean ± std)"]).group())
        assert 0.0 <= accuracy <= 100.0
        for column in ("params", "ms/step (median)", "CPU ms/step", "compile s", "step temp KiB", "fwd iters (test)"):
            assert re.fullmatch(NUMBER, row[column]), (column, row)
    for heading in ("## 1.", "## 2.", "## 3.", "## 4.", "## 5a.", "## 5b."):
        assert heading in report

    raw = json.loads((folder / "results.json").read_text())
    assert raw["meta"]["quick"] is True and raw["meta"]["seeds"] == 1
    assert [r["label"] for r in raw["digits"]["rows"]] == list(labels)
    twnn = raw["digits"]["rows"][-1]
    assert twnn["params"] > 0 and twnn["memory"]["temp_size_in_bytes"] > 0
    assert twnn["per_seed"][0]["test_fwd_iters_mean"] >= 1  # a fixed point takes at least one sweep
    assert raw["digits"]["rows"][0]["per_seed"][0]["test_fwd_iters_mean"] == 0  # plain nets solve nothing
    rho = raw["settle"]["per_seed"][0]["iters_vs_confidence"]["rho"]
    assert rho is None or -1.0 <= rho <= 1.0
    assert [c["n_freqs"] for c in raw["sine"]["cases"]] == [1, 2]
    for case in raw["sine"]["cases"]:
        assert case["free_steps"] >= 200 and math.isfinite(case["constant_rmse"])
        assert len(case["series"][0]) == case["free_steps"]
    assert [r["gate"] for r in raw["gate"]["sweep"]] == sorted(r["gate"] for r in raw["gate"]["sweep"])
    assert all(r["bwd_iters_mean"] >= 1 for r in raw["gate"]["sweep"])
    assert {r["model"] for r in raw["adding"]["rows"]} == {"wormhole_rnn", "gru"}
    assert raw == json.loads(json.dumps(results))  # what it returns is what it wrote

    assert set(raw["figures"]) == {"digits_accuracy", "settle", "sine_generation", "gate_sweep", "order_and_adding"}
    for files in raw["figures"].values():
        html = (folder / files["html"]).read_text()
        assert 'src="plotly.min.js"' in html and "Plotly.newPlot" in html
    assert (folder / "plotly.min.js").stat().st_size > 1_000_000  # the one shared copy the figures load
