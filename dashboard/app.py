"""Entry point: `twnn dashboard`, or `streamlit run dashboard/app.py` (watch fixed-point networks settle and
train, live). Streamlit runs this file as a script; everything else is imported from the installed package
`twnn_dashboard` (this folder, mapped by pyproject.toml; `pip install -e .` in a checkout)."""

from twnn_dashboard.cpu_threads import start_jax_on_one_core
from twnn_jax.compile_cache import enable_compile_cache

enable_compile_cache()  # compiled programs from earlier starts load from disk (TWNN_COMPILE_CACHE moves or disables it)
start_jax_on_one_core()  # training's compute threads on one core, the page keeps the others (no-op after the first run)

import streamlit as st  # noqa: E402

from twnn_dashboard import page  # noqa: E402

st.set_page_config(page_title="twnn · fixed-point networks, live", page_icon="🌀", layout="wide")
page.main()
