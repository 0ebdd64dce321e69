"""The dashboard in a real Chromium: live training, live controls, charts that follow, screenshots.

Run with `python -m pytest -m browser tests/test_dashboard_browser.py`. Needs Debian's Chromium at
/usr/bin/chromium (skipped otherwise). Starts `streamlit run dashboard/app.py` as users do.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "assets" / "screenshots"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("TWNN_REQUIRE_BROWSER"),
        reason="needs Debian's chromium at /usr/bin/chromium (CI sets TWNN_REQUIRE_BROWSER=1 to make this an error)",
    ),
]


JS_METRIC = """(label) => { for (const m of document.querySelectorAll("[data-testid='stMetric']")) {
  const l = m.querySelector("[data-testid='stMetricLabel']");
  if (l && l.innerText.trim() === label) return m.querySelector("[data-testid='stMetricValue']").innerText.trim(); }
  return null; }"""

JS_CHART = """(key) => { const gd = document.querySelector('.st-key-' + key + ' .js-plotly-plot');
  if (!gd || !gd._fullData || !gd._fullLayout) return null;
  return {meta: gd._fullLayout.meta, yaxis: gd._fullLayout.yaxis.type,
          traces: gd._fullData.map(t => ({name: t.name, x: t.x ? Array.from(t.x) : [],
                                          y: t.y ? Array.from(t.y) : []}))}; }"""


JS_TAG = """(key) => { document.querySelector('.st-key-' + key + ' .js-plotly-plot').__testTag = 'same element'; }"""
JS_TAG_AND_RANGE = """(key) => { const gd = document.querySelector('.st-key-' + key + ' .js-plotly-plot');
  return {tag: gd.__testTag || null, range: Array.from(gd._fullLayout.xaxis.range)}; }"""


def metric(page, label: str) -> str:
    return page.evaluate(JS_METRIC, label)


def step_count(page) -> int:
    value = metric(page, "Step")
    return int(value) if value and value.isdigit() else 0


# Scrolled in the page's own script: a locator's scroll can meet an element that a rerun replaces meanwhile.
JS_SCROLL_INTO_VIEW = """(key) => { const el = document.querySelector('.st-key-' + key);
  if (!el) return false;
  const r = el.getBoundingClientRect();
  if (r.bottom <= 0 || r.top >= window.innerHeight) el.scrollIntoView({block: 'center'});
  return true; }"""


def chart(page, key: str) -> dict | None:
    """The chart's data as drawn; scrolled into view first (charts out of view are not redrawn)."""
    page.evaluate(JS_SCROLL_INTO_VIEW, key)
    return page.evaluate(JS_CHART, key)


JS_PENDING = "(key) => !!document.querySelector('.st-key-' + key + ' .js-plotly-plot').__twnnNext"


def draws(page, key: str) -> int:
    """How many times the chart has been drawn (Plotly.react calls that finished)."""
    return page.evaluate("(key) => document.querySelector('.st-key-' + key + ' .js-plotly-plot').__twnnDraws || 0",
                         key)


def href(page) -> str:
    """The address bar as the page sees it (Playwright's page.url can lag behind history.replaceState)."""
    return page.evaluate("() => window.location.href")


def meta(page, key: str = "chart_fwd") -> dict:
    """The chart's layout.meta ({} while the chart is being replaced)."""
    spec = chart(page, key)
    return (spec or {}).get("meta") or {}


def last_y(page, key: str) -> float:
    spec = chart(page, key)
    return spec["traces"][0]["y"][-1] if spec and spec["traces"] and spec["traces"][0]["y"] else float("nan")


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def steady(page, read, what: str, timeout: float = 120.0):
    """`read()` once the page's layout has settled: the app idle (no script run under way, which may redraw what
    is above) before and after, and the same value a second apart."""

    def settled():
        if not page.locator(IDLE).count():
            return None
        first = read()
        time.sleep(1.0)
        again = read()
        return again if first and first == again and page.locator(IDLE).count() else None

    return wait_for(settled, timeout, what)


# Streamlit's page scrolls in a container of its own, not the window: scroll the element's nearest scrolling ancestor
JS_CENTRE_Y = """([selector, y]) => { let el = document.querySelector(selector);
  while (el && !(el.scrollHeight > el.clientHeight && /(auto|scroll)/.test(getComputedStyle(el).overflowY))) {
    el = el.parentElement; }
  (el || document.scrollingElement).scrollBy(0, y - window.innerHeight / 2); }"""


def click_target(page, selector: str, read, what: str, timeout: float = 120.0) -> dict:
    """A point to click at in the element `selector` (CSS), where it stays put and inside the window: `read()`
    returns a dict with the point's window coordinates "x" and "y" (and anything else); the page is scrolled to
    bring the point to the window's middle when it is near an edge. A point outside the window takes no click:
    a CI run clicked the inspector's tile at y = 1022 in a window 1000 pixels high (its chart only partly in
    view), and the URL never changed."""
    deadline = time.time() + timeout
    while True:
        point = steady(page, read, what, max(1.0, deadline - time.time()))
        height = page.evaluate("() => window.innerHeight")
        if 0.1 * height <= point["y"] <= 0.9 * height:
            return point
        if time.time() > deadline:
            raise AssertionError(f"{what}: at y = {point['y']:.0f}, outside a window {height} pixels high")
        page.evaluate(JS_CENTRE_Y, [selector, point["y"]])


def section_screenshot(page, heading: str, last_key: str, name: str, below: int) -> Path:
    """A screenshot (SHOTS / name) of a page section, from its heading (`#heading`) down to the chart `last_key`
    and `below` more pixels (the captions under it), the mouse moved away and the section scrolled into view."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(f"#{heading}").scroll_into_view_if_needed()
    page.mouse.move(5, 995)
    time.sleep(1.0)  # hover labels fade out; the picture, not an assertion, waits on it
    top = page.locator(f"#{heading}").bounding_box()
    bottom = page.locator(f".st-key-{last_key}").bounding_box()
    height = bottom["y"] + bottom["height"] - top["y"] + below
    path = SHOTS / name
    page.screenshot(path=str(path), full_page=True,
                    clip={"x": 0, "y": top["y"] - 10 + page.evaluate("window.scrollY"),
                          "width": page.viewport_size["width"], "height": height})
    return path


def play_button(page):
    return page.locator(".st-key-play button:visible")


def fwd_mean(page) -> float:
    return float(metric(page, "Fwd iters").split("/")[0])


def nudge(page, key: str, arrow: str, url_values: list[str]) -> None:
    """Move a slider one keyboard step at a time, waiting for the app to take each step (the URL follows)."""
    for value in url_values:
        page.locator(f".st-key-{key} input[type=range]").focus()
        page.keyboard.press(arrow)
        wait_for(lambda value=value: f"{key}={value}&" in href(page) + "&", 30, f"{key}={value} in the URL")


def test_live_training_controls_and_screenshots(app_url, page):
    page.set_default_timeout(90_000)
    page.goto(f"{app_url}/?task=sine")  # the page opens on digits; this test was written for sine
    page.wait_for_selector(".st-key-play button:visible")
    page.wait_for_selector(IDLE)
    page.wait_for_selector(".st-key-chart_fwd .js-plotly-plot")
    fwd = chart(page, "chart_fwd")
    assert fwd["yaxis"] == "log" and fwd["meta"]["steps"] == []
    assert [t["name"] for t in fwd["traces"]] == ["tol = 1e-03"]
    assert step_count(page) == 0

    # Play: the worker trains, the fragments redraw readout and charts without any click
    play_button(page).click()
    page.wait_for_selector(".st-key-play button:visible:has-text('Pause')")
    wait_for(lambda: step_count(page) >= 20, 120, "training to start")
    first = wait_for(lambda: meta(page).get("last_step"), 30, "a drawn step")
    wait_for(lambda: (meta(page).get("last_step") or 0) > first, 30, "the chart to redraw by itself")
    wait_for(lambda: step_count(page) > first, 30, "the step readout to move on")
    # a chart out of view is not redrawn; scrolled into view, it draws the newest figure at once
    page.locator(".st-key-chart_fwd").scroll_into_view_if_needed()
    gates_draws, fwd_draws = draws(page, "chart_gates"), draws(page, "chart_fwd")
    wait_for(lambda: draws(page, "chart_fwd") >= fwd_draws + 2, 30, "two redraws of the chart in view")
    assert draws(page, "chart_gates") == gates_draws
    page.locator(".st-key-chart_gates").scroll_into_view_if_needed()
    wait_for(lambda: draws(page, "chart_gates") > gates_draws, 10, "the chart scrolled into view to redraw")
    page.locator(".st-key-chart_fwd").scroll_into_view_if_needed()
    # in a background tab (document.hidden, as the browser reports it) a new figure waits; shown, it draws
    page.evaluate("() => Object.defineProperty(document, 'hidden', {configurable: true, get: () => true})")
    hidden_draws = draws(page, "chart_fwd")
    wait_for(lambda: page.evaluate(JS_PENDING, "chart_fwd"), 30, "a new figure for the hidden tab")
    assert draws(page, "chart_fwd") == hidden_draws
    page.evaluate("() => { delete document.hidden; document.dispatchEvent(new Event('visibilitychange')); }")
    wait_for(lambda: draws(page, "chart_fwd") > hidden_draws, 10, "the chart to redraw when the tab is shown")
    # the charts update in place (Plotly.react on the same element): a zoom (mouse drag) survives live redraws
    page.evaluate(JS_TAG, "chart_fwd")
    full = page.evaluate(JS_TAG_AND_RANGE, "chart_fwd")["range"]
    box = page.locator(".st-key-chart_fwd .nsewdrag").bounding_box()
    page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.3 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.6 * box["width"], box["y"] + 0.6 * box["height"], steps=8)
    page.mouse.up()
    zoomed = wait_for(lambda: page.evaluate(JS_TAG_AND_RANGE, "chart_fwd"), 10, "the zoom")
    assert zoomed["tag"] == "same element" and full[0] < zoomed["range"][0] < zoomed["range"][1] < full[1]
    zoomed_at = meta(page)["last_step"]
    wait_for(lambda: meta(page)["last_step"] > zoomed_at, 30, "a live redraw after the zoom")
    assert page.evaluate(JS_TAG_AND_RANGE, "chart_fwd") == zoomed
    page.locator(".st-key-chart_fwd .nsewdrag").dblclick()  # back to the full view
    names = [t["name"] for t in wait_for(lambda: chart(page, "chart_fwd"), 30, "the chart")["traces"]]
    assert names[-1] == "tol = 1e-03" and any(n.endswith("(latest)") for n in names)
    loss = wait_for(lambda: chart(page, "chart_loss"), 30, "the loss chart")
    assert loss["yaxis"] == "log" and len(loss["traces"][0]["x"]) > 10

    # tol 1e-3 -> 1e-4 with the keyboard, while training: the line moves, the new steps ran at the new tol,
    # and the forward solves take more iterations
    iters_before = fwd_mean(page)
    nudge(page, "tol", "ArrowLeft", ["0.0003", "0.0001"])
    wait_for(lambda: meta(page).get("data_tol") == 1e-4, 60, "steps run at tol 1e-4")
    fwd = wait_for(lambda: chart(page, "chart_fwd"), 30, "the chart")
    assert fwd["traces"][-1]["name"] == "tol = 1e-04" and fwd["traces"][-1]["y"] == [1e-4, 1e-4]
    assert "tol=0.0001" in href(page)
    wait_for(lambda: fwd_mean(page) > iters_before, 30, "more forward iterations at the tighter tolerance")

    # gate bias -2 -> +1 (12 key presses of 0.25): the gates open
    gate_before = last_y(page, "chart_gates")
    nudge(page, "gate", "ArrowRight", [repr(-2.0 + 0.25 * i) for i in range(1, 13)])
    wait_for(lambda: meta(page).get("data_gate") == 1.0, 60, "steps run at gate 1.0")
    wait_for(lambda: last_y(page, "chart_gates") > gate_before + 0.3, 30, "the gates to open")
    assert "gate=1.0" in href(page)

    # freeze: the charts stop redrawing while training goes on
    page.locator(".st-key-freeze label").click()
    page.wait_for_selector(IDLE)
    # the frozen figures are marked: wait for them to be drawn (a live figure may still arrive just before)
    frozen_at = wait_for(lambda: meta(page).get("frozen") and meta(page).get("last_step"), 30, "the frozen chart")
    steps_at = step_count(page)
    wait_for(lambda: step_count(page) > steps_at + 10, 30, "training to go on while frozen")
    assert meta(page)["last_step"] == frozen_at
    page.locator(".st-key-freeze label").click()
    wait_for(lambda: (meta(page).get("last_step") or 0) > frozen_at, 30, "the charts to catch up")

    # Pause; the Step shortcut (S) steps once; nothing was recompiled by all those changes
    play_button(page).click()
    page.wait_for_selector(".st-key-play button:visible:has-text('Play')")
    page.wait_for_selector(IDLE)
    paused_at = step_count(page)
    page.mouse.click(900, 10)  # focus the page, not a widget
    page.keyboard.press("s")
    wait_for(lambda: step_count(page) == paused_at + 1, 30, "the S shortcut to take one step")
    # auto-pause at a step count: the worker stops itself and the page notices on its next tick
    target = paused_at + 1 + 300
    field = page.locator(".st-key-pause_at input")
    field.fill(str(target))
    field.press("Enter")
    page.wait_for_selector(IDLE)
    play_button(page).click()  # 300 steps take milliseconds: the page may never show the Pause state
    page.wait_for_selector(f"text=auto-paused at step {target}", timeout=60_000)
    page.wait_for_selector(".st-key-play button:visible:has-text('Play')")
    assert step_count(page) == target
    page.get_by_text("Under the hood").click()
    hood = page.locator("[data-testid='stExpander']", has_text="jit cache entries").inner_text()
    assert "run 1, evaluate 1" in hood, hood

    # screenshots while paused: the whole page and the convergence panel
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(5, 995)
    height = page.evaluate("() => document.querySelector(\"[data-testid='stMainBlockContainer']\").scrollHeight")
    page.set_viewport_size({"width": 1500, "height": min(int(height) + 120, 6000)})
    page.wait_for_selector(IDLE)
    time.sleep(1.5)
    page.screenshot(path=str(SHOTS / "dashboard_paused.png"), full_page=True)
    page.locator(".st-key-panel_convergence").screenshot(path=str(SHOTS / "convergence_panel.png"))
    assert (SHOTS / "dashboard_paused.png").stat().st_size > 50_000


def test_bad_url_parameter_warns_in_the_page(app_url, page):
    page.set_default_timeout(90_000)
    page.goto(f"{app_url}/?task=sine&tol=5&gate=-3")
    page.wait_for_selector(".st-key-play button:visible")
    page.wait_for_selector(IDLE)
    warning = page.locator("[data-testid='stAlert']", has_text="tol=5").inner_text()
    assert "tol must be a number in [1e-08, 1.0]" in warning
    wait_for(lambda: "tol=0.001" in href(page) and "gate=-3.0" in href(page), 30, "the URL to be rewritten")


def test_hostile_url_values_are_shown_as_inert_text(app_url, page):
    """A shared link is input too: a value or a name that tries to close the code span and inject a link,
    an image or HTML is shown as text, cut short; nothing of it becomes a live element of the page."""
    from urllib.parse import quote

    evil = "`[click](https://evil.example/x) ![img](https://evil.example/i.png) <b>bold</b>`"
    page.set_default_timeout(90_000)
    name = quote("<i>x</i>[y](https://evil.example)")
    page.goto(f"{app_url}/?task=sine&tol={quote(evil)}&{name}=1&gate={'9' * 5000}")
    page.wait_for_selector(".st-key-play button:visible")
    page.wait_for_selector(IDLE)
    alerts = page.locator("[data-testid='stAlert']")
    text = " ".join(alerts.all_inner_texts())
    assert "URL parameter" in text and "rejected" in text and "Unknown URL parameter" in text
    assert page.locator("a[href*='evil.example']").count() == 0
    assert page.locator("img[src*='evil.example']").count() == 0
    assert alerts.locator("b, i").count() == 0
    assert "9" * 200 not in text  # a 5,000-character value is cut
