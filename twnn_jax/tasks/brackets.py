"""The generated bracket texts of "Neural networks with differentiable structure" (Miconi 2016, seed 003).

Alphabet of 4 symbols, `a b ( )` (indices 0-3). Next-symbol prediction on one long text:

- easy: groups `(ab` + `ab` repeated while a coin with p = 0.6 comes up + `)`; 200,000 groups (~1.4 M symbols).
  Once `(` is seen, `a` and `b` alternate, and `)` can only follow a `b`.
- hard: groups of 6 letters in brackets, each group the previous one reversed with one random letter
  flipped (a <-> b), until the text exceeds 1.2 M symbols. Predicting a group needs the previous one.

The generators follow the author's (p = 0.6 for easy; the first hard group is `abbaab`), with NumPy's
seeded generator instead of Python's unseeded `random`, so a text is the same on every machine.

The seed-003 trainer (`twnn_jax.growth`) reads a text as one stream, 40 symbols a cycle. The `Task`
records here also give batches of random 40-symbol windows for any sequence model (x one-hot (B, 40, 4),
y the next symbols (B, 40)).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .base import Task
from .digits import classification_loss

ALPHABET = "ab()"
N_SYMBOLS = 4
SEQ_LEN = 40  # symbols per truncated-BPTT window (the author's seq_length)
EASY_GROUPS = 200_000
EASY_P = 0.6
HARD_MIN_LEN = 1_200_000
HARD_FIRST = "abbaab"
KINDS = ("easy", "hard")
EVAL_LEN = 4_000  # symbols of the held-out evaluation text (another seed)


def _easy(rng: np.random.Generator, groups: int) -> str:
    # the number of extra "ab" per group: geometric, P(k extra) = 0.6^k * 0.4
    extra = rng.geometric(1.0 - EASY_P, size=groups) - 1
    return "".join("(ab" + "ab" * int(k) + ")" for k in extra)


def _hard(rng: np.random.Generator, min_len: int) -> str:
    group = list(HARD_FIRST)
    parts, n = [], 0
    while n <= min_len:
        group = group[::-1]
        i = int(rng.integers(len(group)))
        group[i] = "b" if group[i] == "a" else "a"
        parts.append("(" + "".join(group) + ")")
        n += len(group) + 2
    return "".join(parts)


@functools.lru_cache(maxsize=8)
def bracket_text(kind: str, seed: int = 0, length: int | None = None) -> np.ndarray:
    """The text of `kind` ("easy" or "hard") as symbol indices (int32), generated from `seed`.

    `length`: cut to this many symbols (None: the full text, ~1.2-1.4 M symbols)."""
    if kind not in KINDS:
        raise ValueError(f"bracket task must be one of {', '.join(KINDS)}, got {kind!r}")
    rng = np.random.default_rng(seed)
    if length is None:
        text = _easy(rng, EASY_GROUPS) if kind == "easy" else _hard(rng, HARD_MIN_LEN)
    else:  # only as much as needed
        text = _easy(rng, length // 4 + 2) if kind == "easy" else _hard(rng, length)
        text = text[:length]
    codes = np.frombuffer(text.encode("ascii"), np.uint8)
    table = np.zeros(256, np.int32)
    for i, ch in enumerate(ALPHABET):
        table[ord(ch)] = i
    out = table[codes]
    out.setflags(write=False)
    return out


def decode(symbols) -> str:
    return "".join(ALPHABET[int(s)] for s in np.asarray(symbols))


def windows(text: jax.Array, starts: jax.Array, length: int = SEQ_LEN):
    """Windows of `length` + 1 symbols at `starts`: (one-hot inputs (B, length, 4), next symbols (B, length))."""
    idx = starts[:, None] + jnp.arange(length + 1)[None, :]
    seq = text[idx]
    return jax.nn.one_hot(seq[:, :-1], N_SYMBOLS), seq[:, 1:]


def brackets_task(kind: str, n_eval: int = 64) -> Task:
    """Next-symbol prediction on the `kind` bracket text: random 40-symbol windows of the training text
    (seed 0); the evaluation set is `n_eval` windows of a held-out text (seed 1)."""
    text = jnp.asarray(bracket_text(kind, 0))
    eval_text = jnp.asarray(bracket_text(kind, 1, EVAL_LEN))
    span = text.shape[0] - SEQ_LEN - 1

    def sample(key, batch_size):
        return windows(text, jax.random.randint(key, (batch_size,), 0, span))

    eval_starts = jnp.arange(n_eval) * ((EVAL_LEN - SEQ_LEN - 1) // n_eval)
    return Task(
        name=f"brackets-{kind}",
        sample=sample,
        loss=classification_loss,
        eval_set=windows(eval_text, eval_starts),
        n_in=N_SYMBOLS,
        n_out=N_SYMBOLS,
        metric_name="accuracy",
        sequence=True,
        info={"kind": kind, "text_len": int(text.shape[0]), "seq_len": SEQ_LEN, "alphabet": ALPHABET},
    )
