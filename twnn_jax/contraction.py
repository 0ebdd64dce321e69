"""How contractive is a map at its fixed point? A power-iteration estimate of ||J||_2, J = df/dz.

Below 1 the iteration contracts (in the Euclidean norm) near the fixed point; approaching 1 it slows
down and past it the solve may diverge. Costs `iters` jvp + vjp pairs; no Jacobian is formed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


def jacobian_norm(f, z, *args, iters: int = 20, key=None) -> jax.Array:
    """Estimate the spectral norm of `d f(z, *args) / d z` at `z` by power iteration on J^T J."""
    flat, unravel = ravel_pytree(z)
    g = lambda v: ravel_pytree(f(unravel(v), *args))[0]  # noqa: E731
    _, jvp = jax.linearize(g, flat)
    vjp = jax.linear_transpose(jvp, flat)
    key = jax.random.PRNGKey(0) if key is None else key
    v = jax.random.normal(key, flat.shape, flat.dtype)
    v = v / jnp.linalg.norm(v)

    def body(_, v):
        w = vjp(jvp(v))[0]
        return w / jnp.maximum(jnp.linalg.norm(w), jnp.finfo(flat.dtype).tiny)

    v = jax.lax.fori_loop(0, iters, body, v)
    return jnp.linalg.norm(jvp(v))
