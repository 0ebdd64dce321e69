"""`twnn experiment growth`: seed 003's networks that grow, on the easy and hard bracket texts.

>>> results = run_growth("assets", quick=True)                                    # doctest: +SKIP

Runs, each for every seed, all for the same number of cycles (`twnn_jax.growth`, the author's constants):

- easy, hard: growing nets from one neuron on each text;
- switch: a growing net on easy -> hard -> easy, switching at 1/3 and 2/3 of the cycles (the paper's schedule);
- fixed-10, -27, -50, -100: fixed-size nets on the hard text (same L1 step, no add/delete).

the wormhole part (`growth_wormhole`): seed 003's rule on the hidden units of the sine task's wormhole net, on 1, 2
and 3 frequencies, against fixed sizes; the GRU part (`growth_gru`): the rule on the gated wormhole GRU's units,
on the adding problem at growing lengths T, against fixed sizes; and the wormhole-count part (`growth_holes`): the
rule on the number of wormholes of the wormhole model, on sine with 1, 2 and 3 frequencies, against fixed counts.
`part` runs one of the four.

Writes `out_dir/experiment/growth/`: `results.json` (every number, the commit), `RESULTS.md` (tables, and
each of the paper's claims held against ours in plain words) and HTML figures (neuron count over time,
median and inter-quartile range; final loss of variable against fixed sizes).
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from .. import growth
from ..checkpoint import dumps_strict, write_atomic
from ..experiment_names import GROWTH_PARTS
from .measure import load, machine
from .provenance import code_version

FIXED_SIZES = (10, 27, 50, 100)
FULL = {"cycles": 9_600, "every": 320, "seeds": 5}  # what fits ~15-20 min of the loaded 2-core machine
QUICK = {"cycles": 150, "every": 50, "seeds": 2}
PAPER = {"cycles": 100_000, "seeds": 20, "size_hard": 37, "size_easy": 14}


def run_specs(cycles: int) -> list[dict]:
    """The runs of the experiment (name, texts, switch cycles, growth on, starting size)."""
    third = cycles // 3
    specs = [
        {"name": "easy", "kinds": ("easy",), "switch_at": (), "grow": True, "size": 1},
        {"name": "hard", "kinds": ("hard",), "switch_at": (), "grow": True, "size": 1},
        {"name": "switch", "kinds": ("easy", "hard", "easy"), "switch_at": (third, 2 * third), "grow": True,
         "size": 1},
    ]
    specs += [{"name": f"fixed-{n}", "kinds": ("hard",), "switch_at": (), "grow": False, "size": n}
              for n in FIXED_SIZES]
    return specs


@functools.lru_cache(maxsize=4)
def _stream(kinds, switch_at):
    return growth.stream_of(*kinds, switch_at=switch_at)


def train_one(spec: dict, seed: int, cycles: int, every: int) -> dict:
    """One run: per block of `every` cycles its loss (nats per symbol), accuracy and size; the held-out loss."""
    stream = _stream(spec["kinds"], spec["switch_at"])
    state = growth.init_state(jax.random.PRNGKey(seed), spec["size"])
    state, rows = growth.run_cycles(state, stream, jnp.asarray(spec["grow"]), cycles, every)
    rows = jax.device_get(rows)
    last_kind = spec["kinds"][-1]
    eval_loss, eval_acc = jax.device_get(growth.evaluate(state.params, last_kind))
    return {"loss": rows["loss"].tolist(), "metric": rows["metric"].tolist(), "size": rows["size"].tolist(),
            "added": int(np.sum(rows["added"])), "deleted": int(np.sum(rows["deleted"])),
            "eval_loss": float(eval_loss), "eval_accuracy": float(eval_acc)}


def _quartiles(curves) -> dict:
    a = np.asarray(curves, dtype=float)
    q25, med, q75 = np.percentile(a, [25, 50, 75], axis=0)
    return {"median": med.tolist(), "q25": q25.tolist(), "q75": q75.tolist()}


def _tail_mean(values, frac=0.1) -> float:
    n = max(1, int(len(values) * frac))
    return float(np.mean(values[-n:]))


def summarize(runs: dict, cycles: int, every: int) -> dict:
    """Per run name: curves (median, IQR over seeds), final size and final loss per seed and their medians."""
    out = {}
    for name, per_seed in runs.items():
        final_size = [r["size"][-1] for r in per_seed]
        final_loss = [_tail_mean(r["loss"]) for r in per_seed]  # mean over the last 10% of cycles
        entry = {
            "size": _quartiles([r["size"] for r in per_seed]), "loss": _quartiles([r["loss"] for r in per_seed]),
            "final_size": final_size, "final_loss": final_loss,
            "final_size_median": float(np.median(final_size)), "final_loss_median": float(np.median(final_loss)),
            "eval_loss": [r["eval_loss"] for r in per_seed],
            "eval_loss_median": float(np.median([r["eval_loss"] for r in per_seed])),
            "added": [r["added"] for r in per_seed], "deleted": [r["deleted"] for r in per_seed],
        }
        if name == "switch":  # size at the end of each phase (the block just before the switch)
            third = cycles // 3
            ends = [third // every - 1, 2 * third // every - 1, cycles // every - 1]
            entry["phase_end_size"] = [[r["size"][i] for i in ends] for r in per_seed]
            entry["phase_end_size_median"] = [float(np.median([r["size"][i] for r in per_seed])) for i in ends]
        out[name] = entry
    return out


def verdicts(s: dict) -> dict:
    """Each of the paper's claims against ours: {claim: {"holds": bool, "text": one line}}."""
    easy, hard = s["easy"]["final_size_median"], s["hard"]["final_size_median"]
    var = s["hard"]["final_loss_median"]
    fixed = {n: s[f"fixed-{n}"]["final_loss_median"] for n in FIXED_SIZES}
    beaten = [n for n, v in fixed.items() if var < v]
    e1, h, e2 = s["switch"]["phase_end_size_median"]
    return {
        "size_follows_difficulty": {
            "holds": hard > easy,
            "text": f"final size, median over seeds: hard {hard:g}, easy {easy:g} neurons (paper, 100k cycles: "
                    f"~{PAPER['size_hard']} vs ~{PAPER['size_easy']})"},
        "variable_beats_fixed": {
            "holds": len(beaten) == len(fixed),
            "text": f"hard text, final loss (nats/symbol, median): variable {var:.4f} vs fixed "
                    + ", ".join(f"{n}: {v:.4f}" for n, v in fixed.items())
                    + f"; variable lower than {len(beaten)} of {len(fixed)} fixed sizes"},
        "grows_after_switch": {
            "holds": h > e1,
            "text": f"switch easy->hard->easy, size at the end of each phase (median): {e1:g} -> {h:g} -> {e2:g}"},
        "shrinks_after_switch_back": {
            "holds": e2 < h,
            "text": f"after the switch back to easy: {h:g} -> {e2:g} neurons (the v2 paper reports shedding; "
                    "its abstract says shrinking is not evident)"},
    }


# ---- figures and report --------------------------------------------------------------------------------
def _band(x, q, name, color):
    return [
        {"type": "scatter", "x": x + x[::-1], "y": q["q75"] + q["q25"][::-1], "fill": "toself", "line": {"width": 0},
         "fillcolor": color.replace("rgb", "rgba").replace(")", ",0.2)"), "showlegend": False, "hoverinfo": "skip"},
        {"type": "scatter", "x": x, "y": q["median"], "name": name, "line": {"color": color}},
    ]


COLORS = {"easy": "rgb(44,160,44)", "hard": "rgb(214,39,40)", "switch": "rgb(31,119,180)"}


def figures(results: dict) -> dict:
    s, every = results["summary"], results["meta"]["every"]
    n = len(s["easy"]["size"]["median"])
    x = [every * (i + 1) for i in range(n)]
    size_traces = []
    for name, color in COLORS.items():
        size_traces += _band(x, s[name]["size"], name, color)
    size = {"data": size_traces, "layout": {
        "title": {"text": "Neurons over cycles (median and inter-quartile range over seeds)"},
        "xaxis": {"title": {"text": "cycle (40 symbols each)"}}, "yaxis": {"title": {"text": "neurons"}}}}
    names = ["hard"] + [f"fixed-{k}" for k in FIXED_SIZES]
    loss = {"data": [{"type": "box", "name": "variable" if k == "hard" else k, "y": s[k]["final_loss"],
                      "boxpoints": "all"} for k in names], "layout": {
        "title": {"text": "Hard text: final loss (last 10% of cycles), variable size against fixed sizes"},
        "yaxis": {"title": {"text": "cross-entropy, nats per symbol"}}}}
    loss_curves = []
    for k in names:
        color = COLORS["hard"] if k == "hard" else f"rgb({60 + FIXED_SIZES.index(int(k[6:])) * 50},90,200)"
        loss_curves += _band(x, s[k]["loss"], "variable" if k == "hard" else k, color)
    curves = {"data": loss_curves, "layout": {"title": {"text": "Hard text: loss over cycles (median, IQR)"},
                                              "xaxis": {"title": {"text": "cycle"}},
                                              "yaxis": {"title": {"text": "nats per symbol"}}}}
    return {"growth_size": size, "growth_final_loss": loss, "growth_loss_curves": curves}


def write_figures(results: dict, folder: Path, figs: dict | None = None) -> dict:
    """Each figure of `figs` (default: the brackets part's) as `folder/NAME.html`."""
    import plotly.io as pio
    import plotly.offline

    bundle = folder.parent / "plotly.min.js"  # the one the paper experiment's figures load too
    script = plotly.offline.get_plotlyjs().encode("utf-8")
    if not bundle.is_file() or bundle.read_bytes() != script:
        write_atomic(bundle, script)
    written = {}
    for name, fig in (figures(results) if figs is None else figs).items():
        html = folder / f"{name}.html"
        write_atomic(html, pio.to_html(fig, include_plotlyjs="../plotly.min.js", full_html=True).encode("utf-8"))
        written[name] = {"html": html.name}
    return written


def results_markdown(results: dict) -> str:
    m, s, v = results["meta"], results["summary"], results["verdicts"]
    commit = (m["code"] or {}).get("commit") or "unknown"
    lines = [
        "# Networks that grow (seed 003) — results",
        "",
        f"Written by `twnn experiment growth{' --quick' if m['quick'] else ''}` from commit `{commit[:12]}`"
        f"{' (uncommitted changes)' if (m['code'] or {}).get('dirty') else ''}; {m['seeds']} seeds, "
        f"{m['cycles']:,} cycles of 40 symbols per run (the paper: {PAPER['cycles']:,} cycles, {PAPER['seeds']} "
        f"seeds), {m['wall_s']:.0f} s on {m['machine']} (load average {m['load_start']} at the start, "
        f"{m['load_end']} at the end).",
        "",
        "The method and constants are the author's (see `twnn_jax/growth.py`): tanh RNN from one neuron, "
        "RMSProp-like steps clipped to ±0.01, L1 step 1e-4 on Why and Whh, score threshold 0.05, keep 1 "
        "sub-threshold neuron, delete 0.05, add 0.01 (+1e-4). Loss: cross-entropy in nats per symbol "
        "(the paper plots a smoothed sum over 40 symbols, i.e. 40 times ours).",
        "",
        "## The paper's claims against ours",
        "",
        "| claim | holds here? | measured |",
        "|---|---|---|",
    ]
    names = {"size_follows_difficulty": "final size follows difficulty (hard > easy)",
             "variable_beats_fixed": "variable size beats every fixed size (hard)",
             "grows_after_switch": "grows after the switch easy -> hard",
             "shrinks_after_switch_back": "sheds neurons after the switch back to easy"}
    for key, label in names.items():
        lines.append(f"| {label} | {'yes' if v[key]['holds'] else 'no'} | {v[key]['text']} |")
    lines += ["", "## Runs", "", "| run | final size (median, per seed) | final loss (median) | held-out loss "
              "(median) | neurons added / deleted (median) |", "|---|---|---|---|---|"]
    for name, e in s.items():
        lines.append(f"| {name} | {e['final_size_median']:g} ({', '.join(str(x) for x in e['final_size'])}) | "
                     f"{e['final_loss_median']:.4f} | {e['eval_loss_median']:.4f} | "
                     f"{np.median(e['added']):g} / {np.median(e['deleted']):g} |")
    if "switch" in s:
        lines += ["", "Switch run, size at the end of each phase (per seed): "
                  + "; ".join("→".join(str(x) for x in seed) for seed in s["switch"]["phase_end_size"]) + "."]
    lines += ["", "Figures: " + ", ".join(f"[{k}]({f['html']})" for k, f in results["figures"].items()) + ".",
              "", f"Cycles here are {m['cycles'] / PAPER['cycles']:.1%} of the paper's; a difference from its "
              "numbers may be the shorter training, not the method.", ""]
    return "\n".join(lines)


PARTS = tuple(GROWTH_PARTS)  # brackets first: its results are results.json's top level


def run_growth(out_dir="assets", quick: bool = False, seeds: int | None = None, part: str | None = None) -> dict:
    """Train every run of the experiment's parts (`part`: one of PARTS; None: all) for every seed; write
    `out_dir/experiment/growth/`; returns the results dict.

    The brackets part's results are the top level of results.json (its `meta` is what `--check` reads); the
    others' (`growth_wormhole`, `growth_gru`, `growth_holes`) under their keys "wormhole", "gru" and "holes", each
    with their own `meta`. Running one part keeps the others' results from an earlier run in the same folder."""
    if part is not None and part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    folder = Path(out_dir) / "experiment" / "growth"
    folder.mkdir(parents=True, exist_ok=True)
    earlier = folder / "results.json"
    results = json.loads(earlier.read_text()) if part is not None and earlier.is_file() else {}
    if part in (None, "brackets"):
        results = {**_run_brackets(folder, quick, seeds), **{k: results[k] for k in PARTS[1:] if k in results}}
    for key in PARTS[1:]:
        if part in (None, key):
            results[key] = _run_part(folder, quick, seeds, key)
    text = dumps_strict(results, indent=1)
    results = json.loads(text)
    write_atomic(folder / "results.json", text.encode("utf-8"))
    write_atomic(folder / "RESULTS.md", full_markdown(results).encode("utf-8"))
    return results


def full_markdown(results: dict) -> str:
    """RESULTS.md: the brackets part, then the wormhole, GRU and wormhole-count parts (each when present)."""
    text = results_markdown(results) if "summary" in results else "# Networks that grow (seed 003) — results\n"
    for key in PARTS[1:]:
        if key in results:
            text = text.rstrip("\n") + "\n\n" + "\n".join(_part_module(key).markdown(results[key]))
    return text


def _part_module(key: str):
    from . import growth_gru, growth_holes, growth_wormhole

    return {"wormhole": growth_wormhole, "gru": growth_gru, "holes": growth_holes}[key]


def _meta(quick: bool) -> dict:
    return {"quick": bool(quick), "code": code_version(), "jax": jax.__version__, "backend": jax.default_backend(),
            "machine": machine(), "load_start": load()}


def _run_part(folder: Path, quick: bool, seeds: int | None, key: str) -> dict:
    """The wormhole, GRU or wormhole-count part (`key`), with its meta and its size figure."""
    module = _part_module(key)
    t0 = time.perf_counter()
    meta = _meta(quick)
    part = module.run_part(quick, seeds)
    meta.update(wall_s=time.perf_counter() - t0, load_end=load())
    part["figures"] = write_figures({}, folder, {f"growth_{key}_size": module.size_figure(part)})
    return {"meta": meta, **part}


def _run_brackets(folder: Path, quick: bool, seeds: int | None) -> dict:
    plan = dict(QUICK if quick else FULL)
    if seeds is not None:
        if int(seeds) < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        plan["seeds"] = int(seeds)
    cycles, every, n_seeds = plan["cycles"], plan["every"], plan["seeds"]
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    meta = {"quick": bool(quick), "seeds": n_seeds, "cycles": cycles, "every": every, "code": code_version(),
            "jax": jax.__version__, "backend": jax.default_backend(),
            "machine": machine(), "load_start": load()}
    specs = run_specs(cycles)
    runs = {spec["name"]: [] for spec in specs}
    jobs = [(spec, seed) for seed in range(n_seeds) for spec in specs]
    for spec, seed in tqdm(jobs, desc="growth experiment", unit="run", dynamic_ncols=True):
        runs[spec["name"]].append(train_one(spec, seed, cycles, every))
    summary = summarize(runs, cycles, every)
    results = {"meta": meta, "specs": specs, "summary": summary, "verdicts": verdicts(summary), "runs": runs}
    results["figures"] = write_figures(results, folder)
    meta["wall_s"] = time.perf_counter() - t0
    meta["load_end"] = load()
    return results
