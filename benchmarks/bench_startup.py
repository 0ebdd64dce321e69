#!/usr/bin/env python
"""Start-up time of `twnn dashboard` and `twnn train`, with JAX's persistent compilation cache off, cold
(an empty cache directory) and warm (the same directory, a second start).

Dashboard, in a real Chromium (Debian's, /usr/bin/chromium), the server started as users start it
(`twnn dashboard`, from a temporary directory):
  first_chart_s    server process start -> the first `.js-plotly-plot` drawn by Plotly (`_fullData`) in the page
  plotly_requested_s, plotly_fetched_s
                   ... -> the browser's request for plotly.js, and its last byte (the page's resource timing)
  page_chart_s     ... -> the default task's own chart drawn (digits, the page's default: the samples'
                   scatter; sine: the free-running generation)
  switch_new_s     the default task -> the other of sine and digits (first visit in this server): select ->
                   its own chart drawn
  switch_back_s    back to the default task (a task used before): select -> its chart drawn again
CLI: wall seconds of `twnn train --task sine --steps 10 --quiet` in a fresh process, same three cache states.

With `--browsers fresh returning` each start is also measured in a browser that has opened the dashboard
before (`returning`: one browser profile for the whole run, its cache primed by an untimed start, and the
server on the same port each time, as `twnn dashboard` keeps 8501): Streamlit's and plotly.js's files then
come from the browser's cache. `fresh` (the default) is a new profile for every start: a first visit.

With `--launchers twnn streamlit` each dashboard start is paired with one by `python -m streamlit run
<the installed app.py>` (the same server without the background preload that `twnn dashboard` starts,
dashboard/preload.py), taken in turn, so the two can be compared in one run.

Usage:  python benchmarks/bench_startup.py [--repeats 1] [--states off cold warm] [--no-cli] [--no-browser]
                                          [--launchers twnn streamlit] [--browsers fresh returning] [--out FILE]
Prints one JSON document on stdout (progress on stderr). Needs the package installed (`pip install -e .`),
Playwright (`pip install -e '.[dev]'`) and Chromium. The machine's load average is recorded with each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1500, "height": 1000}
TWNN = [sys.executable, "-m", "twnn_jax.cli"]  # the `twnn` console script, with this interpreter
DRAWN = """(sel) => [...document.querySelectorAll(sel)].some((e) => Array.isArray(e._fullData))"""
ANY_CHART = ".js-plotly-plot"
TASK_CHART = {"sine": ".st-key-chart_sine .js-plotly-plot", "digits": ".st-key-chart_samples .js-plotly-plot"}
TIMEOUT_MS = 300_000
PLOTLY_FETCH = """(url) => {  // epoch ms of the request for `url` (plotly.js) and of its last byte, or null
  const e = performance.getEntriesByType("resource").find((r) => r.name.endsWith(url));
  return e ? [performance.timeOrigin + e.fetchStart, performance.timeOrigin + e.responseEnd] : null;
}"""


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(cache: str) -> dict:
    return {**os.environ, "TWNN_COMPILE_CACHE": cache}


def _wait_health(proc: subprocess.Popen, port: int, log_path: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"twnn dashboard exited:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
                if r.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"no answer on /_stcore/health in {timeout} s:\n{log_path.read_text()}")


def _select_task(page, task: str) -> None:
    page.locator(".st-key-task").click()
    page.get_by_role("option", name=task, exact=True).click()


def _server_command(launcher: str, port: int) -> list[str]:
    flags = ["--server.headless=true", f"--server.port={port}", "--server.fileWatcherType=none"]
    if launcher == "twnn":
        return [*TWNN, "dashboard", *flags]
    from twnn_jax.cli import dashboard_command

    return dashboard_command(flags)  # python -m streamlit run .../app.py ...: no preload


def dashboard_start(new_page, cache: str, work: Path, launcher: str = "twnn", port: int | None = None) -> dict:
    """One server start (on `port`, or a free one): times to the first chart, then the default task -> the other
    one -> back, in a page from `new_page()`."""
    from twnn_dashboard.controls import defaults
    from twnn_dashboard.static_files import PLOTLY_URL

    home = defaults()["task"]
    other = "sine" if home != "sine" else "digits"
    port = port or _free_port()
    log_path = work / f"server-{port}.log"
    out = {"load_before": os.getloadavg()[0], "tasks": [home, other, home]}
    with open(log_path, "w") as log_file:
        t0, t0_epoch = time.perf_counter(), time.time()
        proc = subprocess.Popen(_server_command(launcher, port), cwd=work, env=_env(cache), stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_health(proc, port, log_path)
        out["health_s"] = time.perf_counter() - t0
        page = new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector(".st-key-task", timeout=TIMEOUT_MS)
        out["controls_s"] = time.perf_counter() - t0
        page.wait_for_function(DRAWN, arg=ANY_CHART, timeout=TIMEOUT_MS)
        out["first_chart_s"] = time.perf_counter() - t0
        fetch = page.evaluate(PLOTLY_FETCH, PLOTLY_URL)
        if fetch:
            out["plotly_requested_s"], out["plotly_fetched_s"] = (ms / 1000 - t0_epoch for ms in fetch)
        page.wait_for_function(DRAWN, arg=TASK_CHART[home], timeout=TIMEOUT_MS)
        out["page_chart_s"] = time.perf_counter() - t0
        t = time.perf_counter()
        _select_task(page, other)
        page.wait_for_function(DRAWN, arg=TASK_CHART[other], timeout=TIMEOUT_MS)
        out["switch_new_s"] = time.perf_counter() - t
        page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=TIMEOUT_MS)
        t = time.perf_counter()
        _select_task(page, home)
        page.wait_for_function(DRAWN, arg=TASK_CHART[home], timeout=TIMEOUT_MS)
        out["switch_back_s"] = time.perf_counter() - t
        page.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out["server_exit"] = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out["server_exit"] = proc.wait()
    out["load_after"] = os.getloadavg()[0]
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}


def cli_train(cache: str, work: Path) -> dict:
    load = os.getloadavg()[0]
    run = Path(tempfile.mkdtemp(dir=work)) / "run"
    t = time.perf_counter()
    subprocess.run([*TWNN, "train", "--task", "sine", "--steps", "10", "--quiet", "--out", str(run)], cwd=work,
                   env=_env(cache), check=True, capture_output=True, text=True)
    return {"wall_s": round(time.perf_counter() - t, 2), "load_before": load}


def _states(cache_dir: Path, names: list[str]):
    """(name, TWNN_COMPILE_CACHE value) in the order off, cold (emptied first), warm (kept)."""
    values = {"off": "0", "cold": str(cache_dir), "warm": str(cache_dir)}
    return [(name, values[name]) for name in ("off", "cold", "warm") if name in names]


def _summary(runs: list[dict]) -> dict:
    keys = sorted({k for r in runs for k, v in r.items() if isinstance(v, float) and k.endswith("_s")})
    return {k: round(statistics.median(r[k] for r in runs if k in r), 2) for k in keys}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1, help="rounds of (off, cold, warm); medians are reported")
    ap.add_argument("--no-cli", action="store_true", help="skip the `twnn train` timings")
    ap.add_argument("--no-browser", action="store_true", help="skip the dashboard timings")
    ap.add_argument("--states", nargs="+", choices=["off", "cold", "warm"], default=["off", "cold", "warm"],
                    help="cache states to measure (warm after cold uses the directory cold filled)")
    ap.add_argument("--launchers", nargs="+", choices=["twnn", "streamlit"], default=["twnn"],
                    help="start the server with `twnn dashboard` (preloads) and/or `python -m streamlit run` (no "
                         "preload), in turn for each start; results under dashboard / dashboard_streamlit")
    ap.add_argument("--browsers", nargs="+", choices=["fresh", "returning"], default=["fresh"],
                    help="fresh: a new browser profile for each start (a first visit); returning: one profile that "
                         "has opened the dashboard before, the server on one port (its cache holds the page's "
                         "files); results of returning under dashboard_returning (dashboard_streamlit_returning)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="twnn-startup-"))
    cache_dir = work / "cache"
    results: dict = {"cli_train": {}, "dashboard": {}}
    try:
        if not args.no_cli:
            for name, cache in _states(cache_dir, args.states) * args.repeats:
                if name == "cold":
                    shutil.rmtree(cache_dir, ignore_errors=True)
                r = cli_train(cache, work)
                log(f"twnn train ({name} cache): {r}")
                results["cli_train"].setdefault(name, []).append(r)
        if not args.no_browser:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                pages = {"fresh": lambda: browser.new_page(viewport=VIEWPORT)}  # a new context: a new profile
                if "returning" in args.browsers:
                    profile = p.chromium.launch_persistent_context(
                        str(work / "profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, viewport=VIEWPORT)
                    pages["returning"], port = profile.new_page, _free_port()
                    log("priming the returning browser's profile (an untimed start)")
                    dashboard_start(profile.new_page, str(work / "priming-cache"), work, "twnn", port)
                for name, cache in _states(cache_dir, args.states) * args.repeats:
                    for launcher in args.launchers:
                        for kind in args.browsers:
                            if name == "cold":  # every cold start on an empty cache (warm: the last cold one's)
                                shutil.rmtree(cache_dir, ignore_errors=True)
                            r = dashboard_start(pages[kind], cache, work, launcher,
                                                port if kind == "returning" else None)
                            part = "dashboard" + ("" if launcher == "twnn" else f"_{launcher}") + (
                                "_returning" if kind == "returning" else "")
                            log(f"{part} ({name} cache): {r}")
                            results.setdefault(part, {}).setdefault(name, []).append(r)
                browser.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from twnn_jax.bench import device_info  # the commands it started run on this machine's default device

    doc = {
        "benchmark": "startup",
        "device": device_info(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "repeats": args.repeats,
        "browsers": args.browsers,
        "median": {part: {name: _summary(runs) for name, runs in states.items()} for part, states in results.items()},
        "runs": results,
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
