"""The `twnn` command line: a tiny run end to end (in-process and as a real subprocess), resuming,
refusing to overwrite, a divergent run reported rather than crashing, bad arguments, the dashboard and
experiment subcommands without starting anything heavy.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from twnn_jax import cli, runs
from twnn_jax import train as train_module
from twnn_jax.checkpoint import load_checkpoint
from twnn_jax.train import STEPS_PER_CALL

# the structure of test_train's SINE config: the in-process runs reuse its compiled step
TINY = ["--task", "sine", "--hidden", "8", "--batch-size", "16", "--quiet"]
REQUIRED = {"step", "loss", "fwd_iters_mean", "fwd_iters_max", "bwd_iters_mean", "bwd_iters_max", "converged_frac"}


def _strict_lines(path: Path) -> list[dict]:
    def refuse(token):
        raise AssertionError(f"non-strict JSON token {token} in {path}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def subprocess_run(tmp_path_factory):
    """A run through `python -m twnn_jax.cli`, started first so it compiles while the other tests work."""
    out = tmp_path_factory.mktemp("sub") / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "twnn_jax.cli", "train", *TINY, "--steps", "3", "--out", str(out),
         "--spectral-bound", "none", "--clip-norm", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    yield out, proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(autouse=True, scope="module")
def _start_subprocess_early(subprocess_run):
    return subprocess_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert cli.main(["train", *TINY, "--steps", "6", "--out", str(out)]) == 0
    return out


def _check_run(out: Path, steps: int):
    for name in ("metrics.jsonl", "config.json", "checkpoint.npz", "summary.json", "report.html"):
        assert (out / name).is_file(), name
    records = _strict_lines(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    assert all(REQUIRED <= set(r) for r in records)
    report = (out / "report.html").read_text()
    assert "plotly" in report.lower() and "Plotly.newPlot" in report
    assert '<script src="http' not in report and "<script src='http" not in report  # plotly.js is inlined
    config, state = load_checkpoint(out)
    assert config.task == "sine" and int(state.step) == steps
    assert (out / "checkpoint.npz").stat().st_mode & 0o044  # ordinary permissions, not a temp file's 0600
    return records


def test_train_end_to_end(run_dir, capsys):
    _check_run(run_dir, 6)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["skipped_frac"] == 0.0
    assert summary["spectral_bound"] == 0.9 and summary["clip_norm"] == 1.0
    assert summary["sine_free_running_rmse"] is not None


def test_resume_continues_step_numbering(run_dir, capsys):
    assert cli.main(["train", "--resume", str(run_dir), "--steps", "4", "--quiet", "--lr", "0.003"]) == 0
    records = _check_run(run_dir, 10)
    assert records[6]["step"] == 7
    config, _ = load_checkpoint(run_dir)
    assert config.lr == 0.003  # a live setting may change on resume


def test_existing_run_is_not_overwritten(run_dir, capsys):
    before = (run_dir / "metrics.jsonl").read_text()
    assert cli.main(["train", *TINY, "--steps", "1", "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--force" in err and "Traceback" not in err
    assert (run_dir / "metrics.jsonl").read_text() == before


def test_force_overwrites(tmp_path):
    out = tmp_path / "r"
    assert cli.main(["train", *TINY, "--steps", "2", "--out", str(out)]) == 0
    assert cli.main(["train", *TINY, "--steps", "1", "--out", str(out), "--force"]) == 0
    assert len(_strict_lines(out / "metrics.jsonl")) == 1


def test_interrupt_keeps_a_consistent_checkpoint(tmp_path, monkeypatch, capsys):
    """Ctrl-C (or SIGTERM) mid-run: the finished steps are logged and checkpointed, exit code 130."""
    calls, real = [], train_module.summarize_run

    def summarize_then_interrupt(out):
        calls.append(1)
        if len(calls) == 2:  # during the second call of the training loop
            raise KeyboardInterrupt
        return real(out)

    monkeypatch.setattr(train_module, "summarize_run", summarize_then_interrupt)
    out = tmp_path / "cut"
    steps = str(3 * STEPS_PER_CALL)
    assert cli.main(["train", *TINY, "--steps", steps, "--checkpoint-every", "0", "--out", str(out)]) == 130
    assert "--resume" in capsys.readouterr().err
    first_call = list(range(1, STEPS_PER_CALL + 1))
    assert [r["step"] for r in _strict_lines(out / "metrics.jsonl")] == first_call
    assert int(load_checkpoint(out)[1].step) == STEPS_PER_CALL


def test_checkpoint_every_is_exact(tmp_path, monkeypatch):
    """Periodic checkpoints land on the requested steps although steps run many per call."""
    out = tmp_path / "periodic"
    seen = []
    real = runs.save_checkpoint

    def spy(directory, state, config, history=None):
        seen.append(int(state.step))
        return real(directory, state, config, history)

    monkeypatch.setattr(runs, "save_checkpoint", spy)
    assert cli.main(["train", *TINY, "--steps", "45", "--checkpoint-every", "20", "--out", str(out)]) == 0
    assert seen == [0, 20, 40, 45]
    assert [r["step"] for r in _strict_lines(out / "metrics.jsonl")] == list(range(1, 46))


def test_divergent_run_is_reported_not_crashed(tmp_path, capsys):
    out = tmp_path / "div"
    code = cli.main(["train", *TINY, "--steps", "4", "--out", str(out), "--gate", "20", "--tol", "1e-8",
                     "--max-iter", "2"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["not_converged_frac"] == 1.0
    text = capsys.readouterr().out
    for phrase in ("final loss", "eval set", "free-running RMSE", "skipped for non-finite", "spectral bound 0.9",
                   "clip norm 1.0", "non-converged forward solve 100.0%"):
        assert phrase in text, phrase
    _strict_lines(out / "metrics.jsonl")


@pytest.mark.parametrize("args,flag,expected", [
    (["--tol", "5"], "--tol", "[1e-08, 1.0]"),
    (["--max-iter", "0"], "--max-iter", "[1, 10000]"),
    (["--gate", "30"], "--gate", "[-20.0, 20.0]"),
    (["--hidden", "abc"], "--hidden", "[1, 4096]"),
    (["--hidden", "2.5"], "--hidden", "integer"),
    (["--solver", "newton"], "--solver", "plain, damped, anderson"),
    (["--grad-mode", "magic"], "--grad-mode", "implicit, unrolled, one_step"),
    (["--task", "chess"], "--task", "sine, digits, adding, copy"),
    (["--spectral-bound", "-1"], "--spectral-bound", "positive"),
    (["--steps", "-3"], "--steps", "[0, 10000000]"),
    (["--model", "gru"], "--model", "does not fit task 'sine'"),
    (["--hiden", "8"], "--hiden", "unrecognized"),
])
def test_bad_arguments_exit_2_with_one_line(args, flag, expected, tmp_path, capsys):
    assert cli.main(["train", *args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert flag in err and expected in err, err
    assert not (tmp_path / "x").exists()


def test_resume_refuses_structural_changes_and_missing_runs(run_dir, tmp_path, capsys):
    assert cli.main(["train", "--resume", str(run_dir), "--hidden", "4"]) == 2
    assert "--hidden cannot change on --resume" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "config.json" in capsys.readouterr().err


def test_dashboard_help_and_dry_run(capsys):
    assert cli.main(["dashboard", "--help"]) == 0
    assert "streamlit" in capsys.readouterr().out.lower()
    code = cli.main(["dashboard", "--dry-run", "--server.port", "8502", "--server.headless=true"])
    out, err = capsys.readouterr()
    assert out.split()[1:4] == ["-m", "streamlit", "run"]
    assert out.strip().endswith("--server.enableStaticServing=true --server.port 8502 --server.headless=true")
    assert "--server.address=127.0.0.1" in out and str(Path("dashboard") / "app.py") in out
    app = Path(cli.__file__).resolve().parent.parent / "dashboard" / "app.py"
    assert code == (0 if app.is_file() else 1)
    assert app.is_file() or "not found" in err


def test_experiment_calls_run_paper(monkeypatch, tmp_path, capsys):
    calls = []
    fake = type(sys)("twnn_jax.experiments")
    fake.run_paper = lambda out_dir, **kw: calls.append((out_dir, kw))
    fake.check_results = lambda folder, name="paper": (True, "current")
    monkeypatch.setitem(sys.modules, "twnn_jax.experiments", fake)
    assert cli.main(["experiment", "paper", "--out", str(tmp_path), "--quick", "--seeds", "2"]) == 0
    assert calls == [(tmp_path, {"quick": True, "seeds": 2})]
    assert cli.main(["experiment", "paper", "--seeds", "0"]) == 2
    capsys.readouterr()
    assert cli.main(["experiment", "paper", "--check", "--out", str(tmp_path)]) == 0  # runs nothing
    assert len(calls) == 1 and "current" in capsys.readouterr().out


def test_via_subprocess(subprocess_run):
    out, proc = subprocess_run
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "final loss" in stdout and "spectral bound off, clip norm off" in stdout
    _check_run(out, 3)


def test_report_survives_non_finite_history():
    from twnn_jax.report import render_report
    from twnn_jax.train import TrainConfig

    history = [{"step": i, "loss": None if i == 2 else 1.0 / i, "metric": 0.5, "skipped": i == 2, "grad_norm": 0.0,
                "fwd_iters_mean": 3.0, "fwd_iters_max": 5, "bwd_iters_mean": 2.0, "bwd_iters_max": 300,
                "converged_frac": 0.5 if i == 3 else 1.0, "bwd_converged_frac": 1.0, "fwd_residual_max": None,
                "gate_mean": None} for i in range(1, 5)]
    page = render_report(history, config=TrainConfig(), summary={"final_loss": float("nan")}, metric_name="acc")
    assert page.count("<div id=") >= 4 and "NaN" not in page.split("<script")[0]


def _bad_paths(tmp_path: Path) -> dict[str, str]:
    """A name for each kind of bad directory path -> the path."""
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return {"an existing file": str(a_file), "a path under a file": str(a_file / "run"),
            "/proc/nope": "/proc/nope", "an unwritable place (/sys)": "/sys/nope",
            "an unwritable directory": str(locked / "run")}


@pytest.mark.parametrize("flag", ["--out", "--resume"])
def test_bad_paths_exit_at_once_with_one_line(flag, run_dir, tmp_path, monkeypatch, capsys):
    """Each bad path: exit 2 with one line naming the flag and what is wrong, before any trainer is built."""
    def no_jax_work(config):
        raise AssertionError("a trainer was built before the path was checked")

    monkeypatch.setattr(runs, "trainer_for", no_jax_work)
    monkeypatch.setattr(runs, "load_checkpoint", no_jax_work)
    cases = _bad_paths(tmp_path)
    if flag == "--resume":
        cases.pop("an unwritable directory")  # its parent exists: "no such directory", covered below
        cases["no such directory"] = str(tmp_path / "nothing")
    for kind, path in cases.items():
        if kind == "an unwritable directory" and os.geteuid() == 0:
            continue  # root writes anywhere the file system allows; /proc and /sys stand in for it
        args = ["train", *(TINY if flag == "--out" else ["--quiet"]), "--steps", "1", flag, path]
        assert cli.main(args) == 2, kind
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err, (kind, err)
        assert err.startswith(f"twnn train: error: {flag} {path}: "), (kind, err)
    # --out "" is refused, not read as the current directory
    assert cli.main(["train", *TINY, flag, ""]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"argument {flag}: the path is empty" in err, err
    # resuming into a bad --out is refused before the checkpoint is read
    assert cli.main(["train", "--resume", str(run_dir), "--out", "/proc/nope"]) == 2
    assert capsys.readouterr().err.startswith("twnn train: error: --out /proc/nope: cannot write in /proc")


def test_run_directory_checks_leave_nothing_behind(tmp_path):
    """The writability probe removes what it made; a path that will be created is fine."""
    runs.check_out_dir(tmp_path / "new" / "deeper")
    runs.check_out_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
