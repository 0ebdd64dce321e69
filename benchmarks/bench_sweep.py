#!/usr/bin/env python
"""A grid of 64 configurations trained as one sweep (`twnn_jax.sweep`) against 64 separate runs, same steps.

Usage:  python benchmarks/bench_sweep.py [--task sine] [--steps 200] [--separate 64] [--commands 8]
                                         [--host-devices 1] [--out benchmarks/sweep_results.json]

Sweep: `run_sweep` over tol (4) x gate (4) x seed (4), compiling once, all 64 in one program.
Separate runs: what a script does without the sweep, in this same process: per configuration
`trainer_for(config)` (one shared compilation: only live controls and seed differ), `train(trainer, steps)`
and `evaluate_run`. `--separate K` (< 64) times a random subset of K of them and extrapolates the
per-run time to 64 (the JSON says so).
Separate commands: what a user does without the sweep: one `twnn train` command per configuration, each a
fresh process, with the compilation cache on as users have it (in a fresh folder: the first command compiles,
the later ones load its programs). `--commands K` runs K of them (0: none) and extrapolates to 64 as the
first command plus 63 times the mean of the others. All sides are timed in one process, side by side, with the load
average recorded: timings on a shared machine are noisy, the ratio is the figure. Prints one JSON document
(and writes it to --out when given); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time


def _args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="sine", choices=["sine", "digits", "adding", "copy"])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--separate", type=int, default=64, help="separate runs to time (extrapolated to 64)")
    p.add_argument("--commands", type=int, default=8, help="separate `twnn train` commands to time (to 64)")
    p.add_argument("--host-devices", type=int, default=1,
                   help="CPU devices XLA makes of this host (XLA_FLAGS --xla_force_host_platform_device_count)")
    p.add_argument("--out", default=None, help="also write the JSON here")
    return p.parse_args()


def main() -> int:
    args = _args()
    if args.host_devices > 1:  # before JAX starts
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={args.host_devices}").strip()
    os.environ["TWNN_COMPILE_CACHE"] = "0"
    import numpy as np

    from twnn_jax.runs import evaluate_run
    from twnn_jax.sweep import device_info, grid_configs, make_grid, run_sweep
    from twnn_jax.train import TrainConfig, live_controls, train, trainer_for

    axes = {"tol": (1e-2, 1e-3, 1e-4, 1e-5), "gate": (-4.0, -2.0, 0.0, 2.0), "seed": (0, 1, 2, 3)}
    grid = make_grid(TrainConfig(task=args.task), axes)
    configs = grid_configs(grid)
    assert len(configs) == 64
    load_before = os.getloadavg()

    print(f"sweep: 64 configurations x {args.steps} steps ...", file=sys.stderr)
    start = time.perf_counter()
    result = run_sweep(grid, args.steps)
    sweep_s = time.perf_counter() - start

    chosen = sorted(random.Random(0).sample(range(64), args.separate)) if args.separate < 64 else list(range(64))
    print(f"separate: {len(chosen)} runs ...", file=sys.stderr)
    start = time.perf_counter()
    trainer_for(configs[chosen[0]])  # building the trainer (tracing happens at the first call)
    run_times, final_diffs = [], []
    for i in chosen:
        t = time.perf_counter()
        trainer = trainer_for(configs[i])
        state, history = train(trainer, args.steps)
        evaluation, _ = evaluate_run(trainer, state, live_controls(configs[i]))
        run_times.append(time.perf_counter() - t)
        final = float(np.mean([h["loss"] for h in history[-10:]]))
        final_diffs.append(abs(final - result.rows[i]["final_loss"]) / max(abs(final), 1e-12))
    separate_measured = time.perf_counter() - start
    first = run_times[0]  # compiles the shared step, the run loop and the evaluation
    rest = run_times[1:]
    per_run = float(np.mean(rest)) if rest else first
    separate_64 = first + per_run * 63

    commands = None
    if args.commands > 0:
        picked = sorted(random.Random(1).sample(range(64), min(args.commands, 64)))
        print(f"commands: {len(picked)} `twnn train` processes ...", file=sys.stderr)
        command_times = []
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "TWNN_COMPILE_CACHE": os.path.join(tmp, "cache")}
            for i in picked:
                c = configs[i]
                cmd = [sys.executable, "-m", "twnn_jax.cli", "train", "--task", args.task, "--steps",
                       str(args.steps), "--tol", repr(c.tol), "--gate", repr(c.gate), "--seed", str(c.seed),
                       "--quiet", "--out", os.path.join(tmp, f"run{i}")]
                t = time.perf_counter()
                subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
                command_times.append(time.perf_counter() - t)
        later = command_times[1:] or command_times
        commands = {"commands_timed": len(picked), "first_command_seconds": round(command_times[0], 2),
                    "per_command_seconds_after_first": round(float(np.mean(later)), 2),
                    "seconds_for_64": round(command_times[0] + 63 * float(np.mean(later)), 2)}
    load_after = os.getloadavg()

    out = {
        "benchmark": "bench_sweep", "task": args.task, "steps": args.steps, "configurations": 64,
        "axes": {k: list(v) for k, v in axes.items()},
        "device": device_info(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "sweep": {"seconds": round(sweep_s, 2), "compile_seconds": result.info["compile_seconds"],
                  "train_seconds": result.info["train_seconds"]},
        "separate": {
            "runs_timed": len(chosen), "extrapolated": len(chosen) < 64,
            "seconds_measured": round(separate_measured, 2),
            "first_run_seconds": round(first, 2), "per_run_seconds_after_first": round(per_run, 3),
            "seconds_for_64": round(separate_64, 2),
            "train_seconds_for_64": round(per_run * 64, 2),  # as if the first run had compiled nothing
        },
        "commands": commands,
        "speedup": round(separate_64 / sweep_s, 2),
        "speedup_over_commands": round(commands["seconds_for_64"] / sweep_s, 2) if commands else None,
        "speedup_excluding_compilation": round(per_run * 64 / result.info["train_seconds"], 2),
        "final_loss_max_rel_diff_sweep_vs_separate": float(max(final_diffs)),
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
