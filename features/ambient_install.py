"""The ambient data plane: ztunnel on every node and istio-cni to hand pods to it (the ambient plans' first stage)."""
from __future__ import annotations

from cluster.inventory import Inventory
from features.base import MESH, Feature, Observation

_PARTS = (("istio-cni", "istio/cni", "--set profile=ambient"), ("ztunnel", "istio/ztunnel", ""))


class AmbientInstall(Feature):
    id = "ambient-install"
    title = "The ambient data plane: ztunnel and istio-cni"
    category = "install"
    operation = True
    problem = ("Is the ambient data plane — ztunnel on every node, istio-cni to hand pods to it — running before a "
               "namespace relies on it?")
    scopes = (MESH,)
    pitfalls = ("ztunnel and istio-cni must run on every node a workload can land on: tolerate tainted nodes.",
                "On GKE, OpenShift and k3s the CNI directories differ: set the platform (global.platform).",
                "istiod must run with the ambient profile's settings (PILOT_ENABLE_AMBIENT), or it does not "
                "program ztunnel.")
    docs = "https://istio.io/latest/docs/ambient/install/helm/"

    def _missing(self, inv: Inventory) -> list[tuple[str, str, str]]:
        return [part for part in _PARTS if not _ready(inv, part[0])]

    def build(self, p, scope, inv):
        return []  # installed by Helm or istioctl: the stage's commands, not objects meshstep renders

    def notes(self, p, scope, inv, rollback):
        ns = inv.root_namespace
        if rollback:
            return ["# move every ambient namespace back (ambient-mode rollback) first: without ztunnel their pods "
                    "have no network", *(f"helm uninstall {name} -n {ns}" for name, _, _ in reversed(_PARTS))]
        missing = self._missing(inv)
        if not missing:
            return ["# ztunnel and istio-cni are running: nothing to install"]
        return ["# install what ambient mode needs (istio.io's Helm install; or: istioctl install --set "
                "profile=ambient)",
                *(f"helm install {name} {chart} -n {ns} {extra} --wait".replace("  ", " ")
                  for name, chart, extra in missing)]

    def detect(self, inv: Inventory) -> list[Observation]:
        if self._missing(inv):
            return []
        return [Observation(self.id, MESH, [f"{c.kind} {c.namespace}/{c.name}" for part in _PARTS
                                            for c in inv.components_by_id.get(part[0], ())])]


def _ready(inv: Inventory, component: str) -> bool:
    """Whether a component runs with a ready pod (a source without pods shows none)."""
    return any((pod := inv.pod(c.namespace, c.name)) is not None and pod.ready
               for c in inv.components_by_id.get(component, ()) if c.kind == "Pod")


FEATURE = AmbientInstall()
