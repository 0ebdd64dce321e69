"""The sidebar's widgets and their URL query parameters.

Each control's widget key is also its query parameter (`?task=sine&tol=0.001&gate=-2.0...`). The
URL is read once when a session starts: a value the library's `check_value` rejects (or an unknown
parameter) gives a visible warning naming it and its allowed range, and the default is used. After
every run the URL is rewritten from the widgets, so copying it reproduces the view.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import streamlit as st

from twnn_jax.train import CHOICES, RANGES, TrainConfig, check_value

from .session import TASKS

GRAD_MODES = tuple(CHOICES["grad_mode"])
SOLVERS = tuple(CHOICES["solver"])


def _log_options(low_exp: int, high_exp: int) -> list[float]:
    """1, 3 per decade: 1e-8, 3e-8, 1e-7, ..., up to 10**high_exp."""
    out = []
    for e in range(low_exp, high_exp + 1):
        out.append(float(f"1e{e}"))
        if e < high_exp:
            out.append(float(f"3e{e}"))
    return out


@dataclasses.dataclass(frozen=True)
class Control:
    key: str
    label: str
    kind: str  # "select", "log" (select_slider over options), "slider", "int"
    default: Any
    help: str
    options: tuple = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    rebuilds: bool = False  # changing it builds a new trainer (and resets the run)

    def parse(self, raw: str) -> Any:
        """A URL string -> a checked value; ValueError naming the parameter and its allowed values."""
        if self.kind == "select":
            allowed = self.options
            if raw not in allowed:
                raise ValueError(f"{self.key} must be one of {', '.join(map(str, allowed))}; got {raw!r}")
            return raw
        try:
            number = float(raw)
        except ValueError:
            low, high, _ = RANGES[self.key]
            raise ValueError(f"{self.key} must be a number in [{low:g}, {high:g}]; got {raw!r}") from None
        integer = RANGES[self.key][2]
        value: Any = number
        if integer and number.is_integer():
            value = int(number)
        check_value(self.key, value)  # the library's ranges: one source of truth with the CLI
        return value

    def format(self, value: Any) -> str:
        if isinstance(value, bool) or isinstance(value, str):
            return str(value)
        if isinstance(value, int) or (self.kind == "int"):
            return str(int(value))
        return repr(float(value))


_DEFAULT = TrainConfig()

CONTROLS: dict[str, Control] = {c.key: c for c in [
    Control("task", "Task", "select", "sine",
            "sine: generate a wave (small net, one wormhole). digits: classify 8x8 images (residual net with two "
            "fixed-point blocks). adding: add two marked numbers of a sequence (a fixed point at every time step).",
            options=TASKS, rebuilds=True),
    Control("solver", "Solver", "select", _DEFAULT.solver,
            "How the fixed point is found: plain iteration z <- f(z) (the paper), damped (z <- z + d (f(z) - z)), "
            "or Anderson acceleration.", options=SOLVERS, rebuilds=True),
    Control("grad_mode", "Gradient mode", "select", _DEFAULT.grad_mode,
            "implicit: solve the adjoint equation by the same iteration (memory flat). unrolled: backprop "
            "through the iterations. one_step: differentiate one application of f at the fixed point.",
            options=GRAD_MODES, rebuilds=True),
    Control("seed", "Seed", "int", _DEFAULT.seed, "Initial weights and batch order. Changing it restarts the run.",
            low=0, high=2**31 - 1, step=1, rebuilds=True),
    Control("tol", "Tolerance (forward)", "log", _DEFAULT.tol,
            "Stop iterating when ‖z_t − z_{t−1}‖ ≤ tol. Tighter: more iterations, a more exact fixed point.",
            options=tuple(_log_options(-8, 0))),
    Control("max_iter", "Max iterations", "log", _DEFAULT.max_iter,
            "Cap on forward (and adjoint) iterations. A solve that hits it is reported as not converged.",
            options=(1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 2000, 5000, 10000)),
    Control("gate", "Gate bias", "slider", _DEFAULT.gate,
            "Added to every wormhole gate before its sigmoid. Very negative: gates shut, a plain feed-forward "
            "pass. Positive: wormholes open, the net 'thinks longer'.", low=-20.0, high=20.0, step=0.25),
    Control("damping", "Damping", "slider", _DEFAULT.damping,
            "Step size of the damped solver (and of the adjoint solve when damped); ignored by plain and Anderson.",
            low=0.01, high=1.0, step=0.01),
    Control("bwd_tol", "Backward tolerance", "log", _DEFAULT.bwd_tol,
            "Stopping tolerance of the adjoint solve, relative to the size of the incoming gradient.",
            options=tuple(_log_options(-8, 0))),
    Control("lr", "Learning rate", "log", _DEFAULT.lr, "Adam's step size (gradients are clipped to norm 1).",
            options=tuple(_log_options(-6, 0))),
]}

REBUILD_KEYS = tuple(k for k, c in CONTROLS.items() if c.rebuilds)
LIVE_KEYS = tuple(k for k, c in CONTROLS.items() if not c.rebuilds)

PRESETS: dict[str, dict] = {
    "Closed gates": dict(gate=-10.0, tol=1e-3, max_iter=300),
    "Wormholes open": dict(gate=5.0, tol=1e-5, max_iter=300),
    "Near divergence": dict(gate=20.0, tol=1e-7, max_iter=20, lr=3e-2),
    "Defaults": {k: CONTROLS[k].default for k in LIVE_KEYS},
}
PRESET_HELP = {
    "Closed gates": "gate bias −10: every wormhole shut, the net is feed-forward and settles in one sweep.",
    "Wormholes open": "gate bias +5 and a tight tolerance: the wormholes carry signal back, solves take longer.",
    "Near divergence": "gates wide open, tol 1e-7 but only 20 iterations, a high learning rate: solves stop "
                       "before converging; watch the red marks and the contraction estimate.",
    "Defaults": "the library's defaults for every live control.",
}


def defaults() -> dict:
    return {k: c.default for k, c in CONTROLS.items()}


# ----------------------------------------------------------------------------------------------
# URL <-> session state
# ----------------------------------------------------------------------------------------------


def read_url_once() -> None:
    """At session start: query parameters -> session state, with a warning for each bad one."""
    if st.session_state.get("_url_read"):
        return
    st.session_state["_url_read"] = True
    warnings = []
    params = st.query_params.to_dict()
    for key, raw in params.items():
        control = CONTROLS.get(key)
        if control is None:
            warnings.append(f"Unknown URL parameter `{key}` ignored (known: {', '.join(CONTROLS)}).")
            continue
        try:
            st.session_state[key] = control.parse(raw)
        except ValueError as err:
            warnings.append(f"URL parameter `{key}={raw}` rejected: {err}. Using the default "
                            f"{key}={control.format(control.default)}.")
    st.session_state["_url_warnings"] = warnings


def write_url(values: dict) -> None:
    """Rewrite the query string from the current values (only when it changed)."""
    wanted = {k: CONTROLS[k].format(values[k]) for k in CONTROLS}
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


def url_warnings() -> list[str]:
    return list(st.session_state.get("_url_warnings", []))


def _clear_url_warnings() -> None:
    st.session_state["_url_warnings"] = []


# ----------------------------------------------------------------------------------------------
# Widgets
# ----------------------------------------------------------------------------------------------


def _fmt_option(control: Control) -> Callable[[Any], str]:
    if control.key == "max_iter":
        return lambda v: f"{int(v)}"
    return lambda v: f"{float(v):.0e}".replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")


def _widget(control: Control, container) -> Any:
    key = control.key
    st.session_state.setdefault(key, control.default)
    common = dict(key=key, help=control.help, on_change=_clear_url_warnings)
    if control.kind == "select":
        return container.selectbox(control.label, control.options, **common)
    if control.kind == "log":
        value = st.session_state[key]
        options = sorted(set(control.options) | {value})  # a URL value off the grid stays exact
        return container.select_slider(control.label, options=options, format_func=_fmt_option(control), **common)
    if control.kind == "slider":
        return container.slider(control.label, min_value=control.low, max_value=control.high, step=control.step,
                                **common)
    return container.number_input(control.label, min_value=int(control.low), max_value=int(control.high),
                                  step=int(control.step), **common)


def apply_preset(name: str) -> None:
    """on_click callback: set the live controls of a preset (before the widgets are drawn)."""
    for key, value in PRESETS[name].items():
        st.session_state[key] = value
    _clear_url_warnings()


def render_model_controls(container) -> dict:
    """Task, solver, gradient mode, seed: changing any of them builds a new run."""
    return {key: _widget(CONTROLS[key], container) for key in REBUILD_KEYS}


def render_live_controls(container) -> dict:
    """Live controls: applied at the next training step, no recompilation."""
    return {key: _widget(CONTROLS[key], container) for key in LIVE_KEYS}


def render_presets(container) -> None:
    for name in PRESETS:
        container.button(name, key=f"preset_{name.lower().replace(' ', '_')}", on_click=apply_preset, args=(name,),
                         help=PRESET_HELP[name], width="stretch")
