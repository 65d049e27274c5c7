"""Deprecated fields of Istio resources (istioctl's deprecation.FieldAnalyzer): configuration Istio still accepts
but ignores or will stop reading, so the behaviour it asks for is not (or soon not) what the proxies do."""
from __future__ import annotations

from collections.abc import Iterator

from analysis.base import Context, check
from cluster.model import Ref
from cluster.queries import istio_objects


@check("IST0002", "Replace the deprecated field with the one the message names (see the resource's reference page on "
       "istio.io); Istio ignores it or will stop reading it.",
       reads=("VirtualService", "Sidecar"))
def deprecated_fields(ctx: Context) -> Iterator[tuple[Ref, str] | tuple[Ref, str, str]]:
    inv = ctx.inventory
    for vs in istio_objects(inv, "VirtualService"):
        for route in vs.spec.get("http") or ():
            delay = ((route or {}).get("fault") or {}).get("delay") or {}
            percent = delay.get("percent")
            if isinstance(percent, (int, float)) and percent > 0:
                yield vs.ref, ("Deprecated: HTTPRoute.fault.delay.percent is deprecated; use "
                               "HTTPRoute.fault.delay.percentage"), \
                    (f"Write the delay's share as percentage: {{value: {percent}}} instead of percent: {percent}.")
    for sc in istio_objects(inv, "Sidecar"):
        policy = sc.spec.get("outboundTrafficPolicy") or {}
        if policy.get("egressProxy") is not None:
            yield sc.ref, "Deprecated: OutboundTrafficPolicy.EgressProxy ignored", \
                ("Remove outboundTrafficPolicy.egressProxy: Istio ignores it; route unknown destinations through an "
                 "egress gateway with a ServiceEntry and VirtualService instead.")
