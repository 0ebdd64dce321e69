import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# The suite is mostly compilation (small programs, run a few times): XLA's backend optimisation off makes each
# compilation about 30 % faster on the CPU (a digits trainer's first step: 21 s against 29 s on 2 busy cores) and
# its programs slower to run, which these tests do not time. The test process and its subprocesses inherit it.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
# One persistent compilation cache (twnn_jax/compile_cache.py) for the whole run, in a fresh temporary directory:
# the test process and every subprocess it starts (CLI runs, dashboard servers) load what an earlier test compiled,
# which saves much of the suite's time; nothing is read from or written to the user's home, and the next run
# starts empty. A test about the cache itself sets a directory of its own. (JAX logs "Compiling ..." before it
# looks in the cache, so the tests that count compilations count the same with it.)
TEST_COMPILE_CACHE = Path(tempfile.mkdtemp(prefix="twnn-test-compile-cache-"))
atexit.register(shutil.rmtree, TEST_COMPILE_CACHE, ignore_errors=True)
os.environ["TWNN_COMPILE_CACHE"] = str(TEST_COMPILE_CACHE)


def pytest_configure(config):
    from twnn_jax.compile_cache import enable_compile_cache

    enable_compile_cache()  # the test process too (the dashboard's AppTests would turn it on anyway)

# Every test has exactly one kind, selectable with `-m` (registered in pyproject.toml):
#   unit     library code in this process (`-m unit` for a quick run)
#   e2e      a whole command or app: the CLI, the dashboard script under AppTest, real subprocesses
#   browser  the dashboard server driven in a real Chromium (`-m "not browser"` where none is installed)
# A test marked with a kind keeps it; otherwise its file's kind below applies, and `unit` when none is listed.
KINDS = ("unit", "e2e", "browser")
FILE_KIND = {
    "test_cli.py": "e2e",
    "test_dashboard_apptest.py": "e2e",
    "test_dashboard_browser.py": "browser",
    "test_experiment.py::test_run_paper_quick": "e2e",
}


def pytest_collection_modifyitems(items):
    for item in items:
        marked = [kind for kind in KINDS if item.get_closest_marker(kind)]
        if len(marked) > 1:
            raise pytest.UsageError(f"{item.nodeid} is marked {' and '.join(marked)}; a test has one kind")
        if not marked:
            name = item.path.name
            function = f"{name}::{getattr(item, 'originalname', item.name)}"
            item.add_marker(FILE_KIND.get(function) or FILE_KIND.get(name) or "unit")


# The real-browser tests (pytest-playwright's `browser` / `page` fixtures) drive Debian's Chromium: browsers
# cannot be downloaded here. One Playwright for the whole session, shared by every module that needs one.
@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": "/usr/bin/chromium",
        "args": ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1500, "height": 1000}}


# A command as a terminal starts it: SIGINT at its default. A process started in the background by a shell
# without job control (`cmd &` in a script, `nohup`) inherits SIGINT *ignored*, and Python then installs no
# KeyboardInterrupt handler: Ctrl-C tests of such a pytest would wait forever (seen in a CI run started that way).
_SIGINT_DEFAULT_THEN_EXEC = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                             "os.execv(sys.argv[1], sys.argv[1:])")


def as_from_a_terminal(cmd: list[str]) -> list[str]:
    """`cmd` (its first item an executable's path) run with SIGINT at its default, whatever this process inherited;
    the same process (exec), so its pid and process group are `cmd`'s."""
    return [sys.executable, "-c", _SIGINT_DEFAULT_THEN_EXEC, *cmd]


@contextlib.contextmanager
def _dashboard_server(log_dir: Path, timeout: float = 60.0, twnn: bool = False):
    """`streamlit run dashboard/app.py` (or with `twnn=True`, `twnn dashboard`) started as users do, in its
    own process group (as a terminal's foreground job), on a free port; yields the process with `.url` and
    `.logs()` once its health check answers (a RuntimeError with the server's log if it exits or `timeout`
    passes). Killed at the end unless the test ended it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stdout, stderr = open(log_dir / "stdout.log", "w"), open(log_dir / "stderr.log", "w")
    flags = ["--server.headless=true", f"--server.port={port}", "--server.address=127.0.0.1",
             "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"]
    cmd = ([sys.executable, "-m", "twnn_jax.cli", "dashboard", *flags] if twnn
           else [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", *flags])
    proc = subprocess.Popen(as_from_a_terminal(cmd), cwd=Path(__file__).resolve().parents[1], stdout=stdout,
                            stderr=stderr, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    proc.url = f"http://127.0.0.1:{port}"
    proc.logs = lambda: (log_dir / "stdout.log").read_text() + (log_dir / "stderr.log").read_text()
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{proc.logs()}")
            try:
                if urllib.request.urlopen(f"{proc.url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"no answer from {proc.url}/_stcore/health in {timeout:.0f} s:\n{proc.logs()}")
            time.sleep(0.3)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        stdout.close()
        stderr.close()


@pytest.fixture(scope="session")
def dashboard_server():
    """`with dashboard_server(log_dir, timeout) as proc:` a real dashboard server (see `_dashboard_server`)."""
    return _dashboard_server


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The address of one dashboard server (`streamlit run dashboard/app.py`) for a test module's browser tests."""
    with _dashboard_server(tmp_path_factory.mktemp("streamlit")) as proc:
        yield proc.url
