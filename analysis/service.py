"""Service checks (istioctl's service.PortNameAnalyzer): ports whose protocol Istio cannot tell from the name."""
from __future__ import annotations

from collections.abc import Iterator

from analysis.base import Context, check
from cluster.model import Ref, Service
from cluster.queries import SYSTEM_NAMESPACES, as_named

# Protocols that are plain TCP to an ExternalName service's proxy: it cannot route them by name.
_TCP_LIKE = ("TCP", "UNKNOWN")


def _skipped(svc: Service) -> bool:
    """Kubernetes' own namespaces and Istio's own services (labelled istio=… or release=istio, or deployed by Istio
    for a gateway or waypoint) are not checked."""
    return (svc.namespace in SYSTEM_NAMESPACES or "istio" in svc.labels or svc.labels.get("release") == "istio"
            or "gateway.istio.io/managed" in svc.labels)


@check("IST0118", "Name the port <protocol>[-<suffix>] (http, http2, grpc, tcp, tls, …) or set appProtocol, so Istio "
       "does not have to sniff the protocol.",
       reads=("Service",))
def port_name_convention(ctx: Context) -> Iterator[tuple[Ref, str]]:
    for svc in ctx.inventory.services:
        if svc.type == "ExternalName" or _skipped(svc):
            continue
        for p in svc.ports:
            if p.istio_protocol == "UNKNOWN":
                target = p.target_port if p.target_port is not None else p.port
                yield as_named(ctx.inventory, svc.ref), (
                    f"Port name {p.name or ''} (port: {p.port}, targetPort: {target}) doesn't follow the naming "
                    f"convention of Istio port.")


@check("IST0150", "Name the ExternalName service's port for its real protocol (http-…, https-…, tls-…) so the proxy "
       "can route it by host; tcp and unnamed ports are forwarded by port only.",
       reads=("Service",))
def external_name_port(ctx: Context) -> Iterator[tuple[Ref, str]]:
    for svc in ctx.inventory.services:
        if svc.type != "ExternalName" or _skipped(svc):
            continue
        if any(p.istio_protocol in _TCP_LIKE for p in svc.ports):
            yield as_named(ctx.inventory, svc.ref), (
                "Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and unmatched "
                "traffic for ports serving TCP protocol from being forwarded correctly")
