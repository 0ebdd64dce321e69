#!/usr/bin/env python
"""Benchmark how two dashboard sessions and a page share XLA's one compute thread (wall-clock, JSON out).

The dashboard starts JAX with its compute threads on one core (dashboard/cpu_threads.py). While several
runners play, each keeps one call of the training loop in flight, so that they take turns call by call,
and a page's evaluate/generate/contraction goes ahead of the next training call (dashboard/session.py).
The test `tests/test_dashboard_runner.py::test_sessions_and_pages_take_turns_on_xlas_thread` checks the
facts no machine load changes; this measures what load does change:

- shares: two runners (seeds 0 and 1) play; over `--windows` windows of `--window-s` seconds each, the
  steps each made and its share of both (target: each >= 0.3 of the window's steps);
- streak: in the order the calls finished, the longest run of one runner's calls in a row while the other
  played (1 is strict turn-taking);
- page wait: `--page-tries` times, while both train, the seconds the page's generate + evaluate +
  contraction took (target: worst < 1.0 s).

Targets are reported (`pass`), not enforced: they were the old test's thresholds, met on an idle 2-core
machine; the load average is recorded beside them.

Usage:  python benchmarks/bench_dashboard_turns.py [--window-s 1] [--windows 3]
                                   [--page-tries 8] [--out F]
Prints one JSON document on stdout (progress on stderr).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from twnn_dashboard.cpu_threads import start_jax_on_one_core

start_jax_on_one_core()  # as the dashboard does (dashboard/app.py)

import jax  # noqa: E402

from twnn_dashboard import session  # noqa: E402
from twnn_jax.bench import device_info  # noqa: E402
from twnn_jax.checkpoint import dumps_strict, write_atomic  # noqa: E402

MIN_SHARE = 0.3
MAX_PAGE_WAIT_S = 1.0


def longest_streak(a: list[float], b: list[float]) -> int:
    """The longest run of one list's times in a row when both are merged in order."""
    merged = sorted([(t, 0) for t in a] + [(t, 1) for t in b])
    best = run = 0
    last = None
    for _, who in merged:
        run = run + 1 if who == last else 1
        last = who
        best = max(best, run)
    return best


def measure(window_s: float, windows: int, page_tries: int) -> dict:
    r = session.Runner(session.make_config("sine"), warm_up=False)
    other = session.Runner(session.make_config("sine", seed=1), warm_up=False)  # another session's run
    r.step(2)
    r.evaluate()
    r.generate()
    r.contraction()
    other.step(2)  # compiled before training
    try:
        assert r.play() and other.play()
        time.sleep(0.5)
        start = time.monotonic()
        shares = []
        for _ in range(windows):  # each window on its own: one run could take the thread at any time
            a, b = r.step_count, other.step_count
            time.sleep(window_s)
            da, db = r.step_count - a, other.step_count - b
            shares.append({"steps": [da, db], "min_share": round(min(da, db) / max(1, da + db), 4)})
        calls = [[t for t, _ in x._times if t >= start] for x in (r, other)]
        waits = []
        for _ in range(page_tries):
            time.sleep(0.3)
            t = time.perf_counter()
            r.generate()
            r.evaluate()
            r.contraction(max_age_s=0)
            waits.append(round(time.perf_counter() - t, 4))
    finally:
        session.stop_all()
    worst_share = min(s["min_share"] for s in shares)
    return {
        "windows": shares,
        "calls_per_runner": [len(c) for c in calls],
        "longest_streak": longest_streak(*calls),
        "page_wait_s": waits,
        "targets": {"min_share": MIN_SHARE, "max_page_wait_s": MAX_PAGE_WAIT_S},
        "pass": {"shares": worst_share >= MIN_SHARE, "page_wait": max(waits) < MAX_PAGE_WAIT_S},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-s", type=float, default=1.0, help="seconds per share window (default 1)")
    parser.add_argument("--windows", type=int, default=3, help="share windows (default 3)")
    parser.add_argument("--page-tries", type=int, default=8, help="timed page computations (default 8)")
    parser.add_argument("--out", help="also write the JSON document to this file")
    args = parser.parse_args(argv)
    print("bench_dashboard_turns: two runners playing ...", file=sys.stderr, flush=True)
    load_before = os.getloadavg()
    result = measure(args.window_s, args.windows, args.page_tries)
    doc = {
        "benchmark": "dashboard_turns",
        **result,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device": device_info(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    text = dumps_strict(doc, indent=2)
    print(text)
    if args.out:
        write_atomic(args.out, (text + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
