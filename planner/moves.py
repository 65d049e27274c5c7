"""Moving a plan's stages: `advance` runs the step the current stage's status offers (gate, apply, exit check, close)
and `rollback` undoes a stage; where each goes is the lifecycle table's call (planner.lifecycle). Each move is one
audited change that also moves the flags of the stage's features, so the trail and the flags never disagree."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import msgspec

import planner.plan
from analysis import findings
from analysis.catalog import reads_traffic
from cluster import changes
from cluster.apply import ApplyRefused, identity, named
from cluster.changes import ChangeSet
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from features.base import deletions_of
from planner import approvals, export, lifecycle, notify, operate
from planner.lifecycle import Event, Facts
from planner.overlay import cluster_now, overlay_at
from planner.promotion import NotPromotable, promotion_refusal
from planner.stages import current_stage, found_on, rollback_target, stage_spec
from planner.storage import PlanStore
from state.models import Plan, PlanMode, Stage, StageRecord, StageStatus
from state.store import FlagChange
from telemetry.verification import Thresholds, Verification


class GateBlocked(MeshstepError):
    """The stage's entry gate has errors; the stage is recorded as blocked."""

    exit_code = 1

    def __init__(self, stage: Stage, result: planner.plan.GateResult):
        errors = [m for m in result.messages if m.level == "error"]
        lines = [f"stage {stage.order} ({stage.title}) is blocked by {len(errors)} failing check(s):"]
        lines.append(findings.terminal(errors, indent="  "))
        lines.append("fix these and run `meshstep plan advance` again, or pass --override-reason to go on anyway")
        super().__init__("\n".join(lines))
        self.result = result


class NotVerified(MeshstepError):
    """The exit check does not see the stage's features on, or sees new analysis errors."""

    exit_code = 1


class PlanStopped(MeshstepError):
    """MST1008: the plan is stopped (a stage rolled back by itself): meshstep applies none of its stages."""

    exit_code = 1


def stop_refusal(plan: Plan) -> PlanStopped | None:
    """Why meshstep may not apply the plan's stages now (its stop, and how to go on); None when it is not stopped."""
    stop = plan.stopped
    if stop is None:
        return None
    what = "awaited its rollback through GitOps" if stop.get("code") == "MST1011" else "was rolled back by itself"
    return PlanStopped(f"MST1008: plan {plan.name} is stopped: stage {stop.get('stage')} ({stop.get('title')}) {what} "
                       f"at {stop.get('at', '?')[:19]} UTC: {stop.get('reason')}. meshstep "
                       "applies none of its stages until it is resumed: find and fix the cause (meshstep plan show, "
                       f"meshstep audit), then: meshstep plan resume --name {plan.name} --reason \"…\"")


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


@dataclass(frozen=True)
class _Move:
    """One advance in the making: the plan, the stage and how it is walked."""

    plan: Plan
    stage: Stage
    inventory: Inventory
    rehearse: bool
    override_reason: str | None
    evidence: Any
    approval: MeshstepError | None = None  # why the cluster's policy does not let the stage be applied now
    # planner.operate.Operator: meshstep applies the stage (--apply), or waits for GitOps to (--gitops), and bakes it
    operator: Any = None

    @property
    def spec(self) -> planner.plan.StageSpec:
        return stage_spec(self.stage)

    def flags(self, state: str) -> list[FlagChange]:
        """The stage's features moved to `state` (a rehearsal leaves the flags alone)."""
        return [] if self.rehearse else [FlagChange(s.feature, s.scope, s.params, state) for s in self.spec.steps]


@dataclass(frozen=True)
class _Ran:
    """What a step found: the facts the lifecycle's guards read, what the stage keeps, and what is recorded."""

    facts: Facts
    record: StageRecord
    reason: str
    flags: list[FlagChange] = field(default_factory=list)
    override: str | None = None
    refusal: MeshstepError | None = None  # raised once the move (if any) is recorded
    stop: dict[str, Any] | None = None  # the plan stops with the move: {code, reason, stage, title}


def _gate(m: _Move) -> _Ran:
    """The entry gate on the cluster as the earlier stages leave it. When it passes (or is overridden), the YAML and
    its rollback are taken before anything is applied, with the analysis errors already there, so that the exit
    check blames the stage only for errors it brought."""
    spec = m.spec
    start = overlay_at(m.plan, m.inventory, m.stage, rehearsal=m.rehearse).inventory
    traffic = m.evidence.traffic(reads_traffic(s.feature for s in spec.steps)) if m.evidence else None
    result = planner.plan.gate(spec, start, traffic)
    record = msgspec.structs.replace(m.stage.record, gate=tuple(x.to_json() for x in result.messages))
    if not result.passed and not m.override_reason:
        return _Ran(Facts(passed=False), record, "entry gate failed", refusal=GateBlocked(m.stage, result))
    reason, override = ("entry gate passed", None) if result.passed else ("entry gate overridden", m.override_reason)
    cfg = planner.plan.config(spec, start)
    record = msgspec.structs.replace(record, apply_yaml=cfg.apply_yaml, rollback_yaml=cfg.rollback_yaml,
                                     notes=cfg.notes, baseline_errors=tuple(sorted(planner.plan.error_keys(start))),
                                     gitops="",
                                     versions={} if m.rehearse else operate.gate_versions(
                                         [*cfg.objects, *operate.to_delete(cfg.apply_yaml, cfg.objects, start)],
                                         m.inventory))
    if cfg.empty and planner.plan.exit_check(spec, start, record.baseline_errors).passed:
        return _Ran(Facts(nothing_to_apply=True), record, reason + "; nothing to apply and the exit check passes",
                    m.flags("on"), override)
    return _Ran(Facts(), record, reason, override=override)


def _apply(m: _Move) -> _Ran:
    """Applied, when the cluster's policy lets it be now (a rehearsal changes nothing, so it needs no approval), or
    an admin overrides the policy with a reason."""
    reason = "config applied to the plan's overlay" if m.rehearse else "config applied"
    if m.approval is not None and not m.override_reason:
        return _Ran(Facts(approved=False), m.stage.record, "apply refused", refusal=m.approval)
    overridden = m.override_reason if m.approval is not None else None
    if m.approval is not None:
        reason = f"{reason}; policy overridden ({m.approval})"
    if m.operator is not None and not m.rehearse:
        return (_seen_from_gitops if m.operator.gitops else _apply_to_cluster)(m, reason, overridden)
    return _Ran(Facts(), m.stage.record, reason, m.flags("enabling"), overridden)


def _sides(to_yaml: str, from_yaml: str, inventory: Inventory) -> list[operate.Side]:
    """Each object `to_yaml` applies or deletes, with what `from_yaml` has for it instead (a stage's YAML and its
    rollback, either way round): what a GitOps apply of `to_yaml` must bring to the cluster."""
    others = {identity(o)[1:]: o for o in planner.plan.objects_of(from_yaml)}
    sides: list[operate.Side] = [(identity(o), o, others.get(identity(o)[1:]))
                                 for o in planner.plan.objects_of(to_yaml)]
    for ref in deletions_of(to_yaml):
        other = others.get((ref.kind, ref.namespace, ref.name))
        known = inventory.get(ref.kind, ref.namespace, ref.name)
        api = other["apiVersion"] if other else known.api_version if known else None
        if api is None:
            raise MeshstepError(f"{ref} is deleted by GitOps here, and neither the stage nor the cluster's read says "
                                "its apiVersion: it cannot be looked for")
        sides.append(((api, ref.kind, ref.namespace, ref.name), None, other))
    return sides


def _seen_from_gitops(m: _Move, reason: str, overridden: str | None) -> _Ran:
    """The YAML taken at the gate, applied by GitOps from the export (`meshstep plan export`): meshstep waits until
    the cluster holds each object as the stage renders it (what it deletes gone), then records it applied; not in
    time, it raises NotSynced and nothing is recorded."""
    rec, what = m.stage.record, f"stage {m.stage.order} ({m.stage.title})"
    files = ", ".join(export.file_names(m.stage, rec.apply_yaml or ""))
    applied = m.operator.seen(_sides(rec.apply_yaml or "", rec.rollback_yaml, m.inventory), what,
                              f"Commit the export's {files} to the repository Argo CD or Flux syncs (and sync it), "
                              "then advance with --gitops again")
    m.operator.progress(f"{what}: seen on the cluster as the stage renders them")
    names = ", ".join(named(tuple(a["key"])) for a in applied)
    return _Ran(Facts(), msgspec.structs.replace(rec, applied=applied, gitops="applied"),
                f"{reason} (by GitOps, seen on the cluster as the stage renders them): {names}", m.flags("enabling"),
                overridden)


def _apply_to_cluster(m: _Move, reason: str, overridden: str | None) -> _Ran:
    """The YAML taken at the gate applied by meshstep itself, all or none (planner.operate); refused, the stage goes
    back to its gate (an object changed since it ran) or is blocked (a conflict, RBAC, a webhook …)."""
    text = m.stage.record.apply_yaml or ""
    objects = planner.plan.objects_of(text)
    shadow = m.operator.shadows(objects)
    try:
        deletes = operate.to_delete(text, objects, m.inventory)
        applied = m.operator.apply(m.plan, m.stage, objects, m.stage.record.versions, shadow, deletes)
    except ApplyRefused as e:
        stale = e.code == "MST1002"
        return _Ran(Facts(stale=stale, refused=not stale), m.stage.record, f"apply refused: {e}", refusal=e)
    record = msgspec.structs.replace(m.stage.record, applied=applied, shadow="shadow" if shadow else "")
    how = "server-side applied, field manager meshstep" + (", authorization in shadow (istio.io/dry-run: "
                                                            "evaluated, not enforced)" if shadow else "")
    names = ", ".join(named(tuple(a["key"])) for a in applied if a["after"] is not None)
    gone = ", ".join(named(tuple(a["key"])) for a in applied if a["after"] is None)
    return _Ran(Facts(), record, f"{reason} ({how}): {names}" + (f"; deleted: {gone}" if gone else ""),
                m.flags("enabling"), overridden)


def _bake(m: _Move) -> Verification | _Ran:
    """Istio's acceptance waited for, then the stage's traffic watched for the plan's window; a regression (or
    config Istio refuses) puts the stage's objects back by itself, or, for a stage GitOps applied, stops the plan with
    the rollback to commit."""
    op, stage = m.operator, m.stage
    gitops = bool(stage.record.gitops)
    try:
        said = op.accepted(stage.record.applied, operate.touched(m.inventory, (s.scope for s in m.spec.steps),
                                                                 stage.record.applied))
    except operate.NotAccepted as e:
        return _awaits_rollback(m, str(e), None) if gitops else _put_back(m, e.code, str(e), None)
    op.progress(said)
    verdict = op.bake(m.evidence, [(s.feature, s.scope) for s in m.spec.steps], stage.updated_at,
                      Thresholds.from_json(m.plan.verify or {}), stage.record.shadow == "shadow")
    for line in verdict.lines:
        op.progress(line)
    if verdict.status == "regressed":
        code = "MST1011" if gitops else "MST1006"
        why = f"{code}: the bake saw a regression"
        return _awaits_rollback(m, why, verdict) if gitops else _put_back(m, code, why, verdict)
    return verdict


def _put_back(m: _Move, code: str, why: str, verdict: Verification | None) -> _Ran:
    """The stage rolled back by itself: its objects as they were before it, its flags too; the plan stops (and stops
    too when the objects could not all be put back: the stage stays applied, the cluster half way), with `code`,
    the catalog's for what stopped it (MST1006, MST1007, MST1009)."""
    stop = {"code": code, "stage": m.stage.order, "title": m.stage.title,
            "reason": "; ".join((why, *(verdict.problems if verdict else ())))}
    try:
        back = m.operator.put_back(m.stage.record.applied)
    except MeshstepError as e:
        said = f"{why}; stage {m.stage.order} ({m.stage.title}) could not be put back by itself: {e}"
        return _Ran(Facts(passed=False), m.stage.record, said, refusal=operate.BakeRegressed(said),
                    stop={**stop, "reason": said})
    said = (f"{why}: stage {m.stage.order} ({m.stage.title}) rolled back by itself, put back as before the stage: "
            f"{', '.join(back)}; the plan is stopped (find the cause, then meshstep plan resume --reason …)")
    record = msgspec.structs.replace(m.stage.record, applied=(), shadow="",
                                     verification=verdict.to_json() if verdict else m.stage.record.verification)
    lines = [said, *(f"  {line}" for line in (verdict.lines if verdict else ()))]
    return _Ran(Facts(passed=False, rolled_back=True), record, said, _flags_back(m.plan, m.stage),
                refusal=operate.BakeRegressed("\n".join(lines)), stop=stop)


def _rollback_to_commit(stage: Stage) -> str:
    """What the team does to roll back a stage GitOps applied, which meshstep cannot do for it."""
    files = ", ".join(export.file_names(stage, stage.record.rollback_yaml, ".rollback"))
    return (f"stage {stage.order} ({stage.title}) was applied by GitOps, and meshstep does not undo a stage GitOps "
            "applied (Argo CD or Flux would sync it back): commit its rollback, the export's "
            f"{files or '(no file: nothing to undo)'}, or `git revert` the commit that added the stage's file; then "
            "`meshstep plan rollback --gitops --reason …` waits until the rollback is on the cluster and records it")


def _awaits_rollback(m: _Move, why: str, verdict: Verification | None) -> _Ran:
    """A stage GitOps applied that failed its bake: it stays applied, its verdict kept, until its rollback (committed
    by the team) is seen on the cluster; the plan is stopped until resumed."""
    said = f"{why}: {_rollback_to_commit(m.stage)}. The plan is stopped (then: meshstep plan resume --reason …)"
    record = msgspec.structs.replace(m.stage.record, gitops="rolling back",
                                     verification=verdict.to_json() if verdict else m.stage.record.verification)
    lines = [said, *(f"  {line}" for line in (verdict.lines if verdict else ()))]
    stop = {"code": "MST1011", "stage": m.stage.order, "title": m.stage.title,
            "reason": "; ".join((said, *(verdict.problems if verdict else ())))}
    return _Ran(Facts(passed=False, awaits_rollback=True), record, said,
                refusal=operate.GitOpsRegressed("\n".join(lines)), stop=stop)


def _enforce(m: _Move) -> _Ran:
    """An authorization stage in shadow: baked on what its dry-run policies would deny, then enforced (the
    dry-run annotation removed by applying the same objects without it)."""
    if m.operator is None:
        raise MeshstepError(f"stage {m.stage.order} ({m.stage.title}) runs in shadow (istio.io/dry-run): advance it "
                            "with --apply, which bakes it and then enforces it")
    baked = _bake(m)
    if isinstance(baked, _Ran):
        return baked
    record = msgspec.structs.replace(m.stage.record, verification=baked.to_json())
    if baked.blocks(m.override_reason):
        lines = [f"stage {m.stage.order} ({m.stage.title}) stays in shadow:", *(f"  {x}" for x in baked.lines)]
        return _Ran(Facts(passed=False), record, "shadow bake not passed", refusal=NotVerified("\n".join(lines)))
    applied = m.stage.record.applied
    versions = {named(tuple(a["key"])): a["after"]["metadata"]["resourceVersion"] for a in applied if a["after"]}
    try:
        enforced = m.operator.apply(m.plan, m.stage, planner.plan.objects_of(m.stage.record.apply_yaml or ""),
                                    versions, shadow=False)
    except ApplyRefused as e:
        return _Ran(Facts(passed=False), record, f"enforcing refused: {e}", refusal=e)
    # The objects enforced, in the order applied; those the stage deleted (after them) stay as they were recorded.
    record = msgspec.structs.replace(record, shadow="enforced", applied=(*(
        {**a, "after": e["after"]} for a, e in zip(applied, enforced)), *applied[len(enforced):]))
    return _Ran(Facts(), record, "shadow bake passed (no request would have been denied); enforced: "
                                 "istio.io/dry-run removed")


def _verify(m: _Move) -> _Ran:
    """The exit check on the cluster read again (a rehearsal: on the overlay with the stage applied), and, given
    evidence in a real plan, the traffic before and after the stage was applied; a stage meshstep applied itself is
    first baked (`_bake`), and rolled back by itself on a regression."""
    spec, stage = m.spec, m.stage
    if stage.record.gitops == "rolling back":
        return _Ran(Facts(passed=False), stage.record, "rollback awaited", refusal=operate.GitOpsRegressed(
            f"MST1011: stage {stage.order} ({stage.title}) failed its bake and awaits its rollback: "
            f"{_rollback_to_commit(stage)}"))
    traffic = None
    if m.operator is not None and not m.rehearse and stage.record.applied:  # meshstep applied it: it bakes it
        traffic = _bake(m)
        if isinstance(traffic, _Ran):
            return traffic
    now = (overlay_at(m.plan, m.inventory, stage, including=True, rehearsal=True).inventory if m.rehearse
           else m.inventory)
    result = planner.plan.exit_check(spec, now, stage.record.baseline_errors)
    if traffic is None and m.evidence and not m.rehearse:
        traffic = m.evidence.verify([(s.feature, s.scope) for s in spec.steps], stage.updated_at,
                                    Thresholds.from_json(m.plan.verify or {}))
    record = stage.record if traffic is None else msgspec.structs.replace(stage.record,
                                                                          verification=traffic.to_json())
    if not result.passed or (traffic is not None and traffic.blocks(m.override_reason)):
        where = "the plan's overlay" if m.rehearse else "the cluster"
        lines = [f"stage {stage.order} ({stage.title}) is not verified yet on {where}:"]
        lines += [f"  ✗ {s.feature} is not observed on in {s.scope}" for s in result.missing]
        lines += [f"  ✗ new analysis error: {e}" for e in result.new_errors]
        lines += [f"  {line}" for line in traffic.lines] if traffic is not None and not traffic.passed else []
        if not result.passed and not m.rehearse:
            lines.append("apply the stage's YAML (meshstep plan next), read the cluster again, then advance")
        return _Ran(Facts(passed=False), record, "exit check failed", refusal=NotVerified("\n".join(lines)))
    override = m.override_reason if traffic is not None and traffic.status == "insufficient" else None
    unseen = f"; traffic not compared ({traffic.lines[0]})" if traffic is not None and traffic.status == "unavailable" \
        else ""
    return _Ran(Facts(), record, "exit check passed" + unseen, m.flags("on"), override)


def _close(m: _Move) -> _Ran:
    return _Ran(Facts(), m.stage.record, "stage done")


# What each event of an advance runs.
_STEPS: dict[Event, Callable[[_Move], _Ran]] = {Event.GATE: _gate, Event.APPLY: _apply, Event.VERIFY: _verify,
                                                Event.CLOSE: _close, Event.ENFORCE: _enforce}


def _check_mode(plan: Plan, mode: PlanMode) -> None:
    if plan.mode not in (None, mode):
        raise MeshstepError(
            f"plan {plan.name!r} is a {plan.mode}: " + ("pass --rehearse to walk it on its overlay"
                                                        if plan.mode == PlanMode.REHEARSAL else
                                                        "it walks the real cluster; to rehearse, make another plan "
                                                        "(meshstep plan new --name …) and advance it with --rehearse"))


def advance(store: PlanStore, plan: Plan, inventory: Inventory, actor: str, override_reason: str | None = None,
            rehearse: bool = False, evidence: Any = None, operator: Any = None) -> Stage:
    """Move the current stage one step, as the lifecycle table says: planned → ready (gate) → applied → verified
    (exit check) → done. A stage with nothing to apply whose gate and exit check pass is done in one call. With
    `rehearse`, the plan is walked on its overlay: applying is applying the stage's YAML to it, and the flags are
    left alone; the plan's first advance fixes whether it is a rehearsal or real, and the two never mix.
    `evidence` (telemetry.evidence.Evidence): the traffic the gate sees, and the before/after comparison that
    verification adds to the exit check of a real plan (a rehearsal has no traffic after). `operator`
    (planner.operate.Operator): meshstep applies the stage itself (or, in GitOps mode, waits until Argo CD or Flux
    has), then waits for Istio and bakes it on traffic, rolling it back by itself on a regression (under GitOps:
    stopping with the rollback to commit)."""
    stage = current_stage(plan)
    if stage is None:
        raise MeshstepError(f"plan {plan.name!r} is complete: every stage is done")
    mode = PlanMode.REHEARSAL if rehearse else PlanMode.REAL
    _check_mode(plan, mode)
    if operator is not None and (stopped := stop_refusal(plan)):
        raise stopped
    event = lifecycle.ADVANCE[stage.status].event
    if event == Event.VERIFY and stage.record.shadow == "shadow":
        event = Event.ENFORCE
    # A rehearsal on the target changes nothing there: the promotion rule holds real stages back only.
    if event == Event.GATE and not rehearse and (refusal := promotion_refusal(store, plan, stage)):
        raise NotPromotable(refusal)
    approval = approvals.apply_refusal_for(store, plan, stage) if event == Event.APPLY and not rehearse else None
    ran = _STEPS[event](_Move(plan, stage, inventory, rehearse, override_reason, evidence, approval, operator))
    to = lifecycle.next_status(stage.status, event, ran.facts)
    if to is None and ran.stop is not None:  # the stage stays where it is, unsafe: the plan stops all the same
        store.stop_plan(plan.id, ran.stop, actor, ran.reason)
    if to is None:
        raise ran.refusal or MeshstepError(f"stage {stage.order}: {stage.status} does not move on {event}")
    # Applied: the flags as they were go with the stage, so that a rollback can put them back. Done, the last stage
    # closes the plan in the same change.
    last = to == StageStatus.DONE and all(s.status == StageStatus.DONE or s.id == stage.id for s in plan.stages)
    moved = store.transition_stage(stage.id, to, actor, ("rehearsal: " if rehearse else "") + ran.reason,
                                   stage.version, override_reason=ran.override, record=ran.record, flags=ran.flags,
                                   keep_flags_before=to == StageStatus.APPLIED,
                                   plan_status="done" if last else None, plan_mode=mode, stop=ran.stop)
    _tell_moved(store, plan, stage, moved, actor)
    if ran.refusal is not None:
        raise ran.refusal
    return moved


def _tell_moved(store: PlanStore, plan: Plan, was: Stage, moved: Stage, actor: str) -> None:
    """The webhooks told of the move, of a gate that failed, and of a stage now waiting for approval."""
    facts = {"cluster": plan.cluster, "plan": plan.name, "stage": moved.order, "title": moved.title,
             "status": str(moved.status), "actor": str(actor)}
    what = f"stage {moved.order} ({moved.title}) of plan {plan.name} on {plan.cluster}"
    notify.tell("stage.transition", f"{what}: {was.status} → {moved.status} by {actor}", **facts)
    if moved.status == StageStatus.BLOCKED:
        notify.tell("gate.failed", f"{what}: its gate failed", **facts)
    if moved.status == StageStatus.READY and plan.mode != PlanMode.REHEARSAL and isinstance(
            refusal := approvals.apply_refusal_for(store, plan, moved), approvals.ApprovalNeeded):
        notify.tell("approval.needed", f"{what} waits for approval: {refusal}", **facts)


@dataclass(frozen=True)
class Rehearsed:
    moves: list[Stage]  # each move, in order, as it left its stage
    refusal: MeshstepError | None  # the first step refused (its stage and findings said), else None


def rehearse(store: PlanStore, plan: Plan, inventory: Inventory, actor: str, to: int | None = None,
             evidence: Any = None) -> Rehearsed:
    """Advance the plan on its overlay, move after move (each audited as `advance --rehearse` audits it), until
    stage `to` (default: the last) is done or a step is refused: a gate that fails, an exit check that does not
    pass. Nothing is overridden: a rehearsal that goes through says that the plan can be walked as it stands."""
    moved: list[Stage] = []
    while (stage := current_stage(plan)) is not None and (to is None or stage.order <= to):
        try:
            moved.append(advance(store, plan, inventory, actor, rehearse=True, evidence=evidence))
        except (GateBlocked, NotVerified) as refusal:
            return Rehearsed(moved, refusal)
        plan = store.get_plan(plan.id)
    return Rehearsed(moved, None)


def run(store: PlanStore, plan: Plan, read: Callable[[], Inventory], actor: str, operator: Any,
        evidence: Callable[[Inventory], Any], until: int | None = None, stages: int | None = None) -> Rehearsed:
    """Walk the plan's stages on the cluster itself, move after move (`advance` with `operator`: applied by
    meshstep or by GitOps, baked, rolled back on a regression), the cluster read again (`read`) before each move;
    until stage `until` is done or `stages` stages are, stopping at the first refusal: a gate that fails, an approval
    needed, a conflict or other refusal of the API server, a regression. An object changed since its gate ran sends
    the stage back to its gate once, which runs again. The cluster is read for the moves that judge it (a gate, a
    verification); applying uses the YAML and resourceVersions the gate took, closing nothing."""
    if stopped := stop_refusal(plan):
        return Rehearsed([], stopped)
    moved: list[Stage] = []
    regated: set[int] = set()
    inventory: Inventory | None = None
    while (stage := current_stage(plan)) is not None and (until is None or stage.order <= until) and (
            stages is None or sum(s.status == StageStatus.DONE for s in moved) < stages):
        if inventory is None or lifecycle.ADVANCE[stage.status].event not in (Event.APPLY, Event.CLOSE):
            inventory = read()
        try:
            moved.append(advance(store, plan, inventory, actor, evidence=evidence(inventory), operator=operator))
        except ApplyRefused as refusal:
            if refusal.code != "MST1002" or stage.id in regated:
                return Rehearsed(moved, refusal)
            regated.add(stage.id)
            operator.progress(f"{refusal}\nstage {stage.order} ({stage.title}): checking its gate again")
        except MeshstepError as refusal:
            return Rehearsed(moved, refusal)
        else:
            operator.progress(f"stage {moved[-1].order} ({moved[-1].title}): {moved[-1].status}")
        plan = store.get_plan(plan.id)
    return Rehearsed(moved, None)


@dataclass(frozen=True)
class RolledBack:
    stage: Stage
    undo_yaml: str  # "" when there is nothing to undo
    said: str  # what happened, in a sentence


def _flags_back(plan: Plan, stage: Stage) -> list[FlagChange]:
    """The stage's flags as they were before it (removed where none was recorded); none when the stage changed
    none: it was only ready, or rehearsed."""
    if stage.status == StageStatus.READY or plan.mode == PlanMode.REHEARSAL:
        return []
    before = {(f.feature, f.scope): f for f in stage.record.flags_before}
    return [FlagChange(s.feature, s.scope, prev.params, prev.state) if (prev := before.get((s.feature, s.scope)))
            else FlagChange(s.feature, s.scope, None, None) for s in stage_spec(stage).steps]


def _rollback_seen(stage: Stage, inventory: Inventory, operator: Any) -> str:
    """A stage GitOps applied, rolled back by GitOps: waited for until the cluster holds its rollback (each object
    as before the stage, what it created gone). meshstep never puts it back itself: GitOps would sync it again."""
    rec = stage.record
    if not operator.gitops:
        raise MeshstepError(f"{_rollback_to_commit(stage)} (with --gitops, not --apply)")
    what = f"the rollback of stage {stage.order} ({stage.title})"
    seen = operator.seen(_sides(rec.rollback_yaml, rec.apply_yaml or "", inventory), what, _rollback_to_commit(stage))
    return (f"stage {stage.order} ({stage.title}) rolled back; rollback seen on the cluster (applied by GitOps): "
            f"{', '.join(named(tuple(a['key'])) for a in seen)}")


class RollbackBy(StrEnum):
    """How a stage is rolled back (`rollback_by`): by leaving the overlay, by GitOps, by meshstep, or by the team."""

    OVERLAY = "overlay"  # rehearsed: its changes leave the plan's overlay
    GITOPS = "gitops"  # GitOps applied it: its rollback is committed, and waited for until the cluster holds it
    MESHSTEP = "meshstep"  # meshstep applied it: meshstep puts each object back as it was
    TEAM = "team"  # the team applies the YAML that undoes it (none when the cluster does not have its changes)

    @property
    def operated(self) -> bool:
        """Whether the rollback needs an operator on the cluster (planner.operate.Operator)."""
        return self in (RollbackBy.GITOPS, RollbackBy.MESHSTEP)

    @property
    def said(self) -> str:
        """What the rollback will do, said before it is asked for."""
        return {
            RollbackBy.OVERLAY: "It was rehearsed: its changes leave the plan's overlay; the cluster and the flags "
                                "are left as they are.",
            RollbackBy.GITOPS: "Its flags go back to what they were before it; GitOps applied it: commit its "
                               "rollback, and meshstep waits until the cluster holds it.",
            RollbackBy.MESHSTEP: "Its flags go back to what they were before it; meshstep applied it: meshstep puts "
                                 "each object back as it was.",
            RollbackBy.TEAM: "Its flags go back to what they were before it; you get the YAML that undoes it on the "
                             "cluster.",
        }[self]


def rollback_by(plan: Plan, stage: Stage, reachable: bool) -> RollbackBy:
    """How `rollback` undoes `stage`: a rehearsed one leaves the overlay; one GitOps or meshstep applied is rolled
    back the same way when meshstep reaches the cluster (`reachable`: an operator is given), else by the team."""
    if plan.mode == PlanMode.REHEARSAL:
        return RollbackBy.OVERLAY
    if reachable and stage.record.gitops:
        return RollbackBy.GITOPS
    if reachable and stage.record.applied:
        return RollbackBy.MESHSTEP
    return RollbackBy.TEAM


def rollback(store: PlanStore, plan: Plan, inventory: Inventory, actor: str, reason: str,
             operator: Any = None) -> RolledBack:
    """Roll back the stage in flight (else the last one this plan did): its flags return to what they were before
    it, and the rollback YAML (taken when its gate passed, before anything was applied) is returned for the team to
    apply, unless the cluster does not have the stage's changes (then there is nothing to undo, and it says so). In
    a rehearsal the stage simply leaves the plan's overlay. With `operator`, a stage meshstep applied itself is put
    back on the cluster by meshstep: each object as it was before the stage (created ones deleted); a stage GitOps
    applied is rolled back by GitOps, and an operator in GitOps mode waits until the cluster holds its rollback."""
    stage = rollback_target(plan)
    if stage is None:
        found = [str(s.order) for s in plan.stages if found_on(s) and s.features]
        why = (f"; stage(s) {', '.join(found)} were already on in the cluster when the plan was made: meshstep did "
               "not turn them on, so it does not roll them back" if found else "")
        raise MeshstepError(f"plan {plan.name!r} has no stage of its own applied or done to roll back{why}")
    if not reason:
        raise MeshstepError("a rollback needs a reason (--reason)")
    to = lifecycle.next_status(stage.status, Event.ROLLBACK, Facts())
    assert to is not None, "rollback_target picks a stage the lifecycle lets roll back"
    cfg = overlay_at(plan, inventory, stage).config(stage)
    # The rollback restores the objects the stage changed and deletes those it created: nothing to undo when that
    # changes nothing in the cluster now (the stage's YAML was never applied there).
    restore = planner.plan.objects_of(cfg.rollback_yaml)
    created = deletions_of(cfg.rollback_yaml)
    undo = cfg.rollback_yaml if not changes.diff(restore, created, cluster_now(plan, inventory, stage)).empty else ""
    record, by = stage.record, rollback_by(plan, stage, operator is not None)
    if by == RollbackBy.OVERLAY:  # the cluster never had its changes: nothing for the team to apply
        said, undo = f"stage {stage.order} ({stage.title}) rolled back: its changes leave the plan's overlay", ""
    elif by == RollbackBy.GITOPS:
        said, undo, record = _rollback_seen(stage, inventory, operator), "", msgspec.structs.replace(
            stage.record, applied=(), gitops="")
        reason = f"{reason}; {said}"
    elif by == RollbackBy.MESHSTEP:
        back = operator.put_back(stage.record.applied)
        undo, record = "", msgspec.structs.replace(stage.record, applied=(), shadow="")
        said = (f"stage {stage.order} ({stage.title}) rolled back; put back on the cluster as before it: "
                f"{', '.join(back)}")
        reason = f"{reason}; {said}"
    elif undo:
        said = f"stage {stage.order} ({stage.title}) rolled back; apply this to undo it"
    else:
        said = (f"stage {stage.order} ({stage.title}) rolled back; the cluster does not have its changes, so there "
                "is nothing to undo")
    moved = store.transition_stage(stage.id, to, actor, reason, stage.version, flags=_flags_back(plan, stage),
                                   plan_status="active" if plan.status == "done" else None,
                                   record=record if record is not stage.record else None)
    notify.tell("stage.rollback", f"{said} (by {actor}: {reason})", cluster=plan.cluster, plan=plan.name,
                stage=moved.order, title=moved.title, status=str(moved.status), actor=str(actor))
    return RolledBack(moved, undo, said)
