"""Every setting of a run, declared once: `TrainConfig`, the live controls, ranges, parsing and help.

One `Setting` record per setting (`DECLARATION`). Everything else is derived from it:

- `TrainConfig`, the frozen record of a run (its fields, types and defaults);
- `RANGES`, `CHOICES` and `check_value` / `check_config`, the range checks;
- `LiveControls` (the traced values: int -> int32, float -> float32) and `live_controls`;
- `parse_value`, the one strict parser of a setting's text (CLI flags and the dashboard's URL);
- the CLI's flags and help (`twnn_jax/cli.py`), the dashboard's widgets and URL parameters
  (`dashboard/controls.py`) and its live names (`dashboard/session.py`).

Adding a live control is one `Setting(..., live=True)` here plus its use in the model (`train.settings`).

>>> cfg = TrainConfig(task="digits", gate=-1.0)                          # doctest: +SKIP
>>> parse_value("tol", "1e-5")
1e-05
>>> parse_value("seed", "٣")
Traceback (most recent call last):
twnn_jax.settings.SettingError: seed must be an integer in [0, 2147483647]; got '٣'
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._fix import GRAD_MODES
from ._iterate import SOLVERS
from .models import DEFAULT_MODEL, MODEL_KINDS
from .tasks import BRACKET_TASKS, TASKS
from .wormhole import SWEEPS
from .wormhole_growth import GROWABLE_MODELS

ECHO_LIMIT = 60  # characters of a rejected value shown back in a message


@dataclasses.dataclass(frozen=True)
class Setting:
    """The declaration of one setting of `TrainConfig`."""

    name: str
    type: type  # int, float or str
    default: Any
    help: str
    label: str  # short, for widgets
    low: float | None = None  # range [low, high] of a number
    high: float | None = None
    choices: tuple = ()  # the allowed values of a str setting
    optional: bool = False  # None allowed: "off" for a number, `none_means` for a choice
    none_means: str = "the task's own"  # what None is for an optional choice, in words
    live: bool = False  # a traced value: changes while training without a rebuild (LiveControls)
    log: bool = False  # spans decades: log-spaced grids and axes
    dashboard: bool = False  # the dashboard shows a widget (and a URL parameter) for it
    step: float | None = None  # widget step of a linear (not log) number on the dashboard

    @property
    def off_words(self) -> tuple[str, ...]:
        """Texts that mean None for an optional setting."""
        if not self.optional:
            return ()
        return ("none", "default") if self.choices else ("none", "off", "0")

    def show(self, value) -> str:
        """`value` as people write it: 2147483647, 1e-08, 0.5, sine; None as its off word."""
        if value is None:
            return self.off_words[0] if self.optional else "None"
        if self.type is int and not isinstance(value, bool):
            return str(int(value))
        if self.type is float:
            return repr(float(value))
        return str(value)

    @property
    def allowed(self) -> str:
        """What the setting accepts, in words (messages and help)."""
        if self.choices:
            text = "one of " + ", ".join(self.choices)
            return text + f", or none ({self.none_means})" if self.optional else text
        span = f"[{self.show(self.low)}, {self.show(self.high)}]"
        if self.type is int:
            return f"an integer in {span}"
        if self.optional:
            return f"a positive number in {span}, or {'/'.join(self.off_words)} for off"
        return f"a number in {span}"


# The order is the dashboard's (widgets top to bottom) and the CLI help's.
DECLARATION: tuple[Setting, ...] = (
    # -- what is trained (changing any of these builds a new trainer) ----------------------------------------
    Setting("task", str, "sine", "sine: generate a wave (small net, one wormhole). digits: classify 8x8 images "
            "(residual net with two fixed-point blocks). adding: add two marked numbers of a sequence (a fixed "
            "point at every time step). copy: recall a symbol after a delay. brackets-easy, brackets-hard: predict the "
            "next symbol of a generated bracket text (seed 003; see grow).", "Task", choices=TASKS, dashboard=True),
    Setting("solver", str, "plain", "How the fixed point is found: plain iteration z <- f(z) (the paper), damped "
            "(z <- z + d (f(z) - z)), or Anderson acceleration.", "Solver", choices=SOLVERS, dashboard=True),
    Setting("grad_mode", str, "implicit", "implicit: solve the adjoint equation by the same iteration (memory "
            "flat). unrolled: backprop through the iterations. one_step: differentiate one application of f at "
            "the fixed point.", "Gradient mode", choices=GRAD_MODES, dashboard=True),
    Setting("seed", int, 0, "Initial weights and batch order. Changing it restarts the run.", "Seed",
            low=0, high=2**31 - 1, dashboard=True, step=1),
    # -- live: traced values, changed between steps without recompiling ----------------------------------------
    Setting("tol", float, 1e-3, "Stop iterating when ‖z_t − z_{t−1}‖ ≤ tol. Tighter: more iterations, a more "
            "exact fixed point.", "Tolerance (forward)", low=1e-8, high=1.0, live=True, log=True, dashboard=True),
    Setting("max_iter", int, 300, "Cap on forward (and adjoint) iterations. A solve that hits it is reported as "
            "not converged.", "Max iterations", low=1, high=10_000, live=True, log=True, dashboard=True),
    Setting("gate", float, -2.0, "Added to every wormhole gate before its sigmoid. Very negative: gates shut, a "
            "plain feed-forward pass. Positive: wormholes open, the net 'thinks longer'.", "Gate bias",
            low=-20.0, high=20.0, live=True, dashboard=True, step=0.25),
    Setting("damping", float, 0.5, "Step size of the damped solver (and of the adjoint solve when damped); "
            "ignored by plain and Anderson.", "Damping", low=0.01, high=1.0, live=True, dashboard=True, step=0.01),
    Setting("bwd_tol", float, 1e-4, "Stopping tolerance of the adjoint solve, relative to the size of the "
            "incoming gradient.", "Backward tolerance", low=1e-8, high=1.0, live=True, log=True, dashboard=True),
    Setting("lr", float, 1e-3, "Adam's step size (gradients are clipped to norm clip_norm).", "Learning rate",
            low=1e-6, high=1.0, live=True, log=True, dashboard=True),
    # -- the rest of a run's structure ------------------------------------------------------------------------
    Setting("model", str, None, "Model kind; none: the task's own (see twnn_jax.models.DEFAULT_MODEL).", "Model",
            choices=MODEL_KINDS, optional=True, dashboard=True),
    Setting("hidden", int, 32, "Width of the hidden state.", "Hidden units", low=1, high=4096, log=True),
    Setting("depth", int, 4, "Blocks of the resnet_plain model.", "Depth", low=1, high=64),
    Setting("batch_size", int, 64, "Samples per training step.", "Batch size", low=1, high=65536, log=True),
    Setting("sweep", str, "layer", "Order of a wormhole net's updates: layer by layer (Gauss-Seidel) or all at "
            "once (Jacobi).", "Sweep", choices=SWEEPS),
    Setting("trajectory", int, 0, "Record forward and backward residual trajectories of this length (0: none).",
            "Trajectory", low=0, high=10_000),
    Setting("unroll_capacity", int, 300, "Scan length when grad_mode is unrolled.", "Unroll capacity",
            low=1, high=10_000),
    Setting("spectral_bound", float, 0.9, "Bound on the spectral norm of the wormhole (recurrent) weights.",
            "Spectral bound", low=1e-3, high=100.0, optional=True),
    Setting("clip_norm", float, 1.0, "Gradient clipping by global norm.", "Clip norm", low=1e-6, high=1e6,
            optional=True, log=True),
    Setting("n_freqs", int, 1, "sine: number of sinusoids in the wave.", "Frequencies", low=1, high=3),
    Setting("window", int, 16, "sine: length of the input window.", "Window", low=2, high=512),
    Setting("seq_len", int, 50, "adding: the sequence length (at least 2); copy: the delay.", "Sequence length",
            low=0, high=100_000),
    Setting("split_seed", int, 0, "digits: seed of the train/test split.", "Split seed", low=0, high=2**31 - 1),
    Setting("warm_start", str, None, "surrogate: start every forward solve from the guess of a two-layer "
            "feed-forward surrogate of the fixed point, trained alongside on the detached fixed points "
            "(models wormhole, resnet_fp, small). none: start from zeros.", "Warm start",
            choices=("surrogate",), optional=True, none_means="start from zeros", dashboard=True),
    Setting("surrogate_hidden", int, 64, "Hidden width of the two-layer surrogate of the fixed point (warm starts, "
            "twnn surrogate).", "Surrogate width", low=1, high=4096, log=True),
    Setting("grow", str, "off", "brackets tasks (seed 003's tanh RNN), and the models small (sine's), wormhole and "
            "wormhole_gru: on, start from one neuron (per hidden layer) and add and delete neurons by the paper's "
            "rule, up to `hidden`; off, a fixed net of `hidden` neurons. wormholes (model wormhole): every wormhole "
            "its 3 layers can have (6) is a slot, and the same rule adds and deletes wormholes, starting from one.",
            "Grow", choices=("off", "on", "wormholes"), dashboard=True),
)

SETTINGS: dict[str, Setting] = {s.name: s for s in DECLARATION}
LIVE: tuple[str, ...] = tuple(s.name for s in DECLARATION if s.live)
DASHBOARD: tuple[str, ...] = tuple(s.name for s in DECLARATION if s.dashboard)
# name -> (low, high, integer), and name -> allowed values (None last for an optional one)
RANGES = {s.name: (s.low, s.high, s.type is int) for s in DECLARATION if not s.choices}
CHOICES = {s.name: s.choices + ((None,) if s.optional else ()) for s in DECLARATION if s.choices}


def _check_declaration() -> None:
    for s in DECLARATION:
        assert s.type in (int, float, str), s.name
        assert bool(s.choices) == (s.type is str), s.name
        assert s.choices or (s.low is not None and s.high is not None and s.low < s.high), s.name
        assert not s.live or s.type in (int, float), s.name
        assert not (s.optional and s.type is not str and s.low <= 0), s.name  # 0 means off
        assert (s.default is None and s.optional) or check_value(s.name, s.default) is None, s.name


# ---- checks and parsing --------------------------------------------------------------------------------
class SettingError(ValueError):
    """A setting given a value it does not accept; `str()` is one line naming the setting and what it accepts."""

    def __init__(self, name: str, allowed: str, got: str):
        self.name, self.allowed, self.got = name, allowed, got
        super().__init__(f"{name} must be {allowed}; got {got}")


def shorten(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text` cut to `limit` characters (and "…" when cut): what a message echoes of a user's input."""
    return text if len(text) <= limit else text[:limit] + "…"


def _echo(value) -> str:
    return repr(shorten(value)) if isinstance(value, str) else shorten(repr(value))


def check_value(name: str, value) -> None:
    """Raise `SettingError` (a ValueError) naming the setting and what it allows when `value` is not allowed.

    Names that are not settings are not checked."""
    s = SETTINGS.get(name)
    if s is None:
        return
    if value is None:
        if s.optional:
            return
        raise SettingError(name, s.allowed, _echo(value))
    if s.choices:
        if not isinstance(value, str) or value not in s.choices:
            raise SettingError(name, s.allowed, _echo(value))
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SettingError(name, s.allowed, _echo(value))
    number = float(value)
    if not math.isfinite(number) or not (s.low <= value <= s.high):
        raise SettingError(name, s.allowed, _echo(value))
    if s.type is int and not number.is_integer():
        raise SettingError(name, s.allowed, _echo(value))


_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")


def parse_number(text: str, integer: bool):
    """A plain decimal number (ASCII digits, optional sign, point and exponent; no "_", "nan", "inf" or other
    scripts' digits; at most 100 characters) -> int or float. Returns None when `text` is not one or (integer)
    not a whole number."""
    if len(text) > 100 or not _DECIMAL.fullmatch(text):
        return None
    if not integer:
        return float(text)
    if _INTEGER.fullmatch(text):
        return int(text)
    number = float(text)
    return int(number) if number.is_integer() else None


def parse_value(name: str, text: str):
    """The one strict parser of a setting's text (CLI flags, URL parameters) -> a checked value.

    ValueError (`SettingError`), one line naming the setting and what it accepts, for anything else."""
    s = SETTINGS.get(name)
    if s is None:
        raise ValueError(f"{shorten(name)!r} is not a setting; known: {', '.join(SETTINGS)}")
    if not isinstance(text, str):
        raise SettingError(name, s.allowed, _echo(text))
    if text.lower() in s.off_words:
        return None
    if s.choices:
        value = text
    else:
        value = parse_number(text, s.type is int)
        if value is None:
            raise SettingError(name, s.allowed, _echo(text))
    try:
        check_value(name, value)
    except SettingError:
        raise SettingError(name, s.allowed, _echo(text)) from None
    return value


# ---- the config record ---------------------------------------------------------------------------------
class _ConfigMethods:
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        unknown = set(d) - set(SETTINGS)
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(SETTINGS)}")
        return cls(**d)


def _field_type(s: Setting):
    return s.type | None if s.optional else s.type


TrainConfig = dataclasses.make_dataclass(
    "TrainConfig",
    [(s.name, _field_type(s), dataclasses.field(default=s.default)) for s in DECLARATION],
    bases=(_ConfigMethods,),
    frozen=True,
)
TrainConfig.__module__ = __name__
TrainConfig.__doc__ = ("Everything that defines a run (fields from `settings.DECLARATION`). Defaults follow the "
                       "paper's Table II (lr, batch, tol, max_iter).\n\n"
                       + "\n".join(f"{s.name}: {s.help}" for s in DECLARATION))


def check_config(cfg) -> None:
    """Raise ValueError naming the first setting of `cfg` that is not allowed."""
    for s in DECLARATION:
        check_value(s.name, getattr(cfg, s.name))
    if cfg.grow == "on" and cfg.task not in BRACKET_TASKS and \
            (cfg.model or DEFAULT_MODEL[cfg.task]) not in GROWABLE_MODELS:
        raise ValueError(f"grow must be off for the {cfg.task} task with model {cfg.model or DEFAULT_MODEL[cfg.task]}; "
                         f"growth (seed 003) is for brackets-easy, brackets-hard and the models "
                         f"{', '.join(GROWABLE_MODELS[:-1])} and {GROWABLE_MODELS[-1]} (sine's own model is small)")
    if cfg.grow == "wormholes" and (cfg.task in BRACKET_TASKS or cfg.model != "wormhole"):
        what = "seed 003's tanh RNN" if cfg.task in BRACKET_TASKS else f"model {cfg.model or DEFAULT_MODEL[cfg.task]}"
        raise ValueError(f"grow=wormholes needs the model wormhole (its wormholes are the slots), not {what}")
    if cfg.task in BRACKET_TASKS and cfg.model is not None:
        raise ValueError(f"model must be none for the {cfg.task} task: it trains seed 003's tanh RNN")
    if cfg.task in BRACKET_TASKS and cfg.warm_start is not None:
        raise ValueError(f"warm_start must be none for the {cfg.task} task: seed 003's tanh RNN has no fixed point")
    if cfg.task == "adding" and cfg.seq_len < 2:
        raise ValueError(f"seq_len must be >= 2 for the adding task (the sequence length); got {cfg.seq_len}")


# ---- live controls -------------------------------------------------------------------------------------
_DTYPES = {int: jnp.int32, float: jnp.float32}
LiveControls = NamedTuple("LiveControls", [(name, jax.Array) for name in LIVE])
LiveControls.__module__ = __name__
LiveControls.__doc__ = ("The settings a user changes while training runs (`Setting.live`); all traced arrays, so "
                        "changing them never recompiles.")


def live_controls(cfg, **changes) -> LiveControls:
    """LiveControls from the config, with `changes` applied; values are range-checked."""
    unknown = set(changes) - set(LIVE)
    if unknown:
        raise ValueError(f"{sorted(unknown)} are not live controls; the live ones are {', '.join(LIVE)}")
    values = {name: changes.get(name, getattr(cfg, name)) for name in LIVE}
    for name, value in values.items():
        check_value(name, value)
    return LiveControls(**{name: jnp.asarray(values[name], _DTYPES[SETTINGS[name].type]) for name in LIVE})


_check_declaration()
