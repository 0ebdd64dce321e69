"""A two-layer feed-forward surrogate of a fixed point: `x -> z*(x)` in one pass (seed 002, Muir 2018).

The surrogate is `out(W2 relu(W1 x + b1) + b2)`: one hidden layer of `hidden` rectified units and an
output layer (`out` is the identity, or relu for rectified targets). It is trained by supervision on
pairs `(x, z*(x))` whose fixed points some recurrent network found by `twnn_jax.fix`; states that are
pytrees (a wormhole segment's layers) are flattened per sample with `flatten_state`.

>>> params = init_surrogate(jax.random.PRNGKey(0), n_in=4, n_out=3, hidden=8)
>>> predict(params, jnp.ones((2, 4))).shape
(2, 3)

Everything here is pure; `fit` runs its optimisation steps in one compiled `lax.scan`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

OUTPUTS = ("linear", "relu")


def init_surrogate(key, n_in: int, n_out: int, hidden: int = 64) -> dict:
    """Parameters of the two layers: weights ~ 1/sqrt(fan_in), biases zero."""
    if n_in < 1 or n_out < 1 or hidden < 1:
        raise ValueError(f"sizes must be >= 1, got n_in={n_in}, n_out={n_out}, hidden={hidden}")
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (n_in, hidden)) / np.sqrt(n_in), "b1": jnp.zeros(hidden),
        "w2": jax.random.normal(k2, (hidden, n_out)) / np.sqrt(hidden), "b2": jnp.zeros(n_out),
    }


def predict(params: dict, x, output: str = "linear"):
    """The surrogate's fixed point for a batch `x` of shape (batch, n_in) (or one sample, (n_in,))."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    z = h @ params["w2"] + params["b2"]
    return jax.nn.relu(z) if output == "relu" else z


def loss(params: dict, x, z_target):
    """Mean squared error of the surrogate's linear output against the fixed points (the target carries no
    gradient). Trained linear: a rectified output unit that starts below zero would never receive a gradient;
    for rectified targets `predict(..., output="relu")` then only removes negative errors."""
    return jnp.mean(jnp.square(predict(params, x) - jax.lax.stop_gradient(z_target)))


def relative_error(pred, target):
    """Per sample `||pred - target|| / ||target||` (Euclidean, over all but the first axis)."""
    axes = tuple(range(1, jnp.ndim(target)))
    num = jnp.sqrt(jnp.sum(jnp.square(pred - target), axis=axes))
    den = jnp.sqrt(jnp.sum(jnp.square(target), axis=axes))
    return num / jnp.maximum(den, jnp.finfo(jnp.result_type(den)).tiny)


def flatten_state(state):
    """A batch of state pytrees (leading batch axis on every leaf) -> (batch, n) and the inverse for one sample."""
    one = jax.tree.map(lambda a: a[0], state)
    _, unravel = ravel_pytree(one)
    flat = jax.vmap(lambda s: ravel_pytree(s)[0])(state)
    return flat, unravel


class FitResult(NamedTuple):
    params: dict
    losses: np.ndarray  # the training loss at every step
    held_out: np.ndarray  # mean relative error on the held-out pairs, every `every` steps (empty when none given)
    every: int


def fit(x, z, *, hidden: int = 64, steps: int = 2000, lr: float = 3e-3, batch: int = 128, seed: int = 0,
        output: str = "linear", x_test=None, z_test=None, every: int = 100) -> FitResult:
    """Train a surrogate on pairs `(x, z)` (arrays of shape (n, n_in), (n, n_out)) with Adam, minibatches
    drawn with replacement, a cosine-decayed step size; the held-out relative error (of `predict(..., output)`)
    is recorded every `every` steps when held-out pairs are given."""
    x, z = jnp.asarray(x), jnp.asarray(z)
    if x.ndim != 2 or z.ndim != 2 or x.shape[0] != z.shape[0]:
        raise ValueError(f"x and z must be (n, n_in) and (n, n_out) with the same n; got {x.shape}, {z.shape}")
    if steps < 1 or every < 1:
        raise ValueError(f"steps and every must be >= 1, got {steps}, {every}")
    key = jax.random.PRNGKey(seed)
    params = init_surrogate(key, x.shape[1], z.shape[1], hidden)
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.05))
    test = x_test is not None and z_test is not None
    blocks = -(-steps // every)

    def one(carry, k):
        params, state = carry
        idx = jax.random.randint(k, (min(batch, x.shape[0]),), 0, x.shape[0])
        value, grads = jax.value_and_grad(loss)(params, x[idx], z[idx])
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), value

    def block(carry, k):
        carry, values = jax.lax.scan(one, carry, jax.random.split(k, every))
        err = jnp.mean(relative_error(predict(carry[0], x_test, output), z_test)) if test else jnp.zeros(())
        return carry, (values, err)

    @jax.jit
    def run(params, k):
        (params, _), (values, errs) = jax.lax.scan(block, (params, opt.init(params)), jax.random.split(k, blocks))
        return params, values.reshape(-1)[:steps], errs

    params, values, errs = run(params, jax.random.fold_in(key, 1))
    return FitResult(params, np.asarray(values), np.asarray(errs) if test else np.zeros(0), every)


def time_per_batch(fn: Callable, *args, repeats: int = 20) -> float:
    """Median seconds of one call of a jitted `fn(*args)` (compiled first, results waited for)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def distribution(values) -> dict:
    """A small summary of a distribution of counts: mean, quartiles, percentiles, max and a histogram."""
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        return {"n": 0}
    q = np.percentile(v, [0, 10, 25, 50, 75, 90, 99, 100])
    counts, edges = np.histogram(v, bins=min(20, max(1, len(np.unique(v)))))
    return {"n": int(v.size), "mean": float(v.mean()), "min": q[0], "p10": q[1], "p25": q[2], "median": q[3],
            "p75": q[4], "p90": q[5], "p99": q[6], "max": q[7],
            "hist_counts": counts.tolist(), "hist_edges": edges.tolist()}
