from __future__ import annotations

from features._istio import kept_or_set, routes_to, serves_http, virtual_service
from features.base import DURATION, Feature, Observation, Param, scope_of, services_in
from planner.errors import MeshstepError


class TimeoutsRetries(Feature):
    id = "timeouts-retries"
    title = "Timeouts and retries"
    category = "traffic"
    depends_on = ("sidecar-injection",)
    scopes = ("namespace",)
    params = (
        Param("service", str, "", "only this service (default: every HTTP service of the namespace)"),
        Param("timeout", str, "10s", "overall request timeout (a duration: 10s, 500ms, 1m)", pattern=DURATION),
        Param("attempts", int, 3, "retry attempts", minimum=0, maximum=10),
        Param("per_try_timeout", str, "2s", "timeout of each attempt (a duration)", pattern=DURATION),
        Param("retry_on", str, "5xx,reset,connect-failure,refused-stream", "conditions that trigger a retry"),
    )
    problem = "How long should callers wait for each service, and which failures are safe to retry?"
    pitfalls = (
        "Retries multiply load on a struggling service: keep attempts low and pair with circuit breaking.",
        "Only retry idempotent requests; 5xx on a POST may have been half done.",
        "Timeouts in the application and in Istio both apply: the shorter wins.",
    )
    docs = "https://istio.io/latest/docs/tasks/traffic-management/request-timeouts/"
    owns = ("http[*].timeout", "http[*].retries")

    def build(self, p, scope, inv):
        objs = []
        for svc in services_in(scope, inv):
            if p["service"] and svc.name != p["service"] or not serves_http(svc):
                continue
            vs = virtual_service(inv, svc)
            d = self.defaults()
            for route in routes_to(vs, svc):  # the team's own timeouts and retries stay unless set explicitly
                kept_or_set(route, "timeout", p["timeout"], d["timeout"])
                retries = route.setdefault("retries", {})
                kept_or_set(retries, "attempts", p["attempts"], d["attempts"])
                kept_or_set(retries, "perTryTimeout", p["per_try_timeout"], d["per_try_timeout"])
                kept_or_set(retries, "retryOn", p["retry_on"], d["retry_on"])
            objs.append(vs)
        if not objs:
            raise MeshstepError(f"timeouts-retries: no HTTP service {p['service'] + ' ' if p['service'] else ''}"
                                f"with pods in {scope}")
        return objs

    def detect(self, inv):
        out: dict[str, list[str]] = {}
        params: dict[str, dict] = {}
        for vs in inv.of_kind("VirtualService"):
            for r in vs.spec.get("http") or []:
                if "timeout" in r or "retries" in r:
                    out.setdefault(scope_of(vs, inv), []).append(str(vs.ref))
                    params.setdefault(scope_of(vs, inv), {"timeout": r.get("timeout", "")})
                    break
        return [Observation(self.id, ns, ev, params[ns]) for ns, ev in sorted(out.items())]


FEATURE = TimeoutsRetries()
