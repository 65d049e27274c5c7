"""EnvoyFilter checks (istioctl's envoyfilter.EnvoyPatchAnalyzer): patch operations whose effect depends on the
order EnvoyFilters are applied in, and operations Envoy ignores for the part of the config they patch."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from analysis.base import Context, check
from analysis.catalog import text
from cluster.model import KubeObject, Ref
from cluster.queries import istio_objects

# Operations placed relative to another filter: the result depends on which EnvoyFilters ran first.
_RELATIVE = ("INSERT_BEFORE", "INSERT_AFTER", "REPLACE", "REMOVE")
_REPLACEABLE = ("HTTP_FILTER", "NETWORK_FILTER")
_ROUTE_LEVEL = ("ROUTE_CONFIGURATION", "HTTP_ROUTE")


def _finding(ef: KubeObject, patch: dict[str, Any]) -> str | None:
    """The code a config patch earns, if any. REMOVE of route config is ignored whatever the order; a relative
    operation without priority is order-dependent before anything else can be said of it."""
    op = (patch.get("patch") or {}).get("operation")
    apply_to = patch.get("applyTo")
    if op == "ADD":
        return "IST0153" if apply_to in _ROUTE_LEVEL else None
    if op == "REMOVE" and apply_to in _ROUTE_LEVEL:
        return "IST0154"
    if op in _RELATIVE and not ef.spec.get("priority"):
        with_version = bool(((patch.get("match") or {}).get("proxy") or {}).get("proxyVersion"))
        return "IST0155" if with_version else "IST0151"
    if op == "REPLACE" and apply_to not in _REPLACEABLE:
        return "IST0152"
    return None


# Each code, with what to do about it; the message is Istio's own, found by `_finding`.
_HINTS = {
    "IST0151": "Set spec.priority on the EnvoyFilter, or use INSERT_FIRST / ADD, so it applies whatever other "
               "EnvoyFilters exist.",
    "IST0152": "Use MERGE (or REMOVE then ADD) for this applyTo: REPLACE works only on HTTP_FILTER and "
               "NETWORK_FILTER.",
    "IST0153": "Use MERGE for ROUTE_CONFIGURATION, or ADD on VIRTUAL_HOST; Envoy ignores ADD here.",
    "IST0154": "Remove the virtual host or route with a MERGE that drops it, or REMOVE at VIRTUAL_HOST level; Envoy "
               "ignores REMOVE here.",
    "IST0155": "Set spec.priority: with a proxyVersion match the filter may apply before the filter it is placed "
               "relative to after an upgrade.",
}


def _filters_with(inv, code: str) -> Iterator[KubeObject]:
    """EnvoyFilters with at least one patch earning `code` (one message per filter, as istioctl dedupes them)."""
    for ef in istio_objects(inv, "EnvoyFilter"):
        if any(_finding(ef, p or {}) == code for p in ef.spec.get("configPatches") or ()):
            yield ef


for _code, _hint in _HINTS.items():
    @check(_code, _hint, reads=("EnvoyFilter",))
    def patch_operation(ctx: Context, code: str = _code) -> Iterator[tuple[Ref, str]]:
        for ef in _filters_with(ctx.inventory, code):
            yield ef.ref, text(code)
