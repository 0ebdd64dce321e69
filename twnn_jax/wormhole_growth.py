"""Wormhole networks that grow: seed 003's add/delete rule (`twnn_jax.growth`) on the units of a wormhole segment.

The growing layers of a one-segment model (`small`: its tanh hidden layer; `wormhole`: every layer) get
`cfg.hidden` slots and an active mask, `params["seg"]["active"]` (one 0/1 array per layer; 1 for a layer
that does not grow). The segment's sweep multiplies each layer's activation by its mask
(`twnn_jax.wormhole.sweep`), so an inactive unit is 0 in every state and gets no gradient; its weights
(every row and column that touches it) and its Adam moments are kept at 0. Shapes never change, so
growing or shrinking never recompiles.

After each ordinary training step (Adam, `twnn_jax.train`):

- an L1 step shrinks every outgoing weight of a growing layer (the next layer's or the head's weights,
  and the wormholes leaving it) by `growth.L1 * lr / growth.LR` (the author's L1 step in proportion to
  the step size: at lr = 0.01 it is the author's 1e-4);
- per growing layer, the score of unit u is `growth.unit_scores`: 0.5 (L1 of its feed-forward outgoing
  weights + 4 L1 of its outgoing wormhole weights / N); `growth.decide` draws which units to delete and
  whether to add one (the author's threshold, margin and probabilities);
- a new unit gets incoming weights ~ N(0, 0.01^2) (from the layer below and through wormholes), zero
  bias, a feed-forward outgoing column of L1 norm 0.5 THRESHOLD and outgoing wormhole columns of L1 norm
  0.5 N THRESHOLD / 4, as in `growth.apply_resize`.

Choices of ours, not the paper's: Adam instead of the clipped RMSProp step; the L1 step tied to lr; the
gate weights `q` of a wormhole are not part of the score. A run starts from one unit per growing layer.

The number of wormholes grows by the same rule (grow=wormholes, the `wormhole` model): its segment gets every
wormhole a segment of its layers can have (`models.every_wormhole`, 6 for 3 layers) and an active mask,
`params["seg"]["holes_active"]` (one 0/1 per wormhole); an inactive wormhole's gate is 0
(`twnn_jax.wormhole.gates`) and its weights and Adam moments are kept at 0. The wormholes are then the
slots of the rule: a wormhole's score is the mean L1 norm of its weight's columns (`hole_scores`), the L1
step shrinks every wormhole weight, and a new wormhole gets a weight whose columns have L1 norm
0.5 THRESHOLD (just under the threshold, as a new unit's outgoing column) and a closed-gate start
(q = 0, d = 0). A run starts from one wormhole, the model's own (last layer to first); units do not grow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from optax.tree_utils import tree_map_params

from . import growth

# one-segment models whose layers may grow, and the gated wormhole GRU (`twnn_jax.wormhole_gru_growth`)
GROWABLE_MODELS = ("small", "wormhole", "wormhole_gru")


def growing_layers(model) -> tuple[int, ...]:
    """Indices of the layers of `model` that grow (small: not its one-unit output layer; wormhole_gru: its stack)."""
    if model.kind not in GROWABLE_MODELS:
        raise ValueError(f"growth works on the models {', '.join(GROWABLE_MODELS)}, not {model.kind!r}")
    if model.kind == "wormhole_gru":
        from .recurrent import WORMHOLE_GRU_LAYERS

        return tuple(range(WORMHOLE_GRU_LAYERS))
    n = len(model.spec.widths)
    return tuple(range(n - 1)) if model.kind == "small" else tuple(range(n))


class Units(NamedTuple):
    """How the rule reaches one model's units (`units_of`): its growing layers, where its masks live, and the
    mask, scores, L1 step and new unit of its parameters."""

    layers: tuple[int, ...]
    active: Callable  # params -> [0/1 array per layer]
    replace_active: Callable  # (params, active) -> params
    with_active: Callable  # (params, size) -> params with `size` units active per growing layer
    unit_mask: Callable  # params -> a tree like params, 0 at weights touching an inactive unit
    scores: Callable  # (params, layer) -> seed 003's score per unit
    l1_step: Callable  # (params, amount) -> params, outgoing weights moved `amount` towards 0
    add_unit: Callable  # (key, params, layer, slot, added) -> params


def units_of(model, grow: str = "on") -> Units:
    """The `Units` of a growable model: this module's functions for a wormhole segment, those of
    `twnn_jax.wormhole_gru_growth` for the gated wormhole GRU; with `grow` "wormholes", the wormholes of the
    wormhole model as the slots of one group (`holes_of`)."""
    if grow == "wormholes":
        return holes_of(model)
    layers = growing_layers(model)
    if model.kind == "wormhole_gru":
        from . import wormhole_gru_growth as gru

        return Units(layers, lambda p: p["active"], lambda p, a: {**p, "active": a}, gru.with_active,
                     gru.unit_mask, gru.scores, gru.l1_step, gru.add_unit)
    spec = model.spec
    return Units(layers, lambda p: p["seg"]["active"], lambda p, a: {**p, "seg": {**p["seg"], "active": a}},
                 lambda p, size: with_active(p, spec, layers, size), lambda p: unit_mask(p, spec),
                 lambda p, layer: scores(p, spec, layer), lambda p, amount: l1_step(p, spec, layers, amount),
                 lambda key, p, layer, slot, added: add_unit(key, p, spec, layer, slot, added))


def holes_of(model) -> Units:
    """The wormholes of the `wormhole` model as one group of slots for the rule (its "layer" 0)."""
    if model.kind != "wormhole":
        raise ValueError(f"the number of wormholes grows on the model wormhole, not {model.kind!r}")
    return Units((0,), lambda p: [p["seg"]["holes_active"]],
                 lambda p, a: {**p, "seg": {**p["seg"], "holes_active": a[0]}},
                 with_holes, hole_mask, lambda p, layer: hole_scores(p), l1_holes,
                 lambda key, p, layer, slot, added: add_hole(key, p, slot, added))


def with_holes(params: dict, count) -> dict:
    """`params` with `count` (traced) wormholes active, the first of the segment's; the others' weights set to 0."""
    n = len(params["seg"]["holes"])
    params = {**params, "seg": {**params["seg"], "holes_active": (jnp.arange(n) < count).astype(jnp.float32)}}
    return _times(params, hole_mask(params))


def hole_mask(params: dict) -> dict:
    """A tree shaped like `params`: 0 at every weight of an inactive wormhole (v, q, d), else 1."""
    on = params["seg"]["holes_active"]
    ones = jax.tree.map(jnp.ones_like, params)
    ones["seg"]["holes"] = [jax.tree.map(lambda a, k=k: a * on[k], h) for k, h in enumerate(ones["seg"]["holes"])]
    return ones


def hole_scores(params: dict) -> jax.Array:
    """Per wormhole: the mean L1 norm of its weight's columns (one per source unit); 0 when inactive."""
    holes = params["seg"]["holes"]
    return jnp.stack([jnp.sum(jnp.abs(h["v"])) / h["v"].shape[1] for h in holes]) * params["seg"]["holes_active"]


def l1_holes(params: dict, amount) -> dict:
    """Every wormhole weight moved `amount` towards 0 (v - amount sign(v))."""
    seg = params["seg"]
    return {**params, "seg": {**seg, "holes": [{**h, "v": h["v"] - amount * jnp.sign(h["v"])} for h in seg["holes"]]}}


def add_hole(key, params: dict, slot, added) -> dict:
    """`params` with wormhole `slot` made active where `added` (traced bool): a weight whose columns have L1 norm
    0.5 THRESHOLD, a closed-gate start (q = 0, d = 0)."""
    seg = params["seg"]
    n = len(seg["holes"])
    new = (jnp.arange(n) == slot) & added
    holes = []
    for k, (h, k_v) in enumerate(zip(seg["holes"], jax.random.split(key, n))):
        fresh = _l1_scaled(k_v, h["v"].shape, 0.5 * growth.THRESHOLD * h["v"].shape[1], 1.0)
        holes.append({"v": jnp.where(new[k], fresh, h["v"]), "q": jnp.where(new[k], 0.0, h["q"]),
                      "d": jnp.where(new[k], 0.0, h["d"])})
    active = jnp.maximum(seg["holes_active"], new.astype(seg["holes_active"].dtype))
    return {**params, "seg": {**seg, "holes": holes, "holes_active": active}}


def with_active(params: dict, spec, layers, size) -> dict:
    """`params` with an active mask: `size` (traced) units in each growing layer, all units in the others;
    the weights of the inactive units set to 0."""
    active = [(jnp.arange(w) < size).astype(jnp.float32) if i in layers else jnp.ones(w, jnp.float32)
              for i, w in enumerate(spec.widths)]
    params = {**params, "seg": {**params["seg"], "active": active}}
    return _times(params, unit_mask(params, spec))


def _times(tree, mask):
    return jax.tree.map(lambda a, m: a * m, tree, mask)


def unit_mask(params: dict, spec) -> dict:
    """A tree shaped like `params`: 0 at every weight that touches an inactive unit, else 1."""
    active = params["seg"]["active"]
    ones = jax.tree.map(jnp.ones_like, params)
    seg = ones["seg"]
    for i, layer in enumerate(seg["layers"]):
        cols = active[i - 1] if i > 0 else jnp.ones(spec.n_in)
        layer["w"] = active[i][:, None] * cols[None, :]
        layer["b"] = active[i]
    for hole, (j, i) in zip(seg["holes"], spec.wormholes):
        hole["v"] = active[i][:, None] * active[j][None, :]
        hole["q"] = active[j]
    if "head" in ones:
        ones["head"]["w"] = jnp.broadcast_to(active[-1][None, :], params["head"]["w"].shape)
    return ones


def _readout(params, spec, layer):
    """The feed-forward weights leaving `layer` (out x width): the next layer's, or the head's after the last."""
    if layer + 1 < len(spec.widths):
        return params["seg"]["layers"][layer + 1]["w"]
    return params["head"]["w"]


def scores(params: dict, spec, layer: int) -> jax.Array:
    """Seed 003's score of every unit of `layer` (0 for inactive units), `growth.unit_scores`."""
    readout = jnp.sum(jnp.abs(_readout(params, spec, layer)), 0)
    recurrent = sum((jnp.sum(jnp.abs(h["v"]), 0) for h, (j, _) in zip(params["seg"]["holes"], spec.wormholes)
                     if j == layer), jnp.zeros(spec.widths[layer]))
    return growth.unit_scores(readout, recurrent, params["seg"]["active"][layer])


def l1_step(params: dict, spec, layers, amount) -> dict:
    """Every outgoing weight of the growing `layers` moved `amount` towards 0 (w - amount sign(w))."""
    shrink = lambda w: w - amount * jnp.sign(w)  # noqa: E731
    seg = params["seg"]
    new_layers = [dict(p) for p in seg["layers"]]
    head = dict(params["head"]) if "head" in params else None
    for i in layers:
        if i + 1 < len(spec.widths):
            new_layers[i + 1]["w"] = shrink(new_layers[i + 1]["w"])
        else:
            head["w"] = shrink(head["w"])
    holes = [{**h, "v": shrink(h["v"])} if j in layers else h for h, (j, _) in zip(seg["holes"], spec.wormholes)]
    params = {**params, "seg": {**seg, "layers": new_layers, "holes": holes}}
    return params if head is None else {**params, "head": head}


def _l1_scaled(key, shape, norm, mask):
    v = jax.random.normal(key, shape) * mask
    return norm * v / (1e-8 + jnp.sum(jnp.abs(v)))


def add_unit(key, params: dict, spec, layer: int, slot, added) -> dict:
    """`params` with unit `slot` of `layer` made active and given fresh weights, where `added` (traced bool)."""
    seg = params["seg"]
    active = list(seg["active"])
    n_before = jnp.sum(active[layer])
    new = (jnp.arange(spec.widths[layer]) == slot) & added
    active[layer] = jnp.maximum(active[layer], new.astype(active[layer].dtype))
    keys = iter(jax.random.split(key, 2 + 2 * len(spec.wormholes)))
    below = active[layer - 1] if layer > 0 else jnp.ones(spec.n_in)
    layers_p = [dict(p) for p in seg["layers"]]
    w = layers_p[layer]["w"]
    layers_p[layer]["w"] = jnp.where(new[:, None], growth.INIT_SCALE * jax.random.normal(next(keys), w.shape) * below,
                                     w)
    layers_p[layer]["b"] = jnp.where(new, 0.0, layers_p[layer]["b"])
    out = _readout(params, spec, layer)
    rows_out = active[layer + 1] if layer + 1 < len(spec.widths) else jnp.ones(out.shape[0])
    col = _l1_scaled(next(keys), (out.shape[0],), 0.5 * growth.THRESHOLD, rows_out)
    out = jnp.where(new[None, :], col[:, None], out)
    holes = []
    for h, (j, i) in zip(seg["holes"], spec.wormholes):
        h = dict(h)
        k_in, k_out = next(keys), next(keys)
        if i == layer:  # a wormhole into the layer: the new unit's incoming row
            h["v"] = jnp.where(new[:, None], growth.INIT_SCALE * jax.random.normal(k_in, h["v"].shape) * active[j],
                               h["v"])
        if j == layer:  # a wormhole leaving it: an outgoing column just under the threshold
            c = _l1_scaled(k_out, (h["v"].shape[0],), 0.5 * n_before * growth.THRESHOLD / 4.0, active[i])
            h["v"] = jnp.where(new[None, :], c[:, None], h["v"])
            h["q"] = jnp.where(new, 0.0, h["q"])
        holes.append(h)
    head = params.get("head")
    if layer + 1 < len(spec.widths):
        layers_p[layer + 1]["w"] = out
    else:
        head = {**head, "w": out}
    params = {**params, "seg": {**seg, "layers": layers_p, "holes": holes, "active": active}}
    return params if head is None else {**params, "head": head}


def resize(key, params: dict, units: Units, grow=True):
    """Seed 003's rule on each growing layer (nothing changes where `grow`, traced, is False):
    (params, units added, units deleted, sizes per growing layer)."""
    added_total, deleted_total = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)
    for layer, k in zip(units.layers, jax.random.split(key, len(units.layers))):
        k_rule, k_new = jax.random.split(k)
        active = units.active(params)[layer]
        decision = growth.decide(k_rule, active > 0, units.scores(params, layer))
        deleted, added = decision.deleted & grow, decision.added & grow
        kept = list(units.active(params))
        kept[layer] = active * ~deleted
        params = units.add_unit(k_new, units.replace_active(params, kept), layer, decision.slot, added)
        added_total += added.astype(jnp.int32)
        deleted_total += jnp.sum(deleted).astype(jnp.int32)
    params = _times(params, units.unit_mask(params))
    sizes = jnp.stack([jnp.sum(units.active(params)[i]) for i in units.layers]).astype(jnp.int32)
    return params, added_total, deleted_total, sizes


def _optimizer_of(trainer):
    from .train import optimizer_for  # the trainer's optimizer (a pure transform): its state's layout

    return optimizer_for(trainer.config.clip_norm)


def init_growing(trainer, seed, size=1):
    """The TrainState of `trainer` (one without the add/delete rule: `build_trainer(cfg, rule=False)`) with an
    active mask: `size` units (traced) in each growing layer, or `size` wormholes (grow=wormholes). Pure; jit or
    vmap it."""
    from .train import TrainState

    state = trainer.init(seed)
    params = units_of(trainer.model, trainer.config.grow).with_active(state.params, size)
    return TrainState(params, _optimizer_of(trainer).init(params), state.step, state.key, state.surrogate)


def growing_step(trainer):
    """`step(state, live, grow=True) -> (state, metrics)`: `trainer`'s step (one without the rule), then
    the L1 step and (where `grow`, traced) the add/delete rule. The metrics gain `size` (active units of the
    growing layers; grow=wormholes: active wormholes), `added`, `deleted` and `sizes` (per growing layer). Pure;
    jit or vmap it."""
    from .train import TrainState

    units, opt = units_of(trainer.model, trainer.config.grow), _optimizer_of(trainer)

    def step(state: TrainState, live, grow=True):
        new, metrics = trainer.step(state, live)
        params = units.replace_active(new.params, units.active(state.params))  # only the rule changes it
        params = units.l1_step(params, growth.L1 * live.lr / growth.LR)
        key, k_rule = jax.random.split(new.key)
        params, added, deleted, sizes = resize(k_rule, params, units, grow)
        mask = units.unit_mask(params)
        opt_state = tree_map_params(opt, lambda a, m: a * m, new.opt_state, mask)  # no stale Adam moments
        metrics = {**metrics, "size": jnp.sum(sizes), "added": added, "deleted": deleted, "sizes": sizes}
        return TrainState(_times(params, mask), opt_state, new.step, key, new.surrogate), metrics

    return step


def growing_trainer(trainer):
    """`trainer` (built by `twnn_jax.train.build_trainer` without the rule) made to grow: its init starts from one
    unit per growing layer (grow=wormholes: one wormhole) and each step is `growing_step`'s. Evaluation and
    generation are the trainer's own."""
    from .train import SUMMARY_KEYS, run_steps_of

    units_of(trainer.model, trainer.config.grow)  # a model that can grow so, or a clear error
    step = growing_step(trainer)
    init_jit = jax.jit(lambda seed: init_growing(trainer, seed))

    def init_state(seed):
        return init_jit(jnp.asarray(seed, jnp.int32))

    init_state._cache_size = init_jit._cache_size
    return trainer._replace(init=init_state, step=jax.jit(step),
                            run=run_steps_of(step, (*SUMMARY_KEYS, "size", "added", "deleted")))
