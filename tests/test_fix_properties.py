"""Property-based tests of `fix` (hypothesis): whatever the map, pytree, dtype or settings, `fix` either
raises a clear one-line `ValueError` while tracing, or returns flags that tell the truth.

The contract checked (from `fix`, `iterate` and `FixStats`):
  * `1 <= iters <= max_iter` (the loop always takes one step); `residual` is finite and >= 0 or `inf`,
    never NaN; `diverged` iff `residual == inf`; `converged` implies a finite residual `<= tol`.
  * the stopping rule: every step before the last had a finite residual above `tol`; a run that neither
    converged nor diverged used all `max_iter` steps; the trajectory holds one entry per step, NaN after.
  * the residual is what it says: recomputed in float64 from the state before the last step.
  * a non-finite step is never taken: a finite `z0` gives a finite state, a non-finite `z0` stops at
    once (`diverged`, one step, `z0` handed back); the state keeps the structure, shapes and dtypes.
  * contractions (||W|| < 1): no divergence, the state is within `tol / (1 - L)` of the fixed point
    found by plain numpy iteration, and plain/damped solves converge when the rate says they must.
  * under `jax.vmap`, each sample's counts and state equal its own unbatched solve.
  * gradients through contractions are finite in every mode, and the implicit ones match the formula.

Profiles (HYPOTHESIS_PROFILE): "ci" (default: derandomized, a few dozen examples per property) and
"long" (thousands). `benchmarks/fuzz_fix.py` runs these checks for >= 10,000 examples and counts them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

import twnn_jax as tj

pytestmark = pytest.mark.unit

settings.register_profile(
    "ci", max_examples=20, deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long", max_examples=1000, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _examples(fraction: float) -> settings:
    """The profile, with a share of its examples (gradient checks compile more and get fewer)."""
    return settings(PROFILE, max_examples=max(1, int(PROFILE.max_examples * fraction)))


@pytest.fixture(autouse=True, scope="module")
def float64():
    """float64 cases need x64; switched on for this module only (the rest of the suite is float32)."""
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


CAP = 50  # the largest max_iter drawn; also the trajectory capacity, so every step is recorded


# ---- the problems: z -> act(W flat(z) + b), on any pytree ------------------------------------------
class Shape(tuple):
    """A leaf of a template (a plain tuple would be a pytree node)."""


TEMPLATES = {
    "scalar": Shape(()),
    "vector1": Shape((1,)),
    "vector": Shape((3,)),
    "matrix": Shape((2, 2)),
    "empty": Shape((0,)),
    "tuple": (Shape((3,)), Shape(())),
    "dict": {"a": Shape((2, 2)), "b": Shape((0,)), "c": Shape(())},
    "nested": {"h": (Shape((2,)), Shape((1,))), "o": Shape((2, 0))},
}
KINDS = ("contraction", "rotation", "flip", "drift", "expanding")
POISON = (None, ("W", math.nan), ("b", math.nan), ("b", math.inf), ("z0", math.nan), ("z0", -math.inf),
          ("W", math.inf))


def _is_shape(x) -> bool:
    return isinstance(x, Shape)


def _apply(act, z, W, b):
    """`act` is "tanh", "linear" or a traced bool (tanh when true): both maps share one compilation."""
    x, unravel = ravel_pytree(z)
    y = W @ x + b
    use_tanh = act == "tanh" if isinstance(act, str) else act
    return unravel(jnp.where(use_tanh, jnp.tanh(y), y))


def _apply64(act, x, W, b):
    """The same map on a flat float64 vector, in numpy (the reference)."""
    with np.errstate(all="ignore"):
        y = W.astype(np.float64) @ x + b.astype(np.float64)
        return np.tanh(y) if act == "tanh" else y


@dataclasses.dataclass(frozen=True)
class Case:
    template: str = "vector"
    dtype: str = "float32"
    act: str = "tanh"
    kind: str = "contraction"
    rho: float = 0.5            # ||W||_2 for contractions (< 1) and expanding maps (> 1)
    solver: str = "plain"
    norm: str = "max"
    relative: bool = False
    tol: float = 1e-3
    max_iter: int = 20
    damping: float = 0.5
    mixing: float = 1.0
    seed: int = 0
    z0_scale: float = 1.0
    b_scale: float = 1.0
    poison: tuple | None = None   # (where, value): one non-finite entry in W, b or z0


def _build(case: Case, seed: int | None = None):
    """numpy arrays of the case's dtype: z0 (a pytree), W (n x n), b (n,), and whether a poison landed."""
    rng = np.random.default_rng(case.seed if seed is None else seed)
    dt = np.dtype(case.dtype)
    template = TEMPLATES[case.template]
    shapes = jax.tree.leaves(template, is_leaf=_is_shape)
    n = sum(math.prod(s) for s in shapes)
    flat_z0 = rng.normal(size=n) * case.z0_scale
    q, _ = np.linalg.qr(rng.normal(size=(n, n))) if n else (np.zeros((0, 0)), None)
    if case.kind == "contraction":
        a = rng.normal(size=(n, n))
        w = case.rho * a / max(np.linalg.norm(a, 2), 1e-30) if n else a
    elif case.kind == "rotation":
        w = q
    elif case.kind == "flip":
        w = -np.eye(n)
    elif case.kind == "drift":
        w = np.eye(n)
    else:
        w = case.rho * q
    b = rng.normal(size=n) * case.b_scale
    poisoned = False
    if case.poison is not None and n:
        where, value = case.poison
        target = {"W": w.reshape(-1), "b": b, "z0": flat_z0}[where]
        target[rng.integers(target.size)] = value
        poisoned = True
    flat_z0 = flat_z0.astype(dt)
    leaves, start = [], 0
    for s in shapes:
        size = math.prod(s)
        leaves.append(flat_z0[start:start + size].reshape(s))
        start += size
    z0 = jax.tree.unflatten(jax.tree.structure(template, is_leaf=_is_shape), leaves)
    return z0, w.astype(dt), b.astype(dt), poisoned


def _fix_call(z0, W, b, tol, max_iter, damping, mixing, act, solver, norm, relative, trajectory=CAP, **kw):
    return tj.fix(partial(_apply, act), z0, W, b, tol=tol, max_iter=max_iter, solver=solver, damping=damping,
                  anderson_mixing=mixing, norm=norm, relative=relative, trajectory=trajectory, **kw)


STATIC = ("solver", "norm", "relative")
# live settings are traced: one compilation per structure, dtype and static choice
_solve = jax.jit(_fix_call, static_argnames=STATIC)


@partial(jax.jit, static_argnames=STATIC)
def _solve_batch(z0s, W, bs, tol, max_iter, damping, mixing, act, solver, norm, relative):
    return jax.vmap(lambda z0, b: _fix_call(z0, W, b, tol, max_iter, damping, mixing, act, solver, norm,
                                            relative))(z0s, bs)


def _run(case: Case, z0, W, b, max_iter=None):
    return _solve(z0, W, b, case.tol, case.max_iter if max_iter is None else max_iter, case.damping,
                  case.mixing, case.act == "tanh", solver=case.solver, norm=case.norm, relative=case.relative)


# ---- numpy helpers -----------------------------------------------------------------------------------
def _flat64(tree) -> np.ndarray:
    leaves = [np.asarray(x, np.float64).reshape(-1) for x in jax.tree.leaves(tree)]
    return np.concatenate(leaves) if leaves else np.zeros(0)


def _norm(v: np.ndarray, norm: str) -> float:
    if v.size == 0:
        return 0.0
    with np.errstate(all="ignore"):
        top = float(np.max(np.abs(v)))
        if norm == "max" or not (0 < top < np.inf):
            return top
        return top * float(np.sqrt(np.sum(np.square(v / top))))  # scaled: no overflow or underflow of squares


def _residual64(case: Case, x: np.ndarray, fx: np.ndarray) -> float:
    """The residual `fix` reports, computed in float64 (the relative floor is the dtype's `tiny`, the relative
    residual is capped at the dtype's largest finite value)."""
    with np.errstate(all="ignore"):
        r = _norm(fx - x, case.norm)
        if case.relative and np.isfinite(r):  # capped at the dtype's largest value: only a non-finite step is inf
            r = min(r / max(_norm(fx, case.norm), float(np.finfo(case.dtype).tiny)), float(np.finfo(case.dtype).max))
    return r


def _noise(case: Case, W: np.ndarray, b: np.ndarray, x: np.ndarray) -> float:
    """A bound on the rounding error of one evaluation of the map in the case's dtype, in its norm."""
    n = max(b.size, 1)
    eps = float(np.finfo(case.dtype).eps)
    W, b, x = (np.nan_to_num(np.asarray(a, np.float64), nan=0.0, posinf=0.0, neginf=0.0) for a in (W, b, x))
    with np.errstate(all="ignore"):
        scale = float(np.max(np.abs(W) @ np.abs(x), initial=0) + np.max(np.abs(b), initial=0)
                      + np.max(np.abs(x), initial=0) + 1.0)
    return (n + 4) * eps * scale * (math.sqrt(n) if case.norm == "l2" else 1.0)


def _reference_fixed_point(case: Case, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    x = np.zeros(b.size)
    for _ in range(5000):
        new = _apply64(case.act, x, W, b)
        if np.max(np.abs(new - x), initial=0) <= 1e-15 * (1 + np.max(np.abs(x), initial=0)):
            return new
        x = new
    raise AssertionError("the reference iteration did not converge")  # pragma: no cover


def _all_finite(tree) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(tree))


# ---- strategies --------------------------------------------------------------------------------------
def _log_uniform(lo: float, hi: float):
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: float(10.0**e))


tols = st.one_of(_log_uniform(1e-12, 10.0), st.sampled_from([1e-45, 1e-30, 1e-8, 1e-3, 0.5, 1e6]))
dampings = st.one_of(st.floats(1e-3, 1.0), st.sampled_from([1.0, 1e-30, 0.5]))


@st.composite
def cases(draw, kinds=KINDS, poison=POISON):
    kind = draw(st.sampled_from(kinds))
    rho = draw(st.floats(0.0, 0.9)) if kind == "contraction" else draw(st.floats(1.5, 4.0))
    return Case(
        template=draw(st.sampled_from(sorted(TEMPLATES))),
        dtype=draw(st.sampled_from(["float32", "float64"])),
        act=draw(st.sampled_from(["tanh", "linear"])),
        kind=kind,
        rho=rho,
        solver=draw(st.sampled_from(tj.SOLVERS)),
        norm=draw(st.sampled_from(["max", "l2"])),
        relative=draw(st.booleans()),
        tol=draw(tols),
        max_iter=draw(st.integers(1, CAP)),
        damping=draw(dampings),
        mixing=draw(st.sampled_from([1.0, 0.5])),
        seed=draw(st.integers(0, 2**16)),
        z0_scale=draw(st.sampled_from([0.0, 1.0, 1e3])),
        b_scale=draw(st.sampled_from([0.0, 1.0, 100.0])),
        poison=draw(st.sampled_from(poison)) if draw(st.integers(0, 3)) == 0 else None,
    )


# ---- the forward properties --------------------------------------------------------------------------
def check_forward(case: Case) -> str:
    """Solve `case` and check the contract; returns the outcome ("converged", "not_converged" or "diverged").
    Raises AssertionError on a broken property."""
    z0, W, b, poisoned = _build(case)
    z, stats = _run(case, z0, W, b)
    iters, r = int(stats.iters), float(stats.residual)
    conv, div = bool(stats.converged), bool(stats.diverged)
    tol = float(np.asarray(case.tol, case.dtype))  # the tolerance as the solve sees it
    traj = np.asarray(stats.trajectory, np.float64)
    where = f"{case} -> iters={iters} residual={r} converged={conv} diverged={div}"

    # the flags
    assert stats.iters.dtype == jnp.int32 and stats.converged.dtype == bool and stats.diverged.dtype == bool
    assert 1 <= iters <= case.max_iter, where
    assert not math.isnan(r) and r >= 0, where
    assert div == (r == math.inf), where
    assert not (conv and div), where
    if conv:
        assert r <= tol and _all_finite(z), where
    if not conv and not div:
        assert iters == case.max_iter, where
    # the stopping rule, step by step
    assert np.all(np.isnan(traj[iters:])) and not np.any(np.isnan(traj[:iters])), where
    assert traj[iters - 1] == r, where
    assert np.all(np.isfinite(traj[:iters - 1])) and np.all(traj[:iters - 1] > tol), where
    # the state: same structure, shapes and dtypes; a non-finite step is never taken
    assert jax.tree.structure(z) == jax.tree.structure(z0), where
    for a, a0 in zip(jax.tree.leaves(z), jax.tree.leaves(z0)):
        assert a.shape == a0.shape and a.dtype == a0.dtype, where
    z0_flat = _flat64(z0)
    if np.all(np.isfinite(z0_flat)):
        assert _all_finite(z), where
    else:
        assert div and iters == 1, where
        np.testing.assert_array_equal(_flat64(z), z0_flat, err_msg=where)

    # the residual is what it says: recompute it in float64 from the state before the last step
    x_prev = z0 if iters == 1 else _run(case, z0, W, b, max_iter=iters - 1)[0]
    xp = _flat64(x_prev)
    fx = _apply64(case.act, xp, W, b)
    r_true = _residual64(case, xp, fx)
    big = float(np.finfo(case.dtype).max)
    if div:
        with np.errstate(all="ignore"):
            honest = not (np.all(np.isfinite(fx)) and np.all(np.isfinite(xp))) or r_true > big / 4 \
                or float(np.max(np.abs(fx), initial=0)) > big / 4
        assert honest, f"{where}: diverged, but the step was finite (true residual {r_true})"
    else:
        noise = _noise(case, W, b, xp)
        if case.relative:
            noise = noise / max(_norm(fx, case.norm), float(np.finfo(case.dtype).tiny))
        assert abs(r - r_true) <= 1e-3 * r_true + 4 * noise, f"{where}: true residual {r_true}"

    # contractions: where the fixed point is, and that the solve gets there when it must
    lip = float(np.linalg.norm(W.astype(np.float64), 2)) if b.size and not poisoned else 1.0
    if case.kind == "contraction" and lip < 0.95:
        assert not div, where
        z_star = _reference_fixed_point(case, W, b)
        n = max(b.size, 1)
        to_l2 = math.sqrt(n) if case.norm == "max" else 1.0
        floor = 4 * _noise(case, W, b, z_star) * to_l2 / (1 - lip)
        if case.solver != "anderson" or conv:
            r_abs = r * (_norm(fx, case.norm) if case.relative else 1.0)
            dist = float(np.linalg.norm(_flat64(z) - z_star))
            assert dist <= r_abs * to_l2 * (1 + 1e-3) / (1 - lip) + floor, f"{where}: |z - z*| = {dist}"
        if case.solver != "anderson" and not case.relative:
            d = float(np.asarray(case.damping, case.dtype)) if case.solver == "damped" else 1.0
            rate = 1 - d + d * lip
            r1 = float(np.linalg.norm(_apply64(case.act, z0_flat, W, b) - z0_flat))
            delta = max(_noise(case, W, b, z_star), _noise(case, W, b, z0_flat)) * to_l2
            if rate < 1 and rate ** (case.max_iter - 1) * r1 + 4 * delta / (1 - rate) < tol:
                assert conv, f"{where}: the rate {rate} guarantees convergence"
    return "diverged" if div else ("converged" if conv else "not_converged")


def _case(**kw) -> Case:
    return Case(**kw)


@given(cases())
@example(_case(kind="expanding", act="linear", rho=2.0, template="vector1", max_iter=50))  # z -> 2z + b: inf
@example(_case(kind="flip", act="linear", max_iter=50, tol=1e-6))                          # z -> -z + b
@example(_case(kind="flip", act="linear", solver="damped", damping=0.5, max_iter=3))       # one damped step
@example(_case(kind="rotation", act="linear", template="matrix", solver="anderson", max_iter=50, tol=1e-6))
@example(_case(kind="drift", template="dict", max_iter=7))
@example(_case(kind="contraction", rho=0.9, template="nested", dtype="float64", tol=1e-12, max_iter=50))
@example(_case(poison=("z0", math.nan), template="tuple"))
@example(_case(poison=("b", math.inf), act="tanh"))
@example(_case(template="empty", solver="anderson"))
@example(_case(tol=1e-45, max_iter=50, relative=True, norm="l2"))
@_examples(1.0)
def test_forward_flags_are_honest(case):
    check_forward(case)


# ---- vmap: each sample as if alone -------------------------------------------------------------------
# Batched and unbatched matrix products may round differently (last bits), so maps that amplify
# rounding (tanh of an expanding map: chaos) are left out, and a sample whose residual comes within
# rounding of `tol` (or of overflow) may legitimately stop one step apart.
def check_vmap(case: Case, batch: int) -> str:
    samples = [_build(case, seed=case.seed + i) for i in range(batch)]
    W = samples[0][1]
    z0s = jax.tree.map(lambda *xs: np.stack(xs), *[s[0] for s in samples])
    bs = np.stack([s[2] for s in samples])
    zb, sb = _solve_batch(z0s, W, bs, case.tol, case.max_iter, case.damping, case.mixing, case.act == "tanh",
                          solver=case.solver, norm=case.norm, relative=case.relative)
    tol = float(np.asarray(case.tol, case.dtype))
    big = float(np.finfo(case.dtype).max)
    rtol = 1e-4 if case.dtype == "float32" else 1e-10
    ties = 0
    for i, (z0, _, b, _) in enumerate(samples):
        z1, s1 = _run(case, z0, W, b)
        where = f"{case}, sample {i} of {batch}"
        traj = np.asarray(s1.trajectory, np.float64)[: int(s1.iters)]
        margin = 1e-3 * tol + 4 * _noise(case, W, b, _flat64(z1))
        if np.any(np.abs(traj - tol) <= margin) or np.any(np.isfinite(traj) & (traj > big / 1e3)):
            ties += 1
            continue
        for name in ("iters", "converged", "diverged"):
            assert int(getattr(sb, name)[i]) == int(getattr(s1, name)), f"{where}: {name}"
        np.testing.assert_allclose(np.asarray(sb.trajectory[i], np.float64), np.asarray(s1.trajectory),
                                   rtol=rtol, atol=margin, err_msg=where)
        zi = _flat64([leaf[i] for leaf in jax.tree.leaves(zb)])
        z1f = _flat64(z1)
        np.testing.assert_allclose(zi, z1f, rtol=rtol, atol=margin * (1 + int(s1.iters)), err_msg=where)
    return "ties" if ties == batch else "checked"


vmap_cases = cases(kinds=("contraction", "rotation", "flip", "drift", "expanding")).filter(
    lambda c: not (c.kind == "expanding" and c.act == "tanh"))


@given(vmap_cases, st.just(3))
@example(_case(kind="contraction", rho=0.8, solver="anderson", tol=1e-6, max_iter=50, z0_scale=1e3), 3)
@example(_case(kind="expanding", act="linear", rho=3.0, max_iter=50, poison=("b", math.nan)), 2)
@_examples(0.3)
def test_vmap_counts_equal_unbatched(case, batch):
    check_vmap(case, batch)


# ---- gradients through contractions ------------------------------------------------------------------
@functools.cache
def _grad(act, solver, norm, relative, grad_mode):
    """The jitted value, gradient and backward statistics of a loss through `fix`, per static choice."""

    def loss(params, probe, z0, tol, max_iter, damping, bwd_tol):
        W, b = params
        kw = dict(bwd_tol=bwd_tol, bwd_max_iter=BWD_MAX_ITER, probe=probe, grad_mode=grad_mode)
        if grad_mode == "unrolled":
            kw["unroll_capacity"] = CAP
        z, stats = _fix_call(z0, W, b, tol, max_iter, damping, 1.0, act, solver, norm, relative, trajectory=0,
                             **kw)
        flat, _ = ravel_pytree(z)
        weights = 1.0 + jnp.arange(flat.size, dtype=flat.dtype)
        return jnp.sum(jnp.sin(flat) * weights), (flat, stats)

    return jax.jit(tj.value_and_grad_with_stats(loss, has_aux=True))


BWD_MAX_ITER = 500


def check_gradient(case: Case, grad_mode: str, bwd_tol: float) -> str:
    z0, W, b, _ = _build(case)
    grad = _grad(case.act, case.solver, case.norm, case.relative, grad_mode)
    probe = tj.backward_probe(dtype=jnp.dtype(case.dtype))
    (_, (flat, stats)), (gW, gb), bstats = grad((W, b), probe, z0, case.tol, case.max_iter, case.damping, bwd_tol)
    where = f"{case}, grad_mode={grad_mode}, bwd_tol={bwd_tol}"
    assert _all_finite((gW, gb)), where
    lip = float(np.linalg.norm(W.astype(np.float64), 2)) if b.size else 0.0
    # implicit gradient = D (I - W^T D)^-1 g at the fixed point, D = act'(.) (the adjoint equation)
    tight = case.dtype == "float64" and case.tol <= 1e-8 and not case.relative
    if grad_mode == "implicit" and tight and bool(stats.converged) and bool(bstats.converged) and b.size:
        z_star = _reference_fixed_point(case, W, b)
        w64 = W.astype(np.float64)
        d = 1 - z_star**2 if case.act == "tanh" else np.ones_like(z_star)
        g = np.cos(z_star) * (1 + np.arange(z_star.size))
        expected = d * np.linalg.solve(np.eye(z_star.size) - w64.T * d[None, :], g)
        n = z_star.size
        err = (bwd_tol + case.tol) * math.sqrt(n) * np.max(np.abs(g)) * n / (1 - lip) ** 2 + 1e-10
        np.testing.assert_allclose(np.asarray(gb), expected, rtol=0, atol=err, err_msg=where)
        return "checked_against_formula"
    return "finite"


grad_cases = cases(kinds=("contraction",), poison=(None,)).filter(lambda c: c.template != "empty")


@given(grad_cases, st.sampled_from(tj.GRAD_MODES), _log_uniform(1e-10, 1e-2))
@example(_case(kind="contraction", rho=0.5, dtype="float64", tol=1e-10, max_iter=50, template="dict"),
         "implicit", 1e-10)
@example(_case(kind="contraction", rho=0.9, solver="anderson", dtype="float64", tol=1e-10, max_iter=50),
         "implicit", 1e-9)
@_examples(0.2)
def test_gradients_of_contractions_are_finite_and_right(case, grad_mode, bwd_tol):
    check_gradient(case, grad_mode, bwd_tol)


# ---- bad input: a clear one-line ValueError while tracing --------------------------------------------
def _f(z, W, b):
    return _apply("tanh", z, W, b)


BAD = {
    "tol": [dict(tol=0.0), dict(tol=-1e-3), dict(tol=math.nan), dict(tol=math.inf), dict(tol=np.ones(2))],
    "max_iter": [dict(max_iter=0), dict(max_iter=-3), dict(max_iter=2.5), dict(max_iter=math.nan)],
    "damping": [dict(damping=0.0), dict(damping=-0.1), dict(damping=1.5), dict(damping=math.inf)],
    "bwd_tol": [dict(bwd_tol=0.0), dict(bwd_tol=-1.0), dict(bwd_tol=math.nan)],
    "bwd_max_iter": [dict(bwd_max_iter=0), dict(bwd_max_iter=1.5)],
    "solver": [dict(solver="newton"), dict(solver="Plain")],
    "norm": [dict(norm="l1")],
    "grad_mode": [dict(grad_mode="magic")],
    "trajectory": [dict(trajectory=-1), dict(trajectory=2.0)],
    "anderson_memory": [dict(anderson_memory=0), dict(anderson_memory=2.0)],
    "floating": [dict(z0_dtype="int32"), dict(z0_dtype="bool"), dict(z0_dtype="complex64")],
    "no array leaves": [dict(z0=None), dict(z0=()), dict(z0={})],
    "shape": [dict(f=lambda z, W, b: jax.tree.map(lambda x: jnp.append(x.ravel(), jnp.zeros(1, x.dtype)), z))],
    "structure": [dict(f=lambda z, W, b: (z, z))],
    "dtype": [dict(f=lambda z, W, b: jax.tree.map(lambda x: x.astype(jnp.float16), z))],
    "calling f": [dict(W=np.ones((7, 7))), dict(f=lambda z, W, b: 1 / 0)],
    "probe": [dict(probe=np.zeros((2, 3))), dict(probe=np.zeros(1))],
}


def check_bad_input(case: Case, kind: str, index: int) -> str:
    bad = dict(BAD[kind][index % len(BAD[kind])])
    z0, W, b, _ = _build(case)
    if "z0_dtype" in bad:
        int_dtype = bad.pop("z0_dtype")
        z0 = jax.tree.map(lambda x: np.asarray(x).astype(int_dtype), z0)
    f = bad.pop("f", _f)
    z0 = bad.pop("z0", z0)
    W = bad.pop("W", W)
    kw = dict(tol=case.tol, max_iter=case.max_iter, solver=case.solver, damping=case.damping, norm=case.norm,
              relative=case.relative)
    kw.update(bad)
    traced = jax.jit(lambda z0, W, b: tj.fix(f, z0, W, b, **kw))
    with pytest.raises(ValueError) as info:
        traced(z0, W, b)  # raised while tracing: nothing has run
    message = str(info.value)
    assert kind in message and "\n" not in message and len(message) < 400, message
    return f"error:{kind}"


@given(cases(poison=(None,)), st.sampled_from(sorted(BAD)), st.integers(0, 4))
@_examples(2.0)
def test_bad_input_raises_one_clear_line(case, kind, index):
    check_bad_input(case, kind, index)


# ---- bugs these properties found, fixed: kept as regression tests ----------------------------------
def test_l2_relative_residual_does_not_overflow_into_false_convergence():
    z, stats = tj.fix(lambda z: 2.0 * z, jnp.full((1,), 1e19, jnp.float32), tol=1e-3, max_iter=10,
                      norm="l2", relative=True)
    # z -> 2z has relative residual ||2z - z|| / ||2z|| = 0.5 at every step
    assert not bool(stats.converged), (float(stats.residual), int(stats.iters))


def test_l2_residual_of_a_finite_step_is_finite():
    z, stats = tj.fix(lambda z: z + 1.5e19, jnp.zeros((2,), jnp.float32), tol=1e-3, max_iter=3, norm="l2")
    assert not bool(stats.diverged) and math.isclose(float(stats.residual), math.sqrt(2) * 1.5e19, rel_tol=1e-5)


def test_huge_max_iter_is_a_clear_error_or_works():
    try:
        _, stats = tj.fix(lambda z: 0.5 * z, jnp.ones(2, jnp.float32), max_iter=2**31)
    except ValueError as err:
        assert "max_iter" in str(err)
    else:
        assert bool(stats.converged)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_anderson_half_precision_is_a_clear_error_or_works(dtype):
    try:
        _, stats = tj.fix(lambda z: 0.5 * z + 1, jnp.zeros(3, dtype), solver="anderson", tol=1e-2)
    except ValueError as err:
        assert "anderson" in str(err) and dtype in str(err)
    else:
        assert bool(stats.converged)


def test_relative_residual_of_a_step_to_zero_is_not_divergence():
    """A step to f(z) = 0 divides by `tiny`: the relative residual is capped, not inf, and the step is taken."""
    z, stats = tj.fix(lambda z: 0.0 * z, jnp.full((3,), 1e3, jnp.float32), tol=10.0, max_iter=1, relative=True)
    assert not bool(stats.diverged) and not bool(stats.converged)
    assert float(stats.residual) == float(np.finfo(np.float32).max)
    np.testing.assert_array_equal(np.asarray(z), 0.0)


def test_unrolled_anderson_gradient_stays_finite_when_residuals_underflow():
    """Residuals that underflow make Anderson's small system singular; the unrolled gradient stays finite."""
    w = 1e-6 * jnp.eye(4, dtype=jnp.float32)

    def loss(w):
        z, _ = tj.fix(lambda z, w: jnp.tanh(w @ z), jnp.full((4,), 1e3, jnp.float32), w, solver="anderson",
                      tol=1e-12, max_iter=13, relative=True, grad_mode="unrolled", unroll_capacity=13)
        return jnp.sum(jnp.sin(z))

    assert bool(jnp.all(jnp.isfinite(jax.grad(loss)(w))))
