"""The "Playground" section: a 2-D fixed-point map drawn as a phase plane (`twnn_jax.playground`).

Its own controls (not the training run's): gate bias, wormhole weight v, input x, tol, damping, max_iter; all
traced values of one jitted function, so moving them never recompiles. Clicking on the plane adds a start
point (at most `MAX_STARTS`, the oldest goes). Nothing is computed while the section is hidden.

State in the URL (registered in `controls.VIEW_PARAMS`): `pg` (on: shown), `pg_starts` (the start points,
`z1,z2;z1,z2;…`), and each knob (`pg_gate`, `pg_v`, `pg_x`, `pg_tol`, `pg_damping`, `pg_max_iter`).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from twnn_jax import playground
from twnn_jax.playground import LIMIT, MAX_STARTS, Knobs
from twnn_jax.playground_figure import phase_plane_figure

from .controls import VIEW_PARAMS

OPEN_KEY, STARTS_KEY, FIG_KEY = "pg", "pg_starts", "_pg_fig"
DEFAULT_STARTS = ((-0.9, -0.9), (0.9, 0.9), (-0.9, 0.9), (0.9, -0.9))
DEFAULTS = Knobs()
# knob -> (URL/widget key, low, high, step)
KNOBS = {"gate_bias": ("pg_gate", -6.0, 6.0, 0.25), "v": ("pg_v", -5.0, 5.0, 0.25), "x": ("pg_x", -2.0, 2.0, 0.1),
         "tol": ("pg_tol", 1e-7, 1e-1, None), "damping": ("pg_damping", 0.05, 1.0, 0.05),
         "max_iter": ("pg_max_iter", 1, playground.CAPACITY, 1)}

EXPLAIN = (
    "**What you see:** a network of two layers of one unit each, z1 and z2, with a wormhole from the second back "
    f"to the first: one iteration sets z1 ← tanh({playground.W1:g}·x + g·v·z2 + {playground.B1:g}) and "
    f"z2 ← tanh({playground.W2:g}·z1 + {playground.B2:g}), both from the previous state, with g = sigmoid(gate "
    "bias). Every point of the plane is a state (z1, z2). Grey arrows: where one iteration moves it (f(z) − z). "
    "Green: where the iterated map contracts (the spectral norm of its 2×2 Jacobian is below 1; hover for the "
    "number): there one step brings nearby states closer. Paths may converge outside it too (the norm bounds one "
    "step; the eigenvalues at the fixed point decide the long run). Star: the fixed point(s), f(z) = z. Lines: the "
    "solver's iterates from each start point (open circle), stopped when a step is smaller than *tol*; red "
    "dotted: not converged within *max_iter*. **Try:** click on the plane to start a path there; raise the *gate "
    "bias* and watch the spirals slow down and then run around the fixed point for ever; then lower *damping* "
    "and watch them converge again.")


def _starts(raw: str) -> tuple:
    points = []
    for part in raw.split(";"):
        if not part:
            continue
        try:
            a, b = (float(v) for v in part.split(","))
        except ValueError:
            raise ValueError("must be points z1,z2 separated by ';' (e.g. 0.5,-0.2;-0.9,0.9)") from None
        if not (abs(a) <= LIMIT and abs(b) <= LIMIT):
            raise ValueError(f"must be points inside [-{LIMIT}, {LIMIT}]")
        points.append((a, b))
    if len(points) > MAX_STARTS:
        raise ValueError(f"must be at most {MAX_STARTS} points")
    return tuple(points)


def _number(name: str):
    key, low, high, _ = KNOBS[name]
    integer = isinstance(getattr(DEFAULTS, name), int)

    def parse(raw: str):
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            raise ValueError(f"must be a number in [{low}, {high}]") from None
        if not low <= value <= high:
            raise ValueError(f"must be a number in [{low}, {high}]")
        return value

    return key, parse


TOLS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def _tol(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = None
    if value not in TOLS:
        raise ValueError("must be one of " + ", ".join(f"{t:.0e}" for t in TOLS))
    return value


def _on(raw: str) -> bool:
    if raw not in ("on", "off"):
        raise ValueError("must be on or off")
    return raw == "on"


VIEW_PARAMS.update({OPEN_KEY: _on, STARTS_KEY: _starts, **dict(_number(name) for name in KNOBS if name != "tol"),
                    KNOBS["tol"][0]: _tol})


def _format_starts(points) -> str:
    return ";".join(f"{a:.2f},{b:.2f}" for a, b in points)


def _clear() -> None:
    st.session_state[STARTS_KEY] = ()
    st.session_state["_pg_chart"] = st.session_state.get("_pg_chart", 0) + 1


def _reset() -> None:
    st.session_state[STARTS_KEY] = DEFAULT_STARTS
    st.session_state["_pg_chart"] = st.session_state.get("_pg_chart", 0) + 1
    for name, (key, *_) in KNOBS.items():
        st.session_state[key] = getattr(DEFAULTS, name)


def knobs_from_state() -> Knobs:
    return Knobs(**{name: st.session_state.get(key, getattr(DEFAULTS, name)) for name, (key, *_) in KNOBS.items()})


def _widgets() -> None:
    for name, (key, *_) in KNOBS.items():
        st.session_state.setdefault(key, getattr(DEFAULTS, name))
    c = st.columns(6)
    helps = {"gate_bias": "g = sigmoid(gate bias): how open the wormhole from z2 back to z1 is.",
             "v": "The wormhole's weight: negative makes the iterates turn around the fixed point.",
             "x": "The input to the first layer.",
             "tol": "A path stops when one step moves the state by less than this (max norm).",
             "damping": "z ← z + damping·(f(z) − z); 1 is the plain iteration.",
             "max_iter": "A path that has not converged after this many iterations is flagged."}
    for col, (name, (key, low, high, step)) in zip(c, KNOBS.items()):
        label = {"gate_bias": "Gate bias", "v": "Wormhole weight v", "x": "Input x", "tol": "tol",
                 "damping": "Damping", "max_iter": "max_iter"}[name]
        if name == "tol":
            col.select_slider(label, options=TOLS, key=key,
                              format_func=lambda t: f"{t:.0e}", help=helps[name])
        else:
            col.slider(label, low, high, step=step, key=key, help=helps[name])


def _take_click(event) -> None:
    """A click on the plane (a selected point): a new start point."""
    points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else (
        getattr(getattr(event, "selection", None), "points", None) or [])
    if not points:
        return
    p = points[0]
    z = (round(float(p["x"]), 2), round(float(p["y"]), 2))
    starts = tuple(st.session_state.get(STARTS_KEY, DEFAULT_STARTS))
    st.session_state[STARTS_KEY] = (*starts, z)[-MAX_STARTS:]
    st.session_state["_pg_chart"] = st.session_state.get("_pg_chart", 0) + 1  # a fresh chart: no selection kept


def render() -> None:
    """The section (inside a fragment of its own: its controls rerun only it)."""
    head = st.columns([6, 1], vertical_alignment="bottom")
    head[0].subheader("Playground", anchor="playground")
    st.session_state.setdefault(OPEN_KEY, False)
    head[1].toggle("Show", key=OPEN_KEY, help="A 2-D fixed-point map to play with (hidden: nothing is computed).")
    _write_url({OPEN_KEY: "on" if st.session_state[OPEN_KEY] else "off"})
    if not st.session_state[OPEN_KEY]:
        st.caption("A two-unit network with a wormhole, drawn as a phase plane: click *Show* to play with it.")
        return
    st.session_state.setdefault(STARTS_KEY, DEFAULT_STARTS)
    chart_key = f"pg_plane_{st.session_state.get('_pg_chart', 0)}"
    _take_click(st.session_state.get(chart_key))
    _widgets()
    knobs = knobs_from_state()
    starts = tuple(st.session_state[STARTS_KEY])
    if playground._cache_size() == 0:
        with st.spinner("Compiling the playground (first visit only, a few seconds)…"):
            out = playground.plane(knobs, starts)
    else:
        out = playground.plane(knobs, starts)
    g = 1 / (1 + np.exp(-knobs.gate_bias))
    subtitle = (f"gate g = {g:.2f} · v = {knobs.v:g} · x = {knobs.x:g} · tol {knobs.tol:.0e} · damping "
                f"{knobs.damping:g} · max_iter {int(knobs.max_iter)}")
    fig = phase_plane_figure(out, starts, subtitle=subtitle)
    st.session_state[FIG_KEY] = fig
    chart_key = f"pg_plane_{st.session_state.get('_pg_chart', 0)}"
    st.caption(subtitle)
    st.plotly_chart(fig, key=chart_key, on_select="rerun", selection_mode="points", width="stretch",
                    config={"displayModeBar": False})
    failed = [i for i, ok in enumerate(out["converged"]) if not ok]
    if failed:
        st.error("Not converged within max_iter = " + str(int(knobs.max_iter)) + ": " + ", ".join(
            f"path {i + 1} from ({starts[i][0]:.2f}, {starts[i][1]:.2f}), last step "
            f"{float(out['residuals'][i][int(out['iters'][i]) - 1]):.1e}" for i in failed) + ".",
            icon=":material/error:")
    elif starts:
        st.success(f"Every path converged (iterations: {', '.join(str(int(i)) for i in out['iters'])}).",
                   icon=":material/check_circle:")
    b = st.columns([1, 1, 4])
    b[0].button("Clear paths", key="pg_clear", on_click=_clear, icon=":material/delete:", width="stretch")
    b[1].button("Reset", key="pg_reset", on_click=_reset, icon=":material/restart_alt:", width="stretch",
                help="The default knobs and start points.")
    st.caption(EXPLAIN)
    _write_url({STARTS_KEY: _format_starts(starts),
                **{key: str(st.session_state[key]) for key, *_ in KNOBS.values()}})


def figures() -> dict:
    """The phase plane as last drawn, for the HTML export (nothing while the section is hidden)."""
    try:
        shown, fig = st.session_state.get(OPEN_KEY), st.session_state.get(FIG_KEY)
    except Exception:  # noqa: BLE001 - outside a script run: nothing drawn
        return {}
    return {"playground": fig} if shown and fig is not None else {}


def _write_url(wanted: dict) -> None:
    for key, value in wanted.items():
        if st.query_params.get(key) != value:
            st.query_params[key] = value
