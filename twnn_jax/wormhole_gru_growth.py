"""The gated wormhole GRU that grows: seed 003's add/delete rule (`twnn_jax.growth`) on the units of every layer of
its stack (`twnn_jax.recurrent.wormhole_gru_cell`), as `twnn_jax.wormhole_growth` does for the wormhole net.

Each layer gets `cfg.hidden` slots and an active mask, `params["active"]` (one 0/1 array per layer). The sweep
(`recurrent.wgru_sweep`) multiplies each layer's new state by its mask, so an inactive unit is 0 at every time step
and gets no gradient; its weights (every row and column that touches it) and Adam moments are kept at 0. Shapes
never change, so growing or shrinking never recompiles.

A unit's outgoing weights, the ones the rule scores and the L1 step shrinks:
- feed-forward: its columns in the next layer's `zr` and `n_x` (the top layer: in the output head);
- recurrent: its columns in its own layer's `zr` (state part) and `n_h` (the state it passes to the next time
  step), and, for the top layer, in the wormhole `v` (its way back to layer 0).
The score is `growth.unit_scores` of their L1 norms. A new unit gets incoming weights ~ N(0, 0.01^2) (input or the
layer below, its own layer's state, and for layer 0 the wormhole), zero biases, feed-forward outgoing columns of
L1 norm 0.5 THRESHOLD in all and recurrent ones of 0.5 N THRESHOLD / 4 in all, so it starts just under the
threshold, as in the author's rule.

Choices of ours, not the paper's: a GRU unit has three outgoing weights per target (update, reset, candidate)
where the paper's tanh unit has one, and all of them count in its score; the wormhole gate's `q` is not scored.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import growth


def _times(tree, mask):
    return jax.tree.map(lambda a, m: a * m, tree, mask)


def _width(params) -> int:
    return params["layers"][0]["n_h"]["w"].shape[0]


def _n_in(params, layer: int) -> int:
    """Inputs of `layer` (the sequence's features for layer 0, the layer below's units otherwise)."""
    return params["layers"][layer]["n_x"]["w"].shape[1]


def with_active(params: dict, size) -> dict:
    """`params` with an active mask: `size` (traced) units in every layer; the inactive units' weights set to 0."""
    active = [(jnp.arange(_width(params)) < size).astype(jnp.float32) for _ in params["layers"]]
    params = {**params, "active": active}
    return _times(params, unit_mask(params))


def unit_mask(params: dict) -> dict:
    """A tree shaped like `params`: 0 at every weight that touches an inactive unit, else 1."""
    active = params["active"]
    ones = jax.tree.map(jnp.ones_like, params)
    for i, layer in enumerate(ones["layers"]):
        a = active[i]
        below = active[i - 1] if i > 0 else jnp.ones(_n_in(params, 0))
        both = jnp.concatenate([a, a])  # the update and reset gates' rows
        layer["zr"]["w"] = both[:, None] * jnp.concatenate([below, a])[None, :]
        layer["zr"]["b"] = both
        layer["n_x"]["w"] = a[:, None] * below[None, :]
        layer["n_x"]["b"] = a
        layer["n_h"]["w"] = a[:, None] * a[None, :]
        layer["n_h"]["b"] = a
    top = active[-1]
    ones["hole"]["v"] = active[0][:, None] * top[None, :]
    ones["hole"]["q"] = top
    ones["head"]["w"] = jnp.broadcast_to(top[None, :], params["head"]["w"].shape)
    return ones


def _outgoing(params: dict, layer: int) -> tuple[list, list]:
    """The outgoing weights of `layer`'s units, (feed-forward, recurrent), each a list of matrices whose columns
    are the units."""
    p, width = params["layers"][layer], _width(params)
    recurrent = [p["zr"]["w"][:, _n_in(params, layer):], p["n_h"]["w"]]
    if layer == len(params["layers"]) - 1:
        recurrent.append(params["hole"]["v"])
    if layer + 1 < len(params["layers"]):
        q = params["layers"][layer + 1]
        return [q["zr"]["w"][:, :width], q["n_x"]["w"]], recurrent
    return [params["head"]["w"]], recurrent


def _l1(blocks) -> jax.Array:
    return sum(jnp.sum(jnp.abs(b), 0) for b in blocks)


def scores(params: dict, layer: int) -> jax.Array:
    """Seed 003's score of every unit of `layer` (0 for inactive units), `growth.unit_scores`."""
    feed_forward, recurrent = _outgoing(params, layer)
    return growth.unit_scores(_l1(feed_forward), _l1(recurrent), params["active"][layer])


def l1_step(params: dict, amount) -> dict:
    """Every outgoing weight of every layer moved `amount` towards 0 (w - amount sign(w)); the weights from the
    sequence's input into layer 0 are nobody's outgoing weights and stay."""
    shrink = lambda w: w - amount * jnp.sign(w)  # noqa: E731
    layers = []
    for i, p in enumerate(params["layers"]):
        n_in = _n_in(params, i)
        zr_w = shrink(p["zr"]["w"]) if i > 0 else p["zr"]["w"].at[:, n_in:].set(shrink(p["zr"]["w"][:, n_in:]))
        layers.append({"zr": {**p["zr"], "w": zr_w}, "n_x": {**p["n_x"], "w": shrink(p["n_x"]["w"]) if i else
                                                              p["n_x"]["w"]},
                       "n_h": {**p["n_h"], "w": shrink(p["n_h"]["w"])}})
    return {**params, "layers": layers, "hole": {**params["hole"], "v": shrink(params["hole"]["v"])},
            "head": {**params["head"], "w": shrink(params["head"]["w"])}}


def _scaled_columns(key, shapes_and_rows, norm):
    """One random column per block (rows masked by that block's `rows`), jointly scaled to L1 norm `norm`."""
    keys = jax.random.split(key, len(shapes_and_rows))
    cols = [jax.random.normal(k, (n,)) * rows for k, (n, rows) in zip(keys, shapes_and_rows)]
    total = 1e-8 + sum(jnp.sum(jnp.abs(c)) for c in cols)
    return [norm * c / total for c in cols]


def _set_column(w, offset: int, new, col):
    """`w` with column `offset + slot` (where the width-sized bool `new` is True) replaced by `col`."""
    hit = jnp.concatenate([jnp.zeros(offset, bool), new, jnp.zeros(w.shape[1] - offset - new.shape[0], bool)])
    return jnp.where(hit[None, :], col[:, None], w)


def add_unit(key, params: dict, layer: int, slot, added) -> dict:
    """`params` with unit `slot` of `layer` made active and given fresh weights, where `added` (traced bool)."""
    width, n_layers, top = _width(params), len(params["layers"]), len(params["layers"]) - 1
    active = list(params["active"])
    n_before = jnp.sum(active[layer])
    new = (jnp.arange(width) == slot) & added
    active[layer] = jnp.maximum(active[layer], new.astype(active[layer].dtype))
    k_in, k_ff, k_rec = jax.random.split(key, 3)
    layers = [{name: dict(d) for name, d in p.items()} for p in params["layers"]]
    hole, head = dict(params["hole"]), dict(params["head"])

    # incoming: the new unit's rows (update and reset gates, candidate from below and from its own layer)
    p, a = layers[layer], active[layer]
    below = active[layer - 1] if layer > 0 else jnp.ones(_n_in(params, 0))
    both_new = jnp.concatenate([new, new])
    k = jax.random.split(k_in, 4)
    fresh = lambda kk, w, cols: growth.INIT_SCALE * jax.random.normal(kk, w.shape) * cols[None, :]  # noqa: E731
    p["zr"]["w"] = jnp.where(both_new[:, None], fresh(k[0], p["zr"]["w"], jnp.concatenate([below, a])), p["zr"]["w"])
    p["n_x"]["w"] = jnp.where(new[:, None], fresh(k[1], p["n_x"]["w"], below), p["n_x"]["w"])
    p["n_h"]["w"] = jnp.where(new[:, None], fresh(k[2], p["n_h"]["w"], a), p["n_h"]["w"])
    p["zr"]["b"] = jnp.where(both_new, 0.0, p["zr"]["b"])
    p["n_x"]["b"] = jnp.where(new, 0.0, p["n_x"]["b"])
    p["n_h"]["b"] = jnp.where(new, 0.0, p["n_h"]["b"])
    if layer == 0:  # the wormhole comes into layer 0: the new unit's row of it
        hole["v"] = jnp.where(new[:, None], fresh(k[3], hole["v"], active[top]), hole["v"])

    # feed-forward outgoing: into the next layer's gates and candidate, or into the head
    if layer + 1 < n_layers:
        q, a_next = layers[layer + 1], active[layer + 1]
        zr_col, nx_col = _scaled_columns(k_ff, [(2 * width, jnp.concatenate([a_next, a_next])), (width, a_next)],
                                         0.5 * growth.THRESHOLD)
        q["zr"]["w"] = _set_column(q["zr"]["w"], 0, new, zr_col)
        q["n_x"]["w"] = _set_column(q["n_x"]["w"], 0, new, nx_col)
    else:
        (col,) = _scaled_columns(k_ff, [(head["w"].shape[0], jnp.ones(head["w"].shape[0]))], 0.5 * growth.THRESHOLD)
        head["w"] = _set_column(head["w"], 0, new, col)

    # recurrent outgoing: into its own layer's gates and candidate at the next time step, and through the wormhole
    blocks = [(2 * width, jnp.concatenate([a, a])), (width, a)] + ([(width, active[0])] if layer == top else [])
    cols = _scaled_columns(k_rec, blocks, 0.5 * n_before * growth.THRESHOLD / 4.0)
    p["zr"]["w"] = _set_column(p["zr"]["w"], _n_in(params, layer), new, cols[0])
    p["n_h"]["w"] = _set_column(p["n_h"]["w"], 0, new, cols[1])
    if layer == top:
        hole["v"] = _set_column(hole["v"], 0, new, cols[2])
        hole["q"] = jnp.where(new, 0.0, hole["q"])
    return {**params, "layers": layers, "hole": hole, "head": head, "active": active}
