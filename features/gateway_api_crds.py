"""The Kubernetes Gateway API CRDs: what waypoints (Gateways of class istio-waypoint) and HTTPRoutes need, and what
most clusters do not have until someone installs them (istio.io, ambient migration: before you begin)."""
from __future__ import annotations

from typing import Any

from cluster.inventory import Inventory
from cluster.model import GATEWAY_API_GROUP
from features._gateway_api import installed
from features.base import MESH, Feature, Observation

RELEASE = "v1.3.0"  # the standard channel Istio 1.27 is tested with
MANIFEST = f"https://github.com/kubernetes-sigs/gateway-api/releases/download/{RELEASE}/standard-install.yaml"
# What the release's standard-install.yaml serves: kind → (plural, served versions). The overlay of a rehearsal
# knows the kinds and versions it serves, not their schemas: the rendered objects are checked against the real
# CRDs where the cluster (or a test) has them.
STANDARD = {"GatewayClass": ("gatewayclasses", ("v1", "v1beta1")), "Gateway": ("gateways", ("v1", "v1beta1")),
            "HTTPRoute": ("httproutes", ("v1", "v1beta1")), "GRPCRoute": ("grpcroutes", ("v1",)),
            "ReferenceGrant": ("referencegrants", ("v1beta1",))}


class GatewayApiCrds(Feature):
    id = "gateway-api-crds"
    title = "The Kubernetes Gateway API CRDs"
    category = "install"
    operation = True
    problem = ("Does the cluster serve the Gateway API (Gateway, HTTPRoute), which waypoints and ambient L7 routing "
               "are written in?")
    scopes = (MESH,)
    pitfalls = ("Most Kubernetes clusters do not come with the Gateway API CRDs: install them before any waypoint.",
                "Install the standard channel of the release your Istio is tested with; an experimental-channel "
                "install serves fields (HTTPRoute retries) the standard one rejects.",
                "Removing the CRDs deletes every Gateway and HTTPRoute of the cluster with them.")
    docs = "https://istio.io/latest/docs/ambient/migrate/before-you-begin/"
    keeps_decisions = True

    def build(self, p, scope, inv):
        return []  # a release manifest applied by URL: the stage's command, not objects meshstep renders

    def notes(self, p, scope, inv, rollback):
        if rollback:
            return ["# only once no Gateway, waypoint or HTTPRoute is left: deleting the CRDs deletes them all",
                    f"kubectl delete -f {MANIFEST}"]
        if installed(inv):
            return ["# the cluster serves the Gateway API CRDs: nothing to install"]
        return [f"# the Gateway API CRDs ({RELEASE}, standard channel), as istio.io's migration guide installs them",
                f"kubectl get crd gateways.gateway.networking.k8s.io >/dev/null 2>&1 || "
                f"kubectl apply --server-side -f {MANIFEST}"]

    def commanded(self, p, scope, inv) -> list[dict[str, Any]]:
        """The CRDs the manifest creates, as names and served versions (see STANDARD)."""
        if installed(inv):
            return []
        return [{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                 "metadata": {"name": f"{plural}.{GATEWAY_API_GROUP}",
                              "annotations": {"gateway.networking.k8s.io/bundle-version": RELEASE,
                                              "gateway.networking.k8s.io/channel": "standard"}},
                 "spec": {"group": GATEWAY_API_GROUP, "scope": "Namespaced",
                          "names": {"kind": kind, "plural": plural},
                          "versions": [{"name": v, "served": True, "storage": v == "v1" or len(versions) == 1}
                                       for v in versions]}}
                for kind, (plural, versions) in STANDARD.items()]

    def detect(self, inv: Inventory) -> list[Observation]:
        if not installed(inv):
            return []
        return [Observation(self.id, MESH, [f"CustomResourceDefinition {c.name}" for c in inv.crds.values()
                                            if c.group == GATEWAY_API_GROUP and c.kind == "HTTPRoute"]
                            or ["HTTPRoute objects"])]


FEATURE = GatewayApiCrds()
