"""The few store operations the plan engine needs: `state.store.Store` provides them on SQLite or PostgreSQL, and
anything else that does (a test's in-memory store) can stand in for it, so the engine is tested without a
database."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from state.models import AuditEvent, Cluster, Plan, Stage, StageRecord
from state.store import FlagChange


class PlanStore(Protocol):
    def create_plan(self, cluster: str, name: str, template: str, stages: Sequence[Mapping[str, Any]],
                    actor: str, reason: str = "", flags: Sequence[FlagChange] = (),
                    left_out: Sequence[Mapping[str, Any]] = (), promoted_from: int | None = None,
                    promotion_after: int | None = None, verify: Mapping[str, Any] | None = None,
                    waves: Mapping[str, Any] | None = None) -> Plan:
        """A plan with its stages (title, goal, features, optionally status and record), in one audited change;
        `flags` are recorded where nothing is recorded for their feature and scope yet."""
        ...

    def get_plan(self, plan_id: int) -> Plan:
        ...

    def list_plans(self, cluster: str | None = None) -> list[Plan]:
        ...

    def delete_plan(self, plan_id: int, actor: str, reason: str) -> None:
        ...

    def add_stage(self, plan_id: int, spec: Mapping[str, Any], actor: str, reason: str) -> Stage:
        ...

    def transition_stage(self, stage_id: int, status: str, actor: str, reason: str,
                         expected_version: int | None = None, override_reason: str | None = None,
                         record: StageRecord | None = None, flags: Sequence[FlagChange] = (),
                         keep_flags_before: bool = False, plan_status: str | None = None,
                         plan_mode: str | None = None, stop: Mapping[str, Any] | None = None) -> Stage:
        """The stage moved to `status` with its flags (and its plan's status, mode and stop) in one change; with
        `keep_flags_before`, the flags `flags` replace are kept in its record's `flags_before`."""
        ...

    def stop_plan(self, plan_id: int, stop: Mapping[str, Any], actor: str, reason: str) -> Plan:
        """The plan stopped ({code, reason, stage, title}) without a move of its stage."""
        ...

    def resume_plan(self, plan_id: int, actor: str, reason: str, expected_version: int | None = None) -> Plan:
        """The plan's stop cleared, with who and why."""
        ...

    def list_clusters(self) -> list[Cluster]:
        """The clusters recorded, with each one's approval policy (planner.approvals)."""
        ...

    def audit_events(self, since: datetime | None = None) -> list[AuditEvent]:
        """The audit trail since a time: who moved a stage to ready asked for it to be applied."""
        ...
