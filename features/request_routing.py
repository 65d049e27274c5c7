from __future__ import annotations

from features._istio import destination_rule, matches_host, routes_to, serves_http, virtual_service, with_subsets
from features.base import Feature, Param, observations_by_scope, services_in
from planner.errors import MeshstepError


class RequestRouting(Feature):
    id = "request-routing"
    title = "Request routing by version"
    category = "traffic"
    depends_on = ("sidecar-injection",)
    scopes = ("namespace",)
    params = (Param("service", str, "", "route only this service (default: every service whose pods carry a "
                                        "`version` label)"),)
    problem = ("Which version of each service should serve requests, decided by config rather than by which "
               "pods happen to be running?")
    pitfalls = (
        "Subsets select pods by the `version` label: pods without it get no traffic through a subset route.",
        "Routing happens in the caller's sidecar: callers outside the mesh bypass it.",
        "Create the DestinationRule before the VirtualService that names its subsets (503 NR otherwise).",
    )
    docs = "https://istio.io/latest/docs/tasks/traffic-management/request-routing/"

    def build(self, p, scope, inv):
        objs = []
        for svc in services_in(scope, inv):
            if p["service"] and svc.name != p["service"] or not serves_http(svc):
                continue  # version routes are HTTP routes: a database port gets none
            versions = sorted({pod.labels["version"] for pod in inv.pods_of_service(svc) if "version" in pod.labels})
            if not versions:
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
        return observations_by_scope(self.id, routed, inv)


FEATURE = RequestRouting()
