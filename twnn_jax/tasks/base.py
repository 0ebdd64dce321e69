"""What a task is: a batch sampler, a loss with a metric, and a fixed evaluation set."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax


class Task(NamedTuple):
    """A task. All functions are pure and jittable.

    sample(key, batch_size) -> (x, y)         a training batch
    loss(pred, y) -> (loss, metric)            per batch; metric is "higher is better" unless named
    eval_set: (x, y)                           fixed evaluation data (test split for digits)
    n_in, n_out: sizes of one sample's input and the model output
    metric_name: what `metric` measures
    sequence: True when x is (T, features) and the model runs over time
    eval_extras(out, y) -> dict               optional: the task's own per-sample numbers on the evaluation
                                               set, added to `Trainer.evaluate`'s (digits: confidence)
    generate(predict) -> dict                  optional: the task's free-running generation from the evaluation
                                               set, `predict(x) -> (out, fwd_iters)` the model on a batch
                                               (sine: dict(series, target, fwd_iters, rmse)); `Trainer.generate`
    """

    name: str
    sample: Callable
    loss: Callable
    eval_set: tuple[jax.Array, jax.Array]
    n_in: int
    n_out: int
    metric_name: str
    sequence: bool = False
    info: dict | None = None
    eval_extras: Callable | None = None
    generate: Callable | None = None
