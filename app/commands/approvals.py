"""`meshstep plan approve`, `plan reject` and `plan policy`: approvals of a stage's YAML and a cluster's change
policy (planner.approvals). From the CLI the decider is self-declared (--actor); in the app, the signed-in person."""
from __future__ import annotations

from typing import Annotated

import typer

from app import safe
from app.commands import ActorOpt, ClusterOpt, DbOpt, SourceOpt, actor_name, cluster_name, echo, open_store
from app.commands.plan import NameOpt, _plan, plan_app

NoteOpt = Annotated[str, typer.Option("--reason", help="Why: kept in the audit trail with the decision.")]


def _decide(decision: str, reason: str, name: str | None, source: str | None, cluster: str | None,
            db: str | None, actor: str | None) -> None:
    from cluster.errors import MeshstepError
    from planner import approvals, stages

    with _plan(name, source, cluster, db) as (_inv, store, p):
        stage = stages.current_stage(p)
        if stage is None:
            raise MeshstepError(f"plan {p.name!r} is complete: no stage left to approve or reject")
        approvals.decide(store, p.cluster, stage, decision, actor_name(actor), reason)
        standing = approvals.stage_standing(store, p.cluster, stages.current_stage(store.get_plan(p.id)))
    echo(f"stage {stage.order} ({safe.shown(stage.title)}): {decision}; {safe.message(standing.text())}")


@plan_app.command("approve")
def plan_approve(reason: NoteOpt = "", name: NameOpt = None, source: SourceOpt = None, cluster: ClusterOpt = None,
                 db: DbOpt = None, actor: ActorOpt = None) -> None:
    """Approve the current stage's YAML as it is now (a changed YAML needs approving again)."""
    _decide("approved", reason, name, source, cluster, db, actor)


@plan_app.command("reject")
def plan_reject(reason: NoteOpt = "", name: NameOpt = None, source: SourceOpt = None, cluster: ClusterOpt = None,
                db: DbOpt = None, actor: ActorOpt = None) -> None:
    """Reject the current stage's YAML: it is not applied until its YAML changes (or an admin overrides)."""
    _decide("rejected", reason, name, source, cluster, db, actor)


@plan_app.command("policy")
def plan_policy(
    approvers: Annotated[int | None, typer.Option("--approvers", help="How many must approve a stage's YAML "
                                                                       "before it is applied (0: none).")] = None,
    requester_may_approve: Annotated[bool | None, typer.Option(
        "--requester-may-approve/--not-the-requester",
        help="Whether whoever moved the stage to ready may be one of its approvers.")] = None,
    window: Annotated[list[str] | None, typer.Option(
        "--window", help="When applies may happen, e.g. 'mon-fri 09:00-17:00' (repeatable; none: any time).")]
    = None,
    no_windows: Annotated[bool, typer.Option("--no-windows", help="Remove every change window.")] = False,
    timezone: Annotated[str | None, typer.Option("--timezone", help="The windows' time zone (IANA, e.g. "
                                                                    "Europe/Berlin).")] = None,
    reason: NoteOpt = "", source: SourceOpt = None, cluster: ClusterOpt = None, db: DbOpt = None,
    actor: ActorOpt = None,
) -> None:
    """Show a cluster's approval policy and change windows, or change them (given any option; audited)."""
    from planner import approvals

    name = cluster_name(cluster, source)
    with open_store(db) as store:
        now = approvals.policy_of(store, name)
        if approvers is None and requester_may_approve is None and window is None and not no_windows \
                and timezone is None:
            echo(f"{safe.shown(name)}: {safe.message(now.text())}")
            return
        new = approvals.Policy.make(
            now.approvers if approvers is None else approvers,
            now.requester_may_approve if requester_may_approve is None else requester_may_approve,
            [] if no_windows else window if window is not None else [w.text for w in now.windows],
            timezone or now.timezone)
        approvals.set_policy(store, name, new, actor_name(actor), reason)
    echo(f"{safe.shown(name)}: {safe.message(new.text())}")
