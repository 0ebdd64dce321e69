"""The gated wormhole GRU part of `twnn experiment growth`: does a growing recurrent wormhole net's size follow the
length of the adding problem?

`twnn train --task adding --model wormhole_gru --grow on` (`twnn_jax.wormhole_gru_growth`) at the sequence lengths
`LENGTHS`. For every seed one net grows from one unit per layer (up to `MAX_UNITS` per layer) and fixed nets of
`FIXED_SIZES` units per layer train beside it (the rule off, the same L1 step), all of one length in one compiled
function (`growth_wormhole.train_runs`). The budget is the long-range experiment's (`longrange.FULL`: width 16,
batch 32, Adam lr 5e-3), in which a GRU of this width learns T = 50 within 800 steps; every run here gets `steps`.

Reported per run: final size (both layers together), training loss (mean over the last 10% of steps), the
evaluation set's MSE and accuracy (|error| < 0.04), each as mean ± std over seeds; and whether each seed's size
curve is the same at every length (then the size follows the rule's random draws, not the task).
"""

from __future__ import annotations

import functools

from ..train import TrainConfig
from .growth_wormhole import (
    added_deleted,
    claims_table,
    grown_size_figure,
    part_plan,
    provenance,
    runs_table,
    size_verdicts,
    train_part,
    train_runs,
)

MAX_UNITS = 16  # slots per layer of the stack (two layers)
FIXED_SIZES = (2, 4, 8, 16)  # units per layer
LR, BATCH = 5e-3, 32  # the long-range experiment's
FULL = {"steps": 1500, "every": 100, "seeds": 3, "lengths": [10, 25, 50]}
QUICK = {"steps": 20, "every": 10, "seeds": 2, "lengths": [4, 6]}


def judge(trainer, live):
    """Params -> the final figures of an adding run: eval MSE and accuracy, from one evaluation."""

    def figures(p):
        ev = trainer.evaluate(p, live)
        return {"eval_mse": ev["loss"], "accuracy": ev["metric"]}

    return figures


def train_length(seq_len: int, seeds: int, steps: int, every: int) -> dict:
    """Every run of one length for every seed: {run name: [per seed: curves and final figures]}."""
    cfg = TrainConfig(task="adding", model="wormhole_gru", seq_len=seq_len, hidden=MAX_UNITS, batch_size=BATCH, lr=LR)
    return train_runs(cfg, FIXED_SIZES, seeds, steps, every, judge)


def same_size_curves(runs: dict) -> dict:
    """Whether each seed's grown size curve is identical at every length (then the size follows the rule's random
    draws, not the task)."""
    curves = [[r["size"] for r in by_name["grown"]] for by_name in runs.values()]  # per length, per seed
    same = all(c == curves[0] for c in curves[1:])
    return {"holds": bool(same), "text": "each seed's grown size, checked every block of steps, is identical at every "
                                         "length" if same else "the size curves differ between lengths"}


def run_part(quick: bool, seeds: int | None) -> dict:
    plan = part_plan(FULL, QUICK, quick, seeds)
    runs, summary = train_part({f"adding-{t}": functools.partial(train_length, t) for t in plan["lengths"]}, plan,
                               "growth, wormhole GRU part")
    verdicts = {**size_verdicts(summary, FIXED_SIZES, "size_follows_length", "grown size (both layers)"),
                "same_size_curve_at_every_length": same_size_curves(runs)}
    return {"plan": {**plan, "max_units": MAX_UNITS, "fixed_sizes": list(FIXED_SIZES), "lr": LR, "batch_size": BATCH},
            "summary": summary, "verdicts": verdicts, "runs": runs}


def markdown(part: dict) -> list[str]:
    """The GRU part's section of RESULTS.md."""
    p, s, v = part["plan"], part["summary"], part["verdicts"]
    return [
        "## Growth for the gated wormhole GRU (adding, growing T)",
        "",
        provenance(part, "gru"),
        "",
        f"The adding problem at T = {', '.join(map(str, p['lengths']))} with the gated wormhole GRU (two layers of up "
        f"to {p['max_units']} units, a fixed point every time step), Adam lr {p['lr']:g}, batch {p['batch_size']} (the "
        "long-range experiment's budget). `grown`: from one unit per layer by seed 003's rule "
        "(`twnn_jax/wormhole_gru_growth.py`); `fixed-n`: n units per layer, the rule off, the same L1 step. Sizes "
        "count both layers. Eval MSE and accuracy (|error| < 0.04) on the evaluation set; always answering 1.0 "
        "scores MSE 0.167. Mean ± std over seeds.",
        "",
        *claims_table([
            ("final size follows the length (mean grows with T, shortest and longest apart by more than their std)",
             v["size_follows_length"]),
            ("the grown net beats every fixed size (eval MSE)", v["grown_beats_fixed"]),
            ("(a cause, if the first fails) the size curve is the same at every length",
             v["same_size_curve_at_every_length"])]),
        "",
        *runs_table(s, [("eval MSE", "eval_mse", ".2e"), ("accuracy", "accuracy", ".2f")]),
        "", added_deleted(part), "", "Figure: [growth_gru_size.html](growth_gru_size.html).", "",
    ]


def size_figure(part: dict) -> dict:
    return grown_size_figure(
        part, "The wormhole GRU growing on adding: units (both layers) over steps (median over seeds)", "active units")
