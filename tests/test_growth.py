"""Networks that grow (seed 003, `twnn_jax.growth`): the add/delete rule, no recompilation, gradients, the texts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twnn_jax import growth
from twnn_jax.tasks.brackets import bracket_text, brackets_task, decode


def _stream(kind="hard"):
    return growth.stream_of(kind, length=20_000)


# ---- the texts ------------------------------------------------------------------------------------------
def test_easy_text_is_groups_of_ab():
    text = decode(bracket_text("easy", 0, 4000))
    groups = text.split(")")[:-1]
    assert all(g.startswith("(ab") and g[1:] == "ab" * (len(g[1:]) // 2) for g in groups)
    extra = np.array([len(g[1:]) // 2 - 1 for g in groups])  # further "ab" per group: P(k) = 0.6^k 0.4, mean 1.5
    assert 1.2 < extra.mean() < 1.8


def test_hard_text_each_group_is_the_previous_reversed_with_one_flip():
    groups = decode(bracket_text("hard", 0, 7000))[1:].split(")(")[:-1]
    assert all(len(g) == 6 and set(g) <= {"a", "b"} for g in groups)
    for prev, cur in zip(groups, groups[1:]):
        assert sum(a != b for a, b in zip(prev[::-1], cur)) == 1


def test_brackets_task_batches():
    task = brackets_task("hard")
    x, y = task.sample(jax.random.PRNGKey(0), 3)
    assert x.shape == (3, 40, 4) and y.shape == (3, 40)
    assert jnp.all(jnp.argmax(x[:, 1:], -1) == y[:, :-1])  # y is x shifted by one symbol
    with pytest.raises(ValueError, match="easy, hard"):
        bracket_text("medium")


# ---- the rule ---------------------------------------------------------------------------------------------
def _params(n_slots=12, active=10, sub=5, seed=0):
    """`active` neurons, the first `sub` of them with no outgoing weights (score 0), the others well above."""
    st = growth.init_state(jax.random.PRNGKey(seed), active, max_size=n_slots)
    p = st.params
    strong = (jnp.arange(n_slots) >= sub) * p["active"]
    p = {**p, "Why": jnp.ones_like(p["Why"]) * strong[None, :], "Whh": p["Whh"] * 0 + 0.5 * strong[None, :]
         * p["active"][:, None]}
    return p, st


# params go in as an argument: closed over, they become constants that XLA folds for minutes at compile time
_decide_many = jax.jit(jax.vmap(growth.resize_decision, in_axes=(0, None)))


def _decisions(params, n):
    return _decide_many(jax.random.split(jax.random.PRNGKey(1234), n), params)


N_DRAWS = 200_000  # fixed keys: the counts below are deterministic, the bounds are 7 standard deviations


def test_delete_rule_statistics():
    params, _ = _params(sub=5)
    d = jax.device_get(_decisions(params, N_DRAWS))
    deleted = d.deleted.astype(float)
    assert not deleted[:, 5:].any()  # above threshold or inactive: never deleted
    kept = (~d.deleted[:, :5]).sum(1)
    assert kept.min() >= 1  # MARGIN = 1 sub-threshold neuron always kept
    # each of the 5 is kept with probability 1/5, else deleted with P_DELETE: P(deleted) = 0.8 * 0.05 = 0.04
    p, sd = 0.8 * growth.P_DELETE, np.sqrt(0.04 * 0.96 / N_DRAWS)
    freq = deleted[:, :5].mean(0)
    assert np.all(np.abs(freq - p) < 7 * sd), freq
    # more than MARGIN sub-threshold neurons remain, so only spontaneous adds: P = 1e-4, ~20 of 200k
    assert 2 <= d.added.sum() <= 55
    remaining = (np.asarray(params["active"]) > 0)[None, :] & ~d.deleted
    assert np.all(d.slot[d.added] == np.argmin(remaining, 1)[d.added])  # the first free slot after deleting
    assert np.any(d.slot[d.added] == 10) and np.any(d.slot[d.added] < 5)


def test_add_rule_statistics_and_no_delete_at_margin():
    params, _ = _params(sub=0)
    d = jax.device_get(_decisions(params, N_DRAWS))
    assert not d.deleted.any()
    p = growth.P_ADD + growth.P_SPONTANEOUS - growth.P_ADD * growth.P_SPONTANEOUS
    sd = np.sqrt(p * (1 - p) / N_DRAWS)
    assert abs(d.added.mean() - p) < 7 * sd, d.added.mean()
    one_sub, _ = _params(sub=1)  # exactly MARGIN sub-threshold: nothing deleted, only spontaneous adds
    d1 = jax.device_get(_decisions(one_sub, N_DRAWS))  # one size of draw throughout: one compilation
    assert not d1.deleted.any() and d1.added.sum() <= 55  # P_SPONTANEOUS = 1e-4: ~20 of 200k
    full, _ = _params(n_slots=12, active=12, sub=0)
    assert not _decisions(full, N_DRAWS).added.any()  # no free slot: never adds


def test_new_neuron_starts_just_under_the_threshold():
    params, st = _params(sub=0)
    decision = growth.Resize(jnp.zeros(12, bool).at[3].set(True), jnp.array(True), jnp.array(10))
    new, mem, h = growth.apply_resize(jax.random.PRNGKey(5), params, st.mem, jnp.ones(12) * params["active"],
                                      decision)
    assert new["active"].tolist() == [1] * 3 + [0] + [1] * 7 + [0]
    assert float(jnp.sum(jnp.abs(new["Why"][:, 3]))) == 0 and float(jnp.sum(jnp.abs(new["Whh"][3]))) == 0
    assert h[3] == 0 and h[10] == 0
    np.testing.assert_allclose(jnp.sum(jnp.abs(new["Why"][:, 10])), 0.5 * growth.THRESHOLD, rtol=1e-5)
    n_before = 9  # 10 active, one deleted
    np.testing.assert_allclose(jnp.sum(jnp.abs(new["Whh"][:, 10])), 0.5 * n_before * growth.THRESHOLD / 4, rtol=1e-5)
    assert float(jnp.sum(jnp.abs(new["Whh"][:, 3]))) == 0 and float(jnp.max(jnp.abs(new["Whh"][10]))) < 0.1
    score = growth.scores(new)[10]
    assert 0.02 < score <= growth.THRESHOLD  # 0.5 (0.025 + 0.025 * 9/10): sub-threshold, must earn its place
    assert mem["Whh"][10, 0] == growth.MEM_INIT and mem["Why"][0, 10] == growth.MEM_INIT


# ---- training ---------------------------------------------------------------------------------------------
def test_growth_adds_neurons_where_one_is_not_enough_and_never_recompiles():
    stream = _stream("hard")
    state = growth.init_state(jax.random.PRNGKey(0), 1)
    before = growth.run_cycles._cache_size()
    sizes, losses = [], []
    for _ in range(4):
        state, rows = growth.run_cycles(state, stream, jnp.asarray(True), 100, 50)
        sizes.append(int(rows["size"][-1]))
        losses.append(float(rows["loss"][-1]))
        if len(sizes) == 1:
            compiled = growth.run_cycles._cache_size()
    assert compiled - before <= 1
    assert growth.run_cycles._cache_size() == compiled  # the size changed, the compiled function did not
    assert sizes[-1] > 1 and len(set(sizes)) > 1, sizes
    assert int(jnp.sum(state.params["active"])) == sizes[-1]
    # the inactive slots hold nothing
    off = state.params["active"] == 0
    assert float(jnp.max(jnp.abs(state.params["Why"][:, off]), initial=0.0)) == 0.0
    # growth off: a fixed one-neuron net stays one neuron, on the same compiled function
    fixed = growth.init_state(jax.random.PRNGKey(0), 1)
    fixed, rows = growth.run_cycles(fixed, stream, jnp.asarray(False), 100, 50)
    assert rows["size"].tolist() == [1, 1]
    assert growth.run_cycles._cache_size() == compiled


def test_switch_schedule_reads_each_text_in_turn():
    stream = growth.stream_of("easy", "hard", "easy", switch_at=(3, 5), length=5000)
    state = growth.init_state(jax.random.PRNGKey(0), 2)
    texts = []
    for _ in range(7):
        state, m = growth.cycle(state, stream, False)
        texts.append(int(m["text"]))
    assert texts == [0, 0, 0, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="switch cycles"):
        growth.stream_of("easy", "hard", switch_at=())


def test_sequence_loss_gradient_matches_finite_differences_in_float64():
    from jax.test_util import check_grads

    jax.config.update("jax_enable_x64", True)
    try:
        st = growth.init_state(jax.random.PRNGKey(3), 4, max_size=6)
        weights = {k: (st.params[k] * 30).astype(jnp.float64) for k in growth.WEIGHTS}  # not tiny: tanh non-linear
        weights["bh"] = weights["bh"] + 0.1
        active = st.params["active"].astype(jnp.float64)
        text = jnp.asarray(bracket_text("hard", 0, 30))
        h0 = jnp.linspace(-0.5, 0.5, 6) * active

        def loss(w):
            return growth.sequence_loss(w, active, h0, text[:-1], text[1:])[0]

        assert loss(weights).dtype == jnp.float64
        check_grads(loss, (weights,), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)
        grads = jax.grad(loss)(weights)
        assert float(jnp.max(jnp.abs(grads["Whh"][4:]))) == 0.0  # inactive slots get no gradient
        assert float(jnp.max(jnp.abs(grads["Why"][:, 4:]))) == 0.0
    finally:
        jax.config.update("jax_enable_x64", False)


# ---- end to end -------------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_cli_train_brackets_with_growth_and_resume(tmp_path, capsys):
    import json

    from twnn_jax import cli

    out = tmp_path / "run"
    args = ["train", "--task", "brackets-easy", "--grow", "on", "--hidden", "12", "--steps", "60", "--quiet"]
    assert cli.main([*args, "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 61))
    assert all(isinstance(r["size"], int) and 1 <= r["size"] <= 12 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "growing_rnn" and summary["final_size"] == rows[-1]["size"]
    assert summary["max_size"] == max(r["size"] for r in rows)
    assert summary["neurons_added"] - summary["neurons_deleted"] == summary["final_size"] - 1
    assert "network size" in capsys.readouterr().out
    assert cli.main(["train", "--resume", str(out), "--steps", "10", "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 70 and all("size" in r for r in rows)
    # a fixed net of `hidden` neurons
    fixed = tmp_path / "fixed"
    assert cli.main(["train", "--task", "brackets-hard", "--hidden", "7", "--steps", "5", "--quiet",
                     "--out", str(fixed)]) == 0
    assert json.loads((fixed / "summary.json").read_text())["final_size"] == 7


@pytest.mark.e2e
@pytest.mark.parametrize("argv, names", [
    (["--task", "digits", "--grow", "on"], "--grow"),
    (["--task", "brackets-easy", "--grow", "maybe"], "grow must be one of off, on"),
    (["--task", "brackets-hard", "--model", "gru"], "--model"),
])
def test_cli_bad_growth_settings_are_one_line(tmp_path, capsys, argv, names):
    from twnn_jax import cli

    assert cli.main(["train", *argv, "--steps", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert names in err and "\n" not in err and "Traceback" not in err


@pytest.mark.e2e
def test_experiment_growth_quick(tmp_path):
    import json

    from twnn_jax import cli

    # the brackets part (the wormhole part has its own quick test in test_growth_wormhole.py)
    assert cli.main(["experiment", "growth", "--part", "brackets", "--quick", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "experiment" / "growth"
    results = json.loads((folder / "results.json").read_text())
    assert "wormhole" not in results
    assert set(results["verdicts"]) == {"size_follows_difficulty", "variable_beats_fixed", "grows_after_switch",
                                        "shrinks_after_switch_back"}
    s = results["summary"]
    assert s["fixed-27"]["final_size"] == [27, 27] and len(s["easy"]["size"]["median"]) == 3
    assert all(isinstance(v["holds"], bool) for v in results["verdicts"].values())
    text = (folder / "RESULTS.md").read_text()
    assert "| variable size beats every fixed size (hard) |" in text
    assert (folder / "growth_size.html").is_file()
    assert cli.main(["experiment", "growth", "--check", "--out", str(tmp_path)]) in (0, 1)
