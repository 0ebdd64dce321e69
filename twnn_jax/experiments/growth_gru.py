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

from tqdm import tqdm

from ..train import TrainConfig
from .growth_wormhole import (
    added_deleted,
    claims_table,
    grown_size_figure,
    provenance,
    runs_table,
    summarize,
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


def verdicts(s: dict, runs: dict) -> dict:
    tasks = list(s)
    grown = [s[t]["grown"]["final_size"] for t in tasks]
    sizes = [g["mean"] for g in grown]
    text = ", ".join(f"{t}: {g['mean']:.1f} ± {g['std']:.1f}" for t, g in zip(tasks, grown))
    apart = grown[-1]["mean"] - grown[-1]["std"] > grown[0]["mean"] + grown[0]["std"]
    beaten = {t: [n for n in FIXED_SIZES if s[t]["grown"]["eval_mse"]["mean"] < s[t][f"fixed-{n}"]["eval_mse"]["mean"]]
              for t in tasks}
    curves = [[r["size"] for r in runs[t]["grown"]] for t in tasks]  # per length, per seed
    same = all(c == curves[0] for c in curves[1:])
    return {
        "size_follows_length": {"holds": bool(all(a < b for a, b in zip(sizes, sizes[1:])) and apart),
                                "text": f"grown size (both layers), mean ± std over seeds: {text}"},
        "grown_beats_fixed": {"holds": all(len(b) == len(FIXED_SIZES) for b in beaten.values()),
                              "text": "; ".join(f"{t}: lower eval MSE than fixed "
                                                + (", ".join(map(str, b)) or "none") for t, b in beaten.items())},
        "same_size_curve_at_every_length": {
            "holds": bool(same), "text": "each seed's grown size, checked every block of steps, is identical at every "
                                         "length" if same else "the size curves differ between lengths"},
    }


def run_part(quick: bool, seeds: int | None) -> dict:
    plan = dict(QUICK if quick else FULL)
    if seeds is not None:
        plan["seeds"] = int(seeds)
    runs = {}
    for t in tqdm(plan["lengths"], desc="growth, wormhole GRU part", unit="length", dynamic_ncols=True):
        runs[f"adding-{t}"] = train_length(t, plan["seeds"], plan["steps"], plan["every"])
    summary = summarize(runs)
    return {"plan": {**plan, "max_units": MAX_UNITS, "fixed_sizes": list(FIXED_SIZES), "lr": LR, "batch_size": BATCH},
            "summary": summary, "verdicts": verdicts(summary, runs), "runs": runs}


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
