"""The paper experiment end to end on its quick plan: files written, tables filled, numbers sane; and the
check that says whether shipped results still match the code."""

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from twnn_jax.experiments import changed_since, check_results, run_paper
from twnn_jax.experiments.measure import fit, spearman
from twnn_jax.experiments.provenance import code_version, recorded_commit

NUMBER = r"-?\d+(?:\.\d+)?"
SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "experiment"


def test_spearman_matches_known_values():
    x = np.arange(10.0)
    assert spearman(x, x**3)["rho"] == pytest.approx(1.0)
    assert spearman(x, -x)["rho"] == pytest.approx(-1.0)
    assert spearman(x, np.ones(10))["rho"] is None  # constant: undefined, not NaN
    assert spearman(x, np.ones(10))["p"] is None
    rng = np.random.default_rng(0)
    ties, b = rng.integers(0, 5, size=100), rng.normal(size=100)
    ranks = stats.rankdata(ties), stats.rankdata(b)  # ties averaged
    assert spearman(ties, b)["rho"] == pytest.approx(np.corrcoef(*ranks)[0, 1])
    assert 0.0 <= spearman(ties, b)["p"] <= 1.0 and spearman(ties, b)["n"] == 100


def test_fit_times_segments_of_the_library_loop_without_changing_the_numbers():
    import jax

    from twnn_jax.train import TrainConfig, live_controls, train, trainer_for

    cfg = TrainConfig(task="sine", hidden=8)
    trainer, live = trainer_for(cfg), live_controls(cfg)
    whole, history = train(trainer, 30, state=trainer.init(3), live=live)
    seen = []
    state, log = fit(trainer, trainer.init(3), live, 30, checkpoint=lambda s: seen.append(int(s.step)) or len(seen),
                     at=(5, 7), chunks=4)
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the same steps, however they are split
    np.testing.assert_array_equal(log["loss"], [h["loss"] for h in history])
    assert seen == [1, 5, 7, 30] and [k for k, _ in log["checkpoints"]] == seen
    assert log["steps"] == 30 and log["train_s"] > 0 and log["ms_per_step_median"] > 0


def _git(root, *args):
    subprocess.run(["git", "-C", str(root), "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
                   check=True, capture_output=True)


def _head(root) -> str:
    return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_changed_since_names_the_code_files_that_changed(tmp_path):
    (tmp_path / "twnn_jax").mkdir()
    (tmp_path / "twnn_jax" / "train.py").write_text("a = 1\n")
    (tmp_path / "README.md").write_text("readme\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "first")
    commit = _head(tmp_path)
    assert changed_since(commit, tmp_path) == []
    assert code_version(tmp_path) == {"commit": commit, "dirty": False}
    (tmp_path / "README.md").write_text("other\n")  # not code that produces results
    assert changed_since(commit, tmp_path) == []
    (tmp_path / "twnn_jax" / "train.py").write_text("a = 2\n")  # edited, not committed
    assert changed_since(commit, tmp_path) == ["twnn_jax/train.py"]
    assert code_version(tmp_path)["dirty"] is True
    _git(tmp_path, "commit", "-qam", "second")  # committed since
    (tmp_path / "twnn_jax" / "new.py").write_text("b = 1\n")  # a new file
    assert changed_since(commit, tmp_path) == ["twnn_jax/new.py", "twnn_jax/train.py"]
    assert changed_since("0" * 40, tmp_path) is None  # a commit the checkout does not have

    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({"meta": {"code": {"commit": commit, "dirty": False}}}))
    current, line = check_results(folder, tmp_path)
    assert current is False and "STALE" in line and "twnn_jax/train.py" in line and "twnn_jax/new.py" in line
    (folder / "results.json").write_text(json.dumps({"meta": {"code": {"commit": _head(tmp_path), "dirty": False}}}))
    (tmp_path / "twnn_jax" / "new.py").unlink()
    assert check_results(folder, tmp_path) == (True, check_results(folder, tmp_path)[1])
    assert "current" in check_results(folder, tmp_path)[1]


def test_check_outside_a_git_checkout_says_it_cannot_tell(tmp_path):
    (tmp_path / "twnn_jax").mkdir()
    assert changed_since("a" * 40, tmp_path) is None
    assert code_version(tmp_path) == {"commit": None, "dirty": None}
    (tmp_path / "results.json").write_text(json.dumps({"meta": {"code": {"commit": "a" * 40, "dirty": False}}}))
    current, line = check_results(tmp_path, tmp_path)
    assert current is None and "cannot check" in line
    assert check_results(tmp_path / "missing")[0] is None


def test_shipped_results_record_their_commit():
    """The shipped results name the commit they came from (whether code changed since is `--check`'s job)."""
    commit = recorded_commit(SHIPPED)
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    assert f"commit `{commit[:12]}`" in (SHIPPED / "RESULTS.md").read_text()
    current, line = check_results(SHIPPED)
    assert current in (True, False, None) and commit[:12] in line


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
    assert set(raw["meta"]["code"]) == {"commit", "dirty"}
    assert "**Code:**" in report
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
    for name, files in raw["figures"].items():
        html = (folder / files["html"]).read_text()
        assert 'src="plotly.min.js"' in html and "Plotly.newPlot" in html
        assert f'"kind":"{name}"' in html.replace(" ", "")  # drawn by twnn_jax.figures' builder of that name
    assert (folder / "plotly.min.js").stat().st_size > 1_000_000  # the one shared copy the figures load
