// The live chart component (dashboard/live_chart.py): one element per key, redrawn with Plotly.react.
// plotly.js is served by Streamlit's static file serving from static/ beside the app: `data.plotly` is its URL
// (static_files.PLOTLY_URL), relative to the page.
function loadPlotly(src) {
  if (!window.__twnnPlotly) {
    window.__twnnPlotly = new Promise((resolve, reject) => {
      if (window.Plotly) return resolve(window.Plotly);
      const s = document.createElement("script");
      s.src = new URL(src, document.baseURI).href;
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
    .finally(() => { gd.__twnnBusy = false; gd.__twnnDraws = (gd.__twnnDraws || 0) + 1; clicks(gd); draw(P, gd); });
}
function whenIdle(fn) {  // after the browser has painted and has time (within 2 s even when it is busy)
  if (window.requestIdleCallback) window.requestIdleCallback(fn, {timeout: 2000});
  else setTimeout(fn, 50);
}
function clicks(gd) {  // a chart shown with on_click: a click on a point sends it to Python (trigger "click")
  if (gd.__twnnClickBound || !gd.on) return;
  gd.__twnnClickBound = true;
  gd.on("plotly_click", (ev) => {
    const p = ev && ev.points && ev.points[0];
    if (p && gd.__twnnTrigger) {
      gd.__twnnTrigger("click", {x: p.x ?? null, y: p.y ?? null, customdata: p.customdata ?? null});
    }
  });
}
export default function ({ parentElement, data, setTriggerValue }) {
  let gd = parentElement.querySelector("div.twnn-live-chart");
  if (!gd) {
    gd = document.createElement("div");
    gd.className = "twnn-live-chart";
    parentElement.appendChild(gd);
  }
  const fig = JSON.parse(data.figure);
  gd.__twnnNext = [themed(fig, parentElement), fig.config];
  gd.__twnnTrigger = data.clickable ? setTriggerValue : null;
  loadPlotly(data.plotly).then((P) => {
    if (!gd.__twnnSeen) {  // a chart scrolled out of view waits, and draws its newest figure on coming back
      gd.__twnnSeen = new IntersectionObserver((entries) => {  // called once at once, then on each change
        gd.__twnnVisible = entries[entries.length - 1].isIntersecting;
        if (gd.__twnnVisible || gd._fullLayout) draw(P, gd);
        else whenIdle(() => draw(P, gd));  // never drawn, out of view: after the charts in view have painted
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
    if (gd._fullLayout) draw(P, gd);  // a new figure for a drawn chart (a new chart: its first sighting draws it)
  }).catch((err) => {
    gd.textContent = "Chart unavailable: " + err.message + ". Start the dashboard with " +
      "--server.enableStaticServing=true (the README's command and `twnn dashboard` do).";
  });
}
