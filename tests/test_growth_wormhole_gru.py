"""The gated wormhole GRU that grows (`twnn_jax.wormhole_gru_growth`): inert masked units, gradients in float64, the
new unit, growth on the adding task without recompiling, and the CLI."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twnn_jax import growth
from twnn_jax import wormhole_growth as wg
from twnn_jax import wormhole_gru_growth as wgg
from twnn_jax.recurrent import cell_for, scan_cell
from twnn_jax.train import TrainConfig, live_controls, trainer_for
from twnn_jax.wormhole import SolveSettings

CONFIG = dict(task="adding", model="wormhole_gru", seq_len=6, hidden=6, batch_size=8)
PATTERN = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]


def _masked(params, pattern):
    """`params` with every layer's active units `pattern`, masked accordingly."""
    params = {**params, "active": [jnp.asarray(pattern, jnp.float32) for _ in params["layers"]]}
    return jax.tree.map(lambda a, m: a * m, params, wgg.unit_mask(params))


def _max_abs(tree) -> float:
    return max(float(jnp.max(jnp.abs(a), initial=0.0)) for a in jax.tree.leaves(tree))


def test_masked_units_are_inert_and_get_no_gradient():
    trainer = trainer_for(TrainConfig(**CONFIG))
    model, live = trainer.model, live_controls(trainer.config, gate=1.0)
    assert wg.growing_layers(model) == (0, 1)
    params = _masked(wg.init_growing(trainer, 0, size=6).params, PATTERN)
    mask = wgg.unit_mask(params)
    moved = {**jax.tree.map(lambda a, m: (a + 0.3) * m, params, mask), "active": params["active"]}
    # what the mask must make irrelevant: weights of the inactive units, non-zero
    leaky = {**jax.tree.map(lambda a, m: a + 0.7 * (1 - m), moved, mask), "active": params["active"]}
    x, y = trainer.task.sample(jax.random.PRNGKey(1), 3)
    settings = SolveSettings(tol=1e-6, max_iter=100)

    def loss(p):
        out, stats, _ = jax.vmap(lambda xi: model.apply(p, xi, live.gate, settings))(x)
        return trainer.task.loss(out, y)[0], stats

    (value, stats), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(moved)
    assert bool(jnp.all(stats.converged))
    leaky_value, _ = jax.jit(loss)(leaky)
    np.testing.assert_allclose(leaky_value, value, rtol=1e-6)  # inactive units take no part
    assert _max_abs(jax.tree.map(lambda g, m: g * (1 - m), grads, mask)) == 0.0  # and get no gradient
    assert _max_abs(grads["active"]) == 0.0  # the mask is not trained
    assert float(jnp.max(jnp.abs(grads["layers"][1]["n_h"]["w"]))) > 0
    # training steps (rule off) keep the inactive weights and their Adam moments at exactly 0
    step = jax.jit(wg.growing_step(trainer))
    state = wg.init_growing(trainer, 0, size=6)._replace(params=moved)
    for _ in range(3):
        state, metrics = step(state, live, False)
    assert int(metrics["size"]) == 2 * int(sum(PATTERN)) and int(metrics["added"]) == 0
    mask = wgg.unit_mask(state.params)
    assert _max_abs(jax.tree.map(lambda a, m: a * (1 - m), state.params, mask)) == 0.0
    mu = state.opt_state.inner_state[-1][0].mu  # (clip, adam) chain: Adam's first moment, shaped like params
    assert _max_abs(jax.tree.map(lambda a, m: a * (1 - m), mu, mask)) == 0.0 and _max_abs(mu["layers"]) > 0


@pytest.fixture
def float64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def test_masked_gradients_match_finite_differences(float64):
    """A half-active stack, gate open: d loss / d params against central differences in float64, in random
    directions over the active weights."""
    cell = cell_for("wormhole_gru", 3, 2, 4)
    params = _masked(cell.init(jax.random.PRNGKey(0)), [1.0, 0.0, 1.0, 1.0])
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    mask = wgg.unit_mask(params)
    xs = jax.random.normal(jax.random.PRNGKey(1), (5, 3), jnp.float64)
    settings = SolveSettings(tol=1e-12, max_iter=2000, bwd_tol=1e-12)

    @jax.jit
    def loss(p):
        outs, _, _ = scan_cell(cell, {**p, "active": params["active"]}, xs, 1.0, settings)
        return jnp.sum(jnp.sin(outs) * (1 + jnp.arange(outs.size).reshape(outs.shape)))

    grads = jax.grad(loss)(params)
    for seed in range(2):
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(jax.random.PRNGKey(10 + seed), len(leaves))
        direction = jax.tree.unflatten(treedef, [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)])
        direction = jax.tree.map(lambda d, m: d * m, direction, mask)
        plus = jax.tree.map(lambda a, d: a + 1e-6 * d, params, direction)
        minus = jax.tree.map(lambda a, d: a - 1e-6 * d, params, direction)
        fd = (loss(plus) - loss(minus)) / 2e-6
        ad = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
        np.testing.assert_allclose(ad, fd, rtol=1e-6, atol=1e-8)


def test_new_unit_starts_just_under_the_threshold():
    cell = cell_for("wormhole_gru", 2, 1, 6)
    params = wgg.with_active(cell.init(jax.random.PRNGKey(0)), 4)
    for layer in (0, 1):
        new = wgg.add_unit(jax.random.PRNGKey(layer), params, layer, jnp.int32(4), jnp.array(True))
        assert new["active"][layer].tolist() == [1, 1, 1, 1, 1, 0]
        assert new["active"][1 - layer].tolist() == [1, 1, 1, 1, 0, 0]
        p = new["layers"][layer]
        assert float(jnp.max(jnp.abs(p["n_h"]["w"][4, :4]))) < 0.1 and float(jnp.max(jnp.abs(p["n_x"]["w"][4]))) < 0.1
        assert float(p["n_x"]["b"][4]) == float(p["zr"]["b"][4]) == float(p["zr"]["b"][10]) == 0.0
        feed_forward, recurrent = wgg._outgoing(new, layer)
        np.testing.assert_allclose(sum(jnp.sum(jnp.abs(b[:, 4])) for b in feed_forward), 0.5 * growth.THRESHOLD,
                                   rtol=1e-5)
        np.testing.assert_allclose(sum(jnp.sum(jnp.abs(b[:, 4])) for b in recurrent),
                                   0.5 * 4 * growth.THRESHOLD / 4, rtol=1e-5)  # N = 4 before
        assert all(float(jnp.sum(jnp.abs(b[:, 5]))) == 0.0 for b in feed_forward + recurrent)
        s = wgg.scores(new, layer)
        t = growth.THRESHOLD  # just under it: 0.5 (0.5 t + 4 (0.5 N t / 4) / (N + 1)), N = 4
        np.testing.assert_allclose(s[4], 0.5 * (0.5 * t + 4 * (0.5 * 4 * t / 4) / 5), rtol=1e-4)
        assert float(s[5]) == 0.0 and bool(jnp.all(s[:4] > growth.THRESHOLD))
    assert float(jnp.sum(jnp.abs(new["hole"]["v"][:4, 4]))) > 0  # the top's new unit reaches layer 0's units ...
    assert float(jnp.sum(jnp.abs(new["hole"]["v"][4:, 4]))) == 0.0  # ... but not its inactive ones
    same = wgg.add_unit(jax.random.PRNGKey(0), params, 0, jnp.int32(4), jnp.array(False))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), same, params))


def test_grows_on_adding_and_never_recompiles():
    trainer = trainer_for(TrainConfig(**CONFIG, grow="on"))  # the CLI test's config: its compilations are cached
    live = live_controls(trainer.config)
    state = trainer.init(0)
    assert [int(jnp.sum(a)) for a in state.params["active"]] == [1, 1]
    sizes = []
    for i in range(3):
        state, out = trainer.run(state, live, 200)
        rows = jax.device_get(out["rows"])
        sizes += rows["size"][: int(out["count"])].tolist()
        if i == 0:
            compiled = trainer.run._cache_size()
    assert trainer.run._cache_size() == compiled  # the size changed, the compiled loop did not
    assert sizes[0] == 2 and sizes[-1] > 4 and len(set(sizes)) > 3, sizes  # (12 slots in all)
    assert sum(int(jnp.sum(a)) for a in state.params["active"]) == sizes[-1]
    assert np.isfinite(float(trainer.evaluate(state.params, live)["loss"]))


@pytest.mark.e2e
def test_cli_trains_a_growing_wormhole_gru_on_adding(tmp_path):
    from twnn_jax import cli

    out = tmp_path / "run"
    args = ["train", "--task", "adding", "--model", "wormhole_gru", "--seq-len", "6", "--hidden", "6",
            "--batch-size", "8", "--grow", "on", "--steps", "150", "--quiet", "--out", str(out)]
    assert cli.main(args) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(isinstance(r["size"], int) and 2 <= r["size"] <= 12 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "wormhole_gru" and summary["final_size"] == rows[-1]["size"]
    assert summary["neurons_added"] - summary["neurons_deleted"] == summary["final_size"] - 2


@pytest.mark.e2e
def test_experiment_growth_gru_part_quick(tmp_path):
    from twnn_jax import cli
    from twnn_jax.experiments.growth_gru import FIXED_SIZES, QUICK

    assert cli.main(["experiment", "growth", "--part", "gru", "--quick", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "experiment" / "growth"
    part = json.loads((folder / "results.json").read_text())["gru"]
    assert set(part["verdicts"]) == {"size_follows_length", "grown_beats_fixed", "same_size_curve_at_every_length"}
    assert all(isinstance(v["holds"], bool) for v in part["verdicts"].values())
    s = part["summary"]
    assert set(s) == {f"adding-{t}" for t in QUICK["lengths"]}
    for n in FIXED_SIZES:
        assert s["adding-6"][f"fixed-{n}"]["final_size"]["values"] == [2 * n] * QUICK["seeds"]  # two layers, rule off
    assert all(2 <= x <= 6 for x in s["adding-6"]["grown"]["final_size"]["values"])  # 20 steps from one unit a layer
    assert all(0.0 <= e["accuracy"]["mean"] <= 1.0 and np.isfinite(e["eval_mse"]["mean"])
               for task in s.values() for e in task.values())
    text = (folder / "RESULTS.md").read_text()
    assert "## Growth for the gated wormhole GRU" in text and "| adding-6 | grown |" in text
    assert (folder / "growth_gru_size.html").is_file()
