"""Run by tests/test_sweep.py in a subprocess with 8 CPU devices (XLA_FLAGS set before JAX starts): prints
one JSON object with what the tests compare.

- the sweep of GRID on all 8 devices and on one device;
- each configuration trained alone through the normal trainer (`train.train`, `runs.evaluate_run`);
- data-parallel digits over the 8 devices and the same run on one device.
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np

from twnn_jax.data_parallel import data_parallel
from twnn_jax.runs import evaluate_run
from twnn_jax.sweep import grid_configs, make_grid, run_sweep
from twnn_jax.train import TrainConfig, live_controls, train, trainer_for

STEPS = 25
BASE = TrainConfig(task="sine")
# 36 configurations: not a multiple of 8, so the sweep pads them to 40; max_iter 1 leaves solves unconverged
AXES = {"tol": (1e-2, 1e-3, 1e-4), "gate": (-2.0, 0.0, 1.0), "max_iter": (1, 300), "seed": (0, 5)}
DP_CONFIG = TrainConfig(task="digits", model="wormhole", batch_size=64)
DP_STEPS = 12


def _sweep(devices) -> dict:
    result = run_sweep(make_grid(BASE, AXES), STEPS, devices=devices)
    return {"rows": result.rows, "losses": result.losses.tolist(), "info": result.info}


def _singles() -> list[dict]:
    out = []
    for config in grid_configs(make_grid(BASE, AXES)):
        trainer = trainer_for(config)
        state, history = train(trainer, STEPS)
        evaluation, _ = evaluate_run(trainer, state, live_controls(config))
        out.append({"losses": [h["loss"] for h in history],
                    "fwd_iters_mean": float(np.mean([h["fwd_iters_mean"] for h in history])),
                    "converged_frac": [h["converged_frac"] for h in history], **evaluation})
    return out


def _data_parallel() -> dict:
    one = trainer_for(DP_CONFIG)
    state1, history1 = train(one, DP_STEPS)
    trainer, state = data_parallel(DP_CONFIG)
    state8, history8 = train(trainer, DP_STEPS, state=state)
    hlo = jax.jit(trainer.step).lower(state8, live_controls(DP_CONFIG)).compile().as_text()
    params1, params8 = jax.device_get((state1.params, state8.params))
    diffs = [float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(params1), jax.tree.leaves(params8))]
    return {"losses_one": [h["loss"] for h in history1], "losses_dp": [h["loss"] for h in history8],
            "param_max_abs_diff": max(diffs),
            "param_max_abs": max(float(np.max(np.abs(a))) for a in jax.tree.leaves(params1)),
            "state_devices": len(jax.tree.leaves(state8.params)[0].sharding.device_set),
            # the compiled step of one device samples 8 of the 64 images (64 pixels each)
            "batch_split": "f32[8,64]" in hlo and "f32[64,64]" not in hlo,
            "fwd_iters_one": [h["fwd_iters_mean"] for h in history1],
            "fwd_iters_dp": [h["fwd_iters_mean"] for h in history8]}


def main() -> None:
    assert jax.device_count() == 8, jax.devices()
    parts = sys.argv[1:] or ["sweep", "dp"]
    result = {}
    if "sweep" in parts:
        result["eight"] = _sweep(jax.devices())
        result["one"] = _sweep(jax.devices()[:1])
        result["singles"] = _singles()
    if "dp" in parts:
        result["dp"] = _data_parallel()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
