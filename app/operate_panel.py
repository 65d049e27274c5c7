"""The Plan page's *Apply with meshstep*: for a real plan read from a live cluster, what `plan advance --apply` and
`plan run --apply` will do (or, when GitOps applies, `--gitops`), said before the click (the objects, the dry run,
the field manager or the wait for Argo CD/Flux, the bake and its thresholds, the rollback), and the two buttons,
their progress shown as it happens."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from app import access, safe, traffic, ui
from cluster.apply import identity, named
from cluster.inventory import build_inventory
from cluster.sources import load_snapshot
from planner import export, lifecycle, moves, operate
from planner.lifecycle import Event
from planner.operate import GITOPS_TIMEOUT, SETTLE, SYNC_TIMEOUT
from planner.storage import PlanStore
from state.models import Plan
from telemetry.series import duration_text
from telemetry.verification import Thresholds


def what_happens(plan: Plan, view: Any, gitops: bool = False) -> list[str]:
    """What applying the current stage will do, step by step, in the words the CLI's progress uses: applied by
    meshstep, or by GitOps (`gitops`)."""
    t = Thresholds.from_json(plan.verify or {})
    objects = [named(identity(o)) for o in view.config.objects]
    steps = []
    if lifecycle.ADVANCE[view.stage.status].event == Event.GATE:
        steps.append("its gate runs on the cluster as it is now (a failing gate stops here)")
    steps += _gitops_applies(view, objects) if gitops else _meshstep_applies(view, objects)
    steps += [f"then Istio's acceptance is waited for (its Reconciled condition), then the proxies of the stage's "
              f"namespaces acknowledging the config (istiod's /debug/syncz, up to {duration_text(SYNC_TIMEOUT.value)};"
              f" where it cannot be read, {SETTLE.value} s to settle, said)",
              f"then the stage bakes on traffic: {duration_text(t.settle)} to settle, then a {duration_text(t.window)} "
              f"window compared with the one before (success rate may fall {t.max_success_drop:g} points, p99 rise "
              f"{t.max_p99_increase:g}%; at least {t.min_requests} requests)",
              "a regression stops the plan until someone resumes it and names the rollback to commit (the export's "
              f"{', '.join(export.file_names(view.stage, view.config.rollback_yaml, '.rollback'))}): meshstep does "
              "not undo what GitOps applied; \"Roll back\" below records it once seen" if gitops else
              "a regression rolls the stage back by itself (every object as it was before) and stops the plan until "
              "someone resumes it", "too little traffic stops without passing"]
    return steps


def _gitops_applies(view: Any, objects: list[str]) -> list[str]:
    deleted = [str(ref) for ref in view.config.deletions]
    return [f"meshstep waits up to {duration_text(GITOPS_TIMEOUT.value)} for Argo CD or Flux to apply "
            f"{', '.join(export.file_names(view.stage, view.config.apply_yaml))} from the export you committed, until "
            f"the cluster holds {', '.join(objects) or 'no object'} as the stage renders them"
            + (f" and {', '.join(deleted)} are gone" if deleted else "") + "; meshstep writes nothing, and records "
            "the stage applied only once it sees them"]


def _meshstep_applies(view: Any, objects: list[str]) -> list[str]:
    steps = [f"{len(objects)} object(s) — {', '.join(objects) or 'none'} — each sent first as a server-side dry run "
             "(dryRun=All, fieldValidation=Strict), its answer shown as a diff against the live object",
             "then server-side applied as field manager meshstep, never forced, annotated with this plan and stage; "
             "all or none: a refusal (a conflict with another field manager, RBAC, a webhook) puts back those "
             "already applied (and creates again, as they were, those already deleted)"]
    if deleted := [str(ref) for ref in view.config.deletions]:
        steps.append(f"then deleted: {', '.join(deleted)} — each first a dry-run DELETE (dryRun=All) under the "
                     "resourceVersion the gate read, deleted only once every dry run passed")
    return steps


def show(store: PlanStore, plan: Plan, view: Any, source: str) -> None:
    """The panel, for a real plan whose source is a live cluster; a stopped plan's buttons refuse, and say why and
    how to resume it."""
    stopped = moves.stop_refusal(plan)
    with st.expander("Apply with meshstep", icon=":material/rocket_launch:", expanded=stopped is not None):
        if stopped is not None:
            st.error(safe.md_message(stopped), icon=":material/pan_tool:")
            resume_form(store, plan)
        gitops = st.toggle("GitOps applies it (Argo CD, Flux)", help="You commit the stage's file from the export; "
                           "meshstep waits until it is on the cluster, then bakes it.")
        st.markdown("\n".join(f"{i}. {safe.md_message(step)}"
                               for i, step in enumerate(what_happens(plan, view, gitops), 1)))
        shadow = not gitops and st.toggle("Authorization in shadow first", help="Authorization policies are applied "
                                          "with istio.io/dry-run, baked on what they would deny, then enforced.")
        one, every = st.columns(2)
        stage_only = one.button("Wait for GitOps and bake" if gitops else "Apply and bake this stage",
                                icon=":material/play_arrow:", disabled=bool(stopped))
        to_done = every.button("Run the plan to done", icon=":material/fast_forward:", disabled=bool(stopped),
                               help="Each stage in turn, as above; the first gate, approval, refusal or regression "
                                    "stops it.")
        if (stage_only or to_done) and (actor := ui.require_actor(access.OPERATOR, "apply a stage")):
            _run(store, plan, source, actor, shadow, gitops, 1 if stage_only else None)


def resume_form(store: PlanStore, plan: Plan) -> None:
    """`meshstep plan resume --reason`: the reason typed is the one audited, with who resumed."""
    with st.form("resume_plan", border=False, enter_to_submit=False):
        reason = st.text_input("Why resume", help="What was found and fixed: kept in the audit trail.")
        if st.form_submit_button("Resume the plan", icon=":material/play_circle:") and (
                actor := ui.require_actor(access.OPERATOR, "resume a plan")):
            with ui.errors("Not resumed"):
                store.resume_plan(plan.id, actor, reason)
                ui.flash(f"Plan **{safe.md(plan.name)}** resumed: meshstep applies its stages again.")
                st.rerun()


def shown_in(status: Any) -> Callable[[str], None]:
    """Where an operator's progress lines go on the page: `status` (an st.status), as text."""
    return lambda line: status.text(safe.terminal(line))


def _run(store: PlanStore, plan: Plan, source: str, actor: str, shadow: bool, gitops: bool,
         count: int | None) -> None:
    with ui.errors("Not applied"), st.status("Waiting for GitOps…" if gitops else "Applying…",
                                             expanded=True) as status:
        operator = operate.operator_for(source, shown_in(status), shadow, gitops)
        done = moves.run(store, plan, lambda: build_inventory(load_snapshot(source)), actor, operator,
                         lambda _inv: traffic.stage_evidence(), stages=count)
        if done.refusal is not None:
            status.update(label="Stopped", state="error")
            ui.flash(f"Stopped after {len(done.moves)} move(s): {safe.md_message(done.refusal)}", "error")
        else:
            status.update(label="Applied", state="complete")
            ui.flash(f"{len(done.moves)} move(s) made on the cluster.")
    st.rerun()
