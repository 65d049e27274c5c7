"""Audit: who changed what, when and why — and is the trail intact?"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import safe, ui
from state import audit, reports
from state.actors import how_known

store = ui.store()
events = store.audit_events()
names = reports.target_names(events)  # plan:1 → plan:1 rollout, stage:14 → stage:14 rollout #14 …

st.title("Audit trail")
st.caption(f"{len(events)} events in {safe.code(store.url)}. Each event is chained to the one before it by a "
           "hash, so an edited or deleted event breaks the chain.")

bar = st.container(horizontal=True)
verify_clicked = bar.button("Verify the chain", type="primary", icon=":material/lock:")
# Built when clicked, not on every rerun (the report re-verifies the whole chain).
observed = {ui.cluster(ui.inventory()): ui.observations()}
bar.download_button("Markdown report", lambda: reports.export_markdown(store, observed=observed, escape=safe.md),
                    "meshstep-audit.md", mime="text/markdown", icon=":material/download:")
bar.download_button("CSV", lambda: reports.export_csv(events), "meshstep-audit.csv", mime="text/csv",
                    icon=":material/download:")
bar.download_button("JSON", lambda: reports.export_json(events), "meshstep-audit.json", mime="application/json",
                    icon=":material/download:")
if verify_clicked:
    broken = audit.verify(store)
    if broken:
        st.error(f"The audit chain is broken: {safe.md_message(broken)}. Restore the database from a backup, or "
                 "keep this report as evidence of the tampering.", icon=":material/gpp_bad:")
    else:
        st.success(f"The audit chain is intact: {len(events)} events verified.", icon=":material/verified:")

if events:
    frame = pd.DataFrame(safe.cells({"seq": e.seq, "at": e.at, "actor": e.actor, "identity": how_known(e.identity),
                                     "action": e.action, "target": names.get(e.target, e.target), "reason": e.reason}
                                    for e in reversed(events)))
    actions = st.multiselect("Actions", sorted(frame["action"].unique()), placeholder="all actions")
    shown = frame[frame["action"].isin(actions)] if actions else frame
    event = st.dataframe(
        shown, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row", key="audit_table",
        height=min(600, 38 + 35 * len(shown)),
        # Sized to what they hold at 1440 px, the reason taking the rest.
        column_config={"seq": st.column_config.NumberColumn(width=50),
                       "at": st.column_config.DatetimeColumn("at (UTC)", format="YYYY-MM-DD HH:mm:ss", width=150),
                       "actor": st.column_config.TextColumn(width=100),
                       "identity": st.column_config.TextColumn(width=120),
                       "action": st.column_config.TextColumn(width=120),
                       "target": st.column_config.TextColumn(width=250),
                       "reason": st.column_config.TextColumn(width=400)})
    if event.selection.rows:  # the whole event: its reason in full, and what it changed
        e = next(e for e in events if e.seq == shown.iloc[event.selection.rows[0]]["seq"])
        target = names.get(e.target, e.target)
        st.markdown(f"**#{e.seq}** {safe.md(e.action)} on {safe.code(target)} by **{safe.md(e.actor)}** at "
                    f"{e.at:%Y-%m-%d %H:%M:%S} UTC" + (f" — {safe.md_message(e.reason)}" if e.reason else ""))
        email = (e.identity or {}).get("email")
        st.caption(f"Identity: {how_known(e.identity)}" + (f", {safe.md(email)}" if email else ""))
        before, after = st.columns(2)
        before.caption("before")
        before.json(safe.data(e.before or {}), expanded=2)
        after.caption("after")
        after.json(safe.data(e.after or {}), expanded=2)
    else:
        st.caption("Select an event to read it in full, with what it changed.")
else:
    st.info("Nothing recorded yet: changes made here or with the CLI appear in this trail.")
