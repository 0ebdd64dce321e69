"""The fixed-point operator: values, derivatives both ways, statistics, live settings, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import twnn_jax as tj


@pytest.fixture(autouse=True, scope="module")
def float64():
    """Gradient checks need float64; switched on for this module only (the rest of the suite is float32)."""
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)

TIGHT = dict(tol=1e-13, max_iter=2000, bwd_tol=1e-13)


# ---- a table of contractive problems: (f, z0, args) ------------------------------------------------
def _deq(n, m, seed, rho=0.6):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    w = jax.random.normal(k1, (n, n))
    w = rho * w / jnp.linalg.norm(w, 2)
    u = jax.random.normal(k2, (n, m)) / jnp.sqrt(m)
    x = jax.random.normal(k3, (m,))
    params = {"w": w, "u": u, "b": 0.1 * jnp.ones(n)}

    def f(z, p, x):
        return jnp.tanh(p["w"] @ z + p["u"] @ x + p["b"])

    return f, jnp.zeros(n), (params, x)


def _matrix_state():
    a = 0.4 * jnp.eye(3) + 0.05 * jnp.arange(9.0).reshape(3, 3) / 9
    c = jnp.linspace(-1, 1, 12).reshape(3, 4)

    def f(z, a, c):
        return jnp.sin(a @ z) * 0.8 + c

    return f, jnp.zeros((3, 4)), (a, c)


def _pytree_state():
    def f(z, p):
        return {
            "h": jnp.tanh(p["wh"] @ z["h"] + p["wo"] @ z["o"].ravel() + 0.3),
            "o": jax.nn.sigmoid(p["v"] @ z["h"]).reshape(2, 2) * 0.5,
        }

    key = jax.random.PRNGKey(3)
    k1, k2, k3 = jax.random.split(key, 3)
    p = {
        "wh": 0.3 * jax.random.normal(k1, (4, 4)) / 2,
        "wo": 0.3 * jax.random.normal(k2, (4, 4)) / 2,
        "v": 0.5 * jax.random.normal(k3, (4, 4)),
    }
    return f, {"h": jnp.zeros(4), "o": jnp.zeros((2, 2))}, (p,)


PROBLEMS = {
    "deq-vector": lambda: _deq(6, 3, 0),
    "deq-wide": lambda: _deq(16, 5, 1, rho=0.9),
    "matrix-state": _matrix_state,
    "pytree-state": _pytree_state,
}


def _loss(f, z0, **kw):
    def loss(*args):
        z, _ = tj.fix(f, z0, *args, **kw)
        return sum(jnp.sum(jnp.sin(leaf) * (1 + jnp.arange(leaf.size).reshape(leaf.shape)))
                   for leaf in jax.tree.leaves(z))

    return loss


def _central_fd_directional(fun, args, direction, eps=1e-6):
    plus = jax.tree.map(lambda a, d: a + eps * d, args, direction)
    minus = jax.tree.map(lambda a, d: a - eps * d, args, direction)
    return (fun(*plus) - fun(*minus)) / (2 * eps)


def _random_like(tree, seed):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, jnp.shape(x)) for k, x in zip(keys, leaves)])


@pytest.mark.parametrize("solver", tj.SOLVERS)
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_gradient_matches_finite_differences_and_unrolled(name, solver):
    f, z0, args = PROBLEMS[name]()
    loss = jax.jit(_loss(f, z0, solver=solver, **TIGHT))
    grads = jax.jit(jax.grad(loss, argnums=tuple(range(len(args)))))(*args)
    for seed in range(2):
        direction = _random_like(args, seed)
        fd = _central_fd_directional(loss, args, direction)
        ad = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
        np.testing.assert_allclose(ad, fd, rtol=1e-6, atol=1e-8)
    unrolled = _loss(f, z0, solver=solver, grad_mode="unrolled", tol=1e-13, max_iter=200)
    grads_unrolled = jax.jit(jax.grad(unrolled, argnums=tuple(range(len(args)))))(*args)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_unrolled)):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_forward_mode_agrees_with_reverse_and_finite_differences(name):
    f, z0, args = PROBLEMS[name]()

    @jax.jit
    def solution(*args):
        return tj.fix(f, z0, *args, **TIGHT)[0]

    jf = jax.jacfwd(solution, argnums=0)(*args)
    jr = jax.jacrev(solution, argnums=0)(*args)
    for a, b in zip(jax.tree.leaves(jf), jax.tree.leaves(jr)):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-11)
    direction = _random_like(args, 7)
    _, tangent = jax.jvp(solution, args, direction)
    fd = jax.tree.map(lambda p, m: (p - m) / 2e-6,
                      solution(*jax.tree.map(lambda a, d: a + 1e-6 * d, args, direction)),
                      solution(*jax.tree.map(lambda a, d: a - 1e-6 * d, args, direction)))
    for a, b in zip(jax.tree.leaves(tangent), jax.tree.leaves(fd)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_fixed_point_value_and_stopping_rule():
    # z = 0.5 z + 1 has the fixed point 2; from 0 the step sizes are 1, 0.5, 0.25, ...
    z, st = tj.fix(lambda z, c: 0.5 * z + c, jnp.zeros(2), jnp.ones(2), tol=0.1, max_iter=100)
    # steps: |z1-z0|=1, 0.5, 0.25, 0.125, 0.0625 <= 0.1 -> 5 steps
    assert int(st.iters) == 5 and bool(st.converged)
    np.testing.assert_allclose(float(st.residual), 0.0625)
    np.testing.assert_allclose(z, 2 - 2 * 0.5**5)


def test_relative_test_and_l2_norm():
    f = lambda z, c: 0.5 * z + c
    _, st_abs = tj.fix(f, jnp.zeros(4), 100.0 * jnp.ones(4), tol=1e-3)
    _, st_rel = tj.fix(f, jnp.zeros(4), 100.0 * jnp.ones(4), tol=1e-3, relative=True)
    assert int(st_rel.iters) < int(st_abs.iters)
    assert float(st_rel.residual) <= 1e-3
    _, st_l2 = tj.fix(f, jnp.zeros(4), jnp.ones(4), tol=1e-3, norm="l2")
    _, st_max = tj.fix(f, jnp.zeros(4), jnp.ones(4), tol=1e-3, norm="max")
    assert int(st_l2.iters) == int(st_max.iters) + 1  # the l2 norm of 4 equal entries is 2x the max


def test_trajectory_records_each_step_and_pads_with_nan():
    _, st = tj.fix(lambda z: 0.5 * z + 1.0, jnp.zeros(()), tol=1e-3, trajectory=20)
    n = int(st.iters)
    assert n == 11
    np.testing.assert_allclose(st.trajectory[:n], 0.5 ** np.arange(n))
    assert np.all(np.isnan(st.trajectory[n:]))
    assert float(st.trajectory[n - 1]) == float(st.residual)


def test_per_sample_counts_under_vmap_equal_separate_solves():
    f, z0, (params, _) = _deq(8, 3, 2, rho=0.8)
    xs = jnp.stack([jnp.zeros(3), 0.1 * jnp.ones(3), jnp.array([3.0, -2.0, 1.0]), jnp.ones(3)])

    def solve(x):
        return tj.fix(f, z0, params, x, tol=1e-10, solver="anderson", trajectory=50)

    zs, st = jax.jit(jax.vmap(solve))(xs)
    for i, x in enumerate(xs):
        z1, s1 = solve(x)
        assert int(st.iters[i]) == int(s1.iters)
        np.testing.assert_allclose(zs[i], z1, rtol=1e-12, atol=1e-14)  # finished samples did not move
        np.testing.assert_allclose(st.trajectory[i], s1.trajectory, rtol=1e-9, atol=1e-14)
    assert len(set(np.asarray(st.iters).tolist())) > 1


def _adjoint_iterations(f, z_star, args, g, rel_tol, max_iter=1000):
    """Count `u <- g + J^T u` steps with numpy until max|u_t - u_{t-1}| <= rel_tol * max|g|."""
    _, vjp = jax.vjp(lambda z: f(z, *args), z_star)
    u = np.asarray(g)
    tol = rel_tol * np.max(np.abs(g))
    for t in range(1, max_iter + 1):
        new = np.asarray(g) + np.asarray(vjp(jnp.asarray(u))[0])
        if np.max(np.abs(new - u)) <= tol:
            return t
        u = new
    return max_iter


def test_backward_counts_match_an_independent_adjoint_iteration():
    f, z0, (params, _) = _deq(8, 3, 4, rho=0.85)
    xs = jnp.stack([jnp.zeros(3), 0.5 * jnp.ones(3), jnp.array([3.0, -2.0, 1.0])])
    bwd_tol = 1e-6

    def loss(p, probe):
        zs, st = jax.vmap(lambda x, q: tj.fix(f, z0, p, x, tol=1e-12, bwd_tol=bwd_tol, probe=q))(xs, probe)
        return jnp.sum(jnp.sin(zs)), (zs, st)

    probe = tj.backward_probe((3,), trajectory=40)
    (value, (zs, st)), grads, bst = jax.jit(tj.value_and_grad_with_stats(loss, has_aux=True))(params, probe)
    assert bst.iters.shape == (3,)
    for i, x in enumerate(xs):
        expected = _adjoint_iterations(f, zs[i], (params, x), jnp.cos(zs[i]), bwd_tol)
        assert int(bst.iters[i]) == expected
        n = expected
        assert np.all(np.isfinite(bst.trajectory[i, :n])) and np.all(np.isnan(bst.trajectory[i, n:]))
    assert bool(jnp.all(bst.converged)) and int(jnp.sum(bst.failures)) == 0
    # the probe changes nothing about the gradient
    plain = jax.grad(lambda p: loss(p, probe)[0])(params)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(grads)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_backward_failure_is_reported():
    f, z0, (params, x) = _deq(8, 3, 5, rho=0.97)

    def loss(p, probe):
        return jnp.sum(tj.fix(f, z0, p, x, tol=1e-12, bwd_tol=1e-12, bwd_max_iter=3, probe=probe)[0])

    _, _, bst = tj.value_and_grad_with_stats(loss)(params, tj.backward_probe())
    assert int(bst.iters) == 3 and not bool(bst.converged) and int(bst.failures) == 1


@pytest.mark.parametrize("mode, expected_bwd", [("one_step", 1), ("unrolled", None)])
def test_other_gradient_modes_report_their_backward_work(mode, expected_bwd):
    f, z0, (params, x) = _deq(6, 3, 0)

    def loss(p, probe):
        z, st = tj.fix(f, z0, p, x, tol=1e-8, max_iter=100, grad_mode=mode, probe=probe)
        return jnp.sum(z), st

    (_, st), grads, bst = tj.value_and_grad_with_stats(loss, has_aux=True)(params, tj.backward_probe())
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert int(bst.iters) == (expected_bwd or int(st.iters))


def test_non_contractive_map_is_flagged_not_nan():
    # Oscillates forever between 0 and 1: never converges, stays finite.
    z, st = tj.fix(lambda z: 1.0 - z, jnp.zeros(3), tol=1e-3, max_iter=50)
    assert not bool(st.converged) and not bool(st.diverged) and int(st.iters) == 50
    assert float(st.residual) == 1.0
    # Blows up: the loop stops at the first non-finite step and keeps the last finite state.
    z, st = tj.fix(lambda z: 3.0 * z + 1.0, jnp.zeros(3, jnp.float32), tol=1e-3, max_iter=300)
    assert not bool(st.converged) and bool(st.diverged)
    assert bool(jnp.all(jnp.isfinite(z))) and int(st.iters) < 300
    assert float(st.residual) == float("inf")


def test_nan_input_stops_at_once():
    z, st = tj.fix(lambda z, c: 0.5 * z + c, jnp.zeros(3), jnp.array([1.0, jnp.nan, 0.0]), max_iter=10_000)
    assert int(st.iters) == 1 and bool(st.diverged) and not bool(st.converged)
    assert bool(jnp.all(jnp.isfinite(z)))


def test_live_settings_do_not_recompile():
    f, z0, (params, x) = _deq(6, 3, 0)

    @jax.jit
    def step(p, tol, max_iter, damping, bwd_tol):
        def loss(p, probe):
            z, st = tj.fix(f, z0, p, x, tol=tol, max_iter=max_iter, solver="damped", damping=damping,
                           bwd_tol=bwd_tol, probe=probe)
            return jnp.sum(z), st

        return tj.value_and_grad_with_stats(loss, has_aux=True)(p, tj.backward_probe())

    counts = []
    for tol, mi, d, bt in [(1e-3, 300, 0.5, 1e-4), (1e-6, 20, 0.9, 1e-2), (1e-9, 1000, 0.3, 1e-8)]:
        (_, st), _, bst = step(params, tol, mi, d, bt)
        counts.append(int(st.iters))
    assert step._cache_size() == 1
    assert len(set(counts)) == 3  # the settings really reached the solve


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(tol=0.0), "tol must be > 0"),
        (dict(tol=-1.0), "tol must be > 0"),
        (dict(max_iter=0), "max_iter must be >= 1"),
        (dict(max_iter=2.5), "max_iter must be an integer"),
        (dict(solver="newton"), "solver must be one of"),
        (dict(grad_mode="magic"), "grad_mode must be one of"),
        (dict(damping=1.5), "damping must be in"),
        (dict(tol=float("nan")), "tol must be finite"),
    ],
)
def test_bad_settings_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tj.fix(lambda z: 0.5 * z, jnp.zeros(3), **kwargs)


def test_structure_shape_dtype_mismatches_raise():
    with pytest.raises(ValueError, match="shape"):
        tj.fix(lambda z: jnp.concatenate([z, z]), jnp.zeros(3))
    with pytest.raises(ValueError, match="dtype"):
        tj.fix(lambda z: z.astype(jnp.float32), jnp.zeros(3, jnp.float64))
    with pytest.raises(ValueError, match="structure"):
        tj.fix(lambda z: (z, z), jnp.zeros(3))
    with pytest.raises(ValueError, match="floating"):
        tj.fix(lambda z: z, jnp.zeros(3, jnp.int32))
    with pytest.raises(ValueError, match="probe"):
        tj.fix(lambda z: 0.5 * z, jnp.zeros(3), probe=jnp.zeros((2, 3)))


# ---- derivative accuracy follows the requested tol (the adjoint/tangent tolerance defaults to tol) ----
def _dense_tanh(n=12, rho=0.6):
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    w = jax.random.normal(k1, (n, n))
    return lambda z, w, x: jnp.tanh(w @ z + x), rho * w / jnp.linalg.norm(w, 2), jax.random.normal(k2, (n,))


def _derivative_errors(tol, **extra):
    """(relative error of a directional derivative of the loss against central differences,
    max |jacfwd - jacrev| / max |jacrev|) for fix(..., tol=tol, **extra)."""
    f, w, x = _dense_tanh()
    n = x.shape[0]

    def solution(w, tol, **kw):
        return tj.fix(f, jnp.zeros(n), w, x, tol=tol, max_iter=5000, **kw)[0]

    def loss(w, tol, **kw):
        return jnp.sum(jnp.sin(solution(w, tol, **kw)))

    direction = jax.random.normal(jax.random.PRNGKey(3), w.shape)
    eps = 1e-5
    fd = (loss(w + eps * direction, 1e-14) - loss(w - eps * direction, 1e-14)) / (2 * eps)
    ad = jnp.vdot(jax.grad(loss)(w, tol, **extra), direction)
    jf = jax.jacfwd(solution)(w, tol, **extra)
    jr = jax.jacrev(solution)(w, tol, **extra)
    return float(abs(ad - fd) / abs(fd)), float(jnp.max(jnp.abs(jf - jr)) / jnp.max(jnp.abs(jr)))


def test_derivative_accuracy_follows_tol():
    """Gradient and Jacobians get as accurate as the forward tol asks (the old fixed bwd_tol=1e-4 stopped
    them near 1e-6 / 2e-5 whatever tol was); an explicit bwd_tol still trades accuracy for speed."""
    errors = {tol: _derivative_errors(tol) for tol in (1e-6, 1e-9, 1e-12)}
    for tol, (grad_err, jac_err) in errors.items():
        assert grad_err <= max(10 * tol, 1e-7), (tol, grad_err)  # 1e-7: the finite differences' own error
        assert jac_err <= 10 * tol, (tol, jac_err)
    assert errors[1e-12][1] < errors[1e-9][1] < errors[1e-6][1]
    loose_grad, loose_jac = _derivative_errors(1e-12, bwd_tol=1e-4)
    assert loose_grad > 10 * errors[1e-12][0] and loose_jac > 1e3 * errors[1e-12][1]


# ---- throw=True: a solve that did not converge raises, inside jit too ----------------------------------
def _throw_problem():
    return lambda z, a: jnp.tanh(a * z) + 0.3, jnp.zeros(3)


@pytest.mark.parametrize("jit", [False, True])
def test_throw_raises_for_a_forward_solve_that_did_not_converge(jit):
    f, z0 = _throw_problem()
    solve = lambda a: tj.fix(f, z0, a, tol=1e-6, max_iter=2, throw=True)[0]  # noqa: E731
    with pytest.raises(Exception, match=r"the forward solve did not converge: after 2 iterations the residual "
                                        r"\S+ is still above tol 1e-06"):
        jax.block_until_ready((jax.jit(solve) if jit else solve)(0.9))


def test_throw_names_the_samples_under_vmap_and_non_finite_steps():
    f, z0 = _throw_problem()
    solve = jax.jit(jax.vmap(lambda a: tj.fix(f, z0, a, tol=1e-6, max_iter=4, throw=True)[0]))
    with pytest.raises(Exception, match=r"1 of 3 samples; the first is sample 2"):
        jax.block_until_ready(solve(jnp.array([0.0, 0.01, 0.99])))
    with pytest.raises(Exception, match="a step went non-finite"):
        jax.block_until_ready(tj.fix(lambda z: 3.0 * z + 1.0, jnp.zeros(2), max_iter=10_000, throw=True)[0])


@pytest.mark.parametrize("which, transform",
                         [("adjoint \\(backward\\)", "grad"), ("tangent \\(forward-mode\\)", "jvp")])
def test_throw_raises_for_a_derivative_solve_that_did_not_converge(which, transform):
    f, z0 = _throw_problem()
    solution = lambda a, **kw: tj.fix(f, z0, a, tol=1e-8, throw=True, **kw)[0]  # noqa: E731
    if transform == "grad":
        run = jax.jit(jax.grad(lambda a, **kw: jnp.sum(solution(a, **kw))), static_argnames="bwd_max_iter")
    else:
        run = jax.jit(lambda a, **kw: jax.jvp(lambda b: solution(b, **kw), (a,), (1.0,))[1],
                      static_argnames="bwd_max_iter")
    assert bool(jnp.all(jnp.isfinite(run(0.9, bwd_max_iter=300))))  # converges: no error
    with pytest.raises(Exception, match=f"the {which} solve did not converge: after 2 iterations the residual "
                                        r"\S+ is still above bwd_tol \(relative to the right-hand side\) 1e-08"):
        jax.block_until_ready(run(0.9, bwd_max_iter=2))


def test_throw_off_changes_nothing():
    """On a solve that converges, throw=True returns exactly what throw=False does, values and gradients."""
    f, z0 = _throw_problem()
    quiet, checked = (tj.fix(f, z0, 0.9, tol=1e-6, throw=t) for t in (False, True))
    for a, b in zip(jax.tree.leaves(quiet), jax.tree.leaves(checked)):
        np.testing.assert_array_equal(a, b)
    g_quiet, g_checked = (jax.grad(lambda a, t=t: jnp.sum(tj.fix(f, z0, a, tol=1e-8, throw=t)[0]))(0.9)
                          for t in (False, True))
    assert float(g_quiet) == float(g_checked)
    with pytest.raises(ValueError, match="throw must be True or False"):
        tj.fix(f, z0, 0.9, throw=1)
