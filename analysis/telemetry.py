"""Telemetry checks (istioctl's telemetry analyzers): selectors that select nothing or the same pod, several
namespace-wide Telemetries, entries without a provider, and deprecated providers."""
from __future__ import annotations

from collections.abc import Iterator

from analysis.base import Context, check
from analysis.catalog import text
from analysis.common import selector_checks
from cluster.model import KubeObject, Ref
from cluster.queries import istio_objects, match_labels, ns_of

_CATEGORIES = ("accessLogging", "tracing", "metrics")
# Extension provider types Istio has deprecated, with what replaces them.
_DEPRECATED_PROVIDERS = {"lightstep": "OpenTelemetry"}


def _selector(t: KubeObject) -> dict[str, str] | None:
    return match_labels(t, "selector", "matchLabels")


selector_checks(
    "Telemetry", _selector, family="telemetry",
    unmatched=("IST0101", "Fix the Telemetry's selector to match labels of pods in its own namespace."),
    conflicting=("IST0159",
                 "Make the Telemetries' selectors disjoint (or merge them): a pod gets one Telemetry, chosen "
                 "arbitrarily."),
    unselective=("IST0160",
                 "Keep one Telemetry without selector per namespace; give the others a selector."),
)


@check("IST0157", "Name a provider in the entry (providers: [{name: envoy}]) or set defaultProviders in the mesh "
       "config; an entry with neither is ignored.",
       reads=("Telemetry", "ConfigMap"))
def empty_providers(ctx: Context) -> Iterator[tuple[Ref, str]]:
    defaults = ctx.inventory.mesh_config.get("defaultProviders") or {}
    for t in istio_objects(ctx.inventory, "Telemetry"):
        s = t.spec
        if any(not e.get("providers") and not e.get("disabled") and not defaults.get(cat)
               for cat in _CATEGORIES for e in s.get(cat) or ()):
            yield t.ref, text("IST0157", t.name, ns_of(t))


@check("IST0002", "Move the Telemetry to a supported provider (for Lightstep: an OpenTelemetry extension provider).",
       reads=("Telemetry", "ConfigMap"))
def deprecated_provider(ctx: Context) -> Iterator[tuple[Ref, str]]:
    kinds = {p.get("name"): next((k for k in p if k in _DEPRECATED_PROVIDERS), None)
             for p in ctx.inventory.mesh_config.get("extensionProviders") or ()}
    for t in istio_objects(ctx.inventory, "Telemetry"):
        used = {p.get("name") for cat in _CATEGORIES for e in t.spec.get(cat) or () for p in e.get("providers") or ()}
        for name in sorted(n for n in used if kinds.get(n)):
            yield t.ref, (f"Deprecated: The {kinds[name]} provider ({name}) is deprecated, please migrate to "
                          f"{_DEPRECATED_PROVIDERS[kinds[name]]} provider.")
