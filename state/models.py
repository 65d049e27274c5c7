"""Tables of what the team decided: clusters, feature flags, plans and their stages, the audit chain, and the
inventory history. Only `state.store` writes them.

Times are aware UTC: SQLModel (>= 0.0.45) stores and returns them so on SQLite and PostgreSQL alike, which keeps an
audit event's hash stable across a round trip through either. No `from __future__ import annotations` here:
SQLModel resolves relationship annotations when the class is created."""
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import msgspec
from sqlalchemy import JSON, String, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Relationship, SQLModel

from cluster.errors import MeshstepError

FLAG_STATES = ("off", "enabling", "on", "disabling")
PLAN_STATUSES = ("active", "done", "abandoned")


class StageStatus(StrEnum):
    """The statuses a stage may hold, as stored. What moves a stage between them is planner.lifecycle's alone."""

    PLANNED = "planned"
    BLOCKED = "blocked"
    READY = "ready"
    APPLIED = "applied"
    VERIFIED = "verified"
    DONE = "done"
    ROLLED_BACK = "rolled_back"


class PlanMode(StrEnum):
    """How a plan's stages are walked, fixed by its first advance: the two never mix in one plan."""

    REAL = "real"  # on the real cluster
    REHEARSAL = "rehearsal"  # on the plan's overlay


class _Named(TypeDecorator):
    """A StrEnum kept as its value in a plain string column (no database enum type: the schema is unchanged) and
    read back as the member."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[StrEnum]) -> None:
        super().__init__()
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: Any, dialect: Any) -> StrEnum | None:
        return None if value is None else self.enum(value)


class FlagBefore(msgspec.Struct, frozen=True):
    """A flag as it was recorded before a stage moved it (read in the same transaction), for the rollback."""

    feature: str
    scope: str
    params: dict[str, Any]
    state: str


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return str(value)
    raise NotImplementedError(f"{type(value).__name__} is not JSON")


class StageRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a stage keeps between its moves, stored as the JSON of `Stage.data`: only what differs from these
    defaults is written, so a stage stored by an older meshstep (which wrote the same keys when it had them) reads
    the same. The gate's findings and the verification are kept in their producers' JSON (analysis' Message,
    telemetry's Verification): storage sits below both and does not read them."""

    found_on: bool = False  # already on in the cluster when the plan was made: its config is the cluster's own
    promoted_from_stage: int | None = None  # a promoted plan's stage: the source plan's stage it stands for
    gate: tuple[dict[str, Any], ...] | None = None  # the entry gate's findings when it last ran
    # Taken when the gate passed (None until then): the YAML to apply, the rollback restoring the cluster the stage
    # started from, the commands to run, and the analysis errors there already (the exit check blames the stage
    # only for new ones).
    apply_yaml: str | None = None
    rollback_yaml: str = ""
    notes: tuple[str, ...] = ()
    baseline_errors: tuple[str, ...] = ()
    verification: dict[str, Any] | None = None  # the traffic before and after, as the exit check compared it
    flags_before: tuple[FlagBefore, ...] = ()  # the flags the stage's apply replaced, for its rollback
    # Approvals and rejections of its YAML, each bound to the YAML's hash (planner.approvals reads them).
    approvals: tuple[dict[str, Any], ...] = ()
    # Applied by meshstep itself (plan advance --apply): the resourceVersion of each object the gate read, sent as
    # the apply's precondition; each object as it was before the stage and as the apply left it, for the rollback;
    # and, for an authorization stage applied in shadow first, "shadow" until it is enforced ("enforced").
    versions: dict[str, str] = msgspec.field(default_factory=dict)
    applied: tuple[dict[str, Any], ...] = ()
    shadow: str = ""
    # Applied by GitOps (plan advance --gitops: Argo CD or Flux applied the export, meshstep saw it on the cluster):
    # "applied"; "rolling back" once its bake failed, until its rollback is seen on the cluster.
    gitops: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "StageRecord":
        """Raises msgspec.ValidationError, naming the field, for data no meshstep wrote."""
        return msgspec.convert(data or {}, cls)

    def to_json(self) -> dict[str, Any]:
        """As the JSON column holds it (lists, not tuples), so that a stage compares equal after a round trip; a
        text of a str subclass (a message filled from its template) as its text."""
        return msgspec.json.decode(msgspec.json.encode(self, enc_hook=_as_text))

    @property
    def taken(self) -> bool:
        """The YAML was taken when the gate passed (a stage found on never has any)."""
        return self.apply_yaml is not None


GENESIS_HASH = "0" * 64  # prev_hash of the first audit event


def utcnow() -> datetime:
    return datetime.now(UTC)


def flag_target(cluster: str, feature: str, scope: str) -> str:
    """How audit events name a flag."""
    return f"flag:{cluster}/{feature}/{scope}"


class Cluster(SQLModel, table=True):
    __tablename__ = "clusters"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    source: str | None = None  # how to reach it: a --source value (context:NAME, snapshot path, demo)
    # Who must approve a stage before it is applied, and when applies may happen (planner.approvals.Policy).
    policy: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow)


class Flag(SQLModel, table=True):
    """A feature the team wants in a state for one scope ("mesh" or a namespace) of one cluster."""

    __tablename__ = "flags"
    __table_args__ = (UniqueConstraint("cluster", "feature", "scope"),)

    id: int | None = Field(default=None, primary_key=True)
    cluster: str = Field(foreign_key="clusters.name", index=True)
    feature: str
    scope: str
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    state: str = "on"
    version: int = 1  # bumped on every change; writers pass the version they read (optimistic concurrency)
    changed_by: str
    changed_at: datetime = Field(default_factory=utcnow)
    reason: str = ""


class Plan(SQLModel, table=True):
    __tablename__ = "plans"
    __table_args__ = (UniqueConstraint("cluster", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str
    cluster: str = Field(foreign_key="clusters.name", index=True)
    template: str
    status: str = "active"
    # real or rehearsal, set by the plan's first advance (None until then): the two never mix in one plan.
    mode: PlanMode | None = Field(default=None, sa_type=_Named(PlanMode))
    # Steps the template had that this cluster cannot have yet, with the reason ([{stage, feature, scope, reason}]).
    left_out: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    # A promoted plan: the plan it was promoted from ({plan_id, cluster, name}), and how long (seconds) each stage
    # must have been done there, without a rollback since, before it may start here.
    promoted_from: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    promotion_after: int | None = None
    # The verification thresholds the team set for this plan (telemetry.verification.Thresholds values: only those that
    # differ from the defaults); a command's own --verify goes on top of them for one verification.
    verify: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    # A plan in waves (planner.waves): the sizes it was cut by, each wave's namespaces (the pilot first) and why the
    # pilot ({spec, waves, pilot_reasons}); None: one stage per namespace.
    waves: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    # Stopped after a stage meshstep applied was rolled back by itself ({code, reason, stage, title, by, at}): no
    # stage is applied by meshstep (--apply) until someone resumes it with a reason; None: not stopped.
    stopped: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    version: int = 1
    created_by: str
    created_at: datetime = Field(default_factory=utcnow)

    # Loaded with the plan, so a plan handed out by the store still has its stages after the session ends.
    stages: list["Stage"] = Relationship(
        back_populates="plan",
        sa_relationship_kwargs={"lazy": "selectin", "order_by": "Stage.order", "cascade": "all, delete-orphan"})


class Stage(SQLModel, table=True):
    __tablename__ = "stages"
    __table_args__ = (UniqueConstraint("plan_id", "order"),)

    id: int | None = Field(default=None, primary_key=True)
    plan_id: int = Field(foreign_key="plans.id", index=True)
    order: int  # 1-based position in the plan
    title: str
    goal: str = ""
    features: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)  # [{feature, scope, params}]
    status: StageStatus = Field(default=StageStatus.PLANNED, sa_type=_Named(StageStatus))
    override_reason: str | None = None  # why someone moved it past a failing gate
    # The JSON of its StageRecord (read `record`); written by the store alone.
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    version: int = 1
    updated_by: str
    updated_at: datetime = Field(default_factory=utcnow)

    plan: Plan | None = Relationship(back_populates="stages")

    @property
    def record(self) -> StageRecord:
        """What the stage keeps between its moves, typed."""
        try:
            return StageRecord.from_json(self.data)
        except msgspec.ValidationError as e:
            raise MeshstepError(f"stage {self.id} ({self.title}): its stored data does not read ({e}); the database "
                                "was changed outside meshstep: restore it from a backup") from None


class AuditEvent(SQLModel, table=True):
    """Append-only; `hash` covers every other field and the previous event's hash (see state.audit)."""

    __tablename__ = "audit_events"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    actor: str
    at: datetime
    action: str  # flag.set, flag.unset, plan.create, stage.status, …
    target: str = Field(index=True)  # flag:CLUSTER/FEATURE/SCOPE, plan:ID, stage:ID, cluster:NAME
    before: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    after: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    reason: str = ""
    # How the actor is known (state.actors): {"verified": true, issuer, subject, email} or self-declared; None for
    # events written before meshstep recorded it (their hashes do not cover it).
    identity: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    prev_hash: str
    hash: str


class AuditHead(SQLModel, table=True):
    """The one row naming the last event of the chain. Writers lock it to append in order, and verify compares
    it with the last event, so removing events from the end of the chain is noticed too."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str = GENESIS_HASH


class InventorySnapshot(SQLModel, table=True):
    """A summary of one inventory taken, for the adoption-progress chart."""

    __tablename__ = "inventory_snapshots"

    id: int | None = Field(default=None, primary_key=True)
    cluster: str = Field(foreign_key="clusters.name", index=True)
    taken_at: datetime = Field(default_factory=utcnow)
    source: str = ""
    namespaces_in_mesh: int = 0
    namespaces_total: int = 0
    pods_in_mesh: int = 0
    pods_total: int = 0
    features_observed: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)  # [{feature, scope}]
