"""Multi-cluster MeshNetworks checks (istioctl's multicluster.MeshNetworksAnalyzer): a network whose endpoints come
`fromRegistry` a registry istiod does not have, so the network gets no endpoints and cross-network traffic fails.

A registry is a cluster ID: Istio's built-in ones (the primary cluster is `Kubernetes` unless installed with
another clusterName), or the cluster of a remote secret (a Secret labelled istio/multiCluster=true, one data key per
cluster). meshstep never keeps a secret's data, so it takes the cluster from what `istioctl create-remote-secret`
writes beside it: the networking.istio.io/cluster annotation and the name istio-remote-secret-<cluster>."""
from __future__ import annotations

from collections.abc import Iterator

from analysis.base import Context, check
from cluster.inventory import Inventory
from cluster.model import Ref

BUILTIN_REGISTRIES = ("Mock", "Kubernetes", "External")
MULTICLUSTER_SECRET_LABEL = "istio/multiCluster"
CLUSTER_ANNOTATION = "networking.istio.io/cluster"
REMOTE_SECRET_PREFIX = "istio-remote-secret-"
# istioctl names the mesh networks it analyzes as this resource, wherever they came from.
MESH_NETWORKS_REF = Ref("MeshNetworks", "istio-system", "meshnetworks")


def known_registries(inv: Inventory) -> set[str]:
    """Built-in registries plus the clusters of remote secrets (by annotation and by name)."""
    known = set(BUILTIN_REGISTRIES)
    for secret in inv.of_kind("Secret"):
        if secret.labels.get(MULTICLUSTER_SECRET_LABEL) == "true":
            if secret.annotations.get(CLUSTER_ANNOTATION):
                known.add(secret.annotations[CLUSTER_ANNOTATION])
            if secret.name.startswith(REMOTE_SECRET_PREFIX):
                known.add(secret.name[len(REMOTE_SECRET_PREFIX):])
    return known


@check("IST0126", "Set fromRegistry to a cluster ID istiod knows: the primary cluster's clusterName (default "
       "`Kubernetes`, case-sensitive) or the cluster name of a remote secret (istioctl create-remote-secret "
       "--name).",
       reads=("Secret",))
def unknown_service_registry(ctx: Context) -> Iterator[tuple[Ref, str]]:
    networks = (ctx.inventory.mesh_networks or {}).get("networks") or {}
    if not isinstance(networks, dict):
        return
    known = known_registries(ctx.inventory)
    for name, network in sorted(networks.items()):
        for endpoint in (network or {}).get("endpoints") or ():
            registry = (endpoint or {}).get("fromRegistry")
            if registry is not None and registry not in known:
                yield MESH_NETWORKS_REF, f"Unknown service registry {registry} in network {name}"
