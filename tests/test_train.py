"""Training: the loss goes down on every task, live controls never recompile, checkpoints round-trip and
a resumed run continues bitwise, damaged checkpoints fail clearly, runs are reproducible.

Tiny sizes; trainers come from `twnn_jax.train.trainer_for` (one compile per config structure).
"""

import json
import math
import os

import jax
import numpy as np
import pytest

from twnn_jax import checkpoint
from twnn_jax.checkpoint import dumps_strict, json_safe, load_checkpoint, save_checkpoint
from twnn_jax.train import STEPS_PER_CALL, TrainConfig, live_controls, summarize, summarize_run, train, trainer_for

# (config, steps) per task: a few hundred milliseconds of training each once compiled
RUNS = {
    "sine": (TrainConfig(task="sine", hidden=8, batch_size=16, lr=1e-2), 60),
    "digits": (TrainConfig(task="digits", hidden=8, batch_size=16, lr=1e-2), 60),
    "adding": (TrainConfig(task="adding", hidden=8, batch_size=16, seq_len=8, lr=1e-2), 60),
    "copy": (TrainConfig(task="copy", hidden=16, batch_size=16, seq_len=1, lr=1e-2), 250),
}
SINE = RUNS["sine"][0]


def _host(tree):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def _bitwise_equal(a, b):
    la, lb = _host(a), _host(b)
    return len(la) == len(lb) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(la, lb))


@pytest.mark.parametrize("task", list(RUNS))
def test_loss_goes_down(task):
    cfg, steps = RUNS[task]
    trainer = trainer_for(cfg)
    _, history = train(trainer, steps, live=live_controls(cfg))
    losses = np.array([h["loss"] for h in history])
    n = max(5, steps // 10)
    first, last = losses[:n].mean(), losses[-n:].mean()
    assert np.all(np.isfinite(losses)) and not any(h["skipped"] for h in history)
    assert last < 0.95 * first, (task, first, last)
    assert [h["step"] for h in history] == list(range(1, steps + 1))


def test_live_controls_do_not_recompile():
    trainer = trainer_for(SINE)
    state = trainer.init(0)
    state, _ = trainer.step(state, live_controls(SINE))
    compiled = trainer.step._cache_size()
    for changes in ({"tol": 1e-5}, {"max_iter": 7}, {"gate": 3.0}, {"damping": 0.2}, {"bwd_tol": 1e-6},
                    {"lr": 0.3}, {"tol": 0.5, "max_iter": 1000, "gate": -20.0}):
        state, _ = trainer.step(state, live_controls(SINE, **changes))
    assert trainer.step._cache_size() == compiled


def test_run_of_many_steps_equals_one_step_calls():
    """Trainer.run (a compiled loop of steps) gives bitwise the state of one-step calls, and the same rows."""
    trainer, live = trainer_for(SINE), live_controls(SINE)
    start = trainer.init(1)
    n = STEPS_PER_CALL + 5  # a full call and a partial one
    chunked, rows = train(trainer, n, state=start, live=live)
    state, single = start, []
    for _ in range(n):
        state, out = trainer.run(state, live, 1)
        single += summarize_run(out)
    assert _bitwise_equal(chunked, state)
    assert rows == single
    assert [r["step"] for r in rows] == list(range(1, n + 1))
    # the single-step function computes the same summary as the loop's first step
    _, metrics = trainer.step(start, live)
    assert summarize(metrics) == rows[0]
    # n beyond STEPS_PER_CALL is clipped, never an out-of-bounds write
    _, out = trainer.run(start, live, STEPS_PER_CALL + 7)
    assert int(out["count"]) == STEPS_PER_CALL


def test_summaries_of_a_model_without_gates():
    """A gateless model (plain residual net) has no gate_mean: both summaries say None, not a KeyError."""
    cfg = TrainConfig(task="digits", model="resnet_plain", hidden=8, batch_size=8)
    trainer, live = trainer_for(cfg), live_controls(cfg)
    start = trainer.init(0)
    _, metrics = trainer.step(start, live)
    single = summarize(metrics)
    assert single["gate_mean"] is None and single["step"] == 1
    _, rows = train(trainer, 2, state=start, live=live)
    assert rows[0] == single and rows[1]["gate_mean"] is None


def test_run_stops_at_the_loss_target():
    trainer, live = trainer_for(SINE), live_controls(SINE)
    _, reference = train(trainer, 60, state=trainer.init(0), live=live)
    losses = [r["loss"] for r in reference]
    target = sorted(losses)[len(losses) // 2]  # reached for the first time somewhere inside the run
    first = next(i for i, loss in enumerate(losses) if loss <= target)
    _, history = train(trainer, 60, state=trainer.init(0), live=live, stop_below=target)
    assert len(history) == first + 1
    assert history == reference[: first + 1]


def test_run_does_not_recompile_for_live_controls_or_counts():
    trainer = trainer_for(SINE)
    state = trainer.init(0)
    state, _ = trainer.run(state, live_controls(SINE), 3)
    compiled = trainer.run._cache_size()
    for n, changes in ((1, {"tol": 1e-5}), (STEPS_PER_CALL, {"max_iter": 7}), (2, {"gate": 3.0}),
                       (5, {"lr": 0.3, "damping": 0.2, "bwd_tol": 1e-6})):
        state, _ = trainer.run(state, live_controls(SINE, **changes), n, 0.01)
    assert trainer.run._cache_size() == compiled


def test_checkpoint_round_trip_and_bitwise_resume(tmp_path):
    trainer, live = trainer_for(SINE), live_controls(SINE)
    start = trainer.init(SINE.seed)
    straight, history = train(trainer, 8, state=start, live=live)

    first, history_a = train(trainer, 5, state=start, live=live)
    save_checkpoint(tmp_path, first, SINE, history_a)
    config, loaded = load_checkpoint(tmp_path)
    assert config == SINE
    assert _bitwise_equal(loaded, first)
    assert checkpoint.load_history(tmp_path) == json_safe(history_a)

    compiled = trainer.step._cache_size()
    resumed_trainer = trainer_for(config)
    resumed, history_b = train(resumed_trainer, 3, state=loaded, live=live_controls(config))
    assert resumed_trainer.step._cache_size() == compiled  # a loaded state does not recompile the step
    assert _bitwise_equal(resumed, straight)  # params, Adam state, step and data key
    assert history_a + history_b == history
    assert int(resumed.step) == 8


def _damage(kind, directory):
    npz, cfg = directory / checkpoint.STATE_FILE, directory / checkpoint.CONFIG_FILE
    data = npz.read_bytes()
    if kind == "truncated":
        npz.write_bytes(data[: len(data) // 2])
    elif kind == "flipped-byte":
        b = bytearray(data)
        b[len(b) // 2] ^= 0xFF
        npz.write_bytes(bytes(b))
    elif kind == "empty":
        npz.write_bytes(b"")
    elif kind == "missing-leaf":
        with np.load(npz) as f:
            arrays = {k: f[k] for k in f.files if k != "leaf_00002"}
        np.savez(npz, **arrays)
    elif kind == "other-config":
        d = json.loads(cfg.read_text())
        d["hidden"] = 16
        cfg.write_text(json.dumps(d))
    elif kind == "bad-json":
        cfg.write_text("{not json")
    elif kind == "unknown-key":
        d = json.loads(cfg.read_text())
        d["colour"] = "blue"
        cfg.write_text(json.dumps(d))
    elif kind == "shape":  # a state saved under a config it does not fit
        save_checkpoint(directory, trainer_for(SINE).init(0), TrainConfig(task="sine", hidden=12, batch_size=16))
    return cfg if kind in ("bad-json", "unknown-key") else npz


@pytest.mark.parametrize("kind", ["truncated", "flipped-byte", "empty", "missing-leaf", "other-config", "bad-json",
                                  "unknown-key", "shape"])
def test_damaged_checkpoint_raises_clear_value_error(tmp_path, kind):
    save_checkpoint(tmp_path, trainer_for(SINE).init(0), SINE)
    culprit = _damage(kind, tmp_path)
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path)
    assert str(culprit) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checkpoint(tmp_path)


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    trainer = trainer_for(SINE)
    old = trainer.init(0)
    save_checkpoint(tmp_path, old, SINE)
    new, _ = train(trainer, 2, state=old, live=live_controls(SINE))

    def power_cut(src, dst):
        raise OSError("simulated power cut")

    monkeypatch.setattr(checkpoint.os, "replace", power_cut)
    with pytest.raises(OSError, match="power cut"):
        save_checkpoint(tmp_path, new, SINE)
    monkeypatch.undo()
    _, loaded = load_checkpoint(tmp_path)
    assert _bitwise_equal(loaded, old)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_same_seed_same_history():
    trainer, live = trainer_for(SINE), live_controls(SINE)
    _, a = train(trainer, 6, state=trainer.init(3), live=live)
    _, b = train(trainer, 6, state=trainer.init(3), live=live)
    _, c = train(trainer, 6, state=trainer.init(4), live=live)
    assert a == b
    assert [h["loss"] for h in a] != [h["loss"] for h in c]


def test_strict_json_maps_non_finite_to_null():
    record = {"loss": float("nan"), "metric": float("inf"), "x": np.float32(-np.inf), "n": np.int32(3),
              "ok": np.bool_(True), "v": [1.0, float("nan")], "a": np.array([0.5, np.nan])}
    text = dumps_strict(record)
    parsed = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict token {c}"))
    assert parsed == {"loss": None, "metric": None, "x": None, "n": 3, "ok": True, "v": [1.0, None],
                      "a": [0.5, None]}
    assert json_safe(math.pi) == math.pi


def test_run_management_in_the_library(tmp_path, capsys):
    """twnn_jax.runs trains a run into its directory, resumes it and refuses to overwrite it (no CLI involved)."""
    from twnn_jax import runs

    out = tmp_path / "r"
    run = runs.new_run(SINE, out)
    result = runs.train_run(run, 3, checkpoint_every=2, progress=True)
    assert not result.interrupted and result.summary["steps"] == 3 and result.summary["new_steps"] == 3
    for name in (runs.METRICS_FILE, runs.SUMMARY_FILE, runs.REPORT_FILE, checkpoint.STATE_FILE,
                 checkpoint.CONFIG_FILE):
        assert (out / name).is_file(), name
    assert json.loads((out / runs.SUMMARY_FILE).read_text())["final_loss"] == result.summary["final_loss"]
    bar = capsys.readouterr().err  # the progress bar (tqdm): the numbers of the last step
    for word in ("3/3", "step 3", "loss", "mse", "fwd", "bwd", "conv"):
        assert word in bar, (word, bar)
    resumed = runs.resume_run(out, changes={"lr": 3e-3})
    assert int(resumed.state.step) == 3 and [h["step"] for h in resumed.history] == [1, 2, 3]
    assert resumed.config.lr == 3e-3 and resumed.out == out
    with pytest.raises(runs.RunError, match="already holds a run"):
        runs.new_run(SINE, out)
    with pytest.raises(runs.RunError, match="--hidden cannot change on --resume"):
        runs.resume_run(out, changes={"hidden": 4})
    assert "runs/" in str(runs.default_out(SINE)) and "Traceback" not in runs.summary_text(result.summary, out)
