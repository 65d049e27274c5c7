"""The gate around a rendering: a feature's entry checks before it renders, the invariants on the overlay after."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from features import invariants
from features._reach import reached
from features.base import Feature, Refused, Rendered, validate_params


def render_gated(feature: Feature, params: dict[str, Any], scope: str, inv: Inventory,
                 traffic: Any = None) -> tuple[Rendered, list[Any]]:
    """`render` behind the feature's gate: the gate's checks before (with `traffic`, what telemetry observed,
    if read), the invariants on the overlay after (features.invariants). Refused (Refused, a MeshstepError that
    keeps the rendering and every finding) when one of them fails at error level; returns the rendering and the
    warnings and infos, with who the change reaches (features._reach) among its notes."""
    p = validate_params(feature, params)
    msgs = feature.checks(inv, scope, p, traffic)
    try:
        rendered = feature.render(p, scope, inv)
    except MeshstepError as e:
        errors = [m for m in msgs if m.level == "error"]
        if errors:  # the gate's reason comes first; the rendering's own is one more
            raise Refused(feature.id, scope, errors, None, str(e)) from e
        raise
    msgs += invariants.check(feature, p, scope, inv, rendered)
    errors = [m for m in msgs if m.level == "error"]
    if errors:
        raise Refused(feature.id, scope, errors, rendered)
    reach = [f"# reaches: {r}" for r in reached(inv, rendered.objects)]
    return replace(rendered, notes=(*rendered.notes, *reach)), msgs
