"""How much of each part of the paper experiment to run: the full plan and the quick one (tests)."""

from __future__ import annotations

import dataclasses

ONE_TEST_SAMPLE = 100.0 / 360.0  # accuracy points of one digits test sample
ADDING_BASELINE = 1.0 / 6.0  # MSE of always answering 1.0 (the sum of two U(0, 1) has variance 1/6)


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much of each part to run (`run_paper` picks the full or the quick plan)."""

    digits_hidden: int
    digits_steps: int
    plain_depths: tuple[int, ...]
    gate_sweep: tuple[float, ...]
    gate_train: tuple[float, ...]  # extra nets trained at these gate biases (seed 0); the default gate is reused
    sweep_gates: tuple[float, ...]
    contraction: bool
    memory_unrolled: bool
    sine_hidden: int
    sine_steps: int
    sine_cases: tuple[tuple[int, int], ...]  # (n_freqs, window)
    sine_checkpoints: int
    adding_lens: tuple[int, ...]
    adding_steps: int
    adding_hidden: int
    adding_lr: float
    adding_eval_every: int


FULL = Plan(
    digits_hidden=64, digits_steps=1500, plain_depths=(2, 4, 8),
    gate_sweep=tuple(float(g) for g in range(-8, 7)), gate_train=(-6.0, 2.0), sweep_gates=(-6.0, -2.0, 0.0, 2.0),
    contraction=True, memory_unrolled=True,
    sine_hidden=32, sine_steps=6000, sine_cases=((1, 16), (2, 16), (2, 32)), sine_checkpoints=12,
    adding_lens=(50, 200), adding_steps=800, adding_hidden=32, adding_lr=1e-3, adding_eval_every=100,
)
QUICK = Plan(
    digits_hidden=16, digits_steps=12, plain_depths=(2, 8),
    gate_sweep=(-4.0, 0.0, 4.0), gate_train=(), sweep_gates=(-2.0,),
    contraction=False, memory_unrolled=False,
    sine_hidden=16, sine_steps=20, sine_cases=((1, 16), (2, 16)), sine_checkpoints=2,
    adding_lens=(20,), adding_steps=4, adding_hidden=16, adding_lr=1e-3, adding_eval_every=2,
)
