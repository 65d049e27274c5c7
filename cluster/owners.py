"""Who owns what in an object: its metadata.managedFields, read as the API server records them
(https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management), and the fields a rendered
object would change that another field manager owns.

FieldsV1 is a tree: `f:NAME` a field of a map, `k:{"name":"http"}` an item of a list keyed by those fields, `v:VALUE`
an item of a set, `i:N` an item by index, and `.` the item or map itself (its presence) apart from its fields. A leaf
(`{}`) owns the value there whole. Server-side apply refuses (409) to change a field another manager owns to another
value unless forced, whatever that manager's operation; a field it owns with the same value is shared, no conflict.
A field left out of an applied configuration is removed only when no other manager owns it."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from cluster.model import GATEWAY_API_GROUP, ISTIO_GROUPS

FIELD_MANAGER = "meshstep"  # the field manager meshstep applies as (cluster/apply.py)
# The kinds whose ownership meshstep keeps when it reads a cluster: those a feature changes or extends (Istio's and
# the Gateway API's config, Namespaces' labels, the mesh ConfigMap, gateway Deployments and Services, webhook
# configurations a revision tag moves, CRDs it installs). Never Pods (the bulk of a big cluster, never written) nor
# Secrets (never read past what a check needs).
_KEPT_GROUPS = frozenset((*ISTIO_GROUPS, GATEWAY_API_GROUP))
_KEPT_KINDS = frozenset({"Namespace", "ConfigMap", "Service", "Deployment", "DaemonSet", "StatefulSet",
                         "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
                         "CustomResourceDefinition"})
# Of metadata, what an applied configuration holds (the rest the server sets, or controllers: ownerReferences …).
_METADATA = ("labels", "annotations")
_ENTRY_KEYS = ("manager", "operation", "apiVersion", "subresource")


def keeps_ownership(obj: dict[str, Any]) -> bool:
    """Whether meshstep keeps the managedFields of an object of this kind."""
    return obj.get("kind") in _KEPT_KINDS or str(obj.get("apiVersion", "")).rpartition("/")[0] in _KEPT_GROUPS


def shown(inv: Any) -> bool:
    """Whether the source shows field owners at all. Every object written since Kubernetes 1.18 has managedFields,
    so a live read shows them; `kubectl get -o yaml` leaves them out unless --show-managed-fields."""
    return any("managedFields" in o.metadata for kind, objects in inv.objects.items() for o in objects
               if keeps_ownership({"kind": kind, "apiVersion": o.api_version}))


def slimmed(entries: Any) -> list[dict[str, Any]] | None:
    """managedFields as meshstep keeps them: each entry that owns configuration, with its manager, operation,
    apiVersion and subresource, and the configuration fields it owns as compact JSON text (on a big cluster a tenth
    of the memory of the nested maps); None when there is none."""
    kept = []
    for e in entries if isinstance(entries, list) else ():
        tree = _configuration(e.get("fieldsV1")) if isinstance(e, dict) else {}
        if tree:
            kept.append({k: e[k] for k in _ENTRY_KEYS if k in e} | {"fieldsV1": orjson.dumps(tree).decode()})
    return kept or None


def _configuration(tree: Any) -> dict[str, Any]:
    """Of a FieldsV1 tree (or its JSON text, as kept), what owns configuration: neither status nor what the server
    or controllers set of metadata (only labels and annotations are kept of it)."""
    if isinstance(tree, str):
        try:
            tree = orjson.loads(tree)
        except orjson.JSONDecodeError:
            return {}
    if not isinstance(tree, dict):
        return {}
    out = {k: v for k, v in tree.items() if k not in ("f:status", "f:metadata")}
    meta = tree.get("f:metadata")
    meta = {k: v for k, v in meta.items() if k.removeprefix("f:") in _METADATA} if isinstance(meta, dict) else {}
    return out | ({"f:metadata": meta} if meta else {})


@dataclass(frozen=True)
class FieldPath:
    """A field as FieldsV1 names it: elements (`f`, name) | (`k`, keys) | (`v`, value) | (`i`, index); `leaf`: its
    value is owned whole, else only its presence (`.`)."""

    elements: tuple[tuple[str, Any], ...]
    leaf: bool = True

    def __str__(self) -> str:
        """As the API server names a field in a conflict: `.spec.ports[name="http",port=80].targetPort`."""
        out = []
        for kind, key in self.elements:
            if kind == "f":
                out.append(f".{key}")
            elif kind == "k":
                out.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in key.items()) + "]")
            elif kind == "v":
                out.append(f"[={json.dumps(key)}]")
            else:
                out.append(f"[{key}]")
        return "".join(out)


@dataclass(frozen=True)
class Owner:
    """One managedFields entry: a manager, its operation (Apply or Update), the subresource it wrote through (""
    for the object itself) and the configuration fields it owns."""

    manager: str
    operation: str
    subresource: str
    paths: tuple[FieldPath, ...]


def owned_paths(tree: dict[str, Any], prefix: tuple[tuple[str, Any], ...] = ()) -> Iterator[FieldPath]:
    """Every field a FieldsV1 tree owns (unparseable elements are skipped: a newer server's, not meshstep's)."""
    for key, sub in tree.items():
        if key == ".":
            if prefix:
                yield FieldPath(prefix, leaf=False)
            continue
        element = _element(key)
        if element is None:
            continue
        path = (*prefix, element)
        if isinstance(sub, dict) and sub:
            yield from owned_paths(sub, path)
        else:
            yield FieldPath(path)


def _element(key: str) -> tuple[str, Any] | None:
    kind, _, text = key.partition(":")
    try:
        if kind == "f":
            return "f", text
        if kind in ("k", "v"):
            value = json.loads(text)
            return (kind, value) if kind == "v" or isinstance(value, dict) else None
        if kind == "i":
            return "i", int(text)
    except ValueError:
        return None
    return None


def owners(obj: dict[str, Any]) -> list[Owner]:
    """The object's field managers with the configuration fields each owns (status and server-set metadata left
    out): one per managedFields entry."""
    out = []
    for e in (obj.get("metadata") or {}).get("managedFields") or ():
        paths = tuple(owned_paths(_configuration(e.get("fieldsV1")))) if isinstance(e, dict) else ()
        if paths:
            out.append(Owner(str(e.get("manager", "")), str(e.get("operation", "")), str(e.get("subresource", "")),
                             paths))
    return out


@dataclass(frozen=True)
class Taken:
    """Fields of an object a rendering would change (`changed`) or leave out (`removed`) that `manager` owns."""

    manager: str
    operation: str
    changed: tuple[str, ...]
    removed: tuple[str, ...]


ABSENT = object()  # no value at a path (a field, item or index not there): None may be one


def taken(live: dict[str, Any], new: dict[str, Any], manager: str = FIELD_MANAGER) -> list[Taken]:
    """For each other field manager of `live`, the fields it owns that `new` (the whole object a rendering writes
    over it) sets to another value or leaves out: server-side apply without force refuses the first (409), and
    leaves the second where they are."""
    found: dict[tuple[str, str], tuple[list[FieldPath], list[FieldPath]]] = {}
    for owner in owners(live):
        if owner.manager == manager:
            continue
        changed, removed = found.setdefault((owner.manager, owner.operation), ([], []))
        for path in owner.paths:
            was, now = _at(live, path.elements), _at(new, path.elements)
            if was is ABSENT:
                continue
            if now is ABSENT:
                removed.append(path)
            elif path.leaf and now != was:
                changed.append(path)
    return [Taken(m, op, _outermost(changed), _outermost(removed))
            for (m, op), (changed, removed) in sorted(found.items()) if changed or removed]


def _outermost(paths: list[FieldPath]) -> tuple[str, ...]:
    """The paths named, without those inside another of them (an item removed is said once, not with each field)."""
    def within(p: FieldPath, q: FieldPath) -> bool:
        return len(q.elements) < len(p.elements) and p.elements[:len(q.elements)] == q.elements
    return tuple(dict.fromkeys(str(p) for p in paths if not any(within(p, q) for q in paths)))


def _at(obj: Any, elements: tuple[tuple[str, Any], ...]) -> Any:
    """The value at a FieldsV1 path, ABSENT when there is none."""
    node = obj
    for kind, key in elements:
        if kind == "f":
            node = node.get(key, ABSENT) if isinstance(node, dict) else ABSENT
        elif not isinstance(node, list):
            return ABSENT
        elif kind == "k":
            node = next((i for i in node if isinstance(i, dict) and all(i.get(k) == v for k, v in key.items())),
                        ABSENT)
        elif kind == "v":
            node = key if key in node else ABSENT
        else:
            node = node[key] if 0 <= key < len(node) else ABSENT
        if node is ABSENT:
            return ABSENT
    return node



def applied_by(live: dict[str, Any], manager: str = FIELD_MANAGER) -> set[tuple[str, ...]]:
    """The fields `manager`'s Apply entry owns in `live` (those its next apply removes if it leaves them out), as
    paths of map keys: one inside a list item stops at the list, which is applied whole; a map's presence alone
    (`.`) is left out, its owned keys saying it already."""
    found = set()
    for owner in owners(live):
        if owner.manager == manager and owner.operation == "Apply" and not owner.subresource:
            found |= {p for p in map(_map_keys, owner.paths) if p}
    return found


def _map_keys(path: FieldPath) -> tuple[str, ...]:
    keys = []
    for kind, key in path.elements:
        if kind != "f":
            return tuple(keys)
        keys.append(key)
    return tuple(keys) if path.leaf else ()
