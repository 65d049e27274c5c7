"""The audit trail: a keyed hash chain over the events, its checkpoints and its verification (reports: state.reports).

Each event's hash covers its fields and the previous event's hash, and the chain head row names the last event,
so editing, removing or adding an event anywhere — including at the end — is detected by `verify`. Against someone
who can write the database (and so recompute a plain hash chain), the hashes are HMACs with a key kept outside it
(MESHSTEP_AUDIT_KEY, else a file in the user's config directory made on first use), and every change leaves a
checkpoint of the head outside the database (a file in the user's state directory, or deployed, a ConfigMap only
the app's service account may update), signed with the key: rewinding the head, emptying the trail or re-hashing
it whole is then seen too. `verify` also replays the trail and checks that the flags, plans and
stages tables say what it says. Events written before the key existed (plain sha256) still verify, up to the
first keyed one."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import platformdirs
from sqlmodel import Session, select

from cluster.errors import MeshstepError
from state.models import GENESIS_HASH, AuditEvent, AuditHead, Flag, Plan, Stage, flag_target, utcnow


class ChainStore(Protocol):
    """What verifying the chain needs of the store (state.store.Store has it): the key, a read session, and
    which database it is (its checkpoint's name)."""

    audit_key: AuditKey
    identity: str

    def reader(self) -> AbstractContextManager[Session]: ...

HASHED_FIELDS = ("seq", "actor", "at", "action", "target", "before", "after", "reason", "prev_hash")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


KEY_ENV = "MESHSTEP_AUDIT_KEY"
# Keys used before a rotation, newest first (comma-separated), each as KEY@WHEN (the UTC time it was retired, ISO
# 8601): events they signed before then still verify; new ones never use them; an event after one signed by a newer
# key, or dated after its key was retired, may not be signed by it.
RETIRED_ENV = "MESHSTEP_AUDIT_RETIRED_KEYS"
CHECKPOINTS_ENV = "MESHSTEP_AUDIT_CHECKPOINTS"


def fingerprint(secret: bytes) -> str:
    """What to compare between machines (the key itself is never shown)."""
    digest = hashlib.sha256(b"meshstep audit key\0" + secret).hexdigest()[:16]
    return ":".join(digest[i:i + 4] for i in range(0, 16, 4))


@dataclass(frozen=True)
class AuditKey:
    """The secret the chain's HMACs are made with, and those of earlier generations (oldest first); `origin`
    says where it was read from."""

    secret: bytes = field(repr=False)
    origin: str
    retired: tuple[tuple[bytes, datetime | None], ...] = field(default=(), repr=False)  # (key, retired at)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.secret)

    @property
    def generations(self) -> tuple[bytes, ...]:
        """Every key, generation 1 (the oldest) first and the current one last."""
        return (*(k for k, _ in self.retired), self.secret)

    def signs_at(self, generation: int, at: datetime) -> bool:
        """Whether key `generation` was still in use at `at` (the current one always is)."""
        until = self.retired[generation - 1][1] if generation <= len(self.retired) else None
        return until is None or at < until


def _retired(text: str) -> tuple[tuple[bytes, datetime | None], ...]:
    keys = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        key, _, when = entry.rpartition("@") if "@" in entry else (entry, "", "")
        try:
            at = datetime.fromisoformat(when.replace("Z", "+00:00")) if when else None
        except ValueError:
            raise MeshstepError(f"${RETIRED_ENV}: {when!r} is not a time: write KEY@2026-12-07T10:00:00Z") from None
        keys.append((key.encode(), at.replace(tzinfo=at.tzinfo or UTC) if at else None))
    return tuple(reversed(keys))


def audit_key() -> AuditKey:
    """$MESHSTEP_AUDIT_KEY, else the key file in the user's config directory, made (mode 0600) on first use."""
    if os.environ.get(KEY_ENV):
        return AuditKey(os.environ[KEY_ENV].encode(), f"${KEY_ENV}", _retired(os.environ.get(RETIRED_ENV, "")))
    path = platformdirs.user_config_path("meshstep", appauthor=False) / "audit.key"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32) + "\n")
        secret = path.read_bytes().strip()
    except OSError as e:
        raise MeshstepError(f"cannot read or make the audit key {path}: {e.strerror or e} (or set {KEY_ENV})") from e
    if not secret:
        raise MeshstepError(f"the audit key {path} is empty: restore it from a backup, or set {KEY_ENV}")
    return AuditKey(secret, str(path))


def chain_hash(event: AuditEvent, key: AuditKey | None = None, secret: bytes | None = None) -> str:
    """The HMAC-SHA256 under `key` (or an earlier generation's `secret`) of the canonical JSON of the event's
    fields, its prev_hash included; without a key, their plain sha256 (how events were hashed before keys, and all
    a database writer can compute)."""
    fields = {k: getattr(event, k) for k in HASHED_FIELDS} | {"at": event.at.isoformat()}
    if event.identity is not None:  # recorded since migration 0007; older events' hashes stay as they were
        fields["identity"] = event.identity
    fields = canonical(fields).encode()
    if key is None and secret is None:
        return hashlib.sha256(fields).hexdigest()
    return hmac.new(secret or key.secret, fields, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Break:
    """Where the trail stops holding: the first event (by seq) that was altered, removed or added, or a table that
    disagrees with it (seq 0)."""

    seq: int
    message: str

    def __str__(self) -> str:
        return self.message


def verify(store: ChainStore) -> Break | None:
    """Recompute the chain, compare its head with the checkpoint kept outside the database, and replay it against
    the flags, plans and stages tables; None when all hold."""
    key = store.audit_key
    with store.reader() as s:
        head = s.get(AuditHead, 1)
        broken = check_chain(head, s.exec(select(AuditEvent).order_by(AuditEvent.seq)
                                          .execution_options(yield_per=1000)), key)
        if broken is None:
            broken = check_checkpoint(store.identity, head, s, key)
        if broken is None:
            broken = check_tables(s)
    return broken


def check_chain(head: AuditHead | None, events: Iterable[AuditEvent], key: AuditKey | None = None,
                spans: list[tuple[int, int, int]] | None = None) -> Break | None:
    """Whether `events` (the whole trail, in order) form the chain `head` closes; None when they do. Unkeyed
    (sha256) events are accepted only before the first keyed one, and an older key generation's only before the
    first event of a newer one. `spans`, when given, receives (first seq, last seq, generation) of each run of
    events one generation signed (generation 0: unkeyed)."""
    if head is None:
        return Break(0, "the chain head (table audit_head) was removed")
    prev_seq, prev_hash = 0, GENESIS_HASH
    generation = 0  # the newest generation seen so far; 0: none (unkeyed)
    keys = key.generations if key is not None else ()
    for ev in events:
        if ev.seq != prev_seq + 1:
            return Break(prev_seq + 1, f"event {prev_seq + 1} was removed")
        signed = next((g for g in range(max(generation, 1), len(keys) + 1)
                       if hmac.compare_digest(chain_hash(ev, secret=keys[g - 1]), ev.hash)
                       and key.signs_at(g, ev.at)), None)
        if signed is not None:
            generation = signed
        elif generation or chain_hash(ev) != ev.hash:
            return Break(ev.seq, f"event {ev.seq} was altered")
        if ev.prev_hash != prev_hash:  # the previous event was altered, then re-hashed to hide it
            return Break(prev_seq, f"event {prev_seq} was altered")
        if spans is not None:
            if spans and spans[-1][2] == generation:
                spans[-1] = (spans[-1][0], ev.seq, generation)
            else:
                spans.append((ev.seq, ev.seq, generation))
        prev_seq, prev_hash = ev.seq, ev.hash
    if head.seq > prev_seq:
        return Break(prev_seq + 1, f"event {prev_seq + 1} was removed (the trail should end at {head.seq})")
    if head.seq < prev_seq:
        return Break(head.seq + 1, f"event {head.seq + 1} was added outside meshstep (the trail ends at "
                                   f"{head.seq})")
    if head.hash != prev_hash:
        return Break(prev_seq, f"event {prev_seq} was altered")
    return None


def key_spans(store: ChainStore) -> list[tuple[int, int, int]]:
    """Which key generation signed which events: (first seq, last seq, generation), generation 0 unkeyed."""
    spans: list[tuple[int, int, int]] = []
    with store.reader() as s:
        check_chain(s.get(AuditHead, 1), s.exec(select(AuditEvent).order_by(AuditEvent.seq)
                                                 .execution_options(yield_per=1000)), store.audit_key, spans)
    return spans


# ---------------------------------------------------------------- checkpoints of the head, outside the database

# Where checkpoints go: a file (the default, in the user's state directory), or `configmap:NAMESPACE/NAME`, a
# ConfigMap written through the Kubernetes API with the pod's service account (deploy/: a Role lets that account get
# and update that one ConfigMap; whoever can write the database cannot touch it).
CONFIGMAP = "configmap:"


def checkpoint_mac(secret: bytes, database: str, point: dict[str, Any]) -> str:
    """The HMAC of a checkpoint under the audit key: one written by someone without the key does not verify."""
    fields = {"database": database, "seq": point["seq"], "hash": point["hash"], "at": point["at"]}
    return hmac.new(secret, b"meshstep audit checkpoint\0" + canonical(fields).encode(), hashlib.sha256).hexdigest()


class Checkpoints(Protocol):
    """Where the heads of the trails are kept, by database: `where` names it in messages."""

    where: str

    def update(self, change: Callable[[dict[str, Any]], None] = lambda points: None) -> dict[str, Any]:
        """The checkpoints (by database), after `change` made to them and written back (if it changed them)."""


def checkpoints() -> Checkpoints:
    """$MESHSTEP_AUDIT_CHECKPOINTS: `configmap:NAMESPACE/NAME`, else a file (its path; by default
    audit-checkpoints.json in the user's state directory)."""
    value = os.environ.get(CHECKPOINTS_ENV, "")
    if value.startswith(CONFIGMAP):
        namespace, _, name = value.removeprefix(CONFIGMAP).partition("/")
        if not namespace or not name:
            raise MeshstepError(f"${CHECKPOINTS_ENV}: {value!r}: write configmap:NAMESPACE/NAME")
        return ConfigMapCheckpoints(namespace, name)
    return FileCheckpoints(checkpoint_path())


def checkpoint_path() -> Path:
    """$MESHSTEP_AUDIT_CHECKPOINTS, else audit-checkpoints.json in the user's state directory."""
    return Path(os.environ.get(CHECKPOINTS_ENV) or
                platformdirs.user_state_path("meshstep", appauthor=False) / "audit-checkpoints.json")


@dataclass(frozen=True)
class FileCheckpoints:
    """A JSON file, locked against this machine's other writers."""

    path: Path

    @property
    def where(self) -> str:
        return str(self.path)

    def update(self, change: Callable[[dict[str, Any]], None] = lambda points: None) -> dict[str, Any]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            text = f.read()
            try:
                points = json.loads(text) if text.strip() else {}
            except json.JSONDecodeError as e:
                raise MeshstepError(f"the audit checkpoints {self.path} are not JSON ({e}): restore the file, or "
                                    "move it away to start again") from e
            before = json.dumps(points, sort_keys=True)
            change(points)
            if json.dumps(points, sort_keys=True) != before:
                f.seek(0)
                f.truncate()
                f.write(json.dumps(points, indent=1, sort_keys=True) + "\n")
            return points


@dataclass(frozen=True)
class ConfigMapCheckpoints:
    """A ConfigMap, one data key per database (`db-` and a hash of its name), read and replaced through the
    Kubernetes API; a replace carries the resourceVersion read, so two writers never overwrite each other (the API
    server answers 409 Conflict to the second: https://kubernetes.io/docs/reference/using-api/api-concepts/
    #resource-versions), and the second tries again on what the first wrote."""

    namespace: str
    name: str

    @property
    def where(self) -> str:
        return f"ConfigMap {self.namespace}/{self.name}"

    @staticmethod
    def _key(database: str) -> str:
        return "db-" + hashlib.sha256(database.encode()).hexdigest()[:32]

    def update(self, change: Callable[[dict[str, Any]], None] = lambda points: None) -> dict[str, Any]:
        from kubernetes.client import CoreV1Api
        from kubernetes.client.exceptions import ApiException

        from cluster.kubeapi import api_client

        api = CoreV1Api(api_client(None)[0])
        for _ in range(5):
            try:
                cm = api.read_namespaced_config_map(self.name, self.namespace)
                data = cm.data or {}
                points = {p["database"]: p for p in map(json.loads, data.values())}
                before = json.dumps(points, sort_keys=True)
                change(points)
                if json.dumps(points, sort_keys=True) != before:
                    cm.data = {self._key(db): canonical(p) for db, p in points.items()}
                    api.replace_namespaced_config_map(self.name, self.namespace, cm)  # with its resourceVersion
                return points
            except ApiException as e:
                if e.status != 409:
                    raise MeshstepError(f"the audit checkpoints ({self.where}): HTTP {e.status} {e.reason}: the "
                                        "deployment's Role must let its service account get and update it "
                                        "(deploy/base)") from None
        raise MeshstepError(f"the audit checkpoints ({self.where}) kept changing under this writer: try again")


def write_checkpoint(database: str, seq: int, hash_: str, key: AuditKey) -> None:
    """Note that `database`'s trail reached event `seq` with hash `hash_` (never moving a checkpoint back), signed
    with the audit key."""
    def forward(points: dict[str, Any]) -> None:
        if points.get(database, {}).get("seq", -1) < seq:
            point = {"seq": seq, "hash": hash_, "at": utcnow().isoformat(timespec="seconds")}
            points[database] = point | {"database": database, "mac": checkpoint_mac(key.secret, database, point)}

    checkpoints().update(forward)


def read_checkpoint(database: str) -> dict[str, Any] | None:
    """The last head of `database`'s trail written where checkpoints are kept: {seq, hash, at, mac}."""
    return checkpoints().update().get(database)


def check_checkpoint(database: str, head: AuditHead, session: Any, key: AuditKey) -> Break | None:
    """Whether the trail still holds the last event the checkpoint saw written: a rewound head, an emptied trail or
    one re-hashed whole hold together as a chain, but not against the checkpoint. A checkpoint that is not signed
    with a generation of the audit key was not written by meshstep (one of a ConfigMap must be)."""
    store = checkpoints()
    point = read_checkpoint(database)
    if point is None:
        return None
    where = f"the checkpoint in {store.where} (written {point['at']})"
    mac = point.get("mac")
    if (mac or isinstance(store, ConfigMapCheckpoints)) and not any(
            hmac.compare_digest(checkpoint_mac(k, database, point), mac or "") for k in key.generations):
        return Break(0, f"{where} is not signed with the audit key: it was written or altered outside meshstep")
    if head.seq < point["seq"]:
        return Break(head.seq + 1, f"the trail was cut back to {head.seq} events: {where} saw it reach event "
                                   f"{point['seq']}")
    event = session.get(AuditEvent, point["seq"])
    if event is None or event.hash != point["hash"]:
        return Break(point["seq"], f"event {point['seq']} is not the one {where} saw")
    return None


# ---------------------------------------------------------------- the tables, replayed from the trail

# What the tables must agree with the trail on, by the prefix of an event's target.
_REPLAYED = {"flag": ("state", "params", "version"), "plan": ("status", "version", "verify", "stopped"),
             "stage": ("status", "version")}
# Fields an older meshstep's events do not carry (the column came later): compared only where the event has them.
_ADDED_LATER = {"verify", "stopped"}


def check_tables(session: Any) -> Break | None:
    """Replay the trail (each flag, plan and stage as its last event left it) and compare with the tables: an
    edit to them outside meshstep leaves no event, so the two disagree."""
    expected: dict[str, tuple[int, dict[str, Any] | None]] = {}
    for ev in session.exec(select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=1000)):
        kind = ev.target.split(":", 1)[0]
        if kind not in _REPLAYED:
            continue
        expected[ev.target] = (ev.seq, ev.after)
        if kind == "plan":  # a plan's creation and deletion carry its stages
            for stage in (ev.after or ev.before or {}).get("stages", ()):
                expected[f"stage:{stage['id']}"] = (ev.seq, stage if ev.after else None)
    actual: dict[str, dict[str, Any]] = {}
    for f in session.exec(select(Flag)):
        actual[flag_target(f.cluster, f.feature, f.scope)] = f.model_dump(mode="json")
    for p in session.exec(select(Plan)):
        actual[f"plan:{p.id}"] = p.model_dump(mode="json")
    for st in session.exec(select(Stage)):
        actual[f"stage:{st.id}"] = st.model_dump(mode="json")
    for target in sorted(expected.keys() | actual.keys()):
        seq, want = expected.get(target, (0, None))
        have = actual.get(target)
        fields = _REPLAYED[target.split(":", 1)[0]]
        if want is None and have is None:
            continue
        table = {"flag": "flags", "plan": "plans", "stage": "stages"}[target.split(":", 1)[0]]
        if want is None:
            return Break(0, f"{target} is in the {table} table but not in the trail: it was written outside "
                            "meshstep")
        if have is None:
            return Break(seq, f"{target} is in the trail (event {seq}) but not in the {table} table: it was removed "
                              "outside meshstep")
        differ = [k for k in fields if want.get(k) != have.get(k) and (k in want or k not in _ADDED_LATER)]
        if differ:
            says = ", ".join(f"{k} {have.get(k)!r}" for k in differ)
            told = ", ".join(f"{k} {want.get(k)!r}" for k in differ)
            return Break(seq, f"{target} disagrees with the trail: the {table} table says {says}, event {seq} says "
                              f"{told}: it was changed outside meshstep")
    return None
