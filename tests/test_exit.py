"""Processes exit cleanly with trainers running: at the end of a script, on Ctrl-C (SIGINT), on SIGTERM.

Real processes, as users run them: a script that plays a dashboard `Runner` and returns, `twnn train`
interrupted while it trains, and the dashboard server (`streamlit run dashboard/app.py`) signalled while a
browser tab trains and while the first page still compiles. Each must end with its documented exit code
and without the C++ abort ("terminate called ... / FATAL: exception not rethrown", see
dashboard/shutdown.py) or a traceback, within a bounded time. The server tests need Chromium at
/usr/bin/chromium and Playwright (marker `browser`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import as_from_a_terminal

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FAULTS = ("terminate called", "FATAL", "Traceback", "Segmentation fault", "core dumped")
# Liveness bounds, not speed checks: what a hung exit would exceed by far on any machine. The exit itself
# waits at most dashboard.shutdown.EXIT_WAIT_S (5 s) for threads inside XLA.
EXIT_TIMEOUT_S = 60
START_TIMEOUT_S = 300


@pytest.fixture(autouse=True)
def _compiling_takes_its_real_time(monkeypatch):
    """Several of these tests signal a process while it compiles: the processes they start use no compilation
    cache (tests/conftest.py shares one), so that a program an earlier test compiled cannot end that window early."""
    monkeypatch.setenv("TWNN_COMPILE_CACHE", "0")


def _no_faults(text: str) -> None:
    found = [f for f in FAULTS if f in text]
    assert not found, f"{found} in the output:\n{text[-4000:]}"


def _run_script(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=START_TIMEOUT_S, cwd=tmp_path)


PLAY = """
    import faulthandler, signal, sys, time
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `_exit_or_stacks`: where a process hangs
    from twnn_dashboard import session
    runner = session.Runner(session.make_config("sine"))  # warm-up thread: compiles while this goes on
    assert runner.play()
"""


@pytest.mark.e2e
@pytest.mark.parametrize("when", ["training", "compiling"])
def test_a_script_that_plays_a_runner_and_returns_exits_0(tmp_path, when):
    """The worker and warm-up threads are inside XLA when the script returns (training: a call in flight;
    compiling: the warm-up's compilation)."""
    # training: past the warm-up's compilations (the worker waits for them), calls follow one another
    wait = ("deadline = time.time() + 240\n"
            "while runner.step_count < 8 * session.STEPS_PER_CALL and time.time() < deadline: time.sleep(0.05)\n"
            "assert runner.playing and runner.step_count >= 8 * session.STEPS_PER_CALL, runner.error\n"
            ) if when == "training" else ""
    out = _run_script(PLAY + textwrap.indent(wait, "    ") + "    print('returning', flush=True)\n", tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "returning" in out.stdout
    _no_faults(out.stderr)


@pytest.mark.e2e
def test_an_uncaught_error_while_threads_compile_still_exits_1(tmp_path):
    """The exit code stays that of an uncaught exception (1), also when the process must leave without
    waiting for the warm-up's compilation."""
    out = _run_script(PLAY + "    raise RuntimeError('the script failed')\n", tmp_path)
    assert out.returncode == 1, out.stderr[-4000:]
    assert "RuntimeError: the script failed" in out.stderr
    assert "terminate called" not in out.stderr and "FATAL" not in out.stderr


STUCK = """
    import sys, threading, time
    import jax
    from twnn_dashboard import shutdown
    shutdown.EXIT_WAIT_S = 0.5
    spin = jax.jit(lambda x: jax.lax.fori_loop(0, 2_000_000_000, lambda i, v: v * 0.999 + 1.0, x))  # minutes
    inside = threading.Event()

    def work():
        with shutdown.xla_work():
            inside.set()
            jax.block_until_ready(spin(1.0))

    threading.Thread(target=work, daemon=True).start()
    inside.wait()
    time.sleep(0.5)  # compiling or computing now, for minutes
"""


@pytest.mark.e2e
@pytest.mark.parametrize(("ending", "code"), [("pass", 0), ("raise RuntimeError('failed')", 1),
                                              ("shutdown.exit_code = 3", 3), ("raise KeyboardInterrupt", -2)])
def test_a_thread_still_inside_xla_at_exit_leaves_with_the_exit_code(tmp_path, ending, code):
    """A thread that stays inside XLA past the exit's wait (a compilation, a long call): the process leaves
    without finalising, which the thread could not survive if it came back meanwhile, with the code it was
    about to exit with (dashboard/shutdown.py)."""
    out = _run_script(STUCK + f"    {ending}\n", tmp_path)
    assert out.returncode == code, out.stderr[-4000:]
    assert "terminate called" not in out.stderr and "FATAL" not in out.stderr, out.stderr[-4000:]


@pytest.mark.e2e
def test_ctrl_c_on_a_script_with_a_runner_playing_ends_as_python_does(tmp_path):
    """SIGINT while the script sleeps and the worker trains: the uncaught KeyboardInterrupt ends the process
    by SIGINT, as Python does for any script, and not by the abort."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(PLAY) + textwrap.dedent("""
        while runner.step_count < 8 * session.STEPS_PER_CALL:
            time.sleep(0.05)
        print("training", flush=True)
        # short sleeps: the kernel may hand a process-directed SIGINT to one of XLA's threads, and then a
        # long time.sleep in the main thread is not woken (Python runs the handler when it next wakes)
        for _ in range(6000):
            time.sleep(0.1)
    """))
    proc = subprocess.Popen(as_from_a_terminal([sys.executable, str(script)]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "training", proc.stderr.read()
        os.killpg(proc.pid, signal.SIGINT)
        stderr = _exit_or_stacks(proc, EXIT_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGINT, stderr[-4000:]
    assert "KeyboardInterrupt" in stderr
    assert "terminate called" not in stderr and "FATAL" not in stderr, stderr[-4000:]


def _exit_or_stacks(proc: subprocess.Popen, timeout: float) -> str:
    """`proc`'s stderr once it has exited; if it has not within `timeout`, its threads' Python stacks (a PLAY
    script dumps them on SIGUSR1) in the failure, then it is killed."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(3.0)
        proc.kill()
        stderr = proc.communicate()[1]
        raise AssertionError(f"no exit within {timeout} s; the threads' stacks then:\n{stderr[-8000:]}") from None


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_twnn_train_stops_on_a_signal_with_a_checkpoint(tmp_path, signum):
    """`twnn train` interrupted while it trains: exit 130, every logged step checkpointed, no abort."""
    from twnn_jax.checkpoint import load_checkpoint

    out = tmp_path / "run"
    proc = subprocess.Popen(
        as_from_a_terminal([sys.executable, "-m", "twnn_jax.cli", "train", "--task", "sine", "--hidden", "8",
                            "--batch-size", "16", "--steps", "10000000", "--checkpoint-every", "0", "--quiet",
                            "--out", str(out)]),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while _lines(out / "metrics.jsonl") < 100 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None and _lines(out / "metrics.jsonl") >= 100, "training did not start"
        os.killpg(proc.pid, signum)
        # an interrupted run still evaluates the network and writes its report (compilations): a longer bound
        stdout, stderr = proc.communicate(timeout=START_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr[-4000:]
    assert "--resume" in stderr
    _no_faults(stdout + stderr)
    steps = _lines(out / "metrics.jsonl")
    assert int(load_checkpoint(out)[1].step) == steps > 100


# ---------------------------------------------------------------------------------------- the server
@pytest.fixture
def server(tmp_path, dashboard_server):
    """A dashboard server started as users do, in its own process group (as a terminal's foreground job)."""
    with dashboard_server(tmp_path, START_TIMEOUT_S) as proc:
        yield proc


@pytest.fixture
def chromium(request):
    """pytest-playwright's browser (Debian's Chromium, tests/conftest.py): one Playwright per test session."""
    if not Path(CHROMIUM).exists() and not os.environ.get("TWNN_REQUIRE_BROWSER"):
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (CI sets TWNN_REQUIRE_BROWSER=1 to make this an "
                    "error)")
    return request.getfixturevalue("browser")


JS_STEP = """() => { for (const m of document.querySelectorAll("[data-testid='stMetric']")) {
  const l = m.querySelector("[data-testid='stMetricLabel']");
  if (l && l.innerText.trim() === 'Step') return parseInt(m.querySelector("[data-testid='stMetricValue']").innerText); }
  return 0; }"""


def _wait(predicate, what: str, timeout: float = START_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.browser
@pytest.mark.parametrize(("signum", "when"), [(signal.SIGINT, "training"), (signal.SIGTERM, "training"),
                                              (signal.SIGINT, "compiling"), (signal.SIGTERM, "compiling")],
                         ids=["SIGINT-training", "SIGTERM-training", "SIGINT-compiling", "SIGTERM-compiling"])
def test_dashboard_server_exits_cleanly_on_a_signal(server, chromium, signum, when):
    """Ctrl-C / SIGTERM with a tab training (its worker has a call in XLA) or while the first page
    compiles: the server exits 0 as Streamlit does, without the abort, within a bounded time."""
    page = chromium.new_page(viewport={"width": 1500, "height": 1000})
    page.set_default_timeout(START_TIMEOUT_S * 1000)
    page.goto(server.url)
    play = page.locator(".st-key-play button:visible")
    play.wait_for()
    if when == "training":
        page.wait_for_selector(".st-key-chart_fwd .js-plotly-plot")
        play.click()
        page.wait_for_selector(".st-key-play button:visible:has-text('Pause')")
        _wait(lambda: page.evaluate(JS_STEP) >= 20, "training to start")
        first = page.evaluate(JS_STEP)
        _wait(lambda: page.evaluate(JS_STEP) > first, "the step count to advance")
    else:
        # the toolbar shows as soon as the run exists; the charts wait for the page's compilations
        assert page.locator(".js-plotly-plot").count() == 0, "the first page had finished compiling"
    os.killpg(server.pid, signum)
    try:
        server.wait(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server did not exit within {EXIT_TIMEOUT_S} s:\n{server.logs()[-4000:]}")
    page.close()
    assert server.returncode == 0, server.logs()[-4000:]
    _no_faults(server.logs())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_twnn_dashboard_exits_cleanly_while_it_preloads(tmp_path, dashboard_server, signum):
    """`twnn dashboard` signalled as soon as it answers, while its background preload (dashboard/preload.py)
    is building and compiling the default page's run (seconds, with the compilation cache off in tests):
    exit 0, no abort, no traceback, within a bounded time."""
    with dashboard_server(tmp_path, START_TIMEOUT_S, twnn=True) as proc:
        os.killpg(proc.pid, signum)
        try:
            proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"twnn dashboard did not exit within {EXIT_TIMEOUT_S} s:\n{proc.logs()[-4000:]}")
        assert proc.returncode == 0, proc.logs()[-4000:]
        _no_faults(proc.logs())
