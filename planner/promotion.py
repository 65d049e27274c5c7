"""Promotion: a plan made again for another cluster, each of its stages held back until the stage it stands for
was done on the source cluster long enough ago."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import planner.plan
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from features.base import registry, unmet
from planner.stages import spec_of, stage_spec
from planner.storage import PlanStore
from state.models import Plan, PlanMode, Stage, StageRecord, StageStatus, utcnow
from telemetry.series import duration_text


class NotPromotable(MeshstepError):
    """The promotion rule: the stage was not done on the source plan's cluster long enough ago."""

    exit_code = 1


def _why_left_out(step: planner.plan.Step, cluster: str, inventory: Inventory, observed: set[tuple[str, str]],
                  before: set[tuple[str, str]]) -> str:
    """Why the target cannot have a step (a namespace it lacks, a service its feature needs, a dependency neither
    the target nor an earlier stage, `before`, turns on); "" when it can. A step already on there is kept."""
    feats = registry()
    if step.scope != "mesh" and step.scope not in inventory.namespace_names():
        return f"namespace {step.scope} is not in cluster {cluster}"
    if (step.feature, step.scope) in observed:
        return ""
    missing = unmet(step.feature, step.scope, before | observed, inventory)
    try:
        feats[step.feature].candidate(step.params, step.scope, inventory)
    except MeshstepError as e:
        return str(e)
    if missing:
        return (f"it depends on {', '.join(missing)}, which is not on in {step.scope} on cluster {cluster} "
                "and no earlier stage of the promoted plan turns on")
    return ""


def promote(store: PlanStore, plan: Plan, cluster: str, inventory: Inventory, after: timedelta, name: str | None,
            actor: str) -> Plan:
    """The plan made again for another cluster (`inventory` is that cluster's): the same stages and parameters,
    rendered and gated there when they start. A step the target cannot have is left out with the reason, as a new
    plan leaves steps out; a stage left with no step is left out whole. Stages already on in the target start as
    done, found on. Each stage keeps the source stage it stands for: `advance` lets it start only `after` that one
    was done. The plan's verification thresholds and its waves go with it."""
    if cluster == plan.cluster:
        raise MeshstepError(f"plan {plan.name!r} is already on cluster {cluster}: promote it to another cluster")
    observed = planner.plan.observed_steps(inventory, [s for stage in plan.stages for s in stage_spec(stage).steps])
    stages: list[dict[str, Any]] = []
    left_out: list[planner.plan.LeftOut] = []
    before: set[tuple[str, str]] = set()
    for stage in plan.stages:
        kept = []
        for step in stage_spec(stage).steps:
            if why := _why_left_out(step, cluster, inventory, observed, before):
                left_out.append(planner.plan.LeftOut(stage.title, step.feature, step.scope, why))
            else:
                kept.append(step)
        if stage.features and not kept:
            continue
        before |= {(s.feature, s.scope) for s in kept}
        done = bool(kept) and all((s.feature, s.scope) in observed for s in kept)
        stages.append({"title": stage.title, "goal": stage.goal, "features": [s.to_json() for s in kept],
                       "status": StageStatus.DONE if done else StageStatus.PLANNED,
                       "record": StageRecord(found_on=done, promoted_from_stage=stage.id)})
    planner.plan.check_order([spec_of(s) for s in stages], inventory, observed)
    return store.create_plan(cluster, name or plan.name, plan.template, stages, actor,
                             reason=f"promoted from plan {plan.name!r} on cluster {plan.cluster}",
                             left_out=[x.to_json() for x in left_out], promoted_from=plan.id,
                             promotion_after=int(after.total_seconds()), verify=plan.verify, waves=plan.waves)


def promotion_refusal(store: PlanStore, plan: Plan, stage: Stage, now: datetime | None = None) -> str | None:
    """Why a promoted plan's stage may not start yet, else None: its source stage must be done (a real done: a
    rehearsal proves the plan, not the cluster), and done at least the plan's `promotion_after` ago. A rollback
    takes a stage out of done, and doing it again restarts the clock (the done time is when it last became done)."""
    source_id = stage.record.promoted_from_stage
    if plan.promoted_from is None or source_id is None:
        return None
    src = plan.promoted_from
    where = f"plan {src['name']!r} on cluster {src['cluster']}"
    try:
        source = store.get_plan(src["plan_id"])
    except MeshstepError:
        return f"{where} (promoted from) was deleted: nothing says stage {stage.order} was done there"
    done = next((s for s in source.stages if s.id == source_id), None)
    if done is None:
        return f"stage {stage.title!r} is no longer in {where}"
    head = f"stage {stage.order} ({stage.title}) may not start on cluster {plan.cluster} yet: "
    if source.mode == PlanMode.REHEARSAL:
        return (head + f"stage {done.order} of {where} was only rehearsed, and a rehearsal does not count as done "
                "for promotion; walk it for real there first")
    if done.status != StageStatus.DONE:
        return head + f"stage {done.order} of {where} is {done.status}, not done"
    allowed = done.updated_at + timedelta(seconds=plan.promotion_after or 0)
    if (now or utcnow()) < allowed:
        return (head + f"stage {done.order} of {where} was done at {done.updated_at:%Y-%m-%d %H:%M} UTC; the "
                f"promotion rule waits {duration_text(plan.promotion_after or 0)} after that, so it may "
                f"start from {allowed:%Y-%m-%d %H:%M} UTC")
    return None
