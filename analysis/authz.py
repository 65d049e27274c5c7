"""AuthorizationPolicy checks (istioctl's authz analyzer): policies that select no workload, and source
namespaces that match no namespace (the rule then never matches, or always does)."""
from __future__ import annotations

from collections.abc import Iterator

from analysis.base import Context, check
from analysis.catalog import text
from analysis.common import selector_text
from cluster.model import Ref
from cluster.queries import istio_objects, match_labels, ns_of, pods_anywhere, selected_pods


@check("IST0127", "Fix the policy's selector to match labels of running pods (in its namespace, or anywhere for the "
       "root namespace), or delete the policy if the workload is gone.",
       reads=("AuthorizationPolicy", "Pod"))
def no_matching_workloads(ctx: Context) -> Iterator[tuple[Ref, str]]:
    inv = ctx.inventory
    for ap in istio_objects(inv, "AuthorizationPolicy"):
        if ap.spec.get("targetRef") or ap.spec.get("targetRefs"):
            continue  # bound to a Gateway or Service by reference, not to pods by labels
        sel = match_labels(ap, "selector", "matchLabels")
        if ns_of(ap) == inv.root_namespace:
            if not sel or pods_anywhere(inv, sel):
                continue  # a root-namespace policy without selector applies to the whole mesh
        elif selected_pods(inv, ns_of(ap), sel):
            continue
        yield ap.ref, text("IST0127", selector_text(sel or {}))


def _namespace_pattern_matches(pattern: str, namespace: str) -> bool:
    """Istio's string match for source namespaces: exact, `*`, `prefix*` or `*suffix`."""
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return namespace.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return namespace.endswith(pattern[1:])
    return pattern == namespace


@check("IST0101", "Fix the namespace name (or pattern) in the rule's source namespaces/notNamespaces: no namespace "
       "matches it.",
       reads=("AuthorizationPolicy", "Namespace"))
def unknown_source_namespace(ctx: Context) -> Iterator[tuple[Ref, str]]:
    namespaces = ctx.inventory.namespace_names()
    for ap in istio_objects(ctx.inventory, "AuthorizationPolicy"):
        for rule in ap.spec.get("rules") or ():
            for f in rule.get("from") or ():
                source = (f or {}).get("source") or {}
                for pattern in (source.get("namespaces") or []) + (source.get("notNamespaces") or []):
                    if not any(_namespace_pattern_matches(pattern, n) for n in namespaces):
                        yield ap.ref, f'Referenced namespace not found: "{pattern}"'
