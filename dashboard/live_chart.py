"""A Plotly chart that updates in place: the live panels redraw with `Plotly.react` on the same element.

`st.plotly_chart` (Streamlit 1.67) derives a chart's identity from its figure, so every redraw with new
data unmounts the chart and plots it anew: ~0.8 s of the browser's main thread per redraw of the seven
live charts on this machine, CPU that training could use. This component keeps one element per key and
hands each new figure to `Plotly.react`, which updates only what changed (and, with the figures'
`layout.uirevision`, keeps the user's zoom). A chart scrolled out of view, or in a background tab, is
not redrawn until it is seen again (then at once, with the newest figure): redrawing costs the browser
~40 ms a chart. A chart that starts out of view draws its first figure once the browser is idle, after the
charts in view have painted (the page's first chart came ~0.4 s sooner, benchmarks/README.md, "Start-up").
The component's JavaScript is `live_chart.js`, beside this file (shipped in the wheel).

plotly.js itself is the cartesian bundle in `static/` beside this file (static_files.py), served by
Streamlit's static file serving (`server.enableStaticServing`, set in `.streamlit/config.toml` and by `twnn
dashboard`); the browser caches it. Where that is off, or for a figure with a trace type the bundle lacks,
`show` falls back to `st.plotly_chart`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import plotly.graph_objects as go
import plotly.io.json as pio_json
import streamlit as st

from .static_files import PLOTLY_JS, PLOTLY_URL, TRACE_TYPES

CONFIG = {"displaylogo": False, "responsive": True}

# Streamlit's look for the charts (its own theme applies only inside st.plotly_chart). Text and grid
# colours come from the page in the browser, so the charts follow a light or a dark app theme.
TEMPLATE = {"layout": {
    "font": {"family": '"Source Sans", "Source Sans Pro", sans-serif', "size": 13},
    "title": {"font": {"weight": 600}},
    "paper_bgcolor": "rgba(0,0,0,0)",
    "plot_bgcolor": "rgba(0,0,0,0)",
    "xaxis": {"zeroline": False, "ticks": "", "showline": False, "tickfont": {"size": 12}, "title": {"standoff": 6}},
    "yaxis": {"zeroline": False, "ticks": "", "showline": False, "tickfont": {"size": 12}, "title": {"standoff": 6}},
    "hoverlabel": {"font": {"family": '"Source Sans", "Source Sans Pro", sans-serif'}},
}}

JS = (Path(__file__).parent / "live_chart.js").read_text(encoding="utf-8")  # the component: draws with Plotly.react

_component = st.components.v2.component("twnn_live_chart", js=JS, isolate_styles=False)


@functools.cache
def in_place_available() -> bool:
    """True when plotly.js can be served from app/static/: static serving is on and the bundle is in place."""
    return bool(st.get_option("server.enableStaticServing")) and PLOTLY_JS.is_file()


def bundle_draws(fig: dict) -> bool:
    """True when the served bundle has every trace type of `fig` (a trace without a type is a scatter)."""
    return all(trace.get("type", "scatter") in TRACE_TYPES for trace in fig["data"])


def figure_json(fig: dict) -> str:
    """The figure dict (`twnn_jax.figures`) as Plotly JSON with this dashboard's small template instead of
    Plotly's default (~9 KB) one, and the chart's `config`."""
    return pio_json.to_json_plotly({"data": fig["data"], "layout": {**fig["layout"], "template": TEMPLATE},
                                    "config": CONFIG})


def show(fig: dict, *, key: str, on_click=None) -> None:
    """Draw `fig` under `key`; later calls with the same key update that chart in place. `on_click`: called
    (a Streamlit callback) when a point is clicked; `st.session_state[key]["click"]` then holds the point's
    `{"x", "y", "customdata"}`."""
    if in_place_available() and bundle_draws(fig):
        # Only strings and booleans at the first level: Streamlit checks every other value there for a data
        # frame, and the first such check imports pandas and pyarrow (~1.5 s before the page's first chart)
        data = {"figure": figure_json(fig), "plotly": PLOTLY_URL}
        if on_click is None:
            _component(key=key, data=data)
        else:
            _component(key=key, data={**data, "clickable": True}, on_click_change=on_click)
    else:
        # as a Figure: st.plotly_chart refuses a figure dict without traces (an empty chart before the first step)
        st.plotly_chart(go.Figure(fig), key=key, config={"displaylogo": False})
