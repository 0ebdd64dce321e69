"""The "Solve vs one pass" section in a real Chromium: the toggle turns warm starts on, training fills the
surrogate's error chart, the iterations chart draws every evaluation sample; a screenshot of the section.

Run with `python -m pytest -m browser tests/test_dashboard_surrogate_browser.py` (Debian's Chromium).
"""

from __future__ import annotations

from test_dashboard_browser import (  # noqa: F401
    IDLE,
    chart,
    href,
    meta,
    pytestmark,
    section_screenshot,
    step_count,
    wait_for,
)


def test_toggle_turns_warm_starts_on_and_the_section_draws(app_url, page):
    page.set_default_timeout(120_000)
    page.goto(f"{app_url}/?task=digits")
    page.wait_for_selector(".st-key-play button:visible")
    page.wait_for_selector(IDLE)
    toggle = page.locator(".st-key-_warm_toggle")
    toggle.scroll_into_view_if_needed()
    page.wait_for_selector("text=Warm starts are off")
    toggle.locator("label").click()
    wait_for(lambda: "warm_start=surrogate" in href(page), 120, "warm_start=surrogate in the URL")
    page.wait_for_selector(".st-key-chart_warm_iterations .js-plotly-plot", timeout=300_000)
    page.wait_for_selector(IDLE)

    # train a little: the error chart fills with the history's points, the iterations chart follows
    page.locator(".st-key-play button:visible").click()
    wait_for(lambda: step_count(page) >= 150, 300, "training with warm starts")
    page.locator(".st-key-play button:visible").click()
    page.wait_for_selector(".st-key-play button:visible:has-text('Play')")
    page.wait_for_selector(IDLE)
    steps = step_count(page)
    error = wait_for(lambda: (c := chart(page, "chart_surrogate_error")) and len(c["traces"][0]["x"]) >= steps - 1
                     and c, 120, "the error chart with every step")
    assert error["yaxis"] == "log" and all(y > 0 for y in error["traces"][0]["y"])
    iters = wait_for(lambda: meta(page, "chart_warm_iterations").get("kind") == "warm_iterations"
                     and meta(page, "chart_warm_iterations"), 60, "the iterations chart")
    assert iters["cold_mean"] > 0 and iters["warm_mean"] > 0
    guess = wait_for(lambda: chart(page, "chart_surrogate_guess"), 60, "the guess chart")
    assert len(guess["traces"][0]["y"]) == len(guess["traces"][1]["y"]) > 10

    # below: the captions below the last chart
    shot = section_screenshot(page, "solve-vs-pass", "chart_warm_iterations", "surrogate.png", below=170)
    assert shot.stat().st_size > 20_000
