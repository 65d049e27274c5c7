"""The Plan page's approvals: where a ready stage stands with its cluster's policy (approvals of its YAML, change
windows), approve or reject it as an approver, and the policy itself, changed by an admin."""
from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from app import access, safe, ui
from planner import approvals
from planner.storage import PlanStore
from state.models import Plan, Stage


def show(store: PlanStore, plan: Plan, stage: Stage) -> str | None:
    """The stage's standing and the approver's form; returns why it may not be applied now (None: it may)."""
    policy = approvals.policy_of(store, plan.cluster)
    standing = approvals.stage_standing(store, plan.cluster, stage)
    refusal = approvals.apply_refusal(policy, standing, stage)
    st.subheader("Approval")
    st.caption(f"Policy for **{safe.md(plan.cluster)}**: {safe.md_message(policy.text())}. An approval holds for "
               f"this exact YAML (SHA-256 `{(approvals.yaml_hash(stage) or '')[:12]}…`); if the YAML changes it must "
               "be approved again.")
    (st.success if standing.allows else st.warning)(
        safe.md_message(standing.text()) + (f" ({standing.stale} decision(s) on an earlier YAML no longer count)"
                           if standing.stale else ""), icon=":material/how_to_reg:")
    if not policy.window_open(datetime.now(UTC)):
        st.warning(safe.md_message(refusal) if isinstance(refusal, approvals.OutsideWindow) else
                   "Outside this cluster's change windows now.", icon=":material/schedule:")
    if policy.approvers:
        with st.form("decide", border=False):
            note = st.text_input("Approval note or rejection reason", help="Kept in the audit trail.")
            approve, reject = st.columns(2)
            choice = ("approved" if approve.form_submit_button("Approve", icon=":material/thumb_up:") else
                      "rejected" if reject.form_submit_button("Reject", icon=":material/thumb_down:") else None)
            if choice and (actor := ui.require_actor(access.APPROVER, "approve or reject a stage")):
                with ui.errors("Not recorded"):
                    approvals.decide(store, plan.cluster, stage, choice, actor, note)
                    ui.flash(f"Stage {stage.order} {choice} by **{safe.md(actor)}**.")
                    st.rerun()
    return str(refusal) if refusal else None


def policy_form(store: PlanStore, cluster: str) -> None:
    """The cluster's policy, changed by an admin with a reason."""
    policy = approvals.policy_of(store, cluster)
    with st.expander(f"Approval policy for {safe.md(cluster)}: {safe.md_message(policy.text())}",
                     icon=":material/policy:"), \
            st.form("policy", border=False):
        count = st.number_input("Approvers needed", min_value=0, max_value=10, value=policy.approvers)
        others = st.checkbox("Not the requester", value=not policy.requester_may_approve,
                             help="Whoever moved the stage to ready may not approve it.")
        windows = st.text_input("Change windows", value=", ".join(w.text for w in policy.windows),
                                placeholder="e.g. mon-fri 09:00-17:00 (empty: any time)")
        zone = st.text_input("Time zone", value=policy.timezone)
        why = st.text_input("Reason for the change", help="Kept in the audit trail.")
        if st.form_submit_button("Save the policy") and (actor := ui.require_actor(access.ADMIN,
                                                                                    "change the policy")):
            with ui.errors("The policy was not changed"):
                new = approvals.Policy.make(int(count), not others,
                                            [w.strip() for w in windows.split(",") if w.strip()], zone.strip())
                approvals.set_policy(store, cluster, new, actor, why)
                ui.flash(f"Policy for **{cluster}**: {new.text()}.")
                st.rerun()
