"""Audit: who changed what, when and why — and is the trail intact?"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import ui
from state import audit

store = ui.store()
events = store.audit_events()

st.title("Audit trail")
st.caption(f"{len(events)} events in {store.url}. Each event is chained to the one before it by a hash, so an "
           "edited or deleted event breaks the chain.")

bar = st.container(horizontal=True)
verify_clicked = bar.button("Verify the chain", type="primary", icon=":material/lock:")
# Built when clicked, not on every rerun (the report re-verifies the whole chain).
observed = {ui.cluster(ui.inventory()): ui.observations()}
bar.download_button("Markdown report", lambda: audit.export_markdown(store, observed=observed), "meshstep-audit.md",
                    mime="text/markdown", icon=":material/download:")
bar.download_button("CSV", lambda: audit.export_csv(events), "meshstep-audit.csv", mime="text/csv",
                    icon=":material/download:")
bar.download_button("JSON", lambda: audit.export_json(events), "meshstep-audit.json", mime="application/json",
                    icon=":material/download:")
if verify_clicked:
    broken = audit.verify(store)
    if broken:
        st.error(f"The audit chain is broken: {broken}. Restore the database from a backup, or keep this report as "
                 "evidence of the tampering.", icon=":material/gpp_bad:")
    else:
        st.success(f"The audit chain is intact: {len(events)} events verified.", icon=":material/verified:")

if events:
    frame = pd.DataFrame([{"seq": e.seq, "at": e.at, "actor": e.actor, "action": e.action, "target": e.target,
                           "reason": e.reason} for e in reversed(events)])
    actions = st.multiselect("Actions", sorted(frame["action"].unique()), placeholder="all actions")
    shown = frame[frame["action"].isin(actions)] if actions else frame
    st.dataframe(shown, hide_index=True, width="stretch",
                 column_config={"at": st.column_config.DatetimeColumn("at (UTC)", format="YYYY-MM-DD HH:mm:ss")})
else:
    st.info("Nothing recorded yet: changes made here or with the CLI appear in this trail.")
