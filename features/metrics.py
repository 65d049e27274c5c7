from __future__ import annotations

from features._telemetry import TelemetrySection
from features.base import Param


class Metrics(TelemetrySection):
    id = "metrics"
    title = "Metrics (Prometheus)"
    category = "observability"
    section = "metrics"
    mesh_config_key = "defaultProviders"
    params = (Param("provider", str, "prometheus", "the metrics provider"),)
    problem = "How many requests does each service get, how fast, how many fail — without changing the apps?"
    pitfalls = (
        "Prometheus must scrape the sidecars (15020, merged metrics) — the prometheus.io annotations do it.",
        "Labels multiply series: keep custom tags few on busy meshes.",
    )
    docs = "https://istio.io/latest/docs/tasks/observability/metrics/"

    def mesh_config_on(self, inv):
        return bool((inv.mesh_config.get("defaultProviders") or {}).get("metrics"))


FEATURE = Metrics()
