"""`twnn sweep` (twnn_jax/sweep.py) and data-parallel training (twnn_jax/data_parallel.py).

Several devices need XLA_FLAGS before JAX starts, so those checks run in subprocesses: one with 8 CPU
devices (tests/sweep_devices_check.py), and two `twnn sweep` processes joined by jax.distributed on
loopback, 2 CPU devices each. Tolerances, float32 throughout:
- the sweep on 8 devices against the sweep on 1, and two processes against one: rtol 1e-5;
- each configuration against its own run through `train.train`: per-step losses and the evaluation numbers
  to rtol 1e-5, the iteration counts exactly;
- data-parallel digits against one device: losses to rtol 1e-5, parameters to 1e-5 of their largest size.
The batched and partitioned programs may round differently (sums in another order) and 25 steps of Adam
carry that along; measured: at most 3e-7 relative for the sweeps, 1e-7 for data-parallel (a float32 ulp).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twnn_jax import cli
from twnn_jax.checkpoint import dumps_strict
from twnn_jax.settings import SettingError, TrainConfig
from twnn_jax.sweep import (
    AXES,
    DEFAULT_AXES,
    MAX_CONFIGS,
    SweepResult,
    distributed_settings,
    grid_configs,
    heatmap_grid,
    make_grid,
    parse_axis,
    write_sweep,
)

ROOT = Path(__file__).resolve().parents[1]
import sweep_devices_check as check  # noqa: E402 - the subprocess's grid and steps (tests/ is on pytest's path)

RTOL_DEVICES = 1e-5
RTOL_SINGLE = 1e-5


def _strict(text: str):
    def bad(token):
        raise AssertionError(f"non-strict JSON token {token}")

    return json.loads(text, parse_constant=bad)


# ---- the grid and its flags ----------------------------------------------------------------------------
def test_parse_axis_reads_lists_strictly():
    assert parse_axis("tol", "1e-2, 1e-3,1e-4") == (1e-2, 1e-3, 1e-4)
    assert parse_axis("seed", "0,7") == (0, 7)
    assert parse_axis("solver", "plain,anderson") == ("plain", "anderson")
    for name, text in [("tol", "1e-3,abc"), ("tol", ""), ("tol", "1e-3,,1e-4"), ("seed", "1_0"), ("seed", "٣"),
                       ("gate", "0,nan"), ("max_iter", "0"), ("tol", "2"), ("solver", "plain,newton")]:
        with pytest.raises(SettingError, match=rf"^{name} must be "):
            parse_axis(name, text)
    with pytest.raises(ValueError, match="more than once"):
        parse_axis("gate", "1,1.0")
    with pytest.raises(ValueError, match="cannot be swept"):
        parse_axis("hidden", "8,16")


def test_grid_defaults_order_and_size():
    grid = make_grid(TrainConfig(task="sine", lr=3e-3), {"seed": (4,)})
    assert grid.axes["tol"] == DEFAULT_AXES["tol"] and grid.axes["gate"] == DEFAULT_AXES["gate"]
    assert grid.axes["seed"] == (4,) and grid.axes["lr"] == (3e-3,) and set(grid.axes) == set(AXES)
    configs = grid_configs(grid)
    assert len(configs) == 3 * 4 * 1 * 1
    assert [(c.tol, c.gate) for c in configs[:5]] == [(1e-2, -4.0), (1e-2, -2.0), (1e-2, 0.0), (1e-2, 2.0),
                                                      (1e-3, -4.0)]
    assert all(c.seed == 4 and c.lr == 3e-3 and c.task == "sine" for c in configs)
    with pytest.raises(ValueError, match=f"at most {MAX_CONFIGS}"):
        make_grid(TrainConfig(), {"seed": tuple(range(MAX_CONFIGS))})
    with pytest.raises(ValueError, match="tol must be"):
        make_grid(TrainConfig(), {"tol": (5.0,)})


BAD_ARGS = [
    (["--tol", "1e-3,abc"], "--tol", "tol must be a number in [1e-08, 1.0]; got 'abc'"),
    (["--tol", ","], "--tol", "comma-separated list"),
    (["--gate", "-4,-4"], "--gate", "more than once"),
    (["--gate", "-4,-30"], "--gate", "gate must be a number in [-20.0, 20.0]; got '-30'"),
    (["--seed", "0,-1"], "--seed", "seed must be an integer"),
    (["--max-iter", "10,0"], "--max-iter", "max_iter must be an integer in [1, 10000]"),
    (["--solver", "plain,nope"], "--solver", "solver must be one of plain, damped, anderson"),
    (["--grad-mode", "implicit,"], "--grad-mode", "comma-separated list"),
    (["--steps", "0"], "--steps", "steps must be an integer in [1, 10000000]"),
    (["--hidden", "8,16"], "--hidden", "hidden must be an integer"),
    (["--devices", "0"], "--devices", "devices must be an integer"),
    (["--num-processes", "2"], "--num-processes", "need --coordinator"),
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"], "--process-id", "below"),
    (["--out", "/proc/nope"], "--out", "cannot write"),
    (["--devices", "2", "--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "1"], "--devices",
     "one process only"),
]


@pytest.mark.parametrize("args,flag,expected", BAD_ARGS, ids=[" ".join(a[0]) for a in BAD_ARGS])
def test_bad_sweep_arguments_exit_2_with_one_line(args, flag, expected, capsys, monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["sweep", "--task", "sine", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("twnn sweep: error: ") and flag in err and expected in err, err


def test_existing_sweep_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "sweep.json").write_text("{}")
    assert cli.main(["sweep", "--task", "sine", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "already holds a sweep" in err and "--force" in err and err.count("\n") == 1


def test_distributed_settings_from_flags_or_environment():
    assert distributed_settings(environ={}) is None
    assert distributed_settings("h:1", 2, 1, environ={}) == ("h:1", 2, 1)
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert distributed_settings(environ=env) == ("10.0.0.1:1234", 4, 3)
    assert distributed_settings(process_id=0, environ=env) == ("10.0.0.1:1234", 4, 0)  # a flag wins
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES"):
        distributed_settings("h:1", environ={})
    with pytest.raises(ValueError, match="integer"):
        distributed_settings(environ={**env, "JAX_PROCESS_ID": "x"})


def _fake_result() -> SweepResult:
    grid = make_grid(TrainConfig(task="sine"), {"tol": (1e-2, 1e-3), "gate": (-2.0, 0.0), "seed": (0, 1)})
    rows = []
    for i, c in enumerate(grid_configs(grid)):
        rows.append({"index": i, **{a: getattr(c, a) for a in AXES}, "final_loss": float(i),
                     "final_metric": float(i), "fwd_iters_mean": 2.0 + i, "eval_loss": float(i) + 0.5,
                     "eval_metric": math.nan if i == 0 else float(i)})
    return SweepResult(grid, 5, rows, np.zeros((len(rows), 5), np.float32),
                       {"devices": {"count": 1, "backend": "cpu"}, "configurations": len(rows), "programs": 1,
                        "padded_to": len(rows), "seconds": 1.0, "compile_seconds": 0.5, "train_seconds": 0.5})


def test_outputs_are_strict_and_heatmaps_average_the_other_axes(tmp_path):
    result = _fake_result()
    tols, gates, z = heatmap_grid(result.rows, "fwd_iters_mean")
    assert tols == [1e-2, 1e-3] and gates == [-2.0, 0.0]
    # rows: tol slowest, then gate, then seed: cell (1e-2, -2) holds configurations 0 and 1
    assert z.tolist() == [[2.5, 4.5], [6.5, 8.5]]
    _, _, acc = heatmap_grid(result.rows, "eval_metric")
    assert acc[0, 0] == 1.0  # the NaN of configuration 0 left out, not averaged in
    info = write_sweep(result, tmp_path)
    table = _strict((tmp_path / "sweep.json").read_text())
    assert table["rows"][0]["eval_metric"] is None and len(table["rows"]) == 8 and len(table["losses"]) == 8
    summary = _strict((tmp_path / "summary.json").read_text())
    assert summary == _strict(dumps_strict(info)) and summary["best_by_eval_loss"]["index"] == 0
    assert "tol" not in summary["base_config"] and summary["axes"]["seed"] == [0, 1]
    lines = (tmp_path / "sweep.csv").read_text().splitlines()
    assert lines[0].split(",")[:3] == ["index", *AXES[:2]] and len(lines) == 9
    page = (tmp_path / "heatmaps.html").read_text()
    assert page.count('"kind":"sweep_heatmap"') == 3 and "Evaluation mse" in page


# ---- 8 devices: the same numbers as one device, and as each configuration's own run ----------------------
@pytest.fixture(scope="module")
def eight_devices():
    # XLA_FLAGS replaced, not extended: these checks compare programs of different shapes (1 and 8 devices, a
    # sweep and single runs) to 1e-5, which holds at XLA's usual optimisation and not at the level the rest
    # of the suite compiles with (tests/conftest.py): there one adjoint solve in 1,600 took one more iteration
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "TWNN_COMPILE_CACHE": "0"}
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "sweep_devices_check.py")], env=env,
                          capture_output=True, text=True, timeout=3000, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


NUMBERS = ("final_loss", "final_metric", "fwd_iters_mean", "bwd_iters_mean", "eval_loss", "eval_metric",
           "eval_fwd_iters_mean", "eval_converged_frac", "not_converged_frac")


@pytest.mark.e2e
def test_sweep_on_eight_devices_equals_one_device(eight_devices):
    eight, one = eight_devices["eight"], eight_devices["one"]
    assert eight["info"]["devices"]["mesh"] == 8 and one["info"]["devices"]["mesh"] == 1
    assert eight["info"]["configurations"] == one["info"]["configurations"] == 36
    assert eight["info"]["padded_to"] == 40 and one["info"]["padded_to"] == 36
    for a, b in zip(eight["rows"], one["rows"]):
        assert {k: a[k] for k in AXES} == {k: b[k] for k in AXES}
        for key in NUMBERS:
            np.testing.assert_allclose(a[key], b[key], rtol=RTOL_DEVICES, err_msg=f"{key} of {a}")
    np.testing.assert_allclose(eight["losses"], one["losses"], rtol=RTOL_DEVICES)


@pytest.mark.e2e
def test_each_configuration_equals_its_own_run(eight_devices):
    rows, losses, singles = eight_devices["eight"]["rows"], eight_devices["eight"]["losses"], eight_devices["singles"]
    assert len(rows) == len(singles) == 36
    configs = grid_configs(make_grid(check.BASE, check.AXES))
    assert any(r["not_converged_frac"] > 0 for r in rows) and any(r["not_converged_frac"] == 0 for r in rows)
    for config, row, curve, single in zip(configs, rows, losses, singles):
        assert (row["tol"], row["gate"], row["max_iter"], row["seed"]) == (config.tol, config.gate, config.max_iter,
                                                                         config.seed)
        assert len(curve) == len(single["losses"]) == check.STEPS
        np.testing.assert_allclose(curve, single["losses"], rtol=RTOL_SINGLE, err_msg=str(config))
        assert row["fwd_iters_mean"] == pytest.approx(single["fwd_iters_mean"], rel=1e-6)
        assert row["not_converged_frac"] == np.mean(np.asarray(single["converged_frac"]) < 1.0)
        for key in ("eval_loss", "eval_metric", "eval_fwd_iters_mean", "eval_converged_frac"):
            np.testing.assert_allclose(row[key], single[key], rtol=RTOL_SINGLE, err_msg=f"{key} of {config}")
    # the grid's runs do differ from one another (a sweep of identical runs would pass the checks above)
    assert len({round(r["final_loss"], 6) for r in rows}) >= 12


@pytest.mark.e2e
def test_data_parallel_digits_equals_one_device(eight_devices):
    dp = eight_devices["dp"]
    assert dp["state_devices"] == 8 and dp["batch_split"]  # each device's step holds 64 / 8 samples
    assert len(dp["losses_dp"]) == len(dp["losses_one"]) == check.DP_STEPS
    np.testing.assert_allclose(dp["losses_dp"], dp["losses_one"], rtol=RTOL_SINGLE)
    np.testing.assert_allclose(dp["fwd_iters_dp"], dp["fwd_iters_one"], rtol=1e-6)
    assert dp["param_max_abs_diff"] <= 1e-5 * dp["param_max_abs"]
    assert dp["losses_one"][-1] < dp["losses_one"][0]  # it trained


# ---- two processes (jax.distributed on loopback): the same numbers as one process -----------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _grid_flags() -> list[str]:
    return [f"--{name.replace('_', '-')}={','.join(str(v) for v in values)}" for name, values in check.AXES.items()]


@pytest.mark.e2e
def test_two_processes_on_loopback_equal_one_process(eight_devices, tmp_path):
    out = tmp_path / "sweep"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "TWNN_COMPILE_CACHE": "0"}
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(name, None)
    port = _free_port()
    procs = []
    for index in range(2):  # process 0 by flags, process 1 by the environment variables
        args = [sys.executable, "-m", "twnn_jax.cli", "sweep", "--task", check.BASE.task, "--steps", str(check.STEPS),
                *_grid_flags(), "--out", str(out)]
        penv = dict(env)
        if index == 0:
            args += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "0"]
        else:
            penv.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="1")
        procs.append(subprocess.Popen(args, env=penv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      cwd=tmp_path))
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=1500))
        finally:
            if proc.poll() is None:
                proc.kill()
    for proc, (_, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stderr[-3000:]
        assert "Traceback" not in stderr
    # process 0 writes and reports (gloo's own lines about connected peers go to stdout too)
    assert "36 configurations" in outputs[0][0] and "configurations" not in outputs[1][0]
    summary = _strict((out / "summary.json").read_text())
    assert summary["devices"]["process_count"] == 2 and summary["devices"]["count"] == 4
    assert summary["devices"]["local_count"] == 2 and summary["padded_to"] == 36
    table = _strict((out / "sweep.json").read_text())
    reference = eight_devices["one"]  # one process, one device
    for a, b in zip(table["rows"], reference["rows"]):
        assert {k: a[k] for k in AXES} == {k: b[k] for k in AXES}
        for key in NUMBERS:
            np.testing.assert_allclose(a[key], b[key], rtol=RTOL_DEVICES, err_msg=f"{key} of {a}")
    np.testing.assert_allclose(table["losses"], reference["losses"], rtol=RTOL_DEVICES)
    assert {p.name for p in out.iterdir()} == {"sweep.csv", "sweep.json", "heatmaps.html", "summary.json"}
