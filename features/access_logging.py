from __future__ import annotations

from features._telemetry import TelemetrySection
from features.base import Param


class AccessLogging(TelemetrySection):
    id = "access-logging"
    title = "Access logs"
    category = "observability"
    section = "accessLogging"
    mesh_config_key = "accessLogFile"
    params = (Param("provider", str, "envoy", "the access log provider (envoy: the proxy's stdout)"),)
    problem = "When a call fails, can we see it in the proxy's log with its response flags (UO, UH, NR…)?"
    pitfalls = (
        "Logging every request costs CPU and storage: filter (e.g. errors only) on busy services.",
        "The `envoy` provider must exist in meshConfig.extensionProviders (it is built in by default).",
    )
    docs = "https://istio.io/latest/docs/tasks/observability/logs/access-log/"


FEATURE = AccessLogging()
