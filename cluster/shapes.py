"""The shapes objects must have when they come in from a source: which fields are maps, lists, strings, integers
or booleans. Checked at the edge, once per object, so that nothing past `cluster.sources` meets a list where it
reads a map (`Pod shop/x: metadata.labels is a list, not a map`): an error naming the object, not a traceback
somewhere in analysis.

Core kinds are declared here, for the fields meshstep reads; Istio's kinds come from the typed Istio models
(cloudcoil), generated into istio_shapes.json (`python -m cluster.shapes > cluster/istio_shapes.json`; a test fails
when it is stale): importing those models takes seconds, reading the file milliseconds. A shape is plain data (JSON):
a leaf (`string`, `integer`, `number`, `boolean`, `scalar`, `int-or-string`, `map`, `list`), `{"field": shape, …}`
(a map whose named fields have those shapes; others are not looked at), `{"*": shape}` (a map of any keys) or
`[shape]` (a list of them). Only types: requiredness and enums are the API server's business. A field that is null
is dropped, as the Kubernetes API server drops it."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import msgspec

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
    # RFC 3339 text in JSON; YAML reads an unquoted one as a timestamp (kept as it comes: shown, never computed on)
    "timestamp": _Leaf(frozenset({str, datetime, date}), "a timestamp"),
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
            "ownerReferences": [{"kind": STR, "name": STR, "controller": BOOL}], "creationTimestamp": "timestamp"}
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
def istio_checks() -> dict[str, Check]:
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
            check = istio_checks().get(f"{obj['apiVersion'].rpartition('/')[0]}/{kind}")
        if check is not None:
            check(obj)
    except _Bad as e:
        return str(e)
    return None


# ---------------------------------------------------------------- typed decoding, from the same shapes
#
# A big cluster is mostly pods, and meshstep reads a few fields of each (a pod's JSON is ~10 KB: managedFields,
# volumes, statuses). Pods are decoded straight from JSON into msgspec Structs made from the shapes above: only
# the declared fields are built, everything else is skipped unparsed, and the types are checked as they are
# decoded (the same exact types: a bool is not an integer, a null is as good as absent). One declaration, two
# readers: the shapes check dicts (YAML, objects a feature writes), the Structs decode bytes.

_STRUCT_TYPES: dict[str, Any] = {
    "string": str, "integer": int, "number": int | float, "boolean": bool, "scalar": str | int | float | bool,
    "int-or-string": int | str, "map": dict[str, Any], "list": list[Any], "timestamp": Any,
}


_STRUCTS: dict[int, Any] = {}  # by the id of a (module-level, never freed) shape: one Struct per shape


def struct_of(shape: Any, name: str) -> Any:
    """The type msgspec decodes a shape into: a Struct (fields optional, None when absent or null; unknown fields
    skipped) for `{"field": shape}`, dict/list for `{"*": …}`/`[…]`. Structs compare by value, C-level."""
    if isinstance(shape, list):
        return list[struct_of(shape[0], name)]  # type: ignore[misc]
    if isinstance(shape, dict):
        if list(shape) == ["*"]:
            return dict[str, struct_of(shape["*"], name)]  # type: ignore[misc]
        if id(shape) not in _STRUCTS:
            fields = [(k, struct_of(v, f"{name}_{k}") | None, None) for k, v in shape.items()]
            _STRUCTS[id(shape)] = msgspec.defstruct(name, fields, module=__name__)
        return _STRUCTS[id(shape)]
    return _STRUCT_TYPES[shape]


METADATA_STRUCT = struct_of(METADATA, "Metadata")
POD_SPEC_STRUCT = struct_of(POD_SPEC, "PodSpec")
POD_STATUS_STRUCT = struct_of(KINDS["Pod"]["status"], "PodStatus")
POD_TEMPLATE_STRUCT = struct_of(POD_TEMPLATE, "PodTemplate")
POD = struct_of({**COMMON, **KINDS["Pod"]}, "Pod")
_POD_LIST = msgspec.defstruct("PodList", [("items", list[POD] | None, None)], module=__name__)  # type: ignore[valid-type]
_HEAD = msgspec.defstruct("Head", [("kind", Any, None)], module=__name__)
_POD_LIST_DECODER = msgspec.json.Decoder(_POD_LIST)
_POD_DECODER = msgspec.json.Decoder(POD)
_HEAD_DECODER = msgspec.json.Decoder(_HEAD)


class TypeProblem(Exception):
    """A decoded object whose field has the wrong type: `where` is the item's index in its list, when known."""

    def __init__(self, message: str, index: int | None):
        super().__init__(message)
        self.index = index


def decode_pods(data: bytes | memoryview) -> list[Any]:
    """The typed pods of a list page's JSON (`{"items": [...]}`); TypeProblem names the item and field."""
    try:
        return _POD_LIST_DECODER.decode(data).items or []
    except msgspec.ValidationError as e:
        raise _problem(str(e), "$.items") from None


def decode_pod(data: Any) -> Any:
    """One typed pod, from its JSON (bytes, or a msgspec.Raw slice of a bigger document)."""
    try:
        return _POD_DECODER.decode(data)
    except msgspec.ValidationError as e:
        raise _problem(str(e), "$") from None


def typed(obj: dict[str, Any], struct: Any = POD) -> Any:
    """A dict (read from YAML, or written by a feature) as its typed form: a pod (POD), a pod template
    (POD_TEMPLATE_STRUCT)."""
    try:
        return msgspec.convert(obj, struct)
    except msgspec.ValidationError as e:
        raise _problem(str(e), "$") from None


def kind_of(data: Any) -> Any:
    """The `kind` of one object's JSON, the rest skipped without being built."""
    return _HEAD_DECODER.decode(data).kind


_MSGSPEC_TYPES = {"object": "a map", "array": "a list", "str": "a string", "int": "an integer", "float": "a number",
                  "bool": "a boolean", "null": "null"}


def _problem(message: str, root: str) -> TypeProblem:
    """msgspec's `Expected `int | null`, got `str` - at `$.items[3].spec.x``, said as the shapes say it:
    `spec.x is a string, not an integer`, with the item's index apart."""
    text, _, at = message.partition(" - at `")
    path = at.rstrip("`")
    index = None
    if root != "$" and path.startswith(root + "["):
        i, _, path = path[len(root) + 1:].partition("]")
        index = int(i) if i.isdigit() else None
        path = "$" + path
    path = path.removeprefix("$").lstrip(".")
    if text.startswith("Expected `"):
        expected, _, got = text[len("Expected `"):].partition("`, got `")
        wanted = [t for t in expected.split(" | ") if t != "null"]
        if wanted:
            names = {_MSGSPEC_TYPES.get(t, t) for t in wanted}
            want = ("a string" if names == {"a string", "an integer", "a number", "a boolean"} else
                    "a port number or name" if names == {"a string", "an integer"} else " or ".join(sorted(names)))
            text = f"is {_MSGSPEC_TYPES.get(got.rstrip('`'), got.rstrip('`'))}, not {want}"
    elif text.startswith("Object missing required field `"):
        text = f"has no {text.split('`')[1]}, which is required"
    return TypeProblem(f"{path} {text}" if path else text, index)


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


_KUBE_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(name: str) -> tuple[int, int, int]:
    """Kubernetes' version order as a sort key: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > anything else."""
    m = _KUBE_VERSION.match(name)
    if not m:
        return (-1, 0, 0)
    stability = {"alpha": 0, "beta": 1, None: 2}[m.group(2)]
    return (stability, int(m.group(1)), int(m.group(3) or 0))
