"""Start JAX with its CPU compute threads on one core, leaving the other cores to the page.

XLA's CPU backend sizes its thread pool by the cores the process may use and pins nothing; idle pool
threads spin before they sleep. For the dashboard's small networks (tens of microseconds a step) the
extra threads buy no speed but take CPU from the Streamlit server and the browser. So the backend is
started while the calling thread may use only one core: the pool's threads are created there and keep
that affinity. The calling thread gets all its cores back at once, and every other thread keeps them.

Measured on this project's 2-core machine (sine, hidden 32, batch 32): headless training runs at the
same speed on 1.14 cores instead of 1.70 (`python benchmarks/bench_dashboard.py` compares both).
"""

from __future__ import annotations

import os
import sys


def _backend_started() -> bool:
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return bool(getattr(xla_bridge, "_backends", None))


def start_jax_on_one_core() -> bool:
    """Start JAX's backends with their threads pinned to one core. False when there is nothing to do:
    the backend already started in this process, the platform has no CPU affinity (not Linux), or the
    process may use one core only."""
    if _backend_started() or not hasattr(os, "sched_setaffinity"):
        return False
    cores = os.sched_getaffinity(0)
    if len(cores) < 2:
        return False
    import jax

    os.sched_setaffinity(0, {min(cores)})  # this thread only (pid 0); threads created now inherit it
    try:
        jax.devices()  # starts the backends and their thread pools
    finally:
        os.sched_setaffinity(0, cores)
    return True
