from __future__ import annotations

from cluster.errors import MeshstepError
from features._gateway_api import API, chosen_api, parent_services, service_ref
from features._routes import http_services, ingress_routes, routed_namespaces, service_routes
from features.base import Feature, Param, observations_by_scope


class RequestRouting(Feature):
    id = "request-routing"
    title = "Request routing by version"
    category = "traffic"
    depends_on = ("sidecar-injection",)
    scopes = ("namespace",)
    params = (Param("service", str, "", "route only this service (default: every service whose pods carry a "
                                        "`version` label)"), API)
    problem = ("Which version of each service should serve requests, decided by config rather than by which "
               "pods happen to be running?")
    pitfalls = (
        "Subsets select pods by the `version` label: pods without it get no traffic through a subset route.",
        "Routing happens in the caller's sidecar: callers outside the mesh bypass it.",
        "Create the DestinationRule before the VirtualService that names its subsets (503 NR otherwise).",
        "Gateway API has no subsets: a version is a Service of its own (reviews-v1), which meshstep adds.",
        "In ambient mode routes apply at the destination's waypoint: without one they do nothing.",
    )
    docs = "https://istio.io/latest/docs/tasks/traffic-management/request-routing/"

    owns = ("rules[*].backendRefs",)

    def build(self, p, scope, inv):
        api = chosen_api(self.id, p, scope, inv)
        objs = []
        for svc in http_services(scope, inv, p["service"]):  # a database port gets no version routes
            versions = sorted({pod.labels["version"] for pod in inv.pods_of_service(svc) if "version" in pod.labels})
            if not versions:
                continue
            # every route to the service sends to its first version; a route to another host stays as it is
            routes = service_routes(inv, svc, api, versions, self.id)
            for route in routes.routes:
                for rule in routes.rules(route):
                    routes.pin(rule, versions[0])
            objs += routes.objects
        if not objs:
            raise MeshstepError(f"request-routing: no HTTP service {p['service'] + ' ' if p['service'] else ''}in "
                                f"{scope} has pods with a `version` label (label the pod templates version=v1)")
        return objs

    def detect(self, inv):
        routed = [vs for vs in inv.of_kind("VirtualService") if any(
            d.get("destination", {}).get("subset") for r in vs.spec.get("http") or [] for d in r.get("route") or [])]
        # an HTTPRoute attached to a Service that sends its traffic to another (a version's own Service)
        routed += [r for r in inv.of_kind("HTTPRoute") if (parents := parent_services(r)) and any(
            service_ref(b) and b.get("name") not in parents for rule in r.spec.get("rules") or ()
            for b in rule.get("backendRefs") or ())]
        # A route attached to a Gateway is routing done with the Gateway API: it decides which Service serves the
        # ingress requests (istio.io's Gateway API tasks start there), so the routing features may build on it.
        obs = observations_by_scope(self.id, routed, inv)
        # by the namespaces whose Services they send to: a route beside its Gateway routes another namespace's
        ingress = [r for r in ingress_routes(inv) if r not in routed]
        return obs + observations_by_scope(self.id, ingress, inv, lambda r: routed_namespaces(inv, r))


FEATURE = RequestRouting()
