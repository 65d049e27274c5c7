"""A change as `kubectl diff` shows it: the objects a rendering creates, modifies or deletes, told apart, each with
its unified diff against what the inventory holds now. Objects are compared as one would apply them (`clean`)."""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from cluster.kubectl_apply import stored
from cluster.model import Ref

if TYPE_CHECKING:
    from cluster.inventory import Inventory

ACTIONS = ("create", "modify", "delete", "unchanged")


def clean(raw: dict[str, Any]) -> dict[str, Any]:
    """An object as one would apply it: without status and server-set metadata."""
    meta = {k: v for k, v in (raw.get("metadata") or {}).items()
            if k in ("name", "namespace", "labels", "annotations")}
    # apiVersion, kind and metadata first, as kubectl shows an object
    return {"apiVersion": raw.get("apiVersion"), "kind": raw.get("kind"), "metadata": meta} | {
        k: v for k, v in raw.items() if k not in ("apiVersion", "kind", "status", "metadata")}


def normalized_yaml(raw: dict[str, Any] | None) -> str:
    """The object's applied form (as the server keeps it) as YAML with sorted keys: equal text means equal objects."""
    return "" if raw is None else yaml.safe_dump(clean(stored(raw)), sort_keys=True, default_flow_style=False)


def ref_of(o: dict[str, Any]) -> Ref:
    meta = o.get("metadata") or {}
    return Ref(o["kind"], meta.get("namespace"), meta["name"])


@dataclass(frozen=True)
class ObjectChange:
    action: str  # one of ACTIONS
    ref: Ref
    before: dict[str, Any] | None  # as the inventory has it (cleaned); None when created
    after: dict[str, Any] | None  # as it will be (cleaned); None when deleted

    @property
    def diff(self) -> str:
        """The unified diff of the object's YAML, headed as kubectl diff heads it."""
        name = f"{self.ref.kind}.{self.ref.namespace or ''}.{self.ref.name}"
        before, after = normalized_yaml(self.before), normalized_yaml(self.after)
        return "".join(difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True),
            f"live/{name}" if self.before is not None else "/dev/null",
            f"merged/{name}" if self.after is not None else "/dev/null"))


@dataclass(frozen=True)
class ChangeSet:
    changes: tuple[ObjectChange, ...]

    def of(self, action: str) -> list[ObjectChange]:
        return [c for c in self.changes if c.action == action]

    @property
    def empty(self) -> bool:
        return all(c.action == "unchanged" for c in self.changes)

    @property
    def diff(self) -> str:
        """Every object's diff, created objects first, then modified, then deleted."""
        return "".join(c.diff for a in ACTIONS[:3] for c in self.of(a))

    def summary(self) -> str:
        """`2 created, 1 modified, 0 deleted` with the objects named."""
        parts = []
        for action, word in (("create", "created"), ("modify", "modified"), ("delete", "deleted")):
            refs = [str(c.ref) for c in self.of(action)]
            parts.append(f"{len(refs)} {word}" + (f" ({', '.join(refs)})" if refs else ""))
        return ", ".join(parts)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"action": c.action, "kind": c.ref.kind, "namespace": c.ref.namespace, "name": c.ref.name,
                 "diff": c.diff} for c in self.changes]


def diff(objects: Iterable[dict[str, Any]], delete: Iterable[Ref], inv: Inventory) -> ChangeSet:
    """What applying `objects` and deleting `delete` does to the inventory's objects, object by object."""
    out: list[ObjectChange] = []
    for o in objects:
        ref = ref_of(o)
        current = inv.get(ref.kind, ref.namespace, ref.name)
        before = clean(current.raw) if current is not None else None
        after = clean(stored(o))
        if before is None:
            action = "create"
        else:
            action = "unchanged" if normalized_yaml(before) == normalized_yaml(after) else "modify"
        out.append(ObjectChange(action, ref, before, after))
    for ref in delete:
        current = inv.get(ref.kind, ref.namespace, ref.name)
        if current is not None:
            out.append(ObjectChange("delete", ref, clean(current.raw), None))
    return ChangeSet(tuple(out))
