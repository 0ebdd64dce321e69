"""Entry point: `streamlit run dashboard/app.py` (watch fixed-point networks settle and train, live)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts dashboard/ on the path, not the repository
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import page  # noqa: E402

st.set_page_config(page_title="twnn · fixed-point networks, live", page_icon="🌀", layout="wide")
page.main()
