"""Seed 002 (Muir 2018): feed-forward approximations of fixed points, and warm starts. `twnn experiment surrogate`.

Writes `out_dir/experiment/surrogate/{RESULTS.md, results.json}`:

1. `wta`: the paper's setting. A soft winner-take-all net of rectified units (`twnn_jax.wta`, constants ours),
   noisy bump inputs, fixed points by `fix`; a two-layer surrogate trained on (input, fixed point) pairs.
   Held-out relative error, same winner %, noise rejection (output SNR against input SNR, both nets), the
   recurrent net's settling iterations (distribution, inputs that never settle) against one pass, time per batch.
2. `warm_training`: digits `resnet_fp`, several seeds, trained side by side from zeros and with a surrogate
   alongside giving `z0` (`--warm-start surrogate`): forward/backward iterations, ms per step (chunks of
   steps alternated between the two, so both see the same machine load), accuracy after the same steps.
3. `offline`: the seed-0 net trained from zeros; a surrogate fitted to it afterwards (`twnn_jax.warm.study`):
   its error, accuracy with it in place of the solve, times, and the forward iterations saved per sample.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .. import surrogate, warm, wta
from ..checkpoint import dumps_strict, write_atomic
from ..runs import evaluate_run
from ..train import TrainConfig, live_controls, summarize_run, trainer_for
from .measure import load, machine
from .provenance import code_version


@dataclasses.dataclass(frozen=True)
class SurrogatePlan:
    wta_train: int = 4000
    wta_test: int = 1000
    wta_hidden: int = 128
    wta_steps: int = 3000
    train_steps: int = 600  # per seed and arm
    chunk: int = 50  # steps per timed chunk (arms alternate chunk by chunk)
    hidden: int = 32  # the digits net's width (the project's default)
    surrogate_hidden: int = 64
    offline_steps: int = 2000
    offline_pairs: int = 4096
    repeats: int = 10


FULL = SurrogatePlan()
QUICK = SurrogatePlan(wta_train=256, wta_test=64, wta_hidden=16, wta_steps=100, train_steps=20, chunk=10,
                      hidden=8, surrogate_hidden=8, offline_steps=50, offline_pairs=128, repeats=1)


def part_wta(plan: SurrogatePlan) -> dict:
    cfg = wta.WTAConfig()
    solve = jax.jit(jax.vmap(lambda i: wta.fixed_point(cfg, i)))
    x, _, _ = wta.noisy_inputs(cfg, jax.random.PRNGKey(0), plan.wta_train)
    x_test, clean, _ = wta.noisy_inputs(cfg, jax.random.PRNGKey(1), plan.wta_test)
    z, _ = solve(x)
    z_test, st = solve(x_test)
    z_clean, _ = solve(clean)
    fit = surrogate.fit(x, z, hidden=plan.wta_hidden, steps=plan.wta_steps, output="relu", x_test=x_test,
                        z_test=z_test, every=max(1, plan.wta_steps // 10))
    ff = jax.jit(lambda p, x: surrogate.predict(p, x, "relu"))
    pred, pred_clean = ff(fit.params, x_test), ff(fit.params, clean)
    n = cfg.n
    rel = surrogate.relative_error(pred, z_test)
    ratio_in, ratio_out, _ = wta.competition(cfg)
    sur_ratio = None
    bank = wta.pattern_bank(cfg)
    two = jnp.asarray(bank[0] + 0.8 * bank[cfg.n_patterns // 2])[None]
    p_two = np.asarray(ff(fit.params, two))[0]
    c0, c1 = int(np.argmax(bank[0])), int(np.argmax(bank[cfg.n_patterns // 2]))
    sur_ratio = float(p_two[c1] / p_two[c0]) if p_two[c0] > 0 else None
    iters = np.asarray(st.iters)
    return {
        "config": cfg._asdict(), "n_train": plan.wta_train, "n_test": plan.wta_test, "hidden": plan.wta_hidden,
        "steps": plan.wta_steps, "held_out_error_during_fit": fit.held_out.tolist(),
        "relative_error_mean": float(jnp.mean(rel)), "relative_error_median": float(jnp.median(rel)),
        "relative_error_p90": float(jnp.percentile(rel, 90)),
        "same_winner_pct": 100 * float(jnp.mean(wta.winners(pred, cfg) == wta.winners(z_test, cfg))),
        "recurrent_winner_is_pattern_pct": 100 * float(jnp.mean(wta.winners(z_test, cfg) == jnp.argmax(clean, -1))),
        "surrogate_winner_is_pattern_pct": 100 * float(jnp.mean(wta.winners(pred, cfg) == jnp.argmax(clean, -1))),
        "input_argmax_is_pattern_pct": 100 * float(jnp.mean(jnp.argmax(x_test, -1) == jnp.argmax(clean, -1))),
        "snr_in_db": float(jnp.mean(wta.snr_db(clean, x_test))),
        "snr_out_recurrent_db": float(jnp.mean(wta.snr_db(z_clean[:, :n], z_test[:, :n]))),
        "snr_out_surrogate_db": float(jnp.mean(wta.snr_db(pred_clean[:, :n], pred[:, :n]))),
        "active_units_recurrent": float(jnp.mean(jnp.sum(z_test[:, :n] > 1e-3, -1))),
        "active_units_surrogate": float(jnp.mean(jnp.sum(pred[:, :n] > 1e-3, -1))),
        "competition": {"input_ratio": ratio_in, "recurrent_ratio": ratio_out, "surrogate_ratio": sur_ratio},
        "settling_iters": surrogate.distribution(iters), "never_settled": int(np.sum(~np.asarray(st.converged))),
        "batch": plan.wta_test,
        "time_recurrent_s": surrogate.time_per_batch(solve, x_test, repeats=plan.repeats),
        "time_surrogate_s": surrogate.time_per_batch(ff, fit.params, x_test, repeats=plan.repeats),
    }


def _timed_run(trainer, state, live, n):
    t = time.perf_counter()
    state, out = trainer.run(state, live, n)
    jax.block_until_ready(out["count"])
    return state, summarize_run(out), time.perf_counter() - t


def part_warm_training(plan: SurrogatePlan, seeds: int) -> tuple[dict, dict]:
    arms = {"cold": None, "warm": "surrogate"}
    configs = {a: TrainConfig(task="digits", model="resnet_fp", hidden=plan.hidden, warm_start=w,
                              surrogate_hidden=plan.surrogate_hidden) for a, w in arms.items()}
    per_seed, states = [], {}
    for seed in range(seeds):
        row = {"seed": seed}
        trainers = {a: trainer_for(dataclasses.replace(c, seed=seed)) for a, c in configs.items()}
        live = {a: live_controls(t.config) for a, t in trainers.items()}
        st = {a: t.init(seed) for a, t in trainers.items()}
        compile_s = {}
        for a, t in trainers.items():  # compile apart: one throwaway call from the initial state
            _, _, compile_s[a] = _timed_run(t, st[a], live[a], 1)
        hist = {a: [] for a in arms}
        secs = {a: 0.0 for a in arms}
        done = 0
        while done < plan.train_steps:
            n = min(plan.chunk, plan.train_steps - done)
            for a in arms:  # alternate: both arms see the same machine load
                st[a], rows, dt = _timed_run(trainers[a], st[a], live[a], n)
                hist[a] += rows
                secs[a] += dt
            done += n
        for a in arms:
            ev, _ = evaluate_run(trainers[a], st[a], live[a])
            h = hist[a]
            row[a] = {
                "fwd_iters_mean": float(np.mean([r["fwd_iters_mean"] for r in h])),
                "fwd_iters_mean_last100": float(np.mean([r["fwd_iters_mean"] for r in h[-100:]])),
                "bwd_iters_mean": float(np.mean([r["bwd_iters_mean"] for r in h])),
                "ms_per_step": 1e3 * secs[a] / len(h), "compile_s": compile_s[a],
                "test_accuracy": ev["eval_metric"], "final_loss": float(np.mean([r["loss"] for r in h[-20:]])),
                "converged_frac": float(np.mean([r["converged_frac"] for r in h])),
                "surrogate_error_last": h[-1]["surrogate_error"],
                "fwd_iters_curve": [r["fwd_iters_mean"] for r in h],
            }
        row["fwd_ratio"] = row["cold"]["fwd_iters_mean"] / row["warm"]["fwd_iters_mean"]
        row["step_time_ratio"] = row["cold"]["ms_per_step"] / row["warm"]["ms_per_step"]
        per_seed.append(row)
        states[seed] = (trainers["cold"], st["cold"])
    summary = {}
    for key in ("fwd_iters_mean", "bwd_iters_mean", "ms_per_step", "test_accuracy"):
        for a in arms:
            vals = [r[a][key] for r in per_seed]
            summary[f"{a}_{key}"] = {"mean": float(np.mean(vals)), "std": float(np.std(vals))}
    summary["fwd_ratio"] = float(np.mean([r["fwd_ratio"] for r in per_seed]))
    summary["step_time_ratio"] = float(np.mean([r["step_time_ratio"] for r in per_seed]))
    return {"steps": plan.train_steps, "chunk": plan.chunk, "hidden": plan.hidden,
            "surrogate_hidden": plan.surrogate_hidden, "seeds": per_seed, "summary": summary}, states


def part_offline(plan: SurrogatePlan, states: dict) -> dict:
    trainer, state = states[0]
    return warm.study(trainer, state, live_controls(trainer.config), hidden=plan.surrogate_hidden,
                      steps=plan.offline_steps, n_train=plan.offline_pairs, repeats=plan.repeats)


def run_surrogate(out_dir="assets", quick: bool = False, seeds: int = 3) -> dict:
    """Run the three parts; write `out_dir/experiment/surrogate/{RESULTS.md, results.json}`; return the results."""
    if int(seeds) < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    plan = QUICK if quick else FULL
    folder = Path(out_dir) / "experiment" / "surrogate"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = {"meta": {"quick": bool(quick), "seeds": int(seeds), "plan": dataclasses.asdict(plan),
                        "code": code_version(), "jax": jax.__version__, "backend": jax.default_backend(),
                        "machine": machine(), "load_start": load()}}
    results["wta"] = part_wta(plan)
    results["warm_training"], states = part_warm_training(plan, int(seeds))
    results["offline"] = part_offline(plan, states)
    results["meta"]["wall_s"] = time.perf_counter() - t0
    results["meta"]["load_end"] = load()
    text = dumps_strict(results, indent=1)
    results = json.loads(text)
    write_atomic(folder / "results.json", text.encode("utf-8"))
    write_atomic(folder / "RESULTS.md", markdown(results).encode("utf-8"))
    return results


def _f(v, spec=".3g"):
    return "n/a" if v is None else format(v, spec)


def markdown(r: dict) -> str:
    """RESULTS.md from a results dict (pure)."""
    m, w, t, o = r["meta"], r["wta"], r["warm_training"], r["offline"]
    c, s = w["config"], w["settling_iters"]
    code = m["code"] or {}
    lines = [
        "# Seed 002: feed-forward surrogates of fixed points, and warm starts", "",
        f"Commit {code.get('commit')} (dirty: {code.get('dirty')}); JAX {m['jax']} on {m['backend']}, {m['machine']}; "
        f"load average {m['load_start']} at the start, {m['load_end']} at the end; {m['wall_s']:.0f} s"
        + (" (QUICK plan: tiny budgets, not results)" if m["quick"] else "") + ".", "",
        "## 1. The paper's setting: a soft winner-take-all net and its two-layer surrogate", "",
        f"Recurrent net (constants ours): {c['n']} rectified excitatory units on a ring, self-excitation "
        f"{c['self_exc']}, neighbour excitation {c['neighbour_exc']}, one shared inhibitory unit (E->I "
        f"{c['w_ei']} on the sum, I->E {c['w_ie']}); Euler steps dt {c['dt']} (tau = 1) by `fix`'s damped "
        f"solver, settled at max|f(z)-z| <= {c['tol']}, max {c['max_iter']} steps. Inputs: one of "
        f"{c['n_patterns']} Gaussian bumps (width {c['bump_width']}, height {c['amplitude']}) plus noise of "
        f"std {c['noise']} per unit. Surrogate: relu(W2 relu(W1 x + b1) + b2), {w['hidden']} hidden units, "
        f"{w['steps']} Adam steps on {w['n_train']} pairs; {w['n_test']} held-out inputs.", "",
        "| measure | recurrent (fix) | surrogate (one pass) |", "|---|---|---|",
        f"| relative error of the fixed point (mean / median / p90) | - | {_f(w['relative_error_mean'])} / "
        f"{_f(w['relative_error_median'])} / {_f(w['relative_error_p90'])} |",
        f"| same winner as the recurrent net | - | {w['same_winner_pct']:.1f}% |",
        f"| winner = the input's pattern (input argmax: {w['input_argmax_is_pattern_pct']:.1f}%) | "
        f"{w['recurrent_winner_is_pattern_pct']:.1f}% | {w['surrogate_winner_is_pattern_pct']:.1f}% |",
        f"| output SNR (input SNR {w['snr_in_db']:.2f} dB) | {w['snr_out_recurrent_db']:.2f} dB | "
        f"{w['snr_out_surrogate_db']:.2f} dB |",
        f"| active excitatory units (of {c['n']}) | {w['active_units_recurrent']:.2f} | "
        f"{w['active_units_surrogate']:.2f} |",
        f"| competition: weak/strong response, two bumps 1 and 0.8 (input ratio {w['competition']['input_ratio']}) | "
        f"{_f(w['competition']['recurrent_ratio'])} | {_f(w['competition']['surrogate_ratio'])} |",
        f"| iterations per input | mean {s['mean']:.1f}, median {s['median']:g}, p10-p90 {s['p10']:g}-{s['p90']:g}, "
        f"max {s['max']:g}; never settled: {w['never_settled']} of {w['n_test']} | 1 pass |",
        f"| time per batch of {w['batch']} | {1e3 * w['time_recurrent_s']:.3g} ms | "
        f"{1e3 * w['time_surrogate_s']:.3g} ms |", "",
        "## 2. Training with warm starts: digits resnet_fp, side by side", "",
        f"Each seed trains two nets from the same start for {t['steps']} steps (hidden {t['hidden']}, batch 64, "
        f"tol 1e-3): from zeros, and with a surrogate (hidden {t['surrogate_hidden']}) trained alongside on the "
        f"detached fixed points giving z0 for every solve. Chunks of {t['chunk']} steps alternate between the two, "
        "so both see the same load; compilation is timed apart. Iterations: mean over all steps and samples "
        "(both blocks summed).", "",
        "| seed | fwd iters cold / warm | ratio | bwd iters cold / warm | ms/step cold / warm | speed-up | "
        "test acc % cold / warm | surrogate rel. error (last step) |", "|---|---|---|---|---|---|---|---|",
    ]
    for row in t["seeds"]:
        a, b = row["cold"], row["warm"]
        lines.append(
            f"| {row['seed']} | {a['fwd_iters_mean']:.2f} / {b['fwd_iters_mean']:.2f} | {row['fwd_ratio']:.2f}x | "
            f"{a['bwd_iters_mean']:.2f} / {b['bwd_iters_mean']:.2f} | {a['ms_per_step']:.2f} / "
            f"{b['ms_per_step']:.2f} | {row['step_time_ratio']:.2f}x | {100 * a['test_accuracy']:.2f} / "
            f"{100 * b['test_accuracy']:.2f} | {_f(b['surrogate_error_last'])} |")
    su = t["summary"]
    lines += [
        "", f"Mean over seeds: forward iterations {su['fwd_ratio']:.2f}x fewer (goal 2x), training steps "
        f"{su['step_time_ratio']:.2f}x faster (goal 1.5x); test accuracy cold "
        f"{100 * su['cold_test_accuracy']['mean']:.2f} ± {100 * su['cold_test_accuracy']['std']:.2f}%, warm "
        f"{100 * su['warm_test_accuracy']['mean']:.2f} ± {100 * su['warm_test_accuracy']['std']:.2f}%. "
        "Backward (adjoint) solves start from the incoming gradient either way, so warm starts do not shorten them.",
        "", "## 3. A surrogate fitted to a trained net; warm starts from it", "",
        f"The seed-0 net trained from zeros; surrogate of its fixed point (state of {o['state_size']} values), "
        f"hidden {o['hidden']}, {o['steps']} steps on {o['n_train']} training inputs; held out: the "
        f"{o['n_test']} test inputs.", "",
        "| measure | value |", "|---|---|",
        f"| relative error (mean / median / p90) | {o['relative_error_mean']:.4f} / {o['relative_error_median']:.4f} / "
        f"{o['relative_error_p90']:.4f} |",
        f"| test accuracy: solve / surrogate in its place | {100 * o['metric_solve']:.2f}% / "
        f"{100 * o['metric_surrogate']:.2f}% |",
        f"| time per batch of {o['batch']}: solve / one pass / warm-started solve | {1e3 * o['time_solve_s']:.3g} / "
        f"{1e3 * o['time_one_pass_s']:.3g} / {1e3 * o['time_warm_solve_s']:.3g} ms |",
        f"| forward iterations from zeros (mean, median, max) | {o['fwd_iters_cold']['mean']:.2f}, "
        f"{o['fwd_iters_cold']['median']:g}, {o['fwd_iters_cold']['max']:g} |",
        f"| from the surrogate's guess | {o['fwd_iters_warm']['mean']:.2f}, {o['fwd_iters_warm']['median']:g}, "
        f"{o['fwd_iters_warm']['max']:g} ({o['fwd_iters_ratio']:.2f}x fewer) |",
        f"| saved per sample: min / p10 / median / p90 / max | {o['fwd_iters_saved']['min']:g} / "
        f"{o['fwd_iters_saved']['p10']:g} / {o['fwd_iters_saved']['median']:g} / {o['fwd_iters_saved']['p90']:g} / "
        f"{o['fwd_iters_saved']['max']:g} |",
        f"| largest change of the fixed point (warm vs cold) | {o['fixed_point_change_warm']:.3g} |", "",
    ]
    return "\n".join(lines)
