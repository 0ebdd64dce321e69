#!/usr/bin/env python
"""Benchmark `twnn_jax.fix` against optimistix, jaxopt, unrolled backprop and an ideal lower bound.

Problem: the deep-equilibrium layer z = tanh(W z + U x + b), W = rho * (random orthogonal n x n),
batch 64, input dim 32, float32, forward tol 1e-5 (max-abs norm of z_t - z_{t-1}), max_iter 300,
loss = sum(z**2), gradient with respect to (W, U, b).

Usage:  python benchmarks/bench_fix.py [--quick] [--markdown benchmarks/RESULTS.md]
Prints one JSON document on stdout (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import jaxopt
import lineax as lx
import numpy as np
import optimistix as optx
from jax import lax
from jaxopt._src import base as jaxopt_base
from jaxopt._src.fixed_point_iteration import FixedPointState

# The installed twnn_jax (`pip install -e .`: this checkout). To A/B another copy, put the folder holding
# its twnn_jax/ first on the path: PYTHONPATH=<dir> python benchmarks/bench_fix.py. The JSON names the copy.
import twnn_jax
from twnn_jax.bench import device_info

BATCH = 64
D_IN = 32
TOL = 1e-5
BWD_TOL = TOL  # fix's default: the adjoint tolerance follows tol (--bwd-tol sets another, e.g. 1e-4)
MAX_ITER = 300
MEM_MAX_ITERS = (50, 100, 300)

TARGET_IDEAL = 1.15
TARGET_OPTX = 2.5
TARGET_JAXOPT = 1.3
TARGET_MEM_FLAT = 0.05


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Problem
# ----------------------------------------------------------------------------------------------


def make_problem(n, rho, seed=0):
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    q = q * np.sign(np.diag(r))[None, :]  # Haar-distributed orthogonal matrix
    W = (rho * q).astype(np.float32)
    U = (rng.standard_normal((n, D_IN)) / math.sqrt(D_IN)).astype(np.float32)
    b = (0.1 * rng.standard_normal((n,))).astype(np.float32)
    x = rng.standard_normal((BATCH, D_IN)).astype(np.float32)
    return (jnp.asarray(W), jnp.asarray(U), jnp.asarray(b)), jnp.asarray(x)


def f_batch(z, W, U, b, x):
    """One step for the whole batch: z has shape (batch, n)."""
    return jnp.tanh(z @ W.T + x @ U.T + b)


def f_single(z, W, U, b, x):
    """One step for one sample: z has shape (n,)."""
    return jnp.tanh(W @ z + U @ x + b)


def loss_of(z):
    return jnp.sum(z**2)


# ----------------------------------------------------------------------------------------------
# Implementations. Each builder returns dict(fwd=(fn, args), vg=(fn, args)); fwd returns
# (z, forward_iters or None); vg returns (loss, grads, extra) with extra a dict of counts.
# ----------------------------------------------------------------------------------------------


def build_twnn_implicit(params, x, n, max_iter=MAX_ITER, probe=False):
    def solve(p, x, probe_=None):
        z0 = jnp.zeros((x.shape[0], n), x.dtype)
        return twnn_jax.fix(f_batch, z0, *p, x, tol=TOL, max_iter=max_iter, norm="max",
                            grad_mode="implicit", bwd_tol=BWD_TOL, probe=probe_)

    def fwd(p, x):
        z, st = solve(p, x)
        return z, st.iters

    if probe:
        def loss(p, pr, x):
            return loss_of(solve(p, x, pr)[0])

        vgs = twnn_jax.value_and_grad_with_stats(loss)

        def vg(p, pr, x):
            value, grads, bst = vgs(p, pr, x)
            return value, grads, {"bwd_iters": bst.iters}

        return dict(fwd=(fwd, (params, x)), vg=(vg, (params, twnn_jax.backward_probe(()), x)))

    def vg(p, x):
        value, grads = jax.value_and_grad(lambda p: loss_of(solve(p, x)[0]))(p)
        return value, grads, {}

    return dict(fwd=(fwd, (params, x)), vg=(vg, (params, x)))


def build_twnn_unrolled(params, x, n, max_iter=MAX_ITER):
    def solve(p, x):
        z0 = jnp.zeros((x.shape[0], n), x.dtype)
        return twnn_jax.fix(f_batch, z0, *p, x, tol=TOL, max_iter=max_iter, norm="max",
                            grad_mode="unrolled")

    def fwd(p, x):
        z, st = solve(p, x)
        return z, st.iters

    def vg(p, x):
        value, grads = jax.value_and_grad(lambda p: loss_of(solve(p, x)[0]))(p)
        return value, grads, {}

    return dict(fwd=(fwd, (params, x)), vg=(vg, (params, x)))


def build_scan(params, x, n, max_iter=MAX_ITER):
    def solve(p, x):
        z0 = jnp.zeros((x.shape[0], n), x.dtype)
        return lax.scan(lambda z, _: (f_batch(z, *p, x), None), z0, None, length=max_iter)[0]

    def fwd(p, x):
        return solve(p, x), None

    def vg(p, x):
        value, grads = jax.value_and_grad(lambda p: loss_of(solve(p, x)))(p)
        return value, grads, {}

    return dict(fwd=(fwd, (params, x)), vg=(vg, (params, x)))


def build_optimistix(params, x, n, bwd_atol):
    solver = optx.FixedPointIteration(rtol=0.0, atol=TOL, norm=optx.max_norm)
    # Residual test |r|_max <= atol, with atol = BWD_TOL * max|g| (computed from the reference
    # solution): the same stopping test as twnn's adjoint iteration, whose step difference is the
    # residual of (I - J^T) u = g.
    adjoint = optx.ImplicitAdjoint(linear_solver=lx.GMRES(rtol=0.0, atol=bwd_atol))

    def fn(y, args):
        return f_batch(y, *args)

    def solve(p, x):
        z0 = jnp.zeros((x.shape[0], n), x.dtype)
        # throw=False: no runtime error check (cheaper for optimistix; we check convergence below).
        return optx.fixed_point(fn, solver, z0, (*p, x), adjoint=adjoint, max_steps=MAX_ITER,
                                throw=False)

    def fwd(p, x):
        sol = solve(p, x)
        return sol.value, sol.stats["num_steps"]

    def vg(p, x):
        value, grads = jax.value_and_grad(lambda p: loss_of(solve(p, x).value))(p)
        return value, grads, {}

    return dict(fwd=(fwd, (params, x)), vg=(vg, (params, x)))


class _MaxNormFixedPointIteration(jaxopt.FixedPointIteration):
    """jaxopt's FixedPointIteration with the max-abs stopping test of the others (stock: global L2)."""

    def update(self, params, state, *args, **kwargs):
        next_params, aux = self._fun(params, *args, **kwargs)
        diff = jax.tree.map(jnp.subtract, next_params, params)
        error = jnp.max(jnp.stack([jnp.max(jnp.abs(d)) for d in jax.tree.leaves(diff)]))
        next_state = FixedPointState(iter_num=state.iter_num + 1, error=error, aux=aux,
                                     num_fun_eval=state.num_fun_eval + 1)
        return jaxopt_base.OptStep(params=next_params, state=next_state)


def build_jaxopt(params, x, n, max_norm=False):
    cls = _MaxNormFixedPointIteration if max_norm else jaxopt.FixedPointIteration
    solver = cls(fixed_point_fun=f_batch, maxiter=MAX_ITER, tol=TOL, implicit_diff=True)

    def solve(p, x):
        z0 = jnp.zeros((x.shape[0], n), x.dtype)
        return solver.run(z0, *p, x)

    def fwd(p, x):
        out = solve(p, x)
        return out.params, out.state.iter_num

    def vg(p, x):
        value, grads = jax.value_and_grad(lambda p: loss_of(solve(p, x).params))(p)
        return value, grads, {}

    return dict(fwd=(fwd, (params, x)), vg=(vg, (params, x)))


def build_ideal(params, x, n, k_fwd, k_bwd):
    """Lower bound: k_fwd bare steps of f, then k_bwd bare adjoint steps u <- g + J^T u, in fori_loops
    with runtime trip counts; no convergence test. vg adds the loss and one vjp w.r.t. (W, U, b)."""
    kf = jnp.asarray(k_fwd, jnp.int32)
    kb = jnp.asarray(k_bwd, jnp.int32)

    def forward(p, x, kf):
        z0 = jnp.zeros((x.shape[0], n), x.dtype)
        return lax.fori_loop(0, kf, lambda i, z: f_batch(z, *p, x), z0)

    def fwd(p, x, kf):
        return forward(p, x, kf), None

    def vg(p, x, kf, kb):
        z = forward(p, x, kf)
        value, g = jax.value_and_grad(loss_of)(z)
        _, vjp_z = jax.vjp(lambda z: f_batch(z, *p, x), z)
        u = lax.fori_loop(0, kb, lambda i, u: g + vjp_z(u)[0], g)
        _, vjp_p = jax.vjp(lambda p: f_batch(z, *p, x), p)
        return value, vjp_p(u)[0], {}

    return dict(fwd=(fwd, (params, x, kf)), vg=(vg, (params, x, kf, kb)))


def build_ideal_checked(params, x, n):
    """The cheapest solver that stops on its own: the ideal's loops plus the same stopping tests as
    twnn (max-abs step difference <= tol forward, <= BWD_TOL * max|g| backward), nothing else."""

    def loop(step, x0, tol):
        def body(c):
            t, z, _ = c
            fz = step(z)
            return t + 1, fz, jnp.max(jnp.abs(fz - z))

        def cond(c):
            return (c[0] < MAX_ITER) & (c[2] > tol)

        t, z, _ = lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), x0, jnp.full((), jnp.inf, x0.dtype)))
        return z, t

    def forward(p, x):
        z0 = jnp.zeros((x.shape[0], n), x.dtype)
        return loop(lambda z: f_batch(z, *p, x), z0, TOL)

    def vg(p, x):
        z, _ = forward(p, x)
        value, g = jax.value_and_grad(loss_of)(z)
        _, vjp_z = jax.vjp(lambda z: f_batch(z, *p, x), z)
        u, kb = loop(lambda u: g + vjp_z(u)[0], g, BWD_TOL * jnp.max(jnp.abs(g)))
        _, vjp_p = jax.vjp(lambda p: f_batch(z, *p, x), p)
        return value, vjp_p(u)[0], {"bwd_iters": kb}

    return dict(fwd=(forward, (params, x)), vg=(vg, (params, x)))


def build_twnn_vmap(params, x, n):
    """Per-sample solves under jax.vmap (what the dashboard does), with a per-sample backward probe."""

    def solve(p, x, probe=None):
        W, U, b = p

        def one(xi, pi):
            return twnn_jax.fix(f_single, jnp.zeros((n,), xi.dtype), W, U, b, xi, tol=TOL,
                                max_iter=MAX_ITER, norm="max", grad_mode="implicit", bwd_tol=BWD_TOL,
                                probe=pi)

        if probe is None:
            return jax.vmap(lambda xi: one(xi, None))(x)
        return jax.vmap(one)(x, probe)

    def fwd(p, x):
        z, st = solve(p, x)
        return z, st.iters

    def loss(p, pr, x):
        return loss_of(solve(p, x, pr)[0])

    vgs = twnn_jax.value_and_grad_with_stats(loss)

    def vg(p, pr, x):
        value, grads, bst = vgs(p, pr, x)
        return value, grads, {"bwd_iters": bst.iters}

    return dict(fwd=(fwd, (params, x)), vg=(vg, (params, twnn_jax.backward_probe((x.shape[0],)), x)))


# ----------------------------------------------------------------------------------------------
# Measurement helpers
# ----------------------------------------------------------------------------------------------


def compile_timed(fn, args):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    t2 = time.perf_counter()
    return compiled, out, t1 - t0, t2 - t1


def call_blocked(compiled, args, number):
    t0 = time.perf_counter()
    for _ in range(number):
        jax.block_until_ready(compiled(*args))
    return (time.perf_counter() - t0) / number


def interleaved_timings(entries, rounds, target_s):
    """entries: {key: (compiled, args)}. Returns {key: [seconds per call, one per round]}.

    Each round runs every entry once (in an order rotated from round to round), so drifts in
    machine speed hit all entries alike. `number` calls per sample are chosen so that one sample
    lasts about target_s.
    """
    keys = list(entries)
    numbers = {}
    for k in keys:
        c, a = entries[k]
        call_blocked(c, a, 1)  # warm-up
        t = call_blocked(c, a, 2)
        numbers[k] = max(1, int(round(target_s / max(t, 1e-6))))
    samples = {k: [] for k in keys}
    for r in range(rounds):
        shift = r % len(keys)
        order = keys[shift:] + keys[:shift]
        if r % 2:
            order = order[::-1]
        for k in order:
            c, a = entries[k]
            samples[k].append(call_blocked(c, a, numbers[k]))
    return samples, numbers


def max_rel_diff(grads, ref):
    """max over leaves of max|a - b| / max|b|."""
    out = 0.0
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        out = max(out, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)))
    return out


def temp_bytes(fn, args):
    ma = jax.jit(fn).lower(*args).compile().memory_analysis()
    return None if ma is None else int(ma.temp_size_in_bytes)


def _int(v):
    return None if v is None else int(np.asarray(v))


def dist(v):
    v = np.asarray(v)
    return {"min": int(v.min()), "median": float(np.median(v)), "max": int(v.max())}


# ----------------------------------------------------------------------------------------------
# One case
# ----------------------------------------------------------------------------------------------

def run_case(n, rho, rounds, target_s, mem_iters):
    log(f"== case n={n} rho={rho}")
    params, x = make_problem(n, rho)

    # Reference run (twnn implicit with probe) to get the counts for the ideal and max|g| for GMRES.
    ref = build_twnn_implicit(params, x, n, probe=True)
    fwd_c, (z_ref, k_fwd), _, _ = compile_timed(*ref["fwd"])
    _, (_, g_ref, ex), _, _ = compile_timed(*ref["vg"])
    k_fwd, k_bwd = int(k_fwd), int(ex["bwd_iters"])
    g_max = float(jnp.max(jnp.abs(2 * z_ref)))
    log(f"   twnn counts: forward {k_fwd}, backward {k_bwd}; max|g| = {g_max:.3g}")

    builders = {
        "twnn_implicit": lambda: build_twnn_implicit(params, x, n),
        "twnn_implicit_probe": lambda: build_twnn_implicit(params, x, n, probe=True),
        "optimistix": lambda: build_optimistix(params, x, n, bwd_atol=BWD_TOL * g_max),
        "jaxopt": lambda: build_jaxopt(params, x, n),
        "jaxopt_maxnorm": lambda: build_jaxopt(params, x, n, max_norm=True),
        "scan_unrolled": lambda: build_scan(params, x, n),
        "twnn_unrolled": lambda: build_twnn_unrolled(params, x, n),
        "ideal": lambda: build_ideal(params, x, n, k_fwd, k_bwd),
        "ideal_checked": lambda: build_ideal_checked(params, x, n),
        "twnn_vmap": lambda: build_twnn_vmap(params, x, n),
    }
    res = {name: {} for name in builders}
    entries = {}
    grads = {}
    for name, build in builders.items():
        fns = build()
        for kind in ("fwd", "vg"):
            fn, args = fns[kind]
            c, out, t_compile, t_first = compile_timed(fn, args)
            res[name][f"compile_{kind}_s"] = t_compile
            entries[(name, kind)] = (c, args)
            if kind == "fwd":
                z, iters = out
                it = None if iters is None else np.asarray(iters)
                if it is not None and it.ndim:
                    res[name]["fwd_iters"] = dist(it)
                else:
                    res[name]["fwd_iters"] = _int(it)
                res[name]["fwd_max_abs_z_diff_vs_twnn"] = float(jnp.max(jnp.abs(z - z_ref)))
            else:
                value, g, extra = out
                grads[name] = g
                bi = extra.get("bwd_iters")
                if bi is not None:
                    bi = np.asarray(bi)
                    res[name]["bwd_iters"] = dist(bi) if bi.ndim else int(bi)
                res[name]["loss"] = float(value)
        log(f"   compiled {name}: fwd {res[name]['compile_fwd_s']:.2f}s, "
            f"vg {res[name]['compile_vg_s']:.2f}s")

    res["ideal"]["fwd_iters"] = k_fwd
    res["ideal"]["bwd_iters"] = k_bwd
    res["scan_unrolled"]["fwd_iters"] = MAX_ITER
    res["scan_unrolled"]["bwd_iters"] = MAX_ITER
    res["twnn_unrolled"]["bwd_iters"] = MAX_ITER  # the backward scan runs all unroll_capacity steps
    res["twnn_implicit"]["bwd_iters"] = k_bwd
    for name in builders:
        res[name]["grad_max_rel_diff_vs_twnn_implicit"] = max_rel_diff(grads[name], g_ref)
        res[name]["grad_max_rel_diff_vs_scan_unrolled"] = max_rel_diff(grads[name], grads["scan_unrolled"])

    log(f"   timing {len(entries)} functions x {rounds} interleaved rounds")
    samples, numbers = interleaved_timings(entries, rounds, target_s)
    for (name, kind), s in samples.items():
        res[name][f"{kind}_s"] = statistics.median(s)
        res[name][f"{kind}_s_min"] = min(s)
        res[name][f"{kind}_calls_per_sample"] = numbers[(name, kind)]

    # Memory of the compiled value_and_grad at several max_iter (static, so each is its own program).
    mem = {}
    for name, build in (("twnn_implicit", build_twnn_implicit), ("twnn_unrolled", build_twnn_unrolled),
                        ("scan_unrolled", build_scan)):
        mem[name] = {}
        for mi in mem_iters:
            fn, args = build(params, x, n, max_iter=mi)["vg"]
            mem[name][str(mi)] = temp_bytes(fn, args)
    log(f"   memory: {mem}")

    lo, hi = str(min(mem_iters)), str(max(mem_iters))

    def growth(name):
        a, b = mem[name][lo], mem[name][hi]
        return None if not a else b / a

    def ratios_of(estimator):
        """Time ratios A/B: "median" (of each), "min" (fastest round of each) or "paired" (median over
        rounds of the ratio within a round: robust to load that drifts between rounds)."""

        def q(a, b, kind):
            sa, sb = samples[(a, kind)], samples[(b, kind)]
            if estimator == "median":
                return statistics.median(sa) / statistics.median(sb)
            if estimator == "min":
                return min(sa) / min(sb)
            return statistics.median([x / y for x, y in zip(sa, sb)])

        out = {}
        for kind in ("vg", "fwd"):
            out.update({
                f"twnn_{kind}_over_ideal": q("twnn_implicit", "ideal", kind),
                f"twnn_{kind}_over_ideal_checked": q("twnn_implicit", "ideal_checked", kind),
                f"ideal_checked_{kind}_over_ideal": q("ideal_checked", "ideal", kind),
                f"twnn_probe_{kind}_over_ideal": q("twnn_implicit_probe", "ideal", kind),
                f"optimistix_over_twnn_{kind}": q("optimistix", "twnn_implicit", kind),
                f"jaxopt_over_twnn_{kind}": q("jaxopt", "twnn_implicit", kind),
                f"jaxopt_maxnorm_over_twnn_{kind}": q("jaxopt_maxnorm", "twnn_implicit", kind),
                f"scan_unrolled_over_twnn_{kind}": q("scan_unrolled", "twnn_implicit", kind),
                f"twnn_unrolled_over_twnn_{kind}": q("twnn_unrolled", "twnn_implicit", kind),
                f"twnn_vmap_over_twnn_{kind}": q("twnn_vmap", "twnn_implicit", kind),
            })
        out[f"temp_bytes_{hi}_over_{lo}"] = {k: growth(k) for k in mem}
        return out

    max_grad_diff = max(res[k]["grad_max_rel_diff_vs_twnn_implicit"] for k in builders)

    def targets_of(r):
        return {
            "vg_within_1.15x_ideal": r["twnn_vg_over_ideal"] <= TARGET_IDEAL,
            "2.5x_faster_than_optimistix_vg": r["optimistix_over_twnn_vg"] >= TARGET_OPTX,
            "1.3x_faster_than_jaxopt_vg": r["jaxopt_over_twnn_vg"] >= TARGET_JAXOPT,
            "1.3x_faster_than_jaxopt_maxnorm_vg": r["jaxopt_maxnorm_over_twnn_vg"] >= TARGET_JAXOPT,
            "implicit_temp_flat_within_5pct": growth("twnn_implicit") is not None
            and abs(growth("twnn_implicit") - 1) <= TARGET_MEM_FLAT,
            "unrolled_temp_grows": bool(growth("twnn_unrolled") and growth("twnn_unrolled") > 1 + TARGET_MEM_FLAT
                                        and growth("scan_unrolled") and growth("scan_unrolled") > 1 + TARGET_MEM_FLAT),
            "gradients_agree_1e-2": max_grad_diff < 1e-2,
        }

    ratios, ratios_min, ratios_paired = ratios_of("median"), ratios_of("min"), ratios_of("paired")
    targets, targets_min, targets_paired = targets_of(ratios), targets_of(ratios_min), targets_of(ratios_paired)
    log("   " + ", ".join(f"{k}={v:.3g}" for k, v in ratios.items() if isinstance(v, float)))
    log(f"   targets: {targets}")
    return {"n": n, "rho": rho, "twnn_fwd_iters": k_fwd, "twnn_bwd_iters": k_bwd, "max_abs_g": g_max,
            "impls": res, "temp_bytes": mem, "ratios": ratios, "targets": targets,
            "ratios_from_min": ratios_min, "targets_from_min": targets_min,
            "ratios_paired": ratios_paired, "targets_paired": targets_paired,
            "max_grad_rel_diff_vs_twnn_implicit": max_grad_diff}


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------

LABELS = {
    "twnn_implicit": "twnn fix, implicit (batch as one state)",
    "twnn_implicit_probe": "twnn fix, implicit + backward probe",
    "optimistix": "optimistix FixedPointIteration + ImplicitAdjoint(GMRES)",
    "jaxopt": "jaxopt FixedPointIteration (stock: L2 stop, normal-CG bwd)",
    "jaxopt_maxnorm": "jaxopt FixedPointIteration, max-abs stop",
    "scan_unrolled": "lax.scan unrolled, 300 steps, backprop",
    "twnn_unrolled": "twnn fix, grad_mode=unrolled",
    "ideal": "IDEAL: bare fori_loops with twnn's counts",
    "ideal_checked": "ideal + per-step stopping test (hand-written)",
    "twnn_vmap": "twnn fix per sample under vmap (+ probe)",
}


RATIO_ROWS = [
    ("twnn / IDEAL (target <= 1.15)", "twnn_{}_over_ideal"),
    ("twnn + probe / IDEAL", "twnn_probe_{}_over_ideal"),
    ("twnn / (ideal + stopping test)", "twnn_{}_over_ideal_checked"),
    ("(ideal + stopping test) / IDEAL", "ideal_checked_{}_over_ideal"),
    ("optimistix / twnn (target >= 2.5)", "optimistix_over_twnn_{}"),
    ("jaxopt stock / twnn (target >= 1.3)", "jaxopt_over_twnn_{}"),
    ("jaxopt max-abs stop / twnn (target >= 1.3)", "jaxopt_maxnorm_over_twnn_{}"),
    ("lax.scan unrolled / twnn", "scan_unrolled_over_twnn_{}"),
    ("twnn unrolled / twnn", "twnn_unrolled_over_twnn_{}"),
    ("vmap per-sample / twnn batch", "twnn_vmap_over_twnn_{}"),
]


def _fmt_iters(v):
    if v is None:
        return "n/a"
    if isinstance(v, dict):
        return f"{v['min']}/{v['median']:g}/{v['max']}"
    return str(v)


def _load(v):
    return "/".join(f"{x:.1f}" for x in v)


def _mib(b):
    return "n/a" if b is None else f"{b / 2**20:.2f}"


def to_markdown(doc, command):
    lines = []
    meta = doc["meta"]
    lines.append("# bench_fix results\n")
    lines.append(f"- date: {meta['date']}")
    lines.append(f"- machine: {meta['machine_note']} ({meta['platform']}, jax {meta['jax']}, "
                 f"optimistix {meta['optimistix']}, jaxopt {meta['jaxopt']}, lineax {meta['lineax']})")
    lines.append(f"- command: `{command}`")
    lines.append(f"- machine load (1/5/15-min load average) at start {_load(meta['loadavg_1_5_15_start'])}, "
                 f"at end {_load(meta['loadavg_1_5_15_end'])}; the machine is shared, so besides medians the "
                 "fastest round (min) is shown.")
    lines.append(f"- problem: z = tanh(W z + U x + b), W = rho * orthogonal(n), batch {BATCH}, input dim "
                 f"{D_IN}, float32, forward tol {TOL:g} (max-abs), max_iter {MAX_ITER}, loss sum(z**2), "
                 f"grad w.r.t. (W, U, b); twnn bwd_tol {BWD_TOL:g} (relative to max|g|); optimistix "
                 "GMRES(rtol=0, atol=bwd_tol*max|g|).")
    lines.append(f"- timings: median of {meta['rounds']} interleaved rounds (each round = every function "
                 "once, order rotated), after warm-up, jitted + AOT-compiled, block_until_ready. "
                 "compile = `jit(f).lower(...).compile()` wall time.")
    lines.append("- iters: forward / backward counts; per-sample counts as min/median/max; "
                 "n/a = not exposed by the library. grad diff = max over (W, U, b) of "
                 "max|g - g_twnn| / max|g_twnn|.\n")
    for case in doc["cases"]:
        n, rho = case["n"], case["rho"]
        lines.append(f"## n = {n}, rho = {rho}\n")
        lines.append("| implementation | fwd ms | value_and_grad ms | vg / ideal | fwd ms (min) | vg ms (min) "
                     "| fwd iters | bwd iters | compile fwd s | compile vg s | grad diff |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        ideal = case["impls"]["ideal"]["vg_s"]
        for k, r in case["impls"].items():
            lines.append(
                f"| {LABELS.get(k, k)} | {r['fwd_s'] * 1e3:.3f} | {r['vg_s'] * 1e3:.3f} | "
                f"{r['vg_s'] / ideal:.2f} | {r['fwd_s_min'] * 1e3:.3f} | {r['vg_s_min'] * 1e3:.3f} | "
                f"{_fmt_iters(r.get('fwd_iters'))} | "
                f"{_fmt_iters(r.get('bwd_iters'))} | {r['compile_fwd_s']:.2f} | {r['compile_vg_s']:.2f} | "
                f"{r['grad_max_rel_diff_vs_twnn_implicit']:.1e} |")
        mem = case["temp_bytes"]
        its = list(next(iter(mem.values())))
        lines.append("")
        lines.append("value_and_grad `temp_size_in_bytes` (MiB) by max_iter:\n")
        lines.append("| implementation | " + " | ".join(f"max_iter {i}" for i in its) + f" | {its[-1]} / {its[0]} |")
        lines.append("|---|" + "---:|" * (len(its) + 1))
        for k, row in mem.items():
            g = case["ratios"][f"temp_bytes_{its[-1]}_over_{its[0]}"][k]
            lines.append(f"| {LABELS.get(k, k)} | " + " | ".join(_mib(row[i]) for i in its)
                         + f" | {'n/a' if g is None else f'{g:.2f}'} |")
        lines.append("")
        lines.append("Time ratios, value_and_grad (forward), by estimator:\n")
        lines.append("| ratio | medians | paired per-round | min times |")
        lines.append("|---|---:|---:|---:|")
        for label, key in RATIO_ROWS:
            cells = []
            for rk in ("ratios", "ratios_paired", "ratios_from_min"):
                r = case[rk]
                cells.append(f"{r[key.format('vg')]:.2f} ({r[key.format('fwd')]:.2f})")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("## Targets\n")
    tnames = list(doc["cases"][0]["targets"])
    lines.append("| target | " + " | ".join(f"n={c['n']}, rho={c['rho']}" for c in doc["cases"]) + " |")
    lines.append("|---|" + "---|" * len(doc["cases"]))
    timing_targets = [t for t in tnames if "faster" in t or "ideal" in t]
    for key, suffix in (("targets", " (medians)"), ("targets_paired", " (paired per-round ratios)"),
                        ("targets_from_min", " (min times)")):
        for t in tnames:
            if key != "targets" and t not in timing_targets:
                continue  # memory and gradient targets do not depend on timings
            lines.append(f"| {t}{suffix} | " + " | ".join("met" if c[key][t] else "**NOT met**"
                                                          for c in doc["cases"]) + " |")
    lines.append("")
    lines.append("## Notes\n")
    lines.append(
        "- IDEAL runs twnn's iteration counts with no stopping test at all. \"ideal + stopping test\" adds "
        "only the max-abs test per step (one reduction over the state): its ratio to IDEAL is the price of "
        "testing convergence at all, and bounds what any self-stopping solver can reach on the IDEAL target.")
    lines.append(
        "- jaxopt stock stops on the global L2 norm of the step over all batch*n entries, stricter than the "
        "max-abs test of the others (in float32 it can fail to reach 1e-5 and run to max_iter); the "
        "\"max-abs stop\" variant matches the others' test. jaxopt's backward is its default "
        "normal-equation CG (tol 1e-5), optimistix's is lineax GMRES (restart 20); neither library exposes "
        "its backward iteration count (n/a).")
    lines.append(
        "- twnn unrolled and lax.scan run all max_iter steps forward and backward (the masked scan cannot "
        "stop early); twnn unrolled reports the forward count at which its mask stopped updating.")
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small case (n=64, rho=0.5), fewer repeats")
    ap.add_argument("--markdown", metavar="PATH", help="also write a Markdown table to PATH")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds per case")
    ap.add_argument("--bwd-tol", type=float, default=None,
                    help=f"backward tolerance of every method (relative to max|g|); default: tol ({TOL:g}), "
                         "as twnn_jax.fix does")
    a = ap.parse_args(argv)
    global BWD_TOL
    if a.bwd_tol is not None:
        if not (math.isfinite(a.bwd_tol) and a.bwd_tol > 0):
            ap.error(f"--bwd-tol must be a positive number; got {a.bwd_tol}")
        BWD_TOL = a.bwd_tol

    if a.quick:
        cases, rounds, target_s = [(64, 0.5)], 11, 0.02
    else:
        cases, rounds, target_s = [(64, 0.5), (64, 0.9), (256, 0.5), (256, 0.9)], 51, 0.02
    if a.rounds:
        rounds = a.rounds

    import importlib.metadata as md

    t0 = time.perf_counter()
    load_start = os.getloadavg()
    doc = {
        "meta": {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine_note": f"{os.cpu_count()} CPU cores, JAX {jax.default_backend().upper()}",
            "platform": platform.platform(),
            "devices": [str(d) for d in jax.devices()],
            "device": device_info(),
            "jax": jax.__version__,
            "twnn_jax": os.path.dirname(twnn_jax.__file__),  # which copy ran (PYTHONPATH=<dir> for an A/B)
            "optimistix": md.version("optimistix"),
            "jaxopt": md.version("jaxopt"),
            "lineax": md.version("lineax"),
            "quick": a.quick,
            "rounds": rounds,
            "sample_target_s": target_s,
            "settings": {"batch": BATCH, "d_in": D_IN, "tol": TOL, "bwd_tol": BWD_TOL, "max_iter": MAX_ITER,
                         "dtype": "float32", "norm": "max", "loss": "sum(z**2)"},
        },
        "cases": [run_case(n, rho, rounds, target_s, MEM_MAX_ITERS) for n, rho in cases],
    }
    doc["meta"]["total_wall_s"] = time.perf_counter() - t0
    doc["meta"]["loadavg_1_5_15_start"] = load_start
    doc["meta"]["loadavg_1_5_15_end"] = os.getloadavg()
    doc["all_targets_met"] = {t: all(c["targets"][t] for c in doc["cases"]) for t in doc["cases"][0]["targets"]}
    for key in ("targets_from_min", "targets_paired"):
        doc[f"all_{key}_met"] = {t: all(c[key][t] for c in doc["cases"]) for t in doc["cases"][0][key]}
    print(json.dumps(doc, indent=2, default=float))
    if a.markdown:
        cmd = ("python benchmarks/bench_fix.py" + (" --quick" if a.quick else "")
               + (f" --bwd-tol {a.bwd_tol:g}" if a.bwd_tol is not None else "") + f" --markdown {a.markdown}")
        with open(a.markdown, "w") as fh:
            fh.write(to_markdown(doc, cmd))
        log(f"wrote {a.markdown}")
    log(f"total {doc['meta']['total_wall_s']:.1f}s")


if __name__ == "__main__":
    main()
