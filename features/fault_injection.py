from __future__ import annotations

from features._istio import routes_to, virtual_service
from features.base import DURATION, Feature, Param, http_service, observations_by_scope
from planner.errors import MeshstepError


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
    )
    problem = "Do our timeouts, retries and fallbacks really work when a dependency is slow or failing?"
    pitfalls = (
        "Faults apply in the caller's sidecar: only callers in the mesh see them.",
        "Retries are not applied to injected faults' requests the way they are to real failures.",
        "Remove it after the test: a forgotten delay is an outage.",
    )
    docs = "https://istio.io/latest/docs/tasks/traffic-management/fault-injection/"
    owns = ("http[*].fault",)

    def build(self, p, scope, inv):
        svc = http_service(scope, inv, p["service"] or None)
        if not p["delay"] and not p["abort_status"]:
            raise MeshstepError("fault-injection: set a delay or an abort_status")
        fault = {}
        if p["delay"]:
            fault["delay"] = {"fixedDelay": p["delay"], "percentage": {"value": p["percent"]}}
        if p["abort_status"]:
            fault["abort"] = {"httpStatus": p["abort_status"], "percentage": {"value": p["percent"]}}
        vs = virtual_service(inv, svc)
        for route in routes_to(vs, svc):
            route["fault"] = fault
        return [vs]

    def detect(self, inv):
        return observations_by_scope(self.id, [vs for vs in inv.of_kind("VirtualService")
                                               if any("fault" in r for r in vs.spec.get("http") or [])], inv)


FEATURE = FaultInjection()
