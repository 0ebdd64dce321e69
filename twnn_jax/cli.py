"""`twnn`: train a run from the command line, run the paper's experiment, start the dashboard, benchmark.

    twnn train --task digits --steps 300 --gate -1 --out runs/digits
    twnn train --resume runs/digits --steps 200          # 200 more steps, same run
    twnn experiment paper --out assets --quick
    twnn dashboard --server.port 8502                      # extra arguments go to Streamlit
    twnn bench --quick

A training run writes into its directory: `metrics.jsonl` (one strict-JSON object a step, from
`twnn_jax.train.summarize`), `config.json`, `checkpoint.npz` (see `twnn_jax.checkpoint`),
`summary.json` and `report.html` (self-contained Plotly). Bad arguments exit with code 2 and one
line naming the flag and its allowed range.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax

from .checkpoint import (
    CONFIG_FILE,
    STATE_FILE,
    dumps_strict,
    load_checkpoint,
    load_history,
    save_checkpoint,
    write_atomic,
)
from .compile_cache import enable_compile_cache
from .runs import evaluate_run
from .train import (
    CHOICES,
    RANGES,
    STEPS_PER_CALL,
    Call,
    LiveControls,
    TrainConfig,
    check_value,
    live_controls,
    run_calls,
    trainer_for,
)

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
LIVE_FIELDS = LiveControls._fields  # may change on --resume: they do not change the state's structure
OFF = ("0", "none", "off")


class UsageError(Exception):
    """A bad command line: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block, no SystemExit inside main()
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


# ---- argument types --------------------------------------------------------------------------------
def _setting_type(name: str):
    """An argparse type that parses config setting `name` and checks it with `train.check_value`."""

    def parse(text: str):
        if name in ("spectral_bound", "clip_norm"):
            if text.strip().lower() in OFF:
                return None
            value = _number(name, text, "a positive number, or 0/none for off")
        elif name == "model" and text.strip().lower() in ("none", "default"):
            return None
        elif name in CHOICES:
            value = text
        else:
            low, high, _ = RANGES[name]
            value = _number(name, text, f"a number in [{low}, {high}]")
        try:
            check_value(name, value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        if name in RANGES and RANGES[name][2]:
            value = int(value)
        return value

    parse.__name__ = name
    return parse


def _number(name, text, what):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name} must be {what}; got {text!r}") from None


def _steps_type(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value == int(value) and 0 <= value <= 10_000_000):
        raise argparse.ArgumentTypeError(f"steps must be an integer in [0, 10000000]; got {text!r}")
    return int(value)


def _setting_help(field: dataclasses.Field) -> str:
    name, default = field.name, field.default
    if name in ("spectral_bound", "clip_norm"):
        return f"positive number, or 0/none = off (default {default})"
    if name == "model":
        return "model kind (default: the task's own; " + ", ".join(c for c in CHOICES[name] if c) + ")"
    if name in CHOICES:
        return f"one of {', '.join(CHOICES[name])} (default {default})"
    low, high, integer = RANGES[name]
    return f"{'integer' if integer else 'number'} in [{low:g}, {high:g}] (default {default})"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="twnn", description="Fixed-point (temporal wormhole) networks in JAX.", allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", metavar="{train,experiment,dashboard,bench}")
    sub.required = True

    train = sub.add_parser("train", help="train one run; writes metrics.jsonl, a checkpoint and report.html",
                           allow_abbrev=False, description="Train one run. Settings default to TrainConfig's.")
    train.add_argument("--steps", type=_steps_type, default=200, help="training steps (with --resume: more steps)")
    train.add_argument("--out", type=Path, help="run directory (default runs/<task>-<time>; with --resume: DIR)")
    train.add_argument("--resume", type=Path, metavar="DIR", help="continue the run saved in DIR")
    train.add_argument("--force", action="store_true", help="overwrite an existing run in --out")
    train.add_argument("--checkpoint-every", type=_steps_type, default=100, metavar="N",
                       help="also save a checkpoint every N steps (0: only at the end; default 100)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    group = train.add_argument_group("run settings (TrainConfig; with --resume only the live ones may change: "
                                     + ", ".join("--" + f.replace("_", "-") for f in LIVE_FIELDS) + ")")
    for field in dataclasses.fields(TrainConfig):
        group.add_argument("--" + field.name.replace("_", "-"), dest=field.name, type=_setting_type(field.name),
                           default=argparse.SUPPRESS, metavar=field.name.upper(), help=_setting_help(field))

    exp = sub.add_parser("experiment", help="run a named experiment (paper)", allow_abbrev=False)
    exp.add_argument("name", choices=["paper"], help="the experiment: paper = the paper's tables and figures")
    exp.add_argument("--out", type=Path, default=Path("assets"), help="output directory (default assets)")
    exp.add_argument("--quick", action="store_true", help="a short version (minutes)")
    exp.add_argument("--seeds", type=_positive_int, default=None, help="number of seeds")

    dash = sub.add_parser(
        "dashboard", allow_abbrev=False, help="start the Streamlit dashboard (extra arguments go to Streamlit)",
        usage="twnn dashboard [-h] [--dry-run] [streamlit options, e.g. --server.port 8502]",
        description="Start the dashboard on 127.0.0.1. Arguments this command does not know (e.g. "
                    "--server.port 8502) are passed on to `streamlit run` unchanged.",
    )
    dash.add_argument("--dry-run", action="store_true", help="print the command instead of running it")

    bench = sub.add_parser("bench", allow_abbrev=False, help="run benchmarks/bench_train.py (extra arguments too)",
                           usage="twnn bench [-h] [--dry-run] [bench_train.py options, e.g. --quick]")
    bench.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value


# ---- train -----------------------------------------------------------------------------------------
def _is_run_dir(path: Path) -> bool:
    return any((path / name).exists() for name in (METRICS_FILE, STATE_FILE, CONFIG_FILE))


def _read_metrics(path: Path, up_to_step: int) -> list[dict]:
    """Records of `path` up to `up_to_step` (a line written after the last checkpoint, or cut off, is dropped)."""
    records = []
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= up_to_step:
            records.append(record)
    return records


def _mean_last(history, key, n=10):
    values = [h[key] for h in history[-n:] if isinstance(h.get(key), (int, float)) and math.isfinite(h[key])]
    return sum(values) / len(values) if values else None


def _fmt(value, spec=".4g"):
    return "nan" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


class _Progress:
    """A one-line progress bar on stderr, redrawn with `\\r` at most every `interval` seconds."""

    def __init__(self, total: int, metric_name: str, enabled: bool, stream=None):
        self.total, self.metric_name, self.enabled = total, metric_name, enabled
        self.stream = stream or sys.stderr
        self.interval = 0.1 if getattr(self.stream, "isatty", lambda: False)() else 2.0
        self.start = self.last = time.perf_counter()
        self.done = 0

    def update(self, summary: dict, steps: int = 1, force: bool = False):
        """`steps` more steps are done; `summary` is the latest one's."""
        self.done += steps
        now = time.perf_counter()
        if not self.enabled or (not force and now - self.last < self.interval and self.done < self.total):
            return
        self.last = now
        frac = self.done / max(self.total, 1)
        bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
        rate = self.done / max(now - self.start, 1e-9)
        line = (f"\r[{bar}] step {summary['step']} ({self.done}/{self.total}) loss {_fmt(summary['loss'])} "
                f"{self.metric_name} {_fmt(summary['metric'])} fwd {summary['fwd_iters_mean']:.1f}/"
                f"{summary['fwd_iters_max']} bwd {summary['bwd_iters_mean']:.1f}/{summary['bwd_iters_max']} "
                f"conv {summary['converged_frac']:.2f} {rate:.1f} it/s ")
        self.stream.write(line)
        self.stream.flush()

    def close(self):
        if self.enabled and self.done:
            self.stream.write("\n")
            self.stream.flush()


def _prepare_run(args) -> tuple[TrainConfig, object, Path, list[dict]]:
    """(config, state or None, run directory, earlier history) from the parsed arguments."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    if args.resume is not None:
        fixed = sorted(set(given) - set(LIVE_FIELDS))
        if fixed:
            flags = ", ".join("--" + f.replace("_", "-") for f in fixed)
            raise UsageError(f"twnn train: error: {flags} cannot change on --resume (the run's config is in "
                             f"{args.resume / CONFIG_FILE}); only live settings may: "
                             + ", ".join("--" + f.replace("_", "-") for f in LIVE_FIELDS))
        try:
            config, state = load_checkpoint(args.resume)
        except (OSError, ValueError) as err:
            raise UsageError(f"twnn train: error: --resume: {err}") from None
        config = dataclasses.replace(config, **given)
        out = args.out or args.resume
        history = _read_metrics(args.resume / METRICS_FILE, int(state.step))
        if not history:  # metrics.jsonl lost: the checkpoint's own copy
            history = [h for h in load_history(args.resume) or [] if h.get("step", 0) <= int(state.step)]
        if out.resolve() != args.resume.resolve() and _is_run_dir(out) and not args.force:
            raise UsageError(f"twnn train: error: --out {out} already holds a run; choose another directory "
                             "or add --force to overwrite it")
        return config, state, out, history
    config = TrainConfig(**given)
    out = args.out or Path("runs") / f"{config.task}-{time.strftime('%Y%m%d-%H%M%S')}"
    if _is_run_dir(out) and not args.force:
        raise UsageError(f"twnn train: error: --out {out} already holds a run; continue it with --resume {out}, "
                         "choose another directory, or add --force to overwrite it")
    return config, None, out, []


def _stop_on_sigterm():
    """While training, SIGTERM stops like Ctrl-C (checkpoint, report, exit 130); returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)


def _train(args) -> int:
    config, state, out, history = _prepare_run(args)
    try:
        trainer = trainer_for(config)
    except ValueError as err:
        flag = next((f.name for f in dataclasses.fields(TrainConfig) if re.match(rf"{f.name}\b", str(err))), None)
        where = f"--{flag.replace('_', '-')}: " if flag else ""
        raise UsageError(f"twnn train: error: {where}{err}") from None
    live = live_controls(config)
    state = trainer.init(config.seed) if state is None else state
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / METRICS_FILE
    write_atomic(metrics_path, "".join(dumps_strict(h) + "\n" for h in history).encode())
    save_checkpoint(out, state, config, history)  # the run directory is a valid checkpoint from the start

    print(f"twnn train: {config.task} with {trainer.model.kind} (hidden {config.hidden}), solver {config.solver}, "
          f"grad {config.grad_mode}, {args.steps} steps from step {int(state.step)} -> {out}", file=sys.stderr)
    progress = _Progress(args.steps, trainer.task.metric_name, enabled=not args.quiet)
    new, last_metrics, interrupted = [], None, False
    start = time.perf_counter()
    previous_term = _stop_on_sigterm()
    try:
        with metrics_path.open("a") as log:
            first = int(state.step)

            def plan(step: int) -> Call | None:
                """Up to STEPS_PER_CALL steps per call, never across a periodic checkpoint."""
                done = step - first
                n = min(STEPS_PER_CALL, args.steps - done)
                if args.checkpoint_every:
                    n = min(n, args.checkpoint_every - done % args.checkpoint_every)
                return Call(live, n) if n > 0 else None

            for next_state, rows, last, _ in run_calls(trainer, state, plan):
                elapsed = round(time.perf_counter() - start, 4)
                for row in rows:
                    row["elapsed_s"] = elapsed
                # these steps count once their lines are logged: an interrupt before this drops them all
                log.write("".join(dumps_strict(row) + "\n" for row in rows))
                log.flush()
                state, last_metrics = next_state, last
                new.extend(rows)
                done = len(new)
                progress.update(rows[-1], len(rows), force=done == args.steps)
                if args.checkpoint_every and done % args.checkpoint_every == 0 and done < args.steps:
                    save_checkpoint(out, state, config)  # metrics.jsonl holds the history meanwhile
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    progress.close()
    history = history + new
    save_checkpoint(out, state, config, history)

    evaluation, generated = evaluate_run(trainer, state, live)
    n = len(history)
    summary = {
        "task": config.task, "model": trainer.model.kind, "steps": int(state.step), "new_steps": len(new),
        "final_loss": _mean_last(history, "loss"), "final_metric": _mean_last(history, "metric"),
        "metric_name": trainer.task.metric_name, **evaluation,
        "skipped_frac": sum(bool(h.get("skipped")) for h in history) / n if n else 0.0,
        "not_converged_frac": sum((h.get("converged_frac") or 0.0) < 1.0 for h in history) / n if n else 0.0,
        "bwd_not_converged_frac": sum((h.get("bwd_converged_frac") or 0.0) < 1.0 for h in history) / n if n else 0.0,
        "fwd_iters_mean": _mean_last(history, "fwd_iters_mean", n or 1),
        "bwd_iters_mean": _mean_last(history, "bwd_iters_mean", n or 1),
        "spectral_bound": config.spectral_bound, "clip_norm": config.clip_norm,
        "seconds": round(time.perf_counter() - start, 2), "interrupted": interrupted,
    }
    write_atomic(out / SUMMARY_FILE, (dumps_strict(summary, indent=2) + "\n").encode())
    from .report import write_report

    metric_name = None if config.task == "sine" else trainer.task.metric_name  # sine's metric is its loss
    write_report(out / REPORT_FILE, history, config=config, summary=summary, generated=generated,
                 last_metrics=None if last_metrics is None else jax.device_get(last_metrics), metric_name=metric_name,
                 title=f"twnn run: {config.task} ({trainer.model.kind}), {out.name}")
    _print_summary(summary, out)
    if interrupted:
        print(f"interrupted at step {summary['steps']}; continue with: twnn train --resume {out}", file=sys.stderr)
        return 130
    return 0


def _print_summary(s: dict, out: Path) -> None:
    name = s["metric_name"]
    lines = [
        f"run {out}: {s['task']} / {s['model']}, step {s['steps']} ({s['new_steps']} new, {s['seconds']} s)",
        f"  final loss {_fmt(s['final_loss'])}, {name} {_fmt(s['final_metric'])} (mean of the last 10 steps)",
        f"  eval set: loss {_fmt(s['eval_loss'])}, {name} {_fmt(s['eval_metric'])}, "
        f"forward converged {s['eval_converged_frac']:.1%}",
    ]
    if "sine_free_running_rmse" in s:
        lines.append(f"  sine free-running RMSE {_fmt(s['sine_free_running_rmse'])}")
    lines += [
        f"  steps skipped for non-finite gradients {s['skipped_frac']:.1%}; steps with a non-converged forward "
        f"solve {s['not_converged_frac']:.1%}, backward {s['bwd_not_converged_frac']:.1%}",
        f"  iterations per step: forward {_fmt(s['fwd_iters_mean'], '.1f')}, "
        f"backward {_fmt(s['bwd_iters_mean'], '.1f')}",
        f"  remedies: spectral bound {s['spectral_bound'] if s['spectral_bound'] is not None else 'off'}, "
        f"clip norm {s['clip_norm'] if s['clip_norm'] is not None else 'off'}",
        f"  files: {METRICS_FILE}, {CONFIG_FILE}, {STATE_FILE}, {SUMMARY_FILE}, {REPORT_FILE}",
    ]
    if s["skipped_frac"] > 0.5:
        lines.append("  warning: most steps were skipped (non-finite loss or gradient), so the parameters barely "
                     "moved; try a lower gate bias or lr, or keep the spectral bound and clipping on")
    print("\n".join(lines))


# ---- experiment, dashboard, bench ------------------------------------------------------------------
def _experiment(args) -> int:
    try:
        from .experiment import run_paper
    except ImportError as err:
        print(f"twnn experiment: error: twnn_jax.experiment is not available ({err})", file=sys.stderr)
        return 1
    kwargs = {"quick": args.quick}
    if args.seeds is not None:
        kwargs["seeds"] = args.seeds
    result = run_paper(args.out, **kwargs)
    print(f"experiment paper: results in {args.out}" + (f" ({result})" if isinstance(result, (str, Path)) else ""))
    return 0


def _app_path() -> Path:
    """The dashboard's main script, inside the installed `twnn_dashboard` package (the repository's
    `dashboard/` folder in an editable install)."""
    import twnn_dashboard

    return Path(twnn_dashboard.__file__).resolve().parent / "app.py"


def dashboard_command(extra: list[str]) -> list[str]:
    """The `streamlit run` command line for the dashboard, with `extra` arguments passed on unchanged."""
    return [sys.executable, "-m", "streamlit", "run", str(_app_path()), "--server.address=127.0.0.1",
            "--client.toolbarMode=viewer", "--browser.gatherUsageStats=false", "--runner.postScriptGC=false",
            "--server.enableStaticServing=true", *extra]


def _run_or_print(name: str, command: list[str], script: Path, dry_run: bool) -> int:
    if dry_run:
        print(" ".join(command))
    if not script.is_file():
        print(f"twnn {name}: error: {script} not found (a broken install? reinstall twnn-jax)", file=sys.stderr)
        return 1
    if dry_run:
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":  # become the server: Ctrl-C and kill reach Streamlit itself, no orphan is left
        os.execv(command[0], command)
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 130


def _dashboard(args, extra) -> int:
    if not args.dry_run:
        from twnn_dashboard.static_files import ensure_plotly_js

        ensure_plotly_js()  # plotly.js served from the first request on (else the app copies it at the first page)
    return _run_or_print("dashboard", dashboard_command(extra), _app_path(), args.dry_run)


def _bench(args, extra) -> int:
    """The training benchmark (`twnn_jax.bench`) in a process of its own, without the compilation cache."""
    from . import bench

    command = [sys.executable, "-m", "twnn_jax.bench", *extra]
    return _run_or_print("bench", command, Path(bench.__file__), args.dry_run)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `twnn` console script; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    enable_compile_cache()  # before anything compiles; TWNN_COMPILE_CACHE moves it or turns it off
    try:
        try:
            args, extra = parser.parse_known_args(argv)
        except SystemExit as exit_:  # --help
            return int(exit_.code or 0)
        if extra and extra[0] == "--":
            extra = extra[1:]
        if extra and args.command not in ("dashboard", "bench"):
            raise UsageError(f"twnn {args.command}: error: unrecognized arguments: {' '.join(extra)} "
                             f"(see twnn {args.command} --help)")
        if args.command == "train":
            return _train(args)
        if args.command == "experiment":
            return _experiment(args)
        if args.command == "dashboard":
            return _dashboard(args, extra)
        return _bench(args, extra)
    except UsageError as err:
        print(str(err), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
