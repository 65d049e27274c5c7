"""Ambient mode: a namespace label hands its pods' traffic to the node's ztunnel instead of sidecars."""
from __future__ import annotations

from analysis.ambient import SIDECAR_POD
from cluster import revisions
from cluster.inventory import Inventory
from features._istio import label_notes, namespace_labelled
from features.base import Feature, Observation

_ADD = {"istio.io/dataplane-mode": "ambient"}
# Sidecar injection labels: a pod that gets a sidecar is left out of ambient, so they go.
_REMOVED = ("istio-injection", "istio.io/rev")
_INJECTED = ("istio-proxy", "istio-init", "istio-validation")  # what the sidecar injector adds to a pod
_CAPTURED = {"ambient.istio.io/redirection": "enabled"}  # istio-cni's mark on a pod it hands to ztunnel


class AmbientMode(Feature):
    id = "ambient-mode"
    title = "Ambient mode"
    category = "install"
    problem = "Do we want mTLS and L4 telemetry without a sidecar per pod (and add waypoints only where L7 is needed)?"
    scopes = ("namespace",)
    pitfalls = ("Needs the ambient profile: ztunnel on every node and istio-cni.",
                "L7 features (routing, retries, L7 authorization) need a waypoint proxy in ambient: VirtualServices, "
                "DestinationRules and L7 AuthorizationPolicies of the namespace stop applying without one (the gate "
                "lists them, MST0706).",
                "mTLS between ambient pods is on at once (ztunnel's HBONE tunnels on port 15008); plaintext from "
                "outside the mesh is still accepted until a STRICT PeerAuthentication.",
                "Pods that still have a sidecar are not captured by ztunnel: restart them after the label change.")
    docs = "https://istio.io/latest/docs/ambient/usage/add-workloads/"
    keeps_decisions = True
    # ztunnel's HBONE tunnels give mutual TLS between ambient pods at once, plaintext from outside still accepted
    provides = ("mtls-permissive",)
    owns = tuple(f"labels/{k}" for k in (*_ADD, *_REMOVED))

    def build(self, p, scope, inv):
        return [namespace_labelled(inv, scope, _ADD, _REMOVED)]

    def notes(self, p, scope, inv, rollback):
        lines = label_notes(inv, scope, _ADD, _REMOVED, rollback)
        if rollback:
            return lines
        return lines + [f"# until a pod of {scope} restarts its sidecar decides, with the policies narrowed to sidecar "
                        "pods; once restarted, ztunnel and the waypoint decide, with their copies: no decision "
                        "changes in between (the originals go in the clean-up)",
                        f"# verify: every pod of {scope} without a sidecar, carried by ztunnel over HBONE (port 15008)",
                        f"# istioctl ztunnel-config workloads --workload-namespace {scope}"]

    def restarted_pods(self, p, scope, inv):
        """The namespace's pods as ztunnel carries them: those without a sidecar captured in place by istio-cni
        (no restart needed), the sidecar pods back from their restart with nothing injected (the injection label
        is gone)."""
        out = []
        for pod in inv.pods_by_namespace.get(scope, ()):
            if pod.sidecar is None and inv.component("Pod", scope, pod.name) is None and not inv.in_mesh(pod):
                out.append(revisions.manifest(pod, dict(pod.labels), {**pod.annotations, **_CAPTURED}))
        for proxy in revisions.proxies(inv):
            rev = revisions.revision(inv, proxy.revision)
            if proxy.kind != "sidecar" or proxy.pod.namespace != scope or rev is None:
                continue
            pod = revisions.restarted(inv, proxy, rev)
            spec, meta = pod["spec"], pod["metadata"]
            for key in ("containers", "initContainers"):
                spec[key] = [c for c in spec[key] if c["name"] not in _INJECTED]
            meta["annotations"] = {k: v for k, v in meta["annotations"].items()
                                   if k != "sidecar.istio.io/status"} | _CAPTURED
            # nor the injector's label: the policies narrowed to sidecar pods (ambient-policies) leave it at once
            meta["labels"] = {k: v for k, v in meta["labels"].items() if k not in SIDECAR_POD}
            out.append(pod)
        return out

    def detect(self, inv: Inventory) -> list[Observation]:
        return [Observation(self.id, name, [f"Namespace {name}"], {})
                for name, ns in sorted(inv.namespaces.items()) if ns.injection == "ambient"]


FEATURE = AmbientMode()
