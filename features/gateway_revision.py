"""Move the gateways to the new revision, once the namespaces behind them are on it."""
from __future__ import annotations

from typing import Any

from cluster import control_plane, revisions
from cluster.components import PROXY_CONTAINER
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from cluster.model import Revision
from features._upgrade import MoveStep, target
from features.base import MESH, Observation


def _moved(deployment: dict[str, Any], inv: Inventory, rev: Revision) -> dict[str, Any]:
    """The gateway Deployment with its pods labelled for `rev` and every name of the old control plane in its
    template (CA_ADDR, discovery address, mesh config volume) replaced by `rev`'s, as the gateway chart renders them
    for `rev`; a gateway installed with its own proxy image (not injected: image `auto`) gets that revision's image
    too. An injected gateway names no control plane in its template: the injector of `rev` renders them."""
    if "istio.io/rev" in (deployment["metadata"].get("labels") or {}):
        deployment["metadata"]["labels"]["istio.io/rev"] = rev.revision
    meta = deployment["spec"]["template"].setdefault("metadata", {})
    for key in ("labels", "annotations"):
        if "istio.io/rev" in (meta.get(key) or {}) or key == "labels":
            meta.setdefault(key, {})["istio.io/rev"] = rev.revision
    for c in deployment["spec"]["template"]["spec"].get("containers") or ():
        if c.get("name") == PROXY_CONTAINER and c.get("image") != "auto" and rev.version:
            c["image"] = revisions.with_tag(c["image"], rev.version)
    control_plane.repoint(deployment["spec"]["template"], inv, rev)
    return deployment


class GatewayRevision(MoveStep):
    id = "gateway-revision"
    title = "Move the gateways to the new revision"
    problem = "When do the gateways, which every external call goes through, take the new Istio release?"
    pitfalls = ("A gateway restarted onto the new revision drops its connections: roll it out with enough replicas.",
                "A gateway installed by istioctl is not moved by `istioctl install --revision`: patch it, or "
                "reinstall it with the new revision.")
    docs = "https://istio.io/latest/docs/setup/upgrade/canary/#gateways"

    def _stale(self, p: dict[str, Any], inv: Inventory) -> list[revisions.Proxy]:
        rev = target(p, inv).revision
        return [g for g in revisions.gateway_workloads(inv) if g.revision != rev]

    def build(self, p, scope, inv):
        rev = target(p, inv)
        objects, seen = [], set()
        for g in self._stale(p, inv):
            key = (g.pod.namespace, g.pod.workload_kind, g.pod.workload_name)
            d = inv.get("Deployment", g.pod.namespace, g.pod.workload_name) if key[1] == "Deployment" else None
            if d is None or key in seen:
                continue
            seen.add(key)
            objects.append(_moved(revisions.copy_of(d), inv, rev))
        if not objects:
            raise MeshstepError(f"{self.id}: no gateway Deployment is on another revision than {rev.revision}")
        return objects

    def notes(self, p, scope, inv, rollback):
        rev = target(p, inv)
        lines = []
        for ns, name in sorted({(g.pod.namespace, g.pod.workload_name) for g in self._stale(p, inv)}):
            lines += [f"kubectl rollout status deployment/{name} -n {ns}"]
        if not rollback:
            lines.append(f"istioctl proxy-status --revision {rev.revision}  # the gateways listed, version "
                         f"{rev.version or 'of the revision'}")
        return lines

    def restarted_pods(self, p, scope, inv):
        return revisions.restart_gateways(inv)

    def detect(self, inv: Inventory) -> list[Observation]:
        up = revisions.upgrade(inv)
        gateways = revisions.gateway_workloads(inv)
        if up is None or not gateways or any(g.revision != up.to_revision for g in gateways):
            return []
        return [Observation(self.id, MESH, [f"Pod {g.pod.namespace}/{g.pod.name}" for g in gateways],
                            {"revision": up.to_revision})]


FEATURE = GatewayRevision()
