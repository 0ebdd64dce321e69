"""Get the first page ready while the browser is still connecting: `twnn dashboard` starts this first.

Streamlit runs the app script only when a browser session connects; the script then imports JAX and
builds and compiles the default run's functions before the first chart can show. `twnn dashboard` runs the
Streamlit server in its own process (`twnn_jax.cli`), so the same work can start at once in a background
thread: JAX's backend (on one core, `cpu_threads`), the trainer of the page's default settings (the one
shared trainer cache, `twnn_jax.train.trainer_for`) and the functions its first page calls, compiled or
loaded from the compilation cache. The first page that opens with the default settings takes that very
runner (`claim`): the results of its first calls are then already in its cache, or arrive as the preload
finishes them, computed once. `streamlit run dashboard/app.py` skips this (and works the same, only later).
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger(__name__)

_offered: list = []  # the preloaded runner, until the first page claims it (or declines it: then it is closed)
_built = threading.Event()  # set when the preload has built its runner, or failed to
_started = threading.Event()  # a preload was started in this process
_page_shown = threading.Event()  # a page has run through once (`page_shown`)
TRAINING_WAITS_S = 20.0  # the training loop's compilation waits this long at most for the first page to show
# ... and then this long: the browser is still drawing that page (plotly.js parsed, the charts drawn). With the
# compilation at once, warm starts drew their first chart at 5.3 s, with this wait at 4.6 s (medians of six
# paired starts in a fresh browser profile, this 2-core machine; benchmarks/README.md, "Start-up"). The price:
# Play pressed within these seconds compiles the loop itself, and its first step shows later (4.4 against 2.4 s
# for Play 1 s after the first chart). 1.5 s here was between the two for the first chart.
BROWSER_DRAWS_S = 3.0


def default_config():
    """The run config of a page opened without URL parameters (the widgets' defaults)."""
    from .controls import defaults
    from .session import make_config

    return make_config(**defaults())


def warm_default() -> None:
    """Build and compile what the default page calls first (`Runner.first_page_calls`: the evaluation, the
    generation, the contraction estimate, the network views' settling trace) with a runner of the default
    config, offered to the first page (`claim`); then, once that page has shown and the browser has had
    `BROWSER_DRAWS_S` to draw it, the training loop. Errors are
    left to the page, which builds the same things again and reports them."""
    _started.set()
    runner = None
    try:
        from .cpu_threads import start_jax_on_one_core

        start_jax_on_one_core()
        from .session import Runner

        runner = Runner(default_config(), warm_up=False)  # builds the trainer (the shared cache) and its state
        _offered.append(runner)
    except Exception:  # noqa: BLE001 - the page reports it
        logger.debug("preloading the default page failed", exc_info=True)
    finally:
        _built.set()  # on every path: a page waiting in `claim` goes on
    if runner is None:
        return
    try:
        for call in runner.first_page_calls():  # what the first view shows, first
            if runner.closed:  # declined by a page with other settings, or the process is exiting
                return
            call()
        # The training loop is not needed until Play (which compiles it at once if pressed before). Compiled now,
        # its tracing (seconds of Python) would take the interpreter lock from the first page in turns, and then a
        # core from the browser drawing that page: wait until the page has shown (or for no page), then a while.
        if _wait(runner, TRAINING_WAITS_S, _page_shown) and _wait(runner, BROWSER_DRAWS_S):
            runner.compile_training()
    except Exception:  # noqa: BLE001 - the page computes the same things again and reports what fails
        logger.debug("preloading the default page failed", exc_info=True)


def _wait(runner, seconds: float, until: threading.Event | None = None) -> bool:
    """Wait `seconds`, or until `until` is set; False (at once) when `runner` is closed meanwhile: declined by a
    page, or the process is exiting, which then need not wait for this thread."""
    deadline = time.monotonic() + seconds
    while not runner.closed:
        left = deadline - time.monotonic()
        if left <= 0 or (until is not None and until.is_set()):
            return True
        time.sleep(min(0.1, left))
    return False


def page_shown() -> None:
    """A page has run through once: the preload may now compile the training loop."""
    _page_shown.set()


def claim(config, session_id: str | None):
    """The preloaded runner, for the first page that asks, when `config` is the one it was built for (the page
    then belongs to `session_id`); else None. Only the first page is offered it: one with other settings
    closes it. Waits while the preload is still building it (the page would build the same trainer)."""
    if not _started.is_set():
        return None
    _built.wait()
    try:
        runner = _offered.pop()
    except IndexError:  # claimed already, or the preload failed
        return None
    if runner.config != config or runner.closed:
        runner.close(wait=False)
        return None
    runner.session_id = session_id
    runner.touch()
    return runner


def start_preload() -> threading.Thread:
    """`warm_default` in a daemon thread that the exit handling waits for (`shutdown.track`)."""
    from .shutdown import track

    thread = threading.Thread(target=warm_default, name="twnn-preload", daemon=True)
    _started.set()
    track(thread)
    thread.start()
    return thread
