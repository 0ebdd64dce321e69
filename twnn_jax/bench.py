#!/usr/bin/env python
"""Training speed per task at the default sizes, and where a step's time goes.

For every task, with `TrainConfig(task=...)` defaults (sine: small net, digits: resnet_fp, adding and
copy: wormhole_rnn; hidden 32, batch 64, tol 1e-3, implicit gradients), three jitted functions run on
the same batch, each timed in steady state (compiled, `block_until_ready`, median of repeats taken in turn):
  (a) the full training step (`trainer.step`: batch sampling, forward, backward, clipping, Adam),
  (b) the forward pass alone (the fixed-point solves and the loss),
  (c) forward and backward without the optimizer (`value_and_grad_with_stats` of the loss).
Shares of a step: forward = b / a, backward = (c - b) / a, rest = (a - c) / a. The mean forward and
backward iteration counts per sample come from the step's own statistics.

Usage:  twnn bench [--quick] [--tasks sine digits] [--warmup-steps 20]
   or:  python -m twnn_jax.bench ...  (or python benchmarks/bench_train.py ... in a checkout)
Prints one JSON document on stdout (progress goes to stderr). Runs without the persistent compilation
cache (`twnn_jax.compile_cache`), so the compile times it reports are compilations.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import statistics
import sys
import time

import jax
import numpy as np

from ._backward_stats import backward_probe, value_and_grad_with_stats
from .models import DEFAULT_MODEL
from .tasks import TASKS
from .train import TrainConfig, build_trainer, live_controls, solve_settings, summarize, train


def device_info() -> dict:
    """The device JAX computes on, for every benchmark's JSON: backend (cpu, gpu, tpu), the first device's
    kind and name, how many devices, and the JAX version."""
    devices = jax.devices()
    return {"backend": jax.default_backend(), "kind": devices[0].device_kind, "device": str(devices[0]),
            "count": len(devices), "jax": jax.__version__}


@contextlib.contextmanager
def logged_compilations():
    """Collect the first line of every compilation JAX logs inside the block (`jax_log_compiles`):

    >>> with logged_compilations() as compiled:                                   # doctest: +SKIP
    ...     f(x)
    >>> len(compiled)                                                              # doctest: +SKIP
    """
    messages: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if "Compiling" in msg or "compiling" in msg.split(" ")[0:1]:
                messages.append(msg.splitlines()[0][:160])

    handler = Handler(logging.DEBUG)
    logger = logging.getLogger("jax")
    old_level, old_flag = logger.level, jax.config.jax_log_compiles
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    jax.config.update("jax_log_compiles", True)
    try:
        yield messages
    finally:
        jax.config.update("jax_log_compiles", old_flag)
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def step_parts(trainer):
    """Jitted (forward only, forward + backward) functions of (params, x, y, live), as in the step."""
    cfg, task, model = trainer.config, trainer.task, trainer.model

    def loss_fn(params, probe, x, y, live):
        s = solve_settings(cfg, live)
        out, stats, _ = jax.vmap(lambda xi, pi: model.apply(params, xi, live.gate, s, pi))(x, probe)
        return task.loss(out, y)[0], stats.iters

    def forward(params, x, y, live):
        return loss_fn(params, backward_probe((x.shape[0],), cfg.trajectory), x, y, live)

    def forward_backward(params, x, y, live):
        probe = backward_probe((x.shape[0],), cfg.trajectory)
        (loss, iters), grads, bst = value_and_grad_with_stats(loss_fn, has_aux=True)(params, probe, x, y, live)
        return loss, grads, iters, bst.iters

    return jax.jit(forward), jax.jit(forward_backward)


def timed(calls: dict, repeats: int) -> tuple[dict, dict]:
    """Median seconds per call of each `name: (fn, args)`, and the first (compiling) call's seconds.

    The functions take turns within every repeat, so a change in the machine's load touches all alike
    and the shares stay meaningful on a shared machine.
    """
    first, times = {}, {name: [] for name in calls}
    for name, (fn, args) in calls.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        first[name] = time.perf_counter() - t0
    for _ in range(repeats):
        for name, (fn, args) in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}, first


def bench_task(task: str, *, repeats: int, warmup_steps: int) -> dict:
    cfg = TrainConfig(task=task)
    trainer = build_trainer(cfg)
    live = live_controls(cfg)
    t0 = time.perf_counter()
    state, _ = train(trainer, 1, live=live)  # compiles the step
    c_step = time.perf_counter() - t0
    state, _ = train(trainer, warmup_steps, state=state, live=live)  # iteration counts settle a little
    key, k_batch = jax.random.split(state.key)  # the batch the step will draw from this state
    x, y = trainer.task.sample(k_batch, cfg.batch_size)
    forward, forward_backward = step_parts(trainer)

    med, first = timed({"step": (trainer.step, (state, live)), "forward": (forward, (state.params, x, y, live)),
                        "forward_backward": (forward_backward, (state.params, x, y, live))}, repeats)
    t_step, t_fwd, t_fb = med["step"], med["forward"], med["forward_backward"]
    c_fwd, c_fb = first["forward"], first["forward_backward"]
    _, metrics = trainer.step(state, live)
    s = summarize(metrics)
    # the parts must measure the step's own work: same batch, same iteration counts
    fwd_iters = np.asarray(forward(state.params, x, y, live)[1])
    assert np.array_equal(fwd_iters, np.asarray(metrics["fwd_iters"])), "forward-only pass is not the step's"
    return {
        "task": task,
        "model": cfg.model or DEFAULT_MODEL[task],
        "hidden": cfg.hidden,
        "batch_size": cfg.batch_size,
        "sizes": trainer.task.info,
        "steps_per_s": 1.0 / t_step,
        "step_ms": 1e3 * t_step,
        "forward_ms": 1e3 * t_fwd,
        "forward_backward_ms": 1e3 * t_fb,
        "share_forward": t_fwd / t_step,
        "share_backward": (t_fb - t_fwd) / t_step,
        "share_rest": (t_step - t_fb) / t_step,
        "fwd_iters_mean": s["fwd_iters_mean"],
        "fwd_iters_max": s["fwd_iters_max"],
        "bwd_iters_mean": s["bwd_iters_mean"],
        "bwd_iters_max": s["bwd_iters_max"],
        "converged_frac": s["converged_frac"],
        "compile_s": {"first_step": round(c_step, 2), "forward": round(c_fwd, 2), "forward_backward": round(c_fb, 2)},
        "step_after_warmup": int(state.step),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="twnn bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and warm-up steps")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per function (default 30; quick 7)")
    parser.add_argument("--warmup-steps", type=int, default=None, help="training steps before timing (default 20)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (7 if args.quick else 30)
    warmup = args.warmup_steps if args.warmup_steps is not None else (5 if args.quick else 20)
    results = []
    for task in args.tasks:
        print(f"bench_train: {task} ...", file=sys.stderr, flush=True)
        r = bench_task(task, repeats=repeats, warmup_steps=warmup)
        print(f"  {r['steps_per_s']:.1f} steps/s; forward {r['share_forward']:.0%}, backward "
              f"{r['share_backward']:.0%}, rest {r['share_rest']:.0%}; iters fwd {r['fwd_iters_mean']:.1f} "
              f"bwd {r['bwd_iters_mean']:.1f}", file=sys.stderr, flush=True)
        results.append(r)
    doc = {
        "benchmark": "train_step",
        "quick": args.quick,
        "repeats": repeats,
        "warmup_steps": warmup,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device": device_info(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "results": results,
    }
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
