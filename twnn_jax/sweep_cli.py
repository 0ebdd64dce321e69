"""`twnn sweep`: its flags (one per setting; an axis flag takes a comma-separated list) and the command.

    twnn sweep --task digits --steps 300 --out runs/sweep
    twnn sweep --task sine --steps 500 --tol 1e-2,1e-3,1e-4 --gate -4,-2,0,2 --seed 0,1,2 --out runs/s
    twnn sweep ... --coordinator host0:1234 --num-processes 2 --process-id 0     # one line per host

The library is `twnn_jax.sweep`; `twnn_jax.cli` only adds this subcommand.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from .settings import DECLARATION, SETTINGS, TrainConfig, check_config, shorten
from .sweep import AXES, DEFAULT_AXES, SUMMARY_JSON, SWEEP_JSON, parse_axis


def _axis_type(name: str):
    def parse(text: str):
        try:
            return parse_axis(name, text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = name
    return parse


def _text_type(name: str):
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{name} is empty")
        return text

    parse.__name__ = name
    return parse


def add_sweep_parser(sub, *, setting_type, count_type, path_type, flag, setting_help) -> None:
    """Add `twnn sweep` to the subparsers `sub` (the helpers are twnn_jax.cli's argument types)."""
    p = sub.add_parser(
        "sweep", allow_abbrev=False, help="train a grid of runs (tol x gate x max_iter x seed ...) as one program",
        description="Train every configuration of a grid as one compiled program (vmap over configurations), "
                    "sharded over every device; write sweep.csv, sweep.json, heatmaps.html and summary.json. "
                    "Axis flags take comma-separated lists; the default grid is "
                    + "; ".join(f"{k} {','.join(map(str, v))}" for k, v in DEFAULT_AXES.items()) + ".")
    # a list that starts with a negative number (--gate -4,-2,0) is a value, not a flag: argparse's own test
    # (its private `_negative_number_matcher`) knows single numbers only
    p._negative_number_matcher = re.compile(r"^-[0-9.][0-9.,eE+-]*$")
    p.add_argument("--steps", type=count_type("steps", 1, 10_000_000), default=200, help="training steps per run")
    p.add_argument("--out", type=path_type("a directory"), help="output directory (default runs/sweep-<task>-<time>)")
    p.add_argument("--force", action="store_true", help="overwrite an existing sweep in --out")
    p.add_argument("--devices", type=count_type("devices", 1, 1_000_000), default=None, metavar="N",
                   help="use the first N devices (default: all of every process)")
    dist = p.add_argument_group("several processes or hosts (jax.distributed; flags or JAX_COORDINATOR_ADDRESS, "
                                "JAX_NUM_PROCESSES, JAX_PROCESS_ID)")
    dist.add_argument("--coordinator", type=_text_type("coordinator"), metavar="HOST:PORT",
                      help="address of process 0's coordinator")
    dist.add_argument("--num-processes", type=count_type("num-processes", 1, 100_000), metavar="N")
    dist.add_argument("--process-id", type=count_type("process-id", 0, 100_000), metavar="I")
    group = p.add_argument_group("settings; the axes (" + ", ".join(flag(a) for a in AXES)
                                 + ") take comma-separated lists")
    for s in DECLARATION:
        if s.name in AXES:
            group.add_argument(flag(s.name), dest=s.name, type=_axis_type(s.name), default=argparse.SUPPRESS,
                               metavar=s.name.upper() + "[,...]", help=setting_help(s.name))
        else:
            group.add_argument(flag(s.name), dest=s.name, type=setting_type(s.name), default=argparse.SUPPRESS,
                               metavar=s.name.upper(), help=setting_help(s.name))


def run_command(args, usage_error) -> int:
    """`twnn sweep`: check the arguments and the output directory, start jax.distributed if asked, train, write."""
    from . import runs, sweep

    name = "twnn sweep: error: "
    try:
        dist = sweep.distributed_settings(args.coordinator, args.num_processes, args.process_id)
    except ValueError as err:
        raise usage_error(name + str(err)) from None
    given = {s.name: getattr(args, s.name) for s in DECLARATION if hasattr(args, s.name)}
    axes = {k: given.pop(k) for k in AXES if k in given}
    try:
        base = TrainConfig(**given)
        check_config(base)
        grid = sweep.make_grid(base, axes)
    except ValueError as err:
        raise usage_error(name + str(err)) from None
    out = args.out if args.out is not None else Path("runs") / f"sweep-{base.task}-{time.strftime('%Y%m%d-%H%M%S')}"
    if dist is None or dist[2] == 0:  # process 0 writes: only its --out matters
        try:
            runs.check_out_dir(out, "--out")
        except runs.RunError as err:
            raise usage_error(name + str(err)) from None
        if (out / SWEEP_JSON).exists() and not args.force:
            raise usage_error(f"{name}--out {shorten(str(out))} already holds a sweep; choose another directory or "
                              "add --force to overwrite it")
    if dist is not None and args.devices is not None:
        raise usage_error(f"{name}--devices works in one process only; with several, every device of every process "
                          "takes part")
    sweep.init_distributed(dist)  # before JAX touches a device
    import jax

    devices = jax.devices()
    if args.devices is not None:
        if args.devices > len(devices):
            raise usage_error(f"{name}--devices must be at most {len(devices)} (the devices JAX sees); "
                              f"got {args.devices}")
        devices = devices[: args.devices]
    size = len(sweep.grid_configs(grid))
    lead = jax.process_index() == 0
    if lead:
        print(f"twnn sweep: {base.task}, {size} configurations x {args.steps} steps on {len(devices)} "
              f"{jax.default_backend()} device(s), {jax.process_count()} process(es) -> {out}", file=sys.stderr)
    result = sweep.run_sweep(grid, args.steps, devices=devices)
    if not lead:  # process 0 writes; every process holds the same gathered results
        return 0
    info = sweep.write_sweep(result, out)
    best = info["best_by_eval_loss"]
    print(f"sweep {out}: {size} configurations in {info['seconds']} s (compiling {info['compile_seconds']:.1f} s, "
          f"training {info['train_seconds']:.1f} s); files {', '.join(info['files'])}")
    if best is not None:
        label = ", ".join(f"{k} {SETTINGS[k].show(best[k])}" for k in AXES if len(grid.axes[k]) > 1)
        print(f"  best by evaluation loss: {label}: eval loss {best['eval_loss']:.4g}, "
              f"{info['metric_name']} {best['eval_metric']:.4g}")
    print(f"  {SUMMARY_JSON}: {out / SUMMARY_JSON}")
    return 0
