from __future__ import annotations

import copy

from cluster.errors import MeshstepError
from features._gateway_api import API, GATEWAY_API, chosen_api
from features._istio import routes_to, virtual_service
from features.base import DURATION, Feature, Param, http_service, observations_by_scope


class FaultInjection(Feature):
    id = "fault-injection"
    title = "Fault injection (resilience testing)"
    category = "traffic"
    depends_on = ("sidecar-injection",)
    scopes = ("namespace",)
    params = (
        Param("service", str, "", "the service to make misbehave (default: the namespace's first HTTP service)"),
        Param("delay", str, "5s", "delay added to requests, a duration ('' for none)", pattern=rf"({DURATION})?"),
        Param("percent", float, 10.0, "share of requests affected", minimum=0, maximum=100),
        Param("abort_status", int, 0, "HTTP status to abort with (0: no abort)", minimum=0, maximum=599),
        # istio.io's task injects the fault for one test user (end-user: jason): everyone else is untouched
        Param("header", str, "x-fault-test", "only requests with this header get the fault ('' for every request)"),
        Param("header_value", str, "true", "its value"),
        Param("ingress", bool, False, "also fault the requests that come in through an ingress gateway the "
                                      "VirtualService is bound to: by default only the mesh's calls"),
        API,
    )
    problem = "Do our timeouts, retries and fallbacks really work when a dependency is slow or failing?"
    pitfalls = (
        "Faults apply in the caller's sidecar: only callers in the mesh see them.",
        "Retries are not applied to injected faults' requests the way they are to real failures.",
        "Remove it after the test: a forgotten delay is an outage.",
        "Faulted requests must carry the header at the service's caller: the applications on the way forward it, "
        "as bookinfo's forward end-user.",
        "The Gateway API has no fault injection: it is a VirtualService (api=istio) even where routes are "
        "HTTPRoutes; in ambient mode a waypoint applies it.",
    )
    docs = "https://istio.io/latest/docs/tasks/traffic-management/fault-injection/"
    owns = ("http[*].fault",)

    def build(self, p, scope, inv):
        if chosen_api(self.id, p, scope, inv) == GATEWAY_API:
            raise MeshstepError(f"fault-injection: the Gateway API has no fault injection (HTTPRoute v1.3.0 has no "
                                f"delay or abort filter), and {scope} routes with it: pass --set api=istio for a "
                                "VirtualService fault")
        svc = http_service(scope, inv, p["service"] or None)
        if not p["delay"] and not p["abort_status"]:
            raise MeshstepError("fault-injection: set a delay or an abort_status")
        fault = {}
        if p["delay"]:
            fault["delay"] = {"fixedDelay": p["delay"], "percentage": {"value": p["percent"]}}
        if p["abort_status"]:
            fault["abort"] = {"httpStatus": p["abort_status"], "percentage": {"value": p["percent"]}}
        vs = virtual_service(inv, svc)
        # an ingress gateway the VirtualService is bound to applies its routes to the internet's requests too
        ingress = [g for g in vs["spec"].get("gateways") or () if g != "mesh"]
        http = vs["spec"].setdefault("http", [])
        for route in routes_to(vs, svc):
            matches = [m | ({"headers": (m.get("headers") or {}) | {p["header"]: {"exact": p["header_value"]}}}
                            if p["header"] else {}) | ({"gateways": ["mesh"]} if ingress and not p["ingress"] else {})
                       for m in copy.deepcopy(route.get("match")) or [{}]]
            if matches == (route.get("match") or [{}]):
                route["fault"] = fault  # every request the route takes is meant
                continue
            http[:] = [r for r in http if r.get("match") != matches]  # the fault route of an earlier rendering
            faulted = {k: copy.deepcopy(v) for k, v in route.items() if k not in ("match", "name", "fault")}
            http.insert(http.index(route), {"match": matches, "fault": fault} | faulted)
        return [vs]

    def detect(self, inv):
        return observations_by_scope(self.id, [vs for vs in inv.of_kind("VirtualService")
                                               if any("fault" in r for r in vs.spec.get("http") or [])], inv)


FEATURE = FaultInjection()
