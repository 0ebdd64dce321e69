"""Seed 002: the soft winner-take-all network and its feed-forward surrogate, surrogates of the project's nets,
warm starts (offline and trained alongside), float64 finite-difference checks of the new paths through `fix`,
and the `twnn surrogate` command and `--warm-start` flag end to end. Tiny sizes throughout."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twnn_jax import cli, surrogate, warm, wta
from twnn_jax.train import TrainConfig, live_controls, train, trainer_for
from twnn_jax.wormhole import SolveSettings

DIGITS = TrainConfig(task="digits", hidden=8, batch_size=16)  # resnet_fp, shared with test_networks/test_train
TINY_SINE = ["--task", "sine", "--hidden", "8", "--batch-size", "16", "--quiet"]


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def _competes(cfg) -> bool:
    """The competition test: two bumps of heights 1 and 0.8; the weaker one's response must fall below half
    of the input ratio (the strong one wins by much more than its input lead), on a settled fixed point."""
    input_ratio, response_ratio, converged = wta.competition(cfg)
    return converged and response_ratio < 0.5 * input_ratio


def test_soft_wta_fixed_points_compete_and_a_linear_net_does_not():
    cfg = wta.WTAConfig()
    assert _competes(cfg)
    assert wta.competition(cfg)[1] < 0.15  # the weaker bump nearly silenced
    # the same test on linear nets: the default weights without thresholds have no stable fixed point, and a
    # stable linear net (weaker excitation and inhibition) keeps the weaker response far above half
    assert not _competes(cfg._replace(rectify=False))
    stable_linear = cfg._replace(rectify=False, self_exc=0.5, neighbour_exc=0.2, w_ie=1.0, w_ei=0.3)
    ratio_in, ratio_out, converged = wta.competition(stable_linear)
    assert converged and ratio_out > 0.5 * ratio_in
    assert not _competes(stable_linear)


def test_wta_rejects_noise_and_its_settling_varies():
    cfg = wta.WTAConfig()
    x, clean, _ = wta.noisy_inputs(cfg, jax.random.PRNGKey(0), 64)
    solve = jax.vmap(lambda i: wta.fixed_point(cfg, i))
    z, stats = solve(x)
    z_clean, _ = solve(clean)
    assert bool(jnp.all(stats.converged))
    assert float(jnp.mean(wta.snr_db(z_clean[:, :cfg.n], z[:, :cfg.n]))) > float(jnp.mean(wta.snr_db(clean, x))) + 3
    assert int(jnp.max(stats.iters)) > int(jnp.min(stats.iters))  # settling time depends on the input


def test_surrogate_error_falls_as_it_trains():
    cfg = wta.WTAConfig()
    solve = jax.jit(jax.vmap(lambda i: wta.fixed_point(cfg, i)))
    x, _, _ = wta.noisy_inputs(cfg, jax.random.PRNGKey(0), 512)
    x_test, _, _ = wta.noisy_inputs(cfg, jax.random.PRNGKey(1), 128)
    z, z_test = solve(x)[0], solve(x_test)[0]
    fit = surrogate.fit(x, z, hidden=32, steps=600, x_test=x_test, z_test=z_test, every=100, output="relu")
    assert fit.losses.shape == (600,) and fit.held_out.shape == (6,)
    assert np.mean(fit.losses[-50:]) < 0.5 * np.mean(fit.losses[:50])
    assert fit.held_out[-1] < 0.8 * fit.held_out[0]
    assert np.all(np.isfinite(fit.held_out))


def test_surrogate_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same n"):
        surrogate.fit(jnp.zeros((4, 3)), jnp.zeros((5, 2)))
    with pytest.raises(ValueError, match="output must be"):
        surrogate.predict(surrogate.init_surrogate(jax.random.PRNGKey(0), 2, 2, 2), jnp.zeros(2), "tanh")


def test_wta_fixed_point_gradient_matches_finite_differences(x64):
    cfg = wta.WTAConfig(tol=1e-13, max_iter=20000)
    inputs = jnp.asarray(wta.pattern_bank(cfg)[1], jnp.float64) + 0.05 * jnp.cos(jnp.arange(cfg.n))
    weights = jnp.linspace(-1.0, 1.0, cfg.n + 1)
    loss = lambda i: jnp.dot(weights, wta.fixed_point(cfg, i)[0])  # noqa: E731
    g = jax.grad(loss)(inputs)
    direction = jnp.sin(jnp.arange(cfg.n) * 1.3)
    eps = 1e-6
    fd = (loss(inputs + eps * direction) - loss(inputs - eps * direction)) / (2 * eps)
    assert float(jnp.abs(jnp.dot(g, direction) - fd)) < 1e-6 * max(1.0, float(jnp.abs(fd)))


def test_warm_started_solve_gradient_matches_finite_differences(x64):
    """A solve started from a guess (what warm starts do): the same fixed point and a gradient that agrees with
    finite differences of the warm-started function; no gradient reaches the guess."""
    from twnn_jax.models import build_model
    from twnn_jax.tasks import digits_task

    model = build_model("resnet_fp", digits_task(), 6)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), model.init(jax.random.PRNGKey(0)))
    x = digits_task().eval_set[0][0].astype(jnp.float64)
    settings = SolveSettings(tol=1e-13, max_iter=5000, bwd_tol=1e-13)
    state0, _, _ = model.solve(params, x, -1.0, settings)
    z0 = jax.tree.map(lambda a: a + 0.1, state0)

    def loss(p, z0):
        out, _, _ = model.apply(p, x, -1.0, settings, None, z0)
        return jnp.sum(jnp.sin(out))

    (g_p, g_z0) = jax.grad(loss, argnums=(0, 1))(params, z0)
    assert all(float(jnp.max(jnp.abs(a))) == 0.0 for a in jax.tree.leaves(g_z0))
    g_cold = jax.grad(lambda p: loss(p, None))(params)
    for a, b in zip(jax.tree.leaves(g_p), jax.tree.leaves(g_cold)):
        np.testing.assert_allclose(a, b, atol=1e-9)
    direction = jax.tree.map(lambda a: jnp.cos(jnp.arange(a.size).reshape(a.shape)), params)
    eps = 1e-6
    shift = lambda s: jax.tree.map(lambda a, d: a + s * d, params, direction)  # noqa: E731
    fd = (loss(shift(eps), z0) - loss(shift(-eps), z0)) / (2 * eps)
    analytic = sum(jnp.vdot(a, d) for a, d in zip(jax.tree.leaves(g_p), jax.tree.leaves(direction)))
    assert float(jnp.abs(analytic - fd)) < 1e-5 * max(1.0, float(jnp.abs(fd)))


@pytest.fixture(scope="module")
def trained_digits():
    trainer = trainer_for(DIGITS)
    state, _ = train(trainer, 150)
    return trainer, state


def test_warm_starts_reduce_forward_iterations_on_a_trained_net(trained_digits):
    trainer, state = trained_digits
    r = warm.study(trainer, state, live_controls(DIGITS), hidden=32, steps=400, n_train=512, n_test=128, repeats=1)
    assert r["fwd_iters_warm"]["mean"] < r["fwd_iters_cold"]["mean"]
    assert r["fwd_iters_ratio"] > 1.0
    assert r["solve_converged_frac"] == 1.0 and r["warm_converged_frac"] == 1.0
    assert r["fixed_point_change_warm"] < 0.05  # the same fixed point, up to the tolerance's reach
    assert 0.0 <= r["metric_surrogate"] <= 1.0 and r["relative_error_mean"] < 1.0
    assert r["held_out_error_during_fit"][-1] < r["held_out_error_during_fit"][0]


def test_training_with_a_surrogate_alongside():
    cfg = TrainConfig(task="digits", hidden=8, batch_size=16, warm_start="surrogate", surrogate_hidden=16)
    trainer = trainer_for(cfg)
    state, history = train(trainer, 80)
    errors = [h["surrogate_error"] for h in history]
    assert errors[0] == pytest.approx(1.0)  # the output layer starts at zero: the first guess is the cold start
    assert np.mean(errors[-10:]) < 0.9  # it learns (1.0 means no better than zeros)
    assert all(h["converged_frac"] == 1.0 for h in history)
    assert state.surrogate is not None and state.surrogate["params"]["w1"].shape == (64, 16)
    assert all(h["surrogate_error"] is None for h in train(trainer_for(DIGITS), 2)[1])


def test_warm_start_refuses_models_without_one_fixed_point():
    with pytest.raises(ValueError, match="warm_start needs a model"):
        trainer_for(TrainConfig(task="adding", seq_len=4, warm_start="surrogate"))


@pytest.mark.e2e
def test_cli_train_with_warm_start_then_surrogate(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY_SINE, "--steps", "20", "--warm-start", "surrogate", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and all(isinstance(r["surrogate_error"], float) for r in rows)
    assert json.loads((out / "config.json").read_text())["warm_start"] == "surrogate"
    capsys.readouterr()
    assert cli.main(["surrogate", "--run", str(out), "--steps", "100", "--pairs", "128", "--hidden", "16"]) == 0
    printed = capsys.readouterr().out
    assert "relative error" in printed and "forward iterations" in printed and "free-running RMSE" in printed
    summary = json.loads((out / "surrogate" / "summary.json").read_text())
    for key in ("relative_error_mean", "metric_solve", "metric_surrogate", "time_solve_s", "time_one_pass_s",
                "fwd_iters_cold", "fwd_iters_warm", "fwd_iters_saved", "free_running_rmse_surrogate"):
        assert key in summary, key
    assert summary["hidden"] == 16 and summary["fwd_iters_saved"]["n"] == summary["n_test"]


@pytest.mark.e2e
@pytest.mark.parametrize("argv,says", [
    (["surrogate", "--run", "{tmp}/missing"], "--run {tmp}/missing: not a directory"),
    (["surrogate", "--run", "{tmp}"], "config.json: no such file"),
    (["surrogate"], "the following arguments are required: --run"),
    (["surrogate", "--run", "{tmp}", "--hidden", "0"], "surrogate_hidden must be an integer in [1, 4096]"),
    (["train", "--task", "adding", "--warm-start", "surrogate", "--out", "{tmp}/r"], "--warm-start: warm_start"),
    (["train", "--warm-start", "maybe"], "warm_start must be one of surrogate"),
])
def test_cli_bad_input_is_one_line(tmp_path, capsys, argv, says):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says.replace("{tmp}", str(tmp_path)) in err, err


@pytest.mark.e2e
def test_experiment_surrogate_quick_writes_results_and_checks(tmp_path, capsys):
    assert cli.main(["experiment", "surrogate", "--quick", "--seeds", "1", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "experiment" / "surrogate"
    results = json.loads((folder / "results.json").read_text())
    assert set(results) >= {"meta", "wta", "warm_training", "offline"} and results["meta"]["quick"]
    assert results["wta"]["never_settled"] >= 0 and results["wta"]["settling_iters"]["n"] == 64
    assert len(results["warm_training"]["seeds"]) == 1 and results["offline"]["n_test"] == 360
    text = (folder / "RESULTS.md").read_text()
    assert "soft winner-take-all" in text and "side by side" in text
    capsys.readouterr()
    assert cli.main(["experiment", "surrogate", "--check", "--out", str(tmp_path)]) in (0, 1)
    assert "experiment surrogate:" in capsys.readouterr().out
