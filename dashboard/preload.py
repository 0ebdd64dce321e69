"""Get the first page ready while the browser is still connecting: `twnn dashboard` starts this first.

Streamlit runs the app script only when a browser session connects; the script then imports JAX and
builds and compiles the default run's functions before the first chart can show. `twnn dashboard` runs the
Streamlit server in its own process (`twnn_jax.cli`), so the same work can start at once in a background
thread: JAX's backend (on one core, `cpu_threads`), the trainer of the page's default settings (the one
shared trainer cache, `twnn_jax.train.trainer_for`) and the functions its first page calls, compiled or
loaded from the compilation cache. The page then finds them built. `streamlit run dashboard/app.py`
skips this (and works the same, only later).
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)


def default_config():
    """The run config of a page opened without URL parameters (the widgets' defaults)."""
    from .controls import defaults
    from .session import make_config

    return make_config(**defaults())


def warm_default() -> None:
    """Build and compile what the default page calls first (`Runner.first_page_calls`: the evaluation, the
    generation, the contraction estimate, the network views' settling trace), then the training loop, with a
    runner of the default config that is then dropped. Errors are left to the page, which reports them."""
    from .cpu_threads import start_jax_on_one_core

    start_jax_on_one_core()
    from .session import Runner

    try:
        runner = Runner(default_config(), warm_up=False)  # builds the trainer (the shared cache) and its state
        try:
            for call in runner.first_page_calls():  # what the first view shows, first
                call()
            runner.compile_training()
        finally:
            runner.close(wait=False)
    except Exception:  # noqa: BLE001 - the page builds the same things again and reports what fails
        logger.debug("preloading the default page failed", exc_info=True)


def start_preload() -> threading.Thread:
    """`warm_default` in a daemon thread that the exit handling waits for (`shutdown.track`)."""
    from .shutdown import track

    thread = threading.Thread(target=warm_default, name="twnn-preload", daemon=True)
    track(thread)
    thread.start()
    return thread
