"""Overview: where does this cluster stand with Istio?"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import ui
from planner import revisions
from planner.errors import MeshstepError
from state import planning
from state.drift import OBSERVED_NOT_RECORDED, recorded_and_drift

inv = ui.inventory()
store = ui.store()
cluster = ui.cluster(inv)
report = ui.report()
observed = ui.observations()
status = recorded_and_drift(store, cluster, observed)

st.title(f"Cluster {cluster}")
istio = report["istio"]
if istio["installed"]:
    names = ", ".join(r["revision"] for r in report["control_plane"]["revisions"]) or "none running"
    headline = revisions.headline(inv)
    st.caption(f"{headline} · control plane revisions: {names} · root namespace {istio['root_namespace']}")
else:
    st.warning("Istio is not installed in this cluster: the plan's first stage says how to install it.")

upgrade = revisions.upgrade(inv)
history = store.inventory_history(cluster)
mesh = inv.mesh_summary
c1, c2, c3, c4 = st.columns(4)
c1.metric("Istio version", f"{upgrade.from_version} → {upgrade.to_version}" if upgrade is not None
          else istio["version"] or "—", help="During an upgrade: the oldest and the newest revision's versions.")
c2.metric("Namespaces in the mesh", f"{mesh['namespaces_in_mesh']} / {mesh['namespaces_total']}",
          help="Namespaces with at least one pod in the mesh (sidecar or ambient), out of all namespaces.")
c3.metric("Pods in the mesh", f"{mesh['pods_in_mesh']} / {mesh['pods_total']}")
c4.metric("Features observed", len(observed), help="Feature × scope pairs that detection finds on in the cluster.")

if upgrade is not None:  # two revisions side by side: how far the move from the old one has gone
    st.subheader(f"Upgrade {upgrade.from_version or upgrade.from_revision} → "
                 f"{upgrade.to_version or upgrade.to_revision}")
    st.progress(upgrade.done / len(upgrade.namespaces) if upgrade.namespaces else 1.0,
                text=f"revision {upgrade.from_revision} → {upgrade.to_revision}: {upgrade.done} of "
                     f"{len(upgrade.namespaces)} namespaces done · default tag on {upgrade.default_tag or 'none'}")
    st.dataframe(pd.DataFrame([n.to_json() for n in upgrade.namespaces]), hide_index=True, width="stretch",
                 column_config={"injects": st.column_config.TextColumn(help="The revision its label resolves to"),
                                "on_new": st.column_config.NumberColumn(help="Proxies on the new revision"),
                                "on_old": st.column_config.NumberColumn(help="Proxies on an older revision")})
    st.caption("`meshstep plan new --template upgrade` walks the rest, one gated stage at a time.")

left, right = st.columns([3, 2])
with left:
    st.subheader("Plan")
    try:
        plan = planning.find_plan(store, cluster)
    except MeshstepError:
        st.info("No active plan for this cluster yet.")
        st.page_link("views/plan.py", label="Make a plan", icon=":material/stairs:")
    else:
        stage = planning.current_stage(plan)
        done = sum(s.status == "done" for s in plan.stages)
        st.progress(done / len(plan.stages) if plan.stages else 1.0,
                    text=f"**{plan.name}**: {done} of {len(plan.stages)} stages done")
        if stage is not None:
            st.markdown(f"Current stage **{stage.order}. {stage.title}** — `{stage.status}`")
        st.page_link("views/plan.py", label="Open the plan", icon=":material/stairs:")

    st.subheader("Features: observed and recorded")
    recorded = {(f["feature"], f["scope"]): f["state"] for f in status["recorded"]}
    seen = {(o.feature, o.scope) for o in observed}
    drifting = {(d["feature"], d["scope"]) for d in status["drift"]}
    rows = [{"feature": f, "scope": s, "observed": (f, s) in seen, "recorded": recorded.get((f, s), "—"),
             "drift": (f, s) in drifting} for f, s in sorted(seen | set(recorded))]
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                     column_config={"observed": st.column_config.CheckboxColumn(help="Detection finds it on"),
                                    "recorded": st.column_config.TextColumn(help="The flag recorded for it"),
                                    "drift": st.column_config.CheckboxColumn(help="Recorded and observed disagree")})
    else:
        st.caption("Nothing observed or recorded yet.")

with right:
    st.subheader("Drift")
    drift = status["drift"]
    if not drift:
        st.success("No drift: what is recorded is what the cluster shows.", icon=":material/check_circle:")
    else:
        kinds = pd.Series([d["kind"] for d in drift]).value_counts()
        st.warning(" · ".join(f"**{n}** {kind}" for kind, n in kinds.items()), icon=":material/warning:")
        if OBSERVED_NOT_RECORDED in kinds:
            st.caption("*Observed, not recorded*: on in the cluster before anyone recorded a flag for it. Record "
                       "it on the Features page (state **on**) once the team owns it.")
        frame = pd.DataFrame([{"feature": d["feature"], "scope": d["scope"], "kind": d["kind"],
                               "detail": d["detail"]} for d in drift])
        if set(kinds.index) == {OBSERVED_NOT_RECORDED}:  # the caption above says it all: no detail to add
            frame = frame.drop(columns="detail")
        st.dataframe(frame, hide_index=True, width="stretch")
        st.page_link("views/features.py", label="Record flags on the Features page", icon=":material/toggle_on:")

    st.subheader("Adoption over time")
    if len(history) > 1:
        chart = pd.DataFrame([{"taken at": h.taken_at, "pods in the mesh": h.pods_in_mesh,
                               "namespaces in the mesh": h.namespaces_in_mesh} for h in history]).set_index("taken at")
        st.line_chart(chart)
    else:
        st.caption("The chart grows as the app reads this cluster: a point when adoption changed, else at most one "
                   "an hour.")
    if history:
        st.caption(f"{len(history)} reading(s) recorded, the last at {history[-1].taken_at:%Y-%m-%d %H:%M} UTC.")
