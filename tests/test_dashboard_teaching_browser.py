"""The teaching views in a real Chromium: the network draws, the gate bias widens its arcs, the iteration
slider recolours its units, the views redraw by themselves while training; screenshots of both views.

Run with `python -m pytest -m browser tests/test_dashboard_teaching_browser.py` (Debian's Chromium).
"""

from __future__ import annotations

import time

from test_dashboard_browser import IDLE, JS_SCROLL_INTO_VIEW, SHOTS, href, nudge, pytestmark, step_count, wait_for  # noqa: F401

JS_VIEW = """(key) => { const gd = document.querySelector('.st-key-' + key + ' .js-plotly-plot');
  if (!gd || !gd._fullData || !gd._fullLayout) return null;
  const units = gd._fullData.find(t => t.name === 'units');
  return {meta: gd._fullLayout.meta, draws: gd.__twnnDraws || 0,
          arcs: gd._fullData.filter(t => (t.name || '').startsWith('wormhole')).map(t => t.line.width),
          colors: units ? Array.from(units.marker.color) : null}; }"""


def view(page, key: str = "chart_network") -> dict:
    """The view as drawn; scrolled into view first (a chart out of view is not redrawn)."""
    page.evaluate(JS_SCROLL_INTO_VIEW, key)
    return page.evaluate(JS_VIEW, key) or {}


def test_network_draws_follows_the_gate_and_the_slider(app_url, page):
    page.set_default_timeout(120_000)
    page.goto(f"{app_url}/?task=digits")
    page.wait_for_selector(".st-key-play button:visible")
    page.wait_for_selector(IDLE)
    page.wait_for_selector(".st-key-chart_network .js-plotly-plot")
    first = wait_for(lambda: view(page).get("arcs"), 60, "the network's arcs")
    assert len(first) == 2  # B2 -> B1 and B4 -> B3
    settle = wait_for(lambda: view(page, "chart_settle").get("meta"), 60, "the settling view")
    assert settle["iteration"] == settle["count"] > 0
    assert "sample=slowest" in href(page) and "iter=end" in href(page)

    # gate bias -2 -> 0 (8 key presses of 0.25), paused: the arcs widen at once
    nudge(page, "gate", "ArrowRight", [repr(-2.0 + 0.25 * i) for i in range(1, 9)])
    wider = wait_for(lambda: [w for w in view(page).get("arcs") or [] if w] if all(
        w2 > w1 + 1 for w1, w2 in zip(first, view(page).get("arcs") or [0, 0])) else None, 60, "wider arcs")
    assert len(wider) == 2

    # the iteration slider: to the start (every fixed-point unit zero), then one step on; the colours follow
    end_colors = view(page)["colors"]
    page.locator(".st-key-iter input[type=range]").focus()
    page.keyboard.press("Home")
    wait_for(lambda: view(page).get("meta", {}).get("iteration") == 0, 60, "the picture at iteration 0")
    start = view(page)
    assert start["colors"] != end_colors
    assert "iter=0" in href(page)
    page.keyboard.press("ArrowRight")
    wait_for(lambda: view(page).get("meta", {}).get("iteration") == 1, 60, "the picture at iteration 1")
    assert view(page)["colors"] != start["colors"]
    wait_for(lambda: view(page, "chart_settle").get("meta", {}).get("iteration") == 1, 30,
             "the settling view's marker at iteration 1 (drawn when scrolled into view)")

    # screenshots of both views (paused), then the whole first screen
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.keyboard.press("End")
    wait_for(lambda: view(page).get("meta", {}).get("iteration") == view(page).get("meta", {}).get("count"), 60,
             "the fixed point")
    page.mouse.move(5, 995)
    page.wait_for_selector(IDLE)
    time.sleep(1.0)
    page.locator(".st-key-chart_network").screenshot(path=str(SHOTS / "network.png"))
    page.locator(".st-key-chart_settle").screenshot(path=str(SHOTS / "settling.png"))
    assert (SHOTS / "network.png").stat().st_size > 20_000

    # while training the views redraw by themselves (new parameters, the same sample choice)
    draws = view(page)["draws"]
    page.locator(".st-key-play button:visible").click()
    wait_for(lambda: step_count(page) >= 50, 120, "training to start")
    wait_for(lambda: view(page)["draws"] >= draws + 2, 60, "the network to redraw while training")
    page.locator(".st-key-play button:visible").click()
    page.wait_for_selector(".st-key-play button:visible:has-text('Play')")


def test_the_backward_settling_view_from_the_url_and_its_switch(app_url, page):
    page.set_default_timeout(120_000)
    page.goto(f"{app_url}/?task=digits&dir=backward")
    page.wait_for_selector(".st-key-play button:visible")
    page.wait_for_selector(IDLE)
    back = wait_for(lambda: (view(page, "chart_settle").get("meta") or {}).get("direction") == "backward"
                    and view(page, "chart_settle")["meta"], 60, "the backward settling view")
    assert back["iteration"] == back["count"] > 0 and "dir=backward" in href(page)
    network = wait_for(lambda: view(page).get("meta"), 60, "the network")
    assert network["direction"] == "backward" and len(network["arc_colors"]) == 2
    page.mouse.move(5, 995)
    page.wait_for_selector(IDLE)
    time.sleep(1.0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".st-key-chart_settle").screenshot(path=str(SHOTS / "settling-backward.png"))
    assert (SHOTS / "settling-backward.png").stat().st_size > 20_000
    # the switch: forward again, the URL and both views follow
    page.locator(".st-key-dir label:has-text('Forward')").click()
    wait_for(lambda: (view(page, "chart_settle").get("meta") or {}).get("direction") == "forward", 60,
             "the forward settling view")
    assert "dir=forward" in href(page)
    assert view(page).get("meta", {}).get("direction") == "forward"
