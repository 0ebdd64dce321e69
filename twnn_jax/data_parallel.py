"""Data-parallel training of one run over the local devices: every batch split over them, the state on all.

>>> trainer, state = data_parallel(TrainConfig(task="digits", batch_size=64))     # doctest: +SKIP
>>> state, history = train(trainer, 300, state=state)                            # doctest: +SKIP

The trainer is `train.build_trainer(config, batch_sharding=...)`: the same step, with each sampled batch
constrained to be split along its first axis over a one-axis `Mesh` ("data") of the devices, and the
state (parameters, optimizer state, key) replicated. XLA partitions the step: each device runs its share
of the samples (their fixed-point solves too), and the loss, metrics and gradients are summed across
devices. The result is the one-device run's up to the order of those sums (float rounding; checked in
tests/test_sweep.py). `batch_size` must be a multiple of the device count.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .train import TrainConfig, Trainer, TrainState, build_trainer

DATA_AXIS = "data"


def data_parallel(config: TrainConfig, devices=None) -> tuple[Trainer, TrainState]:
    """A trainer of `config` whose batches are split over `devices` (default: the local ones), and its
    initial state (seed `config.seed`) replicated on them."""
    devices = jax.local_devices() if devices is None else list(devices)
    if config.batch_size % len(devices):
        raise ValueError(f"batch_size must be a multiple of the device count ({len(devices)}) for data-parallel "
                         f"training; got {config.batch_size}")
    mesh = Mesh(np.asarray(devices), (DATA_AXIS,))
    trainer = build_trainer(config, batch_sharding=NamedSharding(mesh, P(DATA_AXIS)))
    state = jax.device_put(trainer.init(config.seed), NamedSharding(mesh, P()))
    return trainer, state
