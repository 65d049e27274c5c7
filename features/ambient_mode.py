"""Ambient mode: a namespace label hands its pods' traffic to the node's ztunnel instead of sidecars."""
from __future__ import annotations

from features._istio import label_notes, namespace_labelled
from features.base import Feature, Observation
from planner.inventory import Inventory

_ADD = {"istio.io/dataplane-mode": "ambient"}
# Sidecar injection labels: a pod that gets a sidecar is left out of ambient, so they go.
_REMOVED = ("istio-injection", "istio.io/rev")


class AmbientMode(Feature):
    id = "ambient-mode"
    title = "Ambient mode"
    category = "install"
    problem = "Do we want mTLS and L4 telemetry without a sidecar per pod (and add waypoints only where L7 is needed)?"
    scopes = ("namespace",)
    pitfalls = ("Needs the ambient profile: ztunnel on every node and istio-cni.",
                "L7 features (routing, retries, L7 authorization) need a waypoint proxy in ambient.",
                "Pods that still have a sidecar are not captured by ztunnel: restart them after the label change.")
    docs = "https://istio.io/latest/docs/ambient/usage/add-workloads/"
    owns = tuple(f"labels/{k}" for k in (*_ADD, *_REMOVED))

    def build(self, p, scope, inv):
        return [namespace_labelled(inv, scope, _ADD, _REMOVED)]

    def notes(self, p, scope, inv, rollback):
        return label_notes(inv, scope, _ADD, _REMOVED, rollback)

    def detect(self, inv: Inventory) -> list[Observation]:
        return [Observation(self.id, name, [f"Namespace {name}"], {})
                for name, ns in sorted(inv.namespaces.items()) if ns.injection == "ambient"]


FEATURE = AmbientMode()
