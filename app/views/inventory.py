"""Inventory: what is running, and what of it is in the mesh?"""
from __future__ import annotations

import streamlit as st

from app import ui

inv = ui.inventory()


st.title("Inventory")
st.caption(f"{inv.source}: {len(inv.namespaces)} namespaces, {len(inv.workloads)} workloads, {len(inv.pods)} pods, "
           f"{len(inv.services)} services. Click a column header to sort.")
tables = ui.inventory_tables()

f1, f2, f3 = st.columns([2, 2, 1])
chosen = f1.multiselect("Namespaces", inv.namespace_names(), placeholder="all namespaces")
search = f2.text_input("Name contains", placeholder="filter by name")
mesh_only = f3.radio("Mesh status", ["all", "in the mesh", "outside"], horizontal=False)

# Only the open tab's table is sent to the browser: the four of a 10,000-pod cluster are megabytes to draw.
for tab, (title, frame) in zip(st.tabs(list(tables), key="inventory_tab", on_change="rerun"), tables.items()):
    if not tab.open:
        continue
    with tab:
        if frame.empty:
            st.caption(f"No {title.lower()} in this source.")
            continue
        shown = frame
        if chosen:
            shown = shown[shown["namespace"].isin(chosen)]
        if search:
            shown = shown[shown.iloc[:, 1].astype(str).str.contains(search, case=False, regex=False)]
        if mesh_only != "all":
            # A namespace or workload is in the mesh when any of its pods is; a pod when it is.
            meshed = shown["in mesh"] if "in mesh" in shown else shown["pods in mesh"] > 0
            shown = shown[meshed if mesh_only == "in the mesh" else ~meshed]
        st.dataframe(shown, hide_index=True, width="stretch")
        st.caption(f"{len(shown)} of {len(frame)} {title.lower()}")
