"""The paper experiment's report: RESULTS.md text (Markdown tables and plain-words verdicts) from a results dict."""

from __future__ import annotations

import numpy as np

from .plan import ADDING_BASELINE, ONE_TEST_SAMPLE


def _f(x, fmt="{:.2f}", none="n/a"):
    return none if x is None else fmt.format(x)


def _pm(mean, std, fmt="{:.2f}"):
    return fmt.format(mean) + ("" if std is None else " ± " + fmt.format(std))


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _speed_words(rows: list[dict]) -> str:
    medians = {r["label"]: r["steps_to_95"]["median"] for r in rows}
    if any(m is None for m in medians.values()):
        return "Not every net reached 95% in this budget."
    lo, hi = min(medians.values()), max(medians.values())
    text = ("Per step the nets are within a factor of two at this checkpoint resolution" if hi <= 2 * lo else
            f"Per step the fastest learner is {min(medians, key=medians.get)}")
    seconds = {r["label"]: r["steps_to_95"]["median"] * r["ms_per_step_median"] / 1000 for r in rows}
    twnn = next(r["label"] for r in rows if r["model"] == "resnet_fp")
    plain = min((v, k) for k, v in seconds.items() if k != twnn)
    return (text + f"; in wall time (steps x median ms/step) the TWNN got there in about {seconds[twnn]:.2f} s, "
            f"the quickest plain net ({plain[1]}) in {plain[0]:.2f} s.")


def _gate_words(g: dict, d: dict) -> str:
    sweep, trained = g["sweep"], g["trained_at"]
    if not sweep:
        return ""
    first, last = sweep[0], sweep[-1]
    best = max(sweep, key=lambda r: r["accuracy"])
    text = (f"**In words.** Opening the gates (bias {first['gate']:g} to {last['gate']:g}; mean gate "
            f"{first['gate_value_mean']:.2f} to {last['gate_value_mean']:.2f}) raised the forward iterations from "
            f"{first['fwd_iters_mean']:.1f} to {last['fwd_iters_mean']:.1f} and the backward ones from "
            f"{first['bwd_iters_mean']:.1f} to {last['bwd_iters_mean']:.1f} (means; both blocks); "
            + ("every forward and backward solve converged. "
               if all(r["fwd_converged_frac"] == 1 and r["bwd_converged_frac"] == 1 for r in sweep)
               else "some solves did not converge (see the converged columns). ")
            + f"The net trained at {g['trained_gate']:g} is most accurate at bias {best['gate']:g} "
            f"({best['accuracy']:.2f}%)"
            + (": changing the gate after training moves the net away from what it learned, in both directions."
               if best["gate"] == g["trained_gate"] else ", not at the bias it was trained at."))
    if len(trained) > 1:
        twnn = next(r for r in d["rows"] if r["model"] == "resnet_fp")
        spread = twnn["accuracy_std"]
        parts = ", ".join(f"{r['accuracy']:.2f}% at {r['gate']:g} ({r['test_fwd_iters_mean']:.1f} iterations)"
                          for r in trained)
        text += (f" Trained and evaluated at one bias: {parts}; one seed each, to be read against the seed std of "
                 f"Table 1 ({_f(spread)} points) and one test sample = {ONE_TEST_SAMPLE:.2f} points.")
        most = max(trained, key=lambda r: r["test_fwd_iters_mean"])
        top = max(trained, key=lambda r: r["accuracy"])
        if top["accuracy"] - min(r["accuracy"] for r in trained) < ONE_TEST_SAMPLE:
            text += " The accuracies do not differ."
        elif most is top:
            text += " The net that iterated most was the most accurate."
        else:
            text += " More iterations did not buy accuracy here."
    return text


def code_line(code: dict) -> str:
    """The line saying which code wrote the results and how to check that they are still current."""
    commit = code.get("commit")
    if not commit:
        return ("**Code:** not recorded (the experiment did not run from a git checkout), so these tables cannot "
                "be checked against the code.")
    state = ("with uncommitted changes in `twnn_jax/` (not reproducible from the commit alone)" if code.get("dirty")
             else "clean tree")
    return (f"**Code:** commit `{commit[:12]}` ({state}). These tables are current only while no file in `twnn_jax/` "
            "has changed since: `twnn experiment paper --check` lists the files that did.")


def _oversubscribed(meta: dict) -> bool:
    loads = [x[0] for x in (meta.get("load_start"), meta.get("load_end")) if x]
    return bool(loads) and bool(meta.get("cpus")) and max(loads) > meta["cpus"]


def results_markdown(results: dict) -> str:
    """RESULTS.md text from a results dict."""
    meta, d = results["meta"], results["digits"]
    out = [
        "# TWNN paper claims, checked on CPU-sized tasks",
        "",
        f"Written by `twnn experiment paper` (`twnn_jax.experiments.run_paper(quick={meta['quick']}, "
        f"seeds={meta['seeds']})`) in {meta['wall_s']:.0f} s on {meta['machine']} (JAX {meta['jax']}, backend "
        f"{meta['backend']}). Load average at start {meta['load_start']}, at end {meta['load_end']}: timings are "
        "wall-clock on a possibly shared machine, compare them within this run only. Raw numbers: `results.json`.",
        "",
        code_line(meta.get("code") or {}),
        "",
        *([f"**The machine was oversubscribed** (1-minute load above its {meta['cpus']} CPUs) during this run: "
           "wall-clock timings and time ratios below are uncertain by a factor of several (XLA's CPU threads "
           "compete with other processes); accuracies and iteration counts are not affected.", ""]
          if _oversubscribed(meta) else []),
        *(["**Quick run**: tiny budgets that only exercise the plumbing; none of the numbers below says anything "
           "about the paper's claims.", ""] if meta["quick"] else []),
        "## 1. Table III analog: 8x8 digits",
        "",
        f"scikit-learn digits, fixed split (1437 train / {d['n_test']} test, split seed {d['split_seed']}); every "
        f"net trained {d['steps']} steps, Adam lr {d['lr']}, batch {d['batch_size']}, hidden width "
        f"{d['rows'][0]['hidden']}, gradient clipping 1.0, {d['seeds']} seed(s) (init and batch order). The TWNN "
        "net is the paper's Fig. 5: embed, blocks B1-B2 iterated to a fixed point through a gated wormhole B2->B1, "
        "then B3-B4 likewise, then the head (gate bias -2, tol 1e-3, max_iter 300, implicit gradients). "
        f"One test sample is {ONE_TEST_SAMPLE:.2f} accuracy points. Training time excludes compilation "
        "(timed apart) and evaluation; memory is the compiled training step's temporary buffers "
        "(`memory_analysis().temp_size_in_bytes`). Accuracy is the last step's (no early stopping, no selection "
        "on the test set).",
        "",
    ]
    rows = []
    for r in d["rows"]:
        temp = r["memory"]["temp_size_in_bytes"] / 1024 if r["memory"] else None
        args = r["memory"]["argument_size_in_bytes"] / 1024 if r["memory"] else None
        accs = ", ".join(f"{s['accuracy']:.2f}" for s in r["per_seed"])
        reach = r["steps_to_95"]
        reach = _f(reach["median"], "{:.0f}") + ("" if reach["all_reached"] else " (not all seeds)")
        rows.append([r["label"], r["params"], _pm(r["accuracy_mean"], r["accuracy_std"]), accs, reach,
                     _pm(r["train_s_mean"], r["train_s_std"], "{:.1f}"), _f(r["ms_per_step_median"]),
                     _f(r["cpu_ms_per_step_mean"]), _f(r["compile_s"], "{:.1f}"), _f(r["first_step_s_mean"], "{:.3f}"),
                     _f(temp, "{:.0f}"), _f(args, "{:.0f}"),
                     _f(np.mean([s["test_fwd_iters_mean"] for s in r["per_seed"]]), "{:.1f}")])
    out.append(_table(["model", "params", "test acc % (mean ± std)", "per seed", "steps to 95% (median)",
                       "train s (wall)", "ms/step (median)", "CPU ms/step", "compile s", "first step s",
                       "step temp KiB", "step args KiB", "fwd iters (test)"], rows))
    out += ["", "Train s: wall seconds for steps 2..N (mean ± std over seeds); ms/step: the median over ~10 "
            "timed chunks, steadier than the total under contention; CPU ms/step: process CPU time (all "
            "threads) per step. Compile s: the first call of the training loop (`Trainer.run`) with no steps, "
            "i.e. its XLA compilation (near zero when a compilation cache serves it); first step s: the first "
            "training step after it. Steps to 95%: first evaluated step (5, 10, 25, 50, 75, 100, 150, 200, ...) "
            "with test accuracy >= 95%. Args: parameters, optimizer state and controls passed to the step. "
            "Temp: XLA's scratch for the compiled step; at these sizes it is not monotone in depth.", ""]
    if "twnn_unrolled_memory" in d:
        u = d["twnn_unrolled_memory"]
        twnn = next(r for r in d["rows"] if r["model"] == "resnet_fp")
        a = twnn["memory"]["temp_size_in_bytes"] / 1024
        b = u["memory"]["temp_size_in_bytes"] / 1024
        out += [f"Memory check: the same TWNN step differentiated by unrolling (backprop through up to "
                f"{u['unroll_capacity']} stored iterations) needs {b:.0f} KiB of temporaries against {a:.0f} KiB "
                f"with implicit gradients ({b / max(a, 1e-9):.0f}x): the paper's memory argument holds for the "
                "implicit (fixed-point adjoint) gradient, independent of how many iterations run.", ""]
    v = d["verdict"]
    words = []
    for c in v["comparisons"]:
        words.append(f"- TWNN vs {c['against']}: {c['gap_points']:+.2f} points ({c['gap_samples']:+.1f} test "
                     f"samples; largest seed std {_f(c['seed_std_max'])}): **{c['words']}**.")
    out += ["**In words.** The paper reports TWNN 96.54% against ResNet-36 88.25% / ResNet-50 90.63% on its "
            "task. Here:", *words,
            f"- Cost: a TWNN training step took {v['time_ratio_vs_fastest_plain']:.0f}x the wall time "
            f"({v['cpu_ratio_vs_fastest_plain']:.0f}x the CPU time) of the fastest plain net's step "
            f"({v['fastest_plain']}): every step runs forward fixed-point solves and adjoint solves of many "
            "sweeps each, in a `while_loop`, against one pass through a few small matrices.",
            "- Speed of learning (the paper's 'reaches accuracy faster'): median steps to 95% test accuracy: "
            + "; ".join(f"{r['label']}: {_f(r['steps_to_95']['median'], '{:.0f}')}" for r in d["rows"])
            + f". {_speed_words(d['rows'])}", ""]

    s = results["settle"]
    out += ["## 2. Do easy inputs settle faster?", "",
            "Trained TWNN nets, every test sample: forward iterations (sum over both fixed-point blocks) against "
            "the model's confidence (max softmax) and the per-sample cross-entropy. Spearman rank correlation "
            "(ties averaged; rho and the two-sided p from `scipy.stats.spearmanr`). Easy-settles-faster predicts "
            "a negative correlation with confidence and a positive one with loss.", ""]
    rows = [[p["seed"], _f(p["iters_vs_confidence"]["rho"], "{:+.3f}"), _f(p["iters_vs_confidence"]["p"], "{:.1e}"),
             _f(p["iters_vs_loss"]["rho"], "{:+.3f}"), _f(p["iters_vs_loss"]["p"], "{:.1e}"),
             _f(p["iters_mean"], "{:.1f}"), f"{p['iters_min']}-{p['iters_max']}", _f(p["iters_mean_correct"], "{:.1f}"),
             _f(p["iters_mean_wrong"], "{:.1f}"), p["n_wrong"]] for p in s["per_seed"]]
    out += [_table(["seed", "rho(iters, confidence)", "p", "rho(iters, loss)", "p", "mean iters", "range",
                    "iters if correct", "iters if wrong", "# wrong"], rows), ""]
    rc, rl = s["rho_confidence_mean"], s["rho_loss_mean"]
    if rc is not None and rl is not None:
        agree = rc < 0 and rl > 0
        strength = max(abs(rc), abs(rl))
        size = "weak" if strength < 0.3 else ("moderate" if strength < 0.5 else "strong")
        out += [f"**In words.** Mean rho over seeds: {rc:+.3f} with confidence, {rl:+.3f} with loss. "
                + (f"The signs agree with 'easy inputs settle faster'; the association is {size}." if agree else
                   "The signs do not both agree with 'easy inputs settle faster'.") + " See `settle.html`.", ""]

    out += ["## 3. Sine generation after training (Fig. 6 analog)", "",
            "The paper's small net (Algorithm 3: tanh hidden, sigmoid output, output fed back to the hidden layer "
            "through a wormhole) trained one step ahead on random-phase windows, lr 1e-3, batch 64. Judged "
            "free-running: start from the true window of 8 evaluation sequences, feed the model's outputs back "
            "for the whole horizon. Baselines: the constant 0.5 (the signal's mean) for free running, and for one "
            "step ahead the constant and 'repeat the last value' (persistence).", ""]
    rows = []
    for c in results["sine"]["cases"]:
        rows.append([c["n_freqs"], c["window"], c["hidden"], c["steps"], f"{c['free_rmse']:.4f}",
                     f"{c['free_rmse_first50']:.4f}", f"{c['free_rmse_last50']:.4f}", f"{c['constant_rmse']:.4f}",
                     f"{c['one_step_mse']:.2e}", f"{c['one_step_mse_persistence']:.2e}",
                     f"{c['one_step_mse_constant']:.2e}", f"{c['generated_std']:.3f} / {c['target_std']:.3f}",
                     f"{_f(c['generated_period'], '{:.1f}')} / {_f(c['target_period'], '{:.1f}')}"])
    out += [_table(["freqs", "window", "hidden", "steps", f"free RMSE ({results['sine']['cases'][0]['free_steps']} "
                    "steps)", "first 50", "last 50", "constant 0.5 RMSE", "one-step MSE", "persistence MSE",
                    "constant MSE", "std gen / target", "period gen / target"], rows), ""]
    words = []
    for c in results["sine"]["cases"]:
        ratio = c["free_rmse"] / max(c["constant_rmse"], 1e-12)
        verdict = ("beats the constant baseline clearly" if ratio < 0.5 else
                   "is no better than the constant baseline" if ratio >= 1 else
                   "beats the constant baseline only modestly")
        pts = c["free_rmse_during_training"]
        best = min(pts, key=lambda p: p[1])
        words.append(f"- {c['n_freqs']} frequenc{'y' if c['n_freqs'] == 1 else 'ies'}, window {c['window']}: "
                     f"free-running RMSE {c['free_rmse']:.4f} vs {c['constant_rmse']:.4f} ({ratio:.2f}x): {verdict}. "
                     f"Best free-running RMSE during training {best[1]:.4f} at step {best[0]}.")
    out += ["**In words.**", *words, ""]

    g = results["gate"]
    out += ["## 4. Gate bias vs iterations vs accuracy", "",
            f"The seed-0 TWNN net (trained at gate bias {g['trained_gate']:g}) evaluated at each gate bias: forward "
            "iterations and accuracy on the test set; backward (adjoint) iterations from one gradient computation "
            "on a fixed training batch (no update kept)."
            + (" Norm of J: power-iteration estimate of the spectral norm of d(sweep)/d(state) at the fixed point, "
               "mean of 8 test samples, the larger of the two blocks; a norm above 1 does not by itself mean "
               "divergence (the spectral radius is what matters)." if g["sweep"] and "contraction_mean" in
               g["sweep"][0] else ""),
            ""]
    has_c = bool(g["sweep"]) and "contraction_mean" in g["sweep"][0]
    rows = [[f"{r['gate']:g}", f"{r['gate_value_mean']:.3f}", f"{r['fwd_iters_mean']:.1f}", r["fwd_iters_max"],
             f"{r['fwd_converged_frac']:.3f}", f"{r['bwd_iters_mean']:.1f}", r["bwd_iters_max"],
             f"{r['bwd_converged_frac']:.3f}", f"{r['accuracy']:.2f}"]
            + ([f"{r['contraction_mean']:.3f}"] if has_c else []) for r in g["sweep"]]
    out += [_table(["gate bias", "mean gate", "fwd iters mean", "fwd max", "fwd converged", "bwd iters mean",
                    "bwd max", "bwd converged", "test acc %"] + (["norm of J"] if has_c else []), rows), ""]
    rows = [[f"{r['gate']:g}", f"{r['accuracy']:.2f}", f"{r['test_fwd_iters_mean']:.1f}", f"{r['train_s']:.1f}",
             _f(r["ms_per_step_median"], "{:.1f}"), _f(r["cpu_ms_per_step"], "{:.1f}"),
             "Table 1, seed 0" if r["reused"] else "trained here"] for r in g["trained_at"]]
    out += ["Nets trained at a gate bias (seed 0 each, same budget as Table 1) and evaluated at it:", "",
            _table(["gate bias", "test acc %", "fwd iters (test)", "train s (wall)", "ms/step (median)",
                    "CPU ms/step", "source"], rows), ""]
    out += [_gate_words(g, d), ""]

    so = results["sweep_order"]
    out += ["## 5a. Sweep order: layer order vs all at once", "",
            "The same trained parameters (seed 0) solved with the layer-order sweep (each layer sees the new "
            "activation below it) and the all-at-once (Jacobi) sweep (each layer sees the previous state). Both have "
            "the same fixed point, so accuracy should match up to the tolerance.", ""]
    rows = [[f"{r['gate']:g}", f"{r['layer_iters_mean']:.1f}", f"{r['jacobi_iters_mean']:.1f}",
             f"{r['jacobi_iters_mean'] / max(r['layer_iters_mean'], 1e-9):.2f}",
             f"{r['layer_converged_frac']:.3f} / {r['jacobi_converged_frac']:.3f}",
             f"{r['layer_accuracy']:.2f} / {r['jacobi_accuracy']:.2f}", f"{r['max_logit_diff']:.1e}"]
            for r in so["rows"]]
    out += [_table(["gate bias", "layer iters", "jacobi iters", "ratio", "converged (layer / jacobi)",
                    "acc % (layer / jacobi)", "max abs logit diff"], rows), ""]
    if so["rows"]:
        ratios = [r["jacobi_iters_mean"] / max(r["layer_iters_mean"], 1e-9) for r in so["rows"]]
        same = all(abs(r["layer_accuracy"] - r["jacobi_accuracy"]) < ONE_TEST_SAMPLE for r in so["rows"])
        out += [f"**In words.** All-at-once sweeps needed {min(ratios):.2f}-{max(ratios):.2f}x the iterations of "
                "layer-order sweeps (information crosses one layer per sweep instead of the whole stack)"
                + ("; the answers agree (accuracy within one test sample)." if same else
                   "; accuracy differs by a test sample or more at some gate bias.")
                + " The logits differ by up to the last column: the stopping test is on the state change "
                "(tol 1e-3), not on the distance to the exact fixed point.", ""]

    ad = results["adding"]
    out += [f"## 5b. Long-range check: the adding problem, T = {', '.join(str(t) for t in ad['T'])}", "",
            "Sum of the two marked values in a sequence of T random values; always answering 1.0 gives MSE 1/6 = "
            "0.167 (the test set's own variance is the bar for 'learned nothing'). Same budget for both nets "
            "(steps, batch 64, lr, hidden); the shorter length is a sanity check that the task is learnable "
            "in this budget at all.", ""]
    rows = [[r["T"], r["model"], r["hidden"], r["params"], r["steps"], f"{r['test_mse']:.4f}",
             f"{r['baseline_mse']:.3f}",
             f"{r['eval_set_variance']:.3f}", f"{r['test_acc_004']:.1f}", f"{r['train_s']:.1f}",
             _f(r["ms_per_step_median"], "{:.1f}"), f"{r['fwd_iters_mean']:.0f}"] for r in ad["rows"]]
    out += [_table(["T", "model", "hidden", "params", "steps", "test MSE", "baseline", "test-set var(y)",
                    "abs err < 0.04 (%)", "train s", "ms/step (median)", "fwd iters (all T steps)"], rows), ""]
    words = []
    for r in ad["rows"]:
        ratio = r["test_mse"] / ADDING_BASELINE
        words.append(f"T={r['T']}: {r['model']} reaches {ratio:.2f}x the baseline MSE"
                     + (" (learned it)" if ratio < 0.1 else " (partly)" if ratio < 0.7 else " (did not learn it)"))
    out += ["**In words.** " + "; ".join(words) + "."]
    for t in ad["T"]:
        if not any(r["test_mse"] / ADDING_BASELINE < 0.7 for r in ad["rows"] if r["T"] == t):
            out[-1] += f" At T={t} neither net learned the task in this budget."
    out += ["", "The ungated wormhole RNN above is the paper's cell as first built here. The gated wormhole GRU "
            "against a GRU and an LSTM of the same parameter count, 3 seeds, with per-step iterations and the state "
            "gradient against distance back in time, is its own experiment: `longrange/RESULTS.md` "
            "(`twnn experiment longrange`). Seed 002 (a feed-forward surrogate of the fixed point): "
            "`surrogate/RESULTS.md`; seed 003 (networks that grow): `growth/RESULTS.md`.", ""]
    files = ", ".join(f"`{v['html']}`" for v in results.get("figures", {}).values())
    out += ["## Figures", "", f"Plotly HTML (they load the `plotly.min.js` next to them): {files}."
            + (" PNG copies written (kaleido)." if any("png" in v for v in results.get("figures", {}).values()) else
               " No PNG: kaleido is not importable here."), ""]
    return "\n".join(out)
