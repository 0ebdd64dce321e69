"""A classroom on one server: every session can play; runs share the device by fair turns; a cap queues.

`dashboard/turns.py` (the first-come, first-served line) is checked with plain threads; then several
dashboard runners in this process (as several browser sessions of one server): more of them than the
cap press Play, the first ones train and take turns call by call (each turn granted in the order asked),
the others wait in line and start, in order, when one pauses; every page says it is sharing and with how
many, or where it waits; each run's numbers are exactly its own headless run's (no state crosses sessions).
No wall-clock thresholds: the speed a classroom gets is measured by benchmarks/bench_classroom.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from twnn_dashboard import session
from twnn_dashboard.turns import Turns
from twnn_jax.train import live_controls, train


def _wait(predicate, timeout=240.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# ---- the line ---------------------------------------------------------------------------------------
def test_turns_are_granted_in_the_order_asked_and_never_past_the_slots():
    turns = Turns(2)
    a, b, c, d = "abcd"
    assert turns.acquire(a) and turns.acquire(b) and turns.holding() == 2
    assert turns.acquire(a)  # already holds one: at once, still one
    granted = []

    def wait_for(owner):
        turns.acquire(owner)
        granted.append(owner)

    threads = [threading.Thread(target=wait_for, args=(o,)) for o in (c, d)]
    threads[0].start()
    _wait(lambda: turns.position(c) == 1, 10, "c in line")
    threads[1].start()
    _wait(lambda: turns.position(d) == 2, 10, "d in line")
    time.sleep(0.1)
    assert granted == [] and turns.holding() == 2 and turns.waiting() == 2
    turns.release(b)
    _wait(lambda: granted == [c], 10, "c's turn")
    time.sleep(0.1)
    assert granted == [c]  # d waits: two slots, held by a and c
    turns.release(a)
    _wait(lambda: granted == [c, d], 10, "d's turn")
    for t in threads:
        t.join(5)
    assert turns.waiting() == 0 and turns.holding() == 2


def test_a_waiter_that_stops_leaves_the_line_and_the_next_goes():
    slots = [1]
    turns = Turns(lambda: slots[0])  # read at each grant
    assert turns.acquire("a")
    stop = threading.Event()
    results = {}
    t1 = threading.Thread(target=lambda: results.setdefault("b", turns.acquire("b", stop.is_set)))
    t1.start()
    _wait(lambda: turns.position("b") == 1, 10, "b in line")
    t2 = threading.Thread(target=lambda: results.setdefault("c", turns.acquire("c")))
    t2.start()
    _wait(lambda: turns.position("c") == 2, 10, "c in line")
    stop.set()
    t1.join(5)
    assert results == {"b": False} and turns.position("c") == 1
    slots[0] = 2  # a larger limit lets the next one in at once
    t2.join(5)
    assert results == {"b": False, "c": True} and turns.holding() == 2


# ---- runners of several sessions ----------------------------------------------------------------------
class _LoggedTurns(Turns):
    """The compute line, recording each grant with who was in line when its owner joined, and who left."""

    def __init__(self, slots):
        super().__init__(slots)
        self.grants: list[tuple[object, frozenset, int]] = []  # (owner, in line before it, grants at its joining)
        self.left: set = set()

    def acquire(self, owner, stop=None, poll=0.05):
        with self._changed:
            ahead, joined = frozenset(self._line), len(self.grants)
        ok = super().acquire(owner, stop, poll)
        with self._changed:
            if ok:
                self.grants.append((owner, ahead, joined))
            else:
                self.left.add(owner)
        return ok


@pytest.fixture
def classroom(monkeypatch):
    """Six runners as six sessions' runs (seeds 0-5), at most four training at once, one compute slot."""
    monkeypatch.setattr(session, "MAX_TRAINERS", 4)
    monkeypatch.setattr(session, "COMPUTE_SLOTS", 1)
    logged = _LoggedTurns(lambda: session.COMPUTE_SLOTS)
    monkeypatch.setattr(session, "_compute", logged)
    runners = [session.Runner(session.make_config("sine", seed=seed), warm_up=False) for seed in range(6)]
    runners[0].step(1)  # compiles the shared trainer once (every seed shares it)
    runners[0].reset()
    yield runners, logged
    for r in runners:
        r.close()
    assert session.playing_count() == 0 and session.waiting_count() == 0


def test_every_session_plays_takes_fair_turns_and_queues_past_the_cap(classroom):
    runners, logged = classroom
    for r in runners:
        assert r.play()  # nobody is refused
        _wait(lambda r=r: session.playing_count() + session.waiting_count() == runners.index(r) + 1, 30,
              "the run to be admitted or queued")
    assert all(r.playing for r in runners)
    training, queued = runners[:4], runners[4:]
    assert session.playing_count() == 4 and session.waiting_count() == 2
    for r in training:
        assert "Sharing this server with 3 other training runs" in r.message
    assert "number 1 in line" in queued[0].message and "number 2 in line" in queued[1].message
    assert all(r.message_level == "info" for r in runners)

    # every training session advances; the queued ones wait
    _wait(lambda: all(r.step_count >= 3 for r in training), what="every training run to advance")
    assert all(r.step_count == 0 for r in queued)

    # a pause lets the first in line start; the other one is then first
    runners[1].pause(wait=30)
    _wait(lambda: queued[0].step_count > 0, what="the first queued run to start")
    assert "number 1 in line" in queued[1].message and queued[1].step_count == 0
    runners[2].pause(wait=30)
    _wait(lambda: queued[1].step_count > 0, what="the second queued run to start")
    playing = [runners[0], runners[3], *queued]
    start = [r.step_count for r in playing]
    _wait(lambda: all(r.step_count > s for r, s in zip(playing, start)), what="every playing run to advance again")
    for r in playing:
        r.pause(wait=30)

    # fair turns, first come first served: everyone in line before a run asked had its turn before it
    grants = logged.grants
    assert len(grants) > 12
    for i, (_, ahead, joined) in enumerate(grants):
        served = {o for o, _, _ in grants[joined:i]}
        assert ahead <= served | logged.left, f"grant {i}: a run in line was passed over"
    turns = [sum(o is r._stop for o, _, _ in grants) for r in runners]
    print("compute turns per run:", turns)

    # no state crossed sessions: each run's steps are its own seed's headless run, exactly
    trainer = session.get_trainer(runners[0].config)
    for r in [runners[0], runners[3], *queued]:
        n = r.step_count
        _, reference = train(trainer, n, state=trainer.init(r.config.seed), live=live_controls(r.config))
        recent = min(n, session.RECENT_LEN)  # the latest steps every one, earlier ones thinned
        assert [h["step"] for h in r.history][-recent:] == list(range(n - recent + 1, n + 1))
        assert [h["loss"] for h in r.history] == [reference[h["step"] - 1]["loss"] for h in r.history], r.config.seed
    assert len({r.history[0]["loss"] for r in runners if r.history}) > 1  # different seeds, different runs


def test_a_run_alone_keeps_its_speed_path_and_says_nothing(classroom):
    runners, _ = classroom
    r = runners[0]
    assert r.play()
    _wait(lambda: r.step_count > 0, what="training")
    assert session.playing_count() == 1 and r.message is None and session._in_flight() == 2
    r.pause(wait=30)
    assert r.message is None and not r.playing
