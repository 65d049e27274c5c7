from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from cluster.errors import MeshstepError
from features._gateway_api import API, GATEWAY_API, GATEWAY_DURATION, chosen_api, seconds
from features._istio import kept_or_set
from features._routes import ServiceRoutes, http_services, service_routes
from features.base import DURATION, Feature, Observation, Param, scope_of

RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"


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
        # Istio's own default: failures where the request never reached the application, so retrying a POST
        # cannot do it twice (a 5xx may come after the work was done).
        Param("retry_on", str, RETRY_ON, "conditions that trigger a retry (Istio's default: no 5xx, which would "
                                         "retry non-idempotent requests)"),
        Param("ingress", bool, False, "also set them on the routes of ingress traffic (a route attached to a "
                                      "Gateway, a VirtualService bound to one): by default only the mesh's"),
        API,
    )
    problem = "How long should callers wait for each service, and which failures are safe to retry?"
    pitfalls = (
        "Retries multiply load on a struggling service: keep attempts low and pair with circuit breaking.",
        "Only retry idempotent requests; 5xx on a POST may have been half done.",
        "Timeouts in the application and in Istio both apply: the shorter wins.",
        "Gateway API v1.3.0's standard channel has HTTPRoute timeouts (request, backendRequest) but no retries "
        "(GEP-1731 is experimental): with api=gateway-api, retries are not rendered, and backendRequest (which "
        "without retries caps the whole request) only when per_try_timeout is given.",
    )
    docs = "https://istio.io/latest/docs/tasks/traffic-management/request-timeouts/"
    owns = ("http[*].timeout", "http[*].retries", "rules[*].timeouts")

    def build(self, p, scope, inv):
        api = chosen_api(self.id, p, scope, inv)
        if api == GATEWAY_API:
            for name in ("timeout", "per_try_timeout"):
                if not re.fullmatch(GATEWAY_DURATION, p[name]):
                    raise MeshstepError(f"timeouts-retries: {name}={p[name]!r} is not a Gateway API duration "
                                        "(whole numbers of h, m, s, ms: 1500ms, not 1.5s)")
        objs = []
        for routes in self._routes(p, scope, inv):
            for route in routes.routes:  # the team's own timeouts and retries stay unless set explicitly
                for rule in routes.rules(route):
                    (self._timeouts if api == GATEWAY_API else self._retries)(p, rule)
            objs += routes.objects
        if not objs:
            raise MeshstepError(f"timeouts-retries: no HTTP service {p['service'] + ' ' if p['service'] else ''}"
                                f"with pods in {scope}")
        return objs

    def _routes(self, p: dict[str, Any], scope: str, inv: Any) -> Iterator[ServiceRoutes]:
        """The routes of each HTTP service the parameters are for."""
        api = chosen_api(self.id, p, scope, inv)
        for svc in http_services(scope, inv, p["service"]):
            yield service_routes(inv, svc, api, None, self.id, ingress=p["ingress"])

    def _timeouts(self, p: dict[str, Any], rule: dict[str, Any]) -> None:
        """An HTTPRoute rule's timeouts. Without retries (not in the standard channel) a backendRequest timeout
        caps the whole request: it is set only when per_try_timeout is given, and never above the request's."""
        d = self.defaults()
        timeouts = rule.setdefault("timeouts", {})
        kept_or_set(timeouts, "request", p["timeout"], d["timeout"])
        if p["per_try_timeout"] != d["per_try_timeout"]:
            if seconds(p["per_try_timeout"]) > seconds(timeouts["request"]):
                raise MeshstepError(f"timeouts-retries: per_try_timeout={p['per_try_timeout']} (HTTPRoute "
                                    f"backendRequest) must not exceed the request timeout {timeouts['request']}")
            timeouts["backendRequest"] = p["per_try_timeout"]

    def _retries(self, p: dict[str, Any], route: dict[str, Any]) -> None:
        d = self.defaults()
        kept_or_set(route, "timeout", p["timeout"], d["timeout"])
        retries = route.setdefault("retries", {})
        kept_or_set(retries, "attempts", p["attempts"], d["attempts"])
        kept_or_set(retries, "perTryTimeout", p["per_try_timeout"], d["per_try_timeout"])
        kept_or_set(retries, "retryOn", p["retry_on"], d["retry_on"])

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
        if rollback:
            return []
        out = [f"# {ref} {rule} keeps its {what} (the team's): pass --set {param}=… to replace it"
               for ref, rule, what, param in self._kept(p, scope, inv)]
        if chosen_api(self.id, p, scope, inv) == GATEWAY_API:
            out.append("# Gateway API v1.3.0's standard channel has no HTTPRoute retries: attempts and retry_on are "
                       "not rendered (use --set api=istio for a VirtualService's retries)")
        return out

    def _kept(self, p: dict[str, Any], scope: str, inv: Any) -> list[tuple[str, str, str, str]]:
        """(object, rule, field and value, parameter) of each value a route already had and keeps because its
        parameter was left at its default: the routes where the parameters do not land."""
        d = self.defaults()
        fields = {"timeout": ("timeout",), "attempts": ("retries", "attempts"),
                  "per_try_timeout": ("retries", "perTryTimeout"), "retry_on": ("retries", "retryOn")}
        if chosen_api(self.id, p, scope, inv) == GATEWAY_API:
            fields = {"timeout": ("timeouts", "request")}
        out = []
        for routes in self._routes(p, scope, inv):
            for route in routes.routes:  # as the cluster has them: the routes are copies, not yet changed
                key = "rules" if route["kind"] == "HTTPRoute" else "http"
                mine = routes.rules(route)
                for i, rule in enumerate(route["spec"].get(key) or []):
                    for param, path in fields.items():
                        value = _at(rule, path)
                        if rule in mine and value is not None and p[param] == d[param] and value != d[param]:
                            out.append((f"{route['kind']} {route['metadata']['namespace']}/"
                                        f"{route['metadata']['name']}", f"{key}[{i}]", f"{'.'.join(path)} {value}",
                                        param))
        return out

def _at(d: dict[str, Any], path: tuple[str, ...]) -> Any:
    for k in path:
        d = d.get(k) if isinstance(d, dict) else None
    return d

FEATURE = TimeoutsRetries()
