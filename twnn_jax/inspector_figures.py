"""Pure Plotly figure builders for the per-sample inspector (plain dicts, as figures.py).

`gallery_figure` draws evaluation inputs as small tiles in two groups side by side: the slowest to settle
(most forward iterations) and the fastest, each tile labelled with its iterations and confidence (digits:
8x8 images, a green or red frame for right or wrong) or its error (sine: the window as a small line).
`iterations_scatter` plots forward iterations against confidence (or error) over the whole evaluation
set, with the Spearman rank correlation in its title. `tile_at` maps a click on the gallery back to the
sample. Numbers in, dicts out; no JAX, no Streamlit.
"""

from __future__ import annotations

import numpy as np

from .figures import base_figure

TILES = 12  # per group: the 12 slowest and the 12 fastest
COLS = 6  # tiles per row inside a group
PIXELS = 8  # a digit is 8x8
GAP = 1.0  # between tiles (in pixels)
LABEL = 2.6  # room under a tile for its label (in pixels)
GROUP_GAP = 4.0  # between the two groups
INK = [[0.0, "rgb(255,255,255)"], [1.0, "rgb(20,20,20)"]]  # dark ink on white paper, as the digits were written
RIGHT, WRONG, CHOSEN = "rgb(44,160,44)", "rgb(214,39,40)", "rgb(230,120,20)"


def order_by_iterations(iters, confidence=None, k: int = TILES) -> tuple[list[int], list[int]]:
    """(slowest, fastest): the `k` samples with the most and with the fewest forward iterations, at most half
    the set each. Ties: the least confident first among the slowest, the most confident first among the fastest
    (then by index)."""
    iters = np.asarray(iters, float)
    n = len(iters)
    k = max(0, min(k, n // 2))
    conf = np.zeros(n) if confidence is None else np.nan_to_num(np.asarray(confidence, float))
    idx = np.arange(n)
    slowest = np.lexsort((idx, conf, -iters))[:k]
    fastest = np.lexsort((idx, -conf, iters))[:k]
    return [int(i) for i in slowest], [int(i) for i in fastest]


def spearman(iters, score) -> float | None:
    """Spearman's rank correlation of iterations and `score` (scipy.stats.spearmanr); None when undefined
    (fewer than 3 samples, or every sample the same)."""
    a, b = np.asarray(iters, float), np.asarray(score, float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    from scipy.stats import spearmanr  # here, not at the top: importing SciPy's statistics takes ~0.6 s, which
    # the dashboard's first page would otherwise wait for before its first chart (`twnn dashboard`'s preload
    # imports it in the background)

    return float(spearmanr(a, b).statistic)


def _origin(slot: int, group: int) -> tuple[float, float]:
    """Top-left corner (x, y) of a tile; y grows downwards."""
    col, row = slot % COLS, slot // COLS
    x = group * (COLS * (PIXELS + GAP) + GROUP_GAP) + col * (PIXELS + GAP)
    return x, row * (PIXELS + LABEL + GAP)


def _layout_tiles(slowest, fastest) -> list[tuple[int, float, float]]:
    return [(int(i), *_origin(s, g)) for g, group in enumerate((slowest, fastest)) for s, i in enumerate(group)]


def tile_at(meta: dict, x: float, y: float) -> int | None:
    """The sample whose tile (image or line box, with its label) contains the point (x, y) of the gallery."""
    for index, x0, y0 in meta.get("tiles", []):
        if x0 - GAP / 2 <= x <= x0 + PIXELS + GAP / 2 and y0 - GAP / 2 <= y <= y0 + PIXELS + LABEL:
            return int(index)
    return None


def _label(i: int, iters, confidence, correct, error) -> str:
    text = f"{int(iters[i])} it"
    if confidence is not None:
        text += f" · {100 * float(confidence[i]):.0f}%"
    if correct is not None:
        mark = "✓" if bool(correct[i]) else "✗"
        text += f" <span style='color:{RIGHT if correct[i] else WRONG}'>{mark}</span>"
    elif error is not None:
        text += f" · {float(error[i]):.1e}"
    return text


def _hover(i: int, iters, confidence, correct) -> str:
    text = f"sample #{i}: {int(iters[i])} forward iterations"
    if confidence is not None:
        text += f", {100 * float(confidence[i]):.0f}% sure"
    if correct is not None:
        text += ", right" if correct[i] else ", wrong"
    return text + "<br>click to watch it settle"


def gallery_figure(inputs, iters, *, confidence=None, correct=None, error=None, chosen: int | None = None,
                   k: int = TILES, title: str = "Slowest and fastest inputs") -> dict:
    """Evaluation inputs as tiles: the `k` slowest left, the `k` fastest right (`order_by_iterations`).
    `inputs` (n, 64): 8x8 images (values in [0, 1]); any other width: drawn as a small line (a sine window).
    `confidence`, `correct` (digits) or `error` (sine) label the tiles; `chosen` gets an orange frame."""
    inputs = np.asarray(inputs, float)
    iters = np.asarray(iters)
    slowest, fastest = order_by_iterations(iters, confidence, k)
    tiles = _layout_tiles(slowest, fastest)
    images = inputs.shape[1] == PIXELS * PIXELS
    traces, shapes, annotations = [], [], []
    width = 2 * COLS * (PIXELS + GAP) + GROUP_GAP
    rows = -(-max(len(slowest), 1) // COLS)
    height = rows * (PIXELS + LABEL + GAP)
    if images:
        w, h = int(np.ceil(width)), int(np.ceil(height))
        z = np.full((h, w), np.nan)
        for i, x0, y0 in tiles:
            z[int(y0): int(y0) + PIXELS, int(x0): int(x0) + PIXELS] = inputs[i].reshape(PIXELS, PIXELS)
        traces.append({"type": "heatmap", "z": z, "x0": 0.5, "dx": 1, "y0": 0.5, "dy": 1, "zmin": 0, "zmax": 1,
                       "colorscale": INK, "showscale": False, "hoverinfo": "skip", "name": "inputs"})
    else:
        xs, ys, text = [], [], []
        lo, hi = float(np.min(inputs)), float(np.max(inputs))
        span = hi - lo if hi > lo else 1.0
        t = np.linspace(0.4, PIXELS - 0.4, inputs.shape[1])
        for i, x0, y0 in tiles:
            xs += [*(x0 + t), None]
            ys += [*(y0 + PIXELS - 0.5 - (PIXELS - 1) * (inputs[i] - lo) / span), None]
            text += [f"sample #{i}: {int(iters[i])} iterations"] * len(t) + [None]
        traces.append({"type": "scatter", "x": xs, "y": ys, "mode": "lines", "name": "windows", "text": text,
                       "hoverinfo": "text", "line": {"color": "#1f77b4", "width": 1.5}, "showlegend": False})
    # hover and click targets: one invisible marker in the middle of each tile
    traces.append({"type": "scatter", "x": [x0 + PIXELS / 2 for _, x0, _ in tiles],
                   "y": [y0 + PIXELS / 2 for _, _, y0 in tiles], "mode": "markers", "name": "tiles",
                   "customdata": [i for i, _, _ in tiles], "showlegend": False, "hoverinfo": "text",
                   "text": [_hover(i, iters, confidence, correct) for i, _, _ in tiles],
                   "marker": {"size": 40, "opacity": 0, "color": "#000"}})
    for i, x0, y0 in tiles:
        color = (RIGHT if correct[i] else WRONG) if correct is not None else "rgba(128,128,128,0.6)"
        line = {"color": CHOSEN, "width": 4} if i == chosen else {"color": color, "width": 1.5}
        shapes.append({"type": "rect", "x0": x0, "x1": x0 + PIXELS, "y0": y0, "y1": y0 + PIXELS, "line": line,
                       "layer": "above"})
        annotations.append({"x": x0 + PIXELS / 2, "y": y0 + PIXELS + 0.15, "yanchor": "top", "showarrow": False,
                            "text": _label(i, iters, confidence, correct, error), "font": {"size": 11}})
    for g, name in enumerate((f"{len(slowest)} slowest (most iterations)", f"{len(fastest)} fastest")):
        annotations.append({"x": _origin(0, g)[0], "y": -0.6, "xanchor": "left", "yanchor": "bottom",
                            "showarrow": False, "text": f"<b>{name}</b>", "font": {"size": 13}})
    lay = {"xaxis": {"visible": False, "range": [-0.5, width], "fixedrange": True},
           "yaxis": {"visible": False, "range": [height + 0.2, -2.6], "fixedrange": True, "scaleanchor": "x"},
           "shapes": shapes, "annotations": annotations, "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
           "hovermode": "closest", "dragmode": False}
    meta = {"kind": "inspector_gallery", "slowest": slowest, "fastest": fastest, "tiles": tiles,
            "iters_slowest": [int(iters[i]) for i in slowest], "iters_fastest": [int(iters[i]) for i in fastest],
            "chosen": chosen, "images": images}
    return base_figure(traces, title, "", "", height=120 + 70 * rows, meta=meta, layout=lay)


def iterations_scatter(iters, score, *, score_name: str = "confidence", correct=None, chosen: int | None = None,
                       title: str = "Iterations against confidence") -> dict:
    """One dot per evaluation sample: forward iterations (x, jittered a little: they are whole numbers)
    against `score`; the title carries Spearman's ρ (`spearman`). `correct` colours the dots green or red."""
    iters = np.asarray(iters, float)
    score = np.asarray(score, float)
    n = len(iters)
    rho = spearman(iters, score)
    jitter = ((np.arange(n) * 0.618034) % 1.0 - 0.5) * 0.5  # deterministic, so a redraw does not shuffle dots
    right = np.ones(n, bool) if correct is None else np.asarray(correct, bool)
    traces = []
    for name, mask, color in (("right", right, RIGHT if correct is not None else "#1f77b4"),
                              ("wrong", ~right, WRONG)):
        if not mask.any() and name == "wrong":
            continue
        idx = np.flatnonzero(mask)
        traces.append({"type": "scatter", "x": iters[idx] + jitter[idx], "y": score[idx], "mode": "markers",
                       "name": name if correct is not None else "samples", "customdata": idx,
                       "marker": {"color": color, "size": 6, "opacity": 0.6},
                       "hovertemplate": f"sample #%{{customdata}}<br>%{{y:.3g}} {score_name}<extra></extra>",
                       "showlegend": correct is not None})
    if chosen is not None and 0 <= chosen < n:
        traces.append({"type": "scatter", "x": [iters[chosen] + jitter[chosen]], "y": [score[chosen]],
                       "mode": "markers", "name": f"chosen #{chosen}", "customdata": [chosen],
                       "marker": {"symbol": "circle-open", "size": 16, "color": CHOSEN, "line": {"width": 3}},
                       "hoverinfo": "skip"})
    rho_text = ("ρ undefined (every sample the same)" if rho is None else f"Spearman ρ = {rho:+.2f}")
    full = f"{title} · {rho_text} (n = {n})"
    meta = {"kind": "inspector_scatter", "spearman": rho, "n": n, "score_name": score_name}
    return base_figure(traces, full, "forward iterations", score_name, height=330, meta=meta,
                   layout={"yaxis": {"type": "log"} if score_name == "error" else {},
                           "xaxis": {"dtick": 1} if n and np.ptp(iters) <= 20 else {}})
