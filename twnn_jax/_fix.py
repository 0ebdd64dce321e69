"""`fix`: the iterate-to-fixed-point operator and its derivatives (TWNN paper, Eq. 3 and Eq. 10).

Reverse and forward mode share one design: the solution `z*` is computed without derivatives, and a
`jax.custom_jvp` rule gives its tangent `dz = J_z dz + J_args dargs` as a `lax.custom_linear_solve`.
Forward mode (jvp, jacfwd) runs the tangent solve; reverse mode transposes it into the adjoint
solve `u = g + J_z^T u`. Both are the same `iterate` routine as the forward pass, and both keep only
`z*` and the parameters: memory does not grow with the number of iterations.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._backward_stats import _HEADER, encode
from ._iterate import NORMS, SOLVERS, FixStats, Settings, iterate, tree_norm

GRAD_MODES = ("implicit", "unrolled", "one_step")


def _is_concrete(x) -> bool:
    if isinstance(x, (numbers.Number, np.ndarray, np.generic)):
        return True
    try:
        return not isinstance(x, jax.core.Tracer)
    except AttributeError:  # pragma: no cover - very old/new JAX
        return False


INT32_MAX = 2**31 - 1  # iteration counts are int32


def _check_scalar(name, value, *, low, strict, integer=False):
    if not _is_concrete(value):
        return
    arr = np.asarray(value)
    if arr.shape != ():
        raise ValueError(f"{name} must be a scalar, got shape {arr.shape}")
    v = arr.item()
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if integer and v != int(v):
        raise ValueError(f"{name} must be an integer, got {v}")
    bad = v <= low if strict else v < low
    if bad:
        rel = ">" if strict else ">="
        raise ValueError(f"{name} must be {rel} {low}, got {v}")
    if integer and v > INT32_MAX:
        raise ValueError(f"{name} must be <= {INT32_MAX} (iteration counts are int32), got {int(v)}")


def _check_structure(f, z0, args):
    leaves = jax.tree.leaves(z0)
    if not leaves:
        raise ValueError("z0 has no array leaves: give an initial state (an array or a pytree of arrays)")
    for leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise ValueError(f"z0 must hold floating-point arrays, got dtype {jnp.result_type(leaf)}")
    try:
        out = jax.eval_shape(f, z0, *args)
    except Exception as err:  # re-raised with the context users need
        raise ValueError(f"calling f(z0, *args) failed while checking shapes: {err}") from err
    in_def, out_def = jax.tree.structure(z0), jax.tree.structure(out)
    if in_def != out_def:
        raise ValueError(f"f must return the structure of z0: z0 is {in_def}, f(z0, *args) is {out_def}")
    for path_leaf_in, leaf_out in zip(jax.tree_util.tree_leaves_with_path(z0), jax.tree.leaves(out)):
        path, leaf_in = path_leaf_in
        where = jax.tree_util.keystr(path) or "z"
        in_shape, in_dtype = jnp.shape(leaf_in), jnp.result_type(leaf_in)
        if in_shape != leaf_out.shape:
            raise ValueError(
                f"f changes the shape of {where}: z0 has {in_shape}, f(z0, *args) has {leaf_out.shape}"
            )
        if in_dtype != leaf_out.dtype:
            raise ValueError(
                f"f changes the dtype of {where}: z0 is {in_dtype}, f(z0, *args) is {leaf_out.dtype}; "
                "cast inside f or start from z0 of that dtype"
            )


def fix(
    f: Callable,
    z0,
    *args,
    tol=1e-3,
    max_iter=300,
    solver: str = "plain",
    damping=0.5,
    anderson_memory: int = 5,
    anderson_mixing=1.0,
    norm: str = "max",
    relative: bool = False,
    grad_mode: str = "implicit",
    bwd_tol=None,
    bwd_max_iter=None,
    trajectory: int = 0,
    unroll_capacity: int | None = None,
    probe=None,
    throw: bool = False,
):
    """Iterate `z <- f(z, *args)` from `z0` to a fixed point; returns `(z, FixStats)`.

    Stops when `||z_t - z_{t-1}|| <= tol` (max-abs norm; `norm="l2"` for Euclidean, `relative=True`
    divides by `||z_t||`), when a step is not finite, or after `max_iter` steps. Works on one sample;
    `jax.vmap` gives per-sample counts. Parameters reach `f` through `args` and receive gradients.

    Keyword settings:
      tol, max_iter, damping, anderson_mixing, bwd_tol, bwd_max_iter: numbers or traced arrays;
        changing them never recompiles a jitted caller.
      solver: "plain" (paper), "damped" (`z <- z + damping (f(z) - z)`) or "anderson".
        Damped and Anderson measure the residual `||f(z) - z||`.
      grad_mode: "implicit" (adjoint fixed point, default), "unrolled" (backprop through the
        iterations, a `lax.scan` of `unroll_capacity` steps, masked after `max_iter`) or "one_step"
        (Jacobian-free: differentiate one application of f at the fixed point).
      bwd_tol: tolerance of the adjoint (and tangent) solve, relative to the size of its right-hand
        side. None (default): the forward `tol`, so derivatives are as accurate as the fixed point
        asked for (a fixed looser value made gradients silently wrong at tight `tol`). Set it to trade
        derivative accuracy for speed. bwd_max_iter defaults to max_iter.
      trajectory: static capacity; record the residual at each of the first `trajectory` steps.
      probe: from `backward_probe(...)`; its gradient carries the adjoint statistics.
      throw: static bool. True: a forward, tangent or adjoint solve that stops without converging
        (max_iter reached, or a non-finite step) raises at run time, inside `jit` too, with a message
        naming the solve, the iterations, the residual and the tolerance (under `jit` it arrives as
        a `JaxRuntimeError` carrying that message). False (default): the flags in the stats say it.

    >>> import jax.numpy as jnp
    >>> z, stats = fix(lambda z, a: 0.5 * z + a, jnp.zeros(3), jnp.ones(3), tol=1e-6)
    >>> bool(stats.converged), round(float(z[0]), 4)
    (True, 2.0)
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if grad_mode not in GRAD_MODES:
        raise ValueError(f"grad_mode must be one of {GRAD_MODES}, got {grad_mode!r}")
    if not isinstance(trajectory, int) or trajectory < 0:
        raise ValueError(f"trajectory must be a non-negative int (a static capacity), got {trajectory!r}")
    if not isinstance(throw, bool):
        raise ValueError(f"throw must be True or False (a static choice), got {throw!r}")
    if not isinstance(anderson_memory, int) or anderson_memory < 1:
        raise ValueError(f"anderson_memory must be an int >= 1, got {anderson_memory!r}")
    _check_scalar("tol", tol, low=0.0, strict=True)
    _check_scalar("max_iter", max_iter, low=1, strict=False, integer=True)
    if bwd_tol is None:
        bwd_tol = tol
    _check_scalar("bwd_tol", bwd_tol, low=0.0, strict=True)
    if bwd_max_iter is not None:
        _check_scalar("bwd_max_iter", bwd_max_iter, low=1, strict=False, integer=True)
    _check_scalar("damping", damping, low=0.0, strict=True)
    if _is_concrete(damping) and float(np.asarray(damping)) > 1.0:
        raise ValueError(f"damping must be in (0, 1], got {float(np.asarray(damping))}")
    _check_structure(f, z0, args)
    if probe is not None:
        probe_shape = jnp.shape(probe)
        if len(probe_shape) != 1 or probe_shape[0] < _HEADER:
            raise ValueError(
                f"probe must be one sample's 1-d slot of length >= {_HEADER} (from backward_probe); got "
                f"shape {probe_shape}. For a batch, vmap fix over the probe's leading axis."
            )
    if grad_mode == "unrolled" and unroll_capacity is None:
        if not _is_concrete(max_iter):
            raise ValueError(
                "grad_mode='unrolled' with a traced max_iter needs unroll_capacity (a static upper bound)"
            )
        unroll_capacity = int(max_iter)

    settings = Settings(solver=solver, norm=norm, relative=relative, trajectory=trajectory,
                        anderson_memory=anderson_memory)
    bwd_settings = Settings(solver=solver, norm=norm, relative=False, trajectory=0 if probe is None
                            else probe.shape[-1] - _HEADER, anderson_memory=anderson_memory)
    solve_kw = dict(tol=tol, max_iter=max_iter, settings=settings, damping=damping,
                    anderson_mixing=anderson_mixing)

    if grad_mode == "unrolled":
        z0 = jax.lax.stop_gradient(z0)
        z, stats = iterate(lambda z: f(z, *args), z0, scan_length=unroll_capacity, **solve_kw)
        if throw:
            z = raise_if_failed(z, stats, tol, "forward")
        return _report_forward_work(z, probe, stats, bwd_settings.trajectory), stats

    frozen = jax.lax.stop_gradient((z0, args))
    z_star, stats = iterate(lambda z: f(z, *frozen[1]), frozen[0], **solve_kw)
    if throw:
        z_star = raise_if_failed(z_star, stats, tol, "forward")

    if grad_mode == "one_step":
        z = f(z_star, *args)
        one = FixStats(jnp.ones((), jnp.int32), jnp.zeros(()), jnp.ones((), bool), jnp.zeros((), bool))
        return _report_forward_work(z, probe, one, bwd_settings.trajectory), stats

    adjoint = dict(
        bwd_tol=bwd_tol,
        bwd_max_iter=max_iter if bwd_max_iter is None else bwd_max_iter,
        damping=damping,
        anderson_mixing=anderson_mixing,
    )
    adjoint = {k: jnp.asarray(v) for k, v in adjoint.items()}
    z = _implicit(f, bwd_settings, throw, z_star, args, adjoint, probe)
    return z, stats


@partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _implicit(f, settings, throw, z_star, args, dyn, probe):
    """`z_star` with the derivative of the fixed point; `settings` are those of the tangent/adjoint solves,
    `throw` whether a tangent/adjoint solve that did not converge raises."""
    del f, settings, throw, args, dyn, probe
    return z_star


@_implicit.defjvp
def _implicit_jvp(f, settings, throw, primals, tangents):
    z_star, args, dyn, probe = primals
    _, dargs, _, dprobe = tangents
    f_z = lambda z: f(z, *args)  # noqa: E731
    _, b = jax.jvp(lambda a: f(z_star, *a), (args,), (dargs,))
    _, jvp_z = jax.linearize(f_z, z_star)
    _, vjp_z = jax.vjp(f_z, z_star)
    kw = dict(max_iter=dyn["bwd_max_iter"], damping=dyn["damping"], anderson_mixing=dyn["anderson_mixing"])
    dtype = jnp.result_type(*jax.tree.leaves(z_star))
    tiny = jnp.finfo(dtype).tiny

    def size(rhs):
        """||rhs||, at least `tiny`: the scale of the relative stopping test (and of `bwd_tol`)."""
        return jnp.maximum(tree_norm(rhs, settings.norm), tiny)

    def relative(st, scale):
        """The solve's statistics with the residual relative to the right-hand side's size."""
        scale = scale.astype(st.residual.dtype)
        return st._replace(residual=st.residual / scale,
                           trajectory=None if st.trajectory is None else st.trajectory / scale)

    def tangent_solve(rhs):
        step = lambda x: jax.tree.map(jnp.add, rhs, jvp_z(x))  # noqa: E731
        scale = size(rhs)
        tol = dyn["bwd_tol"].astype(dtype) * scale
        x, st = iterate(step, rhs, tol=tol, settings=settings._replace(trajectory=0), **kw)
        return raise_if_failed(x, relative(st, scale), dyn["bwd_tol"], "tangent (forward-mode)") if throw else x

    def adjoint_solve(rhs):
        """The adjoint solution and its statistics, the residual relative to ||rhs||."""
        step = lambda u: jax.tree.map(jnp.add, rhs, vjp_z(u)[0])  # noqa: E731
        scale = size(rhs)
        u, st = iterate(step, rhs, tol=dyn["bwd_tol"].astype(dtype) * scale, settings=settings, **kw)
        st = relative(st, scale)
        return (raise_if_failed(u, st, dyn["bwd_tol"], "adjoint (backward)") if throw else u), st

    def matvec_z(x):
        return jax.tree.map(jnp.subtract, x, jvp_z(x))

    if probe is None:
        dz = lax.custom_linear_solve(
            matvec_z, b, lambda _, rhs: tangent_solve(rhs), lambda _, rhs: adjoint_solve(rhs)[0]
        )
        return z_star, dz

    # The probe rides along as an identity block; the adjoint solve writes its statistics into the
    # probe's cotangent. An always-false select ties the probe's right-hand side to the differentiated
    # inputs, so the transpose sees it as linear in them (a tangent that is a plain constant cannot be
    # transposed); unlike `0 * b`, its transpose drops the probe's (NaN-padded) cotangent exactly.
    first = jnp.ravel(jax.tree.leaves(b)[0])[0]
    b_probe = dprobe + jnp.where(jnp.zeros(dprobe.shape, bool), first.astype(dprobe.dtype), 0)

    def matvec(x):
        return matvec_z(x[0]), x[1]

    def solve(_, rhs):
        return tangent_solve(rhs[0]), rhs[1]

    def transpose_solve(_, rhs):
        u, st = adjoint_solve(rhs[0])  # the residual relative to ||g||, as BackwardStats reports it
        return u, rhs[1] + encode(st, settings.trajectory, rhs[1].dtype)

    dz, _ = lax.custom_linear_solve(matvec, (b, b_probe), solve, transpose_solve)
    return z_star, dz


class FixError(RuntimeError):
    """A solve of `fix(..., throw=True)` stopped without converging."""


def raise_if_failed(x, stats: FixStats, tol, solve: str):
    """`x`, or a `FixError` at run time (inside `jit` too) when the solve behind `stats` did not converge.

    The check runs on the host through `jax.pure_callback`; `x` passes through a select on its answer,
    so the check cannot be dropped as dead code. Under `vmap` it sees the whole batch at once.
    """
    tol_name = "tol" if solve == "forward" else "bwd_tol (relative to the right-hand side)"

    def check(converged, diverged, iters, residual, tol):
        failed = ~np.asarray(converged, bool)
        if np.any(failed):
            where = np.flatnonzero(np.ravel(failed))
            first = int(where[0])
            it, res = np.ravel(iters)[first], np.ravel(residual)[first]
            tol_ = np.broadcast_to(tol, np.shape(converged)).ravel()[first]
            what = ("a step went non-finite" if np.ravel(diverged)[first] else
                    f"the residual {res:.3g} is still above {tol_name} {tol_:.3g}")
            batch = f" ({where.size} of {failed.size} samples; the first is sample {first})" if failed.size > 1 else ""
            raise FixError(
                f"fix(throw=True): the {solve} solve did not converge{batch}: after {int(it)} iterations "
                f"{what}. Raise max_iter (or bwd_max_iter), loosen tol (bwd_tol), use a damped or "
                "Anderson solver, or make the map contract; throw=False returns the flags instead."
            )
        return np.ones(np.shape(converged), bool)

    ok = jax.pure_callback(check, jax.ShapeDtypeStruct(jnp.shape(stats.converged), jnp.bool_), stats.converged,
                           stats.diverged, stats.iters, stats.residual, jnp.asarray(tol),
                           vmap_method="broadcast_all")
    return jax.tree.map(lambda a: jnp.where(ok, a, jnp.full_like(a, jnp.nan)), x)


def _report_forward_work(z, probe, stats, capacity):
    """For the unrolled and one-step modes: the backward pass repeats the forward work; report it."""
    if probe is None:
        return z
    return _attach(z, probe, encode(lax.stop_gradient(stats), capacity, probe.dtype))


@jax.custom_vjp
def _attach(z, probe, code):
    del probe, code
    return z


def _attach_fwd(z, probe, code):
    return z, code


def _attach_bwd(code, g):
    return g, code, jnp.zeros_like(code)


_attach.defvjp(_attach_fwd, _attach_bwd)
