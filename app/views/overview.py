"""Overview: where does this cluster stand with Istio?"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import rows as rows_
from app import safe, traffic, ui
from planner import stages
from state.drift import OBSERVED_NOT_RECORDED
from state.models import PlanMode
from telemetry.edges import count_text

LEFT_SHOWN = 10  # namespaces an upgrade has left to move, listed above the toggle that shows them all

# What the source shows, kept per content (planner.fleet.Reading): a freshly started server shows this page without
# decoding the cluster's inventory.
facts = ui.cluster_reading()
store = ui.store()
cluster = facts.source
observed = facts.observed

st.title(f"Cluster {safe.md(cluster)}")
status = ui.status(store, facts)
if facts.installed:
    names = ", ".join(facts.revisions) or "none running"
    st.caption(f"{safe.md_message(facts.headline)} · control plane revisions: {safe.md_message(names)} · root "
               f"namespace {safe.md(facts.root_namespace)}")
else:
    st.warning("Istio is not installed in this cluster: the plan's first stage says how to install it.")

upgrade = facts.upgrade
history = store.inventory_history(cluster)
mesh = facts.mesh
c1, c2, c3, c4 = st.columns(4)
c1.metric("Istio version", safe.shown(f"{upgrade.from_version} → {upgrade.to_version}" if upgrade is not None
                                       else facts.istio_version or "—"),
          help="During an upgrade: the oldest and the newest revision's versions.")
c2.metric("Namespaces in the mesh", f"{mesh['namespaces_in_mesh']} / {mesh['namespaces_total']}",
          help="Namespaces with at least one pod in the mesh (sidecar or ambient), out of all namespaces.")
c3.metric("Pods in the mesh", f"{mesh['pods_in_mesh']} / {mesh['pods_total']}")
c4.metric("Features observed", len({(o.feature, o.scope) for o in observed}),
          help="Feature × scope pairs that detection finds on in the cluster.")

if upgrade is not None:  # two revisions side by side: how far the move from the old one has gone
    st.subheader(f"Upgrade {safe.md(upgrade.from_version or upgrade.from_revision)} → "
                 f"{safe.md(upgrade.to_version or upgrade.to_revision)}")
    st.progress(upgrade.done / len(upgrade.namespaces) if upgrade.namespaces else 1.0,
                text=f"revision {safe.md(upgrade.from_revision)} → {safe.md(upgrade.to_revision)}: {upgrade.done} "
                     f"of {len(upgrade.namespaces)} namespaces done · default tag on "
                     f"{safe.md(upgrade.default_tag or 'none')}")
    # What is left to move, those part-way first; each namespace's row on demand (a grid is a second of drawing
    # for a browser that opens the app for the first time: benchmarks/app.py).
    left = sorted((n for n in upgrade.namespaces if n.state != "done"), key=lambda n: n.state != "restart pending")
    if left:
        st.markdown(safe.md_table(("namespace left", "injects", "on new", "on old", "state"),
                                  [(n.namespace, n.injects or "—", n.on_new, n.on_old, n.state)
                                   for n in left[:LEFT_SHOWN]], right={2, 3}))
        if len(left) > LEFT_SHOWN:
            st.caption(f"…and {len(left) - LEFT_SHOWN} more: every namespace below.")
    if st.toggle(f"Every namespace ({len(upgrade.namespaces)})", key="overview-upgrade-namespaces"):
        st.dataframe(pd.DataFrame(safe.cells(n.to_json() for n in upgrade.namespaces)), hide_index=True,
                     width="stretch",
                     column_config={"injects": st.column_config.TextColumn(help="The revision its label resolves to"),
                                    "on_new": st.column_config.NumberColumn(help="Proxies on the new revision"),
                                    "on_old": st.column_config.NumberColumn(help="Proxies on an older revision")})
    st.caption("A plan of the upgrade template (Plan page) walks the rest, one gated stage at a time.")

left, middle, right = st.columns(3, gap="large")
with left:
    st.subheader("Plan")
    plan = stages.latest(store, cluster)
    if plan is None:
        st.info("No plan for this cluster yet.")
        st.page_link("views/plan.py", label="Make a plan", icon=":material/stairs:")
    else:
        stage = stages.current_stage(plan)
        done = stages.done_count(plan)
        st.progress(done / len(plan.stages) if plan.stages else 1.0,
                    text=f"**{safe.md(plan.name)}**: {done} of {len(plan.stages)} stages done")
        if plan.status == "done":
            st.success(f"The last plan, **{safe.md(plan.name)}**, finished: every stage is done"
                       + (" in rehearsal." if plan.mode == PlanMode.REHEARSAL else "."),
                       icon=":material/celebration:")
        elif plan.status != "active":
            st.info(f"The last plan, **{safe.md(plan.name)}**, was {plan.status}.")
        elif stage is not None:
            st.markdown(f"Current stage **{stage.order}. {safe.md(stage.title)}** — `{stage.status}`")
        st.page_link("views/plan.py", label="Open the plan", icon=":material/stairs:")

drift = status["drift"]
kinds = pd.Series([d["kind"] for d in drift], dtype=str).value_counts()
with middle:
    st.subheader("Drift")
    if not drift:
        st.success("No drift: what is recorded is what the cluster shows.", icon=":material/check_circle:")
    else:
        st.warning(" · ".join(f"**{n}** {kind}" for kind, n in kinds.items()), icon=":material/warning:")
        if OBSERVED_NOT_RECORDED in kinds:
            st.caption("*Observed, not recorded*: on in the cluster before anyone recorded a flag for it. Record "
                       "it on the Features page (state **on**) once the team owns it.")
        st.page_link("views/features.py", label="Record flags on the Features page", icon=":material/toggle_on:")

with right:
    st.subheader("Adoption over time")
    if history:
        # Shares, so pods (thousands) and namespaces (tens) read on one axis; points, so one reading is visible.
        points = pd.DataFrame([{"taken at": h.taken_at, "share": share, "of": what, "count": f"{n} / {total}"}
                               for h in history
                               for what, n, total in (("pods", h.pods_in_mesh, h.pods_total),
                                                      ("namespaces", h.namespaces_in_mesh,
                                                       h.namespaces_total))
                               for share in [n / total if total else 0.0]])
        st.vega_lite_chart(points, {
            "mark": {"type": "line", "point": {"size": 80}},
            "encoding": {"x": {"field": "taken at", "type": "temporal", "title": None,
                               "axis": {"format": "%b %d %H:%M", "labelAngle": 0, "tickCount": 3}},
                         "y": {"field": "share", "type": "quantitative", "title": "in the mesh",
                               "axis": {"format": "%"}, "scale": {"domain": [0, 1]}},
                         "color": {"field": "of", "type": "nominal", "title": None, "legend": {"orient": "top"},
                                   "scale": {"domain": ["pods", "namespaces"], "range": ["#1f6fd1", "#e8710a"]}},
                         "tooltip": [{"field": "of"}, {"field": "count"},
                                     {"field": "taken at", "type": "temporal", "format": "%Y-%m-%d %H:%M"}]},
        }, height=220)
        st.caption(f"{len(history)} reading{'s' * (len(history) != 1)}, the last at "
                   f"{history[-1].taken_at:%Y-%m-%d %H:%M} UTC: a point is added when adoption changes, else at most "
                   "one an hour.")
    else:
        st.caption("No reading yet: the app keeps one each time adoption changes (at most one an hour otherwise).")

def _ticks(points: list) -> list[dict]:
    """Axis ticks on whole 10 minutes, half hours, hours…, whichever leaves at most seven (Vega-Lite DateTimes)."""
    first, last = points[0].at, points[-1].at
    step = 60 * next((m for m in (10, 30, 60, 120, 360, 720) if (last - first) / 60 / m <= 7), 1440)
    return [{"year": t.year, "month": t.month, "date": t.day, "hours": t.hour, "minutes": t.minute, "utc": True}
            for t in (pd.Timestamp(s, unit="s") for s in range(int(-(-first // step) * step), int(last) + 1, step))]


st.subheader("Mutual TLS over time")
with ui.errors("Could not read the telemetry"):
    if (read := traffic.mtls_share()) is None:
        st.caption("No telemetry set: mTLS share and observed traffic are not shown. Set a Prometheus URL or a "
                   "metrics file on the Settings page.")
        st.page_link("views/settings.py", label="Set the telemetry", icon=":material/settings:")
    elif not (shares := read[1]):
        st.caption(f"No requests in the last 6 hours of {safe.md(read[0])}: no mTLS share to show.")
    elif len(shares) == 1:
        [only] = shares
        st.metric("Requests in mutual TLS", f"{only.share:.1f}%",
                  help="Of the requests the destinations' sidecars served (a pod without a sidecar counts none).")
        st.caption(f"One reading only ({count_text(only.requests)} requests to "
                   f"{pd.Timestamp(only.at, unit='s'):%Y-%m-%d %H:%M} UTC, {safe.md(read[0])}): no trend to draw "
                   "yet.")
    else:
        frame = pd.DataFrame([{"at": pd.Timestamp(p.at, unit="s"), "mTLS share": p.share / 100,
                               "step to": f"{pd.Timestamp(p.at, unit='s'):%Y-%m-%d %H:%M} UTC",
                               "requests": count_text(p.requests)} for p in shares])
        st.vega_lite_chart(frame, {
            "mark": {"type": "line", "color": "#2e7d32", "point": {"color": "#2e7d32", "size": 50}},
            # The times are UTC, as the caption says (not the browser's zone).
            "encoding": {"x": {"field": "at", "type": "temporal", "title": None, "scale": {"type": "utc"},
                               "axis": {"format": "%b %d %H:%M", "labelAngle": 0,
                                        "values": _ticks(shares)}},
                         "y": {"field": "mTLS share", "type": "quantitative", "title": "requests in mTLS",
                               "axis": {"format": "%"}, "scale": {"domain": [0, 1]}},
                         "tooltip": [{"field": "step to"}, {"field": "mTLS share", "format": ".1%"},
                                     {"field": "requests"}]},
        }, height=200)
        last = shares[-1]
        st.caption(f"{last.share:.1f}% of {count_text(last.requests)} requests in mutual TLS in the step to "
                   f"{pd.Timestamp(last.at, unit='s'):%Y-%m-%d %H:%M} UTC; the rest plaintext or of unknown security. "
                   f"As the destinations' sidecars counted them, {safe.md(read[0])}.")

# One table, not three: each feature and scope once, with what detection sees, what the team recorded, and the
# drift between the two.
st.subheader("Features: observed, recorded, drift")
recorded = {(f["feature"], f["scope"]): f["state"] for f in status["recorded"]}
evidence = {(o.feature, o.scope): o.evidence for o in observed}
drifting = {(d["feature"], d["scope"]): d for d in drift}
rows = [{"feature": f, "scope": s, "observed": (f, s) in evidence, "recorded": recorded.get((f, s), "—"),
         "drift": drifting[f, s]["kind"] if (f, s) in drifting else "",
         # The caption above explains "observed, not recorded"; other kinds say what differs.
         "detail": drifting[f, s]["detail"] if (f, s) in drifting and drifting[f, s]["kind"] != OBSERVED_NOT_RECORDED
         else "",
         "evidence": "; ".join(evidence.get((f, s), ())[:2])} for f, s in sorted(set(evidence) | set(recorded))]
if rows:
    st.markdown(safe.md_table(("feature", "observed", "recorded", "drift"), rows_.feature_summary(
        evidence.keys(), recorded, {k: d["kind"] for k, d in drifting.items()})))
    if st.toggle(f"Each feature and scope ({len(rows)}), with what detection found",
                 key="overview-feature-scopes"):
        frame = pd.DataFrame(safe.cells(rows))
        if not frame["detail"].any():
            frame = frame.drop(columns="detail")
        st.dataframe(frame, hide_index=True, width="stretch",
                     column_config={"observed": st.column_config.CheckboxColumn(help="Detection finds it on",
                                                                                width="small"),
                                    "recorded": st.column_config.TextColumn(help="The flag recorded for it",
                                                                            width="small"),
                                    "drift": st.column_config.TextColumn(help="How recorded and observed disagree"),
                                    "evidence": st.column_config.TextColumn(help="What detection found",
                                                                            width="large")})
else:
    st.caption("Nothing observed or recorded yet.")

