"""The dashboard's `static/` folder: Streamlit serves it at `app/static/` (`server.enableStaticServing`).

It holds plotly.js for the live charts (live_chart.py), copied from the installed `plotly` package on
first use, so the two never disagree and the wheel does not carry a second copy of 4.6 MB. The folder is
beside app.py: `dashboard/static/` in a checkout, `twnn_dashboard/static/` when installed. `twnn dashboard`
fills it before the server starts; `streamlit run` fills it at the first page. Where the package folder
cannot be written (a read-only install) the charts fall back to `st.plotly_chart`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import plotly

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
STATIC_DIR = Path(__file__).parent / "static"


def ensure_plotly_js() -> bool:
    """Put plotly.js into `STATIC_DIR` unless the same file is there; False when it cannot be written."""
    target = STATIC_DIR / PLOTLY_JS.name
    try:
        if not target.is_file() or target.stat().st_size != PLOTLY_JS.stat().st_size:
            STATIC_DIR.mkdir(exist_ok=True)
            partial = target.with_suffix(f".{os.getpid()}.part")
            shutil.copyfile(PLOTLY_JS, partial)
            os.replace(partial, target)  # atomic: another server starting at once sees the old file or the new
    except OSError:
        return False
    return True
