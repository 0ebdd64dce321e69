#!/usr/bin/env python
"""Benchmark the Streamlit dashboard: training speed, control-to-chart latency, compilations.

Measured (default task sine, the dashboard's sizes: hidden 32, batch 32, trajectory capacity 60):

1. headless: the library's loop (`train()`: `Trainer.run`, STEPS_PER_CALL steps per call, and the
   per-step summaries on the host), steps per second.
2. in-process: the dashboard's `Runner` worker thread alone, and with the page's figures built and
   serialised on the main thread at the page's redraw rate (what a Streamlit script run does).
3. browser (real): `streamlit run dashboard/app.py` in a subprocess, driven by Playwright with the
   system Chromium. Play, then count steps from the page's "Step" readout over a window, timed from one
   change of the readout to another (the page itself notes each change; `page_steps_rate`): steps per
   second while the page redraws live, for the "Charts every"
   settings 2, 5 and 10 s and with the charts frozen. Each window starts from the initial network (Reset,
   Play) and is paired with a headless run of the very same steps right after it (the dashboard paused),
   and the ratio of each pair is reported: this machine's speed drifts by 10-15 % over minutes, the ratio
   within a pair less, and a network that has trained longer may need more iterations a step. Then, while training,
   move the tolerance and gate sliders with the keyboard and time (a) key press -> the convergence
   chart shows the new setting (its tolerance line / gate in the chart's meta), (b) key press -> the
   chart's newest step ran with the new setting.
   Times are measured in the browser (performance.now() polling every 20 ms). The window is 1500x1000
   (`--viewport`): charts scrolled out of view are not redrawn, so a taller window (1500x3400 shows every
   live chart) costs the browser more.
4. compilations: a scripted session that changes every live control (several values each), steps,
   evaluates, generates, estimates the contraction and sweeps; counts jit cache entries of the
   trainer's functions (`_cache_size()`) and JAX's own "Compiling" log lines after warm-up.

Usage:  python benchmarks/bench_dashboard.py [--seconds 5] [--pairs 3] [--no-browser | --browser-only]
        [--viewport 1500x1000] [--modes 2s,frozen] [--out F]
Prints one JSON document on stdout (progress on stderr).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import twnn_dashboard
from twnn_dashboard.cpu_threads import start_jax_on_one_core

ROOT = Path(__file__).resolve().parents[1]  # the servers start here, with the checkout's .streamlit/config.toml
APP = Path(twnn_dashboard.__file__).parent / "app.py"

if "--headless-only" not in sys.argv:
    start_jax_on_one_core()  # as the dashboard does (dashboard/app.py); `headless_default_threads` measures without

import jax  # noqa: E402

from twnn_dashboard import live_chart, panels  # noqa: E402
from twnn_dashboard.session import Runner, compile_counts, get_trainer, make_config, stop_all  # noqa: E402
from twnn_jax.bench import device_info, logged_compilations  # noqa: E402
from twnn_jax.train import live_controls, train  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# in process
# ------------------------------------------------------------------------------------------------


def headless_rate(config, seconds: float) -> float:
    """One `train()` call sized to take about `seconds` (train keeps its calls in flight from start to end)."""
    trainer = get_trainer(config)
    live = live_controls(config)
    state, _ = train(trainer, 3, state=trainer.init(config.seed), live=live)  # warm-up (compiles once)
    start = time.perf_counter()
    state, history = train(trainer, 1000, state=state, live=live)
    probe = len(history) / (time.perf_counter() - start)
    start = time.perf_counter()
    state, history = train(trainer, max(1000, int(probe * seconds)), state=state, live=live)
    return len(history) / (time.perf_counter() - start)


def headless_rate_over(config, start: int, end: int) -> float:
    """Steps per second of `train()` over steps start..end of a run from the initial network: the same
    steps, on the same network, as a dashboard window that covered them after a reset (a network that has
    trained longer may need more iterations a step, so steps/s of different stretches do not compare)."""
    trainer = get_trainer(config)
    live = live_controls(config)
    state, _ = train(trainer, max(start, 1), state=trainer.init(config.seed), live=live)
    t = time.perf_counter()
    state, history = train(trainer, end - start, state=state, live=live)
    return len(history) / (time.perf_counter() - t)


def headless_default_threads_rate(config, seconds: float) -> float:
    """headless_rate in a fresh process whose JAX threads may use every core (the dashboard pins them to one)."""
    cmd = [sys.executable, __file__, "--headless-only", "--task", config.task, "--seconds", str(seconds)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return float(json.loads(out.stdout)["headless_steps_per_s"])


def runner_rate(config, seconds: float, render: bool) -> dict:
    runner = Runner(config, warm_up=False)
    runner.step(3)
    runner.generate()
    runner.contraction()
    renders, render_s = 0, 0.0
    runner.play()
    time.sleep(0.5)
    n0, t0 = runner.step_count, time.perf_counter()
    tick = 1.0
    while time.perf_counter() - t0 < seconds:
        if render:
            start = time.perf_counter()
            figs = panels.build_figures(runner, runner.snapshot())
            for fig in figs.values():
                live_chart.figure_json(fig)
            took = time.perf_counter() - start
            renders += 1
            render_s += took
            tick = max(1.0, took / 0.08)  # the page's adaptive redraw rate (page.RENDER_BUDGET)
            time.sleep(max(0.0, tick - took))
        else:
            time.sleep(0.2)
    rate = (runner.step_count - n0) / (time.perf_counter() - t0)
    runner.close()
    out = {"steps_per_s": rate}
    if render:
        out.update(renders=renders, mean_render_s=render_s / max(renders, 1), tick_s=tick)
    return out


def scripted_compilations(config) -> dict:
    """Change every live control several times while stepping; count compilations after warm-up."""
    runner = Runner(config, warm_up=False)
    runner.step(2)
    runner.evaluate()
    runner.generate()
    runner.contraction(max_age_s=0)
    runner.sweep("tol", [1e-3])
    before = compile_counts(runner.trainer)
    schedule = {"tol": [1e-2, 1e-5, 1e-7], "max_iter": [5, 50, 1000], "gate": [-10.0, 0.0, 5.0, 20.0],
                "damping": [0.1, 0.9], "bwd_tol": [1e-2, 1e-6], "lr": [1e-4, 1e-2]}
    changes = 0
    with logged_compilations() as compiled:
        for name, values in schedule.items():
            for value in values:
                runner.set_live({name: value})
                runner.step(3)
                runner.evaluate()
                runner.generate()
                runner.contraction(max_age_s=0)
                changes += 1
        runner.sweep("gate", [-5.0, 0.0, 5.0])
        runner.sweep("max_iter", [1, 10, 100])
        runner.reset()
        runner.step(2)
    after = compile_counts(runner.trainer)
    runner.close()
    return {"control_changes": changes, "steps": 3 * changes + 2, "jit_cache_before": before,
            "jit_cache_after": after,
            "new_compilations": sum((after[k] or 0) - (before[k] or 0) for k in after),
            "compile_log_lines_after_warmup": len(compiled), "compile_log_sample": compiled[:5]}


# ------------------------------------------------------------------------------------------------
# browser
# ------------------------------------------------------------------------------------------------

JS_METRIC = """(label) => { for (const m of document.querySelectorAll("[data-testid='stMetric']")) {
  const l = m.querySelector("[data-testid='stMetricLabel']");
  if (l && l.innerText.trim() === label) return m.querySelector("[data-testid='stMetricValue']").innerText.trim(); }
  return null; }"""

# Start polling the convergence chart's meta (every 20 ms) and note when it first shows `want`.
JS_WATCH = """([key, want]) => {
  const close = (v) => v !== null && v !== undefined && Math.abs(v - want) <= 1e-9 * Math.max(1, Math.abs(want));
  const w = window.__twnnWatch = {t0: performance.now(), shown: null, data: null};
  const iv = setInterval(() => {
    const gd = document.querySelector('.st-key-chart_fwd .js-plotly-plot');
    const meta = gd && gd._fullLayout ? gd._fullLayout.meta : null;
    if (meta) {
      if (w.shown === null && close(meta[key])) w.shown = performance.now() - w.t0;
      if (w.data === null && close(meta['data_' + key])) w.data = performance.now() - w.t0;
    }
    if ((w.shown !== null && w.data !== null) || performance.now() - w.t0 > 30000) clearInterval(iv);
  }, 20);
  return true; }"""


# Note every change of the Step readout, with its time, in the page (read back at the end of a window).
JS_RECORD_STEPS = """() => { const w = window.__twnnSteps = [];
  if (window.__twnnStepsTimer) clearInterval(window.__twnnStepsTimer);
  window.__twnnStepsTimer = setInterval(() => {
    for (const m of document.querySelectorAll("[data-testid='stMetric']")) {
      const l = m.querySelector("[data-testid='stMetricLabel']");
      if (l && l.innerText.trim() === 'Step') {
        const v = parseInt(m.querySelector("[data-testid='stMetricValue']").innerText.trim());
        if (!w.length || w[w.length - 1][1] !== v) w.push([performance.now(), v]); } } }, 100);
  return true; }"""


def page_steps_rate(page, seconds: float) -> tuple[float, int, int]:
    """Steps per second from the page's Step readout over about `seconds`: (rate, first step, last step).

    Timed from one change of the readout to another. The value showing when recording starts has shown
    for an unknown time already (up to a readout tick, 2 s): timing from it would leave that time out and
    overstate the rate, by more the shorter the window (this bias read as 1.07-1.20x for 4 s windows with
    the charts frozen).
    """
    page.evaluate(JS_RECORD_STEPS)
    deadline = time.perf_counter() + 30
    while len(page.evaluate("() => window.__twnnSteps")) < 2:  # the first change
        if time.perf_counter() > deadline:
            raise RuntimeError("the Step readout did not change within 30 s: is training running?")
        time.sleep(0.05)
    time.sleep(seconds)
    changes = page.evaluate("() => window.__twnnSteps")
    (ta, sa), (tb, sb) = changes[1], changes[-1]
    if tb <= ta:
        raise RuntimeError(f"the Step readout changed once only in {seconds} s: use a longer window")
    return (sb - sa) / ((tb - ta) / 1000), sa, sb


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless=true",
           f"--server.port={port}", "--server.address=127.0.0.1", "--browser.gatherUsageStats=false",
           "--server.fileWatcherType=none"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited: {proc.stdout.read()}")
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).read() == b"ok":
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("streamlit did not answer /_stcore/health within 60 s")


def _step(page) -> int:
    value = page.evaluate(JS_METRIC, "Step")
    return int(value) if value not in (None, "–") else 0


def browser_measurements(config, seconds: float, pairs_n: int = 3, viewport: tuple[int, int] = (1500, 1000),
                         only_modes: list[str] | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    proc = start_server(port)
    out: dict = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            out["viewport"] = list(viewport)  # charts out of view are not redrawn: a taller one shows (and costs) more
            t = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector(".st-key-play button:visible", timeout=120_000)
            page.wait_for_selector(".st-key-chart_fwd .js-plotly-plot", timeout=120_000)
            out["first_page_s"] = time.perf_counter() - t
            page.locator(".st-key-play button:visible").click()
            t = time.perf_counter()
            while _step(page) < 5:
                time.sleep(0.1)
                if time.perf_counter() - t > 120:
                    raise RuntimeError("training did not start within 120 s")
            out["play_to_first_steps_s"] = time.perf_counter() - t
            from twnn_dashboard.page import REDRAW_CHOICES, REDRAW_DEFAULT

            # Paired rounds, for each chart interval (the default first; 1 s left out for time) and with the
            # charts frozen: the dashboard trains for a window from the initial network, then is paused (server
            # and page idle) while this process trains the very same steps headless (headless_rate_over). This
            # machine's speed drifts by 10-15 % over minutes; the ratio within a pair drifts less. Rounds
            # interleave the settings; medians are reported. The page itself notes every change of its Step
            # readout (JS_RECORD_STEPS: no polling from here, which would cost CPU too).
            intervals = [REDRAW_DEFAULT] + [c for c in REDRAW_CHOICES if c not in (1, REDRAW_DEFAULT)]
            modes = [f"{c}s" for c in intervals]
            modes.append("frozen")
            if only_modes:
                unknown = set(only_modes) - set(modes)
                if unknown:
                    raise ValueError(f"--modes: unknown {sorted(unknown)}; choose from {modes}")
                modes = [m for m in modes if m in only_modes]
            pairs: dict[str, list] = {m: [] for m in modes}
            for r in range(pairs_n):
                for mode in modes:
                    log(f"  round {r + 1}/{pairs_n}, charts {mode}: dashboard, then headless with the dashboard paused")
                    if mode == "frozen":
                        page.locator(".st-key-freeze label").click()
                    else:
                        page.locator(".st-key-redraw input[role=combobox]").click()
                        page.get_by_role("option", name=f"{mode[:-1]} s", exact=True).click()
                    # from the initial network (Reset pauses; Play again), so that the headless window can
                    # train the very same steps
                    page.locator(".st-key-reset button:visible").first.click()
                    page.wait_for_selector(".st-key-play button:visible:has-text('Play')", timeout=60_000)
                    page.locator(".st-key-play button:visible").click()
                    page.wait_for_selector(".st-key-play button:visible:has-text('Pause')", timeout=60_000)
                    time.sleep(2.5)
                    dash, sa, sb = page_steps_rate(page, 2 * seconds)
                    page.locator(".st-key-play button:visible").click()
                    page.wait_for_selector(".st-key-play button:visible:has-text('Play')", timeout=60_000)
                    time.sleep(0.5)
                    head = headless_rate_over(config, sa, sb)
                    pairs[mode].append({"dashboard_steps_per_s": dash, "headless_steps_per_s": head,
                                        "ratio": dash / head, "steps": [sa, sb]})
                    if mode == "frozen":
                        page.locator(".st-key-freeze label").click()
            out["dashboard_by_chart_interval"] = {
                mode: {"steps_per_s": statistics.median(p["dashboard_steps_per_s"] for p in rounds),
                       "headless_steps_per_s": statistics.median(p["headless_steps_per_s"] for p in rounds),
                       "vs_headless": statistics.median(p["ratio"] for p in rounds), "pairs": rounds}
                for mode, rounds in pairs.items()}
            default = out["dashboard_by_chart_interval"].get(f"{REDRAW_DEFAULT}s", {})
            out["dashboard_steps_per_s"] = default.get("steps_per_s")
            out["dashboard_vs_headless"] = default.get("vs_headless")
            out["chart_interval_default_s"] = REDRAW_DEFAULT
            out["load_average_during"] = os.getloadavg()
            page.locator(".st-key-redraw input[role=combobox]").click()
            page.get_by_role("option", name=f"{REDRAW_DEFAULT} s", exact=True).click()
            page.wait_for_selector(IDLE, timeout=60_000)
            page.locator(".st-key-play button:visible").click()
            page.wait_for_selector(".st-key-play button:visible:has-text('Pause')", timeout=60_000)
            time.sleep(3.0)
            # control -> chart latency while training
            latencies = []
            # one key press per change (a burst of presses can race the app's reruns)
            moves = [("tol", "ArrowLeft", 1), ("gate", "ArrowRight", 1), ("tol", "ArrowRight", 1),
                     ("gate", "ArrowLeft", 1), ("tol", "ArrowLeft", 1), ("gate", "ArrowRight", 1),
                     ("tol", "ArrowLeft", 1), ("gate", "ArrowRight", 1)]
            from twnn_dashboard.controls import CONTROLS

            for key, arrow, presses in moves:
                meta = page.evaluate("() => document.querySelector('.st-key-chart_fwd .js-plotly-plot')"
                                     "._fullLayout.meta")
                current = meta[key]
                if key == "tol":
                    grid = sorted(set(CONTROLS["tol"].options) | {current})
                    i = grid.index(current) + (presses if arrow == "ArrowRight" else -presses)
                    want = grid[i]
                else:
                    want = current + (0.25 if arrow == "ArrowRight" else -0.25) * presses
                page.locator(f".st-key-{key} input[type=range]").focus()
                page.evaluate(JS_WATCH, [key, want])
                for _ in range(presses):
                    page.keyboard.press(arrow)
                deadline = time.time() + 35
                while time.time() < deadline:
                    w = page.evaluate("() => window.__twnnWatch")
                    if w["shown"] is not None and w["data"] is not None:
                        break
                    time.sleep(0.1)
                latencies.append({"control": key, "to": want, "chart_shows_setting_ms": w["shown"],
                                  "chart_data_from_new_setting_ms": w["data"]})
                time.sleep(1.0)
            out["latency"] = latencies
            shown = [x["chart_shows_setting_ms"] for x in latencies if x["chart_shows_setting_ms"] is not None]
            data = [x["chart_data_from_new_setting_ms"] for x in latencies
                    if x["chart_data_from_new_setting_ms"] is not None]
            out["latency_chart_shows_setting_ms_median"] = statistics.median(shown) if shown else None
            out["latency_chart_data_from_new_setting_ms_median"] = statistics.median(data) if data else None
            # compilations in the server after all those changes: the "Under the hood" readout
            page.locator(".st-key-play button:visible").click()
            page.wait_for_selector(".st-key-play button:visible:has-text('Play')", timeout=60_000)
            page.get_by_text("Under the hood").click()
            text = page.locator("[data-testid='stExpander']", has_text="jit cache entries").inner_text()
            out["server_jit_cache_entries"] = text.split("jit cache entries")[1].split("\n")[0].strip(" :().")
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def _viewport(text: str) -> tuple[int, int]:
    """'1500x1000' -> (1500, 1000), for --viewport."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 1500x1000, not {text!r}") from None
    if width < 200 or height < 200:
        raise argparse.ArgumentTypeError(f"a window of at least 200x200 pixels, not {text!r}")
    return width, height


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="sine", choices=["sine", "digits", "adding"])
    ap.add_argument("--seconds", type=float, default=5.0, help="measurement window per rate")
    ap.add_argument("--no-browser", action="store_true", help="skip the real-browser part")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved in-process rounds (medians reported)")
    ap.add_argument("--pairs", type=int, default=3, help="paired dashboard/headless rounds in the browser part")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--browser-only", action="store_true", help="only the real-browser part")
    ap.add_argument("--viewport", type=_viewport, default=(1500, 1000),
                    help="browser window WxH (default 1500x1000; 1500x3400 shows every live chart at once)")
    ap.add_argument("--modes", type=lambda text: text.split(","),
                    help="only these paired modes in the browser part, e.g. 2s,frozen (default: all)")
    ap.add_argument("--headless-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    config = make_config(args.task)
    if args.headless_only:
        print(json.dumps({"headless_steps_per_s": headless_rate(config, args.seconds)}))
        return
    doc = {"benchmark": "dashboard", "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "jax": jax.__version__,
                       "backend": jax.default_backend()},
           "device": device_info(),
           "config": {k: v for k, v in config.to_dict().items()
                      if k in ("task", "hidden", "batch_size", "trajectory", "solver", "grad_mode")}}
    if args.browser_only:
        doc["browser"] = browser_measurements(config, args.seconds, args.pairs, args.viewport, args.modes)
        doc["dashboard_vs_headless"] = doc["browser"]["dashboard_vs_headless"]
        print(json.dumps(doc, indent=2, default=float))
        if args.out:
            Path(args.out).write_text(json.dumps(doc, indent=2, default=float) + "\n")
        return
    # Interleaved rounds (this machine is shared: interleaving spreads load swings over all three).
    rounds = {"headless": [], "headless_default_threads": [], "runner": [], "runner_with_render": []}
    renders = []
    for i in range(args.rounds):
        log(f"round {i + 1}/{args.rounds}: headless (one XLA thread, default threads), runner, runner + figures ...")
        rounds["headless"].append(headless_rate(config, args.seconds))
        rounds["headless_default_threads"].append(headless_default_threads_rate(config, args.seconds))
        rounds["runner"].append(runner_rate(config, args.seconds, render=False)["steps_per_s"])
        with_render = runner_rate(config, args.seconds, render=True)
        rounds["runner_with_render"].append(with_render.pop("steps_per_s"))
        renders.append(with_render)
    doc["rounds"] = rounds
    doc["load_average"] = os.getloadavg()
    doc["headless_steps_per_s"] = statistics.median(rounds["headless"])
    doc["headless_default_threads_steps_per_s"] = statistics.median(rounds["headless_default_threads"])
    best_headless = max(doc["headless_steps_per_s"], doc["headless_default_threads_steps_per_s"])
    doc["runner_steps_per_s"] = statistics.median(rounds["runner"])
    doc["runner_with_render"] = {"steps_per_s": statistics.median(rounds["runner_with_render"]),
                                 "mean_render_s": statistics.mean(r["mean_render_s"] for r in renders),
                                 "tick_s": renders[-1]["tick_s"]}
    log("scripted compilations ...")
    doc["compilations"] = scripted_compilations(config)
    stop_all()
    if not args.no_browser and Path(CHROMIUM).exists():
        log("browser ...")
        doc["browser"] = browser_measurements(config, args.seconds, args.pairs, args.viewport, args.modes)
        doc["dashboard_vs_headless"] = doc["browser"]["dashboard_vs_headless"]  # paired rounds, default interval
    doc["runner_vs_headless"] = doc["runner_steps_per_s"] / best_headless
    doc["runner_with_render_vs_headless"] = doc["runner_with_render"]["steps_per_s"] / best_headless
    text = json.dumps(doc, indent=2, default=float)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
