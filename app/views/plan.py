"""Plan: what is the next step, is it safe, and what do I apply?"""
from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

import planner.plan
from app import access, approval_panel, controls, findings, operate_panel, safe, traffic, ui, waves_panel
from cluster.errors import MeshstepError
from planner import export, lifecycle, moves, operate, promotion, stages
from planner.lifecycle import Event
from planner.plan import LeftOut
from planner.waves import DEFAULT as WAVES_DEFAULT
from planner.waves import WAVES_ABOVE
from state.models import PlanMode
from telemetry.edges import count_text
from telemetry.series import duration_text, window_seconds
from telemetry.verification import NOT_COMPARED, Thresholds

# What a stage's verification compared (moves.advance keeps it in the stage's record): each figure before and after.
_FIGURES = (("success_rate", "Success rate", "%", "non-5xx share of the requests served"),
            ("p99_ms", "p99 latency", "ms", "99th percentile of the request duration"),
            ("mtls_share", "mTLS share", "%", "requests in mutual TLS"),
            # an ambient stage's only (telemetry.ambient): the connections ztunnel accepted, in mutual TLS
            ("hbone_share", "HBONE share", "%", "connections ztunnel carried over HBONE (mutual TLS)"))
# What an insufficient verification is waiting for, as its lines say it.
_WAITING = ("too little traffic", "still served by sidecars")
_SAID = {"passed": ":green[:material/check_circle: no regression]", "regressed": ":red[:material/error: regressed]",
         "insufficient": ":orange[:material/help: too little traffic to judge]",
         "unavailable": ":gray[:material/remove_circle: not compared]"}
_CONFLICT = "plan_name_taken"  # the new plan's fields, kept while its name is taken
_SHOWN = "plan_shown"  # the name of the plan picked in the history


def traffic_before_after(stage) -> None:
    """A stage's verification as a chart per figure (before and after it was applied), or why there is none."""
    v = stage.record.verification
    before, after = v.get("before"), v.get("after")
    said = _SAID.get(v["status"], v["status"])
    if v["status"] == "insufficient" and (v.get("ambient") or {}).get("on_sidecars"):
        said = ":orange[:material/help: pods still on sidecars: the switch to ambient is not done]"
    st.markdown(f"**Stage {stage.order}: {safe.md(stage.title)}** — {said}")
    if before is None or after is None:
        st.info("Traffic not compared: " + safe.md_message(" ".join(line.strip() for line in v["lines"])),
                icon=":material/info:")
        return
    shown = [figure for figure in _FIGURES if figure[0] in before]
    for col, (key, title, unit, what) in zip(st.columns(len(shown)), shown):
        frame = pd.DataFrame([{"window": w, title: f[key], "requests": count_text(f["requests"]),
                               "from": f"{f['start']} to {f['end'][11:]}"}
                              for w, f in (("before", before), ("after", after)) if f[key] is not None])
        with col:
            if frame.empty:
                st.metric(title, "n/a", help=f"{what}: no requests in either window")
                continue
            y = {"field": title, "type": "quantitative", "title": unit,
                 **({"scale": {"domain": [0, 100]}} if unit == "%" else {})}
            st.vega_lite_chart(frame, {
                "title": {"text": title, "subtitle": what, "anchor": "start"},
                "encoding": {"x": {"field": "window", "type": "nominal", "sort": ["before", "after"], "title": None,
                                   "axis": {"labelAngle": 0}}, "y": y},
                # The figure written on each bar: a 0.5-point fall of the success rate is no visible bar height.
                "layer": [{"mark": {"type": "bar", "tooltip": True},
                           "encoding": {"color": {"field": "window", "type": "nominal", "legend": None,
                                                  "scale": {"domain": ["before", "after"],
                                                            "range": ["#9e9e9e", "#1f6fd1"]}}}},
                          {"mark": {"type": "text", "dy": -8, "fontSize": 13},
                           "encoding": {"text": {"field": title, "type": "quantitative",
                                                 "format": ".2f" if unit == "%" else ".0f"}}}],
            }, height=200)
    if problems := v.get("problems"):
        st.error("\n".join(f"- {safe.md_message(p)}" for p in problems), icon=":material/error:")
    if not_compared := v.get("not_compared"):
        st.info(f"Not compared: {NOT_COMPARED}:\n" + "\n".join(f"- {safe.md(call)}" for call in not_compared),
                icon=":material/info:")
    if v["status"] == "insufficient":
        st.warning(safe.md_message(next((line for line in v["lines"] if any(w in line for w in _WAITING)),
                                        v["lines"][-1])), icon=":material/help:")
    with st.expander("The comparison as verification said it"):
        st.code(safe.terminal(controls.for_app("\n".join(v["lines"]))), language=None, wrap_lines=True)


def new_plan_form(store, cluster: str, inv) -> None:
    """The form that makes a plan from a template; a name the cluster's plans already have is offered another
    name, or the deletion of the plan that has it."""
    with st.form("new_plan"):
        template = st.selectbox("Template", list(planner.plan.TEMPLATES),
                                help="routing-first: injection and traffic management before mTLS; "
                                     "security-first: mTLS early; upgrade: Istio's canary upgrade to a new istiod "
                                     "revision; custom: start empty and add stages one by one.")
        namespaces = st.multiselect("Namespaces", inv.namespace_names(), default=planner.plan.default_namespaces(inv),
                                    help="The application namespaces the plan brings into the mesh.")
        name = st.text_input("Name", placeholder="the template's name")
        waves = st.text_input("Wave sizes", placeholder=f"{WAVES_DEFAULT} above {WAVES_ABOVE} namespaces, or off",
                              help=waves_panel.HELP)
        to = st.text_input("Upgrade to", placeholder="e.g. 1.28.0 (upgrade template)",
                           help="The upgrade template on a cluster running one istiod revision: the Istio release "
                                "(x.y.z) to install as a revision beside it (named 1-<minor>) and move the mesh to. "
                                "Empty while a second revision is installed: the plan moves to it.")
        verify = st.text_input(
            "Verification thresholds", placeholder="e.g. max_success_drop=0.5, window=15m (default: "
            f"{Thresholds().text(('max_success_drop', 'max_p99_increase', 'window'))}, …)",
            help="What counts as a regression when a stage is verified against the traffic, kept with the plan: "
                 f"key=value, comma-separated, keys {', '.join(Thresholds.__dataclass_fields__)}.")
        if st.form_submit_button("Create the plan", type="primary") and (actor := ui.require_actor(
                *((access.ADMIN, "set verification thresholds") if verify.strip() else
                  (access.OPERATOR, "create a plan")))):
            wanted = {"template": template, "namespaces": namespaces, "name": name.strip() or template,
                      "verify": [x.strip() for x in verify.split(",") if x.strip()], "waves": waves.strip() or None,
                      "to": to.strip() or None}
            if stages.free_name(store, cluster, wanted["name"]) == wanted["name"]:
                _create(store, cluster, inv, wanted, actor)
            else:
                st.session_state[_CONFLICT] = wanted
    if (wanted := st.session_state.get(_CONFLICT)) is not None:
        name_conflict(store, cluster, inv, wanted)


def _create(store, cluster: str, inv, wanted: dict, actor: str) -> None:
    with ui.errors("Could not create the plan"):
        # Traffic weighs the pilot wave's choice when telemetry is set (Settings), as with the command's.
        created = stages.create(store, cluster, inv, wanted["template"], wanted["namespaces"] or None, wanted["name"],
                                actor, wanted["verify"], wanted["waves"], traffic.observed(), wanted["to"])
        st.session_state.pop(_CONFLICT, None)
        st.session_state[_SHOWN] = created.name
        ui.flash(f"Plan **{safe.md(created.name)}** created with {len(created.stages)} stages.")
        st.rerun()


def name_conflict(store, cluster: str, inv, wanted: dict) -> None:
    """The new plan's name is taken: create it under a free name, or delete the plan that has it and create it."""
    taken = next((p for p in store.list_plans(cluster) if p.name == wanted["name"]), None)
    if taken is None:
        st.session_state.pop(_CONFLICT)
        return
    other = stages.free_name(store, cluster, wanted["name"])
    st.error(f"A plan named **{safe.md(taken.name)}** already exists for {safe.md(cluster)} ({taken.status}, "
             f"{stages.done_count(taken)} of {len(taken.stages)} stages done): create the new one as "
             f"**{safe.md(other)}**, or delete **{safe.md(taken.name)}** and create it under its name.",
             icon=":material/warning:")
    rename, drop = st.columns(2)
    if rename.button(f"Create it as {safe.md(other)}", type="primary", icon=":material/add:") and (
            actor := ui.require_actor(access.OPERATOR, "create a plan")):
        _create(store, cluster, inv, {**wanted, "name": other}, actor)
    with drop:
        if delete_form(store, taken, "delete_taken", f"Delete {safe.md(taken.name)} and create the new plan"):
            _create(store, cluster, inv, wanted, ui.actor() or "")
    if st.button("Cancel", type="tertiary"):
        st.session_state.pop(_CONFLICT)
        st.rerun()


def delete_form(store, plan, key: str, label: str = "Delete the plan") -> bool:
    """A plan's deletion, confirmed: a reason (audited) and a tick that says which plan goes; True once deleted.
    Enter in the reason field does not delete: only the button does."""
    with st.form(key, border=False, enter_to_submit=False):
        st.caption("The plan and its stages go; the audit trail keeps them, and the flags stay as they are.")
        why = st.text_input("Reason for deleting", help="Kept in the audit trail.", key=f"{key}_reason")
        sure = st.checkbox(f"Yes, delete plan {safe.md(plan.name)}", key=f"{key}_sure")
        if st.form_submit_button(label, icon=":material/delete:") and (
                actor := ui.require_actor(access.ADMIN, "delete a plan")):
            if not sure:
                st.error(f"Tick **Yes, delete plan {safe.md(plan.name)}** to confirm: a deletion cannot be undone.")
                return False
            with ui.errors("Not deleted"):
                stages.delete(store, plan, actor, why)
                if st.session_state.get(_SHOWN) == plan.name:
                    del st.session_state[_SHOWN]
                ui.flash(f"Plan **{safe.md(plan.name)}** deleted.", "warning")
                return True
    return False


def shown_plan(store, cluster: str):
    """The plan picked in the history, else the cluster's active plan, else its last one (None: it has none)."""
    picked = st.session_state.get(_SHOWN)
    return next((p for p in store.list_plans(cluster) if p.name == picked), None) or stages.latest(store, cluster)


def history(store, cluster: str, plan) -> None:
    """Every plan of the cluster, the one shown picked among them."""
    plans = store.list_plans(cluster)
    st.subheader("History")
    st.dataframe(pd.DataFrame(safe.cells(
        {"plan": p.name, "template": p.template, "status": p.status, "mode": str(p.mode or "not started"),
         "stages done": f"{stages.done_count(p)} / {len(p.stages)}", "created": f"{p.created_at:%Y-%m-%d %H:%M}",
         "by": p.created_by} for p in reversed(plans))), hide_index=True, width="stretch")
    if len(plans) > 1:
        names = [p.name for p in reversed(plans)]
        picked = st.selectbox("Show plan", names, index=names.index(plan.name),
                              format_func=lambda n: safe.shown(n))
        if picked != plan.name:
            st.session_state[_SHOWN] = picked
            st.rerun()


def export_button(plan, inv) -> None:
    """The plan's stages as files for a GitOps repository (`plan export`), zipped on the click."""
    st.download_button("Export the plan's YAML (zip)",
                       lambda: export.archive(export.stage_files(plan, inv), plan.name),
                       f"{export.folder_name(plan.name)}.zip",
                       mime="application/zip", icon=":material/download:", on_click="ignore",
                       help="Every stage's YAML and its rollback as numbered files in apply order, as for a GitOps "
                            "repository: applied in order, they give the cluster the plan ends with.")


def stage_head(plan, view) -> None:
    """Where the current stage stands: its place on the path, its goal, its wave and the gate's verdict in a line
    (where in the wave it fails)."""
    stage = view.stage
    st.header(f"Stage {stage.order}: {safe.md(stage.title)}")
    steps = [f"**:blue-background[{x}]**" if x == stage.status else x for x in lifecycle.PATH]
    if stage.status not in lifecycle.PATH:
        steps[0] = f"**:orange-background[{stage.status}]**"
    st.markdown(" → ".join(steps))
    st.markdown(f"**Goal:** {safe.md_message(stage.goal)}")
    waves_panel.stage(plan, stage)
    if stage.override_reason:
        st.caption(f"Gate overridden: {safe.md_message(stage.override_reason)}")
    codes = sorted({m.code for m in view.gate.messages if m.level == "error"})
    st.markdown("**Gate:** " + (f":green[:material/check_circle: passes] ({len(view.gate.ran)} checks)"
                                if view.gate.passed else
                                f":red[:material/block: blocked] by {', '.join(codes) or 'its checks'}"
                                f"{waves_panel.failing(stage, view.gate)}: "
                                "the findings are under **Gate** below"))


def stage_actions(store, plan, view, inv) -> None:
    """The one next action as the primary button, the Rehearse switch beside it (what the plan's first step fixes,
    said before it is taken), Rehearse to done; and, when the gate or the approval policy holds the stage, an
    override of its own."""
    stage, move = view.stage, lifecycle.ADVANCE[view.stage.status]
    switch, button, fast = st.columns([2, 2, 2], vertical_alignment="center")
    rehearse = switch.toggle("Rehearse on the plan's overlay", value=plan.mode == PlanMode.REHEARSAL,
                             disabled=plan.mode is not None,
                             help="Apply each stage's YAML to a copy of the cluster instead of waiting for a real "
                                  "apply; the plan's first step fixes whether it is a rehearsal or real.")
    label, helptext = move.says(rehearse)
    if plan.mode is None:
        switch.caption(":orange[:material/info:] " + (
            "Your next step makes this plan a **rehearsal** for good: its stages go to a copy of the cluster."
            if rehearse else "Your next step makes this plan **real** for good: switch on Rehearse first to try it "
                             "on a copy of the cluster."))
    # A rehearsal changes nothing on the cluster: it needs no approval.
    held = approval_panel.show(store, plan, stage) if move.event == Event.APPLY and not rehearse else None
    nothing = move.event == Event.APPLY and view.config.empty
    if button.button(label, type="primary", icon=":material/arrow_forward:", key="advance",
                     help="Nothing to apply: record the stage as applied to go on to its verification." if nothing
                     else helptext) and (actor := ui.require_actor(access.OPERATOR, "advance a stage")):
        _advance(store, plan, inv, actor, None, rehearse)
    if rehearse and fast.button("Rehearse to done", icon=":material/fast_forward:",
                                help="Walks every stage left on the plan's overlay, each gate, invariant and exit "
                                     "check run and nothing overridden; stops at the first that fails, with its "
                                     "findings.") and (actor := ui.require_actor(access.OPERATOR, "advance a stage")):
        with ui.errors("Not rehearsed"):
            done = moves.rehearse(store, plan, inv, actor, evidence=traffic.stage_evidence())
            if done.refusal is not None:
                ui.flash(f"The rehearsal stopped after {len(done.moves)} move(s): {safe.md_message(done.refusal)}",
                         "error")
            else:
                ui.flash(f"The plan is rehearsed to done ({len(done.moves)} moves).")
            st.rerun()
    if not rehearse and operate.live(inv.source):
        operate_panel.show(store, plan, view, inv.source)
    if move.event == Event.GATE and not view.gate.passed or held is not None:
        override_form(store, plan, inv, "the cluster's approval policy" if held else "the failing gate", rehearse)


def _advance(store, plan, inv, actor: str, override: str | None, rehearse: bool) -> None:
    first = plan.mode is None
    with ui.errors("Not advanced"):
        moved = moves.advance(store, plan, inv, actor, override, rehearse, traffic.stage_evidence())
        ui.flash(f"Stage {moved.order} is now **{moved.status}**" + (" (rehearsal)." if rehearse else ".")
                 + (f" Plan **{safe.md(plan.name)}** is now {'a rehearsal' if rehearse else 'real'} for good."
                    if first else ""))
        st.rerun()


def override_form(store, plan, inv, what: str, rehearse: bool) -> None:
    """Going past `what` anyway: an admin's deliberate act, one button, confirmed by a tick; the reason typed is
    the one audited, and Enter in it does nothing."""
    with st.expander(f"Go past {what} anyway (admin)", icon=":material/gavel:"), \
            st.form("override", border=False, enter_to_submit=False):
        reason = st.text_input("Override reason", placeholder="why it is safe to go on anyway",
                               help="Kept in the audit trail with your name.")
        sure = st.checkbox(f"I override {what}: the stage goes on although it holds it")
        if st.form_submit_button("Override and go on", icon=":material/gavel:") and (
                actor := ui.require_actor(access.ADMIN, f"override {what}")):
            if not reason.strip() or not sure:
                st.error("An override needs a reason and the tick: " + ("give the reason." if sure else
                                                                         f"tick **I override {what}**."))
            else:
                _advance(store, plan, inv, actor, reason.strip(), rehearse)


def stage_details(view) -> None:
    """What the stage does, folded below its actions: the gate's findings, the diff, the YAML, the rollback and
    the commands to run, long lines wrapped."""
    stage, cfg = view.stage, view.config
    for skipped in cfg.skipped:
        st.caption(f":material/check: {safe.md(skipped.feature)} is already on in {safe.md(skipped.scope)}: nothing to "
                   "render for it.")
    tabs = ["Gate", "Changes", "YAML", "Rollback YAML"] + (["Run"] if cfg.notes else [])
    gate, changes, yaml, rollback, *run = st.tabs(tabs)
    with gate:
        findings.show(view.gate.messages, none=f"None of the {len(view.gate.ran)} checks found anything.")
        with st.expander(f"The {len(view.gate.ran)} checks the gate ran"):
            st.markdown("\n".join(f"- {safe.md(c)}" for c in view.gate.ran) or "none")
        if view.gate.skipped:
            with st.expander(f"The {len(view.gate.skipped)} checks it could not run"):
                st.markdown("\n".join(f"- {safe.md_message(c)}" for c in view.gate.skipped))
    with changes:
        st.caption("Against the cluster as the earlier stages leave it: " + safe.md_message(view.changes.summary()))
        if not view.changes.empty:
            st.code(safe.terminal(view.changes.diff), language="diff", wrap_lines=True)
    with yaml:
        if cfg.apply_yaml:
            st.download_button("Download YAML", cfg.apply_yaml, f"stage-{stage.order}.yaml",
                               mime="application/yaml", icon=":material/download:")
            st.code(safe.terminal(cfg.apply_yaml), language="yaml", wrap_lines=True)
        else:
            st.info("Nothing to apply: this stage only checks.")
    with rollback:
        st.code(safe.terminal(cfg.rollback_yaml) or "# nothing to undo", language="yaml", wrap_lines=True)
    for tab in run:
        tab.code(safe.terminal(controls.for_app("\n".join(cfg.notes))), language="sh", wrap_lines=True)


inv = ui.inventory()
store = ui.store()
cluster = ui.cluster(inv)


st.title("Plan")
ui.show_flash()

plan = shown_plan(store, cluster)
if plan is None:
    st.info(f"No plan for **{safe.md(cluster)}** yet. Make one from a template: stages already on in the cluster "
            "start as done.")
    new_plan_form(store, cluster, inv)
    st.stop()

done = stages.done_count(plan)
mode = {PlanMode.REHEARSAL: " · :violet-badge[rehearsal on the plan's overlay]",
        PlanMode.REAL: " · walking the real cluster"}
st.caption(f"Plan **{safe.md(plan.name)}**{'' if plan.name == plan.template else f' ({plan.template})'} for "
           f"{safe.md(cluster)} · {done} of {len(plan.stages)} stages done · created by {safe.md(plan.created_by)}"
           f"{mode.get(plan.mode or '', '')}")
if stop := plan.stopped:
    st.error(f"**Stopped** after stage {stop.get('stage')} ({safe.md(str(stop.get('title')))}): "
             f"{safe.md_message(str(stop.get('reason')))} — by {safe.md(str(stop.get('by')))} at "
             f"{str(stop.get('at', ''))[:19]} UTC. meshstep applies none of its stages until it is resumed "
             "(**Apply with meshstep** below, or `meshstep plan resume --reason`).", icon=":material/pan_tool:")
if plan.verify:
    st.caption("Verification thresholds of this plan: "
               f"{Thresholds.from_json(plan.verify).text(plan.verify)} (the others as by default).")
if src := plan.promoted_from:
    st.caption(f"Promoted from plan **{safe.md(src['name'])}** on {safe.md(src['cluster'])}: a stage starts here "
               f"{duration_text(plan.promotion_after or 0)} after it was done there at the earliest.")
waves_panel.show(plan)
if plan.left_out:
    with st.expander(f"{len(plan.left_out)} step(s) of the template left out for this cluster",
                     icon=":material/playlist_remove:"):
        st.markdown("\n".join(f"- **{safe.md(x['stage'])}**: {safe.md(x['feature'])} in {safe.md(x['scope'])} — "
                               f"{safe.md_message(LeftOut.reason_of(x))}" for x in plan.left_out))

try:
    view = moves.next_view(plan, inv, traffic.stage_evidence())
except MeshstepError as e:  # the stage's config cannot be rendered for this cluster (the message says why)
    view, failing = None, stages.current_stage(plan)
    st.error(f"Stage {failing.order} ({safe.md(failing.title)}) cannot be prepared for this cluster: "
             f"{safe.md_message(e)}\n\nFix the cluster "
             "as the message says and press **Re-read the cluster**, or roll the plan back below.")
if view is None:
    if stages.current_stage(plan) is None:
        st.success(f"Plan **{safe.md(plan.name)}** is complete: every stage is done"
                   + (" in rehearsal, on its overlay." if plan.mode == PlanMode.REHEARSAL else "."),
                   icon=":material/celebration:")
else:
    stage_head(plan, view)
    stage_actions(store, plan, view, inv)
    stage_details(view)

if (target := stages.rollback_target(plan)) is not None:
    with st.expander(f"Roll back stage {target.order}: {safe.md(target.title)}", icon=":material/undo:"), \
            st.form("rollback", border=False, enter_to_submit=False):
        undoing = moves.rollback_by(plan, target, operate.live(inv.source))
        st.caption(undoing.said)
        reason = st.text_input("Rollback reason", help="Kept in the audit trail.")
        if st.form_submit_button("Roll back") and (actor := ui.require_actor(access.OPERATOR, "roll back a stage")):
            if not reason:
                st.error("Say why you roll back: the reason is kept in the audit trail.")
            else:
                with ui.errors("Not rolled back"), st.status("Rolling back…", expanded=True) as status:
                    # The cluster reached as `plan rollback --apply` (or `--gitops`) reaches it
                    by = operate.operator_for(inv.source, operate_panel.shown_in(status),
                                              gitops=undoing == moves.RollbackBy.GITOPS) if undoing.operated else None
                    rolled = moves.rollback(store, plan, inv, actor, reason, by)
                    st.session_state["rollback_yaml"] = rolled.undo_yaml
                    ui.flash(safe.md_message(rolled.said[0].upper() + rolled.said[1:] + "."), "warning")
                    st.rerun()

if undo_yaml := st.session_state.pop("rollback_yaml", None):
    st.subheader("Apply this to undo the stage")
    st.code(safe.terminal(undo_yaml), language="yaml")

st.subheader("Stages")
# A static table: it wraps a long scope ("legacy, payments, shop") where a grid's cell would cut it. Each namespace
# of a scope is shown alone: a wave's fifty names are longer than one value is shown.
waves, rows = waves_panel.of(plan), stages.stage_rows(plan)
st.table(pd.DataFrame([cells | {"scope": ", ".join(safe.shown(n) for n in r["scope"])} for r, cells in zip(
    rows, safe.cells({"": r["now"], "stage": r["order"], "title": r["title"],
                      **({"wave": waves_panel.wave_name(waves, r["scope"])} if waves else {}),
                      "status": r["status"] + (" (found on)" if r["found_on"] else ""),
                      "features": ", ".join(r["features"])} for r in rows))]), hide_index=True)

st.subheader("Traffic before and after each stage")
if verified := [s for s in plan.stages if s.record.verification is not None]:
    for verified_stage in verified:
        traffic_before_after(verified_stage)
else:
    st.caption("No stage compared yet: with telemetry set (Settings), a stage's verification compares the success "
               "rate, p99 latency and mTLS share of the requests its namespaces served before and after it.")

approval_panel.policy_form(store, cluster)

with st.expander("Promote this plan to another cluster", icon=":material/upgrade:"), \
        st.form("promote_plan", border=False):
    st.caption("The same stages and parameters, rendered and gated on the target's own objects; a stage starts there "
               "only once it was done here (for real, not rehearsed) at least this long ago.")
    to = st.text_input("Target cluster", help="The name its records are kept under, e.g. prod.")
    to_source = st.text_input("Target source", help="How to read it: context:NAME, or a snapshot path.")
    after = st.text_input("After", value="7d", help="How long a stage must have been done here first (7d, 12h).")
    if st.form_submit_button("Promote") and (actor := ui.require_actor(access.OPERATOR, "promote a plan")):
        with ui.errors("Not promoted"):
            wait = timedelta(seconds=window_seconds(after, zero=True))
            promoted = promotion.promote(store, plan, to, ui.load(to_source), wait, None, actor)
            ui.flash(f"Plan **{safe.md(promoted.name)}** promoted to **{safe.md(to)}** with "
                     f"{len(promoted.stages)} stages"
                     + (f"; {len(promoted.left_out)} step(s) left out there." if promoted.left_out else "."))
            st.rerun()

export_button(plan, inv)
history(store, cluster, plan)
if plan.status != "active":
    with st.expander("Start a new plan", icon=":material/add:", expanded=_CONFLICT in st.session_state):
        new_plan_form(store, cluster, inv)
with st.expander(f"Delete plan {safe.md(plan.name)}", icon=":material/delete:"):
    if delete_form(store, plan, "delete_plan"):
        st.rerun()
