"""The recurrent cells (twnn_jax/recurrent.py): the gated wormhole GRU's per-step fixed point and its gradients
(float64 finite differences), the closed gate being a plain stacked GRU, the LSTM's gradients, the GRU step
matching `models.gru`, state gradients back in time, live controls without recompiling, and the CLI.

Tiny sizes (hidden 4, a few time steps): every compilation is small.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twnn_jax import cli
from twnn_jax.models import build_model
from twnn_jax.recurrent import _gru_update, cell_for, scan_cell, state_gradients, wgru_sweep
from twnn_jax.tasks import adding_task, copy_task
from twnn_jax.train import TrainConfig, live_controls, trainer_for
from twnn_jax.wormhole import SolveSettings

TIGHT = SolveSettings(tol=1e-12, max_iter=2000, bwd_tol=1e-12)


@pytest.fixture
def float64():
    """Gradient checks need float64; on for the test that asks for it only (the rest of the suite is float32)."""
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def _sequence(n_in, length, seed=0, dtype=None):
    x = jax.random.normal(jax.random.PRNGKey(seed), (length, n_in))
    return x if dtype is None else x.astype(dtype)


def _params(kind, n_in=3, n_out=2, hidden=4, seed=0):
    cell = cell_for(kind, n_in, n_out, hidden)
    return cell, cell.init(jax.random.PRNGKey(seed))


def _loss(cell, settings, gate):
    def loss(params, xs):
        outs, _, _ = scan_cell(cell, params, xs, gate, settings)
        return jnp.sum(jnp.sin(outs) * (1 + jnp.arange(outs.size).reshape(outs.shape)))

    return loss


def _random_like(tree, seed):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, jnp.shape(x), jnp.result_type(x))
                                        for k, x in zip(keys, leaves)])


def _directional_fd(fun, tree, direction, eps=1e-6):
    plus = jax.tree.map(lambda a, d: a + eps * d, tree, direction)
    minus = jax.tree.map(lambda a, d: a - eps * d, tree, direction)
    return (fun(plus) - fun(minus)) / (2 * eps)


def test_each_step_is_a_fixed_point_of_the_sweep(float64):
    """At every time step the returned state is a fixed point of the stack's sweep (to the tolerance asked)."""
    cell, params = _params("wormhole_gru")
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    xs = _sequence(3, 5, dtype=jnp.float64)
    carry = cell.carry0(jnp.float64)
    for t in range(xs.shape[0]):
        prev = (carry[:4], carry[4:])
        new, _, stats, gates = cell.step(params, carry, xs[t], 1.0, TIGHT)
        state = (new[:4], new[4:])
        again = wgru_sweep(state, params, xs[t], prev, jnp.float64(1.0))
        np.testing.assert_allclose(jnp.concatenate(again), new, atol=1e-11)
        assert bool(stats.converged) and int(stats.iters) > 2  # an open gate: more than one sweep
        assert 0.0 < float(gates[0]) < 1.0
        carry = new


def test_closed_gate_is_a_stacked_gru_in_one_sweep():
    """Gate bias -20 shuts the wormhole: one sweep (2 iterations with the check) per time step, and the
    outputs are those of an ordinary 2-layer GRU."""
    cell, params = _params("wormhole_gru")
    xs = _sequence(3, 6)
    outs, stats, gates = jax.jit(lambda p, x: scan_cell(cell, p, x, -20.0, SolveSettings()))(params, xs)
    assert int(stats.iters) == 2 * xs.shape[0] and bool(stats.converged)
    assert float(gates[0]) < 1e-6
    h0 = h1 = jnp.zeros(4)
    expected = []
    for x_t in xs:
        h0 = _gru_update(params["layers"][0], x_t, h0)
        h1 = _gru_update(params["layers"][1], h0, h1)
        expected.append(params["head"]["w"] @ h1 + params["head"]["b"])
    np.testing.assert_allclose(outs, jnp.stack(expected), atol=1e-5)
    _, open_stats, _ = jax.jit(lambda p, x: scan_cell(cell, p, x, 2.0, SolveSettings()))(params, xs)
    assert int(open_stats.iters) > 2 * xs.shape[0]  # open: the stack thinks longer


@pytest.mark.parametrize("kind,gate", [("wormhole_gru", 1.0), ("lstm", 0.0)])
def test_gradients_match_finite_differences(kind, gate, float64):
    """d loss / d (params, inputs) against central finite differences in float64, in random directions;
    for the wormhole GRU also against forward mode (tangent solves) and unrolled backprop."""
    cell, params = _params(kind)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    xs = _sequence(3, 5, dtype=jnp.float64)
    loss = jax.jit(_loss(cell, TIGHT, gate))
    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, xs)
    for seed in range(2):
        direction = _random_like((params, xs), seed)
        fd = _directional_fd(lambda a: loss(*a), (params, xs), direction)
        ad = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
        np.testing.assert_allclose(ad, fd, rtol=1e-6, atol=1e-8)
    if kind == "wormhole_gru":
        direction = _random_like(params, 5)
        _, tangent = jax.jvp(lambda p: loss(p, xs), (params,), (direction,))
        ad = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(direction)))
        np.testing.assert_allclose(tangent, ad, rtol=1e-8)
        unrolled = _loss(cell, TIGHT._replace(grad_mode="unrolled", unroll_capacity=200, max_iter=200), gate)
        g_unrolled = jax.jit(jax.grad(unrolled))(params, xs)
        for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(g_unrolled)):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)


def test_state_gradients_are_the_gradients_at_each_time_step(float64):
    """`state_gradients`: ||d loss / d state_t|| per time step; checked against a finite difference of the loss
    with the state at step t pushed along the gradient's own direction, and against a direct computation."""
    task = adding_task(6)
    cell, params = _params("wormhole_gru", n_in=2, n_out=1)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    x, y = task.sample(jax.random.PRNGKey(3), 2)
    x, y = x.astype(jnp.float64), y.astype(jnp.float64)
    norms = state_gradients(cell, params, x, y, task.loss, 0.0, TIGHT)
    assert norms.shape == (2, 6) and bool(jnp.all(norms[:, -1] > 0))

    def loss_of(eps):
        outs, _, _ = scan_cell(cell, params, x[0], 0.0, TIGHT, perturb=eps)
        return task.loss(outs[None], y[0][None])[0]

    eps0 = jnp.zeros((6, 8))
    grad = jax.grad(loss_of)(eps0)
    np.testing.assert_allclose(norms[0], jnp.linalg.norm(grad, axis=-1), rtol=1e-10)
    for t in (0, 3, 5):
        direction = eps0.at[t].set(grad[t] / jnp.linalg.norm(grad[t]))
        fd = _directional_fd(loss_of, eps0, direction)
        np.testing.assert_allclose(fd, norms[0, t], rtol=1e-6)


def test_gru_cell_is_the_models_gru():
    """The GRU step used for state gradients computes exactly `models.gru` (same parameters)."""
    task = adding_task(6)
    model = build_model("gru", task, 4)
    params = model.init(jax.random.PRNGKey(0))
    x = task.sample(jax.random.PRNGKey(1), 1)[0][0]
    out, _, _ = model.apply(params, x, -2.0, SolveSettings())
    outs, _, _ = scan_cell(cell_for("gru", 2, 1, 4), params, x, -2.0, SolveSettings())
    np.testing.assert_array_equal(out, outs)


@pytest.mark.parametrize("kind", ["wormhole_gru", "lstm"])
def test_models_fit_the_sequence_tasks_only(kind):
    for task in (adding_task(5), copy_task(2)):
        model = build_model(kind, task, 4)
        x, _ = task.sample(jax.random.PRNGKey(0), 3)
        out, stats, gates = jax.eval_shape(
            lambda p, x, model=model: jax.vmap(lambda xi: model.apply(p, xi, -2.0, SolveSettings()))(x),
            jax.eval_shape(model.init, jax.random.PRNGKey(0)), x)
        assert out.shape == (3, x.shape[1], task.n_out)
        assert stats.iters.shape == (3,) and gates.shape == (3, model.n_wormholes)
    from twnn_jax.tasks import digits_task

    with pytest.raises(ValueError, match="does not fit task"):
        build_model(kind, digits_task(), 4)


def test_parameter_counts_of_the_baselines_are_matched():
    """The sizes the long-range experiment uses give the three models about the same parameter count."""
    from twnn_jax.experiments.longrange import matched_hidden, model_params

    task = adding_task(5)
    target = model_params("wormhole_gru", task, 16)
    for kind in ("gru", "lstm"):
        hidden = matched_hidden(kind, task, target)
        assert abs(model_params(kind, task, hidden) - target) <= 0.05 * target, (kind, hidden)


def test_live_controls_do_not_recompile():
    """tol, max_iter, gate, damping, bwd_tol and lr are traced: changing them keeps one compiled step and loop."""
    cfg = TrainConfig(task="copy", model="wormhole_gru", hidden=4, seq_len=1, batch_size=4)
    trainer = trainer_for(cfg)
    state = trainer.init(0)
    state, out = trainer.run(state, live_controls(cfg), 2)
    step_before, run_before = trainer.step._cache_size(), trainer.run._cache_size()
    iters = []
    for change in ({"tol": 1e-5}, {"gate": 3.0}, {"max_iter": 1}, {"damping": 0.3}, {"bwd_tol": 1e-6},
                   {"lr": 0.01}):
        state, out = trainer.run(state, live_controls(cfg, **change), 1)
        iters.append(float(out["last"]["fwd_iters_max"]))
    assert trainer.run._cache_size() == run_before == 1
    assert trainer.step._cache_size() == step_before
    assert iters[2] == 2 * 8 + 1 + 1  # max_iter=1: one iteration in each of the T = 18 solves
    assert trainer_for(TrainConfig(task="copy", model="wormhole_gru", hidden=4, seq_len=1, batch_size=4,
                                   gate=1.0, seed=3)).run is trainer.run  # the one trainer cache


@pytest.mark.e2e
def test_cli_trains_the_wormhole_gru_on_copy(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "--task", "copy", "--model", "wormhole_gru", "--steps", "2", "--hidden", "4",
                     "--seq-len", "1", "--batch-size", "4", "--quiet", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "wormhole_gru" and summary["task"] == "copy" and summary["steps"] == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "fwd_iters_mean" in r]
    assert [r["step"] for r in steps][-1] == 2
    assert all(r["fwd_iters_mean"] >= 2 * 18 for r in steps)  # at least one sweep and the check per time step
    assert np.isfinite([r["loss"] for r in steps]).all()


@pytest.mark.e2e
def test_longrange_experiment_quick_and_check(tmp_path, capsys):
    """`twnn experiment longrange --quick` writes the report, strict JSON and the figure; `--check` reads them."""
    assert cli.main(["experiment", "longrange", "--quick", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "experiment" / "longrange"

    def refuse(token):
        raise AssertionError(f"non-strict JSON token {token}")

    results = json.loads((folder / "results.json").read_text(), parse_constant=refuse)
    assert {r["model"] for r in results["runs"]} == {"wormhole_gru", "gru", "lstm"}
    assert {r["task"] for r in results["runs"]} == {"adding", "copy"}
    params = {s["model"]: s["params"] for s in results["summary"] if s["task"] == "adding"}
    assert max(params.values()) - min(params.values()) <= 0.1 * params["wormhole_gru"], params
    for s in results["summary"]:
        assert s["seeds"] == 2 and s["test_loss_std"] is not None
        assert (s["fwd_iters_per_time_step"] >= 2) == (s["model"] == "wormhole_gru")  # a sweep and the check
    for g in results["gradients"]:
        assert len(g["init"]) == len(g["trained"]) == g["seq_len"]
        assert all(v >= 0 for v in g["init"]) and g["init"][0] > 0
    text = (folder / "RESULTS.md").read_text()
    assert "## 2. Gradient with respect to the recurrent state" in text and "wormhole GRU" in text
    assert (folder / "state_gradients.html").is_file()
    capsys.readouterr()
    code = cli.main(["experiment", "longrange", "--check", "--out", str(tmp_path)])
    assert code in (0, 1) and "experiment longrange:" in capsys.readouterr().out
