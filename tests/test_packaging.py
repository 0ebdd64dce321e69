"""The package as installed: every package folder in the wheel, the dashboard importable as `twnn_dashboard`,
the persistent compilation cache's settings. The wheel itself, installed in a fresh venv and started from
a temporary directory, is the end-to-end test at the bottom (marked `e2e`; `.ci/run` runs the same steps)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

import twnn_dashboard
from twnn_dashboard.static_files import PLOTLY_URL
from twnn_jax import cli, compile_cache

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_in_the_wheel():
    declared = set(PYPROJECT["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "twnn_jax").rglob("__init__.py")}
    assert found <= declared, f"add {sorted(found - declared)} to [tool.setuptools] packages in pyproject.toml"
    assert PYPROJECT["package-dir"] == {"twnn_dashboard": "dashboard"}
    assert "*.js" in PYPROJECT["package-data"]["twnn_dashboard"]


def test_the_dashboard_is_the_package_twnn_dashboard():
    here = Path(twnn_dashboard.__file__).parent
    assert (here / "app.py").is_file() and (here / "live_chart.js").is_file()
    assert cli._app_path() == (here / "app.py").resolve()
    from twnn_dashboard import live_chart

    assert live_chart.JS == (here / "live_chart.js").read_text() and "Plotly.react" in live_chart.JS
    for path in [*here.glob("*.py"), *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "tests").glob("*.py")]:
        text = path.read_text()
        assert "sys.path.insert" not in text.replace('"sys.path.insert"', ""), path
        assert "from dashboard" not in text.replace('"from dashboard"', ""), path


def test_dashboard_dry_run_names_the_installed_app(capsys):
    assert cli.main(["dashboard", "--dry-run", "--server.port", "8502"]) == 0
    assert str(Path(twnn_dashboard.__file__).resolve().parent / "app.py") in capsys.readouterr().out
    assert cli.main(["bench", "--dry-run", "--quick"]) == 0
    assert capsys.readouterr().out.split()[1:] == ["-m", "twnn_jax.bench", "--quick"]


@pytest.mark.parametrize("value, expected", [
    (None, "xdg"), ("", "xdg"), ("0", None), ("off", None), ("OFF", None), ("false", None), ("no", None),
    ("/some/where", Path("/some/where")), ("~/jaxcache", Path.home() / "jaxcache"),
])
def test_cache_dir_follows_the_environment(value, expected):
    env = {"XDG_CACHE_HOME": "/xdg"} if value is None else {"TWNN_COMPILE_CACHE": value, "XDG_CACHE_HOME": "/xdg"}
    want = Path("/xdg/twnn-jax/jax") if expected == "xdg" else expected
    assert compile_cache.cache_dir(env) == want
    assert compile_cache.cache_dir({}) == Path.home() / ".cache" / "twnn-jax" / "jax"
    assert compile_cache.cache_dir({"XDG_CACHE_HOME": "relative"}) == Path.home() / ".cache" / "twnn-jax" / "jax"


def test_tests_share_one_cache_in_a_temporary_directory():
    """The suite's cache (tests/conftest.py) is a fresh temporary folder, never the user's, and a bounded one
    (which is what makes JAX lock the folder around reads and writes)."""
    import jax

    folder = Path(os.environ["TWNN_COMPILE_CACHE"])
    assert folder.is_relative_to(tempfile.gettempdir()) and folder.name.startswith("twnn-test-compile-cache-")
    assert compile_cache.enable_compile_cache() == folder
    assert jax.config.jax_compilation_cache_dir == str(folder)
    assert jax.config.jax_compilation_cache_max_size == compile_cache.MAX_SIZE_BYTES > 0


def test_a_second_process_loads_its_programs_from_the_cache(tmp_path):
    """`twnn train` with the cache in a fresh directory writes compiled programs there; a second run reads them
    (JAX counts cache hits in its monitoring events)."""
    code = (
        "import sys; from jax._src import monitoring; hits = [];"
        "monitoring.register_event_listener(lambda name, **kw: hits.append(name) if 'cache_hits' in name else None);"
        "from twnn_jax import cli; code = cli.main(sys.argv[1:]); print('HITS', len(hits)); sys.exit(code)"
    )
    env = {**os.environ, "TWNN_COMPILE_CACHE": str(tmp_path / "cache")}
    hits = []
    for i in range(2):
        cmd = [sys.executable, "-c", code, "train", "--task", "sine", "--steps", "3", "--quiet",
               "--out", str(tmp_path / f"run{i}")]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        hits.append(int(out.stdout.split("HITS")[-1].split()[0]))
    assert any((tmp_path / "cache").iterdir())
    assert hits[0] == 0 and hits[1] > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read(), response.headers.get("Content-Type", "")


@pytest.mark.e2e
def test_wheel_in_a_fresh_venv_runs_the_dashboard_and_train(tmp_path, request):
    """The user's path: build the wheel, install it in a new venv, start `twnn dashboard` and `twnn train` from
    a directory that is not the checkout. Minutes (pip installs every dependency): runs with `-m e2e` only."""
    if "e2e" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("builds and installs a wheel (minutes); select with -m e2e (.ci/run does the same steps)")
    wheels, venv, work = tmp_path / "wheels", tmp_path / "venv", Path(tempfile.mkdtemp(dir=tmp_path))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, timeout=600)
    (wheel,) = wheels.glob("twnn_jax-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, timeout=1200)
    code = "import twnn_dashboard; print(twnn_dashboard.__file__)"
    where = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=work, capture_output=True, text=True,
                           check=True).stdout
    assert str(venv) in where and "site-packages" in where  # the installed copy, not this checkout
    port = _free_port()
    env = {**os.environ, "TWNN_COMPILE_CACHE": str(tmp_path / "cache")}
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen([str(venv / "bin" / "twnn"), "dashboard", "--server.headless=true",
                                   f"--server.port={port}"], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.time() + 90
        while True:
            assert server.poll() is None, log_path.read_text()
            try:
                if _get(f"http://127.0.0.1:{port}/_stcore/health")[0] == b"ok":
                    break
            except OSError:
                pass
            assert time.time() < deadline, "no answer on /_stcore/health in 90 s\n" + log_path.read_text()
            time.sleep(0.5)
        page, _ = _get(f"http://127.0.0.1:{port}/")
        assert b"<noscript>" in page
        js, kind = _get(f"http://127.0.0.1:{port}/{PLOTLY_URL}")  # shipped in the wheel
        assert kind.startswith(("application/javascript", "text/javascript")) and len(js) > 1_000_000
        train = subprocess.run([str(venv / "bin" / "twnn"), "train", "--task", "sine", "--steps", "5", "--quiet",
                                "--out", str(tmp_path / "run")], cwd=work, env=env, capture_output=True, text=True,
                               timeout=600)
        assert train.returncode == 0, train.stderr
        assert (tmp_path / "run" / "metrics.jsonl").is_file()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        assert server.wait(timeout=30) == 0, log_path.read_text()
