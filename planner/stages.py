"""Plans kept in the store and their stages: made from a template, grown by a stage, found, deleted, and read (the
stage in flight, the one a rollback undoes, the rows `plan show` and the app list)."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import planner.plan
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from planner import lifecycle
from planner.lifecycle import Event, Facts
from planner.storage import PlanStore
from state.models import Plan, Stage, StageRecord, StageStatus
from state.store import FlagChange
from telemetry.verification import Thresholds


def stage_spec(stage: Stage) -> planner.plan.StageSpec:
    return spec_of({"title": stage.title, "goal": stage.goal, "features": stage.features})


def spec_of(stage: dict[str, Any]) -> planner.plan.StageSpec:
    """A stage as the store takes it (title, goal, features), as the planner reads it."""
    return planner.plan.StageSpec(stage["title"], stage["goal"],
                                  tuple(planner.plan.Step(f["feature"], f["scope"], f.get("params") or {})
                                        for f in stage["features"]))


def found_on(stage: Stage) -> bool:
    """The stage was already on in the cluster when the plan was made: its config is the cluster's own, not
    meshstep's to apply or undo. (Plans made before the marker: done with no YAML ever taken.)"""
    record = stage.record
    return record.found_on or (stage.status == StageStatus.DONE and not record.taken)


def create(store: PlanStore, cluster: str, inventory: Inventory, template: str, namespaces: list[str] | None,
           name: str | None, actor: str, verify: Iterable[str] = (), waves: str | None = None,
           traffic: Any = None, to: str | None = None) -> Plan:
    """A new plan for a cluster from a template; stages already on in the cluster start as done, and their
    features are recorded on (where the team has recorded nothing for them yet), so that the flags say what the
    plan takes as done. The steps left out, with the reason, are kept with the plan (`Plan.left_out`). `verify`:
    the plan's verification thresholds as `key=value` items (`--verify`), kept with it for each verification.
    `waves` (`--waves`; planner.waves) and `traffic` (what the pilot wave's choice weighs): the plan's waves, kept
    with it. `to`: the Istio release an upgrade plan moves to (planner.plan.upgrade_params)."""
    thresholds = Thresholds.values(verify)
    draft = planner.plan.new_plan(template, inventory, namespaces, waves, traffic, to)
    stages = [{"title": s.title, "goal": s.goal, "features": [st.to_json() for st in s.steps],
               "status": StageStatus.DONE if s.done else StageStatus.PLANNED, "record": StageRecord(found_on=s.done)}
              for s in draft.stages]
    flags = [FlagChange(st.feature, st.scope, st.params, "on") for s in draft.stages if s.done for st in s.steps]
    reason = f"template {template}" + ("; features already on in the cluster recorded on" if flags else "")
    return store.create_plan(cluster, name or template, template, stages, actor, reason=reason, flags=flags,
                             left_out=[x.to_json() for x in draft.left_out], verify=thresholds,
                             waves=draft.waves.to_json() if draft.waves else None)


def add_stage(store: PlanStore, plan: Plan, inventory: Inventory, title: str, goal: str,
              steps: list[planner.plan.Step], actor: str) -> Stage:
    """Append a stage (a custom plan grows this way); the order rules are checked first."""
    specs = [stage_spec(s) for s in plan.stages] + [planner.plan.StageSpec(title, goal, tuple(steps))]
    planner.plan.check_order(specs, inventory)
    return store.add_stage(plan.id, {"title": title, "goal": goal, "features": [s.to_json() for s in steps]},
                           actor, reason="stage added")


def find_plan(store: PlanStore, cluster: str, name: str | None = None) -> Plan:
    """The named plan, else the cluster's most recent active plan."""
    plans = [p for p in store.list_plans(cluster) if (p.name == name if name else p.status == "active")]
    if not plans:
        what = f"no plan named {name!r}" if name else "no active plan"
        raise MeshstepError(f"{what} for cluster {cluster}: "
                            "start one with `meshstep plan new --template routing-first`")
    return plans[-1]


def latest(store: PlanStore, cluster: str) -> Plan | None:
    """The plan to show for a cluster: its most recent active plan, else its most recent plan of any status (a
    finished one stays in sight); None when it has none."""
    plans = store.list_plans(cluster)
    return next((p for p in reversed(plans) if p.status == "active"), plans[-1] if plans else None)


def free_name(store: PlanStore, cluster: str, name: str) -> str:
    """`name`, else the first of `name-2`, `name-3`, … no plan of the cluster has."""
    taken = {p.name for p in store.list_plans(cluster)}
    return next(n for n in (name, *(f"{name}-{i}" for i in range(2, len(taken) + 3))) if n not in taken)


def delete(store: PlanStore, plan: Plan, actor: str, reason: str) -> None:
    """Delete a plan and its stages; the audit trail keeps what it was. Flags stay: they say what the team decided
    about the cluster, not about the plan."""
    if not reason:
        raise MeshstepError("deleting a plan needs a reason (--reason): it is kept in the audit trail")
    store.delete_plan(plan.id, actor, reason)


def current_stage(plan: Plan) -> Stage | None:
    """The stage in flight, else the first one not done; None when the plan is complete."""
    return next((s for s in plan.stages if s.status in lifecycle.IN_FLIGHT), None) or next(
        (s for s in plan.stages if s.status != StageStatus.DONE), None)


def done_count(plan: Plan) -> int:
    return sum(s.status == StageStatus.DONE for s in plan.stages)


def rollback_target(plan: Plan) -> Stage | None:
    """The stage a rollback undoes: the one in flight, else the last one done that the lifecycle lets roll back
    (stages found on when the plan was made, and the install check, which changes nothing, are not the plan's to
    undo)."""
    def can(stage: Stage) -> bool:
        facts = Facts(undoable=bool(stage.features) and not found_on(stage))
        return lifecycle.next_status(stage.status, Event.ROLLBACK, facts) is not None

    return next((s for s in plan.stages if s.status in lifecycle.IN_FLIGHT), None) or next(
        (s for s in reversed(plan.stages) if can(s)), None)


def stage_rows(plan: Plan) -> list[dict[str, Any]]:
    """One row per stage, as `plan show` and the app list them: `now` marks the current one; `found_on`, a stage
    that was already on when the plan was made."""
    current = current_stage(plan)
    return [{"now": "→" if current is not None and s.order == current.order else "", "order": s.order,
             "title": s.title, "features": list(dict.fromkeys(f["feature"] for f in s.features)),
             "scope": sorted({f["scope"] for f in s.features}),
             "status": str(s.status), "found_on": found_on(s)} for s in plan.stages]
