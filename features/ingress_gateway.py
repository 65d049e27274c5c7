from __future__ import annotations

from typing import Any

from analysis.ambient import is_waypoint
from cluster.errors import MeshstepError
from cluster.model import GATEWAY_API_GROUP
from features._gateway_api import API, GATEWAY_API, attached, backend, chosen_api, gateway_api_obj
from features._istio import free_name
from features.base import Feature, Observation, Param, clean, http_port, http_service, obj, scope_of


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
        API,
    )
    problem = "Which host names should reach which services from outside, through one controlled entry point?"
    pitfalls = (
        "The Gateway's selector must match the gateway pods' labels (istio: ingressgateway by default).",
        "A VirtualService must name the Gateway in `gateways`, and the hosts must match on both.",
        "HTTPS needs a Secret named by credentialName in the gateway's namespace.",
        "With the Gateway API, istiod deploys a gateway (Deployment and LoadBalancer Service) per Gateway of "
        "class istio: no shared ingress gateway pods are needed.",
    )
    docs = "https://istio.io/latest/docs/tasks/traffic-management/ingress/ingress-control/"

    def build(self, p, scope, inv):
        if chosen_api(self.id, p, scope, inv) == GATEWAY_API:
            return self._gateway_api(p, scope, inv)
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

    def _gateway_api(self, p, scope, inv):
        """A Gateway of class istio (istiod deploys its proxy) and an HTTPRoute attached to it; a Gateway of the
        namespace with routes already (for this host, or any when none is asked) is recognised, left as it is."""
        for gw, bound in _attached_gateways(inv):
            if scope_of(gw, inv) == scope and (not p["host"] or p["host"] in _listener_hosts(gw)):
                return [clean(gw.raw), *(clean(r.raw) for r in bound)]
        svc = http_service(scope, inv, p["service"] or None)
        host = p["host"] or f"{scope}.example.com"
        gw_name = free_name(inv, "Gateway", scope, f"{scope}-ingress")
        return [
            gateway_api_obj(inv, "Gateway", scope, gw_name, {
                "gatewayClassName": "istio",
                "listeners": [{"name": "http", "hostname": host, "port": p["port"], "protocol": "HTTP"}]}),
            gateway_api_obj(inv, "HTTPRoute", scope, free_name(inv, "HTTPRoute", scope, f"{scope}-ingress"), {
                "parentRefs": [{"name": gw_name}], "hostnames": [host],
                "rules": [{"backendRefs": [backend(svc.name, http_port(svc))]}]}),
        ]

    def detect(self, inv):
        return [Observation(self.id, scope_of(gw, inv), [str(gw.ref), *(str(vs.ref) for vs in bound)],
                            {"host": (_hosts(gw) or [""])[0]}) for gw, bound in _bound_gateways(inv)] + [
            Observation(self.id, scope_of(gw, inv), [str(gw.ref), *(str(r.ref) for r in bound)],
                        {"host": (_listener_hosts(gw) or [""])[0]}) for gw, bound in _attached_gateways(inv)]


def _listener_hosts(gw: Any) -> list[str]:
    return [li["hostname"] for li in gw.spec.get("listeners") or [] if li.get("hostname")]


def _attached_gateways(inv: Any) -> list[tuple[Any, list[Any]]]:
    """Gateway API Gateways (not waypoints) with the HTTPRoutes attached to them."""
    return [(gw, bound) for gw in inv.of_kind("Gateway") if gw.group == GATEWAY_API_GROUP and not is_waypoint(gw)
            and (bound := attached(inv, gw))]


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
