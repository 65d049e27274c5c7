"""Inventory: what is running, and what of it is in the mesh?"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import ui
from planner import explain
from planner.inventory import Inventory

inv = ui.inventory()


@st.cache_data(show_spinner=False, max_entries=4)
def _tables(src: str) -> dict[str, pd.DataFrame]:
    """The four tables of one source, built once: a 10,000-pod cluster is not re-tabulated on every click."""
    inv: Inventory = ui.load(src)
    pods = []
    for p in inv.pods:
        mesh = explain.mesh_status(inv, p.spec, p.namespace, p)
        pods.append({"namespace": p.namespace, "pod": p.name, "workload": f"{p.workload_kind}/{p.workload_name}",
                     "phase": p.phase, "ready": p.ready, "in mesh": mesh.in_mesh, "mode": mesh.mode,
                     "proxy": p.sidecar.version if p.sidecar else None, "node": p.node, "why": mesh.reason})
    pod_frame = pd.DataFrame(pods)
    meshed = pod_frame.groupby("namespace")["in mesh"].sum() if pods else pd.Series(dtype=int)
    namespaces = [r | {"pods in mesh": int(meshed.get(r["name"], 0))} for r in inv.namespace_rows()]
    in_mesh = {(p.namespace, p.name): m for p, m in zip(inv.pods, pod_frame["in mesh"] if pods else ())}
    workloads = [{"namespace": w.namespace, "kind": w.kind, "workload": w.name, "pods": len(w.pods),
                  "pods in mesh": sum(in_mesh.get((w.namespace, n), False) for n in w.pods)}
                 for w in inv.workloads]
    services = []
    for s in inv.services:
        selected = inv.pods_of_service(s)
        services.append({"namespace": s.namespace, "service": s.name, "type": s.type,
                         "ports": ", ".join(f"{p.port}/{p.istio_protocol}" for p in s.ports),
                         "pods": len(selected), "pods in mesh": sum(in_mesh[(p.namespace, p.name)] for p in selected)})
    return {"Namespaces": pd.DataFrame(namespaces).rename(columns={"name": "namespace",
                                                                    "pods_with_sidecar": "pods with a sidecar"}),
            "Workloads": pd.DataFrame(workloads), "Pods": pod_frame, "Services": pd.DataFrame(services)}


st.title("Inventory")
st.caption(f"{inv.source}: {len(inv.namespaces)} namespaces, {len(inv.workloads)} workloads, {len(inv.pods)} pods, "
           f"{len(inv.services)} services. Click a column header to sort.")
tables = _tables(ui.source())

f1, f2, f3 = st.columns([2, 2, 1])
chosen = f1.multiselect("Namespaces", inv.namespace_names(), placeholder="all namespaces")
search = f2.text_input("Name contains", placeholder="filter by name")
mesh_only = f3.radio("Mesh status", ["all", "in the mesh", "outside"], horizontal=False)

for tab, (title, frame) in zip(st.tabs(list(tables)), tables.items()):
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
