"""Sidecar resource checks (istioctl's sidecar.SelectorAnalyzer): selectors that select nothing or the same pod,
several namespace-wide Sidecars, and Sidecars in ambient namespaces, where there is no sidecar to configure."""
from __future__ import annotations

from collections.abc import Iterator

from analysis.base import Context, check
from analysis.common import selector_checks
from cluster.model import Ref
from cluster.queries import istio_objects, match_labels, ns_of, proxy_container

selector_checks(
    "Sidecar", match_labels, family="sidecar",
    unmatched=("IST0101", "Fix the Sidecar's workloadSelector to match labels of pods in its own namespace."),
    conflicting=("IST0110",
                 "Make the Sidecars' workloadSelectors disjoint (or merge them): a pod gets one Sidecar, chosen "
                 "arbitrarily."),
    unselective=("IST0111",
                 "Keep one Sidecar without workloadSelector per namespace; give the others a workloadSelector."),
)


@check("IST0167", "Delete the Sidecar, or move its workloads to sidecar mode: ambient workloads have no sidecar to "
       "configure (use a waypoint for L7 policy).",
       reads=("Sidecar", "Namespace", "Pod"))
def sidecar_in_ambient(ctx: Context) -> Iterator[tuple[Ref, str]]:
    inv = ctx.inventory
    for sc in istio_objects(inv, "Sidecar"):
        sel = match_labels(sc)
        if not sel:
            ns = inv.namespaces.get(ns_of(sc))
            if ns is not None and ns.injection == "ambient":
                yield sc.ref, "The policy has no impact: namespace is in ambient mode, the policy has no impact."
            continue
        pods = inv.pods_matching(ns_of(sc), sel)
        if pods and all(inv.in_mesh(p) and proxy_container(p.spec) is None for p in pods):
            yield sc.ref, "The policy has no impact: selected workloads are in ambient mode, the policy has no impact."
