"""Telemetry checks (istioctl's telemetry analyzers): selectors that select nothing or the same pod, several
namespace-wide Telemetries, entries without a provider, and deprecated providers."""
from __future__ import annotations

from collections.abc import Iterator

from planner.analysis.base import Context, check
from planner.analysis.common import (
    SelectorScan,
    conflicting_selectors,
    istio_objects,
    match_labels,
    ns_of,
    per_inventory,
    ref,
    scan_selectors,
    spec,
    unmatched_selectors,
    unselective_objects,
)
from planner.inventory import Inventory
from planner.model import KubeObject, Ref

_CATEGORIES = ("accessLogging", "tracing", "metrics")
# Extension provider types Istio has deprecated, with what replaces them.
_DEPRECATED_PROVIDERS = {"lightstep": "OpenTelemetry"}


def _selector(t: KubeObject) -> dict[str, str] | None:
    return match_labels(t, "selector", "matchLabels")


def _scan(inv: Inventory) -> SelectorScan:
    """How the Telemetries select workloads, scanned once per inventory for the three checks that read it."""
    return per_inventory(inv, "telemetry-selectors",
                         lambda inv: scan_selectors(inv, istio_objects(inv, "Telemetry"), _selector))


@check("IST0101", "ReferencedResourceNotFound", "error",
       "Fix the Telemetry's selector to match labels of pods in its own namespace.")
def selector_not_found(ctx: Context) -> Iterator[tuple[Ref, str]]:
    return unmatched_selectors(_scan(ctx.inventory))


@check("IST0159", "ConflictingTelemetryWorkloadSelectors", "error",
       "Make the Telemetries' selectors disjoint (or merge them): a pod gets one Telemetry, chosen arbitrarily.")
def conflicting_telemetries(ctx: Context) -> Iterator[tuple[Ref, str]]:
    return conflicting_selectors(_scan(ctx.inventory), "Telemetries")


@check("IST0160", "MultipleTelemetriesWithoutWorkloadSelectors", "error",
       "Keep one Telemetry without selector per namespace; give the others a selector.")
def multiple_without_selector(ctx: Context) -> Iterator[tuple[Ref, str]]:
    return unselective_objects(_scan(ctx.inventory), "Telemetries")


@check("IST0157", "InvalidTelemetryProvider", "warning",
       "Name a provider in the entry (providers: [{name: envoy}]) or set defaultProviders in the mesh config; "
       "an entry with neither is ignored.")
def empty_providers(ctx: Context) -> Iterator[tuple[Ref, str]]:
    defaults = ctx.inventory.mesh_config.get("defaultProviders") or {}
    for t in istio_objects(ctx.inventory, "Telemetry"):
        s = spec(t)
        if any(not e.get("providers") and not e.get("disabled") and not defaults.get(cat)
               for cat in _CATEGORIES for e in s.get(cat) or ()):
            yield ref(t), f"The Telemetry {t.name} in namespace {ns_of(t)!r} with empty providers will be ignored."


@check("IST0002", "Deprecated", "warning",
       "Move the Telemetry to a supported provider (for Lightstep: an OpenTelemetry extension provider).")
def deprecated_provider(ctx: Context) -> Iterator[tuple[Ref, str]]:
    kinds = {p.get("name"): next((k for k in p if k in _DEPRECATED_PROVIDERS), None)
             for p in ctx.inventory.mesh_config.get("extensionProviders") or ()}
    for t in istio_objects(ctx.inventory, "Telemetry"):
        used = {p.get("name") for cat in _CATEGORIES for e in spec(t).get(cat) or () for p in e.get("providers") or ()}
        for name in sorted(n for n in used if kinds.get(n)):
            yield ref(t), (f"Deprecated: The {kinds[name]} provider ({name}) is deprecated, please migrate to "
                           f"{_DEPRECATED_PROVIDERS[kinds[name]]} provider.")
