"""The wormhole part of `twnn experiment growth`: does a growing wormhole net's size follow task difficulty?

The sine task's net (`small`: a tanh hidden layer, a sigmoid output fed back through a wormhole) with
seed 003's rule on its hidden units (`twnn_jax.wormhole_growth`), on sine mixtures of 1, 2 and 3
frequencies. For every seed, one net grows from one unit (up to `MAX_UNITS`) and fixed nets of
`FIXED_SIZES` units train beside it: the same slots with that many units active and the rule off (the
same L1 step), so all runs of one task share one compiled function (vmapped). Everything else is
`twnn train --task sine --grow on`'s default (Adam, lr 1e-3, batch 64, window 16).

Reported per run: final size, training loss (mean over the last 10% of steps), the evaluation set's
one-step MSE and the free-running RMSE (the task's judge), each as mean ± std over seeds.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from .. import wormhole_growth as wg
from ..train import TrainConfig, build_trainer, live_controls

MAX_UNITS = 32  # slots of the growing layer (`hidden`)
FIXED_SIZES = (2, 4, 8, 16, 32)
N_FREQS = (1, 2, 3)
FULL = {"steps": 8_000, "every": 200, "seeds": 4}  # ~10 min of the loaded 2-core machine
QUICK = {"steps": 40, "every": 20, "seeds": 2}


CURVES = ("loss", "size", "added", "deleted")  # what `train_runs` records of every run besides the judge's figures


def train_runs(cfg: TrainConfig, fixed_sizes, seeds: int, steps: int, every: int, judge) -> dict[str, list[dict]]:
    """Every run of one growing config for every seed, vmapped: a net grown from one unit per growing layer
    ("grown") and fixed nets of `fixed_sizes` units per growing layer ("fixed-N", the rule off), all in one compiled
    function. Returns, per run name and then per seed: the loss (mean per block of `every` steps), size and units
    added / deleted (`CURVES`), and the final figures `judge` measures ((trainer, live) -> params -> {figure name:
    value})."""
    names, sizes = ["grown"] + [f"fixed-{n}" for n in fixed_sizes], (1, *fixed_sizes)
    trainer = build_trainer(cfg, rule=False)  # the rule is applied here, grown and fixed runs side by side
    live = live_controls(cfg)
    step = wg.growing_step(trainer)
    seed_of = jnp.asarray([s for s in range(seeds) for _ in sizes], jnp.int32)
    size0 = jnp.asarray([n for _ in range(seeds) for n in sizes], jnp.int32)
    grow = jnp.asarray([k == 0 for _ in range(seeds) for k in range(len(sizes))])
    states = jax.jit(jax.vmap(lambda s, n: wg.init_growing(trainer, s, n)))(seed_of, size0)

    def block(state, grow):
        state, m = jax.lax.scan(lambda st, _: step(st, live, grow), state, None, length=every)
        return state, {"loss": jnp.mean(m["loss"]), "size": m["size"][-1],
                       "added": jnp.sum(m["added"]), "deleted": jnp.sum(m["deleted"])}

    @jax.jit
    def train_all(states, grow):
        return jax.lax.scan(lambda st, _: jax.vmap(block)(st, grow), states, None, length=steps // every)

    states, rows = jax.device_get(train_all(states, grow))
    finals = {name: np.asarray(v) for name, v in
              jax.device_get(jax.jit(jax.vmap(judge(trainer, live)))(states.params)).items()}
    out = {name: [] for name in names}
    for r in range(len(sizes) * seeds):
        out[names[r % len(sizes)]].append({
            "loss": rows["loss"][:, r].tolist(), "size": rows["size"][:, r].tolist(),
            "added": int(np.sum(rows["added"][:, r])), "deleted": int(np.sum(rows["deleted"][:, r])),
            **{name: float(v[r]) for name, v in finals.items()}})
    return out


def sine_judge(trainer, live):
    """Params -> the final figures of a sine run: one-step eval MSE and free-running RMSE."""
    return lambda p: {"eval_mse": trainer.evaluate(p, live)["loss"], "free_rmse": trainer.generate(p, live)["rmse"]}


def train_task(n_freqs: int, seeds: int, steps: int, every: int) -> dict:
    """Every run of one sine task for every seed: {run name: [per seed: curves and final figures]}."""
    cfg = TrainConfig(task="sine", n_freqs=n_freqs, hidden=MAX_UNITS)
    return train_runs(cfg, FIXED_SIZES, seeds, steps, every, sine_judge)


def _stats(values) -> dict:
    a = np.asarray(values, dtype=float)
    return {"mean": float(np.mean(a)), "std": float(np.std(a)), "values": a.tolist()}


def summarize(runs: dict) -> dict:
    """Per task and run name: final size, tail training loss and the judge's figures (mean, std, per seed)."""
    out = {}
    for task, by_name in runs.items():
        out[task] = {}
        for name, per_seed in by_name.items():
            figures = [k for k in per_seed[0] if k not in CURVES]  # the judge's, in its order
            tail = [float(np.mean(r["loss"][-max(1, len(r["loss"]) // 10):])) for r in per_seed]
            out[task][name] = {"final_size": _stats([r["size"][-1] for r in per_seed]), "train_loss": _stats(tail),
                               **{f: _stats([r[f] for r in per_seed]) for f in figures},
                               "size_curve_median": np.median([r["size"] for r in per_seed], 0).tolist()}
    return out


def size_verdicts(s: dict, fixed_sizes, follows: str, what: str) -> dict:
    """The verdicts every growth part judges, from its `summarize`d runs (tasks in order of difficulty):
    `follows` (the grown size's mean grows from task to task, and the first and last tasks' mean ± std do not
    overlap; `what` names the size in the text) and "grown_beats_fixed" (a lower mean eval MSE than every fixed
    size on every task)."""
    tasks = list(s)
    grown = [s[t]["grown"]["final_size"] for t in tasks]
    means = [g["mean"] for g in grown]
    apart = grown[-1]["mean"] - grown[-1]["std"] > grown[0]["mean"] + grown[0]["std"]
    beaten = {t: [n for n in fixed_sizes if s[t]["grown"]["eval_mse"]["mean"] < s[t][f"fixed-{n}"]["eval_mse"]["mean"]]
              for t in tasks}
    text = ", ".join(f"{t}: {g['mean']:.1f} ± {g['std']:.1f}" for t, g in zip(tasks, grown))
    return {
        follows: {"holds": bool(all(a < b for a, b in zip(means, means[1:])) and apart),
                  "text": f"{what}, mean ± std over seeds: {text}"},
        "grown_beats_fixed": {"holds": all(len(b) == len(fixed_sizes) for b in beaten.values()),
                              "text": "; ".join(f"{t}: lower eval MSE than fixed "
                                                + (", ".join(map(str, b)) or "none") for t, b in beaten.items())},
    }


def part_plan(full: dict, quick_plan: dict, quick: bool, seeds: int | None) -> dict:
    """A part's plan: `quick_plan` or `full`, with `seeds` seeds when given (>= 1)."""
    plan = dict(quick_plan if quick else full)
    if seeds is not None:
        if int(seeds) < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        plan["seeds"] = int(seeds)
    return plan


def train_part(tasks: dict, plan: dict, desc: str) -> tuple[dict, dict]:
    """Train every task of a part ({task name: train(seeds, steps, every) -> runs}) with a progress bar; returns
    the runs by task and their `summarize`d figures."""
    runs = {name: train(plan["seeds"], plan["steps"], plan["every"])
            for name, train in tqdm(tasks.items(), desc=desc, unit="task", dynamic_ncols=True)}
    return runs, summarize(runs)


def run_part(quick: bool, seeds: int | None) -> dict:
    plan = part_plan(FULL, QUICK, quick, seeds)
    runs, summary = train_part({f"sine-{k}": functools.partial(train_task, k) for k in N_FREQS}, plan,
                               "growth, wormhole part")
    return {"plan": {**plan, "max_units": MAX_UNITS, "fixed_sizes": list(FIXED_SIZES), "n_freqs": list(N_FREQS),
                     "lr": TrainConfig.lr, "batch_size": TrainConfig.batch_size},
            "summary": summary, "verdicts": size_verdicts(summary, FIXED_SIZES, "size_follows_difficulty",
                                                          "grown size"),
            "runs": runs}


def _pm(e, key, fmt):
    return f"{format(e[key]['mean'], fmt)} ± {format(e[key]['std'], fmt)}"


def provenance(part: dict, name: str) -> str:
    """The line that says which command and commit wrote a part's section, with its budget and the load."""
    p, m = part["plan"], part["meta"]
    code = m.get("code") or {}
    return (f"Written by `twnn experiment growth --part {name}{' --quick' if m['quick'] else ''}` from commit "
            f"`{(code.get('commit') or 'unknown')[:12]}`{' (uncommitted changes)' if code.get('dirty') else ''}; "
            f"{p['seeds']} seeds, {p['steps']:,} steps per run, {m['wall_s']:.0f} s (load average {m['load_start']} "
            f"at the start, {m['load_end']} at the end).")


def claims_table(claims: list[tuple[str, dict]]) -> list[str]:
    """Markdown rows: each claim, whether its verdict holds, and what was measured."""
    return ["| claim | holds here? | measured |", "|---|---|---|",
            *(f"| {claim} | {'yes' if v['holds'] else 'no'} | {v['text']} |" for claim, v in claims)]


def runs_table(summary: dict, figures: list[tuple[str, str, str]]) -> list[str]:
    """Markdown rows: per task and run, final size, train loss and each (header, figure, format) as mean ± std."""
    lines = ["| task | run | final size | train loss | " + " | ".join(h for h, _, _ in figures) + " |",
             "|---|---|---|---|" + "---|" * len(figures)]
    for task, by_name in summary.items():
        for name, e in by_name.items():
            lines.append(f"| {task} | {name} | {_pm(e, 'final_size', '.1f')} | {_pm(e, 'train_loss', '.2e')} | "
                         + " | ".join(_pm(e, f, fmt) for _, f, fmt in figures) + " |")
    return lines


def added_deleted(part: dict, what: str = "Units") -> str:
    """'Units added / deleted per seed: ...' for a part's grown runs (`what`: what grows)."""
    return f"{what} added / deleted per seed: " + "; ".join(
        f"{task} " + ", ".join(f"{r['added']}/{r['deleted']}" for r in part["runs"][task]["grown"])
        for task in part["summary"]) + "."


def markdown(part: dict) -> list[str]:
    """The wormhole part's section of RESULTS.md."""
    p, s, v = part["plan"], part["summary"], part["verdicts"]
    lines = [
        "## Growth for wormhole networks (sine, 1-3 frequencies)",
        "",
        provenance(part, "wormhole"),
        "",
        f"Sine's `small` net (tanh hidden layer of up to {p['max_units']} units, sigmoid output fed back through a "
        f"wormhole), Adam lr {p['lr']:g}, batch {p['batch_size']}. `grown`: from one hidden unit by seed 003's rule "
        "(`twnn_jax/wormhole_growth.py`); `fixed-n`: n units, the rule off, the same L1 step. Eval MSE: one-step "
        "prediction on the evaluation set; free RMSE: 250 steps of free-running generation. Mean ± std over seeds.",
        "",
        *claims_table([
            ("final size follows difficulty (mean 1 < 2 < 3 frequencies, 1 and 3 apart by more than their std)",
             v["size_follows_difficulty"]),
            ("the grown net beats every fixed size (eval MSE)", v["grown_beats_fixed"])]),
        "",
        *runs_table(s, [("eval MSE", "eval_mse", ".2e"), ("free-running RMSE", "free_rmse", ".3f")]),
    ]
    quarters = [len(next(iter(s.values()))["grown"]["size_curve_median"]) * q // 4 - 1 for q in (1, 2, 3, 4)]
    lines += ["", "Grown size over training (median over seeds) at " + ", ".join(
        f"{(i + 1) * p['every']:,}" for i in quarters) + " steps: " + "; ".join(
        f"{task} " + " → ".join(f"{by_name['grown']['size_curve_median'][i]:g}" for i in quarters)
        for task, by_name in s.items()) + ". " + added_deleted(part)]
    lines += ["", "Figure: [growth_wormhole_size.html](growth_wormhole_size.html)."]
    lines += ["", "Grown size per seed: " + "; ".join(
        f"{task} " + ", ".join(str(int(x)) for x in by_name["grown"]["final_size"]["values"])
        for task, by_name in s.items()) + ".", ""]
    return lines


def grown_size_figure(part: dict, title: str, y_title: str) -> dict:
    """Median size of the grown net over training steps, one line per task (a plain Plotly dict)."""
    every = part["plan"]["every"]
    data = [{"type": "scatter", "x": [every * (i + 1) for i in range(len(by_name["grown"]["size_curve_median"]))],
             "y": by_name["grown"]["size_curve_median"], "name": task} for task, by_name in part["summary"].items()]
    return {"data": data, "layout": {"title": {"text": title}, "xaxis": {"title": {"text": "training step"}},
                                     "yaxis": {"title": {"text": y_title}}}}


def size_figure(part: dict) -> dict:
    return grown_size_figure(part, "Sine's wormhole net growing: hidden units over steps (median over seeds)",
                             "active hidden units")
