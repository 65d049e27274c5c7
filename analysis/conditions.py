"""Status condition checks (istioctl's conditions analyzer): what istiod and the Gateway API controller wrote
back as not working — a Service not bound to its waypoint, a policy ztunnel rejected, a route not accepted."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from analysis.base import Context, check
from cluster.model import GATEWAY_API_GROUP, ISTIO_GROUPS, Ref

# Reasons that report a partial failure under a True status.
_NEGATIVE_REASONS = ("PartiallyInvalid",)


def _conditions(status: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from status.get("conditions") or ()
    for parent in status.get("parents") or ():  # Gateway API routes report per parent
        yield from (parent or {}).get("conditions") or ()


def _istio_written(ctype: str) -> bool:
    """Conditions Istio or the Gateway API define; other controllers' (e.g. argocd.argoproj.io/Synced) are theirs."""
    domain, sep, _ = ctype.rpartition("/")
    return not sep or domain == "istio.io" or domain.endswith(".istio.io")


@check("IST0171", "Read the condition's reason and message (kubectl get <kind> <name> -o yaml) and fix what it names, "
       "e.g. deploy the waypoint, or change the policy to what ztunnel supports.",
       reads=())
def negative_condition(ctx: Context) -> Iterator[tuple[Ref, str]]:
    for kind, objs in ctx.inventory.objects.items():
        for o in objs:
            if not (o.group in ISTIO_GROUPS or o.group == GATEWAY_API_GROUP or (kind == "Service" and not o.group)):
                continue
            for c in _conditions(o.raw.get("status") or {}):
                if not _istio_written(c.get("type") or ""):
                    continue
                if c.get("status") == "False" or c.get("reason") in _NEGATIVE_REASONS:
                    yield o.ref, (f"A condition with a negative status is present: type={c.get('type')}, "
                                  f"reason={c.get('reason')}, message={c.get('message')}.")
