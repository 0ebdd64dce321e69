"""Digit classification on scikit-learn's 8x8 digits (shipped with the package, no download)."""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .base import Task


@functools.cache
def digits_data() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as (pixels 0-16, shape (1797, 64); labels 0-9), equal to `load_digits()`'s
    `data` and `target` (tests/test_tasks.py). Read from the file scikit-learn ships, as `load_digits` reads it,
    without importing scikit-learn: that import (with SciPy's) took ~1.2 s of a warm dashboard start's first
    page here. Falls back to `load_digits` where the file is not at its usual place."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    folders = spec.submodule_search_locations if spec is not None else None
    path = Path(folders[0], "datasets", "data", "digits.csv.gz") if folders else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        data = load_digits()
        return data.data, data.target
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1], table[:, -1].astype(int)


def load_digits_split(seed: int = 0, test_size: int = 360):
    """Features in [0, 1] (64 values), labels 0-9; a train/test split fixed by `seed`."""
    pixels, labels = digits_data()
    x = (pixels / 16.0).astype(np.float32)
    y = labels.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[:test_size], order[test_size:]
    return (x[train], y[train]), (x[test], y[test])


def classification_loss(logits, y):
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    acc = jnp.mean(jnp.argmax(logits, -1) == y)
    return loss, acc


def confidence(logits, y) -> dict:
    """Per sample: the model's confidence, its largest softmax probability."""
    return {"confidence": jnp.max(jax.nn.softmax(logits, -1), -1)}


def digits_task(split_seed: int = 0) -> Task:
    (x_train, y_train), test = load_digits_split(split_seed)
    x_train, y_train = jnp.asarray(x_train), jnp.asarray(y_train)

    def sample(key, batch_size):
        idx = jax.random.randint(key, (batch_size,), 0, x_train.shape[0])
        return x_train[idx], y_train[idx]

    return Task(
        name="digits",
        sample=sample,
        loss=classification_loss,
        eval_set=(jnp.asarray(test[0]), jnp.asarray(test[1])),
        n_in=64,
        n_out=10,
        metric_name="accuracy",
        info={"n_train": int(x_train.shape[0]), "n_test": int(test[0].shape[0]), "split_seed": split_seed},
        eval_extras=confidence,
    )
