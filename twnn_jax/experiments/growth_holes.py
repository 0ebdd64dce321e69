"""The wormhole-count part of `twnn experiment growth`: does the number of wormholes a net grows follow the task?

`twnn train --task sine --model wormhole --grow wormholes` (`twnn_jax.wormhole_growth`): the wormhole model's
three layers of `HIDDEN` units get every wormhole three layers can have (6: `models.every_wormhole`) as slots
of seed 003's rule, on 1, 2 and 3 frequencies. For every seed one net grows from one wormhole (the model's
own, last layer to first) and fixed nets of `FIXED_COUNTS` wormholes (the first of that list; 0: no wormhole,
a feed-forward net) train beside it (the rule off, the same L1 step), all of one task in one compiled
function (`growth_wormhole.train_runs`).

Reported per run: final wormhole count, training loss (mean over the last 10% of steps), the evaluation
set's one-step MSE and the free-running RMSE, each as mean ± std over seeds.
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
    sine_judge,
    size_verdicts,
    train_part,
    train_runs,
)

HIDDEN = 16  # units per layer (three layers)
FIXED_COUNTS = (0, 1, 3, 6)  # wormholes, the first of models.every_wormhole(): none, last to first, +2, all
N_FREQS = (1, 2, 3)
FULL = {"steps": 4000, "every": 100, "seeds": 3}
QUICK = {"steps": 20, "every": 10, "seeds": 2}


def train_task(n_freqs: int, seeds: int, steps: int, every: int) -> dict:
    """Every run of one sine task for every seed: {run name: [per seed: curves and final figures]}."""
    cfg = TrainConfig(task="sine", n_freqs=n_freqs, model="wormhole", grow="wormholes", hidden=HIDDEN)
    return train_runs(cfg, FIXED_COUNTS, seeds, steps, every, sine_judge)


def run_part(quick: bool, seeds: int | None) -> dict:
    plan = part_plan(FULL, QUICK, quick, seeds)
    runs, summary = train_part({f"sine-{k}": functools.partial(train_task, k) for k in N_FREQS}, plan,
                               "growth, wormhole-count part")
    return {"plan": {**plan, "hidden": HIDDEN, "fixed_counts": list(FIXED_COUNTS), "n_freqs": list(N_FREQS),
                     "lr": TrainConfig.lr, "batch_size": TrainConfig.batch_size},
            "summary": summary, "verdicts": size_verdicts(summary, FIXED_COUNTS, "count_follows_difficulty",
                                                          "grown wormhole count"),
            "runs": runs}


def markdown(part: dict) -> list[str]:
    """The wormhole-count part's section of RESULTS.md."""
    p, s, v = part["plan"], part["summary"], part["verdicts"]
    return [
        "## Growth of the number of wormholes (sine, 1-3 frequencies)",
        "",
        provenance(part, "holes"),
        "",
        f"The sine task with 1, 2 and 3 frequencies and the wormhole model (three layers of {p['hidden']} units), "
        f"Adam lr {p['lr']:g}, batch {p['batch_size']}. Its slots are the 6 wormholes three layers can have "
        "(from each layer to itself and to every earlier one). `grown`: from one wormhole (last layer to first) by "
        "seed 003's rule on the wormholes (`twnn_jax/wormhole_growth.py`: a wormhole's score is the mean L1 norm of "
        "its weight's columns); `fixed-n`: the first n wormholes, the rule off, the same L1 step (`fixed-0`: no "
        "wormhole, a feed-forward net). Final size = active wormholes. Eval MSE: one-step prediction on the "
        "evaluation windows; free RMSE: the generated wave. Mean ± std over seeds.",
        "",
        *claims_table([
            ("the number of wormholes follows difficulty (mean grows with the frequencies, 1 and 3 apart by more "
             "than their std)", v["count_follows_difficulty"]),
            ("the grown net beats every fixed count (eval MSE)", v["grown_beats_fixed"])]),
        "",
        *runs_table(s, [("eval MSE", "eval_mse", ".2e"), ("free RMSE", "free_rmse", ".3f")]),
        "", added_deleted(part, "Wormholes"), "", "Figure: [growth_holes_size.html](growth_holes_size.html).", "",
    ]


def size_figure(part: dict) -> dict:
    return grown_size_figure(part, "The wormhole net's wormholes growing on sine: active wormholes over steps "
                             "(median over seeds)", "active wormholes")
