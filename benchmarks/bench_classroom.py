#!/usr/bin/env python
"""A classroom on one server: 8 and 16 browser tabs training at once on one `twnn dashboard` (loopback).

For each tab count N (`--tabs`, default 8 16), one fresh server, started as users start it (`twnn dashboard`,
from a temporary directory), and N tabs of the system Chromium, each its own browser context (its own
Streamlit session, as N students' browsers are):
1. load: every tab opens the page and presses Play (nobody is refused); then for `--seconds` (default 60;
   `--seconds 300` or more for the long run) the Step readout of every tab is read every `--sample-s`:
   steps per tab over the window, steps/s per tab, the slowest tab's share against the fastest; the
   message each tab shows (it says that it shares the server and with how many); the server's memory
   (RSS of the process) and thread count every 2 s: the curve, and its peak over the window; the tabs whose
   Step readout ever went down (a run lost: the page started over from step 0);
2. release: every tab is closed; for up to `--release-s` (default 90) the server's threads and memory
   are sampled: the seconds until its thread count is back to what it was before the tabs opened
   (a closed tab's session is kept for a reconnect; its run pauses after `DISCONNECT_GRACE_S`, 30 s, and its
   worker thread ends), and the memory then. The baseline is
   taken with one tab open that only looks (it stays open): JAX's thread pools exist from its first page;
3. exit under load: N tabs again, all playing; then SIGINT (first N) or SIGTERM (second; `--signal`) to it:
   the seconds until it exited, its exit code (0 is Streamlit's own on both signals) and whether its log
   holds a C++ abort ("terminate called", "FATAL") or a traceback (counted apart: those of Streamlit's own
   websocket endpoint, which logs one when a tab's connection closes while it writes to it). `--both-signals`
   tries both for every N (another server start and load each).

Usage:  python benchmarks/bench_classroom.py [--tabs 8 16] [--seconds 60] [--release-s 90] [--both-signals]
                                             [--out F]
Prints one JSON document on stdout (progress on stderr); the load average is recorded before and after.
Needs Playwright and /usr/bin/chromium. Linux (/proc) only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench_dashboard import CHROMIUM, CHROMIUM_ARGS, JS_METRIC, _free_port  # the script beside this one

from twnn_jax.bench import device_info

FAULTS = ("terminate called", "FATAL", "Traceback")
PLAY = ".st-key-play button:visible"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Server:
    """`twnn dashboard` on a free loopback port, its log in a file, its /proc figures."""

    def __init__(self, work: Path):
        self.port = _free_port()
        self.log_path = work / f"server-{self.port}.log"
        cmd = [sys.executable, "-m", "twnn_jax.cli", "dashboard", "--server.headless=true",
               f"--server.port={self.port}", "--server.fileWatcherType=none"]
        self.proc = subprocess.Popen(cmd, cwd=work, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.logs()[-3000:]}")
            try:
                if urllib.request.urlopen(self.url + "_stcore/health", timeout=1).read() == b"ok":
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("the server did not answer /_stcore/health within 120 s")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def figures(self) -> dict:
        """RSS (MB) and thread count of the server process now."""
        status = dict(line.split(":", 1) for line in open(f"/proc/{self.proc.pid}/status") if ":" in line)
        return {"rss_mb": round(int(status["VmRSS"].split()[0]) / 1024, 1), "threads": int(status["Threads"])}

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


class Sampler:
    """The server's figures every `every` seconds in a thread, as [seconds since start, rss_mb, threads]."""

    def __init__(self, server: Server, every: float = 2.0):
        self.server, self.every, self.curve, self.t0 = server, every, [], time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                f = self.server.figures()
            except (OSError, KeyError):
                return
            self.curve.append([round(time.monotonic() - self.t0, 1), f["rss_mb"], f["threads"]])
            self._stop.wait(self.every)

    def stop(self) -> list:
        self._stop.set()
        self._thread.join(10)
        return self.curve


def _step(page) -> int:
    for _ in range(5):
        try:
            value = page.evaluate(JS_METRIC, "Step")
        except Exception:  # noqa: BLE001 - a page mid-rerun: read again
            time.sleep(0.2)
            continue
        if value is not None:
            return int(value) if value != "–" else 0
        time.sleep(0.2)
    return -1


def _label(page) -> str:
    try:
        return page.locator(PLAY).inner_text(timeout=5000).strip()
    except Exception:  # noqa: BLE001 - mid-rerun
        return ""


def open_tabs(browser, url: str, n: int, timeout_s: float = 600) -> tuple[list, list, float, dict]:
    """N tabs (each its own context: its own session), every one playing. Returns (contexts, pages, seconds,
    notes): a click on Play that landed while the page was rerunning can be lost; such a tab (its button
    still reads Play) is clicked again and counted in notes["play_clicked_again"]; tabs that never trained
    within `timeout_s` are listed in notes["not_training"] and the measurement goes on without them."""
    t0 = time.perf_counter()
    contexts = [browser.new_context(viewport={"width": 1280, "height": 900}) for _ in range(n)]
    pages = [c.new_page() for c in contexts]
    for p in pages:
        p.set_default_timeout(timeout_s * 1000)
        p.goto(url)
    for i, p in enumerate(pages):
        p.wait_for_selector(PLAY)
        p.wait_for_selector(".st-key-chart_fwd .js-plotly-plot")  # compiled (the first tab), drawn
        p.locator(PLAY).click()
        log(f"  tab {i + 1}/{n} playing")
    deadline, notes = time.monotonic() + timeout_s, {"play_clicked_again": 0, "not_training": []}
    while True:
        waiting = [i for i, p in enumerate(pages) if _step(p) <= 0]
        if not waiting:
            break
        if time.monotonic() > deadline:
            notes["not_training"] = [{"tab": i + 1, "button": _label(pages[i])} for i in waiting]
            log(f"  tabs not training after {timeout_s:.0f} s: {notes['not_training']}")
            break
        for i in waiting:
            if "Play" in _label(pages[i]).split():  # the label also holds its icon and shortcut key
                pages[i].locator(PLAY).click()
                notes["play_clicked_again"] += 1
                log(f"  tab {i + 1}: Play clicked again")
        time.sleep(5.0)
    return contexts, pages, time.perf_counter() - t0, notes


def sharing_messages(pages) -> list[str]:
    out = []
    for p in pages:
        texts = [t for t in p.locator("[data-testid='stAlert']").all_inner_texts() if "Sharing" in t or "line" in t]
        out.append(texts[0].strip() if texts else "")
    return out


def open_probe(browser, url: str):
    """One tab that only looks (no Play), open for the whole run: JAX's thread pools and the compiled step
    exist from then on, so the server's figures with it alone are the baseline the tabs' release returns to."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(600_000)
    page.goto(url)
    page.wait_for_selector(".st-key-chart_fwd .js-plotly-plot")
    return context


def load_phase(browser, server: Server, n: int, seconds: float, sample_s: float, release_s: float) -> dict:
    open_probe(browser, server.url)
    figures = []
    for _ in range(6):  # the fewest threads over 10 s: the probe's warm-up compilations have ended
        figures.append(server.figures())
        time.sleep(2.0)
    before = min(figures, key=lambda f: f["threads"])
    sampler = Sampler(server)
    contexts, pages, open_s, notes = open_tabs(browser, server.url, n)
    log(f"  {n} tabs playing after {open_s:.0f} s; window of {seconds:.0f} s")
    samples, t0 = [], time.monotonic()  # per tab [seconds, step]: reading many busy tabs takes a while
    while True:
        samples.append([[round(time.monotonic() - t0, 2), _step(p)] for p in pages])
        if time.monotonic() - t0 >= seconds and len(samples) >= 2:
            break
        time.sleep(min(sample_s, max(0.0, seconds - (time.monotonic() - t0))))
    messages = sharing_messages(pages)
    first, last = samples[0], samples[-1]
    spans = [b[0] - a[0] for a, b in zip(first, last)]
    span = min(spans)
    steps = [b[1] - a[1] if a[1] >= 0 and b[1] >= 0 else None for a, b in zip(first, last)]  # None: unreadable
    rates = [x / t for x, t in zip(steps, spans) if x is not None]
    # a tab whose Step readout went down lost its run (a new session or runner started from step 0)
    lost = [i + 1 for i in range(n) if any(0 <= b[i][1] < a[i][1] for a, b in zip(samples, samples[1:]))]
    load_curve = sampler.stop()
    window = [c for c in load_curve if c[0] >= load_curve[-1][0] - seconds]

    at_close = server.figures()
    log("  closing the tabs")
    release = Sampler(server)
    for c in contexts:
        c.close()
    t_close, released_s = time.monotonic(), None
    while time.monotonic() - t_close < release_s:
        if server.figures()["threads"] <= before["threads"]:
            released_s = round(time.monotonic() - t_close, 1)
            break
        time.sleep(1.0)
    time.sleep(4.0)
    release_curve = release.stop()
    return {
        "tabs": n,
        "open_and_play_s": round(open_s, 1),
        **notes,
        "window_s": round(span, 1),
        "steps_per_tab": steps,
        "steps_per_s_per_tab": [None if x is None else round(x / t, 1) for x, t in zip(steps, spans)],
        "every_tab_trained": all(x is not None and x > 0 for x in steps),
        "tabs_that_lost_their_run": lost,
        "slowest_over_fastest": round(min(rates) / max(rates), 3) if max(rates) > 0 else None,
        "total_steps_per_s": round(sum(rates), 1),
        "step_samples": samples,
        "messages": messages,
        "server_before_tabs": before,
        "server_peak_during_window": {"rss_mb": max(c[1] for c in window), "threads": max(c[2] for c in window)},
        "server_curve_open_and_window": load_curve,  # [s, rss_mb, threads], from the first tab opening
        "server_at_close": at_close,
        "release_threads_back_s": released_s,  # None: not back within release_s
        "server_after_release": server.figures(),
        "server_curve_release": release_curve,
    }


def signal_phase(browser, server: Server, n: int, signum: int) -> dict:
    contexts, pages, _, _ = open_tabs(browser, server.url, n)
    time.sleep(5.0)
    playing = sum(1 for p in pages if _step(p) > 0)
    log(f"  {playing}/{n} tabs training; sending {signal.Signals(signum).name}")
    t0 = time.monotonic()
    os.killpg(server.proc.pid, signum)
    try:
        code = server.proc.wait(timeout=60)
        exit_s = round(time.monotonic() - t0, 2)
    except subprocess.TimeoutExpired:
        code, exit_s = None, None
    for c in contexts:
        try:
            c.close()
        except Exception:  # noqa: BLE001,S110 - the server is gone; the pages may complain
            pass
    logs = server.logs()
    return {"signal": signal.Signals(signum).name, "tabs_training": playing, "exit_code": code, "exit_s": exit_s,
            "faults": [f for f in FAULTS if f in logs], "tracebacks": _tracebacks(logs),
            "log_tail": logs[-600:] if code != 0 else ""}


def _tracebacks(logs: str) -> dict:
    """Tracebacks in the server's log by where they end: Streamlit's own websocket endpoint (a tab's connection
    closing while the server writes to it, logged by Streamlit's Starlette server) or anywhere else."""
    blocks = logs.split("Traceback (most recent call last):")[1:]
    ours = ("twnn_jax", "twnn_dashboard", "/dashboard/")
    websocket = sum(1 for b in blocks if "streamlit/web/server/starlette/starlette_websocket.py" in b
                    and not any(o in b for o in ours))
    return {"streamlit_websocket": websocket, "other": len(blocks) - websocket}


def _save(doc: dict, out: str | None) -> None:
    """The results so far (a long run interrupted keeps what it measured)."""
    if out:
        Path(out).write_text(json.dumps(doc, indent=2) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tabs", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--seconds", type=float, default=60.0, help="load window per tab count (>= 300 for the long run)")
    ap.add_argument("--sample-s", type=float, default=10.0, help="read every tab's Step this often")
    ap.add_argument("--release-s", type=float, default=90.0, help="wait this long at most for the release")
    ap.add_argument("--both-signals", action="store_true", help="SIGINT and SIGTERM for every tab count")
    ap.add_argument("--signal", choices=["INT", "TERM"], help="this signal for every tab count (default: "
                    "SIGINT, SIGTERM, SIGINT, ... in the order of --tabs)")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    doc = {"benchmark": "classroom", "date": time.strftime("%Y-%m-%d %H:%M"), "device": device_info(),
           "cpu_count": os.cpu_count(), "python": platform.python_version(), "seconds": args.seconds,
           "loadavg_before": os.getloadavg(), "runs": [], "signals": []}
    with tempfile.TemporaryDirectory(prefix="twnn-classroom-") as tmp, sync_playwright() as pw:
        work = Path(tmp)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for i, n in enumerate(args.tabs):
                log(f"bench_classroom: {n} tabs")
                server = Server(work)
                try:
                    doc["runs"].append(load_phase(browser, server, n, args.seconds, args.sample_s, args.release_s))
                    _save(doc, args.out)
                    r = doc["runs"][-1]
                    log(f"  steps/s per tab {r['steps_per_s_per_tab']}; released in {r['release_threads_back_s']} s")
                    signals = [signal.SIGINT, signal.SIGTERM] if args.both_signals else \
                        [getattr(signal, "SIG" + args.signal)] if args.signal else \
                        [signal.SIGINT if i % 2 == 0 else signal.SIGTERM]
                    for k, signum in enumerate(signals):
                        if k:
                            server = Server(work)
                        doc["signals"].append({"tabs": n, **signal_phase(browser, server, n, signum)})
                        log(f"  {doc['signals'][-1]}")
                        _save(doc, args.out)
                finally:
                    server.stop()
        finally:
            browser.close()
    doc["loadavg_after"] = os.getloadavg()
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
