"""The networks: output shapes, the closed-gate single sweep, gates and iteration counts, sweep order,
the spectral bound, and a step with a non-finite gradient being skipped.

Tiny sizes throughout; trainers come from `twnn_jax.train.trainer_for`, so a config another test file
already compiled is not compiled again.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twnn_jax.models import build_model
from twnn_jax.tasks import adding_task, copy_task, digits_task, sine_task
from twnn_jax.train import TrainConfig, live_controls, summarize, trainer_for
from twnn_jax.wormhole import SegmentSpec, SolveSettings, bounded, init_segment, sweep

DIGITS = TrainConfig(task="digits", hidden=8, batch_size=16)  # resnet_fp, shared with test_train


@functools.cache
def _task(name):
    return {"digits": digits_task, "sine": lambda: sine_task(1, 8), "adding": lambda: adding_task(6),
            "copy": lambda: copy_task(1)}[name]()


@functools.cache
def _model(kind, task_name, hidden=8):
    model = build_model(kind, _task(task_name), hidden)
    return model, model.init(jax.random.PRNGKey(0))


@functools.cache
def _forward(kind, task_name, sweep_order="layer"):
    """Jitted (params, x, gate) -> (output, FixStats, gates) over a batch."""
    model, _ = _model(kind, task_name)
    settings = SolveSettings(sweep=sweep_order)
    return jax.jit(lambda p, x, g: jax.vmap(lambda xi: model.apply(p, xi, g, settings))(x))


@functools.cache
def _batch(task_name):
    """One fixed batch per task (every test uses it: one compile per model and sweep order)."""
    task = _task(task_name)
    return task.eval_set[0][:48] if task_name == "digits" else task.sample(jax.random.PRNGKey(1), 8)[0]


def _leaves_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    same = (np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True) for x, y in zip(la, lb))
    return len(la) == len(lb) and all(same)


MODELS = [("wormhole", "digits"), ("resnet_fp", "digits"), ("resnet_plain", "digits"), ("small", "sine"),
          ("wormhole_rnn", "adding"), ("gru", "adding"), ("wormhole_rnn", "copy"), ("gru", "copy")]


@pytest.mark.parametrize("kind,task_name", MODELS)
def test_output_shapes(kind, task_name):
    """Shapes by abstract evaluation (no compile): output, per-sample statistics, one gate per wormhole."""
    task = _task(task_name)
    model, params = _model(kind, task_name)
    batch = 5
    x, y = task.sample(jax.random.PRNGKey(1), batch)
    settings = SolveSettings()
    out, stats, gates = jax.eval_shape(
        lambda p, x: jax.vmap(lambda xi: model.apply(p, xi, -2.0, settings))(x), params, x)
    expected = (batch, x.shape[1], task.n_out) if task.sequence else (batch, task.n_out)
    assert out.shape == expected
    assert stats.iters.shape == stats.converged.shape == stats.residual.shape == (batch,)
    assert gates.shape == (batch, model.n_wormholes)
    loss, metric = jax.eval_shape(task.loss, out, y)
    assert loss.shape == metric.shape == ()


@pytest.mark.parametrize("kind,task_name,segments", [
    ("wormhole", "digits", 1), ("resnet_fp", "digits", 2), ("small", "sine", 1), ("wormhole_rnn", "adding", 6),
])
def test_closed_gate_settles_in_one_sweep(kind, task_name, segments):
    """Gate bias -20 shuts every wormhole: one sweep is the feed-forward pass, the second confirms it."""
    task = _task(task_name)
    _, params = _model(kind, task_name)
    x = _batch(task_name)
    out, stats, gates = _forward(kind, task_name)(params, x, -20.0)
    assert np.all(np.asarray(stats.iters) == 2 * segments)  # every sample, per segment (or time step)
    assert bool(jnp.all(stats.converged))
    assert float(jnp.max(gates)) < 1e-6
    assert bool(jnp.all(jnp.isfinite(out)))
    _, open_stats, _ = _forward(kind, task_name)(params, x, 2.0)
    assert np.all(np.asarray(open_stats.iters) > 2 * segments)  # open wormholes: the net thinks longer
    assert out.shape[0] == x.shape[0] and task.n_out == out.shape[-1]


def test_opening_the_gate_costs_forward_and_backward_iterations():
    trainer = trainer_for(DIGITS)
    state = trainer.init(0)
    means = []
    for gate in (-20.0, -2.0, 4.0):  # the same state: the same batch, only the gate bias differs
        _, metrics = trainer.step(state, live_controls(DIGITS, gate=gate))
        s = summarize(metrics)
        assert not s["skipped"]
        means.append((s["fwd_iters_mean"], s["bwd_iters_mean"]))
    fwd, bwd = zip(*means)
    assert fwd[0] == 4.0  # two segments, one sweep plus the check each
    assert fwd[0] < fwd[1] < fwd[2], means
    assert bwd[0] < bwd[1] < bwd[2], means


@pytest.mark.parametrize("gate", [-2.0, 0.0])
def test_layer_order_sweep_converges_faster_than_jacobi(gate):
    """A wormhole classifier (3 layers, wormhole 2 -> 0): the layer-order sweep passes each new activation
    straight up, Jacobi needs a sweep per layer for it to arrive. Both reach the same fixed point."""
    x = _batch("digits")
    _, params = _model("wormhole", "digits")
    out_l, st_l, _ = _forward("wormhole", "digits", "layer")(params, x, gate)
    out_j, st_j, _ = _forward("wormhole", "digits", "jacobi")(params, x, gate)
    assert bool(jnp.all(st_l.converged)) and bool(jnp.all(st_j.converged))
    mean_l, mean_j = float(jnp.mean(st_l.iters)), float(jnp.mean(st_j.iters))
    assert mean_l < mean_j, (mean_l, mean_j)
    assert np.all(np.asarray(st_l.iters) <= np.asarray(st_j.iters))
    assert float(jnp.max(jnp.abs(out_l - out_j))) < 0.05


def test_spectral_bound_bounds_the_wormhole_weights():
    key = jax.random.PRNGKey(4)
    v = jax.random.normal(key, (12, 12))
    for scale in (0.1, 0.5, 0.9, 2.0, 50.0):
        w = scale * v / jnp.linalg.norm(v, 2)
        b = bounded(w, 0.9)
        assert float(jnp.linalg.norm(b, 2)) <= 0.9 * (1 + 1e-5)
        if scale <= 0.9:
            np.testing.assert_allclose(b, w, rtol=1e-6)  # inside the bound: untouched
    assert bounded(v, None) is v

    # the sweep uses the bounded weights: a huge wormhole acts as the same matrix rescaled to the bound
    spec = SegmentSpec(n_in=5, widths=(6, 6), wormholes=((1, 0),))
    params = init_segment(jax.random.PRNGKey(5), spec)
    big = jax.tree.map(lambda a: a, params)
    big["holes"][0]["v"] = 40.0 * params["holes"][0]["v"] / jnp.linalg.norm(params["holes"][0]["v"], 2)
    scaled = jax.tree.map(lambda a: a, params)
    scaled["holes"][0]["v"] = 0.9 * params["holes"][0]["v"] / jnp.linalg.norm(params["holes"][0]["v"], 2)
    x = jnp.linspace(-1.0, 1.0, 5)
    state = (jnp.full(6, 0.3), jnp.linspace(-0.9, 0.9, 6))
    one = jax.jit(lambda p, bound: sweep(state, p, x, 3.0, spec, spectral_bound=bound), static_argnums=1)
    with_bound, reference, unbounded = one(big, 0.9), one(scaled, None), one(big, None)
    np.testing.assert_allclose(with_bound[0], reference[0], rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(unbounded[0] - reference[0]))) > 1e-2


def test_non_finite_gradient_step_is_skipped_and_reported():
    trainer = trainer_for(DIGITS)
    live = live_controls(DIGITS)
    state = trainer.init(0)
    state, _ = trainer.step(state, live)  # a real optimizer state (Adam moments not zero)
    poisoned = state._replace(params={**state.params, "head": {**state.params["head"],
                                                               "b": state.params["head"]["b"].at[0].set(jnp.nan)}})
    new, metrics = trainer.step(poisoned, live)
    s = summarize(metrics)
    assert s["skipped"] is True and s["grad_norm"] == 0.0
    assert _leaves_equal(new.params, poisoned.params)
    assert _leaves_equal(new.opt_state, poisoned.opt_state)  # Adam's moments and count unchanged
    assert int(new.step) == int(poisoned.step) + 1  # the step is counted and the data key moves on
    assert not np.array_equal(np.asarray(new.key), np.asarray(poisoned.key))
    after, metrics = trainer.step(state, live)  # from healthy parameters the next step goes through
    assert not summarize(metrics)["skipped"] and not _leaves_equal(after.params, state.params)


def test_digits_are_scikit_learns_without_importing_it():
    """The digits task reads the file scikit-learn ships (no scikit-learn import on the dashboard's first page),
    and gets exactly `load_digits()`'s pixels and labels."""
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from twnn_jax.tasks.digits import digits_data

    pixels, labels = digits_data()
    reference = load_digits()
    np.testing.assert_array_equal(pixels, reference.data)
    np.testing.assert_array_equal(labels, reference.target)
    check = "import sys; from twnn_jax.tasks.digits import digits_data; digits_data(); print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout == "False\n"
