"""Components: what Istio runs in this cluster, how the parts talk, and what each one is for."""
from __future__ import annotations

import re
from dataclasses import replace

import streamlit as st

from app import traffic, ui
from planner import explain, telemetry

inv = ui.inventory()


@st.cache_resource(show_spinner=False, max_entries=4)  # shared, never changed: not copied on each hit
def _overview(reading: tuple[str, int]) -> tuple[str, list[str]]:
    """The communication graph (DOT) and the component ids present, once per reading of the source."""
    report = explain.explain(ui.load(reading[0]))
    return explain.to_dot(report.graph), [s.component.id for s in report.summaries]


def _demoted(markdown: str) -> str:
    """The report's markdown under this page's headings: its title is the page's own, its sections go two levels
    down (a report's "# …" would otherwise be larger than the page title)."""
    lines = markdown.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    out, fenced = [], False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        out.append("##" + line if not fenced and re.match(r"#{1,4} ", line) else line)  # not a shell comment
    return "\n".join(out)


st.title("Components")
dot, components = _overview(ui.reading())
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
    text = explain.to_markdown(replace(report, graph=explain.Graph((), ())))
    st.markdown(_demoted(text))
    observed = traffic.observed()  # the Settings page's telemetry, if any
    wanted = {w for s in report.subjects if (w := telemetry.workload_of(inv, s.ref))}
    if observed is not None and wanted:
        st.markdown(f"#### Observed traffic\n{observed.window_text}; mTLS or plaintext per edge.")
        st.dataframe([telemetry.edge_row(e) for w in sorted(wanted) for e in observed.of_workload(*w)],
                     hide_index=True)
