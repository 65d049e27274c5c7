from __future__ import annotations

from typing import Any

from analysis.effective import default, telemetry_section, traced
from analysis.effective import tracing as effective_tracing
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from features._telemetry import TelemetrySection
from features.base import Param, clean

_TRACERS = ("zipkin", "opentelemetry", "datadog", "stackdriver", "skywalking", "lightstep", "opencensus")


class Tracing(TelemetrySection):
    id = "tracing"
    title = "Distributed tracing"
    category = "observability"
    section = "tracing"
    mesh_config_key = "enableTracing"
    params = (
        Param("provider", str, "", "an extensionProvider of the mesh config (default: its first tracer)"),
        Param("sampling", float, None, "percent of requests traced (default: what the scope samples now, else 1)",
              minimum=0, maximum=100),
    )
    problem = "Which calls, inside and out of the cluster, make a request slow — and do we have a tracing backend?"
    pitfalls = (
        "Applications must forward the trace headers (traceparent, x-b3-*) or each hop starts a new trace.",
        "100% sampling is for trying it out: production usually samples 1% or less.",
        "The provider must be declared in meshConfig.extensionProviders first.",
    )
    docs = "https://istio.io/latest/docs/tasks/observability/distributed-tracing/telemetry-api/"

    def detect(self, inv):
        """Where the proxies send traces: a scope whose Telemetry or mesh config samples 0% (or disables span
        reporting) has a tracing section and traces nothing."""
        return [o for o in super().detect(inv) if effective_tracing(inv, o.scope).value != "0%"]

    def build(self, p, scope, inv):
        have = in_effect(inv, scope)
        provider = p["provider"] or (have[0] if have else "")
        # a default never lowers (nor raises) what the cluster samples: only a --set sampling changes it
        sampling = p["sampling"] if p["sampling"] is not None else have[1] if have else 1.0
        if have and have[2] is not None and (have[0], have[1]) == (provider, sampling):
            return [clean(have[2].raw)]  # already traced so: the object that does it, left as it is
        return super().build(p | {"provider": provider, "sampling": sampling}, scope, inv)

    def section_value(self, p, inv):
        tracers = [e["name"] for e in inv.mesh_config.get("extensionProviders") or []
                   if any(t in e for t in _TRACERS)]
        provider = p["provider"] or (tracers[0] if tracers else "")
        if not provider or provider not in tracers:
            raise MeshstepError(f"tracing: {'provider ' + repr(provider) + ' is not' if provider else 'no tracer is'} "
                                f"declared in meshConfig.extensionProviders (tracers: {', '.join(tracers) or 'none'}); "
                                "add one (zipkin or opentelemetry pointing at your collector) to the install")
        return [{"providers": [{"name": provider}], "randomSamplingPercentage": p["sampling"]}]


def in_effect(inv: Inventory, scope: str) -> tuple[str, float, Any] | None:
    """(provider, sampling percent, the Telemetry that sets them) of the tracing the scope's proxies do now: the
    namespace's selector-less Telemetry, else the root namespace's (Istio's inheritance), sampling as Istio resolves
    it (analysis.effective.traced); None when no Telemetry sets tracing, or it samples nothing."""
    found = telemetry_section(inv, scope, "tracing")
    if found is None:
        return None
    t, entries = found
    providers = [x.get("name", "") for e in entries if not e.get("disableSpanReporting")
                 for x in e.get("providers") or ()]
    resolved = traced(inv, scope)
    sampling = resolved[0] if resolved else float(default("tracing", inv.istio_version).value.rstrip("%"))
    return (providers[0] if providers else "", sampling, t) if sampling > 0 else None


FEATURE = Tracing()
