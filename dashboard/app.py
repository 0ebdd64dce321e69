"""Entry point: `twnn dashboard`, or `streamlit run dashboard/app.py` (watch fixed-point networks settle and
train, live). Streamlit runs this file as a script; everything else is imported from the installed package
`twnn_dashboard` (this folder, mapped by pyproject.toml; `pip install -e .` in a checkout)."""

from twnn_dashboard.cpu_threads import start_jax_on_one_core
from twnn_jax.compile_cache import enable_compile_cache

enable_compile_cache()  # compiled programs from earlier starts load from disk (TWNN_COMPILE_CACHE moves or disables it)
start_jax_on_one_core()  # training's compute threads on one core, the page keeps the others (no-op after the first run)

import streamlit as st  # noqa: E402
import streamlit.delta_generator  # noqa: E402

# Streamlit checks once per process, at the first element a page draws, whether it was started from a Python
# REPL: `inspect.stack()`, which resolves the path of every imported module (JAX and SciPy make that ~1 s of
# the first page here). This script runs under `streamlit run` (or `twnn dashboard`), never from a REPL.
streamlit.delta_generator._use_warning_has_been_displayed = True

from twnn_dashboard import page  # noqa: E402

st.set_page_config(page_title="twnn · fixed-point networks, live", page_icon="🌀", layout="wide")
page.main()
