"""The sidebar's widgets and their URL query parameters, generated from `twnn_jax.settings.DECLARATION`.

Every setting declared with `dashboard=True` gets a widget (a select box for choices, a slider over a
log grid for `log` settings, a slider or a number box otherwise) whose label, help, default and range
come from the declaration; live settings are drawn under "Live controls", the others under "Model".
Only the page's own choices live here: the tasks it offers (`session.TASKS`) and the presets.

Which choices fit together is the library's word, not the page's: a choice widget under "Model" (after
the task) offers only the values the library accepts with the widgets above it (the ones below at their
defaults), as `session.refusal` says (it builds the trainer, which runs `settings.check_config` and fits
the model to the task). So the models offered are those of the chosen task, `grow` appears for the tasks
that can grow, and a widget left with one acceptable value is not drawn (the setting does not apply, e.g.
the model of a bracket task). A value that stops fitting (another task chosen, or a URL asking for it) goes
back to its default, and the sidebar says why.

Each control's widget key is also its query parameter (`?task=sine&tol=0.001&gate=-2.0...`). The
URL is read once when a session starts, with the library's strict parser (`settings.parse_value`): a
value it rejects (or an unknown parameter) gives a visible warning naming it and its allowed range,
shows what was sent as inert text (a code span, cut to `settings.ECHO_LIMIT` characters), and the
default is used. After every run the URL is rewritten from the widgets, so copying it reproduces the view.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

import streamlit as st

from twnn_jax.models import DEFAULT_MODEL
from twnn_jax.settings import DASHBOARD, SETTINGS, Setting, SettingError, parse_value, shorten

from .session import TASKS, refusal

# The page's own restrictions of a setting's choices: the tasks it has panels for.
PAGE_CHOICES = {"task": TASKS}
# The page's own defaults where they differ from the library's. It opens on digits: its samples settle in
# different numbers of iterations, and the counts change as it learns (benchmarks/bench_first_screen.py).
# The library's sine settles every sample in 3 forward iterations and is learnt in seconds: the "Quiet" preset.
PAGE_DEFAULTS = {"task": "digits"}


def log_grid(setting: Setting) -> tuple:
    """Log-spaced widget values within the setting's range: 1, 3 per decade (1, 2, 3, 5 for integers)."""
    mantissas = (1, 2, 3, 5) if setting.type is int else (1, 3)
    low_exp, high_exp = math.floor(math.log10(setting.low)), math.ceil(math.log10(setting.high))
    values = (setting.type(float(f"{m}e{e}")) for e in range(low_exp, high_exp + 1) for m in mantissas)
    return tuple(v for v in values if setting.low <= v <= setting.high)


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
    integer: bool = False

    def parse(self, raw: str) -> Any:
        """A URL string -> a checked value; `SettingError` (a ValueError) naming the parameter and what it allows."""
        value = parse_value(self.key, raw)  # the library's strict parser: one source of truth with the CLI
        if self.kind == "select" and value not in self.options:
            raise SettingError(self.key, "one of " + ", ".join(map(str, self.options)), repr(shorten(raw)))
        return value

    def format(self, value: Any) -> str:
        if value is None:
            return SETTINGS[self.key].show(None)
        if isinstance(value, bool) or isinstance(value, str):
            return str(value)
        if isinstance(value, int) or self.integer:
            return str(int(value))
        return repr(float(value))


def _control(s: Setting) -> Control:
    common = dict(key=s.name, label=s.label, default=PAGE_DEFAULTS.get(s.name, s.default), help=s.help, low=s.low,
                  high=s.high, rebuilds=not s.live, integer=s.type is int)
    if s.choices:
        options = PAGE_CHOICES.get(s.name, s.choices + ((None,) if s.optional else ()))  # None: the off word
        return Control(kind="select", options=tuple(options), **common)
    if s.log:
        return Control(kind="log", options=log_grid(s), **common)
    if s.type is float:
        return Control(kind="slider", step=s.step, **common)
    return Control(kind="int", step=s.step or 1, **common)


CONTROLS: dict[str, Control] = {name: _control(SETTINGS[name]) for name in DASHBOARD}

REBUILD_KEYS = tuple(k for k, c in CONTROLS.items() if c.rebuilds)
LIVE_KEYS = tuple(k for k, c in CONTROLS.items() if not c.rebuilds)

PRESETS: dict[str, dict] = {
    "Closed gates": dict(gate=-10.0, tol=1e-3, max_iter=300),
    "Wormholes open": dict(gate=5.0, tol=1e-5, max_iter=300),
    "Near divergence": dict(gate=20.0, tol=1e-7, max_iter=20, lr=3e-2),
    "Defaults": {k: CONTROLS[k].default for k in LIVE_KEYS},
    "Quiet": {"task": "sine", **{k: CONTROLS[k].default for k in LIVE_KEYS}},
}
PRESET_HELP = {
    "Closed gates": "gate bias −10: every wormhole shut, the net is feed-forward and settles in one sweep.",
    "Wormholes open": "gate bias +5 and a tight tolerance: the wormholes carry signal back, solves take longer.",
    "Near divergence": "gates wide open, tol 1e-7 but only 20 iterations, a high learning rate: solves stop "
                       "before converging; watch the red marks and the contraction estimate.",
    "Defaults": "the library's defaults for every live control.",
    "Quiet": "the sine wave with the default live controls: every sample settles in 3 forward iterations and the "
             "wave is learnt within seconds (a calm start; the page opens on digits, whose counts move).",
}


# Page-view parameters that other modules of the page register (URL name -> a parser of its text that raises
# ValueError with what it accepts): read into session state under the same name, and kept in the URL.
VIEW_PARAMS: dict[str, Callable[[str], Any]] = {}


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
        if key in VIEW_PARAMS:
            try:
                st.session_state[key] = VIEW_PARAMS[key](raw)
            except ValueError as err:
                warnings.append(f"URL parameter {inert(f'{key}={raw}')} rejected: {key} {err}. Using the default.")
            continue
        if control is None:
            known = ", ".join([*CONTROLS, *VIEW_PARAMS])
            warnings.append(f"Unknown URL parameter {inert(key)} ignored (known: {known}).")
            continue
        try:
            st.session_state[key] = control.parse(raw)
        except SettingError as err:  # its `allowed` is the declaration's text, never the user's
            warnings.append(f"URL parameter {inert(f'{key}={raw}')} rejected: {key} must be {err.allowed}. "
                            f"Using the default {key}={control.format(control.default)}.")
    st.session_state["_url_warnings"] = warnings


def inert(text: str) -> str:
    """`text` (from a URL) as Markdown that shows it literally: a code span, cut to `settings.ECHO_LIMIT`
    characters, its fence longer than any run of backticks inside (so nothing in it is a link, an image,
    HTML or formatting), control characters shown as "�"."""
    shown = "".join(ch if ch.isprintable() else "\ufffd" for ch in shorten(text))
    if not shown:
        return "(empty)"
    fence = "`" * (1 + max((len(run) for run in re.findall("`+", shown)), default=0))
    if shown[0] == "`" or shown[-1] == "`" or (shown[0] == " " and shown[-1] == " "):
        shown = f" {shown} "  # CommonMark strips one space each side: the text itself stays as sent
    return f"{fence}{shown}{fence}"


def write_url(values: dict) -> None:
    """Rewrite the query string from the current values (only when it changed)."""
    wanted = {k: CONTROLS[k].format(values[k]) for k in CONTROLS}
    wanted.update({k: v for k, v in st.query_params.to_dict().items() if k in VIEW_PARAMS})  # the views' own
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


def url_warnings() -> list[str]:
    return list(st.session_state.get("_url_warnings", []))


def _clear_url_warnings() -> None:
    st.session_state["_url_warnings"] = []
    st.session_state["_fit_notes"] = []  # and the notes of values put back to their defaults (render_model_controls)


# ----------------------------------------------------------------------------------------------
# Widgets
# ----------------------------------------------------------------------------------------------


def _fmt_option(control: Control) -> Callable[[Any], str]:
    if control.integer:
        return lambda v: f"{int(v)}"
    return lambda v: f"{float(v):.0e}".replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")


def _widget(control: Control, container, options: tuple | None = None, none_means: str | None = None) -> Any:
    """The widget of `control` (`options`: the choices offered, default all of them; `none_means`: what none is,
    in words, default the declaration's)."""
    key = control.key
    st.session_state.setdefault(key, control.default)
    common = dict(key=key, help=control.help, on_change=_clear_url_warnings)
    if control.kind == "select":
        none_means = none_means or SETTINGS[key].none_means
        # Streamlit shows a None value as "no choice" (its placeholder): the placeholder then names what none is
        return container.selectbox(control.label, control.options if options is None else options, **common,
                                   format_func=lambda v: f"none ({none_means})" if v is None else str(v),
                                   placeholder=f"none ({none_means})")
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


def offered(key: str, above: dict) -> tuple:
    """The values of choice widget `key` the library accepts together with `above` (the values of the widgets
    drawn before it; every other setting at its default). Numbers and the first widget: all their values."""
    control = CONTROLS[key]
    if control.kind != "select" or not above:
        return control.options
    return tuple(v for v in control.options if refusal(**{**above, key: v}) is None)


def _fit(key: str, options: tuple, above: dict) -> str | None:
    """Put the session's value of `key` back to its default when it is not among `options`; what was changed,
    in words (None: nothing)."""
    control = CONTROLS[key]
    value = st.session_state.get(key, control.default)
    if value in options:
        return None
    fallback = control.default if control.default in options else options[0]
    st.session_state[key] = fallback
    reason = refusal(**{**above, key: value}) or "not offered"
    return f"{key}={control.format(value)} does not apply here ({reason}); using {control.format(fallback)}."


def render_model_controls(container) -> dict:
    """Task, solver, gradient mode, seed, model, warm start, growth: changing any of them builds a new run.

    Each choice offers what fits the ones above it (`offered`); one that has a single value left is not
    drawn, and keeps that value."""
    values: dict = {}
    notes = st.session_state.setdefault("_fit_notes", [])  # shown until a control changes (as the URL's warnings)
    for key in REBUILD_KEYS:
        control = CONTROLS[key]
        options = offered(key, values)
        if control.kind == "select" and options != control.options:
            note = _fit(key, options, values)
            if note and note not in notes:
                notes.append(note)
            if len(options) == 1:
                st.session_state.pop(key, None)  # its widget is not drawn; drawn again later, it starts anew
                values[key] = options[0]
                continue
        none_means = f"the task's own: {DEFAULT_MODEL[values['task']]}" if key == "model" else None
        values[key] = _widget(control, container, options, none_means)
    for note in notes:
        container.info(note, icon=":material/rule:")
    return values


def render_live_controls(container) -> dict:
    """Live controls: applied at the next training step, no recompilation."""
    return {key: _widget(CONTROLS[key], container) for key in LIVE_KEYS}


def render_presets(container) -> None:
    for name in PRESETS:
        container.button(name, key=f"preset_{name.lower().replace(' ', '_')}", on_click=apply_preset, args=(name,),
                         help=PRESET_HELP[name], width="stretch")
