"""The 2-D playground's map (twnn_jax/playground.py): fixed points, contraction region, paths and their flags."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twnn_jax import playground
from twnn_jax.playground import Knobs, plane, step
from twnn_jax.playground_figure import phase_plane_figure

STARTS = [(-0.9, -0.9), (0.9, 0.9), (0.3, -0.6)]


def test_fixed_points_satisfy_the_map_and_paths_that_converge_end_there():
    knobs = Knobs(gate_bias=-2.0)
    out = plane(knobs, STARTS)
    assert len(out["fixed"]) == 1
    z = out["fixed"][0]
    fz = np.asarray(step(jnp.asarray(z), knobs.gate_bias, knobs.v, knobs.x))
    assert np.max(np.abs(fz - z)) < 1e-5
    assert out["converged"].all() and not out["diverged"].any()
    for path in out["path_list"]:
        assert np.max(np.abs(path[-1] - z)) < 50 * knobs.tol  # a contracting map ends near its fixed point
    for i, path in enumerate(out["path_list"]):
        assert len(path) == int(out["iters"][i]) + 1
        last = np.max(np.abs(path[-1] - path[-2]))
        assert last <= knobs.tol  # the last step was below tol (what "converged" means)


def test_three_fixed_points_with_a_positive_wormhole():
    knobs = Knobs(gate_bias=3.0, v=3.0, x=0.0)
    out = plane(knobs, STARTS)
    assert len(out["fixed"]) == 3
    for z in out["fixed"]:
        fz = np.asarray(step(jnp.asarray(z), knobs.gate_bias, knobs.v, knobs.x))
        assert np.max(np.abs(fz - z)) < 1e-5


@pytest.mark.parametrize("damping", [1.0, 0.4])
def test_the_contraction_grid_is_the_spectral_norm_of_the_damped_maps_jacobian(damping):
    knobs = Knobs(gate_bias=0.5, v=-3.0, damping=damping)
    out = plane(knobs, [])
    axis = out["shade_axis"]
    rng = np.random.default_rng(0)
    for _ in range(12):
        i, j = rng.integers(0, len(axis), 2)
        z = jnp.asarray([axis[j], axis[i]])  # row: z2, column: z1 (as the heatmap draws it)

        def damped(z):
            return z + damping * (step(z, knobs.gate_bias, knobs.v, knobs.x) - z)

        expected = np.linalg.norm(np.asarray(jax.jacfwd(damped)(z), float), 2)
        assert out["norms"][i, j] == pytest.approx(expected, rel=1e-4, abs=1e-5)
    share = np.mean(out["norms"] < 1)
    assert 0 < share < 1  # this setting contracts in part of the plane only


def test_a_non_contracting_setting_is_flagged_not_converged_and_never_nan():
    knobs = Knobs(gate_bias=4.0, v=-4.0, max_iter=60)
    out = plane(knobs, STARTS)
    assert out["fixed_norms"][0] > 1  # the fixed point repels
    assert not out["converged"].any()
    assert (out["iters"] == 60).all()
    assert np.isfinite(np.concatenate(out["path_list"])).all()
    fig = phase_plane_figure(out, STARTS)
    assert fig["layout"]["meta"]["converged"] == [False, False, False]
    paths = [t for t in fig["data"] if "path" in t.get("meta", {})]
    assert all(t["line"]["color"] == "rgb(214,39,40)" and "NOT converged" in t["name"] for t in paths)

def test_damping_makes_a_map_that_circles_its_fixed_point_converge():
    knobs = Knobs(gate_bias=0.0, v=-2.5, max_iter=200)
    assert not plane(knobs, STARTS)["converged"].any()
    damped = plane(knobs._replace(damping=0.3), STARTS)
    assert damped["converged"].all()


def test_changing_the_knobs_or_the_start_points_never_recompiles():
    plane(Knobs(), STARTS)
    before = playground._cache_size()
    plane(Knobs(gate_bias=2.0, v=1.0, x=-1.0, tol=1e-6, damping=0.5, max_iter=7), [(0.1, 0.2)])
    plane(Knobs(), [])
    assert playground._cache_size() == before == 1


def test_bad_knobs_are_one_line_errors():
    with pytest.raises(ValueError, match="damping must be in"):
        plane(Knobs(damping=0.0), STARTS)
    with pytest.raises(ValueError, match="max_iter must be in"):
        plane(Knobs(max_iter=10_000), STARTS)
    with pytest.raises(ValueError, match="finite"):
        plane(Knobs(v=float("nan")), STARTS)
