"""A single-layer soft winner-take-all network of rectified units (the setting of seed 002, Muir 2018).

`n` excitatory linear-threshold units on a ring and one shared inhibitory unit. The rate dynamics

    tau dx/dt = -x + [I + a x + b (x_{i-1} + x_{i+1}) - w_ie y]_+
    tau dy/dt = -y + [w_ei sum_i x_i]_+

settle, for most inputs, on a fixed point `z* = (x*, y*) = f(z*)` with `f` the bracketed maps. Euler
steps of the dynamics with `dt = damping` (in units of tau) are `fix`'s damped solver, so the settling
iterations are simulation steps. Self and neighbour excitation (`a`, `b`) amplify the strongest input
bump; the shared inhibition scales with the total activity and silences the weaker ones: competition.

The constants are ours (the paper's were not available): `WTAConfig` holds them all. Inputs are noisy
patterns: `patterns` Gaussian bumps on the ring plus Gaussian noise.

>>> cfg = WTAConfig()
>>> z, stats = fixed_point(cfg, jnp.asarray(pattern_bank(cfg)[0]))
>>> int(jnp.argmax(z[:cfg.n])), bool(stats.converged)
(0, True)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._fix import fix


class WTAConfig(NamedTuple):
    """Every constant of the recurrent network and of its inputs (our choices, written down in the README)."""

    n: int = 16  # excitatory units on a ring
    self_exc: float = 0.7  # a: self-excitation
    neighbour_exc: float = 0.2  # b: excitation from each ring neighbour
    w_ie: float = 2.0  # inhibitory -> excitatory weight
    w_ei: float = 0.5  # excitatory -> inhibitory weight (on the sum of the activities)
    n_patterns: int = 4  # input bumps centred at n / n_patterns apart
    bump_width: float = 1.0  # standard deviation of a bump, in units
    amplitude: float = 1.0  # height of a bump
    noise: float = 0.25  # standard deviation of the input noise per unit
    dt: float = 0.2  # Euler step (units of tau): the damped solver's damping
    tol: float = 1e-4  # settled when the largest change per unit time, max|f(z) - z|, is below this
    max_iter: int = 2000  # steps before an input counts as never settling
    rectify: bool = True  # False: the same network without thresholds (linear), for comparison


def weights(cfg: WTAConfig) -> np.ndarray:
    """The excitatory recurrent weights (n, n): self and nearest-neighbour excitation on a ring."""
    eye = np.eye(cfg.n)
    return cfg.self_exc * eye + cfg.neighbour_exc * (np.roll(eye, 1, 0) + np.roll(eye, -1, 0))


def step(z, inputs, w, cfg: WTAConfig):
    """`f(z)`: the rectified input of every unit given the state `z = (x_1..x_n, y)`."""
    act = jax.nn.relu if cfg.rectify else (lambda v: v)
    x, y = z[: cfg.n], z[cfg.n]
    x_new = act(inputs + w @ x - cfg.w_ie * y)
    y_new = act(cfg.w_ei * jnp.sum(x))
    return jnp.concatenate([x_new, y_new[None]])


def fixed_point(cfg: WTAConfig, inputs, z0=None, *, tol=None, max_iter=None):
    """The network's response to one input vector (n,): `(z*, FixStats)`, z* of size n + 1 (x then y).

    Differentiable in `inputs` (implicit gradient of `fix`)."""
    w = jnp.asarray(weights(cfg), jnp.result_type(inputs))
    z0 = jnp.zeros(cfg.n + 1, jnp.result_type(inputs)) if z0 is None else z0
    return fix(lambda z, i, w: step(z, i, w, cfg), z0, inputs, w, solver="damped", damping=cfg.dt,
               tol=cfg.tol if tol is None else tol, max_iter=cfg.max_iter if max_iter is None else max_iter)


def pattern_bank(cfg: WTAConfig) -> np.ndarray:
    """The clean input patterns (n_patterns, n): Gaussian bumps spread evenly around the ring."""
    pos = np.arange(cfg.n)
    centres = np.arange(cfg.n_patterns) * cfg.n / cfg.n_patterns
    d = np.abs(pos[None, :] - centres[:, None])
    d = np.minimum(d, cfg.n - d)  # distance on the ring
    return (cfg.amplitude * np.exp(-0.5 * (d / cfg.bump_width) ** 2)).astype(np.float32)


def noisy_inputs(cfg: WTAConfig, key, count: int):
    """`count` inputs: a random pattern each, plus noise. Returns (inputs, clean patterns, pattern index)."""
    k1, k2 = jax.random.split(key)
    bank = jnp.asarray(pattern_bank(cfg))
    label = jax.random.randint(k1, (count,), 0, cfg.n_patterns)
    clean = bank[label]
    return clean + cfg.noise * jax.random.normal(k2, clean.shape), clean, label


def winners(z, cfg: WTAConfig):
    """The winning excitatory unit of each response (batch, n + 1) -> (batch,)."""
    return jnp.argmax(z[..., : cfg.n], axis=-1)


def snr_db(signal, noisy):
    """Per sample `10 log10(||signal||^2 / ||noisy - signal||^2)` over the excitatory units."""
    s = jnp.sum(jnp.square(signal), -1)
    n = jnp.sum(jnp.square(noisy - signal), -1)
    return 10.0 * jnp.log10(jnp.maximum(s, 1e-30) / jnp.maximum(n, 1e-30))


def competition(cfg: WTAConfig, strong: float = 1.0, weak: float = 0.8):
    """Two bumps of heights `strong` and `weak` at opposite sides of the ring: (input ratio weak/strong,
    response ratio weak/strong at the two centres). Competition: the response ratio falls far below the
    input ratio (a linear network keeps it near the input ratio)."""
    bank = pattern_bank(cfg._replace(amplitude=1.0))
    i_strong, i_weak = 0, cfg.n_patterns // 2
    inputs = jnp.asarray(strong * bank[i_strong] + weak * bank[i_weak])
    z, stats = fixed_point(cfg, inputs)
    c_strong, c_weak = int(np.argmax(bank[i_strong])), int(np.argmax(bank[i_weak]))
    return weak / strong, float(z[c_weak] / z[c_strong]), bool(stats.converged)
