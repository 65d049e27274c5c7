"""Components: what Istio runs in this cluster, how the parts talk, and what each one is for."""
from __future__ import annotations

import streamlit as st

from app import meshgraph, safe, traffic, ui
from explain import render as explain_render
from explain import report as explain
from telemetry.evidence import edge_row, workload_of

inv = ui.inventory()


@st.cache_resource(show_spinner=False, max_entries=4)  # shared, never changed: not copied on each hit
def _overview(reading: tuple[str, int]) -> tuple[explain.Graph, list[str], dict[str, tuple[str, ...]]]:
    """The communication graph, the component ids present and the namespaces each one runs in, once per reading
    of the source."""
    inv = ui.load(reading[0])
    report = explain.explain(inv)
    namespaces = {cid: tuple(sorted({i.namespace for i in found})) for cid, found in inv.components_by_id.items()}
    return report.graph, [s.component.id for s in report.summaries], namespaces


def _show(report: explain.Report) -> None:
    """The report's sections under this page's headings, what the cluster says in them escaped (app/safe.py): a
    pod's annotations and labels are anyone's who can create a pod. The graph is already drawn above."""
    for heading, secs in explain_render.sections(report):
        st.markdown(f"### {safe.md(heading)}")
        for s in secs:
            st.markdown(f"**{safe.md(s.title)}**")
            if s.code:
                st.code("\n".join(map(safe.message, s.lines)), language="sh", wrap_lines=True)  # a line each
            elif s.title == "Docs":  # the catalog's own links
                st.markdown("\n".join(f"- {line}" for line in s.lines))
            else:
                st.markdown("\n".join(f"- {safe.md(line, safe.MESSAGE)}" for line in s.lines))


st.title("Components")
graph, components, namespaces_of = _overview(ui.reading())
if not components:
    st.info("No Istio component in this source: install Istio, or choose another source on the Settings page.")
    st.stop()

st.caption("What Istio runs here, one band per plane; an arrow is who opens connections to whom, labelled with the "
           "port and protocol (hover for what it carries). Scroll to zoom, drag to pan; a component under the "
           "pointer lights up its connections.")
f1, f2, f3 = st.columns([3, 3, 1], vertical_alignment="bottom")
planes = f1.pills("Planes", list(meshgraph.PLANES), format_func=meshgraph.PLANES.get, selection_mode="multi",
                  default=list(meshgraph.PLANES), key="graph_planes",
                  help="A connection is shown when both its ends are in the chosen planes (or outside Istio).")
namespaces = f2.multiselect("Namespaces", sorted({ns for found in namespaces_of.values() for ns in found}),
                            placeholder="all namespaces", key="graph_namespaces",
                            help="Only the connections of components with pods in these namespaces.")
shown = meshgraph.visible(graph, planes, namespaces or None, namespaces_of)
f3.download_button("DOT", explain_render.to_dot(shown), "meshstep-components.dot", mime="text/vnd.graphviz",
                   icon=":material/download:", help="The graph as shown, for Graphviz: dot -Tsvg > mesh.svg "
                                                    "(the DOT the explain command gives).")
if shown.nodes:
    # Its script runs in the page: every text in it is escaped (names come from the cluster), nothing is fetched.
    st.html(meshgraph.html_widget(shown), unsafe_allow_javascript=True)
else:
    st.caption("Nothing of Istio in those planes and namespaces.")
with st.expander(f"The {len(shown.edges)} connections as a table"):
    st.dataframe(safe.cells({"from": e.source, "to": e.target, "port": e.port, "protocol": e.protocol,
                             "carries": e.purpose} for e in shown.edges), hide_index=True, width="stretch",
                 column_config={"carries": st.column_config.TextColumn(width="large")})

st.subheader("Explain")
pods = sorted(f"{p.namespace}/{p.name}" for p in inv.pods)
name = st.selectbox("A component, or any pod", components + pods,
                    help="A component id explains the role and every instance; a pod explains whether it is in "
                         "the mesh and how to debug it.")
with ui.errors():
    report = explain.explain(inv, name)
    _show(report)
    observed = traffic.observed()  # the Settings page's telemetry, if any
    wanted = {w for s in report.subjects if (w := workload_of(inv, s.ref))}
    if observed is not None and wanted:
        st.markdown(f"#### Observed traffic\n{safe.md(observed.window_text)}; mTLS or plaintext per edge.")
        st.dataframe(safe.cells(edge_row(e) for w in sorted(wanted) for e in observed.of_workload(*w)),
                     hide_index=True)
