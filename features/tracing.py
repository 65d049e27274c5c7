from __future__ import annotations

from cluster.errors import MeshstepError
from features._telemetry import TelemetrySection
from features.base import Param

_TRACERS = ("zipkin", "opentelemetry", "datadog", "stackdriver", "skywalking", "lightstep", "opencensus")


class Tracing(TelemetrySection):
    id = "tracing"
    title = "Distributed tracing"
    category = "observability"
    section = "tracing"
    mesh_config_key = "enableTracing"
    params = (
        Param("provider", str, "", "an extensionProvider of the mesh config (default: its first tracer)"),
        Param("sampling", float, 1.0, "percent of requests traced", minimum=0, maximum=100),
    )
    problem = "Which calls, inside and out of the cluster, make a request slow — and do we have a tracing backend?"
    pitfalls = (
        "Applications must forward the trace headers (traceparent, x-b3-*) or each hop starts a new trace.",
        "100% sampling is for trying it out: production usually samples 1% or less.",
        "The provider must be declared in meshConfig.extensionProviders first.",
    )
    docs = "https://istio.io/latest/docs/tasks/observability/distributed-tracing/telemetry-api/"

    def section_value(self, p, inv):
        tracers = [e["name"] for e in inv.mesh_config.get("extensionProviders") or []
                   if any(t in e for t in _TRACERS)]
        provider = p["provider"] or (tracers[0] if tracers else "")
        if not provider or provider not in tracers:
            raise MeshstepError(f"tracing: {'provider ' + repr(provider) + ' is not' if provider else 'no tracer is'} "
                                f"declared in meshConfig.extensionProviders (tracers: {', '.join(tracers) or 'none'}); "
                                "add one (zipkin or opentelemetry pointing at your collector) to the install")
        return [{"providers": [{"name": provider}], "randomSamplingPercentage": p["sampling"]}]


FEATURE = Tracing()
