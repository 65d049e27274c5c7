"""Plans kept in the store: made from a template, walked one stage at a time, rolled back.

The planner decides (gates, exit checks, order); this module records each decision as one audited change that
also moves the flags of the stage's features, so the trail and the flags never disagree."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from planner import plan as planner
from planner.errors import MeshstepError
from planner.inventory import Inventory
from state.models import Plan, Stage
from state.store import FlagChange, Store


class GateBlocked(MeshstepError):
    """The stage's entry gate has errors; the stage is recorded as blocked."""

    exit_code = 1

    def __init__(self, stage: Stage, result: planner.GateResult):
        errors = [m for m in result.messages if m.level == "error"]
        lines = [f"stage {stage.order} ({stage.title}) is blocked by {len(errors)} failing check(s):"]
        lines += [f"  ✗ {m.code} {m.ref}: {m.message}\n      → {m.hint}" for m in errors]
        lines.append("fix these and run `meshstep plan advance` again, or pass --override-reason to go on anyway")
        super().__init__("\n".join(lines))
        self.result = result


class NotVerified(MeshstepError):
    """The exit check does not see the stage's features on, or sees new analysis errors."""

    exit_code = 1


def stage_spec(stage: Stage) -> planner.StageSpec:
    return planner.StageSpec(stage.title, stage.goal,
                             tuple(planner.Step(f["feature"], f["scope"], f.get("params") or {})
                                   for f in stage.features))


def create(store: Store, cluster: str, inventory: Inventory, template: str, namespaces: list[str] | None,
           name: str | None, actor: str) -> Plan:
    """A new plan for a cluster from a template; stages already on in the cluster start as done, and their
    features are recorded on (where the team has recorded nothing for them yet), so that the flags say what the
    plan takes as done."""
    specs = planner.new_plan(template, inventory, namespaces)
    stages = [{"title": s.title, "goal": s.goal, "features": [st.to_json() for st in s.steps],
               "status": "done" if s.done else "planned"} for s in specs]
    flags = [FlagChange(st.feature, st.scope, st.params, "on") for s in specs if s.done for st in s.steps]
    reason = f"template {template}" + ("; features already on in the cluster recorded on" if flags else "")
    return store.create_plan(cluster, name or template, template, stages, actor, reason=reason, flags=flags)


def add_stage(store: Store, plan: Plan, inventory: Inventory, title: str, goal: str, steps: list[planner.Step],
              actor: str) -> Stage:
    """Append a stage (a custom plan grows this way); the order rules are checked first."""
    specs = [stage_spec(s) for s in plan.stages] + [planner.StageSpec(title, goal, tuple(steps))]
    planner.check_order(specs, inventory)
    return store.add_stage(plan.id, {"title": title, "goal": goal, "features": [s.to_json() for s in steps]},
                           actor, reason="stage added")


def find_plan(store: Store, cluster: str, name: str | None = None) -> Plan:
    """The named plan, else the cluster's most recent active plan."""
    plans = [p for p in store.list_plans(cluster) if (p.name == name if name else p.status == "active")]
    if not plans:
        what = f"no plan named {name!r}" if name else "no active plan"
        raise MeshstepError(f"{what} for cluster {cluster}: "
                            "start one with `meshstep plan new --template routing-first`")
    return plans[-1]


def current_stage(plan: Plan) -> Stage | None:
    """The stage in flight, else the first one not done; None when the plan is complete."""
    return next((s for s in plan.stages if s.status in planner.IN_FLIGHT), None) or next(
        (s for s in plan.stages if s.status != "done"), None)


@dataclass(frozen=True)
class NextView:
    stage: Stage
    gate: planner.GateResult
    config: planner.StageConfig


def stage_config(stage: Stage, inventory: Inventory) -> planner.StageConfig:
    """A stage's YAML and rollback: as taken when its gate passed (before anything was applied: re-rendered on the
    changed cluster, the rollback would restore the stage's own objects), else rendered for the cluster now."""
    data = stage.data or {}
    if "apply_yaml" in data:
        return planner.StageConfig(data["apply_yaml"], data["rollback_yaml"], tuple(data.get("notes", ())))
    return planner.config(stage_spec(stage), inventory)


def rollback_target(plan: Plan) -> Stage | None:
    """The stage a rollback undoes: the one in flight, else the last one done."""
    return next((s for s in plan.stages if s.status in planner.IN_FLIGHT), None) or next(
        (s for s in reversed(plan.stages) if s.status == "done"), None)


def stage_rows(plan: Plan) -> list[dict[str, Any]]:
    """One row per stage, as `plan show` and the app list them: `now` marks the current one."""
    current = current_stage(plan)
    return [{"now": "→" if current is not None and s.order == current.order else "", "order": s.order,
             "title": s.title, "features": list(dict.fromkeys(f["feature"] for f in s.features)),
             "scope": sorted({f["scope"] for f in s.features}), "status": s.status} for s in plan.stages]


def next_view(plan: Plan, inventory: Inventory, evidence: Any = None) -> NextView | None:
    """The current stage with its gate results and its YAML, or None when the plan is complete."""
    stage = current_stage(plan)
    if stage is None:
        return None
    spec = stage_spec(stage)
    traffic = evidence.traffic(s.feature for s in spec.steps) if evidence else None
    return NextView(stage, planner.gate(spec, inventory, traffic), stage_config(stage, inventory))


def advance(store: Store, plan: Plan, inventory: Inventory, actor: str, override_reason: str | None = None,
            evidence: Any = None) -> Stage:
    """Move the current stage one step: planned → ready (gate) → applied → verified (exit check) → done.
    `evidence` (planner.telemetry.Evidence): the traffic the gate sees, and the before/after comparison that
    verification adds to the exit check."""
    stage = current_stage(plan)
    if stage is None:
        raise MeshstepError(f"plan {plan.name!r} is complete: every stage is done")
    spec = stage_spec(stage)
    data: dict[str, Any] = dict(stage.data or {})
    flags: list[FlagChange] = []
    override = None
    if stage.status in ("planned", "blocked", "rolled_back"):
        result = planner.gate(spec, inventory, evidence.traffic(s.feature for s in spec.steps) if evidence else None)
        data["gate"] = [m.to_json() for m in result.messages]
        if not result.passed and not override_reason:
            if stage.status != "blocked":
                store.transition_stage(stage.id, "blocked", actor, "entry gate failed", stage.version, data=data)
            raise GateBlocked(stage, result)
        new, reason = "ready", "entry gate passed"
        if not result.passed:
            reason, override = "entry gate overridden", override_reason
        # Taken before the team applies anything: the rollback that restores this cluster, and the analysis
        # errors already there, so that the exit check blames the stage only for errors it brought.
        cfg = planner.config(spec, inventory)
        data.update(apply_yaml=cfg.apply_yaml, rollback_yaml=cfg.rollback_yaml, notes=list(cfg.notes),
                    baseline_errors=sorted(planner.error_keys(inventory)))
    elif stage.status == "ready":
        flags = [FlagChange(s.feature, s.scope, s.params, "enabling") for s in spec.steps]
        new, reason = "applied", "config applied"
    elif stage.status == "applied":
        result = planner.exit_check(spec, inventory, data.get("baseline_errors", ()))
        traffic = evidence.verify([(s.feature, s.scope) for s in spec.steps], stage.updated_at) if evidence else None
        if traffic is not None:
            data["verification"] = traffic.to_json()
        if not result.passed or (traffic is not None and traffic.blocks(override_reason)):
            lines = [f"stage {stage.order} ({stage.title}) is not verified yet:"]
            lines += [f"  ✗ {s.feature} is not observed on in {s.scope}" for s in result.missing]
            lines += [f"  ✗ new analysis error: {e}" for e in result.new_errors]
            lines += [f"  {line}" for line in traffic.lines] if traffic is not None and not traffic.passed else []
            if not result.passed:
                lines.append("apply the stage's YAML (meshstep plan next), read the cluster again, then advance")
            raise NotVerified("\n".join(lines))
        if traffic is not None and traffic.status == "insufficient":
            override = override_reason
        flags = [FlagChange(s.feature, s.scope, s.params, "on") for s in spec.steps]
        new, reason = "verified", "exit check passed"
    else:  # verified
        new, reason = "done", "stage done"
    # Applied: the flags as they were go with the stage, so that a rollback can put them back. Done, the last stage
    # closes the plan in the same change.
    last = new == "done" and all(s.status == "done" or s.id == stage.id for s in plan.stages)
    return store.transition_stage(stage.id, new, actor, reason, stage.version, override_reason=override,
                                  data=data, flags=flags, keep_flags_before=new == "applied",
                                  plan_status="done" if last else None)


def rollback(store: Store, plan: Plan, inventory: Inventory, actor: str, reason: str) -> tuple[Stage, str]:
    """Roll back the stage in flight (else the last one done): its flags return to what they were before it, and
    the rollback YAML (taken when its gate passed, before anything was applied) is returned for the team to apply."""
    stage = rollback_target(plan)
    if stage is None:
        raise MeshstepError(f"plan {plan.name!r} has no applied or done stage to roll back")
    if not reason:
        raise MeshstepError("a rollback needs a reason (--reason)")
    spec = stage_spec(stage)
    before = {(f["feature"], f["scope"]): f for f in (stage.data or {}).get("flags_before", [])}
    flags = []
    if stage.status != "ready":  # a ready stage changed no flag yet
        for s in spec.steps:
            prev = before.get((s.feature, s.scope))
            flags.append(FlagChange(s.feature, s.scope, prev["params"], prev["state"]) if prev
                         else FlagChange(s.feature, s.scope, None, None))
    yaml_text = stage_config(stage, inventory).rollback_yaml
    stage = store.transition_stage(stage.id, "rolled_back", actor, reason, stage.version, data=stage.data,
                                   flags=flags, plan_status="active" if plan.status == "done" else None)
    return stage, yaml_text


def stage_files(plan: Plan, inventory: Inventory) -> dict[str, str]:
    """Every stage's YAML and its rollback as named files (`01-inject-sidecars-into-shop.yaml`, …) for GitOps.
    Stages past their gate keep the YAML taken then; stages found already on when the plan was made say so (their
    config is in the cluster, not in meshstep's hands); the others are rendered for the cluster as it is."""
    files = {}
    for stage in plan.stages:
        if not stage.features:
            continue
        data = stage.data or {}
        if "apply_yaml" not in data and stage.status == "done":
            note = (f"# Stage {stage.order}: {stage.title} was already on in the cluster when the plan was made;\n"
                    "# its config is the cluster's own objects, so there is nothing to apply or roll back here.\n")
            data = {"apply_yaml": note, "rollback_yaml": note}
        elif "apply_yaml" not in data:
            cfg = stage_config(stage, inventory)
            data = {"apply_yaml": cfg.apply_yaml, "rollback_yaml": cfg.rollback_yaml}
        slug = re.sub(r"[^a-z0-9]+", "-", stage.title.lower()).strip("-")
        files[f"{stage.order:02d}-{slug}.yaml"] = data["apply_yaml"]
        files[f"{stage.order:02d}-{slug}.rollback.yaml"] = data["rollback_yaml"]
    return files
