"""The shapes objects must have when they come in from a source: which fields are maps, lists, strings, integers
or booleans. Checked at the edge, once per object, so that nothing past `planner.sources` meets a list where it
reads a map (`Pod shop/x: metadata.labels is a list, not a map`): an error naming the object, not a traceback
somewhere in analysis.

Core kinds are declared here, for the fields meshstep reads; Istio's kinds come from the typed Istio models
(cloudcoil), generated into istio_shapes.json (`python -m planner.shapes > planner/istio_shapes.json`; a test fails
when it is stale): importing those models takes seconds, reading the file milliseconds. A shape is plain data (JSON):
a leaf (`string`, `integer`, `number`, `boolean`, `scalar`, `int-or-string`, `map`, `list`), `{"field": shape, …}`
(a map whose named fields have those shapes; others are not looked at), `{"*": shape}` (a map of any keys) or
`[shape]` (a list of them). Only types: requiredness and enums are the API server's business. A field that is null
is dropped, as the Kubernetes API server drops it."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

# A check raises _Bad at the first problem it finds. Paths are put together only then, on the way out: building
# them for every field of every pod would cost more than the checks (a 10,000-pod cluster is read in well under a
# second). Exact types, not isinstance: YAML and JSON make no subclasses, and a bool is not an integer here.
Check = Callable[[Any], None]


class _Bad(Exception):
    def __init__(self, what: str):
        super().__init__(what)
        self.what, self.path = what, []  # the path innermost first: keys and list indexes

    def __str__(self) -> str:
        path = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in reversed(self.path)).lstrip(".")
        return f"{path} {self.what}" if path else self.what


def describe(value: Any) -> str:
    """A value's type, as a message says it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    for t, name in ((dict, "a map"), (list, "a list"), (str, "a string"), (int, "an integer"),
                    (float, "a number"), (date, "a timestamp")):
        if isinstance(value, t):
            return name
    return type(value).__name__


@dataclass(frozen=True)
class _Leaf:
    """A value of one of `types` (checked inline by the map or list that holds it: no call per value)."""

    types: frozenset[type]
    name: str

    def __call__(self, value: Any) -> None:
        if type(value) not in self.types:
            raise _Bad(f"is {describe(value)}, not {self.name}")


_LEAVES: dict[str, _Leaf] = {
    "string": _Leaf(frozenset({str}), "a string"),
    "integer": _Leaf(frozenset({int}), "an integer"),
    "number": _Leaf(frozenset({int, float}), "a number"),
    "boolean": _Leaf(frozenset({bool}), "a boolean"),
    "scalar": _Leaf(frozenset({str, int, float, bool}), "a string"),  # a command's args, written unquoted
    "int-or-string": _Leaf(frozenset({int, str}), "a port number or name"),
    "map": _Leaf(frozenset({dict}), "a map"),
    "list": _Leaf(frozenset({list}), "a list"),
}


def _fields(checks: dict[str, Check]) -> Check:
    leaves = tuple((k, c) for k, c in checks.items() if isinstance(c, _Leaf))
    nested = tuple((k, c) for k, c in checks.items() if not isinstance(c, _Leaf))

    def check(value: Any) -> None:
        if type(value) is not dict:
            raise _Bad(f"is {describe(value)}, not a map")
        if None in value.values():  # dropped, as the API server drops a null
            for key in [k for k, v in value.items() if v is None]:
                del value[key]
        for key, leaf in leaves:
            v = value.get(key)
            if v is not None and type(v) not in leaf.types:
                bad = _Bad(f"is {describe(v)}, not {leaf.name}")
                bad.path.append(key)
                raise bad
        for key, sub in nested:
            v = value.get(key)
            if v is not None:
                try:
                    sub(v)
                except _Bad as e:
                    e.path.append(key)
                    raise
    return check


def _map_of(values: Check) -> Check:
    types = values.types if isinstance(values, _Leaf) else None

    def check(value: Any) -> None:
        if type(value) is not dict:
            raise _Bad(f"is {describe(value)}, not a map")
        if types is not None and all(type(k) is str and type(v) in types for k, v in value.items()):
            return
        for key, v in value.items():
            if type(key) is not str:
                raise _Bad(f"has a key that is {describe(key)}, not a string: {key!r}")
            try:
                values(v)
            except _Bad as e:
                e.path.append(key)
                raise
    return check


def _list_of(items: Check) -> Check:
    types = items.types if isinstance(items, _Leaf) else None

    def check(value: Any) -> None:
        if type(value) is not list:
            raise _Bad(f"is {describe(value)}, not a list")
        if types is not None and all(type(v) in types for v in value):
            return
        for i, v in enumerate(value):
            try:
                items(v)
            except _Bad as e:
                e.path.append(i)
                raise
    return check


def compile_shape(shape: Any) -> Check:
    """A check for a shape written as data (see the module's docstring)."""
    if isinstance(shape, list):
        return _list_of(compile_shape(shape[0]))
    if isinstance(shape, dict):
        if list(shape) == ["*"]:
            return _map_of(compile_shape(shape["*"]))
        return _fields({k: compile_shape(v) for k, v in shape.items()})
    return _LEAVES[shape]


# ---------------------------------------------------------------- the core kinds, as meshstep reads them

STR, INT, BOOL = "string", "integer", "boolean"
STRINGS = {"*": STR}  # labels, annotations, a selector, a ConfigMap's data
LABEL_SELECTOR = {"matchLabels": STRINGS, "matchExpressions": [{"key": STR, "operator": STR, "values": [STR]}]}
METADATA = {"name": STR, "namespace": STR, "generateName": STR, "labels": STRINGS, "annotations": STRINGS,
            "ownerReferences": [{"kind": STR, "name": STR, "controller": BOOL}]}
_PROBE = {"httpGet": {"port": "int-or-string", "path": STR}, "tcpSocket": {"port": "int-or-string"},
          "grpc": {"port": INT}, "exec": "map"}
CONTAINER = {"name": STR, "image": STR, "command": ["scalar"], "args": ["scalar"],
             "ports": [{"name": STR, "containerPort": INT, "protocol": STR}],
             "readinessProbe": _PROBE, "livenessProbe": _PROBE, "startupProbe": _PROBE, "restartPolicy": STR,
             "securityContext": {"runAsUser": INT}, "env": [{"name": STR}]}
POD_SPEC = {"containers": [CONTAINER], "initContainers": [CONTAINER], "serviceAccountName": STR,
            "serviceAccount": STR, "hostNetwork": BOOL, "nodeName": STR, "securityContext": {"runAsUser": INT}}
POD_TEMPLATE = {"metadata": METADATA, "spec": POD_SPEC}
_WORKLOAD = {"spec": {"replicas": INT, "selector": LABEL_SELECTOR, "template": POD_TEMPLATE}}
_WEBHOOKS = {"webhooks": [{"name": STR, "namespaceSelector": LABEL_SELECTOR, "objectSelector": LABEL_SELECTOR,
                           "clientConfig": {"service": {"name": STR, "namespace": STR, "path": STR}}}]}

COMMON = {"apiVersion": STR, "kind": STR, "metadata": METADATA, "spec": "map", "status": "map"}
KINDS: dict[str, Any] = {
    "Pod": {"spec": POD_SPEC, "status": {"phase": STR, "podIP": STR, "conditions": [{"type": STR, "status": STR}]}},
    "Deployment": _WORKLOAD, "StatefulSet": _WORKLOAD, "DaemonSet": _WORKLOAD, "ReplicaSet": _WORKLOAD,
    "Job": {"spec": {"template": POD_TEMPLATE}},
    "CronJob": {"spec": {"jobTemplate": {"spec": {"template": POD_TEMPLATE}}}},
    "Service": {"spec": {"type": STR, "selector": STRINGS, "clusterIP": STR, "externalName": STR,
                         "ports": [{"name": STR, "port": INT, "targetPort": "int-or-string", "protocol": STR,
                                    "appProtocol": STR, "nodePort": INT}]}},
    "ConfigMap": {"data": STRINGS},
    "Secret": {"type": STR, "data": STRINGS, "stringData": STRINGS},
    "MutatingWebhookConfiguration": _WEBHOOKS, "ValidatingWebhookConfiguration": _WEBHOOKS,
    "CustomResourceDefinition": {"spec": {"group": STR, "names": {"kind": STR, "plural": STR}, "versions": [
        {"name": STR, "served": BOOL, "storage": BOOL, "schema": {"openAPIV3Schema": "map"}}]}},
}
ISTIO_SHAPES = Path(__file__).parent / "istio_shapes.json"

_COMMON = compile_shape(COMMON)
_KIND_CHECKS = {kind: compile_shape(shape) for kind, shape in KINDS.items()}


@cache
def _istio_checks() -> dict[str, Check]:
    """The checks of Istio's kinds, by `group/Kind` (read on the first Istio object met)."""
    return {key: compile_shape(shape) for key, shape in json.loads(ISTIO_SHAPES.read_text()).items()}


def ref(obj: dict[str, Any]) -> str:
    """`Kind namespace/name` of a raw object, as well as its (perhaps malformed) fields allow."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    ns, name = meta.get("namespace"), meta.get("name")
    return f"{obj.get('kind')} {f'{ns}/' if isinstance(ns, str) and ns else ''}{name}"


def problem(obj: dict[str, Any]) -> str | None:
    """What is wrong with the shape of a raw object (its common fields, then its kind's), or None."""
    try:
        _COMMON(obj)
        kind = obj.get("kind")
        check = _KIND_CHECKS.get(kind)  # type: ignore[arg-type]
        if check is None and ".istio.io/" in obj.get("apiVersion", ""):
            check = _istio_checks().get(f"{obj['apiVersion'].rpartition('/')[0]}/{kind}")
        if check is not None:
            check(obj)
    except _Bad as e:
        return str(e)
    return None


# ---------------------------------------------------------------- Istio's kinds, generated from the typed models


def _shape_of(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> Any:
    """The shape a JSON schema (pydantic's, $refs into `defs`) gives; None when it says nothing checkable (an
    `Any`, a union, a date-time that YAML may read as a timestamp, or nesting past 12 levels: Istio's recursive
    types)."""
    if depth > 12:
        return None
    if "$ref" in schema:
        return _shape_of(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, depth)
    variants = [v for v in schema.get("anyOf", ()) if v.get("type") != "null"]
    if "anyOf" in schema:
        if sorted(v.get("type", "") for v in variants) == ["integer", "string"]:
            return "int-or-string"
        return _shape_of(variants[0], defs, depth) if len(variants) == 1 else None
    kind = schema.get("type")
    if kind == "array":
        items = _shape_of(schema.get("items") or {}, defs, depth + 1)
        return [items] if items is not None else "list"
    if kind == "object":
        fields = {k: s for k, v in (schema.get("properties") or {}).items()
                  if k not in ("metadata", "apiVersion", "kind") and (s := _shape_of(v, defs, depth + 1)) is not None}
        values = schema.get("additionalProperties")
        if not fields and isinstance(values, dict) and (s := _shape_of(values, defs, depth + 1)) is not None:
            return {"*": s}
        return fields or "map"
    if kind == "string" and schema.get("format") in ("date-time", "date"):
        return None
    return kind if kind in _LEAVES else None


def generate() -> dict[str, Any]:
    """The shape of each Istio kind, by `group/Kind`, from the typed Istio models at the most stable version."""
    import importlib
    import pkgutil

    import cloudcoil.models.istio as models
    from pydantic import BaseModel

    from planner.sources import version_priority

    found: dict[str, tuple[tuple[int, int, int], Any]] = {}
    for mod in pkgutil.walk_packages(models.__path__, models.__name__ + "."):
        pkg, _, version = mod.name.removeprefix(models.__name__ + ".").partition(".")
        if not version:
            continue
        module = importlib.import_module(mod.name)
        for name, model in vars(module).items():
            if not (isinstance(model, type) and issubclass(model, BaseModel) and "kind" in model.model_fields
                    and "spec" in model.model_fields and model.__module__ == mod.name):
                continue
            schema = model.model_json_schema(by_alias=True)
            key = f"{pkg}.istio.io/{name}"
            if key not in found or version_priority(version) > found[key][0]:
                found[key] = (version_priority(version), _shape_of(schema, schema.get("$defs", {})))
    return {key: shape for key, (_, shape) in sorted(found.items())}


if __name__ == "__main__":
    print(json.dumps(generate(), sort_keys=True, separators=(",", ":")))
