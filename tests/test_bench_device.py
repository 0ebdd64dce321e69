"""Every benchmark names the device it ran on (one function, `twnn_jax.bench.device_info`), and the GPU
benchmark says plainly when there is no GPU instead of measuring something else."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from twnn_jax.bench import device_info, logged_compilations

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_device_info_names_the_device_jax_computes_on():
    info = device_info()
    assert info["backend"] == jax.default_backend() and info["count"] == jax.device_count()
    assert info["device"] == str(jax.devices()[0]) and info["kind"] == jax.devices()[0].device_kind
    assert info["jax"] == jax.__version__


def test_logged_compilations_sees_a_compilation_and_not_a_cached_call():
    f = jax.jit(lambda x, k: x * k + 1.0)
    x = jnp.arange(3.0)
    with logged_compilations() as compiled:
        f(x, 2.0).block_until_ready()
    assert len(compiled) >= 1, "the first call compiles"
    with logged_compilations() as compiled:
        f(x, 3.0).block_until_ready()  # a traced value changes: no new compilation
    assert compiled == []
    with logged_compilations() as compiled:
        f(jnp.arange(4.0), 3.0).block_until_ready()  # a new shape compiles
    assert len(compiled) >= 1
    assert not jax.config.jax_log_compiles, "the flag is restored"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")))
def test_every_benchmark_reports_the_device(script):
    text = (BENCHMARKS / script).read_text()
    if script == "bench_train.py":  # runs twnn_jax.bench.main, whose JSON carries it
        assert "from twnn_jax.bench import main" in text
        return
    assert '"device": device_info()' in text or 'out["device"] = device_info()' in text


@pytest.mark.skipif(any(d.platform == "gpu" for d in jax.devices()), reason="a GPU is present")
def test_bench_gpu_without_a_gpu_says_so_and_exits_0(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "bench_gpu.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr
    assert "no GPU visible to JAX" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
