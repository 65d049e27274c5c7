"""The gate around a rendering: a feature's entry checks before it renders, the invariants on the overlay after."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from analysis.base import Message, catalog_message
from analysis.effective import crd_name, served, unknown_kind
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from cluster.model import GATEWAY_API_GROUP, ISTIO_GROUPS, Ref
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
    msgs += unknown_kinds(rendered, inv) + invariants.check(feature, p, scope, inv, rendered)
    errors = [m for m in msgs if m.level == "error"]
    if errors:
        raise Refused(feature.id, scope, errors, rendered)
    reach = [f"# reaches: {r}" for r in reached(inv, rendered.objects)]
    return replace(rendered, notes=(*rendered.notes, *reach)), msgs


def unknown_kinds(rendered: Rendered, inv: Inventory) -> list[Message]:
    """A warning for each custom kind the rendering writes that the source cannot tell the cluster serves."""
    out = []
    for group, kind in dict.fromkeys((o["apiVersion"].rpartition("/")[0], o["kind"]) for o in rendered.objects):
        if (group in ISTIO_GROUPS or group == GATEWAY_API_GROUP) and served(inv, group, kind) is None:
            u = unknown_kind(inv, kind, group)
            crd = crd_name(kind, group)
            out.append(catalog_message(
                "MST0007", Ref("CustomResourceDefinition", None, crd),
                f"whether the cluster serves {kind} ({group}) is unknown: {u.reason if u else 'not shown'}; rendered "
                "anyway", check=f"kubectl get crd {crd}"))
    return out
