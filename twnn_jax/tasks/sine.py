"""Sine-wave generation (paper Task B): predict the next value from a window, then run free.

Signals are mapped into (0, 1) for the paper's sigmoid output: `s = 0.5 + 0.4 * mix / sum(amps)`.
Training is one step ahead; the judge is *free-running* generation, the model's outputs fed back for
hundreds of steps (one-step prediction of a sinusoid is easy).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .base import Task

PERIODS = (25.0, 11.0, 41.0)  # in steps; mixtures take the first 1, 2 or 3
AMPLITUDES = (1.0, 0.6, 0.4)


def signal(t, phase, n_freqs: int):
    """The target signal in (0, 1) at (possibly fractional) times t."""
    total = 0.0
    for k in range(n_freqs):
        total = total + AMPLITUDES[k] * jnp.sin(2 * jnp.pi * t / PERIODS[k] + phase * (k + 1))
    return 0.5 + 0.4 * total / sum(AMPLITUDES[:n_freqs])


def sine_task(n_freqs: int = 1, window: int = 16, eval_steps: int = 250, n_eval: int = 8) -> Task:
    if n_freqs not in (1, 2, 3):
        raise ValueError(f"n_freqs must be 1, 2 or 3, got {n_freqs}")
    if window < 2:
        raise ValueError(f"window must be >= 2, got {window}")
    if eval_steps < 1:
        raise ValueError(f"eval_steps must be >= 1, got {eval_steps}")

    def sample(key, batch_size):
        phase = jax.random.uniform(key, (batch_size, 1), maxval=2 * jnp.pi)
        t = jnp.arange(window + 1.0)[None, :]
        s = signal(t, phase, n_freqs)
        return s[:, :window], s[:, window:]

    phases = jnp.linspace(0.0, 2 * jnp.pi, n_eval, endpoint=False)[:, None]
    t = jnp.arange(window + eval_steps, dtype=jnp.float32)[None, :]
    series = signal(t, phases, n_freqs)

    def loss(pred, y):
        y = y[..., : pred.shape[-1]]  # the evaluation target is the whole continuation: score the next value
        mse = jnp.mean(jnp.square(pred - y))
        return mse, mse

    def generate(predict):
        """Free-running: start from the true window, feed the model's outputs back for the whole horizon."""
        x0, target = series[:, :window], series[:, window:]

        def one(w, _):
            y, iters = predict(w)
            return jnp.concatenate([w[:, 1:], y], axis=1), (y[:, 0], iters)

        _, (ys, iters) = jax.lax.scan(one, x0, None, length=target.shape[1])
        generated = ys.T
        return {"series": generated, "target": target, "fwd_iters": iters.T,
                "rmse": jnp.sqrt(jnp.mean(jnp.square(generated - target)))}

    return Task(
        name="sine",
        sample=sample,
        loss=loss,
        eval_set=(series[:, :window], series[:, window:]),
        n_in=window,
        n_out=1,
        metric_name="mse",
        info={"n_freqs": n_freqs, "window": window, "eval_steps": eval_steps, "periods": PERIODS[:n_freqs]},
        generate=generate,
    )
