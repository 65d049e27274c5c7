"""The meshstep web app: `meshstep ui` runs this file with `streamlit run`. One page per question."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import ui

PAGES = Path(__file__).parent / "pages"
# Icons are Material Symbols (bundled with Streamlit): emoji need a font the viewer's machine may not have.

st.set_page_config(page_title="meshstep", page_icon=":material/sailing:", layout="wide")

pages = st.navigation([
    st.Page(PAGES / "overview.py", title="Overview", icon=":material/explore:", default=True),
    st.Page(PAGES / "inventory.py", title="Inventory", icon=":material/list_alt:"),
    st.Page(PAGES / "plan.py", title="Plan", icon=":material/stairs:"),
    st.Page(PAGES / "features.py", title="Features", icon=":material/toggle_on:"),
    st.Page(PAGES / "components.py", title="Components", icon=":material/hub:"),
    st.Page(PAGES / "audit.py", title="Audit", icon=":material/history:"),
    st.Page(PAGES / "settings.py", title="Settings", icon=":material/settings:"),
])

with st.sidebar:
    st.markdown(f"**Source:** `{ui.source()}`")
    if st.button("Re-read the cluster", icon=":material/refresh:", help="Read the source again instead of the cached inventory."):
        ui.refresh()
    ui.identity_sidebar()

ui.run_page(pages)
