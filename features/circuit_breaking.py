from __future__ import annotations

from cluster.errors import MeshstepError
from features._istio import destination_rule, kept_or_set
from features.base import DURATION, Feature, Param, observations_by_scope, services_in


class CircuitBreaking(Feature):
    id = "circuit-breaking"
    title = "Circuit breaking and outlier detection"
    category = "traffic"
    depends_on = ("sidecar-injection",)
    scopes = ("namespace",)
    params = (
        Param("service", str, "", "only this service (default: every service of the namespace)"),
        Param("max_connections", int, 100, "TCP connections per caller sidecar", minimum=1),
        Param("max_pending", int, 100, "queued HTTP requests per caller sidecar", minimum=1),
        Param("consecutive_5xx", int, 5, "errors before a pod is ejected", minimum=1),
        Param("interval", str, "10s", "how often pods are scanned (a duration: 10s, 500ms, 1m)", pattern=DURATION),
        Param("base_ejection_time", str, "30s", "how long an ejected pod stays out (a duration)",
              pattern=DURATION),
    )
    problem = "When one service slows down or fails, should its callers fail fast instead of piling up requests?"
    pitfalls = (
        "Limits are per caller sidecar, not per service: N callers × max_connections reach the service.",
        "Overflow shows as 503 with response flag UO; ejection as UH/NR when every pod is out.",
        "maxEjectionPercent defaults to 10%: small services may eject nothing.",
    )
    docs = "https://istio.io/latest/docs/tasks/traffic-management/circuit-breaking/"
    owns = ("*trafficPolicy.connectionPool.tcp.maxConnections", "*trafficPolicy.connectionPool.http.http1MaxPending*",
            "*trafficPolicy.outlierDetection.*")

    def build(self, p, scope, inv):
        objs = []
        for svc in services_in(scope, inv):
            if p["service"] and svc.name != p["service"]:
                continue
            dr = destination_rule(inv, svc)
            # Only the fields it owns, merged into the pool and detection the rule has: connectTimeout,
            # maxRequestsPerConnection and the rest stay, and an existing limit is kept unless set explicitly.
            d = self.defaults()
            policy = dr["spec"].setdefault("trafficPolicy", {})
            pool = policy.setdefault("connectionPool", {})
            kept_or_set(pool.setdefault("tcp", {}), "maxConnections", p["max_connections"], d["max_connections"])
            kept_or_set(pool.setdefault("http", {}), "http1MaxPendingRequests", p["max_pending"], d["max_pending"])
            outlier = policy.setdefault("outlierDetection", {})
            for key, name in (("consecutive5xxErrors", "consecutive_5xx"), ("interval", "interval"),
                              ("baseEjectionTime", "base_ejection_time")):
                kept_or_set(outlier, key, p[name], d[name])
            objs.append(dr)
        if not objs:
            raise MeshstepError(f"circuit-breaking: no service {p['service'] + ' ' if p['service'] else ''}"
                                f"with pods in {scope}")
        return objs

    def detect(self, inv):
        return observations_by_scope(self.id, [
            dr for dr in inv.of_kind("DestinationRule")
            if (dr.spec.get("trafficPolicy") or {}).get("connectionPool")
            or (dr.spec.get("trafficPolicy") or {}).get("outlierDetection")], inv)


FEATURE = CircuitBreaking()
