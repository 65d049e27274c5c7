"""The meshstep web app: `meshstep ui` runs this file with `streamlit run`. One page per question."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import access, safe, ui

# Not "pages/": Streamlit treats a pages/ directory beside the main script as an old-style multipage app, and a
# server's first session that opens /inventory (a bookmark) would run that file alone, without this navigation.
VIEWS = Path(__file__).parent / "views"
# Icons are Material Symbols (bundled with Streamlit): emoji need a font the viewer's machine may not have. Not the
# page icon: Streamlit fetches a Material favicon from fonts.gstatic.com, and the app asks no host but its own.
ICON = Path(__file__).parent / "icon.svg"

def main() -> None:
    """The app: its pages, the sidebar, and the page asked for."""
    st.set_page_config(page_title="meshstep", page_icon=str(ICON), layout="wide")
    # Before anything is read or shown: signed in (when sign-in is configured) with at least the viewer role.
    access.gate_page()

    pages = st.navigation([
        st.Page(VIEWS / "overview.py", title="Overview", icon=":material/explore:", default=True),
        st.Page(VIEWS / "inventory.py", title="Inventory", icon=":material/list_alt:"),
        st.Page(VIEWS / "fleet.py", title="Fleet", icon=":material/lan:"),
        st.Page(VIEWS / "plan.py", title="Plan", icon=":material/stairs:"),
        st.Page(VIEWS / "features.py", title="Features", icon=":material/toggle_on:"),
        st.Page(VIEWS / "components.py", title="Components", icon=":material/hub:"),
        st.Page(VIEWS / "audit.py", title="Audit", icon=":material/history:"),
        st.Page(VIEWS / "settings.py", title="Settings", icon=":material/settings:"),
    ])

    with st.sidebar:
        st.markdown(f"**Source:** {safe.code(ui.source())}")
        if st.button("Re-read the cluster", icon=":material/refresh:",
                     help="Read the source again instead of the cached inventory."):
            ui.refresh()
        ui.identity_sidebar()

    try:
        ui.run_page(pages)
    finally:  # st.stop and page switches end a run too
        ui.SERVED.set()


# Streamlit runs this file as __main__. A process the app starts (the Fleet page reads each cluster in one, from
# multiprocessing's fork server) runs the parent's main file again first, as __mp_main__: there it is no page, and
# drawing one printed Streamlit's bare-mode warnings on the server's terminal.
if __name__ == "__main__":
    main()
