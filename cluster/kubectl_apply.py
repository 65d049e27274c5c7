"""What `kubectl apply` does with a whole object written over one the cluster has: the removals it honours, and
the object the API server keeps. A stage's YAML is applied with it, or by a GitOps tool that applies as it does."""
from __future__ import annotations

from typing import Any


def stored(o: Any) -> Any:
    """An object as the API server keeps it once `kubectl apply` has sent it: a null removes its key; an
    annotations map whose every key is removed is gone (see `with_removals`)."""
    if isinstance(o, dict):
        return {k: stored(v) for k, v in o.items()
                if v is not None and not (k == "annotations" and _only_removals(v))}
    if isinstance(o, list):
        return [stored(v) for v in o]
    return o


def _only_removals(v: Any) -> bool:
    return isinstance(v, dict) and bool(v) and all(x is None for x in v.values())


def with_removals(new: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """`new`, a whole object to apply over `live`, with a null for every key of a map that `live` has and `new`
    leaves out. `kubectl apply` (and a GitOps tool applying as it does) removes a key left out only when its own
    last-applied-configuration has it: a label set by `kubectl label`, by Helm or by an operator stays. A null it
    always sends, and the server removes the key. Annotations left out are removed one by one: kubectl writes its
    last-applied-configuration into the annotations map, so a null map would never reach the server. Lists are
    written whole."""
    out = dict(new)
    for k, v in live.items():
        if k not in new:
            out[k] = with_removals({}, v) if k == "annotations" and isinstance(v, dict) and v else None
        elif isinstance(v, dict) and isinstance(new[k], dict):
            out[k] = with_removals(new[k], v)
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """`target` with an RFC 7386 JSON merge patch applied, as the API server applies one (null deletes a key;
    lists are replaced whole)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out
