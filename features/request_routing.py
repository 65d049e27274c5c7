from __future__ import annotations

from cluster.errors import MeshstepError
from features._gateway_api import (
    API,
    GATEWAY_API,
    chosen_api,
    mesh_route,
    parent_services,
    rules_to,
    service_ref,
    version_services,
)
from features._istio import destination_rule, matches_host, routes_to, serves_http, virtual_service, with_subsets
from features.base import Feature, Param, observations_by_scope, services_in


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
        gateway_api = chosen_api(self.id, p, scope, inv) == GATEWAY_API
        objs = []
        for svc in services_in(scope, inv):
            if p["service"] and svc.name != p["service"] or not serves_http(svc):
                continue  # version routes are HTTP routes: a database port gets none
            versions = sorted({pod.labels["version"] for pod in inv.pods_of_service(svc) if "version" in pod.labels})
            if not versions:
                continue
            if gateway_api:  # the route's backend becomes the first version's own Service
                services, names = version_services(inv, svc, versions, self.id)
                route = mesh_route(inv, svc)
                for rule in rules_to(route, {svc.name}):
                    for ref in rule["backendRefs"]:
                        if service_ref(ref) and ref["name"] == svc.name:
                            ref["name"] = names[versions[0]]
                objs += [*services, route]
                continue
            dr = with_subsets(destination_rule(inv, svc), versions)
            vs = virtual_service(inv, svc)
            for route in routes_to(vs, svc):  # a route to another host keeps its destination as it is
                for dest in route.get("route") or []:
                    if matches_host(dest["destination"].get("host", ""), svc):
                        dest["destination"].setdefault("subset", versions[0])
            objs += [dr, vs]
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
        return observations_by_scope(self.id, routed, inv)


FEATURE = RequestRouting()
