"""A growing net (seed 003) in a real Chromium: brackets with growth on, Play, and the "Network size" chart
follows training in place (the same element, redrawn) while the neurons view shows the net's active slots;
a screenshot of the section (assets/screenshots/growth.png).

Run with `python -m pytest -m browser tests/test_dashboard_growth_browser.py` (Debian's Chromium).
"""

from __future__ import annotations

import time

from test_dashboard_browser import (  # noqa: F401
    IDLE,
    JS_TAG,
    SHOTS,
    chart,
    draws,
    meta,
    play_button,
    pytestmark,
    section_screenshot,
    step_count,
    wait_for,
)


def test_brackets_with_growth_on_draws_the_size_live(app_url, page):
    page.set_default_timeout(120_000)
    page.goto(f"{app_url}/?task=brackets-hard&grow=on")
    page.wait_for_selector(".st-key-play button:visible")
    page.wait_for_selector(IDLE)
    page.wait_for_selector(".st-key-chart_size .js-plotly-plot")
    assert meta(page, "chart_size")["steps"] == 0
    page.evaluate(JS_TAG, "chart_size")

    play_button(page).click()
    started = time.monotonic()
    size = wait_for(lambda: (m := meta(page, "chart_size")) and len(m.get("sizes_seen", [])) >= 4 and m, 240,
                    "the net to take four sizes while playing")
    print(f"four sizes after {time.monotonic() - started:.1f} s, step {step_count(page)}")
    before = draws(page, "chart_size")
    wait_for(lambda: draws(page, "chart_size") > before, 30, "another redraw while training")
    play_button(page).click()
    page.wait_for_selector(".st-key-play button:visible:has-text('Play')")
    page.wait_for_selector(IDLE)

    # redrawn in place: the element tagged before Play is still the chart
    assert page.evaluate("() => document.querySelector('.st-key-chart_size .js-plotly-plot').__testTag") == \
        "same element"
    size = wait_for(lambda: (m := meta(page, "chart_size")) and m["last_step"] == step_count(page) and m, 60,
                    "the size chart up to the last step")
    drawn = chart(page, "chart_size")
    line = next(t for t in drawn["traces"] if t["name"] == "active neurons")
    assert line["y"][0] == 1 and line["y"][-1] == size["last_size"] and max(line["y"]) > 1
    units = wait_for(lambda: (m := meta(page, "chart_units")) and m.get("active") == size["last_size"] and m, 60,
                     "the neurons view of the same net")
    assert units["slots"] == 100 and len(units["active_slots"]) == units["active"]
    assert page.locator("text=What you see: how many neurons").count() == 1

    # below: the captions below the charts
    shot = section_screenshot(page, "network-size", "chart_units", "growth.png", below=200)
    assert shot.stat().st_size > 20_000


JS_FREE = """() => { const gd = document.querySelector('.st-key-chart_network .js-plotly-plot');
  if (!gd || !gd._fullData) return null;
  const free = gd._fullData.find(t => t.name === 'free slots');
  return {free: free ? free.x.length : 0, meta: gd._fullLayout.meta}; }"""


def test_a_growing_wormhole_gru_draws_its_free_slots_in_the_network_view(app_url, page):
    """The gated wormhole GRU growing on adding: the network view draws its free slots as grey rings and says how
    many units each layer uses; a screenshot of the view (assets/screenshots/network-growing-gru.png). That the
    rings follow the growth while training is checked on the figure (test_dashboard_growth.py), where training is
    cheaper than in a browser."""
    page.set_default_timeout(120_000)
    page.goto(f"{app_url}/?task=adding&model=wormhole_gru&grow=on")
    page.wait_for_selector(".st-key-play button:visible")
    page.wait_for_selector(IDLE)
    page.wait_for_selector(".st-key-chart_network .js-plotly-plot")
    page.locator(".st-key-chart_network").scroll_into_view_if_needed()
    drawn = wait_for(lambda: (v := page.evaluate(JS_FREE)) and v["free"] and v, 60, "the network's free slots")
    assert drawn["free"] == drawn["meta"]["free_slots"] == 2 * (2 * 32 - 2)  # L1, L2 and h_t−1: one unit a layer
    assert page.locator(".st-key-chart_network text", has_text="1 of 32").count() == 2  # under L1 and L2
    page.mouse.move(5, 995)
    time.sleep(1.0)  # hover labels fade out; the picture, not an assertion, waits on it
    page.locator(".st-key-chart_network").screenshot(path=str(SHOTS / "network-growing-gru.png"))
    assert (SHOTS / "network-growing-gru.png").stat().st_size > 20_000
