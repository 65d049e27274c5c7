"""Components: what Istio runs in this cluster, how the parts talk, and what each one is for."""
from __future__ import annotations

from dataclasses import replace

import streamlit as st

from app import ui
from planner import explain

inv = ui.inventory()


@st.cache_data(show_spinner=False, max_entries=4)
def _overview(src: str) -> tuple[str, list[str]]:
    """The communication graph (DOT) and the component ids present, once per source."""
    report = explain.explain(ui.load(src))
    return explain.to_dot(report.graph), [s.component.id for s in report.summaries]


st.title("Components")
dot, components = _overview(ui.source())
if not components:
    st.info("No Istio component in this source: install Istio, or choose another source on the Settings page.")
    st.stop()

st.caption("Control plane, data plane and addons found in the cluster; arrows are who connects to whom, with the "
           "port and protocol.")
st.graphviz_chart(dot, width="stretch")

st.subheader("Explain")
pods = sorted(f"{p.namespace}/{p.name}" for p in inv.pods)
name = st.selectbox("A component, or any pod", components + pods,
                    help="A component id explains the role and every instance; a pod explains whether it is in "
                         "the mesh and how to debug it.")
with ui.errors():
    report = explain.explain(inv, name)
    # The graph is already drawn above; the markdown's own copy of it would repeat it as text.
    st.markdown(explain.to_markdown(replace(report, graph=explain.Graph((), ()))))
