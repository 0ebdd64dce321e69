"""Entry point: `streamlit run dashboard/app.py` (watch fixed-point networks settle and train, live)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts dashboard/ on the path, not the repository
    sys.path.insert(0, str(ROOT))

from dashboard.cpu_threads import start_jax_on_one_core  # noqa: E402

start_jax_on_one_core()  # training's compute threads on one core, the page keeps the others (no-op after the first run)

import streamlit as st  # noqa: E402

from dashboard import page  # noqa: E402

st.set_page_config(page_title="twnn · fixed-point networks, live", page_icon="🌀", layout="wide")
page.main()
