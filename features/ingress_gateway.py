from __future__ import annotations

from typing import Any

from features._istio import free_name
from features.base import Feature, Observation, Param, clean, http_port, http_service, obj, scope_of
from planner.errors import MeshstepError


class IngressGateway(Feature):
    id = "ingress-gateway"
    title = "Ingress through the Istio gateway"
    category = "traffic"
    scopes = ("namespace",)
    params = (
        Param("host", str, "", "the external host name (default: <namespace>.example.com)"),
        Param("service", str, "", "the service that receives the traffic (default: the namespace's first HTTP "
                                  "service)"),
        Param("port", int, 80, "gateway port (HTTP)", minimum=1, maximum=65535),
    )
    problem = "Which host names should reach which services from outside, through one controlled entry point?"
    pitfalls = (
        "The Gateway's selector must match the gateway pods' labels (istio: ingressgateway by default).",
        "A VirtualService must name the Gateway in `gateways`, and the hosts must match on both.",
        "HTTPS needs a Secret named by credentialName in the gateway's namespace.",
    )
    docs = "https://istio.io/latest/docs/tasks/traffic-management/ingress/ingress-control/"

    def build(self, p, scope, inv):
        gateways = [c for c in inv.components if c.component == "ingress-gateway"]
        if not gateways:
            raise MeshstepError("ingress-gateway: no ingress gateway runs in this cluster: install one "
                                "(istioctl install --set profile=default) first")
        pod = inv.pod(gateways[0].namespace, gateways[0].name) if gateways[0].kind == "Pod" else None
        labels = (pod.labels if pod
                  else inv.workload(gateways[0].namespace, gateways[0].kind, gateways[0].name).template.labels)
        selector = {"istio": labels["istio"]} if "istio" in labels else {"app": labels.get("app", "")}
        # Already on in this namespace (for this host, or for any when none is asked): recognised, left as it is.
        for gw, bound in _bound_gateways(inv):
            if scope_of(gw, inv) == scope and (not p["host"] or p["host"] in _hosts(gw)):
                return [clean(gw.raw), *(clean(vs.raw) for vs in bound)]
        svc = http_service(scope, inv, p["service"] or None)  # an ingress host never goes to a database port
        host = p["host"] or f"{scope}.example.com"
        gw_name = free_name(inv, "Gateway", scope, f"{scope}-ingress")
        return [
            obj(inv, "networking.istio.io", "Gateway", scope, gw_name, {
                "selector": selector,
                "servers": [{"port": {"number": p["port"], "name": "http", "protocol": "HTTP"}, "hosts": [host]}]}),
            obj(inv, "networking.istio.io", "VirtualService", scope,
                free_name(inv, "VirtualService", scope, f"{scope}-ingress"), {
                "hosts": [host], "gateways": [gw_name],
                "http": [{"route": [{"destination": {"host": svc.host, "port": {"number": http_port(svc)}}}]}]}),
        ]

    def detect(self, inv):
        return [Observation(self.id, scope_of(gw, inv), [str(gw.ref), *(str(vs.ref) for vs in bound)],
                            {"host": (_hosts(gw) or [""])[0]}) for gw, bound in _bound_gateways(inv)]


def _hosts(gw: Any) -> list[str]:
    return [h for s in gw.spec.get("servers") or [] for h in s.get("hosts") or []]


def _bound_gateways(inv: Any) -> list[tuple[Any, list[Any]]]:
    """Istio Gateways with the VirtualServices bound to them (those that name them in `gateways`)."""
    out = []
    for gw in inv.of_kind("Gateway"):
        if gw.group != "networking.istio.io":
            continue
        bound = [vs for vs in inv.of_kind("VirtualService") if any(
            g in (gw.name, f"{gw.namespace}/{gw.name}") for g in vs.spec.get("gateways") or ())]
        if bound:
            out.append((gw, bound))
    return out


FEATURE = IngressGateway()
