"""Plans kept in the store: made from a template, walked one stage at a time, rolled back.

The planner decides (gates, exit checks, order); this module records each decision as one audited change that
also moves the flags of the stage's features, so the trail and the flags never disagree."""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import planner.plan
from analysis.catalog import reads_traffic
from cluster import changes
from cluster.changes import ChangeSet
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from features.base import beyond_deletions, deletions_of, dependency_met, registry, validate_params
from planner import lifecycle
from state.models import Plan, Stage, utcnow
from state.store import FlagChange, Store
from telemetry.series import duration_text
from telemetry.verification import Thresholds


class GateBlocked(MeshstepError):
    """The stage's entry gate has errors; the stage is recorded as blocked."""

    exit_code = 1

    def __init__(self, stage: Stage, result: planner.plan.GateResult):
        errors = [m for m in result.messages if m.level == "error"]
        lines = [f"stage {stage.order} ({stage.title}) is blocked by {len(errors)} failing check(s):"]
        lines += [f"  ✗ {m.code} {m.ref}: {m.message}\n      → {m.hint}" for m in errors]
        lines.append("fix these and run `meshstep plan advance` again, or pass --override-reason to go on anyway")
        super().__init__("\n".join(lines))
        self.result = result


class NotVerified(MeshstepError):
    """The exit check does not see the stage's features on, or sees new analysis errors."""

    exit_code = 1


def stage_spec(stage: Stage) -> planner.plan.StageSpec:
    return _spec({"title": stage.title, "goal": stage.goal, "features": stage.features})


def _spec(stage: dict[str, Any]) -> planner.plan.StageSpec:
    """A stage as the store takes it (title, goal, features), as the planner reads it."""
    return planner.plan.StageSpec(stage["title"], stage["goal"],
                                tuple(planner.plan.Step(f["feature"], f["scope"], f.get("params") or {})
                                      for f in stage["features"]))


def found_on(stage: Stage) -> bool:
    """The stage was already on in the cluster when the plan was made: its config is the cluster's own, not
    meshstep's to apply or undo. (Plans made before the marker: done with no YAML ever taken.)"""
    data = stage.data or {}
    return bool(data.get("found_on")) or (stage.status == "done" and "apply_yaml" not in data)


def create(store: Store, cluster: str, inventory: Inventory, template: str, namespaces: list[str] | None,
           name: str | None, actor: str, verify: Iterable[str] = ()) -> Plan:
    """A new plan for a cluster from a template; stages already on in the cluster start as done, and their
    features are recorded on (where the team has recorded nothing for them yet), so that the flags say what the
    plan takes as done. The steps left out, with the reason, are kept with the plan (`Plan.left_out`). `verify`:
    the plan's verification thresholds as `key=value` items (`--verify`), kept with it for each verification."""
    thresholds = Thresholds.values(verify)
    draft = planner.plan.new_plan(template, inventory, namespaces)
    stages = [{"title": s.title, "goal": s.goal, "features": [st.to_json() for st in s.steps],
               "status": "done" if s.done else "planned", "data": {"found_on": True} if s.done else {}}
              for s in draft.stages]
    flags = [FlagChange(st.feature, st.scope, st.params, "on") for s in draft.stages if s.done for st in s.steps]
    reason = f"template {template}" + ("; features already on in the cluster recorded on" if flags else "")
    return store.create_plan(cluster, name or template, template, stages, actor, reason=reason, flags=flags,
                             left_out=[x.to_json() for x in draft.left_out], verify=thresholds)


def add_stage(store: Store, plan: Plan, inventory: Inventory, title: str, goal: str, steps: list[planner.plan.Step],
              actor: str) -> Stage:
    """Append a stage (a custom plan grows this way); the order rules are checked first."""
    specs = [stage_spec(s) for s in plan.stages] + [planner.plan.StageSpec(title, goal, tuple(steps))]
    planner.plan.check_order(specs, inventory)
    return store.add_stage(plan.id, {"title": title, "goal": goal, "features": [s.to_json() for s in steps]},
                           actor, reason="stage added")


def promote(store: Store, plan: Plan, cluster: str, inventory: Inventory, after: timedelta, name: str | None,
            actor: str) -> Plan:
    """The plan made again for another cluster (`inventory` is that cluster's): the same stages and parameters,
    rendered and gated there when they start. A step the target cannot have (a namespace it lacks, a service its
    feature needs, a dependency left out before it) is left out with the reason, as a new plan leaves steps out;
    a stage left with no step is left out whole. Stages already on in the target start as done, found on. Each
    stage keeps the source stage it stands for: `advance` lets it start only `after` that one was done. The
    plan's verification thresholds go with it."""
    if cluster == plan.cluster:
        raise MeshstepError(f"plan {plan.name!r} is already on cluster {cluster}: promote it to another cluster")
    feats = registry()
    observed = planner.plan.observed_steps(inventory)
    known = set(inventory.namespace_names())
    stages: list[dict[str, Any]] = []
    left_out: list[planner.plan.LeftOut] = []
    before: set[tuple[str, str]] = set()
    for stage in plan.stages:
        kept = []
        for step in stage_spec(stage).steps:
            why = ""
            if step.scope != "mesh" and step.scope not in known:
                why = f"namespace {step.scope} is not in cluster {cluster}"
            elif (step.feature, step.scope) not in observed:
                missing = [d for d in feats[step.feature].depends_on
                           if not dependency_met(d, step.scope, before | observed)]
                try:
                    feats[step.feature].candidate(step.params, step.scope, inventory)
                except MeshstepError as e:
                    why = str(e)
                if missing and not why:
                    why = (f"it depends on {', '.join(missing)}, which is not on in {step.scope} on cluster {cluster} "
                           "and no earlier stage of the promoted plan turns on")
            if why:
                left_out.append(planner.plan.LeftOut(stage.title, step.feature, step.scope, why))
            else:
                kept.append(step)
        if stage.features and not kept:
            continue
        before |= {(s.feature, s.scope) for s in kept}
        done = bool(kept) and all((s.feature, s.scope) in observed for s in kept)
        stages.append({"title": stage.title, "goal": stage.goal, "features": [s.to_json() for s in kept],
                       "status": "done" if done else "planned",
                       "data": {"promoted_from_stage": stage.id} | ({"found_on": True} if done else {})})
    planner.plan.check_order([_spec(s) for s in stages], inventory, observed)
    return store.create_plan(cluster, name or plan.name, plan.template, stages, actor,
                             reason=f"promoted from plan {plan.name!r} on cluster {plan.cluster}",
                             left_out=[x.to_json() for x in left_out], promoted_from=plan.id,
                             promotion_after=int(after.total_seconds()), verify=plan.verify)


class NotPromotable(MeshstepError):
    """The promotion rule: the stage was not done on the source plan's cluster long enough ago."""

    exit_code = 1


def promotion_refusal(store: Store, plan: Plan, stage: Stage, now: datetime | None = None) -> str | None:
    """Why a promoted plan's stage may not start yet, else None: its source stage must be done (a real done: a
    rehearsal proves the plan, not the cluster), and done at least the plan's `promotion_after` ago. A rollback
    takes a stage out of done, and doing it again restarts the clock (the done time is when it last became done)."""
    source_id = (stage.data or {}).get("promoted_from_stage")
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
    if source.mode == "rehearsal":
        return (head + f"stage {done.order} of {where} was only rehearsed, and a rehearsal does not count as done "
                "for promotion; walk it for real there first")
    if done.status != "done":
        return head + f"stage {done.order} of {where} is {done.status}, not done"
    allowed = done.updated_at + timedelta(seconds=plan.promotion_after or 0)
    if (now or utcnow()) < allowed:
        return (head + f"stage {done.order} of {where} was done at {done.updated_at:%Y-%m-%d %H:%M} UTC; the "
                f"promotion rule waits {duration_text(plan.promotion_after or 0)} after that, so it may "
                f"start from {allowed:%Y-%m-%d %H:%M} UTC")
    return None


def find_plan(store: Store, cluster: str, name: str | None = None) -> Plan:
    """The named plan, else the cluster's most recent active plan."""
    plans = [p for p in store.list_plans(cluster) if (p.name == name if name else p.status == "active")]
    if not plans:
        what = f"no plan named {name!r}" if name else "no active plan"
        raise MeshstepError(f"{what} for cluster {cluster}: "
                            "start one with `meshstep plan new --template routing-first`")
    return plans[-1]


def delete(store: Store, plan: Plan, actor: str, reason: str) -> None:
    """Delete a plan and its stages; the audit trail keeps what it was. Flags stay: they say what the team decided
    about the cluster, not about the plan."""
    if not reason:
        raise MeshstepError("deleting a plan needs a reason (--reason): it is kept in the audit trail")
    store.delete_plan(plan.id, actor, reason)


def current_stage(plan: Plan) -> Stage | None:
    """The stage in flight, else the first one not done; None when the plan is complete."""
    return next((s for s in plan.stages if s.status in lifecycle.IN_FLIGHT), None) or next(
        (s for s in plan.stages if s.status != "done"), None)


# ---------------------------------------------------------------- the overlay: the cluster as the stages leave it


class Overlay:
    """The cluster as the stages walked so far leave it: the source with each stage's YAML applied in turn.
    Objects are applied when the inventory is next read, so that walking stages whose YAML is kept costs one
    rebuild of the inventory, not one per stage."""

    def __init__(self, inventory: Inventory, rehearsal: bool) -> None:
        self._inventory = inventory
        self.rehearsal = rehearsal
        self._pending: list[dict[str, Any]] = []
        self._configs: dict[int, planner.plan.StageConfig] = {}

    @property
    def inventory(self) -> Inventory:
        if self._pending:
            self._inventory = self._inventory.with_changes(apply=self._pending)
            self._pending = []
        return self._inventory

    def config(self, stage: Stage) -> planner.plan.StageConfig:
        """The stage's YAML and rollback: as taken when its gate passed, else rendered on the overlay now."""
        if stage.id not in self._configs:
            data = stage.data or {}
            self._configs[stage.id] = (
                planner.plan.StageConfig(data["apply_yaml"], data["rollback_yaml"], tuple(data.get("notes", ())))
                if "apply_yaml" in data else planner.plan.config(stage_spec(stage), self.inventory))
        return self._configs[stage.id]

    def add(self, stage: Stage) -> None:
        """Apply the stage's YAML, unless the stage was found on (its objects are the cluster's already) or was
        rolled back. A rehearsal also runs the stage's restarts: each step's pods come back as its notes' `kubectl
        rollout restart` brings them (a real plan's pods are the cluster's own, as the team restarted them or not)."""
        if stage.status == "rolled_back" or found_on(stage):
            return
        cfg = self.config(stage)
        if cfg.deletions:  # in order: what the earlier stages applied, then what this one deletes
            self._inventory = self.inventory.with_changes(delete=cfg.deletions)
        self._pending += cfg.objects
        if self.rehearsal:
            feats = registry()
            for step in stage_spec(stage).steps:
                f = feats[step.feature]
                pods = f.restarted_pods(validate_params(f, step.params), step.scope, self.inventory)
                if pods:
                    self._inventory = self._inventory.with_changes(pods=pods)


def walk(plan: Plan, inventory: Inventory, rehearsal: bool | None = None) -> Iterator[tuple[Stage, Overlay]]:
    """Each stage with the overlay it starts from: the source plus the YAML of every earlier stage. This is what a
    real plan's stages are rendered and gated on (so that `plan export` files applied in order give that state),
    and, for a rehearsal (default: as the plan's mode says), the cluster itself."""
    overlay = Overlay(inventory, plan.mode == "rehearsal" if rehearsal is None else rehearsal)
    for stage in plan.stages:
        yield stage, overlay
        overlay.add(stage)


def overlay_at(plan: Plan, inventory: Inventory, stage: Stage, including: bool = False,
               rehearsal: bool | None = None) -> Overlay:
    """The overlay a stage starts from (with `including`, the one it leaves)."""
    for st, overlay in walk(plan, inventory, rehearsal):
        if st.id == stage.id:
            if including:
                overlay.add(stage)
            return overlay
    raise MeshstepError(f"stage {stage.order} is not in plan {plan.name!r}")


def cluster_now(plan: Plan, inventory: Inventory, stage: Stage) -> Inventory:
    """The cluster as a stage's exit check and rollback read it: the fresh read of the cluster for a real plan; for
    a rehearsal, the overlay with the stage's YAML applied once it was rehearsed."""
    if plan.mode != "rehearsal":
        return inventory
    applied = stage.status in ("applied", "verified", "done")
    return overlay_at(plan, inventory, stage, including=applied).inventory


def rollback_target(plan: Plan) -> Stage | None:
    """The stage a rollback undoes: the one in flight, else the last one done by this plan (stages found on when
    the plan was made, and the install check, which changes nothing, are not the plan's to undo)."""
    return next((s for s in plan.stages if s.status in lifecycle.IN_FLIGHT), None) or next(
        (s for s in reversed(plan.stages) if s.status == "done" and s.features and not found_on(s)), None)


def stage_rows(plan: Plan) -> list[dict[str, Any]]:
    """One row per stage, as `plan show` and the app list them: `now` marks the current one; `found_on`, a stage
    that was already on when the plan was made."""
    current = current_stage(plan)
    return [{"now": "→" if current is not None and s.order == current.order else "", "order": s.order,
             "title": s.title, "features": list(dict.fromkeys(f["feature"] for f in s.features)),
             "scope": sorted({f["scope"] for f in s.features}),
             "status": s.status, "found_on": found_on(s)} for s in plan.stages]


@dataclass(frozen=True)
class NextView:
    stage: Stage
    gate: planner.plan.GateResult
    config: planner.plan.StageConfig
    changes: ChangeSet  # what the stage's YAML does to the overlay it starts from, object by object


def next_view(plan: Plan, inventory: Inventory, evidence: Any = None) -> NextView | None:
    """The current stage with its gate results, its YAML and what that YAML changes, all on the overlay the stage
    starts from; None when the plan is complete. `evidence` (telemetry.evidence.Evidence): the traffic the gate
    sees."""
    stage = current_stage(plan)
    if stage is None:
        return None
    overlay = overlay_at(plan, inventory, stage)
    cfg = overlay.config(stage)
    spec = stage_spec(stage)
    traffic = evidence.traffic(reads_traffic(s.feature for s in spec.steps)) if evidence else None
    return NextView(stage, planner.plan.gate(spec, overlay.inventory, traffic), cfg,
                    changes.diff(cfg.objects, cfg.deletions, overlay.inventory))


def advance(store: Store, plan: Plan, inventory: Inventory, actor: str, override_reason: str | None = None,
            rehearse: bool = False, evidence: Any = None) -> Stage:
    """Move the current stage one step as `lifecycle.ADVANCE` says: planned → ready (gate) → applied → verified
    (exit check) → done. A stage with nothing to apply whose gate and exit check pass is done in one call. With
    `rehearse`, the plan is walked on its overlay: applying is applying the stage's YAML to it, and the flags are
    left alone; the plan's first advance fixes whether it is a rehearsal or real, and the two never mix.
    `evidence` (telemetry.evidence.Evidence): the traffic the gate sees, and the before/after comparison that
    verification adds to the exit check of a real plan (a rehearsal has no traffic after)."""
    stage = current_stage(plan)
    if stage is None:
        raise MeshstepError(f"plan {plan.name!r} is complete: every stage is done")
    mode = "rehearsal" if rehearse else "real"
    if plan.mode not in (None, mode):
        raise MeshstepError(
            f"plan {plan.name!r} is a {plan.mode}: " + ("pass --rehearse to walk it on its overlay"
                                                        if plan.mode == "rehearsal" else
                                                        "it walks the real cluster; to rehearse, make another plan "
                                                        "(meshstep plan new --name …) and advance it with --rehearse"))
    move = lifecycle.ADVANCE[stage.status]
    # A rehearsal on the target changes nothing there: the promotion rule holds real stages back only.
    refusal = promotion_refusal(store, plan, stage) if move.runs == "gate" and not rehearse else None
    if refusal:
        raise NotPromotable(refusal)
    spec = stage_spec(stage)
    data: dict[str, Any] = dict(stage.data or {})
    flags: list[FlagChange] = []
    override = None
    new = move.to
    if move.runs == "gate":
        start = overlay_at(plan, inventory, stage, rehearsal=rehearse).inventory
        traffic = evidence.traffic(reads_traffic(s.feature for s in spec.steps)) if evidence else None
        result = planner.plan.gate(spec, start, traffic)
        data["gate"] = [m.to_json() for m in result.messages]
        if not result.passed and not override_reason:
            if stage.status != "blocked":
                store.transition_stage(stage.id, "blocked", actor,
                                       ("rehearsal: " if rehearse else "") + "entry gate failed", stage.version,
                                       data=data, plan_mode=mode)
            raise GateBlocked(stage, result)
        reason = "entry gate passed"
        if not result.passed:
            reason, override = "entry gate overridden", override_reason
        # Taken before anything is applied: the rollback that restores the cluster the stage starts from, and the
        # analysis errors already there, so that the exit check blames the stage only for errors it brought.
        cfg = planner.plan.config(spec, start)
        data.update(apply_yaml=cfg.apply_yaml, rollback_yaml=cfg.rollback_yaml, notes=list(cfg.notes),
                    baseline_errors=sorted(planner.plan.error_keys(start)))
        if cfg.empty and planner.plan.exit_check(spec, start, data["baseline_errors"]).passed:
            new, reason = "done", reason + "; nothing to apply and the exit check passes"
            flags = [] if rehearse else [FlagChange(s.feature, s.scope, s.params, "on") for s in spec.steps]
    elif move.runs == "apply":
        reason = "config applied to the plan's overlay" if rehearse else "config applied"
        flags = [] if rehearse else [FlagChange(s.feature, s.scope, s.params, "enabling") for s in spec.steps]
    elif move.runs == "exit":
        now = overlay_at(plan, inventory, stage, including=True, rehearsal=True).inventory if rehearse else inventory
        result = planner.plan.exit_check(spec, now, data.get("baseline_errors", ()))
        traffic = None
        if evidence and not rehearse:
            traffic = evidence.verify([(s.feature, s.scope) for s in spec.steps], stage.updated_at,
                                      Thresholds.from_json(plan.verify or {}))
        if traffic is not None:
            data["verification"] = traffic.to_json()
        if not result.passed or (traffic is not None and traffic.blocks(override_reason)):
            where = "the plan's overlay" if rehearse else "the cluster"
            lines = [f"stage {stage.order} ({stage.title}) is not verified yet on {where}:"]
            lines += [f"  ✗ {s.feature} is not observed on in {s.scope}" for s in result.missing]
            lines += [f"  ✗ new analysis error: {e}" for e in result.new_errors]
            lines += [f"  {line}" for line in traffic.lines] if traffic is not None and not traffic.passed else []
            if not result.passed and not rehearse:
                lines.append("apply the stage's YAML (meshstep plan next), read the cluster again, then advance")
            raise NotVerified("\n".join(lines))
        if traffic is not None and traffic.status == "insufficient":
            override = override_reason
        flags = [] if rehearse else [FlagChange(s.feature, s.scope, s.params, "on") for s in spec.steps]
        reason = "exit check passed"
    else:
        reason = "stage done"
    if not lifecycle.allowed(stage.status, new):  # the table and this walk must agree
        raise MeshstepError(f"stage {stage.order}: {stage.status} → {new} is not a move of the stage lifecycle")
    if rehearse:
        reason = f"rehearsal: {reason}"
    # Applied: the flags as they were go with the stage, so that a rollback can put them back. Done, the last stage
    # closes the plan in the same change.
    last = new == "done" and all(s.status == "done" or s.id == stage.id for s in plan.stages)
    return store.transition_stage(stage.id, new, actor, reason, stage.version, override_reason=override,
                                  data=data, flags=flags, keep_flags_before=new == "applied",
                                  plan_status="done" if last else None, plan_mode=mode)


@dataclass(frozen=True)
class RolledBack:
    stage: Stage
    undo_yaml: str  # "" when there is nothing to undo
    said: str  # what happened, in a sentence


def rollback(store: Store, plan: Plan, inventory: Inventory, actor: str, reason: str) -> RolledBack:
    """Roll back the stage in flight (else the last one this plan did): its flags return to what they were before
    it, and the rollback YAML (taken when its gate passed, before anything was applied) is returned for the team to
    apply, unless the cluster does not have the stage's changes (then there is nothing to undo, and it says so). In
    a rehearsal the stage simply leaves the plan's overlay."""
    stage = rollback_target(plan)
    if stage is None:
        found = [str(s.order) for s in plan.stages if found_on(s) and s.features]
        why = (f"; stage(s) {', '.join(found)} were already on in the cluster when the plan was made: meshstep did "
               "not turn them on, so it does not roll them back" if found else "")
        raise MeshstepError(f"plan {plan.name!r} has no stage of its own applied or done to roll back{why}")
    if not reason:
        raise MeshstepError("a rollback needs a reason (--reason)")
    spec = stage_spec(stage)
    before = {(f["feature"], f["scope"]): f for f in (stage.data or {}).get("flags_before", [])}
    flags = []
    if stage.status != "ready" and plan.mode != "rehearsal":  # a ready stage, or a rehearsal, changed no flag
        for s in spec.steps:
            prev = before.get((s.feature, s.scope))
            flags.append(FlagChange(s.feature, s.scope, prev["params"], prev["state"]) if prev
                         else FlagChange(s.feature, s.scope, None, None))
    cfg = overlay_at(plan, inventory, stage).config(stage)
    # The rollback restores the objects the stage changed and deletes those it created: nothing to undo when that
    # changes nothing in the cluster now (the stage's YAML was never applied there).
    restore = planner.plan.objects_of(cfg.rollback_yaml)
    created = deletions_of(cfg.rollback_yaml)
    undo = cfg.rollback_yaml if not changes.diff(restore, created, cluster_now(plan, inventory, stage)).empty else ""
    if plan.mode == "rehearsal":
        said = f"stage {stage.order} ({stage.title}) rolled back: its changes leave the plan's overlay"
    elif undo:
        said = f"stage {stage.order} ({stage.title}) rolled back; apply this to undo it"
    else:
        said = (f"stage {stage.order} ({stage.title}) rolled back; the cluster does not have its changes, so there "
                "is nothing to undo")
    stage = store.transition_stage(stage.id, "rolled_back", actor, reason, stage.version, data=stage.data,
                                   flags=flags, plan_status="active" if plan.status == "done" else None)
    return RolledBack(stage, undo, said)


@dataclass(frozen=True)
class Export:
    files: dict[str, str]  # file name → YAML, in apply order
    skipped: list[str]  # stages with nothing to write, and why


def stage_files(plan: Plan, inventory: Inventory) -> Export:
    """Every stage's YAML and its rollback as numbered files (`05-enter-through-the-ingress-gateway.yaml`, …) for
    GitOps. Each stage is rendered on the overlay of the stages before it, so that the files applied in order give
    the cluster the plan ends with; stages past their gate keep the YAML taken then. What a stage (or its rollback)
    deletes is a `.delete.yaml` of its own, for `kubectl delete -f`. Stages found on when the plan
    was made, and stages with nothing to apply, have no file: they are named in `skipped`."""
    files: dict[str, str] = {}
    skipped: list[str] = []
    for stage, overlay in walk(plan, inventory):
        if not stage.features:
            continue
        if found_on(stage):
            skipped.append(f"stage {stage.order} ({stage.title}): already on when the plan was made; its config is "
                           "the cluster's own objects")
            continue
        cfg = overlay.config(stage)
        if cfg.empty:
            skipped.append(f"stage {stage.order} ({stage.title}): nothing to apply, "
                           + (f"{', '.join(f'{s.feature} in {s.scope}' for s in cfg.skipped)} already on"
                              if cfg.skipped else "it only checks"))
            continue
        slug = re.sub(r"[^a-z0-9]+", "-", stage.title.lower()).strip("-")
        for name, text in ((f"{stage.order:02d}-{slug}", cfg.apply_yaml),
                           (f"{stage.order:02d}-{slug}.rollback", cfg.rollback_yaml)):
            deleted = deletions_of(text)
            # A file of nothing but deletions (a rollback of what the stage created) is not written: comments
            # only, `kubectl apply -f` would refuse it. Its deletions are the .delete.yaml beside it.
            if beyond_deletions(text):
                files[f"{name}.yaml"] = text
            if deleted:
                files[f"{name}.delete.yaml"] = planner.plan.deletion_manifest(deleted, cfg.objects, overlay.inventory)
    return Export(files, skipped)
