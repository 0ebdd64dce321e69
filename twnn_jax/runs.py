"""Runs: a training run's directory, its files, training it with checkpoints, and its summary.

A run directory holds `metrics.jsonl` (one strict-JSON object a step, from `twnn_jax.train.summarize`),
`config.json` and `checkpoint.npz` (see `twnn_jax.checkpoint`), `summary.json` and `report.html`
(self-contained Plotly). The CLI (`twnn train`) parses its flags and calls:

>>> run = new_run(TrainConfig(task="sine"), "runs/sine")                  # doctest: +SKIP
>>> run = resume_run("runs/sine", changes={"lr": 3e-3})                   # doctest: +SKIP
>>> result = train_run(run, 200, checkpoint_every=100)                    # doctest: +SKIP
>>> print(summary_text(result.summary, run.out))                          # doctest: +SKIP

A bad path or a run that must not be overwritten raises `RunError` before any JAX work: one line that
names the flag (`--out`, `--resume`) and what is wrong. While `train_run` trains, SIGTERM stops it as
Ctrl-C does: the steps logged so far are checkpointed, summarised and reported (`RunResult.interrupted`). A process
killed outright (SIGKILL) loses at most the steps since its last checkpoint; the temporary files it may
have left (`.checkpoint.npz.<pid>.<hex>.tmp`, ...) are removed when the directory is trained again.

`evaluate_run` is the one evaluate-and-summarise routine: the CLI, the experiments and the dashboard's
export all report a trained state through it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from .checkpoint import (
    CONFIG_FILE,
    HISTORY_FILE,
    STATE_FILE,
    dumps_strict,
    load_checkpoint,
    load_history,
    remove_stale_temporaries,
    save_checkpoint,
    write_atomic,
)
from .train import (
    LIVE,
    STEPS_PER_CALL,
    Call,
    TrainConfig,
    Trainer,
    TrainState,
    live_controls,
    run_calls,
    trainer_for,
)

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
RUN_FILES = (METRICS_FILE, CONFIG_FILE, STATE_FILE, HISTORY_FILE, SUMMARY_FILE, REPORT_FILE)


class RunError(Exception):
    """A run that cannot start as asked (a bad path, a run in the way): one line naming the flag."""


@dataclasses.dataclass
class Run:
    """A run ready to train: its config, directory, trainer, state (None: fresh) and earlier history."""

    config: TrainConfig
    out: Path
    trainer: Trainer
    state: TrainState | None = None
    history: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class RunResult:
    summary: dict
    interrupted: bool


# ---- paths ---------------------------------------------------------------------------------------------
def check_out_dir(path, flag: str = "--out") -> None:
    """RunError unless `path` is, or can be made, a writable directory. Nothing is left behind."""
    if str(path) == "":
        raise RunError(f"{flag}: the path is empty; give a directory")
    target = Path(os.path.abspath(path))
    existing = next(p for p in (target, *target.parents) if os.path.lexists(p))  # "/" at the latest
    if existing == target and not target.is_dir():
        raise RunError(f"{flag} {path}: is a file, not a directory")
    if existing != target and not existing.is_dir():
        raise RunError(f"{flag} {path}: {existing} is a file, so no directory can be made under it")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".twnn-probe-", dir=existing))  # can we write there?
    except OSError as err:
        raise RunError(f"{flag} {path}: cannot write in {existing} ({err.strerror or err})") from None


def check_resume_dir(path, flag: str = "--resume") -> None:
    """RunError unless `path` is an existing directory (whether it holds a run is `load_checkpoint`'s to say)."""
    if str(path) == "":
        raise RunError(f"{flag}: the path is empty; give a run directory")
    if not os.path.exists(path):
        raise RunError(f"{flag} {path}: no such directory (a run directory holds {CONFIG_FILE} and {STATE_FILE})")
    if not os.path.isdir(path):
        raise RunError(f"{flag} {path}: is a file, not a run directory")


def is_run_dir(path: Path) -> bool:
    return any((Path(path) / name).exists() for name in (METRICS_FILE, STATE_FILE, CONFIG_FILE))


def default_out(config: TrainConfig) -> Path:
    return Path("runs") / f"{config.task}-{time.strftime('%Y%m%d-%H%M%S')}"


def read_metrics(path: Path, up_to_step: int) -> list[dict]:
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


# ---- opening a run -------------------------------------------------------------------------------------
def new_run(config: TrainConfig, out=None, *, force: bool = False) -> Run:
    """A fresh run of `config` into `out` (default runs/<task>-<time>). RunError for a bad or occupied path;
    ValueError naming the setting for a config that cannot be built."""
    out = default_out(config) if out is None else Path(out)
    check_out_dir(out, "--out")
    if is_run_dir(out) and not force:
        raise RunError(f"--out {out} already holds a run; continue it with --resume {out}, choose another "
                       "directory, or add --force to overwrite it")
    return Run(config, out, trainer_for(config))


def resume_run(directory, *, out=None, changes: dict | None = None, force: bool = False) -> Run:
    """The run saved in `directory`, to continue in `out` (default: the same directory). `changes` may set
    live settings only (they do not change the state's structure)."""
    changes = dict(changes or {})
    fixed = sorted(set(changes) - set(LIVE))
    if fixed:
        flags = ", ".join("--" + f.replace("_", "-") for f in fixed)
        raise RunError(f"{flags} cannot change on --resume (the run's config is in {Path(directory) / CONFIG_FILE}); "
                       "only live settings may: " + ", ".join("--" + f.replace("_", "-") for f in LIVE))
    directory = Path(directory)
    check_resume_dir(directory)
    target = directory if out is None else Path(out)
    check_out_dir(target, "--resume" if out is None else "--out")
    if target.resolve() != directory.resolve() and is_run_dir(target) and not force:
        raise RunError(f"--out {target} already holds a run; choose another directory or add --force to overwrite it")
    try:
        config, state = load_checkpoint(directory)
    except (OSError, ValueError) as err:
        raise RunError(f"--resume: {err}") from None
    config = dataclasses.replace(config, **changes)
    history = read_metrics(directory / METRICS_FILE, int(state.step))
    if not history:  # metrics.jsonl lost: the checkpoint's own copy
        try:
            saved = load_history(directory) or []
        except ValueError as err:
            raise RunError(f"--resume: {err}") from None
        history = [h for h in saved if isinstance(h, dict) and h.get("step", 0) <= int(state.step)]
    return Run(config, target, trainer_for(config), state, history)


def describe(run: Run, steps: int) -> str:
    config = run.config
    start = 0 if run.state is None else int(run.state.step)
    return (f"twnn train: {config.task} with {run.trainer.model.kind} (hidden {config.hidden}), solver "
            f"{config.solver}, grad {config.grad_mode}, {steps} steps from step {start} -> {run.out}")


# ---- training ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def stop_on_signals():
    """Within: Ctrl-C (SIGINT) and SIGTERM ask the training loop to stop at the next call boundary; yields
    the `threading.Event` they set. A second signal raises KeyboardInterrupt at once.

    A flag, not an exception raised wherever the main thread happens to be: an interrupt that lands inside
    JAX's own machinery (dispatch, a cache, a wait on a computation) can leave it unusable, and a run
    that then evaluates and writes its report hung there (seen in the exit tests, once in several runs).
    Only in the main thread (signal handlers live there); elsewhere the event is never set."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def stop(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _fmt(value, spec=".4g"):
    return "nan" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def progress_text(row: dict, metric_name: str) -> str:
    """The progress bar's numbers for the latest step: loss, metric, iterations, converged fraction."""
    return (f"step {row['step']} loss {_fmt(row['loss'])} {metric_name} {_fmt(row['metric'])} "
            f"fwd {_fmt(row['fwd_iters_mean'], '.1f')}/{row['fwd_iters_max']} "
            f"bwd {_fmt(row['bwd_iters_mean'], '.1f')}/{row['bwd_iters_max']} "
            f"conv {_fmt(row['converged_frac'], '.2f')}")


def _mean_last(history, key, n=10):
    values = [h[key] for h in history[-n:] if isinstance(h.get(key), (int, float)) and math.isfinite(h[key])]
    return sum(values) / len(values) if values else None


def _make_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # the path changed since check_out_dir
        raise RunError(f"--out {out}: cannot create the directory ({err.strerror or err})") from None


def train_run(run: Run, steps: int, *, checkpoint_every: int = 100, progress: bool = True) -> RunResult:
    """Train `run` for `steps` more steps, writing its directory as it goes; a checkpoint every
    `checkpoint_every` steps (0: only at the end). Ctrl-C or SIGTERM ends it early, consistently."""
    config, trainer, out = run.config, run.trainer, run.out
    live = live_controls(config)
    _make_dir(out)
    remove_stale_temporaries(out, RUN_FILES)  # left by a process killed while writing one of them
    state = trainer.init(config.seed) if run.state is None else run.state
    history = list(run.history)
    metrics_path = out / METRICS_FILE
    write_atomic(metrics_path, "".join(dumps_strict(h) + "\n" for h in history).encode())
    save_checkpoint(out, state, config, history)  # the run directory is a valid checkpoint from the start

    stream = sys.stderr
    bar = tqdm(total=steps, file=stream, disable=not progress, unit="step", dynamic_ncols=True,
               mininterval=0.1 if getattr(stream, "isatty", lambda: False)() else 2.0)
    new, last_metrics, interrupted = [], None, False
    start = time.perf_counter()
    try:
        with stop_on_signals() as stop_requested, metrics_path.open("a") as log:
            first = int(state.step)

            def plan(step: int) -> Call | None:
                """Up to STEPS_PER_CALL steps per call, never across a periodic checkpoint; none once a
                signal asked to stop (the call in flight still finishes and is logged)."""
                if stop_requested.is_set():
                    return None
                done = step - first
                n = min(STEPS_PER_CALL, steps - done)
                if checkpoint_every:
                    n = min(n, checkpoint_every - done % checkpoint_every)
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
                bar.set_postfix_str(progress_text(rows[-1], trainer.task.metric_name), refresh=False)
                bar.update(len(rows))
                done = len(new)
                if checkpoint_every and done % checkpoint_every == 0 and done < steps:
                    save_checkpoint(out, state, config)  # metrics.jsonl holds the history meanwhile
            interrupted = stop_requested.is_set()
    except KeyboardInterrupt:  # a second signal
        interrupted = True
    finally:
        bar.close()
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
    if history and "size" in history[-1]:  # a growing net (twnn_jax.growth): its final size figures
        from .growth import size_summary

        summary.update(size_summary(history), grows="wormholes" if config.grow == "wormholes" else "neurons")
    write_atomic(out / SUMMARY_FILE, (dumps_strict(summary, indent=2) + "\n").encode())
    from .report import write_report

    metric_name = None if config.task == "sine" else trainer.task.metric_name  # sine's metric is its loss
    write_report(out / REPORT_FILE, history, config=config, summary=summary, generated=generated,
                 last_metrics=None if last_metrics is None else jax.device_get(last_metrics), metric_name=metric_name,
                 title=f"twnn run: {config.task} ({trainer.model.kind}), {out.name}")
    return RunResult(summary, interrupted)


def summary_text(s: dict, out: Path) -> str:
    """The summary of a run as a few lines for people (what `twnn train` prints at the end)."""
    name = s["metric_name"]
    lines = [
        f"run {out}: {s['task']} / {s['model']}, step {s['steps']} ({s['new_steps']} new, {s['seconds']} s)",
        f"  final loss {_fmt(s['final_loss'])}, {name} {_fmt(s['final_metric'])} (mean of the last 10 steps)",
        f"  eval set: loss {_fmt(s['eval_loss'])}, {name} {_fmt(s['eval_metric'])}, "
        f"forward converged {s['eval_converged_frac']:.1%}",
    ]
    if "final_size" in s:
        lines.append(f"  network size: {s['final_size']} {s.get('grows', 'neurons')} at the end "
                     f"(between {s['min_size']} and "
                     f"{s['max_size']}; "
                     f"{s['neurons_added']} added, {s['neurons_deleted']} deleted)")
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
    return "\n".join(lines)


# ---- evaluation ----------------------------------------------------------------------------------------
def evaluate_run(trainer, state, live) -> tuple[dict, dict | None]:
    """Evaluation-set numbers as plain Python values, and the sine's free-running generation (or None)."""
    ev = jax.device_get(trainer.evaluate(state.params, live))
    result = {
        "eval_loss": float(ev["loss"]),
        "eval_metric": float(ev["metric"]),
        "eval_fwd_iters_mean": float(np.mean(ev["fwd_iters"])),
        "eval_converged_frac": float(np.mean(ev["fwd_converged"])),
    }
    generated = None
    if trainer.generate is not None:
        generated = jax.device_get(trainer.generate(state.params, live))
        result["sine_free_running_rmse"] = float(generated["rmse"])
    return result, generated
