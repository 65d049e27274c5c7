"""What `kubectl apply` does with a whole object written over one the cluster has: the removals it honours, and
the object the API server keeps. A stage's YAML is applied with it, or by a GitOps tool that applies as it does."""
from __future__ import annotations

from typing import Any


def stored(o: Any) -> Any:
    """An object as the API server keeps it once `kubectl apply` has sent it: a null removes its key, and a map
    whose keys are all removed is gone (the server omits an empty labels or annotations map)."""
    if isinstance(o, dict):
        return {k: stored(v) for k, v in o.items() if v is not None and not _only_removals(v)}
    if isinstance(o, list):
        return [stored(v) for v in o]
    return o


def _only_removals(v: Any) -> bool:
    return isinstance(v, dict) and bool(v) and all(x is None or _only_removals(x) for x in v.values())


def with_removals(new: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """`new`, a whole object to apply over `live`, with a null for every key of a map that `live` has and `new`
    leaves out. `kubectl apply` (and a GitOps tool applying as it does) removes a key left out only when its own
    last-applied-configuration has it: a label set by `kubectl label`, by Helm or by an operator stays. A null it
    always sends, and the server removes the key. A map left out has each of its keys removed, not the map (which
    would take keys others add meanwhile). Lists are written whole."""
    out = dict(new)
    for k, v in live.items():
        if k not in new:
            out[k] = with_removals({}, v) if isinstance(v, dict) and v else None
        elif isinstance(v, dict) and isinstance(new[k], dict):
            out[k] = with_removals(new[k], v)
    return out
