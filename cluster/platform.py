"""The Kubernetes platform a cluster runs on, as Istio's charts need to know it: istio.io's ambient platform
prerequisites (docs/ambient/install/platform-prerequisites/) set `global.platform` on the istio-cni and ztunnel
charts where the platform keeps CNI configuration and binaries, or network namespaces, outside the defaults, and
GKE admits node-critical pods only in namespaces with a ResourceQuota for them."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cluster.inventory import Inventory
from cluster.model import KubeObject
from cluster.versions import minor


@dataclass(frozen=True)
class Platform:
    value: str  # what `--set global.platform=` takes
    why: str  # what on the nodes says so


def kubelet_version(node: KubeObject) -> str:
    """The node's kubelet version as it reports it (status.nodeInfo.kubeletVersion, e.g. `v1.33.5`); "" if none."""
    return str(((node.raw.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion") or "")


def kubernetes_minor(node: KubeObject) -> tuple[int, int] | None:
    """The Kubernetes minor version the node's kubelet runs: `v1.33.5` → (1, 33); None when it reports none."""
    return minor(kubelet_version(node))


# Most specific first: k3d runs k3s in containers named k3d-….
_SIGNS: tuple[tuple[str, str, Callable[[KubeObject], bool]], ...] = (
    ("gke", "label cloud.google.com/gke-nodepool", lambda n: "cloud.google.com/gke-nodepool" in n.labels),
    ("openshift", "label node.openshift.io/os_id", lambda n: "node.openshift.io/os_id" in n.labels),
    ("k3d", "a k3s kubelet on a node named k3d-…",
     lambda n: "+k3s" in kubelet_version(n) and n.name.startswith("k3d-")),
    ("k3s", "a k3s kubelet", lambda n: "+k3s" in kubelet_version(n)),
    ("microk8s", "label microk8s.io/cluster", lambda n: "microk8s.io/cluster" in n.labels),
    ("minikube", "label minikube.k8s.io/name", lambda n: "minikube.k8s.io/name" in n.labels),
)


def platform(inv: Inventory) -> Platform | None:
    """The platform whose chart settings the cluster's nodes call for; None for one that needs none (or no node
    seen)."""
    nodes = inv.of_kind("Node")
    for value, sign, test in _SIGNS:
        hit = next((n for n in nodes if test(n)), None)
        if hit is not None:
            return Platform(value, f"node {hit.name}: {sign}")
    return None


# GKE: system-node-critical pods (istio-cni, ztunnel) outside kube-system need a ResourceQuota that admits them.
CRITICAL_PODS_QUOTA = "gcp-critical-pods"


def critical_pods_quota(inv: Inventory, namespace: str) -> dict:
    """The ResourceQuota istio.io's GKE prerequisite asks for in the namespace ztunnel and istio-cni run in, sized
    for one pod of each per node with room to grow."""
    nodes = len(inv.of_kind("Node"))
    return {"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": CRITICAL_PODS_QUOTA, "namespace": namespace},
            "spec": {"hard": {"pods": str(max(1000, 4 * nodes))},
                     "scopeSelector": {"matchExpressions": [{"operator": "In", "scopeName": "PriorityClass",
                                                             "values": ["system-node-critical"]}]}}}


def admits_critical_pods(inv: Inventory, namespace: str) -> bool:
    """Whether a ResourceQuota the source shows in `namespace` admits system-node-critical pods. A live read lists
    no ResourceQuotas: there the stage applies its own under a fixed name (applying it again changes nothing)."""
    return any(e.get("scopeName") == "PriorityClass" and e.get("operator") == "In"
               and "system-node-critical" in (e.get("values") or ())
               for q in inv.of_kind("ResourceQuota") if q.namespace == namespace
               for e in (q.spec.get("scopeSelector") or {}).get("matchExpressions") or ())
