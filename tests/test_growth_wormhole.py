"""Wormhole networks that grow (`twnn_jax.wormhole_growth`): inert masked units, the new unit, no recompilation, CLI."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twnn_jax import growth
from twnn_jax import wormhole_growth as wg
from twnn_jax.train import TrainConfig, backward_probe, build_trainer, live_controls, solve_settings, trainer_for

CASES = {"sine": dict(task="sine", hidden=8), "digits": dict(task="digits", model="wormhole", hidden=6, batch_size=16)}


def _plain(name):
    return trainer_for(TrainConfig(**CASES[name]))


def _with_holes(trainer, params, layers, pattern):
    """`params` whose growing layers have the active units `pattern` (a 0/1 list), masked accordingly."""
    active = list(params["seg"]["active"])
    for i in layers:
        active[i] = jnp.asarray(pattern, jnp.float32)
    params = {**params, "seg": {**params["seg"], "active": active}}
    return jax.tree.map(lambda a, m: a * m, params, wg.unit_mask(params, trainer.model.spec))


def _pattern(width):
    return [1.0 if i % 3 != 1 else 0.0 for i in range(width)]  # 1, 0, 1, 1, 0, 1, ...


@pytest.mark.parametrize("name", list(CASES))
def test_masked_units_stay_zero_and_get_no_gradient(name):
    trainer = _plain(name)
    model, cfg = trainer.model, trainer.config
    layers = wg.growing_layers(model)
    state = wg.init_growing(trainer, 0, size=cfg.hidden)
    params = _with_holes(trainer, state.params, layers, _pattern(cfg.hidden))
    # weights trained away from their initial values, so that a leak would show
    moved = jax.tree.map(lambda a, m: (a + 0.3) * m, params, wg.unit_mask(params, model.spec))
    params = {**moved, "seg": {**moved["seg"], "active": params["seg"]["active"]}}
    live = live_controls(cfg, gate=1.0)
    x, y = trainer.task.sample(jax.random.PRNGKey(1), 3)
    off = np.asarray(_pattern(cfg.hidden)) == 0
    settings = solve_settings(cfg, live)
    z, stats, _ = jax.jit(jax.vmap(lambda xi: model.solve(params, xi, live.gate, settings)))(x)
    assert bool(jnp.all(stats.converged))
    for i in layers:
        assert np.all(np.asarray(z[i])[:, off] == 0.0)  # exactly 0, not small
        assert np.all(np.any(np.asarray(z[i])[:, ~off] != 0.0, axis=1))

    def loss(p):
        out, _, _ = jax.vmap(lambda xi, pi: model.apply(p, xi, live.gate, settings, pi))(x, backward_probe((3,), 0))
        return trainer.task.loss(out, y)[0]

    grads = jax.jit(jax.grad(loss))(params)
    mask = wg.unit_mask(params, model.spec)
    leaked = jax.tree.map(lambda g, m: float(jnp.max(jnp.abs(g * (1 - m)), initial=0.0)), grads, mask)
    assert max(jax.tree.leaves(leaked)) == 0.0, leaked
    assert float(jnp.max(jnp.abs(grads["seg"]["layers"][0]["w"]))) > 0
    assert all(float(jnp.max(jnp.abs(a))) == 0.0 for a in grads["seg"]["active"])  # the mask is not trained
    # a training step (rule off) keeps the inactive weights and their Adam moments at exactly 0
    step = jax.jit(wg.growing_step(trainer))
    st = state._replace(params=params)
    for _ in range(3):
        st, metrics = step(st, live, False)
    assert int(metrics["size"]) == int(sum(_pattern(cfg.hidden))) * len(layers) and int(metrics["added"]) == 0
    mask = wg.unit_mask(st.params, model.spec)
    assert max(jax.tree.leaves(jax.tree.map(lambda a, m: float(jnp.max(jnp.abs(a * (1 - m)), initial=0.0)),
                                            st.params, mask))) == 0.0
    mu = st.opt_state.inner_state[-1][0].mu  # (clip, adam) chain: Adam's first moment, shaped like params
    assert float(jnp.max(jnp.abs(mu["seg"]["layers"][0]["w"] * (1 - mask["seg"]["layers"][0]["w"])))) == 0.0
    assert float(jnp.max(jnp.abs(mu["seg"]["layers"][0]["w"]))) > 0


def test_new_unit_starts_just_under_the_threshold():
    trainer = _plain("digits")  # three layers, a head, a wormhole from the last layer back to the first
    spec = trainer.model.spec
    params = wg.init_growing(trainer, 0, size=4).params
    for layer in (0, 2):
        new = wg.add_unit(jax.random.PRNGKey(layer), params, spec, layer, jnp.int32(4), jnp.array(True))
        assert new["seg"]["active"][layer].tolist() == [1, 1, 1, 1, 1, 0]
        assert float(jnp.max(jnp.abs(new["seg"]["layers"][layer]["w"][4]))) < 0.1  # incoming ~ N(0, 0.01^2)
        assert float(new["seg"]["layers"][layer]["b"][4]) == 0.0
        readout = new["seg"]["layers"][layer + 1]["w"] if layer < 2 else new["head"]["w"]
        np.testing.assert_allclose(jnp.sum(jnp.abs(readout[:, 4])), 0.5 * growth.THRESHOLD, rtol=1e-5)
        assert float(jnp.sum(jnp.abs(readout[:, 5]))) == 0.0
        s = wg.scores(new, spec, layer)
        assert 0 < float(s[4]) <= growth.THRESHOLD and float(s[5]) == 0.0
    # the wormhole leaves layer 2: its outgoing column there has L1 norm 0.5 N THRESHOLD / 4 (N = 4 before)
    np.testing.assert_allclose(jnp.sum(jnp.abs(new["seg"]["holes"][0]["v"][:, 4])), 0.5 * 4 * growth.THRESHOLD / 4,
                               rtol=1e-5)
    assert float(jnp.sum(jnp.abs(new["seg"]["holes"][0]["v"][4, :4]))) == 0.0  # layer 0's unit 4 is still off
    same = wg.add_unit(jax.random.PRNGKey(0), params, spec, 0, jnp.int32(4), jnp.array(False))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), same, params))


def test_sine_net_grows_and_never_recompiles():
    trainer = trainer_for(TrainConfig(task="sine", grow="on", hidden=16))
    assert trainer.model.kind == "small"
    live = live_controls(trainer.config)
    state = trainer.init(0)
    assert int(jnp.sum(state.params["seg"]["active"][0])) == 1
    sizes = []
    for i in range(8):
        state, out = trainer.run(state, live, 256)
        rows = jax.device_get(out["rows"])
        sizes += rows["size"][: int(out["count"])].tolist()
        if i == 0:
            compiled = trainer.run._cache_size()
    assert trainer.run._cache_size() == compiled  # the size changed, the compiled loop did not
    assert sizes[-1] > 1 and len(set(sizes)) > 2, sizes
    assert int(jnp.sum(state.params["seg"]["active"][0])) == sizes[-1]
    steps = trainer.step._cache_size()
    for _ in range(3):
        state, m = trainer.step(state, live)
    assert trainer.step._cache_size() <= max(steps, 1)
    ev = trainer.evaluate(state.params, live)
    assert np.isfinite(float(ev["loss"])) and float(ev["loss"]) < 0.01


def test_growth_on_a_model_that_cannot_grow_is_a_clear_error():
    with pytest.raises(ValueError, match="grow must be off for the adding task with model wormhole_rnn"):
        build_trainer(TrainConfig(task="adding", grow="on"))
    with pytest.raises(ValueError, match="grow must be off for the digits task with model resnet_fp"):
        build_trainer(TrainConfig(task="digits", grow="on"))
    with pytest.raises(ValueError, match="growth works on the models small, wormhole"):
        wg.growing_layers(trainer_for(TrainConfig(task="digits", model="resnet_fp", hidden=8)).model)


@pytest.mark.e2e
def test_cli_train_sine_with_growth_and_resume(tmp_path, capsys):
    from twnn_jax import cli

    out = tmp_path / "run"
    args = ["train", "--task", "sine", "--grow", "on", "--hidden", "8", "--steps", "300", "--quiet"]
    assert cli.main([*args, "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 301))
    assert all(isinstance(r["size"], int) and 1 <= r["size"] <= 8 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "small" and summary["final_size"] == rows[-1]["size"]
    assert summary["neurons_added"] - summary["neurons_deleted"] == summary["final_size"] - 1
    assert summary["max_size"] > 1
    assert "network size" in capsys.readouterr().out
    assert cli.main(["train", "--resume", str(out), "--steps", "10", "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 310 and all("size" in r for r in rows)


@pytest.mark.e2e
def test_experiment_growth_wormhole_part_quick(tmp_path, capsys):
    from twnn_jax import cli
    from twnn_jax.experiments.growth_wormhole import FIXED_SIZES, QUICK

    assert cli.main(["experiment", "growth", "--part", "wormhole", "--quick", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "experiment" / "growth"
    results = json.loads((folder / "results.json").read_text())
    part = results["wormhole"]
    assert set(part["verdicts"]) == {"size_follows_difficulty", "grown_beats_fixed"}
    assert all(isinstance(v["holds"], bool) for v in part["verdicts"].values())
    s = part["summary"]
    assert set(s) == {"sine-1", "sine-2", "sine-3"}
    for n in FIXED_SIZES:
        assert s["sine-2"][f"fixed-{n}"]["final_size"]["values"] == [n] * QUICK["seeds"]  # the rule off
    grown = s["sine-3"]["grown"]["final_size"]["values"]
    assert all(1 <= x <= 3 for x in grown)  # 40 steps from one unit: at most a few added
    assert all(np.isfinite(e["eval_mse"]["mean"]) for task in s.values() for e in task.values())
    assert part["meta"]["code"] is not None and "summary" not in results  # the brackets part was not run
    text = (folder / "RESULTS.md").read_text()
    assert "## Growth for wormhole networks" in text and "| sine-3 | grown |" in text
    assert cli.main(["experiment", "paper", "--part", "wormhole", "--out", str(tmp_path)]) == 2
    assert "--part is for the growth experiment" in capsys.readouterr().err


def _summary(grown_sizes, grown_mse, fixed_mse):
    """A summarize()-shaped summary: per task the grown run's sizes and eval MSE, the fixed runs' eval MSE."""
    def stats(values):
        return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": list(values)}
    return {task: {"grown": {"final_size": stats(sizes), "eval_mse": stats([mse])},
                   **{f"fixed-{n}": {"eval_mse": stats([m])} for n, m in fixed_mse[task].items()}}
            for (task, sizes), mse in zip(grown_sizes.items(), grown_mse)}


def test_size_verdicts_of_every_growth_part():
    from twnn_jax.experiments.growth_wormhole import size_verdicts

    fixed = {"a": {2: 0.5, 4: 0.3}, "b": {2: 0.5, 4: 0.1}, "c": {2: 0.5, 4: 0.3}}
    s = _summary({"a": [2, 2], "b": [3, 4], "c": [6, 6]}, [0.2, 0.2, 0.2], fixed)
    v = size_verdicts(s, (2, 4), "size_follows_difficulty", "grown size")
    assert v["size_follows_difficulty"]["holds"] is True
    assert v["size_follows_difficulty"]["text"] == ("grown size, mean ± std over seeds: a: 2.0 ± 0.0, b: 3.5 ± 0.5, "
                                                    "c: 6.0 ± 0.0")
    assert v["grown_beats_fixed"]["holds"] is False  # on b, fixed-4 (0.1) beats the grown net (0.2)
    assert v["grown_beats_fixed"]["text"] == ("a: lower eval MSE than fixed 2, 4; b: lower eval MSE than fixed 2; "
                                              "c: lower eval MSE than fixed 2, 4")
    overlap = _summary({"a": [1, 3], "b": [3, 4], "c": [3, 4]}, [0.2, 0.2, 0.2], fixed)  # c's mean is above a's,
    assert not size_verdicts(overlap, (2,), "k", "n")["k"]["holds"]  # but first and last overlap within their std
    flat = _summary({"a": [2, 2], "b": [2, 2], "c": [6, 6]}, [0.2, 0.2, 0.2], fixed)
    assert not size_verdicts(flat, (2,), "k", "n")["k"]["holds"]  # a to b does not grow
    assert size_verdicts(flat, (2,), "k", "n")["grown_beats_fixed"]["holds"] is True  # only fixed-2 asked


def test_a_growth_part_plan_takes_seeds_and_refuses_none():
    from twnn_jax.experiments.growth_wormhole import FULL, QUICK, part_plan

    assert part_plan(FULL, QUICK, quick=True, seeds=None) == QUICK
    assert part_plan(FULL, QUICK, quick=False, seeds=5) == {**FULL, "seeds": 5}
    with pytest.raises(ValueError, match="seeds must be >= 1, got 0"):
        part_plan(FULL, QUICK, quick=False, seeds=0)


# ---- the number of wormholes grows (grow=wormholes) -----------------------------------------------------------
def _holes_trainer(**over):
    cfg = TrainConfig(task="sine", model="wormhole", grow="wormholes", hidden=6, **over)
    return build_trainer(cfg, rule=False), cfg


def test_inactive_wormholes_carry_nothing_and_get_no_gradient():
    """An inactive wormhole's gate is 0 whatever its weights, the fixed point is the one of the net without it, and
    no gradient reaches its weights; a step (rule off) keeps them and their Adam moments at 0."""
    from twnn_jax.models import every_wormhole

    trainer, cfg = _holes_trainer()
    model = trainer.model
    assert model.spec.wormholes == every_wormhole() and len(every_wormhole()) == 6
    state = wg.init_growing(trainer, 0, size=6)
    on = jnp.asarray([1, 0, 1, 0, 0, 1], jnp.float32)
    params = {**state.params, "seg": {**state.params["seg"], "holes_active": on}}
    params = jax.tree.map(lambda a, m: a * m, params, wg.hole_mask(params))
    moved = jax.tree.map(lambda a, m: (a + 0.3) * m, params, wg.hole_mask(params))  # trained away from 0
    params = {**moved, "seg": {**moved["seg"], "holes_active": on}}
    live = live_controls(cfg, gate=2.0)
    settings = solve_settings(cfg, live)
    x, y = trainer.task.sample(jax.random.PRNGKey(1), 3)
    z, stats, g = jax.jit(jax.vmap(lambda xi: model.solve(params, xi, live.gate, settings)))(x)
    assert bool(jnp.all(stats.converged))
    assert np.all(np.asarray(g)[:, np.asarray(on) == 0] == 0.0) and np.all(np.asarray(g)[:, np.asarray(on) == 1] > 0)
    # the same fixed point as a net built with only the active wormholes
    from twnn_jax.wormhole import SegmentSpec, solve_segment

    kept = [k for k in range(6) if on[k] == 1]
    spec = SegmentSpec(model.spec.n_in, model.spec.widths, tuple(model.spec.wormholes[k] for k in kept))
    seg = {"layers": params["seg"]["layers"], "holes": [params["seg"]["holes"][k] for k in kept]}
    z_only, _, _ = jax.vmap(lambda xi: solve_segment(seg, xi, live.gate, spec, settings))(x)
    for a, b in zip(z, z_only):
        np.testing.assert_allclose(a, b, atol=1e-6)

    def loss(p):
        out, _, _ = jax.vmap(lambda xi, pi: model.apply(p, xi, live.gate, settings, pi))(x, backward_probe((3,), 0))
        return trainer.task.loss(out, y)[0]

    grads = jax.jit(jax.grad(loss))(params)
    for k in range(6):
        norm = max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(grads["seg"]["holes"][k]))
        assert (norm == 0.0) == (on[k] == 0), (k, norm)
    assert float(jnp.max(jnp.abs(grads["seg"]["holes_active"]))) == 0.0  # the mask is not trained
    step = jax.jit(wg.growing_step(trainer))
    st = state._replace(params=params)
    for _ in range(3):
        st, metrics = step(st, live, False)
    assert int(metrics["size"]) == 3 and int(metrics["added"]) == 0
    mu = st.opt_state.inner_state[-1][0].mu
    for k in (1, 3, 4):
        assert float(jnp.max(jnp.abs(st.params["seg"]["holes"][k]["v"]))) == 0.0
        assert float(jnp.max(jnp.abs(mu["seg"]["holes"][k]["v"]))) == 0.0
    assert float(jnp.max(jnp.abs(mu["seg"]["holes"][0]["v"]))) > 0


def test_new_wormhole_starts_just_under_the_threshold_with_its_gate_closed_to_learning():
    trainer, _ = _holes_trainer()
    params = wg.init_growing(trainer, 0, size=1).params
    assert params["seg"]["holes_active"].tolist() == [1, 0, 0, 0, 0, 0]
    new = wg.add_hole(jax.random.PRNGKey(3), params, jnp.int32(1), jnp.array(True))
    assert new["seg"]["holes_active"].tolist() == [1, 1, 0, 0, 0, 0]
    s = wg.hole_scores(new)
    np.testing.assert_allclose(float(s[1]), 0.5 * growth.THRESHOLD, rtol=1e-5)  # columns' mean L1 norm
    assert float(s[2]) == 0.0 and float(s[0]) > growth.THRESHOLD
    assert float(jnp.max(jnp.abs(new["seg"]["holes"][1]["q"]))) == 0.0 and float(new["seg"]["holes"][1]["d"]) == 0.0
    same = wg.add_hole(jax.random.PRNGKey(3), params, jnp.int32(1), jnp.array(False))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), same, params))


def test_wormholes_grow_and_never_recompile():
    trainer = trainer_for(TrainConfig(task="sine", model="wormhole", grow="wormholes", hidden=8))
    live = live_controls(trainer.config)
    state = trainer.init(0)
    assert state.params["seg"]["holes_active"].tolist() == [1, 0, 0, 0, 0, 0]
    sizes = []
    for i in range(4):
        state, out = trainer.run(state, live, 200)
        sizes += jax.device_get(out["rows"])["size"][: int(out["count"])].tolist()
        if i == 0:
            compiled = trainer.run._cache_size()
    assert trainer.run._cache_size() == compiled  # the count changed, the compiled loop did not
    assert sizes[0] == 1 and sizes[-1] > 1 and len(set(sizes)) > 2, sizes
    assert int(jnp.sum(state.params["seg"]["holes_active"])) == sizes[-1]
    ev = trainer.evaluate(state.params, live)
    assert np.isfinite(float(ev["loss"]))


def test_wormhole_growth_needs_the_wormhole_model():
    for cfg in (TrainConfig(task="sine", grow="wormholes"), TrainConfig(task="digits", grow="wormholes"),
                TrainConfig(task="brackets-easy", grow="wormholes")):
        with pytest.raises(ValueError, match="grow=wormholes needs the model wormhole"):
            build_trainer(cfg)


@pytest.mark.e2e
def test_cli_train_sine_growing_wormholes(tmp_path, capsys):
    from twnn_jax import cli

    out = tmp_path / "run"
    assert cli.main(["train", "--task", "sine", "--model", "wormhole", "--grow", "wormholes", "--hidden", "6",
                     "--steps", "300", "--quiet", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(isinstance(r["size"], int) and 1 <= r["size"] <= 6 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["grows"] == "wormholes" and summary["final_size"] == rows[-1]["size"]
    assert "wormholes at the end" in capsys.readouterr().out


@pytest.mark.e2e
def test_experiment_growth_holes_part_quick(tmp_path):
    from twnn_jax import cli
    from twnn_jax.experiments.growth import PARTS
    from twnn_jax.experiments.growth_holes import FIXED_COUNTS, QUICK

    parser_parts = next(a for a in cli.build_parser()._subparsers._group_actions[0].choices["experiment"]._actions
                        if a.dest == "part").choices
    assert list(parser_parts) == list(PARTS)  # the CLI offers every part
    assert cli.main(["experiment", "growth", "--part", "holes", "--quick", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "experiment" / "growth"
    part = json.loads((folder / "results.json").read_text())["holes"]
    assert set(part["summary"]) == {"sine-1", "sine-2", "sine-3"}
    for by_name in part["runs"].values():
        assert list(by_name) == ["grown"] + [f"fixed-{n}" for n in FIXED_COUNTS]
        for n in FIXED_COUNTS:
            assert all(r["size"] == [n] * (QUICK["steps"] // QUICK["every"]) for r in by_name[f"fixed-{n}"])
    text = (folder / "RESULTS.md").read_text()
    assert "## Growth of the number of wormholes" in text and (folder / "growth_holes_size.html").is_file()
