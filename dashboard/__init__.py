"""The Streamlit dashboard, installed as the package `twnn_dashboard` (the repository's `dashboard/` folder).

Start it with `twnn dashboard`, or `streamlit run dashboard/app.py` in a checkout; app.py is the script
Streamlit runs, the other modules are the page, its controls, panels and the session's trainer.
"""
