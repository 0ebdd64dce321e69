#!/usr/bin/env python
"""How accurate `fix`'s derivatives are against the requested `tol` (float64), with the default backward
tolerance (it follows `tol`) and with the old fixed one (`bwd_tol=1e-4`).

Problem: z = tanh(W z + x), n = 12, W = 0.6 * random / ||random||_2; loss = sum(sin(z*)). For each tol it
prints the relative error of a directional derivative of the loss (reverse mode) against central finite
differences (eps 1e-5, the reference solves at tol 1e-14; their own error is ~1e-9), and
max |jacfwd - jacrev| / max |jacrev| of z*.

Usage:  python benchmarks/fix_accuracy.py        (one JSON document on stdout; seconds)
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

import twnn_jax as tj  # noqa: E402
from twnn_jax.bench import device_info  # noqa: E402

N, RHO, EPS = 12, 0.6, 1e-5


def main() -> None:
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    w = jax.random.normal(k1, (N, N))
    w = RHO * w / jnp.linalg.norm(w, 2)
    x = jax.random.normal(k2, (N,))
    direction = jax.random.normal(k3, (N, N))

    def f(z, w, x):
        return jnp.tanh(w @ z + x)

    def solution(w, tol, **kw):
        return tj.fix(f, jnp.zeros(N), w, x, tol=tol, max_iter=5000, **kw)[0]

    def loss(w, tol, **kw):
        return jnp.sum(jnp.sin(solution(w, tol, **kw)))

    fd = (loss(w + EPS * direction, 1e-14) - loss(w - EPS * direction, 1e-14)) / (2 * EPS)
    rows = []
    for tol in (1e-4, 1e-6, 1e-8, 1e-10, 1e-12):
        for label, extra in (("bwd_tol follows tol (default)", {}), ("bwd_tol=1e-4 (old default)", {"bwd_tol": 1e-4})):
            ad = jnp.vdot(jax.grad(loss)(w, tol, **extra), direction)
            jf = jax.jacfwd(solution)(w, tol, **extra)
            jr = jax.jacrev(solution)(w, tol, **extra)
            rows.append({"tol": tol, "backward": label, "grad_rel_err_vs_fd": float(abs(ad - fd) / abs(fd)),
                         "jacfwd_vs_jacrev": float(jnp.max(jnp.abs(jf - jr)) / jnp.max(jnp.abs(jr)))})
    print(json.dumps({"problem": f"tanh(W z + x), n={N}, rho={RHO}, float64", "device": device_info(),
                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
