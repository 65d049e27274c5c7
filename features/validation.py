"""Schema validation of rendered objects: Istio's typed models (cloudcoil) offline, and the cluster's own CRD
schemas (openAPIV3Schema: types, enums, required and unknown fields)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from cluster.errors import MeshstepError

if TYPE_CHECKING:
    from cluster.inventory import Inventory


def _typed_model(api_version: str, kind: str) -> Any:
    group, _, version = api_version.rpartition("/")
    pkg = group.split(".")[0]
    try:
        mod = _models(f"cloudcoil.models.istio.{pkg}.{version}")
    except ImportError:
        return None
    return getattr(mod, kind, None)


def _models(name: str) -> ModuleType:
    """One API version's models, loaded alone: importing it the usual way runs the package's __init__, which
    imports every Istio group's models (3,400 pydantic classes: 1.5 s of CPU, most of a `render`), where one
    version's take 0.05–0.4 s. The module imports no sibling, and is registered under its own name, so that a
    later import of the package takes it as it is."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("cloudcoil.models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(name)
    path = Path(spec.submodule_search_locations[0], *name.split(".")[2:]).with_suffix(".py")
    found = importlib.util.spec_from_file_location(name, path)
    if found is None or found.loader is None or not path.is_file():
        raise ImportError(name)
    mod = importlib.util.module_from_spec(found)
    sys.modules[name] = mod
    try:
        found.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


def validate_object(obj: dict[str, Any], inv: Inventory) -> None:
    """Typed Istio models offline (cloudcoil), and the cluster's own CRD schema where it has a real one.

    The cloudcoil models check types and enums but accept unknown fields, so a misspelt field only fails against
    the CRD schema; kinds the models lack (none today) fall through to the schema alone."""
    from pydantic import ValidationError

    ref = f"{obj['kind']} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
    model = _typed_model(obj["apiVersion"], obj["kind"]) if "istio.io/" in obj["apiVersion"] else None
    if model is not None:
        try:
            model.model_validate(obj)
        except ValidationError as e:
            raise MeshstepError(f"rendered {ref} is not valid {obj['apiVersion']}: {e.errors()[0]['loc']}: "
                                f"{e.errors()[0]['msg']}") from e
    group, _, version = obj["apiVersion"].rpartition("/")
    crd = next((c for c in inv.crds.values() if c.group == group and c.kind == obj["kind"]), None)
    if crd is not None:
        if version not in crd.served_versions:
            raise MeshstepError(f"rendered {ref}: the cluster does not serve {obj['apiVersion']} "
                                f"(served: {', '.join(crd.served_versions)})")
        problem = schema_problem(obj, crd.schemas.get(version) or {}, "")
        if problem:
            raise MeshstepError(f"rendered {ref} does not match the cluster's CRD schema: {problem}")


_IMPLICIT = ("apiVersion", "kind", "metadata")  # at the root, CRD schemas often leave these out


def schema_problem(value: Any, schema: dict[str, Any], path: str) -> str | None:
    """The first place where `value` breaks an openAPIV3Schema (types, enums, required, unknown fields)."""
    if not schema or schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return None
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": (int, float)}
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)):
            return f"{path or '.'}: expected an integer or a string"
        return None
    if (kind in types and not isinstance(value, types[kind])
            or kind in ("integer", "number") and isinstance(value, bool)):
        return f"{path or '.'}: expected {kind}, got {type(value).__name__}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path}: {value!r} is not one of {schema['enum']}"
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties") or {}
        for req in schema.get("required") or ():
            if req not in value:
                return f"{path}.{req}: required"
        for k, v in value.items():
            if k in props:
                problem = schema_problem(v, props[k], f"{path}.{k}")
                if problem:
                    return problem
            elif props and not schema.get("additionalProperties") and not (path == "" and k in _IMPLICIT):
                return f"{path}.{k}: unknown field"
        if "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
            for k, v in value.items():
                problem = schema_problem(v, schema["additionalProperties"], f"{path}.{k}")
                if problem:
                    return problem
    if kind == "array" and isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            problem = schema_problem(v, schema["items"], f"{path}[{i}]")
            if problem:
                return problem
    return None
