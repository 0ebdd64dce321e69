"""One browser session's live trainer: the training state, bounded history buffers, play/pause/step.

No Streamlit calls here (the worker thread must never call `st.*`) and no numerical code: a `Runner`
calls `twnn_jax` (a jitted step, evaluate, generate, contraction) and keeps what came back.

Threads: `Runner.play()` starts one worker thread that trains until paused, auto-paused, closed, or
the browser session it belongs to has ended. It trains as the headless `train()` loop does: through
`twnn_jax.train.run_calls`, many steps per call of one compiled loop and two calls in flight, so the
computation goes on while the page's threads hold the GIL. Each call is sized to take about
`CALL_SECONDS`, so that live controls and Pause act within a few tens of milliseconds.
`Runner.step()` runs steps in the caller's thread.
All runners of the server process share one XLA compute thread (the pool is started on one core), so they
take turns: a page's own computations go ahead of the next training call (`_page_first`), and while several
runners play they are time-sliced (dashboard/turns.py): each call of a run's loop waits in one
first-come, first-served line for one of `COMPUTE_SLOTS` slots, holds it until the call has finished, and
is sized to about `SHARE_SLICE_S` of computation (measured on its own earlier calls), so every run advances
at about an equal share of the device, however many play. Each page says that it is sharing and with
how many (`Runner.message`). Every tab can press Play: past `MAX_TRAINERS` runs training at once (over all
sessions of this server process), a run waits in line and starts when one ahead of it pauses.
Every call of the trainer goes through one lock per runner, so a step never races a reset.
Exit: every call into XLA goes through `shutdown.xla_work()`, and when the process exits (end of a
script, Ctrl-C, SIGTERM) every runner is closed before the interpreter finalises; see dashboard/shutdown.py
for why a thread inside XLA at that moment would abort the process.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
import time
import weakref
from collections import deque

import jax
import numpy as np

from twnn_jax import growth
from twnn_jax.settings import LIVE, SETTINGS
from twnn_jax.settle_trace import TRACED_KINDS, settle_for
from twnn_jax.tasks import BRACKET_TASKS
from twnn_jax.train import (
    STEPS_PER_CALL,
    Call,
    TrainConfig,
    Trainer,
    build_trainer,
    live_controls,
    run_calls,
    trainer_for,
)

from .shutdown import on_exit, track, xla_work
from .turns import Turns

TASKS = SETTINGS["task"].choices  # every task of the library
LIVE_NAMES = LIVE  # the live settings of twnn_jax.settings (traced: they change without a rebuild)
# Small sizes so a step takes milliseconds on a CPU; everything else is the library's default.
DASHBOARD_CONFIG = dict(hidden=32, batch_size=32, trajectory=60, seq_len=20)
# Per task, where it differs: the bracket tasks' RNN gets the paper's 100 slots (a step is still milliseconds),
# so that a growing net is never held at the small default (it passes 20 neurons on the hard text).
TASK_CONFIG = {task: dict(hidden=growth.MAX_SIZE) for task in BRACKET_TASKS}

RECENT_LEN = 2000  # the latest steps' summaries, every step
LONG_LEN = 2000  # plus the whole run, evenly thinned: every `stride`-th step, the stride doubling when full
DETAIL_LEN = 24  # steps whose per-sample arrays (trajectories, counts, gates) are kept: the last of each call
MAX_TRAINERS = int(os.environ.get("TWNN_DASHBOARD_MAX_TRAINERS", "32"))  # training at once; more wait in line
COMPUTE_SLOTS = int(os.environ.get("TWNN_DASHBOARD_COMPUTE_SLOTS", "1"))  # sharing runs' calls in XLA at once
SHARE_SLICE_S = 0.05  # while runs share the device, each call is sized to about this much computation
IDLE_PAUSE_S = float(os.environ.get("TWNN_DASHBOARD_IDLE_PAUSE_S", "600"))  # no page tick for this long: pause
# A page whose connection dropped (a network blip, a laptop lid, a starved browser) trains on this long, then
# pauses; its run stays, and the same tab finds it again when it reconnects (see `session_status`).
DISCONNECT_GRACE_S = float(os.environ.get("TWNN_DASHBOARD_DISCONNECT_GRACE_S", "30"))
ALIVE_CHECK_S = 2.0  # a training or waiting run asks at most this often whether its page is still there
CALL_SECONDS = 0.02  # while playing, each call of the training loop is sized to take about this long
CONTRACTION_EVERY_S = 5.0  # while playing, the ||J|| estimate is refreshed at most this often
MAX_NONFINITE_IN_A_ROW = 25  # consecutive steps with a non-finite loss (the forward pass blew up): auto-pause

_PER_SAMPLE = ("fwd_trajectory", "bwd_trajectory", "fwd_iters", "bwd_iters", "fwd_converged", "fwd_diverged", "gates")
# Owners in both lines are a worker's own stop event: one per worker thread, so a worker that is still
# finishing after a Pause never gives back (or holds) the slot of the worker a new Play started.
_admission = Turns(lambda: MAX_TRAINERS)  # runs training at once
_compute = Turns(lambda: COMPUTE_SLOTS)  # calls of sharing runs in XLA at once
_runners: weakref.WeakSet[Runner] = weakref.WeakSet()
# Held while a page's own computations (evaluate, generate, contraction) run; every worker waits for it
# before each further training call. Without it they waited seconds: XLA runs the next queued training
# call as soon as the previous one ends, on the same pool thread, so with the pool on one core
# (dashboard/cpu_threads.py) a computation from another thread waits until that chain happens to break.
# For the same reason, while several runners play, each keeps only one call in flight (`_in_flight`).
_page_first = threading.Lock()


def make_config(task: str = "sine", **settings) -> TrainConfig:
    """The dashboard's run config: small sizes, trajectories recorded, the widgets' values (model settings and
    live start values) over the library's defaults."""
    return TrainConfig(**{**DASHBOARD_CONFIG, **TASK_CONFIG.get(task, {}), "task": task, **settings})


def refusal(**settings) -> str | None:
    """Why the library refuses to build the dashboard's run of these settings (its one-line message), or None
    when it builds one. The one judge of which combinations the page offers (dashboard/controls.py): the
    library's own checks, `settings.check_config` and the model's fit to the task, by building the trainer
    (which compiles nothing). Live controls and the seed shape no trainer: they are left out."""
    structure = {k: v for k, v in settings.items() if k != "seed" and k not in LIVE}
    return _refusal(make_config(**structure))


@functools.lru_cache(maxsize=1024)
def _refusal(config: TrainConfig) -> str | None:
    try:
        with xla_work():  # a bracket task's texts go to the device
            build_trainer(config)
    except ValueError as err:
        return str(err)
    return None


def get_trainer(config: TrainConfig) -> Trainer:
    """A built trainer, shared by every session with the same static settings (`twnn_jax.train.trainer_for`:
    jitted functions are pure, so sharing them shares compilations, never state)."""
    return trainer_for(config)


def compile_counts(trainer: Trainer) -> dict:
    """Entries in the jit caches of the trainer's functions (a new entry is a compilation)."""
    out = {}
    for name in ("run", "evaluate", "generate", "contraction"):
        fn = getattr(trainer, name)
        size = getattr(fn, "_cache_size", None)
        out[name] = int(size()) if fn is not None and size is not None else None
    return out


def playing_count() -> int:
    """Runs training on this server now (runs waiting in line for a slot not counted)."""
    return _admission.holding()


def waiting_count() -> int:
    """Runs whose Play waits in line because `MAX_TRAINERS` train already."""
    return _admission.waiting()


def _in_flight() -> int:
    """Calls a playing runner keeps queued: two alone, one while other runners play (so they take turns)."""
    return 1 if playing_count() > 1 else 2


def stop_all(wait: bool = True) -> None:
    """Stop every runner's threads in this process (`wait`: join them; tests call it at teardown). The
    process calls it without waiting when it exits (dashboard/shutdown.py waits for the threads then)."""
    for runner in list(_runners):
        runner.close(wait=wait)


on_exit(lambda: stop_all(wait=False))


def session_status(session_id: str | None) -> str:
    """"active": a browser is connected to this Streamlit session; "disconnected": its connection dropped and
    Streamlit keeps the session for a reconnect (`server.disconnectedSessionTTL`, 120 s by default): the same
    tab that reconnects gets the same session back, this runner included; "gone": closed or expired."""
    if session_id is None:
        return "active"
    try:
        from streamlit import runtime

        if not runtime.exists():
            return "active"
        instance = runtime.get_instance()
        if instance.is_active_session(session_id):
            return "active"
        # Streamlit has no public lookup of a session kept for a reconnect; without one, treat it as kept
        manager = getattr(instance, "_session_mgr", None)
        lookup = getattr(manager, "get_session_info", None)
        return "gone" if lookup is not None and lookup(session_id) is None else "disconnected"
    except Exception:  # noqa: BLE001 - never let a liveness probe kill training
        return "active"


class Runner:
    """A session's live training run. Thread-safe; see the module docstring."""

    def __init__(self, config: TrainConfig, *, session_id: str | None = None, warm_up: bool = True):
        self.config = config
        with xla_work():
            self.trainer = get_trainer(config)
        self.session_id = session_id
        self._step_lock = threading.RLock()  # every call of the jitted step, and resets
        self._lock = threading.RLock()  # state and histories; held only briefly (never during a step)
        self._aux_lock = threading.Lock()  # evaluate / generate / contraction and their cache
        self._applied = threading.Condition()  # notified after each recorded call
        self._applied_values: dict | None = None  # the live values of the latest recorded call
        self._aux_cache: dict = {}
        self._contraction_last: tuple | None = None  # (live values, time, estimate)
        self._stop = threading.Event()  # the current worker's stop signal (a new one per worker)
        self._thread: threading.Thread | None = None
        self._warm_thread: threading.Thread | None = None
        self.playing = False
        self.closed = False
        self.message = None  # why the run paused itself / what went wrong (see the property)
        self.message_level = "info"
        self._step_s: float | None = None  # seconds of computation per step, measured while sharing
        self._granted: tuple[float, int] | None = None  # (time, steps) of the sharing call in flight
        self._last_alive_check = 0.0
        self._disconnected_at: float | None = None  # when its page was first seen disconnected (None: connected)
        self.error: str | None = None
        self.compiling = False
        self.pause_at_step: int | None = None
        self.pause_below_loss: float | None = None
        self.heartbeat = time.monotonic()
        self.set_live({name: getattr(config, name) for name in LIVE_NAMES})
        self._reset_state()
        _runners.add(self)
        if warm_up:
            self._warm_thread = threading.Thread(target=self._warm_up, name="twnn-warmup", daemon=True)
            track(self._warm_thread)
            self._warm_thread.start()

    # ------------------------------------------------------------------ messages
    @property
    def message(self) -> str | None:
        """What the page shows under the readout: why the run paused itself, what went wrong, or else,
        while playing, that it waits in line or shares the server with other runs (and with how many)."""
        return self._message if self._message is not None else self.sharing_text()

    @message.setter
    def message(self, text: str | None) -> None:
        self._message = text

    @property
    def message_level(self) -> str:
        return self._message_level if self._message is not None else "info"

    @message_level.setter
    def message_level(self, level: str) -> None:
        self._message_level = level

    def sharing_text(self) -> str | None:
        """While playing: that this run waits in line, or trains by turns with others; None when alone."""
        if not self.playing or self.closed:
            return None
        place = _admission.position(self._stop)
        if place is not None:
            return (f"Waiting to train: {playing_count()} runs are training on this server (at most {MAX_TRAINERS} "
                    f"at once). This run is number {place} in line and starts when a run ahead of it pauses; "
                    "Pause leaves the line.")
        n = playing_count()
        if n > 1:
            return (f"Sharing this server with {n - 1} other training run{'s' if n > 2 else ''}: the runs take "
                    f"turns of about {1000 * SHARE_SLICE_S:.0f} ms each, so each trains at about 1/{n} of its speed "
                    "alone.")
        return None

    # ------------------------------------------------------------------ state
    def _reset_state(self) -> None:
        with xla_work(), self._step_lock, self._lock:
            self.state = self.trainer.init(self.config.seed)
            self._recent: deque[dict] = deque(maxlen=RECENT_LEN)
            self._long: list[dict] = []
            self._stride = 1
            self.details: deque[dict] = deque(maxlen=DETAIL_LEN)
            self._times: deque[tuple[float, int]] = deque(maxlen=400)
            self.nonfinite_in_a_row = 0
            self.error = None
            self.message = None
        with self._aux_lock:
            self._aux_cache.clear()
        self._contraction_last = None

    @property
    def history(self) -> list[dict]:
        """Per-step summaries, bounded: the whole run evenly thinned, then the latest RECENT_LEN steps."""
        recent = list(self._recent)
        if not recent:
            return []
        first = recent[0]["step"]
        return [h for h in self._long if h["step"] < first] + recent

    @property
    def step_count(self) -> int:
        return self._recent[-1]["step"] if self._recent else 0

    @property
    def live_values(self) -> dict:
        return dict(self._live[0])

    def set_live(self, values: dict) -> None:
        """New live control values (range-checked by the library); the next step uses them, no recompilation."""
        merged = {**(self._live[0] if hasattr(self, "_live") else {}), **values}
        live = live_controls(self.config, **merged)  # raises ValueError naming the bad setting
        self._live = (merged, live)  # one attribute: the worker reads values and arrays as a pair

    def wait_applied(self, timeout: float = 0.5) -> bool:
        """While playing, wait (at most `timeout` s) until a call with the current live values is recorded,
        so that a page drawn right after a control change already shows its effect. True when it is."""
        with self._applied:
            return self._applied.wait_for(
                lambda: self._applied_values is self._live[0] or not self.playing or self.closed, timeout
            ) and self._applied_values is self._live[0]

    def set_auto_pause(self, at_step: int | None, below_loss: float | None) -> None:
        self.pause_at_step = at_step if at_step else None
        self.pause_below_loss = below_loss if below_loss else None

    # ------------------------------------------------------------------ stepping
    def compile_training(self) -> None:
        """Compile the training loop (a call of zero steps: it changes nothing); a failure is kept in `error`,
        which the page reports."""
        try:
            with xla_work(), self._step_lock:
                if self.closed:
                    return
                self.compiling = True
                _, live = self._live
                jax.block_until_ready(self.trainer.run(self.state, live, 0))
        except Exception as err:  # noqa: BLE001 - reported on the page
            self.error = f"compiling the training step failed: {err}"
        finally:
            self.compiling = False

    def _warm_up(self) -> None:
        """Compile the training loop, then the page's first computations, before the user presses Play."""
        self.compile_training()
        for page_fn in self.first_page_calls():
            if self.closed:  # closed meanwhile (another task chosen, the process exiting): compile no more
                return
            try:
                page_fn()
            except Exception:  # noqa: BLE001,S110 - the page retries and reports
                pass

    def step(self, n: int = 1) -> int:
        """Run `n` steps now in the caller's thread (when paused). Returns the steps taken: fewer when the
        loss reaches the auto-pause target, or after an error (the last good state stays)."""
        done = 0
        with xla_work(), self._step_lock:
            if self.closed:
                return 0
            target = int(self.state.step) + n
            self.compiling = self.trainer.run._cache_size() == 0

            def plan(step: int) -> Call | None:
                return self._call(min(STEPS_PER_CALL, target - step)) if step < target else None

            try:
                for state, rows, last, call in run_calls(self.trainer, self.state, plan):
                    self._commit(state, rows, last, call.tag)
                    done += len(rows)
            except Exception as err:  # noqa: BLE001 - reported on the page
                self.error = f"the training step failed: {err}"
            finally:
                self.compiling = False
        return done

    def _call(self, n: int) -> Call:
        """The next call of the training loop: `n` steps with the current live values and loss target."""
        values, live = self._live
        below = self.pause_below_loss
        return Call(live, n, -np.inf if below is None else below, tag=values)

    def _commit(self, state, rows: list[dict], last: dict, values: dict) -> None:
        """Keep a finished call's state and record it (the caller holds the step lock)."""
        last = jax.device_get({k: last[k] for k in _PER_SAMPLE if k in last})
        with self._lock:
            self.state = state
            self._record(rows, last, values)
        with self._applied:
            self._applied_values = values
            self._applied.notify_all()

    def _record(self, rows: list[dict], last: dict, values: dict) -> None:
        live = {k: values[k] for k in LIVE_NAMES}
        extra = {**live, "time": time.time()}
        stride = self._stride
        for s in rows:
            s.update(extra)
            if s["step"] % stride == 0:
                self._long.append(s)
            # A non-finite loss means the forward pass itself blew up: every further step will be skipped
            # too. (A finite loss with a non-finite gradient is reported on the page but does not pause:
            # the next batch may be fine.)
            self.nonfinite_in_a_row = 0 if math.isfinite(s["loss"]) else self.nonfinite_in_a_row + 1
        self._recent.extend(rows)
        if len(self._long) > LONG_LEN:
            self._stride *= 2
            self._long = [h for h in self._long if h["step"] % self._stride == 0]
        self.details.append({
            "step": rows[-1]["step"],
            "fwd_trajectory": np.asarray(last["fwd_trajectory"]) if "fwd_trajectory" in last else None,
            "bwd_trajectory": np.asarray(last["bwd_trajectory"]) if "bwd_trajectory" in last else None,
            # models without a fixed point to solve (seed 003's RNN) have no per-sample solve arrays: None
            **{k: np.asarray(last[k]) if k in last else None for k in ("fwd_iters", "bwd_iters", "fwd_converged",
                                                                        "gates")},
            **live,
        })
        self._times.append((time.monotonic(), rows[-1]["step"]))

    def steps_per_second(self, window_s: float = 5.0) -> float | None:
        times = list(self._times)
        if len(times) < 2:
            return None
        t_end, s_end = times[-1]
        recent = [(t, s) for t, s in times if t >= t_end - window_s]
        t0, s0 = recent[0]
        if t_end - t0 <= 0:
            return None
        return (s_end - s0) / (t_end - t0)

    # ------------------------------------------------------------------ play / pause
    def play(self) -> bool:
        """Start the worker thread (False only once closed). Past `MAX_TRAINERS` runs training on the server,
        it waits in line first (`sharing_text` says so)."""
        if self.closed:
            return False
        if self.playing and self._thread is not None and self._thread.is_alive():
            return True
        self.message = None
        self.error = None
        self.playing = True
        self.heartbeat = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(self._stop,), name="twnn-trainer", daemon=True)
        track(self._thread)
        self._thread.start()
        return True

    def pause(self, reason: str | None = None, level: str = "info", *, wait: float = 0.0) -> None:
        """Stop the worker after its current step (a step in flight finishes and is recorded)."""
        self.playing = False
        stop = self._stop
        stop.set()
        if reason:
            self.message, self.message_level = reason, level
        _admission.release(stop)  # its slot is free at once (the call in flight still finishes)
        thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(timeout=wait)

    def reset(self) -> None:
        """Pause and go back to a freshly initialised network (same config, no recompilation)."""
        self.pause()
        self._reset_state()

    def close(self, wait: bool = True) -> None:
        """Stop for good and release this session's slot (`wait`: join the threads)."""
        self.closed = True
        self.pause(wait=30 if wait else 0)
        if wait and self._warm_thread is not None and self._warm_thread is not threading.current_thread():
            self._warm_thread.join(timeout=60)

    def touch(self) -> None:
        """The page shows this runner: reset the idle timer."""
        self.heartbeat = time.monotonic()

    def _call_size(self, step: int) -> int:
        """Steps for the next call while playing, never past the auto-pause step. Alone: about CALL_SECONDS
        of training (its speed measured on the wall clock). While other runs play: about SHARE_SLICE_S of
        its own computation, measured from its turn to the call's end (not on the wall clock, where a run's
        speed includes its waits for the others: sized by that, a run that fell behind made ever smaller
        calls and got ever fewer steps per turn)."""
        rate = self.steps_per_second()
        if playing_count() > 1:
            step_s = self._step_s if self._step_s is not None else (1 / rate if rate else None)
            n = STEPS_PER_CALL if step_s is None else int(min(STEPS_PER_CALL, max(1, SHARE_SLICE_S / step_s)))
        else:
            n = STEPS_PER_CALL if rate is None else int(min(STEPS_PER_CALL, max(1, rate * CALL_SECONDS)))
        if self.pause_at_step is not None and self.pause_at_step > step:
            n = min(n, self.pause_at_step - step)  # land exactly on the target step
        return n

    def _leave(self, stop: threading.Event) -> bool:
        """Whether this worker should stop waiting in a line: paused, closed, or (checked every 2 s) its
        browser session has ended or its page has not been seen for IDLE_PAUSE_S."""
        return stop.is_set() or self.closed or not self._still_watched_at_times()

    def _still_watched_at_times(self) -> bool:
        """`_still_watched`, asked at most once every ALIVE_CHECK_S (it reads the server's sessions); True between."""
        now = time.monotonic()
        if now - self._last_alive_check <= ALIVE_CHECK_S:
            return True
        self._last_alive_check = now
        return self._still_watched(now)

    def _still_watched(self, now: float) -> bool:
        """Whether this run should go on training: False (and closed) when its browser session is gone; False
        (and paused, the run kept) when its page has been disconnected for DISCONNECT_GRACE_S or not seen
        for IDLE_PAUSE_S."""
        status = session_status(self.session_id)
        if status == "gone":
            self.closed = True
            return False
        if status == "disconnected":
            if self._disconnected_at is None:
                self._disconnected_at = now
            elif now - self._disconnected_at > DISCONNECT_GRACE_S:
                self._auto_pause(f"paused: this page lost its connection to the server for more than "
                                 f"{DISCONNECT_GRACE_S:.0f} s (the run is kept); press Play to go on")
                return False
        else:
            self._disconnected_at = None
        if now - self.heartbeat > IDLE_PAUSE_S:
            self._auto_pause(f"paused: the page has not been seen for {IDLE_PAUSE_S:.0f} s")
            return False
        return True

    def _take_turn(self, stop: threading.Event) -> bool:
        """Before a call while other runs play: the previous call's slot back, then wait for the next
        (first come, first served); its computation time sizes the next calls. False: leave instead."""
        if self._granted is not None:
            granted_at, n = self._granted
            per_step = (time.monotonic() - granted_at) / n
            # What a call measures here is its computation plus, under load, waits for the GIL and the CPU
            # (never less): the smallest recent figure, rising by at most 5 % a call so that a run that
            # really got dearer (a wider gate, a tighter tol) is followed within some calls. A mean let those
            # waits shrink one run's calls more than another's (measured: 0.47 slowest/fastest tab of 8).
            self._step_s = per_step if self._step_s is None else min(per_step, 1.05 * self._step_s)
            self._granted = None
        _compute.release(stop)
        if playing_count() <= 1:
            return not self._leave(stop)
        if not _compute.acquire(stop, lambda: self._leave(stop)):
            return False
        self._granted = (time.monotonic(), 0)
        return True

    def _loop(self, stop: threading.Event) -> None:
        def plan(step: int) -> Call | None:
            # the previous call has finished here whenever others play (one call in flight each)
            with _page_first:  # a computation of the page's goes ahead of the next call
                pass
            if stop.is_set() or self.closed or not self._take_turn(stop):
                return None
            call = self._call(self._call_size(step))
            if self._granted is not None:
                self._granted = (self._granted[0], min(call.n, STEPS_PER_CALL))
            return call

        try:
            if not _admission.acquire(stop, lambda: self._leave(stop)):  # waits in line past MAX_TRAINERS
                return
            with xla_work():  # the whole loop, until no call of it is left in XLA (dashboard/shutdown.py)
                with self._step_lock:  # waits for the warm-up's compilation, if one is running
                    start = self.state
                    self.compiling = self.trainer.run._cache_size() == 0
                calls = run_calls(self.trainer, start, plan, in_flight=_in_flight)
                while not stop.is_set():
                    if not self._still_watched_at_times():
                        break
                    try:
                        state, rows, last, call = next(calls)
                    except StopIteration:
                        break
                    except Exception as err:  # noqa: BLE001 - reported on the page; the last good state stays
                        self.error = f"the training step failed: {err}"
                        self._auto_pause(self.error, "error")
                        break
                    finally:
                        self.compiling = False
                    with self._step_lock:  # a reset (which pauses first) never sees a half-recorded call
                        if stop.is_set() or self.closed:
                            break
                        self._commit(state, rows, last, call.tag)
                    if self._check_auto_pause():
                        break
                # Wait for the call still queued, if any (its steps are dropped): every way out above has set
                # `stop` or `closed`, so the plan asks for no further call and this ends after one call at most.
                with contextlib.suppress(Exception):
                    for _ in calls:
                        pass
        finally:
            self._granted = None
            _compute.release(stop)
            _admission.release(stop)
            if stop is self._stop:  # not replaced by a newer worker
                self.playing = False

    def _auto_pause(self, reason: str, level: str = "info") -> None:
        self.playing = False
        self._stop.set()
        self.message, self.message_level = reason, level

    def _check_auto_pause(self) -> bool:
        last = self._recent[-1]
        if self.pause_at_step is not None and last["step"] >= self.pause_at_step:
            self._auto_pause(f"auto-paused at step {last['step']}: the step target was reached", "success")
            return True
        if self.pause_below_loss is not None and np.isfinite(last["loss"]) and last["loss"] <= self.pause_below_loss:
            self._auto_pause(f"auto-paused at step {last['step']}: loss {last['loss']:.3g} reached the target "
                             f"{self.pause_below_loss:g}", "success")
            return True
        if self.nonfinite_in_a_row >= MAX_NONFINITE_IN_A_ROW:
            self._auto_pause(f"auto-paused: the last {self.nonfinite_in_a_row} steps had a non-finite loss "
                             "(updates were skipped, the parameters are unchanged). Lower the gate, tol or learning "
                             "rate, or press Reset.", "error")
            return True
        return False

    # ------------------------------------------------------------------ reading
    def snapshot(self) -> dict:
        """A consistent copy of what the page draws (cheap: lists of references)."""
        with self._lock:
            return {
                "history": self.history,
                "details": list(self.details),
                "params": self.state.params,
                "step": self.step_count,
                "live": dict(self._live[0]),
            }

    def state_and_step(self) -> tuple:
        """The current training state and its step count, read together."""
        with self._lock:
            return self.state, self.step_count

    def cached(self, name: str, fn, values: dict | None = None, params_at: tuple | None = None):
        """`fn(params, live)` for this run's parameters (or `params_at`: (params, step)) and live values (or
        `values`), fetched to the host and cached per (name, step, live values): every page computation goes
        through it (evaluate, generate, contraction, the views), ahead of the training calls (`_page_first`)."""
        if fn is None:
            return None
        if params_at is None:
            with self._lock:
                params_at = (self.state.params, self.step_count)
        params, step = params_at
        values = dict(self._live[0]) if values is None else values
        key = (name, step, tuple(sorted(values.items())))
        with xla_work(), self._aux_lock:  # the gate first: a thread held there holds no lock
            if key in self._aux_cache:
                return self._aux_cache[key]
            with _page_first:
                out = jax.device_get(fn(params, live_controls(self.config, **values)))
            if len(self._aux_cache) > 32:
                self._aux_cache.clear()
            self._aux_cache[key] = out
            return out

    def evaluate(self, **changes) -> dict:
        """Per-sample results on the evaluation set for the current network; `changes` override live values."""
        return self.cached("evaluate", self.trainer.evaluate, values={**self._live[0], **changes} if changes else None)

    def first_page_calls(self) -> list:
        """What the page computes first, as calls on this runner: the evaluation, the generation (sine), the
        contraction estimate, the network views' settling trace (models with a fixed point). The one list that
        the warm-up (after compiling the training loop) and `twnn dashboard`'s preload (before it) run."""
        calls = [self.evaluate, self.generate, self.contraction]
        if self.trainer.model.kind in TRACED_KINDS:
            calls.append(lambda: self.settle(0))
        return calls

    @property
    def warming_up(self) -> bool:
        """The warm-up thread is still compiling (the training loop, then the page's functions)."""
        return self._warm_thread is not None and self._warm_thread.is_alive()

    def settle(self, index: int, time_step: int = -1) -> dict:
        """One evaluation sample settling, unit by unit (`twnn_jax.settle_trace`), for the current network."""
        fn, at = settle_for(self.config), (np.int32(index), np.int32(time_step))
        return self.cached(("settle", index, time_step), lambda params, live: fn(params, live, *at))

    def units(self) -> dict | None:
        """A growing net's slots (seed 003, `twnn_jax.growth`): `active` (0/1) and each neuron's `score` (the add/
        delete rule's), for the current parameters; None for other models."""
        if self.trainer.model.kind not in ("growing_rnn", "tanh_rnn"):  # not seed 003's RNN (a growing wormhole
            # net or GRU keeps one mask per layer)
            return None
        return self.cached("units", lambda params, live: {"active": params["active"], "score": growth.scores(params)})

    def generate(self) -> dict | None:
        """Free-running generation (sine only), or None."""
        return self.cached("generate", self.trainer.generate)

    def contraction(self, max_age_s: float = CONTRACTION_EVERY_S) -> np.ndarray | None:
        """Per-sample estimate of ||J|| at the fixed point, or None when the model has no fixed point.

        It costs a few hundred milliseconds, so while training runs it is refreshed at most every
        `max_age_s` seconds (at once when a live control changed)."""
        if self.trainer.contraction is None:
            return None
        values = dict(self._live[0])
        last = self._contraction_last
        if (self.playing and last is not None and last[0] == values and time.monotonic() - last[1] < max_age_s):
            return last[2]
        out = self.cached("contraction", self.trainer.contraction, values=values)
        self._contraction_last = (values, time.monotonic(), out)
        return out

    def sweep(self, control: str, values) -> dict:
        """Evaluate the current (fixed) network with one live control set to each of `values`. No training."""
        with self._lock:
            params_at = (self.state.params, self.step_count)
        rows = {"values": [], "fwd_iters_mean": [], "fwd_iters_max": [], "loss": [], "metric": [],
                "converged_frac": []}
        base = dict(self._live[0])
        for v in values:
            ev = self.cached("evaluate", self.trainer.evaluate, values={**base, control: v}, params_at=params_at)
            rows["values"].append(v)
            rows["fwd_iters_mean"].append(float(np.mean(ev["fwd_iters"])))
            rows["fwd_iters_max"].append(int(np.max(ev["fwd_iters"])))
            rows["loss"].append(float(ev["loss"]))
            rows["metric"].append(float(ev["metric"]))
            rows["converged_frac"].append(float(np.mean(ev["fwd_converged"])))
        return rows
