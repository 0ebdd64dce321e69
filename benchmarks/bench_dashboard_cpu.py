#!/usr/bin/env python
"""Where the CPU goes while the dashboard trains: per-thread CPU of the server, Chromium's, and steps/s.

Starts `streamlit run dashboard/app.py`, opens it in the system Chromium (1500x1000), presses Play, and
over 10 s windows (charts every 2 s, then frozen, `--rounds` times) reads /proc: the CPU share of each
server thread by name (`tf_XLAEigen`: XLA's compute thread, pinned to one core by the dashboard;
`python`: every Python thread: the trainer, Streamlit's script runs and server) and of Chromium's
processes by type, with the steps/s the page shows, and how long each server thread was runnable but
waited for a CPU. XLA's thread busy below 1.0 means training waited: for Python (the GIL, the page's
own computations) when idle, for a CPU taken by other work when waiting.

Usage:  python benchmarks/bench_dashboard_cpu.py [--rounds 2]      (Linux; prints one JSON document)
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time

from bench_dashboard import (  # the script beside this one (python puts benchmarks/ on the path)
    CHROMIUM,
    CHROMIUM_ARGS,
    _free_port,
    _step,
    page_steps_rate,
    start_server,
)

from twnn_jax.bench import device_info

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(stat_path: str) -> float:
    fields = open(stat_path).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def _wait_s(schedstat_path: str) -> float:
    return int(open(schedstat_path).read().split()[1]) / 1e9  # time runnable but waiting for a CPU


def server_threads(pid: int) -> dict[str, tuple[str, float, float]]:
    """Per thread id: (name, CPU seconds, seconds runnable but waiting for a CPU)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        task = f"/proc/{pid}/task/{tid}"
        try:
            out[tid] = (open(f"{task}/comm").read().strip(), _cpu_s(f"{task}/stat"), _wait_s(f"{task}/schedstat"))
        except OSError:
            pass
    return out


def chromium_processes() -> collections.Counter:
    total = collections.Counter()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline").read()
            if "chromium" in cmd:
                kind = cmd.split("--type=", 1)[1].split("\0")[0].split()[0] if "--type=" in cmd else "browser"
                total[kind] += _cpu_s(f"/proc/{pid}/stat")
        except (OSError, IndexError):
            pass
    return total


def window(server_pid: int, page, seconds: float) -> dict:
    threads_a, chromium_a = server_threads(server_pid), chromium_processes()
    t0 = time.monotonic()
    rate, _, _ = page_steps_rate(page, seconds)
    dt = time.monotonic() - t0
    threads_b, chromium_b = server_threads(server_pid), chromium_processes()
    by_name, waited = collections.Counter(), collections.Counter()
    for tid, (name, cpu, wait) in threads_b.items():
        before = threads_a.get(tid, (name, 0.0, 0.0))
        by_name[name] += cpu - before[1]
        waited[name] += wait - before[2]
    return {"steps_per_s": rate,
            "server_threads": {name: round(cpu / dt, 3) for name, cpu in by_name.most_common() if cpu > 0},
            # runnable but not running: a thread that waits here was held up by other work on its core
            "server_threads_waiting_for_cpu": {name: round(w / dt, 3) for name, w in waited.most_common() if w > 0},
            "chromium": {kind: round((chromium_b[kind] - chromium_a[kind]) / dt, 3) for kind in chromium_b}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    port = _free_port()
    proc = start_server(port)
    out: dict = {"windows": []}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector(".st-key-chart_fwd .js-plotly-plot", timeout=120_000)
            page.locator(".st-key-play button:visible").click()
            while _step(page) < 5:
                time.sleep(0.1)
            time.sleep(3)
            for _ in range(args.rounds):
                for mode in ("charts every 2 s", "frozen"):
                    if mode == "frozen":
                        page.locator(".st-key-freeze label").click()
                        time.sleep(2)
                    out["windows"].append({"mode": mode, **window(proc.pid, page, args.seconds)})
                    if mode == "frozen":
                        page.locator(".st-key-freeze label").click()
                        time.sleep(2)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    out["device"] = device_info()  # the server's: the same machine, the same JAX
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
