"""The meshstep web app: `meshstep ui` runs this file with `streamlit run`. One page per question."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import ui

PAGES = Path(__file__).parent / "pages"

st.set_page_config(page_title="meshstep", page_icon="⛵", layout="wide")

pages = st.navigation([
    st.Page(PAGES / "overview.py", title="Overview", icon="🧭", default=True),
    st.Page(PAGES / "inventory.py", title="Inventory", icon="📋"),
    st.Page(PAGES / "plan.py", title="Plan", icon="🪜"),
    st.Page(PAGES / "features.py", title="Features", icon="🎛️"),
    st.Page(PAGES / "components.py", title="Components", icon="🕸️"),
    st.Page(PAGES / "audit.py", title="Audit", icon="📜"),
    st.Page(PAGES / "settings.py", title="Settings", icon="⚙️"),
])

with st.sidebar:
    st.markdown(f"**Source:** `{ui.source()}`")
    if st.button("Re-read the cluster", icon="🔄", help="Read the source again instead of the cached inventory."):
        ui.refresh()
    ui.identity_sidebar()

ui.run_page(pages)
