"""The only writer of the state database.

Every change runs in one transaction that first takes the audit chain head (BEGIN IMMEDIATE on SQLite, a row
lock on PostgreSQL), so writers are serialised, version checks see the latest committed row, and the audit event
is appended in order and committed with the change — or neither is."""
from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import platformdirs
from sqlalchemy import Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, SQLModel, select

from cluster.errors import ConflictError, MeshstepError
from state.actors import identity_of
from state.audit import AuditKey, audit_key, chain_hash, write_checkpoint
from state.models import (
    FLAG_STATES,
    PLAN_STATUSES,
    AuditEvent,
    AuditHead,
    Cluster,
    Flag,
    FlagBefore,
    InventorySnapshot,
    Plan,
    PlanMode,
    Stage,
    StageRecord,
    StageStatus,
    flag_target,
    utcnow,
)

MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x6D657368  # any constant; PostgreSQL advisory lock id for "a migration is running"
# An execution option on the writer engine: its SQLite transactions start with BEGIN IMMEDIATE.
_IMMEDIATE = "meshstep_begin_immediate"
_SCOPE = re.compile(r"^(mesh|[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$")


def default_url() -> str:
    """The SQLite file in the user's data directory (created on first use)."""
    path = platformdirs.user_data_path("meshstep", appauthor=False) / "meshstep.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def create_db_engine(url: str) -> Engine:
    """An engine for a SQLAlchemy URL; SQLite gets WAL, foreign keys and transactions it begins itself."""
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url)
    engine = create_engine(url, connect_args={"timeout": 60})  # wait for the write lock rather than fail

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite would begin transactions lazily, only before a write; we begin them ourselves (below).
        dbapi_conn.isolation_level = None
        for pragma in ("journal_mode=WAL", "foreign_keys=ON"):
            dbapi_conn.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # A writer takes the write lock up front: a deferred transaction that reads and then writes fails with
        # "database is locked" when another writer got there in between, instead of waiting its turn.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_IMMEDIATE) else "BEGIN")

    return engine


def schema_head() -> str:
    """The newest schema revision: each migration's file name starts with its revision (0001_initial.py)."""
    return max(p.name.partition("_")[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def _at_head(engine: Engine) -> bool:
    """Whether the database's schema is the newest one (the usual case): then alembic, a tenth of a second to
    import on every start of the command and the app, is not needed."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [schema_head()]
    except SQLAlchemyError:  # no alembic_version table yet: a new database
        return False


class UnknownSchema(MeshstepError):
    """The database's schema revision is not one this meshstep's migrations know (a newer meshstep wrote it)."""


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to `revision`, holding the write lock so that concurrent starts migrate once; raises
    UnknownSchema for a revision that is not ours."""
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    with engine.connect() as conn:
        conn = conn.execution_options(**{_IMMEDIATE: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, revision)
            except CommandError as e:
                raise UnknownSchema(str(e)) from e


def _must_exist(engine: Engine, shown: str) -> None:
    """Refuse a database that is not there (rather than make an empty one): a SQLite file that does not exist, or a
    database without meshstep's tables."""
    u = engine.url
    if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:") and not Path(u.database).exists():
        raise MeshstepError(f"no state database at {u.database} (check --db / MESHSTEP_DATABASE_URL)")
    if not inspect(engine).has_table("audit_head"):
        raise MeshstepError(f"the state database {shown} has no meshstep tables (check --db / MESHSTEP_DATABASE_URL)")


# What a failure means, by words of the driver's message: the fix to suggest.
_HINTS = (
    ("readonly", "it is read-only: check the file's and its directory's permissions"),
    ("read-only", "it is read-only: check the permissions"),
    ("malformed", "the file is damaged: restore it from a backup"),
    ("not a database", "the file is not a SQLite database, or is damaged: restore it from a backup"),
    ("no such table", "a table is missing: the database was changed outside meshstep; restore it from a backup"),
    ("does not exist", "a table is missing: the database was changed outside meshstep; restore it from a backup"),
    ("locked", "another process holds it locked: retry"),
)


def _reason(e: SQLAlchemyError) -> str:
    """The driver's own message (its first line: SQLAlchemy's adds the statement and its parameters), and a fix."""
    orig = getattr(e, "orig", None)
    text_ = (str(orig) if orig is not None else str(e)).strip().splitlines()
    first = text_[0] if text_ else type(e).__name__
    hint = next((h for word, h in _HINTS if word in first.lower()), None)
    return f"{first} ({hint})" if hint else first


def _snap(row: SQLModel) -> dict[str, Any]:
    return row.model_dump(mode="json")


def _choice(what: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise MeshstepError(f"unknown {what} {value!r}: choose one of {', '.join(allowed)}")


def _version(v: int) -> str:
    return f"version {v}" if v else "absent"


@dataclass(frozen=True)
class FlagChange:
    """A flag a stage transition moves with it; `state` None removes the flag (it was not recorded before)."""

    feature: str
    scope: str
    params: Mapping[str, Any] | None
    state: str | None


@dataclass
class _Change:
    """One write transaction: the session, the locked chain head, who is acting, why, and when."""

    session: Session
    head: AuditHead
    actor: str
    reason: str
    at: datetime
    key: AuditKey
    identity: dict[str, Any]

    def record(self, action: str, target: str, before: dict | None, after: dict | None) -> None:
        """Append the audit event of this change to the chain."""
        ev = AuditEvent(seq=self.head.seq + 1, actor=self.actor, at=self.at, action=action, target=target,
                        before=before, after=after, reason=self.reason, identity=self.identity,
                        prev_hash=self.head.hash, hash="")
        ev.hash = chain_hash(ev, self.key)
        self.head.seq, self.head.hash = ev.seq, ev.hash
        self.session.add(ev)

    def check_version(self, target: str, expected: int | None, current: int) -> None:
        """Raise ConflictError, naming who changed the record last, unless it is at the expected version (0:
        absent); None expects nothing."""
        if expected is None or expected == current:
            return
        last = _last_event(self.session, target)
        who = (f" by {last.actor} at {last.at:%Y-%m-%d %H:%M:%S} UTC ({last.action}"
               f"{f': {last.reason}' if last.reason else ''})" if last else "")
        raise ConflictError(f"{target} was changed{who}: you expected {_version(expected)}, it is now "
                            f"{_version(current)}; reload it and try again")

    def cluster(self, name: str) -> Cluster:
        """The cluster row, created (and audited) on first mention."""
        row = self.session.exec(select(Cluster).where(Cluster.name == name)).first()
        if row is None:
            row = Cluster(name=name, created_at=self.at)
            self.session.add(row)
            self.session.flush()
            self.record("cluster.add", f"cluster:{name}", None, _snap(row))
        return row


def _last_event(s: Session, target: str) -> AuditEvent | None:
    return s.exec(select(AuditEvent).where(AuditEvent.target == target)
                  .order_by(AuditEvent.seq.desc()).limit(1)).first()


def _new_stage(ch: _Change, order: int, spec: Mapping[str, Any]) -> Stage:
    """A stage from its spec: title, goal, features ([{feature, scope, params}]), optionally status and record
    (a StageRecord)."""
    status = spec.get("status", StageStatus.PLANNED)
    _choice("stage status", status, tuple(StageStatus))
    record = spec.get("record") or StageRecord()
    return Stage(order=order, title=spec["title"], goal=spec.get("goal", ""), features=list(spec.get("features", [])),
                 status=StageStatus(status), data=record.to_json(), updated_by=ch.actor, updated_at=ch.at)


class Store:
    """Flags, plans, audit trail and inventory history in one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._key: AuditKey | None = None
        self._writer = engine.execution_options(**{_IMMEDIATE: True})
        # Reads see one consistent snapshot (SQLite transactions already do).
        self._reader = (engine.execution_options(isolation_level="REPEATABLE READ")
                        if engine.dialect.name == "postgresql" else engine)

    @classmethod
    def open(cls, url: str | None = None, create: bool = True) -> Store:
        """Open (creating and migrating as needed) the database at `url`, $MESHSTEP_DATABASE_URL, or the
        default SQLite file; with `create` False, one that does not exist yet (or has no meshstep tables) is an
        error, not made."""
        url = url or os.environ.get("MESHSTEP_DATABASE_URL") or default_url()
        shown = re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)
        try:
            engine = create_db_engine(url)
            if not create:
                _must_exist(engine, shown)
            if not _at_head(engine):
                migrate(engine)
        except SQLAlchemyError as e:  # a bad URL or an unreachable server is the user's to fix, not a traceback
            raise MeshstepError(f"cannot open the state database {shown}: {_reason(e)} "
                                "(check --db / MESHSTEP_DATABASE_URL)") from None
        except ImportError as e:  # a dialect SQLAlchemy knows, without its driver (mysql://, oracle://)
            raise MeshstepError(f"cannot open the state database {shown}: its driver is not installed ({e}); "
                                "meshstep keeps state in SQLite (sqlite:///PATH) or PostgreSQL "
                                "(postgresql+psycopg://USER@HOST/DB)") from None
        except UnknownSchema as e:
            raise MeshstepError(f"the state database {shown} has a schema this meshstep does not know ({e}): "
                                "it was written by a newer meshstep; upgrade meshstep") from e
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def identity(self) -> str:
        """The database as checkpoints name it: its URL, a SQLite file's path made absolute."""
        u = self.engine.url
        if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:"):
            return f"sqlite:///{Path(u.database).resolve()}"
        return self.url

    @property
    def audit_key(self) -> AuditKey:
        """The key of the chain's HMACs (read once, on first use)."""
        if self._key is None:
            self._key = audit_key()
        return self._key

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A session reading one consistent snapshot of the database."""
        with self._errors(), Session(self._reader, expire_on_commit=False) as s, s.begin():
            yield s

    @contextmanager
    def _change(self, actor: str, reason: str) -> Iterator[_Change]:
        if not actor:
            raise MeshstepError("every change needs an actor: pass --actor or set MESHSTEP_ACTOR")
        key = self.audit_key
        with self._errors(), Session(self._writer, expire_on_commit=False) as s, s.begin():
            head = s.exec(select(AuditHead).with_for_update()).one()
            seq = head.seq
            ch = _Change(s, head, actor, reason, utcnow(), key, identity_of(actor))
            yield ch
        if ch.head.seq != seq:  # committed: a checkpoint outside the database (see state.audit)
            write_checkpoint(self.identity, ch.head.seq, ch.head.hash, key)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """A database failure as one line naming the database and what to do, never the SQL and its parameters."""
        try:
            yield
        except SQLAlchemyError as e:
            raise MeshstepError(f"the state database {self.url}: {_reason(e)}") from None

    # ------------------------------------------------------------------ clusters

    def set_cluster(self, name: str, source: str | None, actor: str, reason: str = "") -> Cluster:
        """Record how to reach a cluster (a --source value)."""
        with self._change(actor, reason) as ch:
            row = ch.cluster(name)
            before = _snap(row)
            row.source = source
            ch.session.add(row)
            ch.record("cluster.set", f"cluster:{name}", before, _snap(row))
        return row

    def set_policy(self, name: str, policy: Mapping[str, Any], actor: str, reason: str) -> Cluster:
        """Record a cluster's approval policy and change windows (planner.approvals reads them)."""
        with self._change(actor, reason) as ch:
            row = ch.cluster(name)
            before = _snap(row)
            row.policy = dict(policy)
            ch.session.add(row)
            ch.record("policy.set", f"cluster:{name}", before, _snap(row))
        return row

    def list_clusters(self) -> list[Cluster]:
        with self.reader() as s:
            return list(s.exec(select(Cluster).order_by(Cluster.name)))

    # ------------------------------------------------------------------ flags

    def set_flag(self, cluster: str, feature: str, scope: str, params: Mapping[str, Any], state: str, actor: str,
                 reason: str, expected_version: int | None = None) -> Flag:
        """Record that `feature` should be in `state` with `params` in `scope` ("mesh" or a namespace).

        `expected_version` is the version the caller read (0: it must not exist yet); None overwrites."""
        with self._change(actor, reason) as ch:
            return self._put_flag(ch, cluster, feature, scope, params, state, expected_version)

    def _put_flag(self, ch: _Change, cluster: str, feature: str, scope: str, params: Mapping[str, Any], state: str,
                  expected_version: int | None) -> Flag:
        _choice("flag state", state, FLAG_STATES)
        if not _SCOPE.match(scope):
            raise MeshstepError(f"scope {scope!r} is neither 'mesh' nor a namespace name")
        target = flag_target(cluster, feature, scope)
        flag = self._flag(ch.session, cluster, feature, scope)
        ch.check_version(target, expected_version, flag.version if flag else 0)
        before = _snap(flag) if flag else None
        if flag is None:  # a flag's cluster exists already (foreign key): look it up for new flags only
            ch.cluster(cluster)
            flag = Flag(cluster=cluster, feature=feature, scope=scope, version=0, changed_by=ch.actor)
        flag.params, flag.state, flag.version = dict(params), state, flag.version + 1
        flag.changed_by, flag.changed_at, flag.reason = ch.actor, ch.at, ch.reason
        ch.session.add(flag)
        ch.session.flush()
        ch.record("flag.set", target, before, _snap(flag))
        return flag

    def unset_flag(self, cluster: str, feature: str, scope: str, actor: str, reason: str,
                   expected_version: int | None = None) -> Flag:
        """Remove a recorded flag; returns it as it was."""
        with self._change(actor, reason) as ch:
            flag = self._drop_flag(ch, cluster, feature, scope, expected_version)
            if flag is None:
                raise MeshstepError(f"no flag {feature} in {scope} is recorded for cluster {cluster} "
                                    "(see meshstep flags list)")
        return flag

    def _drop_flag(self, ch: _Change, cluster: str, feature: str, scope: str,
                   expected_version: int | None) -> Flag | None:
        target = flag_target(cluster, feature, scope)
        flag = self._flag(ch.session, cluster, feature, scope)
        ch.check_version(target, expected_version, flag.version if flag else 0)
        if flag is not None:
            ch.session.delete(flag)
            ch.record("flag.unset", target, _snap(flag), None)
        return flag

    def list_flags(self, cluster: str | None = None) -> list[Flag]:
        """Recorded flags (of one cluster, or all), by cluster, feature and scope."""
        q = select(Flag).order_by(Flag.cluster, Flag.feature, Flag.scope)
        if cluster is not None:
            q = q.where(Flag.cluster == cluster)
        with self.reader() as s:
            return list(s.exec(q))

    @staticmethod
    def _flag(s: Session, cluster: str, feature: str, scope: str) -> Flag | None:
        return s.exec(select(Flag).where(Flag.cluster == cluster, Flag.feature == feature,
                                         Flag.scope == scope)).first()

    # ------------------------------------------------------------------ plans and stages

    def create_plan(self, cluster: str, name: str, template: str, stages: Sequence[Mapping[str, Any]],
                    actor: str, reason: str = "", flags: Sequence[FlagChange] = (),
                    left_out: Sequence[Mapping[str, Any]] = (), promoted_from: int | None = None,
                    promotion_after: int | None = None, verify: Mapping[str, Any] | None = None,
                    waves: Mapping[str, Any] | None = None) -> Plan:
        """A plan with its stages, in order. Each stage: title, goal, features ([{feature, scope, params}]),
        optionally status and record (a StageRecord). `flags` (those of stages done from the start) are recorded in
        the same transaction, each one only where nothing is recorded for its feature and scope yet: what the team
        recorded stands. `left_out`: the template's steps the plan could not take, with the reason. `promoted_from`:
        the id of the plan this one is promoted from; the link is kept on the new plan and audited on both
        (`plan.promote` on the source). `verify`: the plan's verification thresholds (Thresholds values). `waves`:
        the plan's waves (planner.waves.Waves.to_json), if it goes in waves."""
        with self._change(actor, reason) as ch:
            ch.cluster(cluster)
            if ch.session.exec(select(Plan).where(Plan.cluster == cluster, Plan.name == name)).first():
                raise MeshstepError(f"a plan named {name!r} already exists for cluster {cluster}: "
                                    "choose another name or delete it")
            plan = Plan(name=name, cluster=cluster, template=template, created_by=actor, created_at=ch.at,
                        left_out=[dict(x) for x in left_out], promotion_after=promotion_after,
                        verify=dict(verify or {}), waves=dict(waves) if waves else None)
            source = self._get(ch.session, Plan, promoted_from) if promoted_from is not None else None
            if source is not None:
                plan.promoted_from = {"plan_id": source.id, "cluster": source.cluster, "name": source.name}
            plan.stages = [_new_stage(ch, order, spec) for order, spec in enumerate(stages, 1)]
            ch.session.add(plan)
            ch.session.flush()
            ch.record("plan.create", f"plan:{plan.id}", None, self._plan_snap(plan))
            if source is not None:  # the source plan itself is unchanged: the event says where it went
                ch.record("plan.promote", f"plan:{source.id}", _snap(source),
                          _snap(source) | {"promoted_to": {"plan_id": plan.id, "cluster": cluster, "name": name}})
            for f in flags:
                if f.state is not None and self._flag(ch.session, cluster, f.feature, f.scope) is None:
                    self._put_flag(ch, cluster, f.feature, f.scope, f.params or {}, f.state, 0)
        return plan

    def get_plan(self, plan_id: int) -> Plan:
        with self.reader() as s:
            return self._get(s, Plan, plan_id)

    def list_plans(self, cluster: str | None = None) -> list[Plan]:
        q = select(Plan).order_by(Plan.cluster, Plan.created_at)
        if cluster is not None:
            q = q.where(Plan.cluster == cluster)
        with self.reader() as s:
            return list(s.exec(q))

    def set_plan_status(self, plan_id: int, status: str, actor: str, reason: str,
                        expected_version: int | None = None) -> Plan:
        _choice("plan status", status, PLAN_STATUSES)
        target = f"plan:{plan_id}"
        with self._change(actor, reason) as ch:
            plan = self._get(ch.session, Plan, plan_id)
            ch.check_version(target, expected_version, plan.version)
            self._put_plan_status(ch, plan, status)
        return plan

    @staticmethod
    def _put_plan_status(ch: _Change, plan: Plan, status: str) -> None:
        before = _snap(plan)
        plan.status, plan.version = status, plan.version + 1
        ch.session.add(plan)
        ch.record("plan.status", f"plan:{plan.id}", before, _snap(plan))

    def stop_plan(self, plan_id: int, stop: Mapping[str, Any], actor: str, reason: str) -> Plan:
        """Stop the plan ({code, reason, stage, title}, kept with who and when), audited as plan.stop: for a stop
        that comes with no move of its stage (transition_stage's `stop` is the one that does)."""
        with self._change(actor, reason) as ch:
            plan = self._get(ch.session, Plan, plan_id)
            self._put_stop(ch, plan, {**stop, "by": str(actor), "at": ch.at.isoformat()}, "plan.stop")
        return plan

    def resume_plan(self, plan_id: int, actor: str, reason: str, expected_version: int | None = None) -> Plan:
        """Clear the plan's stop (audited as plan.resume, with who and why): meshstep applies its stages again."""
        if not reason.strip():
            raise MeshstepError("a resume needs a reason (--reason): say what was found and fixed, for the audit "
                                "trail")
        with self._change(actor, reason) as ch:
            plan = self._get(ch.session, Plan, plan_id)
            ch.check_version(f"plan:{plan_id}", expected_version, plan.version)
            if plan.stopped is None:
                raise MeshstepError(f"plan {plan.name!r} is not stopped: there is nothing to resume")
            self._put_stop(ch, plan, None, "plan.resume")
        return plan

    @staticmethod
    def _put_stop(ch: _Change, plan: Plan, stop: dict[str, Any] | None, action: str) -> None:
        before = _snap(plan)
        plan.stopped, plan.version = stop, plan.version + 1
        ch.session.add(plan)
        ch.record(action, f"plan:{plan.id}", before, _snap(plan))

    def delete_plan(self, plan_id: int, actor: str, reason: str) -> None:
        with self._change(actor, reason) as ch:
            plan = self._get(ch.session, Plan, plan_id)
            ch.record("plan.delete", f"plan:{plan_id}", self._plan_snap(plan), None)
            ch.session.delete(plan)

    def transition_stage(self, stage_id: int, status: str, actor: str, reason: str,
                         expected_version: int | None = None, override_reason: str | None = None,
                         record: StageRecord | None = None, flags: Sequence[FlagChange] = (),
                         keep_flags_before: bool = False, plan_status: str | None = None,
                         plan_mode: str | None = None, stop: Mapping[str, Any] | None = None) -> Stage:
        """Move a stage to `status`, the flags of its features (in its plan's cluster) and, when given, its plan's
        status and its stop (`stop`: {code, reason, stage, title}, kept with who and when), in one transaction: all
        are recorded, or none. Which moves are allowed is the planner's call.
        `override_reason` says why someone went past a failing gate; `record` (None: unchanged) is kept with the
        stage between transitions; with `keep_flags_before`, the recorded flags that `flags` replace are kept in it
        as `flags_before` (read in the same transaction, so a rollback restores what really was). `plan_mode`
        (rehearsal or real) is set on a plan that has none yet, and refused on one of the other mode; a rehearsed
        transition is audited as `stage.rehearsal`, never as `stage.status`."""
        _choice("stage status", status, tuple(StageStatus))
        target = f"stage:{stage_id}"
        with self._change(actor, reason) as ch:
            stage = self._get(ch.session, Stage, stage_id)
            ch.check_version(target, expected_version, stage.version)
            plan = stage.plan
            if plan_mode is not None:
                _choice("plan mode", plan_mode, tuple(PlanMode))
                if plan.mode not in (None, plan_mode):
                    raise MeshstepError(f"plan {plan.name!r} is a {plan.mode} plan: its stages are not moved as a "
                                        f"{plan_mode} (make another plan with `meshstep plan new --name …`)")
                if plan.mode is None:
                    before_plan = _snap(plan)
                    plan.mode, plan.version = PlanMode(plan_mode), plan.version + 1
                    ch.session.add(plan)
                    ch.record("plan.mode", f"plan:{plan.id}", before_plan, _snap(plan))
            before = _snap(stage)
            stage.status, stage.override_reason = StageStatus(status), override_reason
            stage.version = stage.version + 1
            record = stage.record if record is None else record
            cluster = stage.plan.cluster
            if keep_flags_before:
                was = [(f, self._flag(ch.session, cluster, f.feature, f.scope)) for f in flags]
                record = msgspec.structs.replace(record, flags_before=tuple(
                    FlagBefore(f.feature, f.scope, old.params, old.state) for f, old in was if old is not None))
            stage.data = record.to_json()
            stage.updated_by, stage.updated_at = actor, ch.at
            ch.session.add(stage)
            ch.session.flush()
            ch.record("stage.rehearsal" if plan.mode == PlanMode.REHEARSAL else "stage.status", target, before,
                      _snap(stage))
            if plan_status is not None:
                _choice("plan status", plan_status, PLAN_STATUSES)
                self._put_plan_status(ch, stage.plan, plan_status)
            if stop is not None:
                self._put_stop(ch, plan, {**stop, "by": str(actor), "at": ch.at.isoformat()}, "plan.stop")
            for f in flags:
                if f.state is None:
                    self._drop_flag(ch, cluster, f.feature, f.scope, None)
                else:
                    self._put_flag(ch, cluster, f.feature, f.scope, f.params or {}, f.state, None)
        return stage

    def decide_stage(self, stage_id: int, decision: str, yaml_hash: str, actor: str, reason: str,
                     expected_version: int | None) -> Stage:
        """Record an approval or rejection of the stage's YAML (by its hash) with the decider's identity; the stage's
        version moves, so an apply decided on what it was before is refused as a conflict."""
        _choice("decision", decision, ("approved", "rejected"))
        with self._change(actor, reason) as ch:
            stage = self._get(ch.session, Stage, stage_id)
            ch.check_version(f"stage:{stage_id}", expected_version, stage.version)
            before, made = _snap(stage), {"decision": decision, "yaml_hash": yaml_hash, "actor": str(actor),
                                          "identity": ch.identity, "at": ch.at.isoformat(), "reason": reason}
            stage.data = {**stage.data, "approvals": [*stage.data.get("approvals", ()), made]}
            stage.version += 1
            ch.session.add(stage)
            ch.record("stage.approve" if decision == "approved" else "stage.reject", f"stage:{stage_id}", before,
                      _snap(stage))
        return stage

    def add_stage(self, plan_id: int, spec: Mapping[str, Any], actor: str, reason: str) -> Stage:
        """Append a stage (title, goal, features) to a plan."""
        with self._change(actor, reason) as ch:
            plan = self._get(ch.session, Plan, plan_id)
            stage = _new_stage(ch, max((st.order for st in plan.stages), default=0) + 1, spec)
            plan.stages.append(stage)
            ch.session.flush()
            ch.record("stage.add", f"stage:{stage.id}", None, _snap(stage))
        return stage

    @staticmethod
    def _plan_snap(plan: Plan) -> dict[str, Any]:
        return _snap(plan) | {"stages": [_snap(st) for st in plan.stages]}

    @staticmethod
    def _get(s: Session, model: type[SQLModel], row_id: int) -> Any:
        row = s.get(model, row_id)
        if row is None:
            raise MeshstepError(f"no {model.__name__.lower()} with id {row_id}")
        return row

    # ------------------------------------------------------------------ inventory history and audit trail

    def record_inventory(self, summary: Mapping[str, Any], actor: str,
                         unless_same_within: timedelta | None = None) -> InventorySnapshot | None:
        """Keep a summary of an inventory: cluster, source, namespaces_in_mesh, namespaces_total, pods_in_mesh,
        pods_total, features_observed ([{feature, scope}]); taken_at defaults to now. With `unless_same_within`,
        nothing is kept (None) when the cluster's last summary says the same and is younger than that."""
        if unless_same_within is not None:
            history = self.inventory_history(summary["cluster"])
            if history:
                last = history[-1]
                taken = last.taken_at if last.taken_at.tzinfo else last.taken_at.replace(tzinfo=UTC)
                if (all(getattr(last, k) == v for k, v in summary.items() if k not in ("cluster", "source"))
                        and utcnow() - taken < unless_same_within):
                    return None
        with self._change(actor, "") as ch:
            ch.cluster(summary["cluster"])
            snap = InventorySnapshot.model_validate({"taken_at": ch.at, **summary})
            ch.session.add(snap)
            ch.session.flush()
            ch.record("inventory.record", f"cluster:{snap.cluster}", None, _snap(snap))
        return snap

    def inventory_history(self, cluster: str) -> list[InventorySnapshot]:
        with self.reader() as s:
            return list(s.exec(select(InventorySnapshot).where(InventorySnapshot.cluster == cluster)
                               .order_by(InventorySnapshot.taken_at)))

    def audit_events(self, since: datetime | None = None) -> list[AuditEvent]:
        """The trail in order, from `since` (aware UTC) on."""
        q = select(AuditEvent).order_by(AuditEvent.seq)
        if since is not None:
            q = q.where(AuditEvent.at >= since)
        with self.reader() as s:
            return list(s.exec(q))
