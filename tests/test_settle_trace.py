"""One input settling (twnn_jax/settle_trace.py) and its figures (twnn_jax/network_figures.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twnn_jax import network_figures
from twnn_jax._iterate import Settings, iterate
from twnn_jax.settle_trace import network_layout, settle_for, trace_iterate
from twnn_jax.train import TrainConfig, live_controls, trainer_for
from twnn_jax.wormhole import solve_segment


@pytest.mark.parametrize("solver", ["plain", "damped", "anderson"])
def test_trace_replays_the_solvers_iteration(solver):
    a = jax.random.normal(jax.random.PRNGKey(0), (6, 6))
    a = 0.8 * a / jnp.linalg.norm(a, 2)
    b = jnp.arange(6.0) / 6

    def step(z):
        return (jnp.tanh(a @ z[0] + b), 0.5 * z[1] + 0.1)

    z0 = (jnp.zeros(6), jnp.zeros(()))
    states, residuals, stats, last = trace_iterate(step, z0, tol=1e-5, max_iter=200, solver=solver, damping=0.6,
                                             capacity=80)
    x, ref = iterate(step, z0, tol=1e-5, max_iter=200, settings=Settings(solver=solver), damping=0.6)
    n = int(ref.iters)
    assert int(stats.iters) == n and 3 < n <= 80
    assert np.isfinite(np.asarray(residuals[:n])).all() and np.isnan(np.asarray(residuals[n:])).all()
    assert float(residuals[n - 1]) <= 1e-5 < float(residuals[n - 2])
    for a, b in zip(jax.tree.leaves(last), jax.tree.leaves(x)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for leaf, ref_leaf in zip(jax.tree.leaves(states), jax.tree.leaves(x)):
        np.testing.assert_allclose(np.asarray(leaf[n]), np.asarray(ref_leaf), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(leaf[n:]), np.broadcast_to(np.asarray(leaf[n]), leaf[n:].shape))
    assert np.all(np.asarray(states[0][0]) == 0)


CASES = {  # task, model: every model the network picture supports
    "small": dict(task="sine", hidden=8),
    "wormhole": dict(task="digits", model="wormhole", hidden=8),
    "resnet_fp": dict(task="digits", hidden=8),
    "wormhole_rnn": dict(task="adding", hidden=8, seq_len=6),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_the_trace_ends_at_the_models_fixed_point_with_its_count(kind):
    cfg = TrainConfig(**CASES[kind], batch_size=4)
    trainer = trainer_for(cfg)
    assert trainer.model.kind == kind
    params = trainer.init(0).params
    layout = network_layout(trainer.model, trainer.task)
    assert len(layout.wormholes) == trainer.model.n_wormholes
    fn = settle_for(cfg)
    for gate, tol in ((-2.0, 1e-3), (3.0, 1e-6)):
        live = live_controls(cfg, gate=gate, tol=tol)
        ev = jax.device_get(trainer.evaluate(params, live))
        for index in (0, 3):
            tr = jax.device_get(fn(params, live, np.int32(index), np.int32(-1)))
            count = int(tr["count"])
            assert tr["values"].shape[1] == layout.units
            # the model's own count for this sample: exactly the evaluation's at the default tol; at 1e-6 in
            # float32 one sample alone may round differently from the batched evaluation (seen: 66 vs 65)
            slack = 0 if tol == 1e-3 else 1
            assert abs(int(tr["iters"]) - int(ev["fwd_iters"][index])) <= slack
            if layout.recurrent:
                assert int(np.sum(tr["step_iters"])) == int(tr["iters"])
                assert count == int(tr["step_iters"][int(tr["time_step"])]) == int(np.max(tr["step_iters"]))
            else:
                assert count == int(tr["iters"])
            np.testing.assert_allclose(np.asarray(tr["output"]), np.asarray(ev["output"][index]), rtol=1e-4,
                                       atol=1e-5)
            # the fixed-point layers at the end of the timeline are the solve's fixed point
            if kind in ("small", "wormhole"):
                x = trainer.task.eval_set[0][index]
                state, _, _ = solve_segment(params["seg"], x, live.gate, trainer.model.spec,
                                            _settings(cfg, live))
                got = tr["values"][count, layout.offsets[1]:layout.offsets[1] + sum(trainer.model.spec.widths)]
                np.testing.assert_allclose(got, np.concatenate([np.asarray(s) for s in state]), rtol=1e-5, atol=1e-6)
            # the start: every fixed-point unit zero; every value finite up to the end (resnet: block 2 NaN first)
            rows = network_figures.heatmap_rows(layout)
            assert np.all(tr["values"][count][rows] == tr["values"][count][rows])
            state_rows = [r for c, col in enumerate(layout.columns) if col.role == "state"
                          for r in range(layout.offsets[c], layout.offsets[c] + col.size)]
            start = tr["values"][0][state_rows]
            assert np.all((start == 0) | np.isnan(start))
    assert fn._cache_size() == 1  # another sample, gate or tol: no new compilation


def _settings(cfg, live):
    from twnn_jax.train import solve_settings

    return solve_settings(cfg, live)


def test_network_figure_has_one_arc_per_wormhole_and_gates_widen_it():
    trainer = trainer_for(TrainConfig(task="digits", hidden=8, batch_size=4))
    layout = network_layout(trainer.model, trainer.task)
    values = np.linspace(-1, 1, layout.units)
    shut = network_figures.network_figure(layout, values, [0.05, 0.1], [0.5, 0.5])
    open_ = network_figures.network_figure(layout, values, [0.9, 0.95], [0.5, 0.5])
    arcs = [t for t in shut["data"] if t.get("meta", {}).get("arc") is not None]
    assert len(arcs) == 2 == shut["layout"]["meta"]["arcs"]
    assert all(w2 > w1 for w1, w2 in zip(shut["layout"]["meta"]["arc_widths"], open_["layout"]["meta"]["arc_widths"]))
    assert "B2 → B1" in arcs[0]["name"] and "B4 → B3" in arcs[1]["name"]
    heat = network_figures.settling_heatmap(layout, np.tile(values, (10, 1)), np.full(10, 0.1), 6, 2)
    assert np.asarray(heat["data"][0]["z"]).shape == (len(network_figures.heatmap_rows(layout)), 7)
    assert heat["layout"]["meta"]["iteration"] == 2 and heat["layout"]["meta"]["iterations"] == 7


def test_models_without_a_fixed_point_have_no_picture():
    trainer = trainer_for(TrainConfig(task="digits", model="resnet_plain", hidden=8, batch_size=4))
    with pytest.raises(ValueError, match="no network picture"):
        network_layout(trainer.model, trainer.task)
