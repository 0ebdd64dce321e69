"""`twnn`: train a run from the command line, run the paper's experiment, start the dashboard, benchmark.

    twnn train --task digits --steps 300 --gate -1 --out runs/digits
    twnn train --resume runs/digits --steps 200          # 200 more steps, same run
    twnn experiment paper --out assets --quick
    twnn dashboard --server.port 8502                      # extra arguments go to Streamlit
    twnn bench --quick
    twnn surrogate --run runs/digits                       # a feed-forward surrogate of the run's fixed point

This module only parses: the flags of `twnn train` are generated from the settings declaration
(`twnn_jax.settings`), and the run itself (its directory, `metrics.jsonl`, checkpoints, `summary.json`,
`report.html`, SIGTERM, the progress bar) is `twnn_jax.runs`. Bad arguments, and bad paths for `--out`
and `--resume`, exit with code 2 and one line naming the flag and what it allows.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from . import runs
from .compile_cache import enable_compile_cache
from .experiment_names import EXPERIMENTS, GROWTH_PARTS
from .settings import DECLARATION, LIVE, SETTINGS, TrainConfig, parse_number, parse_value, shorten


class UsageError(Exception):
    """A bad command line: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block, no SystemExit inside main()
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


# ---- argument types: the settings' own strict parser (twnn_jax.settings.parse_value) -------------------
def _setting_type(name: str):
    def parse(text: str):
        try:
            return parse_value(name, text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = name
    return parse


def _count_type(name: str, low: int, high: int):
    """An integer flag that is not a setting (--steps, --checkpoint-every, --seeds), parsed as strictly."""

    def parse(text: str) -> int:
        value = parse_number(text, integer=True)
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name} must be an integer in [{low}, {high}]; got {shorten(text)!r}")
        return value

    parse.__name__ = name
    return parse


def _path_type(what: str):
    def parse(text: str) -> Path:
        if text == "":
            raise argparse.ArgumentTypeError(f"the path is empty; give {what}")
        return Path(text)

    parse.__name__ = "path"
    return parse


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _setting_help(name: str) -> str:
    s = SETTINGS[name]
    return f"{s.help} Allowed: {s.allowed}; default {s.show(s.default)}.".replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="twnn", description="Fixed-point (temporal wormhole) networks in JAX.", allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", metavar="{train,sweep,experiment,surrogate,dashboard,bench}")
    sub.required = True

    train = sub.add_parser("train", help="train one run; writes metrics.jsonl, a checkpoint and report.html",
                           allow_abbrev=False, description="Train one run. Settings default to TrainConfig's.")
    train.add_argument("--steps", type=_count_type("steps", 0, 10_000_000), default=200,
                       help="training steps (with --resume: more steps)")
    train.add_argument("--out", type=_path_type("a directory"),
                       help="run directory (default runs/<task>-<time>; with --resume: DIR)")
    train.add_argument("--resume", type=_path_type("a run directory"), metavar="DIR",
                       help="continue the run saved in DIR")
    train.add_argument("--force", action="store_true", help="overwrite an existing run in --out")
    train.add_argument("--checkpoint-every", type=_count_type("checkpoint-every", 0, 10_000_000), default=100,
                       metavar="N", help="also save a checkpoint every N steps (0: only at the end; default 100)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    group = train.add_argument_group("run settings (TrainConfig; with --resume only the live ones may change: "
                                     + ", ".join(_flag(name) for name in LIVE) + ")")
    for s in DECLARATION:
        group.add_argument(_flag(s.name), dest=s.name, type=_setting_type(s.name), default=argparse.SUPPRESS,
                           metavar=s.name.upper(), help=_setting_help(s.name))

    from .sweep_cli import add_sweep_parser

    add_sweep_parser(sub, setting_type=_setting_type, count_type=_count_type, path_type=_path_type, flag=_flag,
                     setting_help=_setting_help)

    exp = sub.add_parser("experiment", help="run a named experiment (paper)", allow_abbrev=False)
    exp.add_argument("name", choices=list(EXPERIMENTS), help="the experiment: " + "; ".join(
        f"{name} = {what}" for name, what in EXPERIMENTS.items()) + " (writes OUT/experiment/, or its NAME/ folder)")
    exp.add_argument("--out", type=_path_type("a directory"), default=Path("assets"),
                     help="output directory (default assets)")
    exp.add_argument("--quick", action="store_true", help="a short version (minutes)")
    exp.add_argument("--seeds", type=_count_type("seeds", 1, 1000), default=None, help="number of seeds")
    exp.add_argument("--part", choices=list(GROWTH_PARTS), default=None,
                     help="growth only: run this part alone, keeping the others' earlier results: " + "; ".join(
                         f"{name} = {what}" for name, what in GROWTH_PARTS.items()))
    exp.add_argument("--check", action="store_true",
                     help="run nothing: say whether OUT/experiment/results.json is current (exit 1 if code changed)")

    sur = sub.add_parser("surrogate", allow_abbrev=False,
                         help="train a feed-forward surrogate of a saved run's fixed point; writes DIR/surrogate/",
                         description="Train a two-layer surrogate x -> z*(x) of the run's fixed point and report "
                                     "its error, the task metric with it, times per batch and warm-start iterations.")
    sur.add_argument("--run", type=_path_type("a run directory"), required=True, metavar="DIR",
                     help="the run directory (written by twnn train)")
    sur.add_argument("--hidden", type=_setting_type("surrogate_hidden"), default=SETTINGS["surrogate_hidden"].default,
                     help="hidden width of the surrogate (default %(default)s)")
    sur.add_argument("--steps", type=_count_type("steps", 1, 1_000_000), default=3000,
                     help="training steps of the surrogate (default %(default)s)")
    sur.add_argument("--pairs", type=_count_type("pairs", 16, 1_000_000), default=4096,
                     help="(input, fixed point) pairs to train on (default %(default)s)")

    dash = sub.add_parser(
        "dashboard", allow_abbrev=False, help="start the Streamlit dashboard (extra arguments go to Streamlit)",
        usage="twnn dashboard [-h] [--dry-run] [streamlit options, e.g. --server.port 8502]",
        description="Start the dashboard on 127.0.0.1. Arguments this command does not know (e.g. "
                    "--server.port 8502) are passed on to `streamlit run` unchanged.",
    )
    dash.add_argument("--dry-run", action="store_true", help="print the command instead of running it")

    bench = sub.add_parser("bench", allow_abbrev=False,
                           help="training speed per task (twnn_jax.bench; extra arguments go to it)",
                           usage="twnn bench [-h] [--dry-run] [benchmark options, e.g. --quick]")
    bench.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    return parser


# ---- train: parse, then the library's run management (twnn_jax.runs) -----------------------------------
def _train(args) -> int:
    given = {s.name: getattr(args, s.name) for s in DECLARATION if hasattr(args, s.name)}
    try:
        if args.resume is not None:
            run = runs.resume_run(args.resume, out=args.out, changes=given, force=args.force)
        else:
            run = runs.new_run(TrainConfig(**given), args.out, force=args.force)
        print(runs.describe(run, args.steps), file=sys.stderr)
        result = runs.train_run(run, args.steps, checkpoint_every=args.checkpoint_every, progress=not args.quiet)
    except runs.RunError as err:
        raise UsageError(f"twnn train: error: {err}") from None
    except ValueError as err:  # a config the library cannot build: name the flag of the setting
        name = next((name for name in SETTINGS if re.match(rf"{name}\b", str(err))), None)
        where = f"{_flag(name)}: " if name else ""
        raise UsageError(f"twnn train: error: {where}{err}") from None
    print(runs.summary_text(result.summary, run.out))
    if result.interrupted:
        print(f"interrupted at step {result.summary['steps']}; continue with: twnn train --resume {run.out}",
              file=sys.stderr)
        return 130
    return 0


# ---- experiment, dashboard, bench ------------------------------------------------------------------
def _experiment(args) -> int:
    try:
        from .experiments import check_results, run_paper
    except ImportError as err:
        print(f"twnn experiment: error: twnn_jax.experiments is not available ({err})", file=sys.stderr)
        return 1
    folder = Path(args.out) / "experiment" / ("" if args.name == "paper" else args.name)
    if args.check:
        current, line = check_results(folder, name=args.name)
        print(f"experiment {args.name}: {line}")
        return 0 if current else 1
    if args.part is not None and args.name != "growth":
        print(f"twnn experiment: error: --part is for the growth experiment, not {args.name}", file=sys.stderr)
        return 2
    if args.name == "growth":
        from .experiments.growth import run_growth

        run_growth(args.out, quick=args.quick, seeds=args.seeds, part=args.part)
        print(f"experiment growth: results in {folder}")
        return 0
    if args.name == "longrange":
        from .experiments.longrange import run_longrange

        run_longrange(args.out, quick=args.quick, seeds=args.seeds)
        print(f"experiment longrange: results in {folder}")
        return 0
    kwargs = {"quick": args.quick}
    if args.seeds is not None:
        kwargs["seeds"] = args.seeds
    if args.name == "surrogate":
        from .experiments.surrogate import run_surrogate

        run_surrogate(args.out, **kwargs)
        print(f"experiment surrogate: results in {folder}")
        return 0
    result = run_paper(args.out, **kwargs)
    print(f"experiment paper: results in {args.out}" + (f" ({result})" if isinstance(result, (str, Path)) else ""))
    return 0


def _surrogate(args) -> int:
    from . import warm

    try:
        result = warm.study_run(args.run, hidden=args.hidden, steps=args.steps, n_train=args.pairs)
    except ValueError as err:
        raise UsageError(f"twnn surrogate: error: --run {shorten(str(err), 300)}") from None
    print(warm.summary_text(result))
    print(f"  written: {Path(args.run) / warm.SUMMARY_DIR / 'summary.json'}")
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
    command = dashboard_command(extra)
    if args.dry_run or not _app_path().is_file():
        return _run_or_print("dashboard", command, _app_path(), args.dry_run)
    from twnn_dashboard.preload import start_preload

    start_preload()  # the default page's run built and compiled while the server starts and the browser connects
    # The server runs in this process (as `python -m streamlit run ...` would), so the app script finds
    # what the preload built; Ctrl-C and SIGTERM reach Streamlit's own handlers.
    from streamlit.web.cli import main as streamlit_main

    sys.argv = ["streamlit", *command[3:]]
    try:
        streamlit_main(prog_name="streamlit")
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return 0


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
        if args.command == "sweep":
            from .sweep_cli import run_command

            return run_command(args, UsageError)
        if args.command == "surrogate":
            return _surrogate(args)
        if args.command == "dashboard":
            return _dashboard(args, extra)
        return _bench(args, extra)
    except UsageError as err:
        print(str(err), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
