"""Long-range dependency tasks: the adding problem and copy memory, sequence length a parameter.

Short sequences (T <= 100) are easy for any small recurrent net; claims about long-range memory
need longer ones.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .base import Task
from .digits import classification_loss


def adding_batch(key, batch_size: int, length: int):
    """x: (B, T, 2) = (value in [0,1], marker); two markers, one in each half; y = sum of marked."""
    k1, k2, k3 = jax.random.split(key, 3)
    values = jax.random.uniform(k1, (batch_size, length))
    half = length // 2
    first = jax.random.randint(k2, (batch_size,), 0, half)
    second = jax.random.randint(k3, (batch_size,), half, length)
    marks = jax.nn.one_hot(first, length) + jax.nn.one_hot(second, length)
    return jnp.stack([values, marks], -1), jnp.sum(values * marks, -1, keepdims=True)


def adding_task(length: int = 50, n_eval: int = 256) -> Task:
    if length < 2:
        raise ValueError(f"sequence length must be >= 2, got {length}")

    def loss(pred, y):
        pred = pred[..., -1, :]  # the model emits an output every step; the answer is the last one
        mse = jnp.mean(jnp.square(pred - y))
        return mse, jnp.mean(jnp.abs(pred - y) < 0.04)

    return Task(
        name="adding",
        sample=lambda key, b: adding_batch(key, b, length),
        loss=loss,
        eval_set=adding_batch(jax.random.PRNGKey(12345), n_eval, length),
        n_in=2,
        n_out=1,
        metric_name="accuracy(|err|<0.04)",
        sequence=True,
        info={"length": length, "baseline_mse": 1.0 / 6.0},
    )


def copy_batch(key, batch_size: int, delay: int, n_symbols: int = 8, n_copy: int = 8):
    """Copy memory: n_copy symbols, `delay` blanks, a delimiter, then reproduce the symbols.

    x: (B, T, n_symbols + 2) one-hot, T = n_copy + delay + 1 + n_copy; y: (B, n_copy) labels.
    Symbols are 0..n_symbols-1, blank is n_symbols, delimiter n_symbols + 1.
    """
    blank, delim = n_symbols, n_symbols + 1
    symbols = jax.random.randint(key, (batch_size, n_copy), 0, n_symbols)
    tokens = jnp.concatenate(
        [
            symbols,
            jnp.full((batch_size, delay), blank),
            jnp.full((batch_size, 1), delim),
            jnp.full((batch_size, n_copy), blank),
        ],
        axis=1,
    )
    return jax.nn.one_hot(tokens, n_symbols + 2), symbols


def copy_task(delay: int = 20, n_symbols: int = 8, n_copy: int = 8, n_eval: int = 256) -> Task:
    if delay < 0:
        raise ValueError(f"delay must be >= 0, got {delay}")

    def loss(logits, y):
        # the model emits logits for every step; only the last n_copy are answers
        return classification_loss(logits[..., -n_copy:, :], y)

    return Task(
        name="copy",
        sample=lambda key, b: copy_batch(key, b, delay, n_symbols, n_copy),
        loss=loss,
        eval_set=copy_batch(jax.random.PRNGKey(12345), n_eval, delay, n_symbols, n_copy),
        n_in=n_symbols + 2,
        n_out=n_symbols,
        metric_name="accuracy",
        sequence=True,
        info={"delay": delay, "length": 2 * n_copy + delay + 1, "chance_loss": float(jnp.log(n_symbols))},
    )
