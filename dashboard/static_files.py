"""The dashboard's `static/` folder: Streamlit serves it at `app/static/` (`server.enableStaticServing`).

It holds plotly.js for the live charts (live_chart.py): plotly.js's own *cartesian* bundle (npm package
`plotly.js-cartesian-dist-min`, MIT), with every trace type the dashboard draws (`TRACE_TYPES`) in 1.5 MB
where the full bundle that the `plotly` package ships is 4.8 MB. A browser fetches and parses it before the
first chart can draw: with the full bundle the default page's first chart came later (measured in
benchmarks/README.md, "Start-up"). It ships in the wheel beside app.py (`twnn_dashboard/static/`), the same
plotly.js version as the installed `plotly` package (a test compares them). To update it after `plotly`
moves to another plotly.js version V: `npm pack plotly.js-cartesian-dist-min@V`, then copy the tarball's
`package/plotly-cartesian.min.js` here.
"""

from __future__ import annotations

import re
from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
PLOTLY_JS = STATIC_DIR / "plotly-cartesian.min.js"
PLOTLY_URL = "app/static/" + PLOTLY_JS.name  # where the page gets it, relative to the page's own URL
# the trace modules the cartesian bundle contains (its README); a figure with any other trace type is drawn by
# st.plotly_chart, which brings the full plotly.js (live_chart.show)
TRACE_TYPES = frozenset({"bar", "box", "contour", "heatmap", "histogram", "histogram2d", "histogram2dcontour",
                         "image", "pie", "scatter", "scatterternary", "violin"})


def plotly_js_version(path: Path) -> str | None:
    """The plotly.js version named in a bundle's header comment (`* plotly.js ... v4.1.1`), or None."""
    with open(path, encoding="utf-8") as f:
        head = f.read(300)
    found = re.search(r"plotly\.js[^\n]*? v(\d+\.\d+\.\d+)", head)
    return found.group(1) if found else None
