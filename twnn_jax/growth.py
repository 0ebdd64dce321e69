"""Networks that grow (seed 003: Miconi, "Neural networks with differentiable structure", arXiv 1606.06216 v2).

A plain tanh RNN, `h_t = tanh(Wxh x_t + Whh h_{t-1} + bh)`, softmax read-out `Why h_t + by`, trained on one
long text by truncated BPTT, 40 symbols a cycle, the hidden state carried from cycle to cycle. After each
update an L1 step shrinks the outgoing weights, and a stochastic rule adds and deletes neurons:

- score of neuron i: `s_i = 0.5 (sum_k |Why[k,i]| + 4 sum_j |Whh[j,i]| / N)`, N the current size;
- sub-threshold: `s_i <= THRESHOLD`. If more than `MARGIN` are, `MARGIN` of them (chosen at random) are
  kept and each other one is deleted with probability `P_DELETE`;
- if then fewer than `MARGIN` are sub-threshold, one neuron is added with probability `P_ADD`; in any case
  one is added with probability `P_SPONTANEOUS`. A new neuron's incoming weights are N(0, 0.01^2); its
  outgoing read-out column is scaled to L1 norm `0.5 THRESHOLD` and its recurrent column to
  `0.5 N THRESHOLD / 4`, so it starts just under the threshold and must earn its place.

The constants are the author's code's (`rnn.py` of the public repository). Shapes are static: `MAX_SIZE`
slots are allocated once and `params["active"]` (0/1 per slot) says which are neurons; deleting clears a
slot (its weights and state set to 0), adding fills the first free one. Changing the size therefore
never recompiles. Every value that differs between runs (growth on or off, the starting size, the text
schedule, the seed) is traced, so one compiled function trains many runs at once under `jax.vmap`.

Choices of ours, not the paper's: the texts come from NumPy's seeded generator; a net may use all
`MAX_SIZE` slots (the author's code stops adding at 99 of 100).

>>> state = init_state(jax.random.PRNGKey(0), size=1)                       # doctest: +SKIP
>>> state, rows = run_cycles(state, stream_of("hard"), True, 1000)          # doctest: +SKIP
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .tasks.brackets import EVAL_LEN, KINDS, N_SYMBOLS, SEQ_LEN, bracket_text

MAX_SIZE = 100  # slots (the author's maximum hidden size)
MAX_PHASES = 3  # texts read in turn by one stream (easy -> hard -> easy)
LR = 0.01  # RMSProp step size
RMS_DECAY = 0.01  # mem += RMS_DECAY (g^2 - mem)
MAX_DW = 0.01  # every weight change clipped to +-MAX_DW
L1 = 1e-4  # Why and Whh shrink by L1 * sign(w) after each update (fixed-size nets too)
THRESHOLD = 0.05  # a neuron with score <= THRESHOLD is sub-threshold
MARGIN = 1  # sub-threshold neurons kept
P_DELETE = 0.05  # per cycle, per deletable neuron
P_ADD = 0.01  # per cycle, when fewer than MARGIN neurons are sub-threshold
P_SPONTANEOUS = 1e-4  # per cycle, always
INIT_SCALE = 0.01  # initial and new incoming weights ~ N(0, INIT_SCALE^2)
MEM_INIT = 0.01  # RMSProp memory of new slots (and of Wxh, bh at the start, as the author's code does)
WEIGHTS = ("Wxh", "Whh", "bh", "Why", "by")


class GrowthState(NamedTuple):
    """One run: weights and the active mask (`params`), RMSProp memory, the carried hidden state, the
    position in the text, the cycle count and the random key."""

    params: dict
    mem: dict
    h: jax.Array
    pos: jax.Array
    step: jax.Array
    key: jax.Array


class Stream(NamedTuple):
    """What a run reads: texts (K, L) padded, their lengths (K,), and a schedule: from cycle `starts[i]` on,
    text `which[i]` (starts ascending, starts[0] = 0). Switching text restarts at its beginning."""

    texts: jax.Array
    lengths: jax.Array
    starts: jax.Array
    which: jax.Array


def stream_of(*kinds: str, switch_at: tuple[int, ...] = (), seed: int = 0, length: int | None = None) -> Stream:
    """A stream reading the bracket texts `kinds` in turn, switching at the cycles `switch_at`.

    stream_of("hard"); stream_of("easy", "hard", "easy", switch_at=(33_333, 66_666)) (the paper's switch)."""
    if len(switch_at) != len(kinds) - 1:
        raise ValueError(f"{len(kinds)} texts need {len(kinds) - 1} switch cycles, got {len(switch_at)}")
    if list(switch_at) != sorted(switch_at) or any(s <= 0 for s in switch_at):
        raise ValueError(f"switch cycles must be positive and ascending, got {switch_at}")
    names = list(KINDS)  # always both texts: every stream has one shape, so one compiled function reads any
    if not set(kinds) <= set(names):
        raise ValueError(f"texts must be among {', '.join(names)}, got {kinds}")
    texts = [bracket_text(k, seed, length) for k in names]
    width = max(len(t) for t in texts)
    padded = np.zeros((len(texts), width), np.int32)
    for i, t in enumerate(texts):
        padded[i, : len(t)] = t
    if len(kinds) > MAX_PHASES:
        raise ValueError(f"at most {MAX_PHASES} texts in turn, got {len(kinds)}")
    pad = MAX_PHASES - len(kinds)  # a fixed schedule length: one shape for every stream
    starts = (0, *switch_at) + (np.iinfo(np.int32).max,) * pad
    which = [names.index(k) for k in kinds] + [0] * pad
    return Stream(jnp.asarray(padded), jnp.asarray([len(t) for t in texts], jnp.int32),
                  jnp.asarray(starts, jnp.int32), jnp.asarray(which, jnp.int32))


# ---- the network -----------------------------------------------------------------------------------------
def _mask_weights(params: dict, active: jax.Array) -> dict:
    """The weights with every row and column of an inactive slot set to 0."""
    a = active
    return {**params, "Wxh": params["Wxh"] * a[:, None], "Whh": params["Whh"] * a[:, None] * a[None, :],
            "bh": params["bh"] * a, "Why": params["Why"] * a[None, :]}


def init_state(key, size=1, max_size: int = MAX_SIZE) -> GrowthState:
    """A net of `size` active neurons (slots 0..size-1; traced) in `max_size` slots, weights ~ N(0, 0.01^2)."""
    k_w, k_h, k_y, key = jax.random.split(key, 4)
    active = (jnp.arange(max_size) < size).astype(jnp.float32)
    params = {
        "Wxh": INIT_SCALE * jax.random.normal(k_w, (max_size, N_SYMBOLS)),
        "Whh": INIT_SCALE * jax.random.normal(k_h, (max_size, max_size)),
        "bh": jnp.zeros(max_size),
        "Why": INIT_SCALE * jax.random.normal(k_y, (N_SYMBOLS, max_size)),
        "by": jnp.zeros(N_SYMBOLS),
    }
    params = {**_mask_weights(params, active), "active": active}
    mem = {"Wxh": jnp.full((max_size, N_SYMBOLS), MEM_INIT, jnp.float32),
           "Whh": jnp.zeros((max_size, max_size)), "bh": jnp.full(max_size, MEM_INIT, jnp.float32),
           "Why": jnp.zeros((N_SYMBOLS, max_size)), "by": jnp.zeros(N_SYMBOLS)}
    return GrowthState(params, mem, jnp.zeros(max_size), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), key)


def sequence_loss(weights: dict, active, h0, inputs, targets):
    """Summed cross-entropy of predicting `targets` from `inputs` (symbol indices) starting at `h0`.

    Returns (loss, (last hidden state, number of correct argmax predictions)). Inactive slots stay 0."""

    def step(h, xy):
        x, y = xy
        h = active * jnp.tanh(jnp.take(weights["Wxh"], x, axis=1) + weights["Whh"] @ h + weights["bh"])
        logits = weights["Why"] @ h + weights["by"]
        logp = jax.nn.log_softmax(logits)
        return h, (-logp[y], jnp.argmax(logits) == y)

    h, (losses, correct) = jax.lax.scan(step, h0, (inputs, targets))
    return jnp.sum(losses), (h, jnp.sum(correct))


def unit_scores(readout_l1, recurrent_l1, active) -> jax.Array:
    """The score of every slot from the L1 norms of its outgoing read-out and recurrent weights:
    0.5 (readout_l1 + 4 recurrent_l1 / N), N the number of active slots; 0 for inactive slots."""
    n = jnp.maximum(jnp.sum(active), 1.0)
    s = 0.5 * (readout_l1 + 4.0 * recurrent_l1 / n)
    return s * active


def scores(params: dict) -> jax.Array:
    """Per slot: 0.5 (L1 of its read-out column + 4 L1 of its recurrent column / N); 0 for inactive slots."""
    return unit_scores(jnp.sum(jnp.abs(params["Why"]), 0), jnp.sum(jnp.abs(params["Whh"]), 0), params["active"])


class Resize(NamedTuple):
    deleted: jax.Array  # bool per slot
    added: jax.Array  # bool: one neuron added
    slot: jax.Array  # where (meaningful when added)


def resize_decision(key, params: dict) -> Resize:
    """The stochastic add/delete rule (pure): which slots to delete and whether to add one, and where."""
    return decide(key, params["active"] > 0, scores(params))


def decide(key, active, s) -> Resize:
    """The stochastic add/delete rule for one group of slots, given which are active (bool) and their
    scores `s`: which slots to delete and whether to add one, and where (the first free slot)."""
    max_size = active.shape[0]
    sub = active & (s <= THRESHOLD)
    k_keep, k_del, k_add, k_spont = jax.random.split(key, 4)
    # keep MARGIN sub-threshold neurons at random: the MARGIN smallest of a random priority among them
    u = jax.random.uniform(k_keep, (max_size,))
    rank = jnp.sum(sub[None, :] & (u[None, :] < u[:, None]), axis=1)
    kept = sub & (rank < MARGIN)
    deleted = (jnp.sum(sub) > MARGIN) & sub & ~kept & (jax.random.uniform(k_del, (max_size,)) < P_DELETE)
    remaining = active & ~deleted
    few_sub = jnp.sum(remaining & (s <= THRESHOLD)) < MARGIN
    added = (jnp.sum(remaining) < max_size) & (
        (few_sub & (jax.random.uniform(k_add) < P_ADD)) | (jax.random.uniform(k_spont) < P_SPONTANEOUS))
    return Resize(deleted, added, jnp.argmin(remaining.astype(jnp.int32)))  # the first free slot


def apply_resize(key, params: dict, mem: dict, h, decision: Resize):
    """Delete and add as `decision` says: (params, mem, h). A new neuron gets incoming weights
    ~ N(0, 0.01^2), a read-out column of L1 norm 0.5 THRESHOLD and a recurrent column of L1 norm
    0.5 N THRESHOLD / 4 (N the size before it), zero bias and state, and RMSProp memory MEM_INIT."""
    max_size = h.shape[0]
    active = params["active"] * ~decision.deleted
    n_before = jnp.sum(active)
    new = (jnp.arange(max_size) == decision.slot) & decision.added
    k_x, k_h, k_y, k_c = jax.random.split(key, 4)
    row_x = INIT_SCALE * jax.random.normal(k_x, (N_SYMBOLS,))
    row_h = INIT_SCALE * jax.random.normal(k_h, (max_size,)) * active  # from the existing neurons
    col_y = jax.random.normal(k_y, (N_SYMBOLS,))
    col_y = 0.5 * THRESHOLD * col_y / (1e-8 + jnp.sum(jnp.abs(col_y)))
    col_h = jax.random.normal(k_c, (max_size,)) * (active + new)  # to the existing neurons and itself
    col_h = 0.5 * n_before * THRESHOLD * col_h / (1e-8 + 4.0 * jnp.sum(jnp.abs(col_h)))
    row, col = new[:, None], new[None, :]
    weights = _mask_weights(params, active)
    whh = jnp.where(row, row_h[None, :], weights["Whh"])
    weights = {
        "Wxh": jnp.where(row, row_x[None, :], weights["Wxh"]),
        "Whh": jnp.where(col, col_h[:, None], whh),
        "bh": jnp.where(new, 0.0, weights["bh"]),
        "Why": jnp.where(col, col_y[:, None], weights["Why"]),
        "by": weights["by"],
        "active": jnp.maximum(active, new.astype(active.dtype)),
    }
    mem = {**mem, "Wxh": jnp.where(row, MEM_INIT, mem["Wxh"]),
           "Whh": jnp.where(row | col, MEM_INIT, mem["Whh"]),
           "bh": jnp.where(new, MEM_INIT, mem["bh"]), "Why": jnp.where(col, MEM_INIT, mem["Why"])}
    return weights, mem, h * weights["active"]


# ---- one cycle -------------------------------------------------------------------------------------------
def _text_index(stream: Stream, step):
    return stream.which[jnp.sum(step >= stream.starts) - 1]


def cycle(state: GrowthState, stream: Stream, grow):
    """One training cycle: 40 symbols of BPTT from the carried state, the RMSProp update (changes clipped),
    the L1 step, then (when `grow`, traced) the add/delete rule. Returns (state, per-cycle metrics)."""
    params, mem, h, pos, step, key = state
    key, k_rule, k_new = jax.random.split(key, 3)
    text = _text_index(stream, step)
    switched = (step > 0) & (text != _text_index(stream, step - 1))
    pos = jnp.where(switched, 0, pos)
    wrap = (step == 0) | (pos + SEQ_LEN + 1 >= stream.lengths[text])
    pos = jnp.where(wrap, 0, pos)
    h = jnp.where(wrap, 0.0, h)
    # 41 symbols gathered from the flattened texts (texts[text] would copy a whole row every cycle)
    seq = stream.texts.reshape(-1)[text * stream.texts.shape[1] + pos + jnp.arange(SEQ_LEN + 1)]
    active = params["active"]
    weights = {k: params[k] for k in WEIGHTS}
    (loss, (h, correct)), grads = jax.value_and_grad(sequence_loss, has_aux=True)(
        weights, active, h, seq[:-1], seq[1:])
    mem = {k: mem[k] + RMS_DECAY * (grads[k] ** 2 - mem[k]) for k in WEIGHTS}
    weights = {k: weights[k] + jnp.clip(-LR * grads[k] / jnp.sqrt(mem[k] + 1e-8), -MAX_DW, MAX_DW) for k in WEIGHTS}
    weights["Why"] = weights["Why"] - L1 * jnp.sign(weights["Why"])
    weights["Whh"] = weights["Whh"] - L1 * jnp.sign(weights["Whh"])
    params = {**_mask_weights(weights, active), "active": active}
    decision = resize_decision(k_rule, params)
    decision = decision._replace(deleted=decision.deleted & grow, added=decision.added & grow)
    params, mem, h = apply_resize(k_new, params, mem, h, decision)
    grad_norm = jnp.sqrt(sum(jnp.sum(g ** 2) for g in grads.values()))
    metrics = {"loss": loss / SEQ_LEN, "metric": correct / SEQ_LEN, "size": jnp.sum(params["active"]).astype(jnp.int32),
               "added": decision.added, "deleted": jnp.sum(decision.deleted).astype(jnp.int32),
               "grad_norm": grad_norm, "text": text}
    return GrowthState(params, mem, h, pos + SEQ_LEN, step + 1, key), metrics


@functools.partial(jax.jit, static_argnames=("n", "every"))
def run_cycles(state: GrowthState, stream: Stream, grow, n: int, every: int = 1):
    """`n` cycles (a compiled scan); the per-cycle loss, accuracy and size averaged over blocks of `every`
    cycles (the size: its value at the end of each block). Vmappable over state and grow."""
    if n % every:
        raise ValueError(f"n ({n}) must be a multiple of every ({every})")

    def block(state, _):
        state, m = jax.lax.scan(lambda s, _: cycle(s, stream, grow), state, None, length=every)
        return state, {"loss": jnp.mean(m["loss"]), "metric": jnp.mean(m["metric"]), "size": m["size"][-1],
                       "added": jnp.sum(m["added"]), "deleted": jnp.sum(m["deleted"])}

    return jax.lax.scan(block, state, None, length=n // every)


@functools.partial(jax.jit, static_argnames=("kind", "seed", "length"))
def evaluate(params: dict, kind: str, seed: int = 1, length: int = EVAL_LEN):
    """Per-symbol cross-entropy and accuracy on a held-out text (seed 1), read from a zero state."""
    text = jnp.asarray(bracket_text(kind, seed, length))
    weights = {k: params[k] for k in WEIGHTS}
    loss, (_, correct) = sequence_loss(weights, params["active"], jnp.zeros_like(params["bh"]), text[:-1], text[1:])
    return loss / (length - 1), correct / (length - 1)


# ---- as a trainer of `twnn train` (`twnn_jax.train.Trainer`) -------------------------------------------------
def size_summary(history: list[dict]) -> dict:
    """The final figures of a run's size (its metrics rows carry `size`, `added`, `deleted` per cycle)."""
    sizes = [h["size"] for h in history if isinstance(h.get("size"), int)]
    if not sizes:
        return {}
    return {"final_size": sizes[-1], "max_size": max(sizes), "min_size": min(sizes),
            "neurons_added": sum(int(h.get("added") or 0) for h in history),
            "neurons_deleted": sum(int(h.get("deleted") or 0) for h in history)}


def build_growth_trainer(cfg):
    """The `Trainer` of a bracket task: seed 003's tanh RNN, one cycle a step, `cfg.hidden` slots; it starts
    from one neuron and grows when `cfg.grow == "on"`, else it is a fixed net of `cfg.hidden` neurons.

    TrainState layout: params = the weights and `active`; opt_state = {"mem": RMSProp memory, "h": the
    carried hidden state, "pos": the position in the text}. The method's own constants apply (LR, MAX_DW,
    L1, ...): the solver settings and `lr` of TrainConfig do not (the net has no fixed point)."""
    from .models import Model
    from .tasks.brackets import brackets_task
    from .train import SUMMARY_KEYS, Trainer, TrainState, run_steps_of

    kind = cfg.task.split("-", 1)[1]
    task = brackets_task(kind)
    grow = cfg.grow == "on"
    max_size = cfg.hidden
    stream = stream_of(kind)

    def to_growth(s: TrainState) -> GrowthState:
        return GrowthState(s.params, s.opt_state["mem"], s.opt_state["h"], s.opt_state["pos"], s.step, s.key)

    def from_growth(g: GrowthState) -> TrainState:
        return TrainState(g.params, {"mem": g.mem, "h": g.h, "pos": g.pos}, g.step, g.key)

    def init(seed) -> TrainState:
        return from_growth(init_state(jax.random.PRNGKey(seed), 1 if grow else max_size, max_size))

    zero_f, zero_i = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)

    def step(state: TrainState, live):
        g, m = cycle(to_growth(state), stream, grow)
        metrics = {"step": g.step, "loss": m["loss"], "metric": m["metric"], "skipped": jnp.zeros((), bool),
                   "grad_norm": m["grad_norm"], "fwd_iters_mean": zero_f, "fwd_iters_max": zero_i,
                   "bwd_iters_mean": zero_f, "bwd_iters_max": zero_i, "converged_frac": zero_f + 1,
                   "bwd_converged_frac": zero_f + 1, "fwd_diverged_frac": zero_f, "fwd_residual_max": zero_f,
                   "size": m["size"], "added": m["added"].astype(jnp.int32), "deleted": m["deleted"]}
        return from_growth(g), metrics

    row_keys = tuple(k for k in SUMMARY_KEYS if k != "gate_mean") + ("size", "added", "deleted")

    def evaluate_fn(params, live):
        loss, acc = evaluate(params, kind)
        one = jnp.ones((1,))
        return {"loss": loss, "metric": acc, "sample_loss": loss * one, "sample_metric": acc * one,
                "fwd_iters": jnp.zeros((1,), jnp.int32), "fwd_residual": 0 * one, "fwd_converged": one > 0,
                "gates": jnp.zeros((1, 0)), "output": jnp.zeros((1, N_SYMBOLS)), "size": jnp.sum(params["active"])}

    model = Model(kind="growing_rnn" if grow else "tanh_rnn", init=init, apply=None, n_wormholes=0, uses_fix=False)
    return Trainer(cfg, task, model, init, jax.jit(step), run_steps_of(step, row_keys), jax.jit(evaluate_fn),
                   None, None)
