"""The "Network size" section: a growing net (seed 003, `grow` on or wormholes) live, its size over training and its
neurons (or its number of wormholes).

Drawn with the live charts (a part of panels.render_charts: it redraws in place while training, and the
HTML export includes it) from the run's history (`size`, `added`, `deleted` per step, written by the growth
trainer) and `Runner.units()` (the active slots and each neuron's score, for the current parameters), by
the pure builders of `twnn_jax.growth_figures`. Shapes are static (`twnn_jax.growth`): adding and deleting
neurons changes a mask, never the compiled step.
"""

from __future__ import annotations

import streamlit as st

from twnn_jax import growth, growth_figures
from twnn_jax.tasks import BRACKET_TASKS

from . import live_chart
from .session import Runner

CHART_KEYS = {"size": "chart_size", "units": "chart_units"}

EXPLAIN = {
    "size": "**What you see:** how many neurons the network has, step by step: it starts from one, and after every "
            "step the paper's rule may add a neuron or delete one whose outgoing weights have shrunk below the "
            "threshold (green and red marks: the size went up or down). **Try:** on the bracket tasks, Play the "
            "hard text and the easy one and compare where the size settles; on sine, 1, 2 and 3 frequencies; "
            "Reset with another seed.",
    "units": "**What you see:** every slot of the network: a filled dot is a neuron, blue when its score (the size "
             "of its outgoing weights) is above the threshold, orange when at or below it, so the rule may delete "
             "it; a grey ring is a free slot. Dots appear and vanish as the net grows and prunes itself. **Try:** "
             "hover a neuron for its score; Step a few times and watch an orange one go or a new one come.",
    "wormholes": "**What you see:** how many wormholes the network has, step by step: it starts from one (last layer "
                 "to first) of the six its three layers can have, and after every step the paper's rule may open a "
                 "new one or close one whose weights have shrunk below the threshold (green and red marks: the "
                 "count went up or down). **Try:** sine with 1 and 3 frequencies; watch the Network view's arcs "
                 "appear as wormholes open.",
}


def applies(runner: Runner) -> bool:
    """The run grows (the `grow` setting on, or wormholes)."""
    return runner.config.grow != "off"


def figures(runner: Runner, snap: dict) -> dict:
    """The section's figures (empty when the run does not grow)."""
    if not applies(runner):
        return {}
    per_step = "one 40-symbol cycle each" if runner.config.task in BRACKET_TASKS else "one batch each"
    if runner.config.grow == "wormholes":
        return {"size": growth_figures.size_figure(
            snap["history"], max_size=len(runner.trainer.model.spec.wormholes), title="Active wormholes per step",
            xtitle=f"training step ({per_step})", what="wormholes")}
    figs = {"size": growth_figures.size_figure(snap["history"], max_size=runner.config.hidden,
                                               xtitle=f"training step ({per_step})")}
    units = runner.units()
    if units is not None:
        figs["units"] = growth_figures.units_figure(units["active"], units["score"], threshold=growth.THRESHOLD)
    return figs


def render(figs: dict) -> None:
    """The section from the figures of `figures` (nothing when there are none)."""
    if "size" not in figs:
        return
    st.subheader("Network size", anchor="network-size")
    left, right = st.columns([3, 2])
    for column, name in ((left, "size"), (right, "units")):
        if name in figs:
            with column:
                live_chart.show(figs[name], key=CHART_KEYS[name])
                wormholes = name == "size" and figs[name]["layout"].get("meta", {}).get("what") == "wormholes"
                st.caption(EXPLAIN["wormholes" if wormholes else name])
