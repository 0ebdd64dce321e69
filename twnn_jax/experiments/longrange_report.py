"""The long-range experiment's report: Markdown tables with plain-words verdicts, and the state-gradient figure
(pure functions of the results dict that `run_longrange` writes)."""

from __future__ import annotations

import numpy as np

NAMES = {"wormhole_gru": "wormhole GRU", "gru": "GRU", "lstm": "LSTM"}
DISTANCES = (0, 1, 5, 10, 25, 50, 100, 150, 200)


def _pm(mean, std, digits=4):
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def _spread(a: dict, b: dict) -> str:
    """a against b on test loss: clearly lower, clearly higher, or within the seed spread (difference below the
    larger std, or one seed)."""
    diff = a["test_loss"] - b["test_loss"]
    stds = [s for s in (a["test_loss_std"], b["test_loss_std"]) if s is not None]
    if not stds or abs(diff) <= max(stds):
        return "within the seed spread of"
    return "lower than" if diff < 0 else "higher than"


def _ratio(profile, d):
    return profile[d] / profile[0] if d < len(profile) and profile[0] > 0 else None


def longrange_markdown(results: dict) -> str:
    meta, plan = results["meta"], results["meta"]["plan"]
    code = meta["code"]
    commit = (code.get("commit") or "unknown")[:12]
    tree = {True: "uncommitted changes", False: "clean tree", None: "tree state unknown"}[code.get("dirty")]
    lines = [
        "# Long-range dependencies: the gated wormhole GRU against a GRU and an LSTM",
        "",
        f"Written by `twnn experiment longrange` (`twnn_jax.experiments.run_longrange(quick={meta['quick']})`) in "
        f"{meta['wall_s']:.0f} s on {meta['machine']} (JAX {meta['jax']}, backend {meta['backend']}). Load average "
        f"at start {meta['load_start']}, at end {meta['load_end']}: timings are wall-clock on a shared machine, "
        "compare them within this run only. Raw numbers: `results.json`.",
        "",
        *([] if meta.get("complete", True) else [
            "**Incomplete:** the run stopped before every (task, length) was done; the tables hold the finished ones.",
            ""]),
        f"**Code:** commit `{commit}` ({tree}). `twnn experiment longrange --check` says whether a file in "
        "`twnn_jax/` changed since.",
        "",
        "**Setup.** Models: the gated wormhole GRU (`wormhole_gru`, `twnn_jax/recurrent.py`: per time step two GRU "
        "layers whose state is the fixed point of a sweep of the stack, a gated wormhole from the top layer into "
        "the bottom layer's candidate; gate bias -2, tol 1e-3, max_iter 300, implicit gradients), the GRU "
        "(`gru`) and an LSTM (`lstm`), the baselines' widths chosen to match the wormhole GRU's parameter "
        f"count. Every run: Adam lr {plan['lr']}, batch {plan['batch_size']}, gradient clipping 1.0, the same "
        f"number of steps for every model ({', '.join(f'{k} {v}' for k, v in plan['steps'].items())}), "
        f"{plan['seeds']} seeds (init and batch order), evaluated on a fixed set of 256 sequences at the last "
        "step (no selection). Adding: the sum of the two marked values of T random values, MSE (always "
        "answering 1.0 gives 1/6 = 0.167); 'learned' = test MSE below 0.0167. Copy: 8 symbols of 8 kinds, T "
        "blanks (the delay), a delimiter, then the 8 symbols to recall (a sequence of T + 17 steps); cross-entropy "
        "on the recall steps (chance ln 8 = 2.08) and accuracy per symbol (chance 12.5%); 'learned' = accuracy "
        ">= 90%. Iterations are per time step: the forward ones on the evaluation set, the backward (adjoint) "
        "ones from one training step after training.",
        "",
        "## 1. Test loss and accuracy",
        "",
        "| task | T | model | hidden | params | steps | test loss (mean ± std) | per seed | accuracy % | learned "
        "(seeds) | fwd iters / time step | bwd iters / time step | ms/step (median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in results["summary"]:
        metric = _pm(100 * s["test_metric"], None if s["test_metric_std"] is None else 100 * s["test_metric_std"], 1)
        lines.append(
            f"| {s['task']} | {s['T']} | {NAMES[s['model']]} | {s['hidden']} | {s['params']} | {s['steps']} | "
            f"{_pm(s['test_loss'], s['test_loss_std'])} | {', '.join(f'{v:.4f}' for v in s['per_seed_loss'])} | "
            f"{metric} | {s['learned']}/{s['seeds']} | {s['fwd_iters_per_time_step']:.2f} | "
            f"{s['bwd_iters_per_time_step']:.2f} | {s['ms_per_step_median']:.1f} |")
    lines += ["", "**In words.**"]
    by = {(s["task"], s["T"], s["model"]): s for s in results["summary"]}
    for task, length in sorted({(s["task"], s["T"]) for s in results["summary"]}):
        w, g, lstm = (by.get((task, length, k)) for k in ("wormhole_gru", "gru", "lstm"))
        if not (w and g and lstm):
            continue
        gru_note = (f"the GRU learned it in {g['learned']}/{g['seeds']} seeds" if g["learned"]
                    else "the GRU did not learn it in this budget, so this length says little")
        lines.append(
            f"- {task}, T={length}: wormhole GRU {w['test_loss']:.4f}, GRU {g['test_loss']:.4f}, LSTM "
            f"{lstm['test_loss']:.4f} (learned {w['learned']}/{g['learned']}/{lstm['learned']} of {w['seeds']} "
            f"seeds); the wormhole GRU's loss is {_spread(w, g)} the GRU's and {_spread(w, lstm)} the LSTM's; "
            f"{gru_note}. Cost: {w['fwd_iters_per_time_step']:.1f} forward and {w['bwd_iters_per_time_step']:.1f} "
            f"backward iterations per time step, {w['ms_per_step_median'] / g['ms_per_step_median']:.1f}x the GRU's "
            "time per training step.")
    if "copy" not in plan["tasks"]:
        lines += ["", "**Copy is not in this run.** Measured first with the GRU alone (`python "
                  "benchmarks/longrange_budget.py --task copy --T 50 --steps 1500`, hidden 16, batch 32, lr 5e-3, "
                  "seed 0): at delay 50 it stays at chance (loss 2.08, accuracy 12-14%) for all 1500 steps; at delay "
                  "10 (hidden 29) it reaches 49% after 1000 steps and 64% after 2000, at delay 25 52% after 2000, "
                  "still rising. No copy length of the issue (50, 100, 200) is learned by the GRU in a budget that "
                  "fits this machine, so there is no fair copy comparison to report; the quick run (tests) "
                  "exercises the copy task."]
    lines += [
        "",
        "## 2. Gradient with respect to the recurrent state, against distance back in time",
        "",
        "||d loss / d state_t||, mean over evaluation sequences and seeds, at the longest length, at "
        "initialisation and after training; at distance d, the state that the step d steps before the last one "
        "reads (distance 0: the state the last step reads). The state is everything carried "
        "to the next step: the wormhole GRU's two layers, the GRU's h, the LSTM's (h, c). The vanishing-gradient "
        "claim predicts that the wormhole GRU keeps more of the gradient far back (a larger ratio to distance 0).",
        "",
    ]
    for which in ("init", "trained"):
        head = "| task | steps | model | " + " | ".join(f"d={d}" for d in DISTANCES) + " | ratio d=max/d=0 |"
        lines += [f"**{'At initialisation' if which == 'init' else 'After training'}** (norm at distance d)", "",
                  head, "|" + "---|" * (len(DISTANCES) + 4)]
        for grad in results["gradients"]:
            p = grad[which]
            cells = [f"{p[d]:.2e}" if d < len(p) else "" for d in DISTANCES]
            r = _ratio(p, len(p) - 1)
            lines.append(f"| {grad['task']} | {grad['seq_len']} | {NAMES[grad['model']]} | " + " | ".join(cells)
                         + f" | {'' if r is None else f'{r:.2e}'} |")
        lines.append("")
    lines += ["**In words.**"]
    for task in sorted({g["task"] for g in results["gradients"]}):
        gs = {g["model"]: g for g in results["gradients"] if g["task"] == task}
        if set(gs) != set(NAMES):
            continue
        for which in ("init", "trained"):
            ratios = {k: _ratio(gs[k][which], len(gs[k][which]) - 1) for k in NAMES}
            if any(v is None for v in ratios.values()):
                continue
            best = max(ratios, key=ratios.get)
            verdict = ("The wormhole GRU keeps the most: the claim holds here." if best == "wormhole_gru" else
                       f"The {NAMES[best]} keeps the most, not the wormhole GRU: the claim does not hold here.")
            lines.append(
                f"- {task}, {'at initialisation' if which == 'init' else 'after training'} "
                f"({gs['gru']['seq_len']} steps): the gradient at the first step relative to the last is "
                + ", ".join(f"{NAMES[k]} {v:.1e}" for k, v in ratios.items()) + f". {verdict}")
    lines += ["", "Figure: `state_gradients.html` (log scale)."]
    return "\n".join(lines) + "\n"


def gradient_figure(results: dict) -> dict:
    """Plotly figure (a plain dict): state-gradient norm against distance back, one line per model, task and stage."""
    data = []
    colors = {"wormhole_gru": "#d62728", "gru": "#1f77b4", "lstm": "#2ca02c"}
    for grad in results["gradients"]:
        for which, dash in (("init", "dot"), ("trained", "solid")):
            p = np.asarray(grad[which], float)
            data.append({"type": "scatter", "mode": "lines", "x": list(range(len(p))), "y": p.tolist(),
                         "name": f"{grad['task']} {NAMES[grad['model']]} ({which})",
                         "line": {"color": colors[grad["model"]], "dash": dash},
                         "xaxis": "x" if grad["task"] == "adding" else "x2",
                         "yaxis": "y" if grad["task"] == "adding" else "y2"})
    return {"data": data, "layout": {
        "title": {"text": "||d loss / d state_t|| against distance back in time (mean over sequences and seeds)"},
        "grid": {"rows": 1, "columns": 2, "pattern": "independent"},
        "xaxis": {"title": {"text": "adding: distance back (steps)"}},
        "xaxis2": {"title": {"text": "copy: distance back (steps)"}},
        "yaxis": {"type": "log"}, "yaxis2": {"type": "log"}, "height": 480}}
