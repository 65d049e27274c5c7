from __future__ import annotations

from features.base import Feature, Observation, Param, http_port, obj, scope_of, services_in
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
        svcs = [s for s in services_in(scope, inv) if not p["service"] or s.name == p["service"]]
        if not svcs:
            raise MeshstepError(f"ingress-gateway: no service {p['service'] or 'with pods'} in {scope}")
        svc = svcs[0]
        host = p["host"] or f"{scope}.example.com"
        return [
            obj(inv, "networking.istio.io", "Gateway", scope, f"{scope}-ingress", {
                "selector": selector,
                "servers": [{"port": {"number": p["port"], "name": "http", "protocol": "HTTP"}, "hosts": [host]}]}),
            obj(inv, "networking.istio.io", "VirtualService", scope, f"{scope}-ingress", {
                "hosts": [host], "gateways": [f"{scope}-ingress"],
                "http": [{"route": [{"destination": {"host": svc.host, "port": {"number": http_port(svc)}}}]}]}),
        ]

    def detect(self, inv):
        out = []
        for gw in inv.of_kind("Gateway"):
            if gw.group != "networking.istio.io":
                continue
            bound = [str(vs.ref) for vs in inv.of_kind("VirtualService") if any(
                g in (gw.name, f"{gw.namespace}/{gw.name}") for g in vs.spec.get("gateways") or ())]
            if bound:
                out.append(Observation(self.id, scope_of(gw, inv), [str(gw.ref), *bound],
                                       {"host": ((gw.spec.get("servers") or [{}])[0].get("hosts") or [""])[0]}))
        return out


FEATURE = IngressGateway()
