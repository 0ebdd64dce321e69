"""The inspector in a real Chromium: clicking a digit makes it the sample of "One input settling"; a screenshot.

Run with `python -m pytest -m browser tests/test_dashboard_inspector_browser.py` (Debian's Chromium).
"""

from __future__ import annotations

import time

from test_dashboard_browser import (  # noqa: F401
    IDLE,
    JS_SCROLL_INTO_VIEW,
    SHOTS,
    click_target,
    href,
    pytestmark,
    wait_for,
)
from test_dashboard_teaching_browser import view

# the screen position of a tile's centre (its invisible click target) and the tiles' samples
JS_TILE = """([key, k]) => { const gd = document.querySelector('.st-key-' + key + ' .js-plotly-plot');
  if (!gd || !gd._fullData || !gd._fullLayout) return null;
  const t = gd._fullData.find(t => t.name === 'tiles');
  if (!t) return null;
  const L = gd._fullLayout, box = gd.getBoundingClientRect();
  return {index: t.customdata[k], meta: L.meta,
          x: box.left + L._size.l + L.xaxis.d2p(t.x[k]), y: box.top + L._size.t + L.yaxis.d2p(t.y[k])}; }"""

GALLERY = "chart_inspect_gallery"
JS_DRAWS = "(key) => (document.querySelector('.st-key-' + key + ' .js-plotly-plot') || {}).__twnnDraws || 0"


def test_clicking_a_digit_shows_it_settling(app_url, page):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{app_url}/?task=digits")
    page.wait_for_selector(".st-key-play button:visible")
    page.wait_for_selector(IDLE)
    before = wait_for(lambda: view(page, "chart_settle").get("meta"), 120, "the settling view")
    page.evaluate(JS_SCROLL_INTO_VIEW, GALLERY)
    tiles = click_target(page, f".st-key-{GALLERY}", lambda: page.evaluate(JS_TILE, [GALLERY, 14]),
                         "the inspector's tile")
    assert len(tiles["meta"]["slowest"]) == 12 == len(tiles["meta"]["fastest"])
    target = tiles["index"]  # the third of the fastest: not the slowest the settling view shows first
    assert target == tiles["meta"]["fastest"][2] != before["sample"]
    page.mouse.click(tiles["x"], tiles["y"])
    wait_for(lambda: f"sample={target}&" in href(page) + "&", 60, f"sample={target} in the URL")
    wait_for(lambda: view(page, "chart_settle").get("meta", {}).get("sample") == target, 60,
             "the settling view to show the clicked digit")
    wait_for(lambda: view(page).get("meta", {}).get("sample") == target, 60, "the network picture to follow")
    page.evaluate(JS_SCROLL_INTO_VIEW, GALLERY)
    wait_for(lambda: (page.evaluate(JS_TILE, [GALLERY, 0]) or {}).get("meta", {}).get("chosen") == target, 60,
             "the clicked tile framed")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(5, 995)
    page.wait_for_selector(IDLE)
    time.sleep(1.0)
    page.locator(f".st-key-{GALLERY}").screenshot(path=str(SHOTS / "inspector.png"))
    page.locator(".st-key-chart_inspect_scatter").screenshot(path=str(SHOTS / "inspector_scatter.png"))
    assert (SHOTS / "inspector.png").stat().st_size > 10_000

    # while training the inspector redraws by itself, in place (new parameters, the same chosen sample)
    page.evaluate(JS_SCROLL_INTO_VIEW, GALLERY)
    drawn = page.evaluate(JS_DRAWS, GALLERY)
    page.locator(".st-key-play button:visible").click()
    # (Play scrolls the page up; a chart out of view is not redrawn, so scroll to it at each look)
    wait_for(lambda: page.evaluate(JS_SCROLL_INTO_VIEW, GALLERY) and page.evaluate(JS_DRAWS, GALLERY) >= drawn + 2,
             120, "the inspector to redraw while training")
    page.locator(".st-key-play button:visible").click()
    page.wait_for_selector(".st-key-play button:visible:has-text('Play')")
