from __future__ import annotations

import re

from cluster.errors import MeshstepError
from features._gateway_api import API, GATEWAY_API, GATEWAY_DURATION, chosen_api, mesh_route, seconds
from features._istio import kept_or_set, routes_to, serves_http, virtual_service
from features.base import DURATION, Feature, Observation, Param, scope_of, services_in


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
        API,
    )
    problem = "How long should callers wait for each service, and which failures are safe to retry?"
    pitfalls = (
        "Retries multiply load on a struggling service: keep attempts low and pair with circuit breaking.",
        "Only retry idempotent requests; 5xx on a POST may have been half done.",
        "Timeouts in the application and in Istio both apply: the shorter wins.",
        "Gateway API v1.3.0's standard channel has HTTPRoute timeouts (request, backendRequest) but no retries "
        "(GEP-1731 is experimental): with api=gateway-api, per_try_timeout bounds each backend request and "
        "retries are not rendered.",
    )
    docs = "https://istio.io/latest/docs/tasks/traffic-management/request-timeouts/"
    owns = ("http[*].timeout", "http[*].retries", "rules[*].timeouts")

    def build(self, p, scope, inv):
        gateway_api = chosen_api(self.id, p, scope, inv) == GATEWAY_API
        if gateway_api:
            for name in ("timeout", "per_try_timeout"):
                if not re.fullmatch(GATEWAY_DURATION, p[name]):
                    raise MeshstepError(f"timeouts-retries: {name}={p[name]!r} is not a Gateway API duration "
                                        "(whole numbers of h, m, s, ms: 1500ms, not 1.5s)")
            if seconds(p["per_try_timeout"]) > seconds(p["timeout"]):
                raise MeshstepError("timeouts-retries: per_try_timeout (HTTPRoute backendRequest) must not exceed "
                                    "timeout (request)")
        objs = []
        for svc in services_in(scope, inv):
            if p["service"] and svc.name != p["service"] or not serves_http(svc):
                continue
            if gateway_api:  # every rule of the route attached to the service is its traffic's
                route = mesh_route(inv, svc)
                d = self.defaults()
                for rule in route["spec"].setdefault("rules", []):
                    timeouts = rule.setdefault("timeouts", {})
                    kept_or_set(timeouts, "request", p["timeout"], d["timeout"])
                    kept_or_set(timeouts, "backendRequest", p["per_try_timeout"], d["per_try_timeout"])
                objs.append(route)
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
        for route in inv.of_kind("HTTPRoute"):
            for r in route.spec.get("rules") or ():
                if r.get("timeouts"):
                    out.setdefault(scope_of(route, inv), []).append(str(route.ref))
                    params.setdefault(scope_of(route, inv), {"timeout": r["timeouts"].get("request", "")})
                    break
        return [Observation(self.id, ns, ev, params[ns]) for ns, ev in sorted(out.items())]

    def notes(self, p, scope, inv, rollback):
        if rollback or chosen_api(self.id, p, scope, inv) != GATEWAY_API:
            return []
        return ["# Gateway API v1.3.0's standard channel has no HTTPRoute retries: attempts and retry_on are not "
                "rendered (use --set api=istio for a VirtualService's retries)"]


FEATURE = TimeoutsRetries()
