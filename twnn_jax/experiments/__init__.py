"""Checks of the TWNN paper's claims on CPU-sized tasks: `run_paper` trains, measures and writes a report.

>>> results = run_paper("assets", quick=True, seeds=1)              # doctest: +SKIP

Writes `out_dir/experiment/RESULTS.md` (Markdown tables and plain-words verdicts), `results.json` (every raw
number, and the git commit of the code that wrote them) and one Plotly HTML file per figure (they share one
`plotly.min.js` in the folder; PNG too when `kaleido` is importable, which is not a dependency). The parts,
one module each:

1. `digits`: Table III analog on scikit-learn's 8x8 digits (fixed 360-sample test split): plain residual nets
   of a few depths against the wormhole residual net of the paper's Fig. 5 (`resnet_fp`), same budget,
   several seeds, with training time (compile timed apart) and compiled memory.
2. `settle`: "easy inputs settle faster": per test sample, forward iterations against confidence and loss.
3. `sine`: Fig. 6 analog, the `small` net on sine waves, free-running generation against the target.
4. `gate`: gate bias against forward/backward iterations and accuracy, and nets trained at other biases.
5. `sweep_order` (layer order against all at once) and `adding` (a long-range check, the adding problem).

`plan` says how much of each to run, `measure` times training through the library's loop
(`twnn_jax.train.train`), `report` writes the Markdown, `provenance` records the commit and checks
whether the results are still current (`check_results`); the figures are `twnn_jax.figures`' builders.
Timings are wall-clock seconds on whatever machine runs this; on a shared machine they are noisy, so the
report records the load average next to them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import jax
from tqdm import tqdm

from .. import figures
from ..checkpoint import dumps_strict, write_atomic
from ..train import live_controls, trainer_for
from .adding import part_adding
from .digits import part_digits, twnn_config
from .gate import part_gate
from .measure import load, machine
from .plan import FULL, QUICK, Plan
from .provenance import changed_since, check_results, code_version
from .report import results_markdown
from .settle import part_settle
from .sine import part_sine
from .sweep_order import part_sweep_order

__all__ = ["FULL", "QUICK", "Plan", "changed_since", "check_results", "code_version", "paper_figures",
           "results_markdown", "run_paper"]

logger = logging.getLogger(__name__)


def paper_figures(results: dict) -> dict:
    """The experiment's figures (plain Plotly dicts) by file name, from a results dict (pure)."""
    return {
        "digits_accuracy": figures.digits_accuracy_figure(results["digits"]),
        "settle": figures.settle_figure(results["settle"]),
        "sine_generation": figures.sine_generation_figure(results["sine"]),
        "gate_sweep": figures.gate_sweep_figure(results["gate"]),
        "order_and_adding": figures.order_and_adding_figure(results["sweep_order"], results["adding"]),
    }


def write_figures(results: dict, folder: Path) -> dict:
    """One HTML file per figure, all loading the one `plotly.min.js` of the folder; PNG when kaleido is importable."""
    import plotly.io as pio
    import plotly.offline

    bundle = folder / "plotly.min.js"
    script = plotly.offline.get_plotlyjs().encode("utf-8")
    if not bundle.is_file() or bundle.read_bytes() != script:
        write_atomic(bundle, script)
    try:
        import kaleido  # noqa: F401

        has_kaleido = True
    except ImportError:
        has_kaleido = False
    written = {}
    for name, fig in paper_figures(results).items():
        html = folder / f"{name}.html"
        write_atomic(html, pio.to_html(fig, include_plotlyjs="directory", full_html=True).encode("utf-8"))
        written[name] = {"html": html.name}
        if has_kaleido:
            try:
                pio.write_image(fig, folder / f"{name}.png")
                written[name]["png"] = f"{name}.png"
            except Exception as err:  # kaleido needs a browser in recent versions
                logger.warning("kaleido could not write %s.png: %s", name, err)
    return written


def run_paper(out_dir="assets", quick: bool = False, seeds: int = 3) -> dict:
    """Run every part, write `out_dir/experiment/{RESULTS.md, results.json, *.html}`; returns the results dict.

    quick=True: tiny budgets (seconds; what the tests run). The full run takes minutes on two CPU cores.
    A progress bar per part and per training run goes to stderr.
    """
    if int(seeds) < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    seeds = int(seeds)
    plan = QUICK if quick else FULL
    folder = Path(out_dir) / "experiment"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = {"meta": {"quick": bool(quick), "seeds": seeds, "plan": dataclasses.asdict(plan),
                        "code": code_version(), "jax": jax.__version__, "backend": jax.default_backend(),
                        "machine": machine(), "cpus": os.cpu_count(),
                        "load_start": load()}}
    twnn = trainer_for(twnn_config(plan))
    live = live_controls(twnn.config)
    states: dict = {}  # the trained TWNN nets by seed (part 1), studied by parts 2, 4 and 5a
    timings = {}
    parts = (
        ("digits", lambda: part_digits(plan, seeds)),
        ("settle", lambda: part_settle(twnn, states, live)),
        ("sine", lambda: part_sine(plan)),
        ("gate", lambda: part_gate(plan, twnn, states[0], results["digits"])),
        ("sweep_order", lambda: part_sweep_order(plan, twnn, states[0])),
        ("adding", lambda: part_adding(plan)),
    )
    for name, part in tqdm(parts, desc="paper experiment", unit="part", dynamic_ncols=True):
        t = time.perf_counter()
        results[name] = part()
        if name == "digits":
            results[name], trained = results[name]
            states.update(trained)
        timings[name] = time.perf_counter() - t
        logger.info("part %s done in %.1f s", name, timings[name])
    results["figures"] = write_figures(results, folder)
    results["meta"]["part_s"] = timings
    results["meta"]["wall_s"] = time.perf_counter() - t0
    results["meta"]["load_end"] = load()
    text = dumps_strict(results, indent=1)
    results = json.loads(text)
    write_atomic(folder / "results.json", text.encode("utf-8"))
    write_atomic(folder / "RESULTS.md", results_markdown(results).encode("utf-8"))
    return results
