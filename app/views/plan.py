"""Plan: what is the next step, is it safe, and what do I apply?"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import findings, ui
from planner import plan as planner
from planner.errors import MeshstepError
from state import planning

inv = ui.inventory()
store = ui.store()
cluster = ui.cluster(inv)

# What the Advance button does from each status (planning.advance decides; this only names the step).
ADVANCE_LABELS = {"planned": "Check the gate", "blocked": "Check the gate again", "rolled_back": "Check the gate",
                  "ready": "I applied it: mark applied", "applied": "Verify on the cluster", "verified": "Mark done"}
ADVANCE_HELP = {
    "planned": "Runs the gate's checks on the cluster as it is now; when they pass the stage becomes ready.",
    "blocked": "Runs the gate's checks again, once you have fixed what they found.",
    "rolled_back": "Runs the gate's checks again before the stage is retried.",
    "ready": "Apply the YAML (and run the commands) above on the cluster, then record it here: the stage's flags "
             "become 'enabling'.",
    "applied": "Reads the cluster again and checks that every feature of the stage is on and that no new analysis "
               "error appeared.",
    "verified": "Closes the stage; the next one becomes current.",
}
LIFECYCLE = ("planned", "ready", "applied", "verified", "done")

st.title("Plan")
ui.show_flash()

try:
    plan = planning.find_plan(store, cluster)
except MeshstepError:
    plan = None

if plan is None:
    st.info(f"No active plan for **{cluster}**. Make one from a template: stages already on in the cluster start "
            "as done.")
    with st.form("new_plan"):
        template = st.selectbox("Template", list(planner.TEMPLATES),
                                help="routing-first: injection and traffic management before mTLS; "
                                     "security-first: mTLS early; custom: start empty and add stages with the CLI.")
        namespaces = st.multiselect("Namespaces", inv.namespace_names(), default=planner.default_namespaces(inv),
                                    help="The application namespaces the plan brings into the mesh.")
        name = st.text_input("Name", placeholder="the template's name")
        if st.form_submit_button("Create the plan", type="primary") and (actor := ui.require_actor()):
            with ui.errors("Could not create the plan"):
                created = planning.create(store, cluster, inv, template, namespaces or None, name or None, actor)
                ui.flash(f"Plan **{created.name}** created with {len(created.stages)} stages.")
                st.rerun()
    st.stop()

done = sum(s.status == "done" for s in plan.stages)
st.caption(f"Plan **{plan.name}** ({plan.template}) for {cluster} · {done} of {len(plan.stages)} stages done · "
           f"created by {plan.created_by}")

try:
    view = planning.next_view(plan, inv)
except MeshstepError as e:  # the stage's config cannot be rendered for this cluster (the message says why)
    view, failing = None, planning.current_stage(plan)
    st.error(f"Stage {failing.order} ({failing.title}) cannot be prepared for this cluster: {e}\n\nFix the cluster "
             "as the message says and press **Re-read the cluster**, or roll the plan back below.")
if view is None:
    if planning.current_stage(plan) is None:
        st.success("The plan is complete: every stage is done.", icon=":material/celebration:")
else:
    stage = view.stage
    st.header(f"Stage {stage.order}: {stage.title}")
    steps = [f"**:blue-background[{x}]**" if x == stage.status else x for x in LIFECYCLE]
    if stage.status not in LIFECYCLE:
        steps[0] = f"**:orange-background[{stage.status}]**"
    st.markdown(" → ".join(steps))
    st.markdown(f"**Goal:** {stage.goal}")
    if stage.override_reason:
        st.caption(f"Gate overridden: {stage.override_reason}")

    gate_col, yaml_col = st.columns([2, 3])
    with gate_col:
        st.subheader("Gate: " + (":green[:material/check_circle: passes]" if view.gate.passed
                                 else ":red[:material/block: blocked]"))
        findings.show(view.gate.messages, none="Every check passes.")
        if view.config.notes:
            st.subheader("Run")
            st.code("\n".join(view.config.notes), language="sh", wrap_lines=True)
    with yaml_col:
        st.subheader("Apply")
        if view.config.apply_yaml:
            st.code(view.config.apply_yaml, language="yaml")
            st.download_button("Download YAML", view.config.apply_yaml, f"stage-{stage.order}.yaml",
                               mime="application/yaml", icon=":material/download:")
            with st.expander("Rollback YAML"):
                st.code(view.config.rollback_yaml or "# nothing to undo", language="yaml")
        else:
            st.info("Nothing to apply: this stage only checks.")

    st.divider()
    needs_override = stage.status in ("planned", "blocked", "rolled_back") and not view.gate.passed
    with st.form("advance", border=False):
        nothing = stage.status == "ready" and not view.config.apply_yaml and not view.config.notes
        st.caption("Nothing to apply: record the stage as applied to go on to its verification." if nothing
                   else ADVANCE_HELP.get(stage.status, ""))
        override = st.text_input("Override reason", help="Go past the failing gate anyway; the reason is audited.",
                                 placeholder="why it is safe to go on anyway") if needs_override else None
        if st.form_submit_button(ADVANCE_LABELS.get(stage.status, "Advance"), type="primary",
                                 icon=":material/arrow_forward:") and (actor := ui.require_actor()):
            with ui.errors("Not advanced"):
                moved = planning.advance(store, plan, inv, actor, override or None)
                ui.flash(f"Stage {moved.order} is now **{moved.status}**.")
                st.rerun()

if (target := planning.rollback_target(plan)) is not None:
    with st.expander(f"Roll back stage {target.order}: {target.title}", icon=":material/undo:"), \
            st.form("rollback", border=False):
        st.caption("Its flags go back to what they were before it; you get the YAML that undoes it on the cluster.")
        reason = st.text_input("Rollback reason", help="Kept in the audit trail.")
        if st.form_submit_button("Roll back") and (actor := ui.require_actor()):
            if not reason:
                st.error("Say why you roll back: the reason is kept in the audit trail.")
            else:
                with ui.errors("Not rolled back"):
                    rolled, undo = planning.rollback(store, plan, inv, actor, reason)
                    st.session_state["rollback_yaml"] = undo
                    ui.flash(f"Stage {rolled.order} rolled back: apply the YAML below to undo it.", "warning")
                    st.rerun()

if undo_yaml := st.session_state.pop("rollback_yaml", None):
    st.subheader("Apply this to undo the stage")
    st.code(undo_yaml, language="yaml")

st.subheader("Stages")
st.dataframe(pd.DataFrame([{"": r["now"], "stage": r["order"], "title": r["title"], "status": r["status"],
                            "features": ", ".join(r["features"]), "scope": ", ".join(r["scope"])}
                           for r in planning.stage_rows(plan)]),
             hide_index=True, width="stretch", height=38 + 35 * len(plan.stages))
