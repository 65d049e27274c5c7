"""Sidecar injection: a namespace label makes istiod's webhook add istio-proxy to every new pod."""
from __future__ import annotations

from typing import Any

from cluster import injector
from cluster.inventory import Inventory
from cluster.revisions import injection_labels
from features._istio import label_notes, namespace_labelled
from features.base import Feature, Observation, Param

# Labels that would contradict a sidecar: the legacy switch is replaced by the revision label, ambient is dropped.
_REMOVED = ("istio-injection", "istio.io/dataplane-mode")


class SidecarInjection(Feature):
    id = "sidecar-injection"
    title = "Sidecar injection"
    category = "install"
    problem = "Which namespaces should have their traffic go through an Envoy sidecar, and under which revision?"
    params = (Param("revision", str, "", "istiod revision or tag to inject from (default: the default tag's "
                                         "revision, or the only one)"),)
    scopes = ("namespace",)
    pitfalls = ("Only pods created after the label get a sidecar: restart the workloads.",
                "Ports must be named (http-*, grpc-*) or carry appProtocol, else Istio treats traffic as opaque TCP.",
                "Init containers that call the network run before the sidecar is up (native sidecars fix this).",
                "istio-injection=enabled and istio.io/rev together: the legacy label wins.")
    docs = "https://istio.io/latest/docs/setup/additional-setup/sidecar-injection/"
    owns = tuple(f"labels/{k}" for k in (*_REMOVED, "istio.io/rev"))

    def _labels(self, p: dict[str, Any], inv: Inventory, scope: str) -> dict[str, str]:
        return injection_labels(inv, scope, p["revision"], self.id)

    def build(self, p, scope, inv):
        labels = self._labels(p, inv, scope)
        return [namespace_labelled(inv, scope, labels, tuple(k for k in _REMOVED if k not in labels))]

    def notes(self, p, scope, inv, rollback):
        labels = self._labels(p, inv, scope)
        return label_notes(inv, scope, labels, tuple(k for k in _REMOVED if k not in labels), rollback)

    def restarted_pods(self, p, scope, inv):
        return injector.reinjected(inv, scope)

    def detect(self, inv: Inventory) -> list[Observation]:
        return [Observation(self.id, name, [f"Namespace {name}"],
                            {"revision": "" if ns.revision == "default" and "istio-injection" in ns.labels
                             else ns.revision})
                for name, ns in sorted(inv.namespaces.items()) if ns.injection == "sidecar"]


FEATURE = SidecarInjection()
