"""The dashboard's trainer thread (`twnn_dashboard.session.Runner`) against the library's headless loop.

The runner keeps two calls of the compiled training loop in flight; these tests check that what it
records is exactly what `twnn_jax.train.train` computes: every step once, in order, stopping exactly
where auto-pause says. Also the start of JAX with its compute threads on one core (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from twnn_dashboard import session
from twnn_jax.train import STEPS_PER_CALL, live_controls, train

CONFIG = session.make_config("sine")


def _play_until_paused(runner: session.Runner, timeout: float = 120.0) -> None:
    assert runner.play()
    deadline = time.time() + timeout
    while runner.playing and time.time() < deadline:
        time.sleep(0.05)
    assert not runner.playing, "the runner did not auto-pause"


@pytest.fixture
def runner():
    r = session.Runner(CONFIG, warm_up=False)
    yield r
    r.close()


def test_auto_pause_lands_exactly_and_matches_headless(runner):
    """Past several calls (two in flight): every step recorded once, the same numbers as train()."""
    target = 2 * STEPS_PER_CALL + 45
    runner.set_auto_pause(target, None)
    _play_until_paused(runner)
    assert runner.step_count == target and int(runner.state.step) == target
    history = runner.history
    assert [h["step"] for h in history] == list(range(1, target + 1))
    trainer = session.get_trainer(CONFIG)
    _, reference = train(trainer, target, state=trainer.init(CONFIG.seed), live=live_controls(CONFIG))
    assert [h["loss"] for h in history] == [r["loss"] for r in reference]
    assert "auto-paused at step" in runner.message
    # playing on continues from there, exactly
    runner.set_auto_pause(target + 30, None)
    _play_until_paused(runner)
    assert [h["step"] for h in runner.history] == list(range(1, target + 31))


def test_auto_pause_at_loss_stops_at_the_first_step_below(runner):
    trainer = session.get_trainer(CONFIG)
    _, reference = train(trainer, 400, state=trainer.init(CONFIG.seed), live=live_controls(CONFIG))
    losses = [r["loss"] for r in reference]
    target = sorted(losses)[len(losses) // 3]
    first = next(i for i, loss in enumerate(losses) if loss <= target) + 1
    runner.set_auto_pause(None, target)
    _play_until_paused(runner)
    assert runner.step_count == first, (first, runner.step_count)
    assert [h["step"] for h in runner.history] == list(range(1, first + 1))
    assert "reached the target" in runner.message


def test_reset_while_playing_recovers_a_fresh_run(runner):
    assert runner.play()
    deadline = time.time() + 60
    while runner.step_count < 10 and time.time() < deadline:
        time.sleep(0.05)
    runner.reset()
    time.sleep(0.3)  # a call in flight at the reset must not be recorded
    assert not runner.playing and runner.step_count == 0 and runner.history == []
    assert int(runner.state.step) == 0
    assert runner.step(3) == 3 and [h["step"] for h in runner.history] == [1, 2, 3]


@pytest.mark.e2e
@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux CPU affinity and at least 2 cores")
def test_jax_starts_with_its_threads_on_one_core_and_the_caller_keeps_all():
    code = (
        "import os;"
        "from twnn_dashboard.cpu_threads import start_jax_on_one_core;"
        "before = os.sched_getaffinity(0); first = start_jax_on_one_core(); second = start_jax_on_one_core();"
        "import jax.numpy as jnp; assert float(jnp.arange(4.0).sum()) == 6.0;"
        "mine = os.sched_getaffinity(0);"
        "tasks = os.listdir('/proc/self/task');"
        "pinned = sum(1 for t in tasks if len(os.sched_getaffinity(int(t))) == 1);"
        "print(first, second, mine == before, pinned)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, second, restored, pinned = out.stdout.split()
    assert (first, second, restored) == ("True", "False", "True")
    assert int(pinned) >= 1  # the backend's threads, created while the caller was pinned


@pytest.mark.e2e
def test_sessions_and_pages_take_turns_on_xlas_thread():
    """With XLA's pool on one core, XLA runs the next queued training call as soon as the one it depends on
    ends, on the same pool thread. A loop that always had a call queued kept that thread: another session's
    run trained at 0-1 % of its share, and the page's evaluate/generate/contraction waited seconds (or for
    good). So while several runners play, each keeps one call in flight. Runs in a subprocess, where JAX
    starts as in the dashboard, and which must then exit cleanly.

    Asserted here only what no machine load changes: one call in flight each while both play, both runs
    make progress, the page's computations return while both train, every step is recorded once and in
    order, a clean exit. How fair the turns are and how long the page waits are measured by
    `python benchmarks/bench_dashboard_turns.py` (wall-clock, JSON out)."""
    code = textwrap.dedent("""
        import time
        from twnn_dashboard.cpu_threads import start_jax_on_one_core
        start_jax_on_one_core()
        from twnn_dashboard import session
        r = session.Runner(session.make_config('sine'), warm_up=False)
        other = session.Runner(session.make_config('sine', seed=1), warm_up=False)  # another session's run
        r.step(2); r.evaluate(); r.generate(); r.contraction(); other.step(2)  # compiled before training

        def advance(calls):  # wait until both runs did `calls` more calls of the training loop
            targets = [x.step_count + calls * session.STEPS_PER_CALL for x in (r, other)]
            deadline = time.monotonic() + 240
            while any(x.step_count < t for x, t in zip((r, other), targets)) and time.monotonic() < deadline:
                assert r.playing and other.playing, (r.error, r.message, other.error, other.message)
                time.sleep(0.05)
            return [x.step_count >= t for x, t in zip((r, other), targets)]

        assert r.play() and other.play()
        print("in_flight", session._in_flight())
        print("both_progress", *advance(3))
        for _ in range(3):
            out = (r.generate(), r.evaluate(), r.contraction(max_age_s=0))
            print("page_returned", all(x is not None for x in out), *advance(1))
        r.close(); other.close()
        for x in (r, other):  # the history keeps the latest RECENT_LEN steps, and earlier ones thinned
            steps, n = [h["step"] for h in x.history], x.step_count
            recent = min(n, session.RECENT_LEN)
            print("recorded_once", n == int(x.state.step) > 0 and steps[-recent:] == list(range(n - recent + 1, n + 1))
                  and all(a < b for a, b in zip(steps, steps[1:])))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    for fault in ("terminate called", "FATAL", "Traceback"):
        assert fault not in out.stderr, out.stderr[-4000:]
    lines = [line.split() for line in out.stdout.splitlines()]
    assert lines[0] == ["in_flight", "1"]  # one call queued each: they take turns call by call
    assert lines[1] == ["both_progress", "True", "True"]
    assert lines[2:5] == [["page_returned", "True", "True", "True"]] * 3
    assert lines[5:] == [["recorded_once", "True"]] * 2


def test_wait_applied_returns_once_a_step_with_the_new_values_is_recorded(runner):
    assert not runner.wait_applied(0.0)  # paused: nothing to wait for, at once
    assert runner.play()
    try:
        deadline = time.time() + 120
        while runner.step_count < 10 and time.time() < deadline:  # compiled and training
            time.sleep(0.05)
        runner.set_live({"tol": 3e-4, "gate": -1.0})
        assert runner.wait_applied(30.0)
        last = runner.snapshot()["history"][-1]
        assert (last["tol"], last["gate"]) == (3e-4, -1.0)
    finally:
        runner.pause(wait=10)


def test_a_dropped_connection_pauses_after_the_grace_and_keeps_the_run(runner, monkeypatch):
    """A page whose browser connection dropped (Streamlit keeps its session for a reconnect) trains on for
    DISCONNECT_GRACE_S, then pauses with its run kept; only a session that is gone closes the runner."""
    status = {"now": "active"}
    monkeypatch.setattr(session, "session_status", lambda sid: status["now"])
    monkeypatch.setattr(session, "DISCONNECT_GRACE_S", 10.0)
    t = 1000.0
    runner.heartbeat = t
    assert runner._still_watched(t)
    status["now"] = "disconnected"
    assert runner._still_watched(t + 1) and runner._still_watched(t + 10.5)  # within the grace
    status["now"] = "active"  # reconnected: the grace starts again at the next drop
    assert runner._still_watched(t + 12)
    status["now"] = "disconnected"
    assert runner._still_watched(t + 13) and runner._still_watched(t + 22)
    assert not runner._still_watched(t + 24)
    assert not runner.closed and "lost its connection" in runner.message
    status["now"] = "gone"
    assert not runner._still_watched(t + 25) and runner.closed


def test_a_playing_run_whose_page_disconnects_pauses_with_its_steps(runner, monkeypatch):
    monkeypatch.setattr(session, "DISCONNECT_GRACE_S", 0.2)
    runner.set_auto_pause(100_000, None)
    assert runner.play()
    deadline = time.time() + 120
    while runner.step_count < 5 and time.time() < deadline:
        time.sleep(0.05)
    assert runner.step_count >= 5
    monkeypatch.setattr(session, "session_status", lambda sid: "disconnected")
    _wait = time.time() + 120
    while runner.playing and time.time() < _wait:
        time.sleep(0.05)
    assert not runner.playing and not runner.closed
    steps = runner.step_count
    assert steps >= 5 and runner.history[-1]["step"] == steps and "lost its connection" in runner.message
    assert int(runner.state.step) == steps  # the run is kept: Play goes on from here
