"""Inventory: what is running, and what of it is in the mesh?"""
from __future__ import annotations

import streamlit as st

from app import safe, ui

inv = ui.inventory()


st.title("Inventory")
st.caption(f"{safe.md(inv.source)}: {len(inv.namespaces)} namespaces, {len(inv.workloads)} workloads, "
           f"{len(inv.pods)} pods, {len(inv.services)} services. Click a column header to sort; select a pod to read "
           "why it is or is not in the mesh in full.")
tables = ui.inventory_tables()

f1, f2, f3 = st.columns([2, 2, 1])
chosen = f1.multiselect("Namespaces", inv.namespace_names(), placeholder="all namespaces")
search = f2.text_input("Name contains", placeholder="filter by name")
MESH_FILTERS = ["all", "in the mesh", "outside", "Istio's own"]
mesh_only = f3.radio("Mesh status", MESH_FILTERS, horizontal=False,
                     help="Istio's own: istiod, gateways and node agents — Istio itself, not workloads to inject.")

# The pods' "why" is the column people read: wide, and first after the pod's name; the rest is narrow.
COLUMNS = {
    "Pods": {"why": st.column_config.TextColumn("why", width=620,
                                                help="Why the pod is, or is not, in the mesh (as Istio decides)"),
             # Both stay in view as the table scrolls sideways.
             "namespace": st.column_config.TextColumn("namespace", width=110, pinned=True),
             "pod": st.column_config.TextColumn("pod", pinned=True),
             "in mesh": st.column_config.CheckboxColumn("in mesh", width="small"),
             "ready": st.column_config.CheckboxColumn("ready", width="small"),
             "proxy": st.column_config.TextColumn("proxy", width="small", help="istio-proxy version"),
             "phase": st.column_config.TextColumn("phase", width="small")},
}
ORDER = {"Pods": ["namespace", "pod", "in mesh", "why", "mode", "proxy", "ready", "phase", "workload", "node"]}

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
        if mesh_only == "Istio's own":  # a pod's question only: the other tables have none of Istio's own
            shown = shown[shown["mode"] == "istio"] if "mode" in shown else shown.iloc[:0]
        elif mesh_only != "all":
            # A namespace or workload is in the mesh when any of its pods is; a pod when it is.
            meshed = shown["in mesh"] if "in mesh" in shown else shown["pods in mesh"] > 0
            if mesh_only == "outside" and "mode" in shown:
                meshed = meshed | (shown["mode"] == "istio")  # not "outside": Istio itself
            shown = shown[meshed if mesh_only == "in the mesh" else ~meshed]
        # Tall enough for a screenful of rows: the page has nothing else below it.
        event = st.dataframe(shown, hide_index=True, width="stretch", height=min(600, 38 + 35 * len(shown)),
                             column_config=COLUMNS.get(title),
                             column_order=ORDER.get(title), key=f"inventory-{title}",
                             on_select="rerun" if title == "Pods" else "ignore", selection_mode="single-row")
        st.caption(f"{len(shown)} of {len(frame)} {title.lower()}")
        if title == "Pods" and event.selection.rows:
            pod = shown.iloc[event.selection.rows[0]]
            st.info(f"**{safe.md(pod['namespace'])}/{safe.md(pod['pod'])}** — "
                    f"{'in the mesh' if pod['in mesh'] else 'not in the mesh'}: {safe.md_message(pod['why'])}\n\n"
                    "The Components page explains it in full (ports, who it talks to, how to debug it).",
                    icon=":material/info:")
