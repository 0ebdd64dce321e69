"""The playground in a real Chromium: a click on the phase plane adds a start point and its path; a path that
runs out of iterations is flagged; screenshot.

Run with `python -m pytest -m browser tests/test_dashboard_playground_browser.py` (Debian's Chromium).
"""

from __future__ import annotations

import time

import pytest
from test_dashboard_browser import IDLE, SHOTS, click_target, href, pytestmark, wait_for  # noqa: F401

PLANE = "[class*='st-key-pg_plane_'] .js-plotly-plot"
JS_PLANE = """(sel) => { const gd = document.querySelector(sel);
  if (!gd || !gd._fullLayout) return null;
  return {meta: gd._fullLayout.meta,
          paths: gd._fullData.filter(t => t.meta && t.meta.path !== undefined).map(t => Array.from(t.x).length)}; }"""
JS_PIXEL = """([sel, x, y]) => { const gd = document.querySelector(sel); const L = gd._fullLayout;
  const r = gd.getBoundingClientRect();
  return {x: r.left + L.xaxis._offset + L.xaxis.l2p(x), y: r.top + L.yaxis._offset + L.yaxis.l2p(y)}; }"""


def plane(page) -> dict:
    return page.evaluate(JS_PLANE, PLANE) or {}


def test_clicking_the_plane_adds_a_path(app_url, page):
    page.set_default_timeout(120_000)
    page.set_viewport_size({"width": 1300, "height": 1000})
    page.goto(f"{app_url}/?task=sine&pg=on&pg_starts=-0.90,-0.90&pg_max_iter=65")  # 65: too few from that corner
    page.wait_for_selector(IDLE)
    page.wait_for_selector(PLANE)
    page.locator(PLANE).scroll_into_view_if_needed()
    first = wait_for(lambda: plane(page).get("meta"), 60, "the phase plane")
    assert first["paths"] == 1 and first["starts"] == [[-0.9, -0.9]]
    assert first["converged"] == [False]  # flagged: red, and a line of text
    assert page.get_by_text("Not converged within max_iter = 65").count() == 1
    target = (0.5, 0.5)  # a click target of the plane's grid (0.5 = -1 + 2 * 11 / 22... the nearest one)
    point = click_target(page, PLANE, lambda: page.evaluate(JS_PIXEL, [PLANE, *target]), "the plane's click target")
    x, y = point["x"], point["y"]
    page.mouse.move(x, y)
    time.sleep(0.3)
    page.mouse.click(x, y)
    second = wait_for(lambda: (plane(page).get("meta") or {}).get("paths") == 2 and plane(page), 60,
                      "a second path after the click")
    start = second["meta"]["starts"][1]
    assert start == pytest.approx(target, abs=0.06)
    assert second["paths"][1] >= 2  # the new path has its start and at least one iterate
    wait_for(lambda: "pg_starts=-0.90%2C-0.90%3B" in href(page) or "pg_starts=-0.90,-0.90;" in href(page), 30,
             "the new start point in the URL")

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(5, 5)
    page.wait_for_selector(IDLE)
    time.sleep(1.0)
    page.locator("[class*='st-key-pg_plane_']").screenshot(path=str(SHOTS / "playground.png"))
    assert (SHOTS / "playground.png").stat().st_size > 20_000
