"""The paper's long-range claim, measured: the gated wormhole GRU against a GRU and an LSTM of the same parameter
count on the adding and copy tasks at several lengths, several seeds, one step budget for all; per-step forward and
backward iterations; the gradient of the loss with respect to the recurrent state against distance back in time.

>>> results = run_longrange("assets", quick=True)                    # doctest: +SKIP

Writes `out_dir/experiment/longrange/{RESULTS.md, results.json, state_gradients.html}`. Training goes through
the project's trainer (`train.trainer_for`, `measure.fit`); the state gradients through
`recurrent.state_gradients` on the evaluation set.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from ..checkpoint import dumps_strict, write_atomic
from ..models import build_model
from ..recurrent import cell_for, state_gradients
from ..runs import evaluate_run
from ..train import TrainConfig, build_task, live_controls, solve_settings, trainer_for
from .measure import fit, load, machine, mean_std, param_count
from .provenance import code_version

MODELS = ("wormhole_gru", "gru", "lstm")
ADDING_BASELINE = 1.0 / 6.0  # MSE of always answering 1.0
COPY_CHANCE = 1.0 / 8.0  # accuracy of guessing one of the 8 symbols


@dataclasses.dataclass(frozen=True)
class LongrangePlan:
    lengths: dict  # task -> lengths T; adding: the sequence length T; copy: the delay T (sequence T + 17)
    steps: dict  # task -> training steps (the same for every model and length)
    hidden: int  # the wormhole GRU's width; the baselines get the width that matches its parameter count
    batch_size: int
    lr: float
    seeds: int
    eval_every: int
    grad_samples: int  # evaluation samples for the state gradients (at the longest length only)
    tasks: tuple[str, ...] = ("adding", "copy")


# Budgets measured first with the GRU alone (hidden 16, batch 32, lr 5e-3, seed 0; evaluated every 250 steps):
# adding test MSE 0.0058 / 0.0066 / 0.0236 after 500 steps and 0.0028 / 0.0032 / 0.0050 after 750 at T = 50 / 100 /
# 200 (learned: below 0.0167). Copy (8 symbols to recall) at delay 50: chance (loss 2.08, accuracy 13%) for all of
# 1500 steps; at delay 10 with hidden 29: 49% after 1000 steps, 64% after 2000 (still rising); at delay 25: 52% after
# 2000. The GRU learns no copy length of the issue (50, 100, 200) in a budget that fits this machine, so the full run
# is the adding task; the quick run (tests) has both tasks.
FULL = LongrangePlan(lengths={"adding": (50, 100, 200)}, steps={"adding": 800}, hidden=16, batch_size=32, lr=5e-3,
                     seeds=3, eval_every=200, grad_samples=32, tasks=("adding",))
QUICK = LongrangePlan(lengths={"adding": (4,), "copy": (1,)}, steps={"adding": 3, "copy": 3}, hidden=4,
                      batch_size=4, lr=5e-3, seeds=2, eval_every=2, grad_samples=2)


def model_params(kind: str, task, hidden: int) -> int:
    """Parameter count of `kind` at width `hidden` for `task` (abstract evaluation: nothing is computed)."""
    shapes = jax.eval_shape(build_model(kind, task, hidden).init, jax.random.PRNGKey(0))
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)))


def matched_hidden(kind: str, task, target: int) -> int:
    """The width at which `kind` has the parameter count closest to `target`. The count grows with the width, so
    the two widths around `target` are found by doubling and bisection (a dozen counts, not a hundred)."""
    count = functools.partial(model_params, kind, task)
    below, above = 0, 1  # count(below) < target <= count(above); width 0 stands for "no model"
    while count(above) < target:
        below, above = above, 2 * above
    while above - below > 1:
        middle = (below + above) // 2
        below, above = (middle, above) if count(middle) < target else (below, middle)
    return min((h for h in (below, above) if h >= 1), key=lambda h: abs(count(h) - target))


def _learned(task: str, loss: float, metric: float) -> bool:
    """Adding: test MSE below a tenth of the trivial 1/6. Copy: at least 90% of the recalled symbols right."""
    return loss < 0.1 * ADDING_BASELINE if task == "adding" else metric >= 0.9


def _grad_profile(trainer, params, live, n: int) -> np.ndarray:
    """Mean over `n` evaluation samples of ||d loss / d state_t||, indexed by distance back from the last step."""
    cfg = trainer.config
    task = trainer.task
    cell = cell_for(cfg.model, task.n_in, task.n_out, cfg.hidden)
    x, y = (a[:n] for a in task.eval_set)
    norms = _jit_state_gradients(cell, task.loss, cfg)(params, x, y, live)
    return np.asarray(jnp.mean(norms, 0))[::-1]


_GRAD_FNS: dict = {}


def _jit_state_gradients(cell, loss, cfg):
    key = dataclasses.replace(cfg, seed=0)
    if key not in _GRAD_FNS:
        _GRAD_FNS[key] = jax.jit(lambda p, x, y, live: state_gradients(
            cell, p, x, y, loss, live.gate, solve_settings(cfg, live)))
    return _GRAD_FNS[key]


def _one(plan: LongrangePlan, task_name: str, length: int, kind: str, hidden: int, seed: int, grads: bool) -> dict:
    cfg = TrainConfig(task=task_name, model=kind, hidden=hidden, seq_len=length, lr=plan.lr,
                      batch_size=plan.batch_size, seed=seed)
    trainer, live = trainer_for(cfg), live_controls(cfg)
    state0 = trainer.init(seed)
    steps = plan.steps[task_name]
    t0 = time.perf_counter()
    jax.block_until_ready(trainer.run(state0, live, 0))
    compile_s = time.perf_counter() - t0
    at = tuple(range(plan.eval_every, steps + 1, plan.eval_every))
    test = lambda s: evaluate_run(trainer, s, live)[0]  # noqa: E731
    state, log = fit(trainer, state0, live, steps, checkpoint=lambda s: test(s)["eval_loss"], at=at,
                     desc=f"{task_name} T={length} {kind} seed {seed}")
    ev = test(state)
    _, out = trainer.run(state, live, 1)  # one more step, not kept: its forward and backward iterations
    last = jax.device_get(out["last"])
    total_len = int(trainer.task.eval_set[0].shape[1])
    row = {
        "task": task_name, "T": length, "seq_len": total_len, "model": kind, "hidden": hidden, "seed": seed,
        "params": param_count(state0.params), "steps": steps, "compile_s": compile_s,
        "train_s": log["train_s"], "ms_per_step_median": log["ms_per_step_median"],
        "test_loss": ev["eval_loss"], "test_metric": ev["eval_metric"],
        "learned": _learned(task_name, ev["eval_loss"], ev["eval_metric"]),
        "fwd_iters_per_time_step": ev["eval_fwd_iters_mean"] / total_len,
        "bwd_iters_per_time_step": float(np.mean(last["bwd_iters"])) / total_len,
        "eval_converged_frac": ev["eval_converged_frac"],
        "bwd_converged_frac": float(np.mean(last["bwd_converged"])),
        "test_loss_during_training": log["checkpoints"],
    }
    if grads:
        row["grad_init"] = _grad_profile(trainer, state0.params, live, plan.grad_samples)
        row["grad_trained"] = _grad_profile(trainer, state.params, live, plan.grad_samples)
    return row


def _summaries(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["task"], r["T"], r["model"]) for r in rows},
                  key=lambda k: (k[0], k[1], MODELS.index(k[2])))
    for task, length, kind in keys:
        rs = [r for r in rows if (r["task"], r["T"], r["model"]) == (task, length, kind)]
        loss, loss_std = mean_std([r["test_loss"] for r in rs])
        metric, metric_std = mean_std([r["test_metric"] for r in rs])
        out.append({
            "task": task, "T": length, "model": kind, "hidden": rs[0]["hidden"], "params": rs[0]["params"],
            "steps": rs[0]["steps"], "seeds": len(rs), "test_loss": loss, "test_loss_std": loss_std,
            "test_metric": metric, "test_metric_std": metric_std, "learned": sum(r["learned"] for r in rs),
            "per_seed_loss": [r["test_loss"] for r in rs],
            "fwd_iters_per_time_step": float(np.mean([r["fwd_iters_per_time_step"] for r in rs])),
            "bwd_iters_per_time_step": float(np.mean([r["bwd_iters_per_time_step"] for r in rs])),
            "ms_per_step_median": float(np.median([r["ms_per_step_median"] for r in rs])),
            "train_s": float(np.mean([r["train_s"] for r in rs])),
        })
    return out


def _gradients(rows: list[dict]) -> list[dict]:
    out = []
    for task in sorted({r["task"] for r in rows if "grad_init" in r}):
        for kind in MODELS:
            rs = [r for r in rows if r["task"] == task and r["model"] == kind and "grad_init" in r]
            if not rs:
                continue
            init = np.mean([r["grad_init"] for r in rs], 0)
            trained = np.mean([r["grad_trained"] for r in rs], 0)
            out.append({"task": task, "T": rs[0]["T"], "seq_len": rs[0]["seq_len"], "model": kind,
                        "seeds": len(rs), "init": init.tolist(), "trained": trained.tolist()})
    return out


def run_longrange(out_dir="assets", quick: bool = False, seeds: int | None = None) -> dict:
    """Train every (task, length, model, seed), measure, write `out_dir/experiment/longrange/`; returns results."""
    plan = QUICK if quick else FULL
    if seeds is not None:
        if int(seeds) < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        plan = dataclasses.replace(plan, seeds=int(seeds))
    folder = Path(out_dir) / "experiment" / "longrange"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    meta = {"quick": bool(quick), "plan": dataclasses.asdict(plan), "code": code_version(), "jax": jax.__version__,
            "backend": jax.default_backend(), "machine": machine(),
            "load_start": load()}
    widths = {}
    for task_name in plan.tasks:
        task = build_task(TrainConfig(task=task_name, seq_len=plan.lengths[task_name][0]))
        target = model_params("wormhole_gru", task, plan.hidden)
        widths[task_name] = {"wormhole_gru": plan.hidden, **{k: matched_hidden(k, task, target) for k in MODELS[1:]}}
    # longest first (the long-range comparison and its gradients matter most); the report is rewritten after every
    # (task, length) so that a run stopped early still leaves the lengths it finished
    jobs = [(task, length, kind, seed) for task in plan.tasks for length in sorted(plan.lengths[task], reverse=True)
            for kind in MODELS for seed in range(plan.seeds)]
    rows = []
    for n, (task, length, kind, seed) in enumerate(tqdm(jobs, desc="longrange", unit="run", dynamic_ncols=True)):
        rows.append(_one(plan, task, length, kind, widths[task][kind], seed, grads=length == max(plan.lengths[task])))
        if n + 1 == len(jobs) or jobs[n + 1][:2] != (task, length):
            results = _write(folder, {**meta, "complete": n + 1 == len(jobs), "wall_s": time.perf_counter() - t0,
                                      "load_end": load()}, widths, rows)
    return results


def _write(folder: Path, meta: dict, widths: dict, rows: list[dict]) -> dict:
    from .longrange_report import gradient_figure, longrange_markdown

    results = {"meta": meta, "widths": widths, "runs": [{k: v for k, v in r.items() if not k.startswith("grad_")}
                                                       for r in rows],
               "summary": _summaries(rows), "gradients": _gradients(rows)}
    text = dumps_strict(results, indent=1)
    results = json.loads(text)
    write_atomic(folder / "results.json", text.encode("utf-8"))
    _write_figure(gradient_figure(results), folder, "state_gradients")
    write_atomic(folder / "RESULTS.md", longrange_markdown(results).encode("utf-8"))
    return results


def _write_figure(fig: dict, folder: Path, name: str) -> None:
    import plotly.io as pio
    import plotly.offline

    script = plotly.offline.get_plotlyjs().encode("utf-8")
    shared = folder.parent / "plotly.min.js"  # the paper experiment's copy, when it is there: no second one
    if shared.is_file() and shared.read_bytes() == script:
        src = "../plotly.min.js"
    else:
        bundle, src = folder / "plotly.min.js", "plotly.min.js"
        if not bundle.is_file() or bundle.read_bytes() != script:
            write_atomic(bundle, script)
    write_atomic(folder / f"{name}.html", pio.to_html(fig, include_plotlyjs=src, full_html=True).encode())
