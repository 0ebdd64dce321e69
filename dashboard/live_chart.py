"""A Plotly chart that updates in place: the live panels redraw with `Plotly.react` on the same element.

`st.plotly_chart` (Streamlit 1.67) derives a chart's identity from its figure, so every redraw with new
data unmounts the chart and plots it anew: ~0.8 s of the browser's main thread per redraw of the seven
live charts on this machine, CPU that training could use. This component keeps one element per key and
hands each new figure to `Plotly.react`, which updates only what changed (and, with the figures'
`layout.uirevision`, keeps the user's zoom). A chart scrolled out of view, or in a background tab, is
not redrawn until it is seen again (then at once, with the newest figure): redrawing costs the browser
~40 ms a chart.

plotly.js itself comes from the installed `plotly` package, copied once into `dashboard/static/` and
served by Streamlit's static file serving (`server.enableStaticServing`, set in `.streamlit/config.toml`
and by `twnn dashboard`); the browser caches it. Where that is off, or the copy cannot be written,
`show` falls back to `st.plotly_chart`.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import plotly
import plotly.graph_objects as go
import plotly.io.json as pio_json
import streamlit as st

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
STATIC_DIR = Path(__file__).parent / "static"  # Streamlit serves the folder beside the main script at app/static/
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

JS = r"""
const SRC = "app/static/plotly.min.js";
function loadPlotly() {
  if (!window.__twnnPlotly) {
    window.__twnnPlotly = new Promise((resolve, reject) => {
      if (window.Plotly) return resolve(window.Plotly);
      const s = document.createElement("script");
      s.src = new URL(SRC, document.baseURI).href;
      s.onload = () => window.Plotly ? resolve(window.Plotly) : reject(new Error(s.src + " defined no Plotly"));
      s.onerror = () => { window.__twnnPlotly = null; reject(new Error("could not load " + s.src)); };
      document.head.appendChild(s);
    });
  }
  return window.__twnnPlotly;
}
function themed(fig, parent) {  // text and grid in the page's own text colour (light or dark theme)
  const color = getComputedStyle(parent).color;
  const rgb = (color.match(/[\d.]+/g) || [49, 51, 63]).slice(0, 3).join(",");
  const t = fig.layout.template = fig.layout.template || {};
  const tl = t.layout = t.layout || {};
  tl.font = Object.assign({}, tl.font, {color: color});
  for (const ax of ["xaxis", "yaxis"]) {
    tl[ax] = Object.assign({gridcolor: `rgba(${rgb},0.12)`}, tl[ax]);
    tl[ax].tickfont = Object.assign({color: `rgba(${rgb},0.65)`}, tl[ax].tickfont);
  }
  return fig;
}
function draw(P, gd) {  // one Plotly.react at a time, always with the newest; off screen, only the first
  if (gd.__twnnBusy || !gd.__twnnNext || (gd._fullLayout && gd.__twnnVisible === false)) return;
  if (gd._fullLayout && document.hidden) {  // a tab in the background: redraw when it is shown again
    if (!window.__twnnOnShow) {
      window.__twnnOnShow = new Map();
      document.addEventListener("visibilitychange", () => {
        if (document.hidden) return;
        const waiting = [...window.__twnnOnShow.values()];
        window.__twnnOnShow.clear();
        waiting.forEach((redraw) => redraw());
      });
    }
    window.__twnnOnShow.set(gd, () => draw(P, gd));
    return;
  }
  if (gd._dragging) {  // the user is zooming or panning: redraw after the drag, which would lose it
    if (!gd.__twnnLater) gd.__twnnLater = setTimeout(() => { gd.__twnnLater = null; draw(P, gd); }, 200);
    return;
  }
  const [fig, config] = gd.__twnnNext;
  gd.__twnnNext = null;
  gd.__twnnBusy = true;
  Promise.resolve(P.react(gd, fig.data, fig.layout, config))
    .catch((err) => console.error("twnn live chart:", err))
    .finally(() => { gd.__twnnBusy = false; gd.__twnnDraws = (gd.__twnnDraws || 0) + 1; draw(P, gd); });
}
export default function ({ parentElement, data }) {
  let gd = parentElement.querySelector("div.twnn-live-chart");
  if (!gd) {
    gd = document.createElement("div");
    gd.className = "twnn-live-chart";
    parentElement.appendChild(gd);
  }
  gd.__twnnNext = [themed(JSON.parse(data.figure), parentElement), data.config];
  loadPlotly().then((P) => {
    if (!gd.__twnnSeen) {  // a chart scrolled out of view waits, and draws its newest figure on coming back
      gd.__twnnSeen = new IntersectionObserver((entries) => {
        gd.__twnnVisible = entries[entries.length - 1].isIntersecting;
        draw(P, gd);
      }, {rootMargin: "100px"});
      gd.__twnnSeen.observe(gd);
    }
    if (!gd.__twnnResize) {  // follow the column's width (sidebar opened or closed, window resized)
      let width = gd.clientWidth;
      gd.__twnnResize = new ResizeObserver(() => {
        if (gd.clientWidth !== width && gd._fullLayout) { width = gd.clientWidth; P.Plots.resize(gd); }
      });
      gd.__twnnResize.observe(gd);
    }
    draw(P, gd);
  }).catch((err) => {
    gd.textContent = "Chart unavailable: " + err.message + ". Start the dashboard with " +
      "--server.enableStaticServing=true (the README's command and `twnn dashboard` do).";
  });
}
"""

_component = st.components.v2.component("twnn_live_chart", js=JS, isolate_styles=False)


@functools.cache
def in_place_available() -> bool:
    """True when plotly.js can be served from app/static/: static serving is on and the copy is in place."""
    if not st.get_option("server.enableStaticServing"):
        return False
    target = STATIC_DIR / PLOTLY_JS.name
    try:
        if not target.is_file() or target.stat().st_size != PLOTLY_JS.stat().st_size:
            STATIC_DIR.mkdir(exist_ok=True)
            partial = target.with_suffix(f".{os.getpid()}.part")
            shutil.copyfile(PLOTLY_JS, partial)
            os.replace(partial, target)  # atomic: another server starting at once sees the old file or the new
    except OSError:
        return False
    return True


def figure_json(fig: dict) -> str:
    """The figure dict (`twnn_jax.figures`) as Plotly JSON with this dashboard's small template instead of
    Plotly's default (~9 KB) one."""
    return pio_json.to_json_plotly({"data": fig["data"], "layout": {**fig["layout"], "template": TEMPLATE}})


def show(fig: dict, *, key: str) -> None:
    """Draw `fig` under `key`; later calls with the same key update that chart in place."""
    if in_place_available():
        _component(key=key, data={"figure": figure_json(fig), "config": CONFIG})
    else:
        # as a Figure: st.plotly_chart refuses a figure dict without traces (an empty chart before the first step)
        st.plotly_chart(go.Figure(fig), key=key, config={"displaylogo": False})
