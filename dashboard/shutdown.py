"""Leave the process cleanly while threads are inside XLA: at the end of a script, on Ctrl-C, on SIGTERM.

The fault this prevents: the dashboard's worker and warm-up threads (and Streamlit's script threads) are
daemon threads. When the interpreter finalises while one of them is inside XLA (a compilation or a
computation, the GIL released), that thread later tries to take the GIL back, and CPython ends it with
`pthread_exit`. The forced unwind passes through XLA's C++ frames, which do not let it through:
"terminate called after throwing an instance of '...' / FATAL: exception not rethrown", SIGABRT
(exit 134, or -6 seen from a parent). A daemon thread in plain Python code exits this way harmlessly.

So every call into XLA from these threads goes through `xla_work()`, which counts the threads inside.
At exit, before the interpreter finalises, `_at_exit` (run by `threading`'s exit hooks, which come before
`atexit`'s and before finalisation, on every normal way out):
1. closes the gate: a thread that would start new XLA work waits there for good instead (a daemon
   thread; the process ends under it), so nothing new starts after the count is read;
2. calls the registered stoppers (`on_exit`): they ask the worker threads to stop after their current
   call, without waiting;
3. waits up to `EXIT_WAIT_S` for the count to reach zero and for the `track`ed threads to end. A training
   call takes tens of milliseconds, so normally they do, and the interpreter then finalises as usual;
4. otherwise a thread is still inside XLA, almost always in a compilation (seconds, and it cannot be
   interrupted). Finalising would abort, and waiting for it would make Ctrl-C take as long as the
   compilation. The process flushes its streams and leaves with `os._exit`, skipping finalisation
   (and the remaining `atexit` handlers: JAX's backend clean-up, Streamlit's, none of which leaves
   anything on disk that the operating system does not close for it).

The exit code of step 4 is the one the process was about to exit with: `exit_code` when a caller set it;
else, after an uncaught KeyboardInterrupt (Ctrl-C in a script), death by SIGINT as Python itself does
(a shell shows 130); after another uncaught exception 1; else 0 (what Streamlit's server exits with on
SIGINT and SIGTERM, which stop the server and return normally). A `sys.exit(n)` at the end of a script is
not visible here; such a script sets `exit_code` too if it needs `n` kept in that case.

Signals need nothing of their own: Streamlit's server handles SIGINT and SIGTERM by stopping the server,
`streamlit run` then returns and the interpreter exits through step 1. A second SIGINT or SIGTERM while
step 3 waits leaves at once (step 4).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

EXIT_WAIT_S = 5.0  # at exit, how long threads may take to leave XLA before the process leaves without them

exit_code: int | None = None  # the code for a process that leaves without finalising (see step 4); None: inferred

_stoppers: list[Callable[[], None]] = []
_threads: list[threading.Thread] = []  # `track`ed threads
_inside = 0  # threads inside `xla_work()`
_state = threading.Condition()
_closed = False  # the process is exiting: the gate is closed
_depth = threading.local()  # nesting per thread: a thread already inside passes the gate again


@contextlib.contextmanager
def xla_work() -> Iterator[None]:
    """Wrap a call into XLA from a thread that may still run when the process exits. After exit began, a
    daemon thread waits here for good (a non-daemon thread, which the process would wait for, gets
    RuntimeError instead)."""
    depth = getattr(_depth, "n", 0)
    if depth == 0:
        global _inside
        with _state:
            if _closed:
                if threading.current_thread().daemon:
                    _state.wait_for(lambda: False)  # never returns; the process ends under this thread
                raise RuntimeError("the process is exiting: no new XLA work")
            _inside += 1
    _depth.n = depth + 1
    try:
        yield
    finally:
        _depth.n = depth
        if depth == 0:
            with _state:
                _inside -= 1
                _state.notify_all()


def track(thread: threading.Thread) -> None:
    """A thread that calls into XLA: at exit the process also waits for it to end (step 3), and leaves
    without finalising if it has not (a thread still alive might yet reach XLA by a path not counted)."""
    with _state:
        _threads[:] = [t for t in _threads if t.is_alive()] + [thread]


def on_exit(stop: Callable[[], None]) -> None:
    """Call `stop()` when the process exits, before waiting for the threads inside XLA. It must not block."""
    _stoppers.append(stop)


def inside_count() -> int:
    """Threads inside `xla_work()` now."""
    with _state:
        return _inside


def _code() -> int | None:
    """The exit code the process was about to exit with; None: death by SIGINT (see the module docstring)."""
    if exit_code is not None:
        return exit_code
    last = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)  # set by an uncaught exception
    if isinstance(last, KeyboardInterrupt):
        return None
    return 1 if last is not None and not isinstance(last, SystemExit) else 0


def _leave_now(code: int | None) -> None:
    """Leave without finalising the interpreter (see step 4 in the module docstring)."""
    logging.shutdown()  # flush log handlers (Streamlit logs to stderr)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if code is None and os.name == "posix":  # end as Python does after an uncaught Ctrl-C
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(130 if code is None else code)


def _at_exit() -> None:
    global _closed
    with _state:
        _closed = True
    if threading.current_thread() is threading.main_thread():  # a second signal: leave at once
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, lambda *_: _leave_now(_code()))
    for stop in _stoppers:
        try:
            stop()
        except Exception as err:  # noqa: BLE001 - one failing stopper must not keep the others from running
            print(f"twnn: stopping threads at exit failed: {err}", file=sys.stderr)
    deadline = time.monotonic() + EXIT_WAIT_S
    with _state:
        done = _state.wait_for(lambda: _inside == 0, timeout=max(0.0, deadline - time.monotonic()))
        threads = [t for t in _threads if t is not threading.current_thread()]
    for thread in threads if done else ():  # stopped, they leave their loops within a call
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    code = _code()
    # After an uncaught Ctrl-C the process ends by SIGINT right here, as Python would after finalising:
    # nothing left in finalisation matters to a process the user interrupted (the streams are flushed), and
    # it ends at once instead of after JAX's own exit handlers.
    if not done or any(t.is_alive() for t in threads) or code is None:
        _leave_now(code)


try:  # before `atexit` handlers (JAX's clean-up among them) and before the interpreter finalises
    threading._register_atexit(_at_exit)
except (AttributeError, RuntimeError):  # no such hook (another Python), or already shutting down
    atexit.register(_at_exit)
