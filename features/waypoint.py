"""A waypoint: the L7 proxy of an ambient namespace (or of one Service), as `istioctl waypoint apply` creates it."""
from __future__ import annotations

import copy

from analysis.ambient import HBONE_PORT, USE_WAYPOINT, WAYPOINT_CLASS, is_waypoint
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from features._gateway_api import gateway_api_obj, installed
from features._istio import namespace_labelled
from features.base import Feature, Observation, Param, clean

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"


class Waypoint(Feature):
    id = "waypoint"
    title = "Waypoint proxy (ambient L7)"
    category = "traffic"
    scopes = ("namespace",)
    # Routing, retries and L7 policy run in the waypoint for an ambient namespace, as in the sidecars otherwise.
    provides = ("sidecar-injection",)
    params = (
        Param("service", str, "", "send only this Service's traffic through the waypoint (its istio.io/use-waypoint "
                                  "label); default: the whole namespace's"),
        Param("name", str, "waypoint", "the waypoint's name (a Gateway of class istio-waypoint)", pattern=_DNS_LABEL),
    )
    problem = ("Which ambient services need L7 — HTTP routing, retries, L7 authorization, request metrics — and "
               "so an Envoy of their own in front of them?")
    pitfalls = (
        "Only traffic to a Service (or namespace) labelled istio.io/use-waypoint goes through it: without the "
        "label, VirtualServices and L7 policies are silently skipped.",
        "L7 AuthorizationPolicies must be bound to the waypoint (targetRefs to the Gateway), not by selector: "
        "ztunnel would enforce those and deny what it cannot evaluate.",
        "The waypoint is a Deployment istiod creates for the Gateway: size it (replicas, HPA) like any proxy on "
        "the request path.",
    )
    docs = "https://istio.io/latest/docs/ambient/usage/waypoint/"
    keeps_decisions = True
    owns = (f"labels/{USE_WAYPOINT}",)

    def build(self, p, scope, inv):
        if installed(inv) is False:
            raise MeshstepError("waypoint: a waypoint is a Gateway API Gateway, and the cluster does not serve the "
                                "Gateway API CRDs: install them (kubectl apply -f https://github.com/kubernetes-sigs/"
                                "gateway-api/releases/download/v1.3.0/standard-install.yaml)")
        existing = inv.get("Gateway", scope, p["name"])
        if existing is not None and not is_waypoint(existing):
            raise MeshstepError(f"waypoint: Gateway {scope}/{p['name']} exists and is not a waypoint "
                                f"(class {existing.spec.get('gatewayClassName')}): pass --set name=…")
        gateway = clean(existing.raw) if existing is not None else gateway_api_obj(
            inv, "Gateway", scope, p["name"],
            {"gatewayClassName": WAYPOINT_CLASS,
             "listeners": [{"name": "mesh", "port": HBONE_PORT, "protocol": "HBONE"}]},
            {"istio.io/waypoint-for": "service"})
        if not p["service"]:
            return [gateway, namespace_labelled(inv, scope, {USE_WAYPOINT: p["name"]}, ())]
        svc = inv.get("Service", scope, p["service"])
        if svc is None:
            raise MeshstepError(f"waypoint: no Service {p['service']!r} in {scope}")
        labelled = copy.deepcopy(clean(svc.raw))
        labelled["metadata"]["labels"] = {**(labelled["metadata"].get("labels") or {}), USE_WAYPOINT: p["name"]}
        return [gateway, labelled]

    def notes(self, p, scope, inv, rollback):
        if rollback:
            return [f"# traffic to {p['service'] or scope} goes straight to its pods through ztunnel again (L4 only)"]
        return [f"# istiod deploys the waypoint for Gateway {scope}/{p['name']} (a Deployment and Service of that "
                "name); the label sends traffic to it:",
                f"# istioctl waypoint status -n {scope} --name {p['name']}"]

    def detect(self, inv: Inventory) -> list[Observation]:
        """A waypoint is on where a namespace or Service is labelled to use one that exists."""
        out = []
        for gw in inv.of_kind("Gateway"):
            if not is_waypoint(gw):
                continue
            users = [f"Namespace {n.name}" for n in inv.namespaces.values()
                     if n.labels.get(USE_WAYPOINT) == gw.name and n.name == gw.namespace]
            services = [s for s in inv.services_by_namespace.get(gw.namespace or "", ())
                        if s.labels.get(USE_WAYPOINT) == gw.name]
            users += [f"Service {s.namespace}/{s.name}" for s in services]
            if users:
                params = {"name": gw.name} | ({"service": services[0].name} if services and len(users) == 1 else {})
                out.append(Observation(self.id, gw.namespace or "", [str(gw.ref), *users], params))
        return out


FEATURE = Waypoint()
