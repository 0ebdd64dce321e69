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
    "wormhole_gru": dict(task="adding", model="wormhole_gru", hidden=6, seq_len=6),
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
                # the output column at the end of the timeline: the model's output at that time step
                out = layout.offsets[-1]
                np.testing.assert_allclose(tr["values"][count, out:], np.asarray(ev["output"][index])[
                    int(tr["time_step"])], rtol=1e-4, atol=1e-5)
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
            if kind == "wormhole_gru":  # the end of one step's timeline is the state the next step reads
                t = int(tr["time_step"])
                if t + 1 < cfg.seq_len:
                    after = jax.device_get(fn(params, live, np.int32(index), np.int32(t + 1)))
                    assert int(after["time_step"]) == t + 1
                    got = tr["values"][count, layout.offsets[2]:layout.offsets[-1]]
                    read = after["values"][0, :layout.offsets[1]]  # its h_t−1 column
                    np.testing.assert_allclose(got, read, rtol=1e-5, atol=1e-6)
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


def test_the_gru_cell_picture_one_arc_the_gate_widens_it_and_the_links_are_the_cells():
    from twnn_dashboard import teaching

    cfg = TrainConfig(**CASES["wormhole_gru"], batch_size=4)
    trainer = trainer_for(cfg)
    params = trainer.init(0).params
    layout = network_layout(trainer.model, trainer.task)
    assert [(c.name, c.size, c.role) for c in layout.columns] == [
        ("h_t−1", 12, "input"), ("x_t", 2, "input"), ("L1", 6, "state"), ("L2", 6, "state"), ("out", 1, "output")]
    assert layout.recurrent and layout.carry == ((2, 0), (3, 0))  # every layer's state: the next step's h_t−1
    norms, balance = teaching.hole_norms(layout, params), teaching.hole_balances(layout, params)
    assert norms == [pytest.approx(float(np.linalg.norm(np.asarray(params["hole"]["v"]), 2)), rel=1e-5)]
    values = np.linspace(-1, 1, layout.units)
    widths = []
    for gate in (-3.0, 3.0):  # the evaluation's mean gate (as the page draws it) at a low and a high gate bias
        ev = jax.device_get(trainer.evaluate(params, live_controls(cfg, gate=gate)))
        gate_means = np.asarray(ev["gates"], float).reshape(len(ev["fwd_iters"]), -1).mean(0)
        fig = network_figures.network_figure(layout, values, gate_means, norms, hole_balance=balance)
        arcs = [t for t in fig["data"] if t.get("meta", {}).get("arc") is not None]
        assert len(arcs) == 1 == fig["layout"]["meta"]["arcs"] and "L2 → L1" in arcs[0]["name"]
        widths.append(fig["layout"]["meta"]["arc_widths"][0])
    assert widths[1] > widths[0] + 5
    assert len([t for t in fig["data"] if t.get("name") == "to the next time step"]) == 2
    # forward connections: x_t feeds L1 only; each layer reads its own part of h_t−1 (L1 the upper, L2 the lower)
    fwd = next(t for t in fig["data"] if t.get("name") == "forward")
    segments = [(fwd["x"][i], fwd["x"][i + 1], fwd["y"][i]) for i in range(0, len(fwd["x"]), 3)]
    assert {(a, b) for a, b, _ in segments} == {(1, 2), (0, 2), (0, 3), (2, 3), (3, 4)}
    to_l1 = [y for a, b, y in segments if (a, b) == (0, 2)]
    to_l2 = [y for a, b, y in segments if (a, b) == (0, 3)]
    assert min(to_l1) > max(to_l2)


@pytest.mark.parametrize("task, model", [("digits", "resnet_plain"), ("adding", "gru"), ("adding", "lstm")])
def test_models_without_a_fixed_point_have_no_picture(task, model):
    trainer = trainer_for(TrainConfig(task=task, model=model, hidden=8, seq_len=6, batch_size=4))
    with pytest.raises(ValueError, match="no network picture"):
        network_layout(trainer.model, trainer.task)


# ----------------------------------------------------------------------------------------------
# The adjoint (backward) solve, recorded
# ----------------------------------------------------------------------------------------------


def _sample_grad(trainer, params, live, index, probe=None):
    """The library's gradient of one evaluation sample's loss (and, with a probe, its backward statistics)."""
    return _sample_grad_fn(trainer)(params, live, index, backward_probe_for(probe))


_GRAD_FNS: dict = {}  # one jitted gradient per trainer (index and live values traced), kept with its trainer


def _sample_grad_fn(trainer):
    if id(trainer) not in _GRAD_FNS:
        from twnn_jax import value_and_grad_with_stats
        from twnn_jax.train import solve_settings

        @jax.jit
        def run(params, live, index, probe):
            x, y = (jnp.asarray(a)[index] for a in trainer.task.eval_set[:2])
            s = solve_settings(trainer.config, live)

            def loss(p, pr):
                out, _, _ = trainer.model.apply(p, x, live.gate, s, pr)
                return trainer.task.loss(out[None], y[None])[0]

            _, grads, bst = value_and_grad_with_stats(loss)(params, probe)
            return grads, bst

        _GRAD_FNS[id(trainer)] = (trainer, run)
    return _GRAD_FNS[id(trainer)][1]


def backward_probe_for(probe):
    from twnn_jax import backward_probe

    return backward_probe(()) if probe is None else probe


@pytest.mark.parametrize("kind", ["small", "wormhole", "resnet_fp", "wormhole_gru"])
def test_the_adjoint_trace_counts_what_the_librarys_backward_solve_counts(kind):
    cfg = TrainConfig(**CASES[kind], batch_size=4)
    trainer = trainer_for(cfg)
    params = trainer.init(0).params
    layout = network_layout(trainer.model, trainer.task)
    fn = settle_for(cfg)
    for gate, bwd_tol in ((-2.0, 1e-4), (3.0, 1e-6)):
        live = live_controls(cfg, gate=gate, bwd_tol=bwd_tol)
        for index in (0, 5):
            tr = jax.device_get(fn(params, live, np.int32(index), np.int32(-1)))
            adj = tr["adjoint"]
            _, bst = _sample_grad(trainer, params, live, index)
            if layout.recurrent:  # the library counts every time step's backward solve: trace each one
                steps = [jax.device_get(fn(params, live, np.int32(index), np.int32(t)))["adjoint"]
                         for t in range(cfg.seq_len)]
                assert [int(a["iters"]) for a in steps][int(tr["time_step"])] == int(adj["iters"]) >= 1
                assert sum(int(a["iters"]) for a in steps) == int(bst.iters)
                assert all(bool(a["converged"]) for a in steps) == bool(bst.converged)
            else:
                assert int(adj["iters"]) == int(bst.iters) >= 1
            assert int(adj["count"]) == int(np.sum(np.minimum(adj["solve_iters"], 120)))
            assert bool(adj["converged"]) == bool(bst.converged) or layout.recurrent
            assert adj["values"].shape == tr["values"].shape
            # fixed-point columns only; the start is the right-hand side, the last column the adjoint's end
            rows = [r for c, col in enumerate(layout.columns) if col.role == "state"
                    for r in range(layout.offsets[c], layout.offsets[c] + col.size)]
            other = np.setdiff1d(np.arange(layout.units), rows)
            assert np.isnan(adj["values"][:, other]).all()
            end = adj["values"][int(adj["count"])][rows]
            assert np.isfinite(end).all()
            np.testing.assert_allclose(end, adj["final"][rows], rtol=1e-6, atol=1e-9)
            res = adj["residual"][1:int(adj["count"]) + 1]
            assert np.isfinite(res).all() and float(res[-1]) <= bwd_tol * (1 + 1e-5)
    assert fn._cache_size() == 1


@pytest.fixture
def x64():
    """float64 for this test (the trainer below is built under it; its config is used nowhere else)."""
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("kind", ["wormhole", "resnet_fp", "wormhole_rnn", "wormhole_gru"])
def test_the_recorded_adjoint_is_the_one_the_librarys_gradient_uses_float64(x64, kind):
    from twnn_jax.train import solve_settings
    from twnn_jax.wormhole import bound_holes, sweep

    cfg = TrainConfig(**{**CASES[kind], "hidden": 5}, batch_size=3, seed=7)
    trainer = trainer_for(cfg)
    params = trainer.init(0).params
    assert jax.tree.leaves(params)[0].dtype == jnp.float64
    live = live_controls(cfg, gate=1.0, max_iter=2000)  # the tolerances below the settings' range: float64
    live = live._replace(tol=jnp.float64(1e-12), bwd_tol=jnp.float64(1e-12))
    layout = network_layout(trainer.model, trainer.task)
    spec, s = trainer.model.spec, solve_settings(cfg, live)
    index = 2
    tr = jax.device_get(settle_for(cfg)(params, live, np.int32(index), np.int32(-1)))
    adj = tr["adjoint"]
    assert bool(adj["converged"]) and int(adj["count"]) == int(np.sum(adj["solve_iters"]))  # within the capacity
    last = adj["values"][int(adj["count"])]
    grads = None if layout.recurrent else _sample_grad(trainer, params, live, index)[0]
    x = jnp.asarray(trainer.task.eval_set[0])[index]

    def state_of(col, n=None):  # the recorded adjoint of the `n` fixed-point columns (one segment's) from `col`
        n = len(spec.widths) if n is None else n
        return tuple(jnp.asarray(last[layout.offsets[c]:layout.offsets[c] + layout.columns[c].size])
                     for c in range(col, col + n))

    def through_params(seg_params, inp, u):
        """The parameter gradient an adjoint `u` gives: u^T d sweep / d params at the segment's fixed point."""
        z, _, _ = solve_segment(seg_params, inp, live.gate, spec, s)
        return jax.vjp(lambda p: sweep(z, bound_holes(p, cfg.spectral_bound), inp, jnp.asarray(live.gate, z[0].dtype),
                                       spec, cfg.sweep), seg_params)[1](u)[0]

    if kind == "wormhole":
        checks = [(grads["seg"], through_params(params["seg"], x, state_of(1)))]
    elif kind == "resnet_fp":
        h = jnp.tanh(params["embed"]["w"] @ x + params["embed"]["b"])
        z1, _, _ = solve_segment(params["block12"], h, live.gate, spec, s)
        checks = [(grads["block12"], through_params(params["block12"], h, state_of(2))),
                  (grads["block34"], through_params(params["block34"], z1[-1], state_of(4)))]
    elif kind == "wormhole_gru":  # as wormhole_rnn below: x_t reaches the loss only through step t's solve
        from twnn_jax.recurrent import bound, wgru_sweep

        t = int(tr["time_step"])
        y = jnp.asarray(trainer.task.eval_set[1])[index]
        lib = jax.jit(jax.grad(lambda xs: trainer.task.loss(trainer.model.apply(params, xs, live.gate, s)[0][None],
                                                            y[None])[0]))(x)[t]
        # the step's fixed point and the state it read, as recorded (the check below fails if either is wrong)
        end = tr["values"][int(tr["count"])]
        n_layers = len(params["layers"])
        z = tuple(jnp.asarray(end[layout.offsets[c]:layout.offsets[c] + layout.columns[c].size])
                  for c in range(2, 2 + n_layers))
        prev = tuple(jnp.split(jnp.asarray(end[:layout.offsets[1]]), n_layers))  # the h_t−1 column
        gb = jnp.asarray(live.gate, x.dtype)
        ours = jax.vjp(lambda i: wgru_sweep(z, bound(params, s), i, prev, gb), x[t])[1](state_of(2, n_layers))[0]
        checks = [(lib, ours)]
        assert np.abs(np.asarray(lib)).max() > 1e-8  # a gradient to compare, not two zeros
    else:  # the input of the chosen time step reaches the loss only through that step's solve: the library's
        # gradient with respect to it is u_t^T d sweep / d input at that step's fixed point
        t = int(tr["time_step"])
        y = jnp.asarray(trainer.task.eval_set[1])[index]
        lib = jax.grad(lambda xs: trainer.task.loss(trainer.model.apply(params, xs, live.gate, s)[0][None],
                                                    y[None])[0])(x)[t]
        hprev = jnp.zeros(spec.widths[-1])
        for k in range(t):
            hprev = solve_segment(params["seg"], jnp.concatenate([x[k], hprev]), live.gate, spec, s)[0][-1]
        inp = jnp.concatenate([x[t], hprev])
        z, _, _ = solve_segment(params["seg"], inp, live.gate, spec, s)
        p = bound_holes(params["seg"], cfg.spectral_bound)
        gb = jnp.asarray(live.gate, z[0].dtype)
        ours = jax.vjp(lambda i: sweep(z, p, i, gb, spec, cfg.sweep), inp)[1](state_of(1))[0][: x.shape[-1]]
        checks = [(lib, ours)]
    for lib, ours in checks:
        for a, b in zip(jax.tree.leaves(lib), jax.tree.leaves(ours)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-7, atol=1e-10)


def test_the_arc_colour_is_the_sign_of_the_wormhole_weight():
    from twnn_dashboard import teaching

    trainer = trainer_for(TrainConfig(task="digits", hidden=8, batch_size=4))
    layout = network_layout(trainer.model, trainer.task)
    params = trainer.init(0).params
    flipped = jax.tree.map(lambda a: a, params)
    flipped["block12"]["holes"][0]["v"] = -params["block12"]["holes"][0]["v"]
    values = np.linspace(-1, 1, layout.units)

    def colours(p):
        fig = network_figures.network_figure(layout, values, [0.5, 0.5], teaching.hole_norms(layout, p),
                                             hole_balance=teaching.hole_balances(layout, p))
        arcs = [t for t in fig["data"] if t.get("meta", {}).get("arc") is not None]
        assert [a["line"]["color"] for a in arcs] == fig["layout"]["meta"]["arc_colors"]
        return fig["layout"]["meta"]["arc_colors"], arcs

    before, arcs = colours(params)
    after, flipped_arcs = colours(flipped)
    assert after[0] != before[0] and after[1] == before[1]  # only the flipped wormhole changes colour
    b0 = teaching.hole_balances(layout, params)[0]
    assert teaching.hole_balances(layout, flipped)[0] == pytest.approx(-b0)
    assert ("+" if b0 > 0 else "-") in arcs[0]["text"][0].split("Σv / Σ|v| = ")[1][:1]
    # all positive: orange, all negative: teal, cancelling: grey
    assert network_figures.arc_color(network_figures.weight_balance(np.ones((3, 3)))) == network_figures.ARC_COLOR
    assert network_figures.arc_color(network_figures.weight_balance(-np.ones((3, 3)))) == network_figures.ARC_NEG_COLOR
    assert network_figures.arc_color(network_figures.weight_balance(np.array([1.0, -1.0]))) == \
        network_figures.ARC_MID_COLOR
