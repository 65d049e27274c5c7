"""The plan engine's store protocol (planner.storage.PlanStore) kept in memory: what the engine's tests run on besides
the real Store, to show the engine needs no more of a store than the protocol says. Like the real one, it hands out
copies (a plan read stays as it was read), checks versions and plan modes, and moves flags with a stage."""
from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from cluster.errors import ConflictError, MeshstepError
from state.models import AuditEvent, Cluster, Flag, FlagBefore, Plan, PlanMode, Stage, StageRecord, StageStatus, utcnow
from state.store import FlagChange


class MemoryStore:
    def __init__(self) -> None:
        self._plans: dict[int, Plan] = {}
        self._flags: dict[tuple[str, str, str], Flag] = {}
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ the protocol

    def create_plan(self, cluster: str, name: str, template: str, stages: Sequence[Mapping[str, Any]],
                    actor: str, reason: str = "", flags: Sequence[FlagChange] = (),
                    left_out: Sequence[Mapping[str, Any]] = (), promoted_from: int | None = None,
                    promotion_after: int | None = None, verify: Mapping[str, Any] | None = None,
                    waves: Mapping[str, Any] | None = None) -> Plan:
        if any(p.cluster == cluster and p.name == name for p in self._plans.values()):
            raise MeshstepError(f"a plan named {name!r} already exists for cluster {cluster}")
        plan = Plan(id=next(self._ids), name=name, cluster=cluster, template=template, created_by=actor,
                    left_out=[dict(x) for x in left_out], promotion_after=promotion_after, verify=dict(verify or {}),
                    waves=dict(waves) if waves else None)
        if promoted_from is not None:
            source = self._plan(promoted_from)
            plan.promoted_from = {"plan_id": source.id, "cluster": source.cluster, "name": source.name}
        plan.stages = [self._new_stage(plan, order, spec, actor) for order, spec in enumerate(stages, 1)]
        self._plans[plan.id] = plan
        for f in flags:
            if f.state is not None and (cluster, f.feature, f.scope) not in self._flags:
                self._put_flag(cluster, f, actor)
        return self._copy(plan)

    def get_plan(self, plan_id: int) -> Plan:
        return self._copy(self._plan(plan_id))

    def list_plans(self, cluster: str | None = None) -> list[Plan]:
        return [self._copy(p) for p in self._plans.values() if cluster in (None, p.cluster)]

    def delete_plan(self, plan_id: int, actor: str, reason: str) -> None:
        del self._plans[self._plan(plan_id).id]

    def add_stage(self, plan_id: int, spec: Mapping[str, Any], actor: str, reason: str) -> Stage:
        plan = self._plan(plan_id)
        stage = self._new_stage(plan, len(plan.stages) + 1, spec, actor)
        plan.stages = [*plan.stages, stage]
        return self._copy(plan).stages[-1]

    def transition_stage(self, stage_id: int, status: str, actor: str, reason: str,
                         expected_version: int | None = None, override_reason: str | None = None,
                         record: StageRecord | None = None, flags: Sequence[FlagChange] = (),
                         keep_flags_before: bool = False, plan_status: str | None = None,
                         plan_mode: str | None = None, stop: Mapping[str, Any] | None = None) -> Stage:
        plan, stage = next((p, s) for p in self._plans.values() for s in p.stages if s.id == stage_id)
        if expected_version is not None and expected_version != stage.version:
            raise ConflictError(f"stage:{stage_id} was changed: you expected version {expected_version}")
        if plan_mode is not None:
            if plan.mode not in (None, plan_mode):
                raise MeshstepError(f"plan {plan.name!r} is a {plan.mode} plan")
            plan.mode = PlanMode(plan_mode)
        record = stage.record if record is None else record
        if keep_flags_before:
            was = [self._flags.get((plan.cluster, f.feature, f.scope)) for f in flags]
            record = msgspec.structs.replace(record, flags_before=tuple(
                FlagBefore(old.feature, old.scope, old.params, old.state) for old in was if old is not None))
        stage.status, stage.override_reason, stage.version = StageStatus(status), override_reason, stage.version + 1
        stage.data, stage.updated_by, stage.updated_at = record.to_json(), actor, utcnow()
        if plan_status is not None:
            plan.status = plan_status
        if stop is not None:
            plan.stopped = {**stop, "by": actor, "at": utcnow().isoformat()}
        for f in flags:
            if f.state is None:
                self._flags.pop((plan.cluster, f.feature, f.scope), None)
            else:
                self._put_flag(plan.cluster, f, actor)
        return next(s for s in self._copy(plan).stages if s.id == stage_id)

    def stop_plan(self, plan_id: int, stop: Mapping[str, Any], actor: str, reason: str) -> Plan:
        plan = self._plan(plan_id)
        plan.stopped = {**stop, "by": actor, "at": utcnow().isoformat()}
        return self._copy(plan)

    def resume_plan(self, plan_id: int, actor: str, reason: str, expected_version: int | None = None) -> Plan:
        plan = self._plan(plan_id)
        if not reason or plan.stopped is None:
            raise MeshstepError(f"plan {plan.name!r}: a resume needs a reason and a stop")
        plan.stopped = None
        return self._copy(plan)

    # ------------------------------------------------------------------ what the tests read besides

    def list_clusters(self) -> list[Cluster]:
        return []  # no cluster has a policy: nothing needs approval

    def audit_events(self, since: datetime | None = None) -> list[AuditEvent]:
        return []

    def list_flags(self, cluster: str | None = None) -> list[Flag]:
        return [copy.copy(f) for key, f in sorted(self._flags.items()) if cluster in (None, key[0])]

    # ------------------------------------------------------------------ inside

    def _plan(self, plan_id: int) -> Plan:
        if plan_id not in self._plans:
            raise MeshstepError(f"no plan with id {plan_id}")
        return self._plans[plan_id]

    def _new_stage(self, plan: Plan, order: int, spec: Mapping[str, Any], actor: str) -> Stage:
        record = spec.get("record") or StageRecord()
        return Stage(id=next(self._ids), plan_id=plan.id, order=order, title=spec["title"], goal=spec.get("goal", ""),
                     features=list(spec.get("features", [])), status=StageStatus(spec.get("status", "planned")),
                     data=record.to_json(), updated_by=actor)

    def _put_flag(self, cluster: str, f: FlagChange, actor: str) -> None:
        old = self._flags.get((cluster, f.feature, f.scope))
        self._flags[cluster, f.feature, f.scope] = Flag(cluster=cluster, feature=f.feature, scope=f.scope,
                                                        params=dict(f.params or {}), state=f.state,
                                                        version=old.version + 1 if old else 1, changed_by=actor)

    @staticmethod
    def _copy(plan: Plan) -> Plan:
        """A plan and its stages as they are now, apart from what the store keeps."""
        out = Plan(**copy.deepcopy(plan.model_dump()))
        out.stages = [Stage(**copy.deepcopy(s.model_dump())) for s in plan.stages]
        return out
