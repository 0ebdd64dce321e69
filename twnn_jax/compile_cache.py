"""JAX's persistent compilation cache for the `twnn` commands and the dashboard.

Compiling a configuration's jitted functions takes most of a start (seconds each on a CPU); with the
cache on, a later start loads the compiled programs from disk instead. The cache lives in the user's
cache directory, `$XDG_CACHE_HOME/twnn-jax/jax` (default `~/.cache/twnn-jax/jax`); deleting that folder
is always safe. The environment variable `TWNN_COMPILE_CACHE` moves it (a directory) or turns it off
(`0`, `off`, `false` or `no`).

Call `enable_compile_cache()` before the first compilation of the process: JAX decides once, at its
first compilation, whether the cache is used.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "TWNN_COMPILE_CACHE"
OFF_VALUES = ("0", "off", "false", "no")
# Every program is kept, the smallest too: a trainer's first `init` runs ~30 eager operations, each a tiny
# program of its own. Measured (sine, the dashboard's sizes, 2 busy cores, warm cache, 3 runs each): init
# 2.0-2.5 s with every program kept, 2.4-2.8 s when only those compiling in >= 0.1 s are; 42 files, 0.5 MB.
MIN_COMPILE_TIME_S = 0.0
# A bound on the folder (least recently used programs go first). Setting one also makes JAX take a file lock
# around every read and write, so a dashboard and a `twnn train` (or two tests) sharing the folder never read a
# program another process is half-way through writing. Needs the `filelock` package (a dependency).
MAX_SIZE_BYTES = 1 << 30


def cache_dir(environ: dict | None = None) -> Path | None:
    """The cache directory the environment asks for, or None when the cache is turned off."""
    env = os.environ if environ is None else environ
    value = env.get(ENV_VAR, "").strip()
    if value.lower() in OFF_VALUES:
        return None
    if value:
        return Path(value).expanduser()
    xdg = env.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "twnn-jax" / "jax"


def enable_compile_cache(environ: dict | None = None) -> Path | None:
    """Turn JAX's persistent compilation cache on in `cache_dir()`; returns that directory, or None when it
    is turned off or cannot be created (then everything works as before, compiling on every start)."""
    path = cache_dir(environ)
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    import jax

    if jax.config.jax_compilation_cache_dir == str(path):  # done already (the dashboard calls it on every rerun)
        return path
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", MAX_SIZE_BYTES)
    return path
