from __future__ import annotations

from features._istio import free_name
from features.base import DURATION, Feature, Param, http_service, obj, observations_by_scope

_FILTER = "envoy.filters.http.local_ratelimit"


class LocalRateLimit(Feature):
    id = "local-rate-limit"
    title = "Local rate limiting"
    category = "traffic"
    depends_on = ("sidecar-injection",)
    scopes = ("namespace",)
    params = (
        Param("service", str, "", "the service to protect (default: the namespace's first HTTP service)"),
        Param("requests", int, 100, "requests allowed per interval, per pod", minimum=1),
        Param("interval", str, "1s", "the refill interval (a duration)", pattern=DURATION),
    )
    problem = "Should each pod of a service refuse (429) what it cannot handle, instead of falling over?"
    pitfalls = (
        "The limit is per pod (per sidecar), not for the service as a whole.",
        "Istio configures it through an EnvoyFilter: check it after every Istio upgrade.",
    )
    docs = "https://istio.io/latest/docs/tasks/policy-enforcement/rate-limit/#local-rate-limit"

    def build(self, p, scope, inv):
        svc = http_service(scope, inv, p["service"] or None)
        bucket = {"max_tokens": p["requests"], "tokens_per_fill": p["requests"], "fill_interval": p["interval"]}
        enabled = {"runtime_key": "local_rate_limit_enabled", "default_value": {"numerator": 100,
                                                                                 "denominator": "HUNDRED"}}
        name = free_name(inv, "EnvoyFilter", scope, f"{svc.name}-local-ratelimit", feature=self.id)
        return [obj(inv, "networking.istio.io", "EnvoyFilter", scope, name, {
            "workloadSelector": {"labels": dict(svc.selector)},
            "configPatches": [{
                "applyTo": "HTTP_FILTER",
                "match": {"context": "SIDECAR_INBOUND",
                          "listener": {"filterChain": {"filter": {
                              "name": "envoy.filters.network.http_connection_manager"}}}},
                "patch": {"operation": "INSERT_BEFORE", "value": {
                    "name": _FILTER,
                    "typed_config": {
                        "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                        "type_url": ("type.googleapis.com/"
                                     "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"),
                        "value": {"stat_prefix": "http_local_rate_limiter", "token_bucket": bucket,
                                  "filter_enabled": enabled, "filter_enforced": enabled}}}}}]})]

    def detect(self, inv):
        limiting = [ef for ef in inv.of_kind("EnvoyFilter") if _FILTER in str(ef.spec)]
        return observations_by_scope(self.id, limiting, inv)


FEATURE = LocalRateLimit()
