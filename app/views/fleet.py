"""Fleet: where does each of our clusters stand with Istio?"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import safe, ui
from app.commands import cell
from cluster import revisions
from cluster.errors import MeshstepError
from cluster.sources import default_source
from planner import fleet

store = ui.store()


@st.cache_resource(show_spinner=False, max_entries=4, ttl=300)
def _read(members: tuple[fleet.Member, ...], deadline: float, reading: int) -> list[fleet.ClusterStatus]:
    """The fleet's readings, shared by every session until **Re-read the cluster** (or five minutes). A source the
    team's database records is read wherever it is; one a visitor typed only under the allowed directories."""
    recorded = {m.source for m in fleet.known(store)}
    return fleet.read_all(members, deadline, lambda source: None if source in recorded else ui.roots_for(source))


st.title("Fleet")
st.caption("Each cluster is read at once, with its own deadline; one that cannot be read is shown as failed, with "
           "why. Records (flags, plans) come from the team's database, by cluster name.")
known = fleet.known(store)
default = "\n".join(f"{m.name}={m.source}" for m in known) or default_source()
with st.form("fleet"):
    text = st.text_area("Clusters", default, help="One per line (or comma-separated): NAME=SOURCE — a kubeconfig "
                        "`context:NAME`, a snapshot path, or `demo`. Records are kept under NAME.")
    deadline = st.number_input("Deadline per cluster (seconds)", min_value=1.0, value=fleet.DEADLINE, step=5.0)
    st.form_submit_button("Read the fleet", icon=":material/travel_explore:")

try:
    members = tuple(fleet.parse(text))
except MeshstepError as e:
    st.error(safe.md_message(e))
    st.stop()
if not members:
    st.info("Name at least one cluster above.")
    st.stop()

with st.spinner(f"Reading {len(members)} cluster(s)…"):
    rows = fleet.with_records(_read(members, float(deadline), ui.reading()[1]), store)

ok = [r for r in rows if r.ok]
c1, c2, c3, c4 = st.columns(4)
c1.metric("Clusters read", f"{len(ok)} / {len(rows)}")
c2.metric("Pods in the mesh", f"{sum(r.reading.mesh['pods_in_mesh'] for r in ok)} / "
                              f"{sum(r.reading.mesh['pods_total'] for r in ok)}")
versions = sorted({v for r in ok for v in r.reading.versions}, key=revisions.version_key)
c3.metric("Istio versions", safe.shown(", ".join(versions)) or "—",
          help="Every version an istiod revision runs in the fleet (two in a cluster while it upgrades)")
c4.metric("Clusters drifting", sum(bool(r.drift) for r in ok), help="Recorded and observed disagree")

# As `meshstep fleet` prints it: "-" where a cluster has none (or could not be read).
st.dataframe(pd.DataFrame([{k: cell(v) for k, v in r.row().items()} for r in rows]), hide_index=True,
             width="stretch",
             column_config={"namespaces": st.column_config.TextColumn(help="In the mesh / all"),
                            "pods": st.column_config.TextColumn(help="In the mesh / all"),
                            "observed": st.column_config.TextColumn(help="Features detection finds on"),
                            "recorded": st.column_config.TextColumn(help="Flags recorded on"),
                            "drift": st.column_config.TextColumn(help="Recorded and observed disagree")})
for r in rows:
    if not r.ok:
        st.error(f"**{safe.md(r.name)}** ({safe.code(r.source)}) could not be read: {safe.md_message(r.error)}",
                 icon=":material/cloud_off:")
for r in ok:
    if r.drift:
        with st.expander(f"{safe.md(r.name)}: {len(r.drift)} drift"):
            st.dataframe(pd.DataFrame(safe.cells({"feature": d.feature, "scope": d.scope, "kind": d.kind,
                                                  "detail": d.detail} for d in r.drift)),
                         hide_index=True, width="stretch")
