#!/usr/bin/env python
"""Benchmark the network views (dashboard/teaching.py): the first screen, compilations, training's cost.

1. first screen: the dashboard's runner for each task at the page's defaults, warmed up, then Play for
   `--seconds` (default 10): every second, the steps taken and the latest step's forward iterations per
   sample (min-max). Does a newcomer see counts that differ across samples and change over training?
2. compilations: after one warm call, the views' trace for many samples, time steps and live values (tol,
   gate, max_iter, damping), both directions (forward, backward) and every slider position drawn; jit cache
   entries of the trace and of the evaluation before and after, and JAX's own "Compiling" log lines.
3. training speed with and without the views: the runner trains in its worker thread while the main
   thread builds the page's figures every `--redraw` seconds (as the page does while training), with the
   network views (`teaching.build`) and without them, in alternating paired windows; steps/s and the
   ratio of each pair (median reported). In-process: the browser's drawing is not included.
4. the views' own time (`viewtime`): paused, the wall time of one redraw of the views (`teaching.build`, each
   direction, the runner's cache cleared first, as after every training step) and of the trace alone, median
   of `--repeats`. With one core for JAX the views' time comes out of training's, so 1 - median / redraw
   estimates the ratio of part 3 (an estimate, not a measurement of it; but readable on a busy machine,
   unlike part 3's paired windows).

Usage:  python benchmarks/bench_teaching.py [--tasks digits,sine] [--seconds 10] [--pairs 3] [--window 5]
        [--parts first,compile,cost,viewtime] [--repeats 20]
Prints one JSON document on stdout (progress on stderr).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time

from twnn_dashboard.cpu_threads import start_jax_on_one_core

start_jax_on_one_core()  # as the dashboard does

import numpy as np  # noqa: E402

from twnn_dashboard import controls, panels, teaching  # noqa: E402
from twnn_dashboard.session import Runner, make_config, stop_all  # noqa: E402
from twnn_jax.bench import device_info, logged_compilations  # noqa: E402
from twnn_jax.settle_trace import settle_for  # noqa: E402


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def page_runner(task: str) -> Runner:
    """A runner as the page makes it (its defaults), warmed up (the user presses Play after the first view)."""
    live = {k: controls.CONTROLS[k].default for k in controls.LIVE_KEYS}
    runner = Runner(make_config(task, **live))
    runner._warm_thread.join()
    return runner


def first_screen(task: str, seconds: float) -> dict:
    runner = page_runner(task)
    rows = []
    runner.play()
    start = time.monotonic()
    try:
        for k in range(1, int(seconds) + 1):
            time.sleep(max(0.0, start + k - time.monotonic()))
            details = runner.snapshot()["details"]
            if details:
                it = details[-1]["fwd_iters"]
                rows.append({"second": k, "step": int(details[-1]["step"]), "fwd_iters_min": int(it.min()),
                             "fwd_iters_max": int(it.max()), "fwd_iters_mean": round(float(it.mean()), 2)})
    finally:
        runner.close()
    return {"task": task, "live": runner.live_values, "per_second": rows}


def compilations(task: str) -> dict:
    runner = page_runner(task)
    runner.step(2)
    teaching.build(runner, runner.snapshot()["params"])  # warm: the trace and the evaluation at these values
    fn = settle_for(runner.config)
    before = (fn._cache_size(), runner.trainer.evaluate._cache_size())
    drawn = 0
    with logged_compilations() as compiled:
        n = len(runner.evaluate()["fwd_iters"])
        picks = ["slowest", "fastest", *range(0, n, max(1, n // 6))]
        steps = ["slowest", 0, 3] if runner.trainer.task.sequence else ["slowest"]
        for values in ({}, {"tol": 1e-6}, {"gate": 4.0}, {"max_iter": 20}, {"damping": 0.2}, {"gate": -8.0}):
            runner.set_live({**{k: controls.CONTROLS[k].default for k in controls.LIVE_KEYS}, **values})
            for pick in picks:
                for t in steps:
                    for direction in teaching.DIRECTIONS:
                        out = teaching.build(runner, runner.snapshot()["params"], pick, "end", t, direction)
                        for k in range(out["count"] + 1):  # every slider position
                            teaching.build(runner, runner.snapshot()["params"], pick, k, t, direction)
                            drawn += 1
            runner.step(1)
    after = (fn._cache_size(), runner.trainer.evaluate._cache_size())
    runner.close()
    return {"task": task, "views_drawn": drawn, "directions": list(teaching.DIRECTIONS),
            "jit_cache_before": {"settle": before[0], "evaluate": before[1]},
            "jit_cache_after": {"settle": after[0], "evaluate": after[1]},
            "new_compilations": (after[0] - before[0]) + (after[1] - before[1]),
            "compile_log_lines": len(compiled), "compile_log_sample": compiled[:5]}


def _window(runner: Runner, seconds: float, redraw: float, views: bool) -> float:
    """Steps/s of the playing runner over `seconds` while this thread draws the page every `redraw` s."""
    runner.reset()
    runner.play()
    time.sleep(1.0)  # past the first calls
    s0, t0 = runner.step_count, time.monotonic()
    while time.monotonic() - t0 < seconds:
        tick = time.monotonic()
        snap = runner.snapshot()
        figs = panels.build_figures(runner, snap)
        if views:
            figs.update({k: v for k, v in teaching.build(runner, snap["params"]).items() if k in ("network", "settle")})
        for fig in figs.values():
            panels.live_chart.figure_json(fig)  # serialised, as the page sends it
        time.sleep(max(0.0, redraw - (time.monotonic() - tick)))
    s1, t1 = runner.step_count, time.monotonic()
    runner.pause(wait=5)
    return (s1 - s0) / (t1 - t0)


def training_cost(task: str, pairs: int, seconds: float, redraw: float) -> dict:
    runner = page_runner(task)
    teaching.build(runner, runner.snapshot()["params"])  # compiled before measuring
    rows = []
    for p in range(pairs):
        order = (False, True) if p % 2 == 0 else (True, False)
        rates = {views: _window(runner, seconds, redraw, views) for views in order}
        rows.append({"without_views": round(rates[False], 1), "with_views": round(rates[True], 1),
                     "ratio": round(rates[True] / rates[False], 3)})
        log(f"  {task} pair {p + 1}: {rows[-1]}")
    runner.close()
    return {"task": task, "window_s": seconds, "redraw_s": redraw, "pairs": rows,
            "median_ratio": statistics.median(r["ratio"] for r in rows)}


def view_time(task: str, repeats: int, redraw: float) -> dict:
    runner = page_runner(task)
    runner.step(2)
    params = runner.snapshot()["params"]
    teaching.build(runner, params)  # compiled
    out = {"task": task, "repeats": repeats, "redraw_s": redraw}
    for name, call in (("trace_ms", lambda: runner.settle(0)),
                       ("views_forward_ms", lambda: teaching.build(runner, params, "slowest", "end", "slowest",
                                                                   "forward")),
                       ("views_backward_ms", lambda: teaching.build(runner, params, "slowest", "end", "slowest",
                                                                    "backward"))):
        times = []
        for _ in range(repeats):
            runner._aux_cache.clear()  # as after a training step: the evaluation and the trace are recomputed
            t0 = time.perf_counter()
            call()
            times.append(1000 * (time.perf_counter() - t0))
        out[name] = round(statistics.median(times), 2)
    worst = max(out["views_forward_ms"], out["views_backward_ms"])
    out["ratio_estimate"] = round(1 - worst / 1000 / redraw, 4)
    runner.close()
    log(f"  {task}: {out}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="digits,sine", help="comma-separated: digits, sine, adding")
    ap.add_argument("--seconds", type=float, default=10.0, help="first screen: seconds of Play")
    ap.add_argument("--pairs", type=int, default=3, help="paired windows with and without the views")
    ap.add_argument("--window", type=float, default=5.0, help="seconds per window")
    ap.add_argument("--redraw", type=float, default=2.0, help="seconds between page redraws (the page's default)")
    ap.add_argument("--repeats", type=int, default=20, help="viewtime: redraws timed")
    ap.add_argument("--parts", default="first,compile,cost,viewtime")
    args = ap.parse_args(argv)
    tasks = args.tasks.split(",")
    parts = args.parts.split(",")
    doc = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
           "load_average": os.getloadavg(), "cpus": os.cpu_count(), "args": vars(args), "device": device_info()}
    try:
        if "first" in parts:
            doc["first_screen"] = []
            for task in tasks:
                log(f"first screen {task} ...")
                doc["first_screen"].append(first_screen(task, args.seconds))
        if "compile" in parts:
            doc["compilations"] = []
            for task in tasks:
                log(f"compilations {task} ...")
                doc["compilations"].append(compilations(task))
        if "cost" in parts:
            doc["training_cost"] = []
            for task in tasks:
                log(f"training with and without the views {task} ...")
                doc["training_cost"].append(training_cost(task, args.pairs, args.window, args.redraw))
        if "viewtime" in parts:
            doc["view_time"] = []
            for task in tasks:
                log(f"the views' own time {task} ...")
                doc["view_time"].append(view_time(task, args.repeats, args.redraw))
    finally:
        stop_all()
    doc["load_average_end"] = os.getloadavg()
    print(json.dumps(doc, indent=1, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))


if __name__ == "__main__":
    main()
