#!/usr/bin/env python
"""Fuzz `twnn_jax.fix` with the property checks of tests/test_fix_properties.py, for many examples.

Each property (forward flags, vmap, gradients, bad input) runs its own number of hypothesis examples;
a broken property is counted as a failure (with the first few failing examples printed), never
shrunk or raised, so the counts cover the whole run.

Usage:  python benchmarks/fuzz_fix.py [--forward 6500 --bad-input 3000 --vmap 300 --gradient 200] [--seed 0]
Prints one JSON document on stdout (progress goes to stderr). "failures" must be 0.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import platform
import sys
import time
import traceback

import jax
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from twnn_jax.bench import device_info

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

jax.config.update("jax_enable_x64", True)


def _load_properties():
    spec = importlib.util.spec_from_file_location("fix_properties",
                                                  os.path.join(ROOT, "tests", "test_fix_properties.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def _fuzz(name, count, strategies, check, seed_value):
    """Run `check` on `count` examples drawn from `strategies`; count the outcomes and the failures."""
    outcomes, failures = collections.Counter(), []
    start = time.perf_counter()

    @seed(seed_value)
    @settings(max_examples=count, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.tuples(*strategies))
    def run(example):
        try:
            outcomes[check(*example)] += 1
        except Exception as err:  # a broken property: count it and keep going
            outcomes["failure"] += 1
            if len(failures) < 5:
                failures.append(f"{example!r}: {type(err).__name__}: {err}"[:2000])
                log(traceback.format_exc())
        n = sum(outcomes.values())
        if n % 500 == 0:
            log(f"{name}: {n}/{count} examples, {time.perf_counter() - start:.0f} s")

    run()
    seconds = time.perf_counter() - start
    log(f"{name}: {sum(outcomes.values())} examples in {seconds:.0f} s, {dict(outcomes)}")
    return {"examples": sum(outcomes.values()), "outcomes": dict(sorted(outcomes.items())),
            "failures": outcomes["failure"], "first_failures": failures, "seconds": round(seconds, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forward", type=int, default=6500)
    parser.add_argument("--bad-input", type=int, default=3000)
    parser.add_argument("--vmap", type=int, default=300)
    parser.add_argument("--gradient", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    p = _load_properties()

    runs = {
        "forward": (args.forward, (p.cases(),), p.check_forward),
        "bad_input": (args.bad_input, (p.cases(poison=(None,)), st.sampled_from(sorted(p.BAD)), st.integers(0, 4)),
                      p.check_bad_input),
        "vmap": (args.vmap, (p.vmap_cases, st.just(3)), p.check_vmap),
        "gradient": (args.gradient, (p.grad_cases, st.sampled_from(p.tj.GRAD_MODES), p._log_uniform(1e-10, 1e-2)),
                     p.check_gradient),
    }
    report = {"command": "python benchmarks/fuzz_fix.py " + " ".join(argv or sys.argv[1:]),
              "device": device_info(), "jax": jax.__version__, "python": platform.python_version(),
              "seed": args.seed, "properties": {}}
    total_failures = 0
    start_all = time.perf_counter()
    for name, (count, strategies, check) in runs.items():
        result = _fuzz(name, count, strategies, check, args.seed)
        total_failures += result["failures"]
        report["properties"][name] = result
    report["examples"] = sum(v["examples"] for v in report["properties"].values())
    report["failures"] = total_failures
    report["seconds"] = round(time.perf_counter() - start_all, 1)
    print(json.dumps(report, indent=2))
    return 1 if total_failures else 0


if __name__ == "__main__":
    sys.exit(main())
