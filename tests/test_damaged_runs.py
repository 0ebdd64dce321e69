"""Damaged run directories and killed runs, verified by force.

Each kind of damage to a saved run ends `twnn train --resume` with exit code 2 and one line on stderr that
names the file and what is wrong (never a traceback, never a silent run). Temporary files left by a
process killed mid-write are removed when the directory is trained again (only files of `write_atomic`'s
own name pattern, for the run's own files, whose process is gone). And a real `twnn train` killed with
SIGKILL at random moments (seeded) resumes to exactly the run it would have been, bit for bit, or says
clearly that nothing was saved yet.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from twnn_jax import cli
from twnn_jax.checkpoint import load_checkpoint

# the structure of test_cli's TINY config: the in-process runs reuse its compiled step
TINY = ["--task", "sine", "--hidden", "8", "--batch-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("damaged") / "run"
    assert cli.main(["train", *TINY, "--steps", "3", "--out", str(out)]) == 0
    return out


def _set_leaf(path: Path, value: float) -> None:
    arrays = dict(np.load(path))
    leaf = next(k for k in sorted(arrays) if k.startswith("leaf_") and np.issubdtype(arrays[k].dtype, np.floating))
    arrays[leaf] = arrays[leaf].copy()
    arrays[leaf].flat[0] = value
    np.savez(path, **arrays)


def _history_not_json(d: Path) -> str:
    (d / "metrics.jsonl").unlink()
    (d / "history.json").write_text("{not json")
    return "history.json: not valid JSON"


def _nan_weight(d: Path) -> str:
    _set_leaf(d / "checkpoint.npz", np.nan)
    return "checkpoint.npz: leaf"


def _inf_weight(d: Path) -> str:
    _set_leaf(d / "checkpoint.npz", -np.inf)
    return "non-finite value"


def _random_bytes(d: Path) -> str:
    (d / "checkpoint.npz").write_bytes(random.Random(0).randbytes(5000))
    return "checkpoint.npz: not a twnn checkpoint"


def _empty_checkpoint(d: Path) -> str:
    (d / "checkpoint.npz").write_bytes(b"")
    return "checkpoint.npz: not a twnn checkpoint"


def _truncated_checkpoint(d: Path) -> str:
    data = (d / "checkpoint.npz").read_bytes()
    (d / "checkpoint.npz").write_bytes(data[: len(data) // 2])
    return "checkpoint.npz"


def _config_not_json(d: Path) -> str:
    (d / "config.json").write_text("[1, 2")
    return "config.json: not valid JSON"


def _checkpoint_missing(d: Path) -> str:
    (d / "checkpoint.npz").unlink()
    return "checkpoint.npz: no such file"


DAMAGE = [_history_not_json, _nan_weight, _inf_weight, _random_bytes, _empty_checkpoint, _truncated_checkpoint,
          _config_not_json, _checkpoint_missing]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_damage_gets_one_clear_line(saved_run, tmp_path, capsys, damage):
    d = tmp_path / "run"
    shutil.copytree(saved_run, d)
    expected = damage(d)
    before = sorted(os.listdir(d))
    assert cli.main(["train", "--resume", str(d), "--steps", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "allow_pickle" not in err, err
    assert lines[0].startswith("twnn train: error: --resume: ") and expected in lines[0], err
    assert str(d) in lines[0]  # names the file, with its directory
    assert sorted(os.listdir(d)) == before  # nothing trained, nothing written


def test_resume_removes_stale_temporaries_it_owns(saved_run, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(saved_run, d)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)  # a process that has ended: its files are stale
    stale = [d / f".checkpoint.npz.{dead}.0123abcd.tmp", d / f".report.html.{dead}.89abcdef.tmp",
             d / f".metrics.jsonl.{dead}.00000000.tmp"]
    kept = [d / f".checkpoint.npz.{os.getppid()}.0123abcd.tmp",  # a live process's write in progress
            d / f".notes.txt.{dead}.0123abcd.tmp",  # not one of the run's files
            d / ".checkpoint.npz.tmp", d / "checkpoint.npz.1.0123abcd.tmp"]  # not the pattern
    for path in stale + kept:
        path.write_bytes(b"x" * 100)
    assert cli.main(["train", "--resume", str(d), "--steps", "1", "--quiet"]) == 0
    assert not [p.name for p in stale if p.exists()]
    assert all(p.exists() for p in kept)
    assert int(load_checkpoint(d)[1].step) == 4


def test_resume_with_zero_steps_finishes_a_run_killed_after_its_last_checkpoint(saved_run, tmp_path):
    """A kill while the final checkpoint's config.json is written leaves the last step saved, a stale
    temporary and no summary: `--resume --steps 0` trains nothing, removes the temporary and writes the
    summary and report."""
    d = tmp_path / "run"
    shutil.copytree(saved_run, d)
    step = int(load_checkpoint(d)[1].step)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    torn = d / f".config.json.{int(gone.stdout)}.3dbdd100.tmp"
    torn.write_text('{"task": "si')
    (d / "summary.json").unlink()
    assert cli.main(["train", "--resume", str(d), "--steps", "0", "--quiet"]) == 0
    assert not torn.exists()
    summary = json.loads((d / "summary.json").read_text())
    assert summary["steps"] == step and summary["new_steps"] == 0
    assert int(load_checkpoint(d)[1].step) == step and (d / "report.html").exists()


# ---- SIGKILL at random moments ---------------------------------------------------------------------------
STEPS, EVERY, KILLS = 12, 3, 3


def _train(args, **kw) -> subprocess.Popen:
    # no compilation cache: a SIGKILL in the middle of writing a cache entry leaves a torn one, which JAX reports
    # (a warning) on every later start, and this test counts the lines a failed resume prints
    env = {**os.environ, "TWNN_COMPILE_CACHE": "0"}
    return subprocess.Popen([sys.executable, "-m", "twnn_jax.cli", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def _saved_step(d: Path) -> int | None:
    try:
        return int(load_checkpoint(d)[1].step)
    except (OSError, ValueError):
        return None


def _losses(d: Path) -> list:
    records = map(json.loads, (d / "metrics.jsonl").read_text().splitlines())
    return [(r["step"], r["loss"], r["grad_norm"]) for r in records]


def _logged(d: Path) -> int:
    try:
        return len((d / "metrics.jsonl").read_text().splitlines())
    except OSError:
        return 0


def _args(run: Path, step: int | None) -> list[str]:
    if step is None:  # nothing saved yet: a fresh start (over whatever a kill left)
        return [*TINY, "--steps", str(STEPS), "--checkpoint-every", str(EVERY), "--out", str(run), "--force"]
    return ["--resume", str(run), "--steps", str(STEPS - step), "--checkpoint-every", str(EVERY), "--quiet"]


@pytest.mark.e2e
def test_sigkill_at_random_moments_resumes_bitwise(tmp_path):
    """A real `twnn train --checkpoint-every 3` killed (SIGKILL) KILLS times at seeded random moments (during
    start-up, or right as a chosen step is logged, which is often mid-checkpoint), then resumed to the end,
    equals an uninterrupted run: every saved array bit for bit, and the logged losses. A kill before the
    first checkpoint leaves nothing to resume: `--resume` says so in one line."""
    ref = tmp_path / "ref"
    proc = _train([*TINY, "--steps", str(STEPS), "--checkpoint-every", str(EVERY), "--out", str(ref)])
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err

    rng = random.Random(12)  # kills: at step 7 (mid-run), during a start-up, at step 10
    run = tmp_path / "killed"
    kills = []
    for _ in range(KILLS):
        step = _saved_step(run)
        target = rng.randint(0, STEPS - 1)  # kill once this many steps are logged; 0: during start-up
        proc = _train(_args(run, step))
        if target <= (step or 0):
            time.sleep(rng.uniform(0.5, 4.0))
        else:
            while _logged(run) < target and proc.poll() is None:
                time.sleep(0.005)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # it finished first (a fast machine): the checks below still hold
            pass
        proc.communicate(timeout=60)
        kills.append((target, _logged(run), _saved_step(run)))
        if step is not None:
            assert _saved_step(run) is not None and _saved_step(run) >= step  # a kill never loses a checkpoint
        elif run.exists() and _saved_step(run) is None:
            p = _train(["--resume", str(run), "--steps", "1", "--quiet"])
            _, err = p.communicate(timeout=600)
            assert p.returncode == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
            assert "no such file" in err or "not a twnn checkpoint" in err or "not valid JSON" in err, err
    print("kills (target step, steps logged, checkpoint step):", kills)
    assert any(saved is not None and 0 < saved < STEPS for _, _, saved in kills)  # a resume had work left

    # finish the run unless the last process did: a kill right after the final checkpoint (in the middle of
    # writing config.json, say) leaves step STEPS saved but no summary, and `--resume --steps 0` completes it
    step = _saved_step(run)
    summary = run / "summary.json"
    if step != STEPS or not summary.exists() or json.loads(summary.read_text())["steps"] != STEPS:
        proc = _train(_args(run, step))
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    assert json.loads(summary.read_text())["steps"] == STEPS
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]

    want, got = np.load(ref / "checkpoint.npz"), np.load(run / "checkpoint.npz")
    assert sorted(want.files) == sorted(got.files)
    for name in want.files:
        if name != "__meta__":
            assert want[name].dtype == got[name].dtype and want[name].tobytes() == got[name].tobytes(), name
    assert _losses(run) == _losses(ref)
