"""The ambient data plane: ztunnel on every node, and istio-cni and istiod under the ambient profile (the ambient
plans' install stage; istio.io's migration guide: install ambient components)."""
from __future__ import annotations

import copy
from typing import Any

from analysis.ambient import AMBIENT_ENV, CNI_CONFIG, ambient_profile_missing, istiod_deployments
from cluster.changes import clean
from cluster.inventory import Inventory
from cluster.platform import admits_critical_pods, critical_pods_quota, platform
from features.base import MESH, Feature, Observation

_ZTUNNEL = ("ztunnel", "istio/ztunnel")


class AmbientInstall(Feature):
    id = "ambient-install"
    title = "The ambient data plane: ztunnel, istio-cni and istiod under the ambient profile"
    category = "install"
    operation = True
    problem = ("Is the ambient data plane — ztunnel on every node, istio-cni handing pods to it, istiod programming "
               "it — running before a namespace relies on it?")
    scopes = (MESH,)
    pitfalls = ("ztunnel and istio-cni must run on every node a workload can land on: tolerate tainted nodes.",
                "On GKE, OpenShift and k3s the CNI directories differ: set the platform (global.platform).",
                "ztunnel running is not enough: istio-cni's config must have AMBIENT_ENABLED \"true\" and istiod "
                "PILOT_ENABLE_AMBIENT=true (the ambient profile), or pods labelled ambient get no mTLS and no L4 "
                "policy.",
                "Sidecar workloads keep working through this stage: nothing of theirs changes.")
    docs = "https://istio.io/latest/docs/ambient/migrate/install-ambient-components/"
    keeps_decisions = True

    def _missing(self, inv: Inventory) -> list[str]:
        """What the ambient data plane lacks: a component not running, or not under the ambient profile."""
        out = [name for name in ("istio-cni", "ztunnel") if not _ready(inv, name)]
        profile = {ref.kind for ref, _ in ambient_profile_missing(inv)}
        return out + [c for c, kind in (("istio-cni profile", "ConfigMap"), ("istiod profile", "Deployment"))
                      if kind in profile]

    def build(self, p, scope, inv):
        """Installed by Helm or istioctl (the stage's commands); on GKE, outside kube-system, the ResourceQuota
        that lets ztunnel's and istio-cni's node-critical pods be admitted, applied before the commands."""
        ns = inv.root_namespace
        found = platform(inv)
        if found is None or found.value != "gke" or ns == "kube-system" or admits_critical_pods(inv, ns) \
                or not {"istio-cni", "ztunnel"} & set(self._missing(inv)):
            return []
        return [critical_pods_quota(inv, ns)]

    def notes(self, p, scope, inv, rollback):
        ns = inv.root_namespace
        if rollback:
            return ["# move every ambient namespace back (ambient-mode rollback) first: without ztunnel their pods "
                    "have no network", f"helm uninstall ztunnel -n {ns}",
                    f"helm upgrade istio-cni istio/cni -n {ns} --reuse-values --set profile=default",
                    f"helm upgrade istiod istio/istiod -n {ns} --reuse-values --set profile=default"]
        missing = self._missing(inv)
        if not missing:
            return ["# ztunnel, istio-cni and istiod run under the ambient profile: nothing to install"]
        lines = [f"# missing: {', '.join(missing)}. istio.io's migration guide: upgrade the install to the ambient "
                 "profile (or: istioctl upgrade --set profile=ambient); sidecar workloads are left as they are"]
        found = platform(inv)
        on = f" --set global.platform={found.value}" if found else ""
        if found:
            lines.append(f"# platform {found.value} ({found.why}): istio-cni and ztunnel need its CNI paths "
                         "(istio.io, ambient platform prerequisites)")
        if "istiod profile" in missing:
            lines.append(f"helm upgrade istiod istio/istiod -n {ns} --reuse-values --set profile=ambient --wait")
        if {"istio-cni", "istio-cni profile"} & set(missing):
            verb = "install" if "istio-cni" in missing else "upgrade"
            lines.append(f"helm {verb} istio-cni istio/cni -n {ns} --set profile=ambient{on} --wait")
        if "ztunnel" in missing:
            lines.append(f"helm install {_ZTUNNEL[0]} {_ZTUNNEL[1]} -n {ns}{on} --wait")
        return lines + [f"# verify: kubectl get pods -n {ns} (ztunnel and istio-cni-node ready on every node)"]

    def commanded(self, p, scope, inv) -> list[dict[str, Any]]:
        """What the Helm upgrades leave: istio-cni's config with AMBIENT_ENABLED "true", istiod with
        PILOT_ENABLE_AMBIENT=true, ztunnel's DaemonSet and one ready pod of it per node."""
        out: list[dict[str, Any]] = []
        for ref, _ in ambient_profile_missing(inv):
            o = copy.deepcopy(clean(inv.get(ref.kind, ref.namespace, ref.name).raw))
            if ref.kind == "ConfigMap":
                o["data"]["AMBIENT_ENABLED"] = "true"
            else:
                for c in o["spec"]["template"]["spec"]["containers"][:1]:
                    c["env"] = [e for e in c.get("env") or () if e.get("name") != AMBIENT_ENV] + [
                        {"name": AMBIENT_ENV, "value": "true"}]
            out.append(o)
        return out + _installed(inv)

    def detect(self, inv: Inventory) -> list[Observation]:
        if self._missing(inv):
            return []
        cni = inv.get("ConfigMap", inv.root_namespace, CNI_CONFIG)
        return [Observation(self.id, MESH, [f"{c.kind} {c.namespace}/{c.name}" for name in ("istio-cni", "ztunnel")
                                            for c in inv.components_by_id.get(name, ())]
                            + [str(d.ref) for d in istiod_deployments(inv)] + ([str(cni.ref)] if cni else []))]


def _ready(inv: Inventory, component: str) -> bool:
    """Whether a component runs with a ready pod (a source without pods shows none)."""
    return any((pod := inv.pod(c.namespace, c.name)) is not None and pod.ready
               for c in inv.components_by_id.get(component, ()) if c.kind == "Pod")


def _daemonset(inv: Inventory, name: str, labels: dict[str, str], container: dict[str, Any]) -> list[dict[str, Any]]:
    """A DaemonSet as its chart installs it, and its pod on each node, ready."""
    ns = inv.root_namespace
    template = {"metadata": {"labels": labels}, "spec": {"serviceAccountName": name, "containers": [container]}}
    daemonset = {"apiVersion": "apps/v1", "kind": "DaemonSet",
                 "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/name": name}},
                 "spec": {"selector": {"matchLabels": {k: v for k, v in labels.items() if "istio.io" not in k}},
                          "template": template}}
    nodes = [n.name for n in inv.of_kind("Node")] or [None]
    pods = [{"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": f"{name}-{i:05d}", "namespace": ns, "labels": dict(labels),
                          "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": name,
                                               "controller": True}]},
             "spec": {**copy.deepcopy(template["spec"]), **({"nodeName": node} if node else {})},
             "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
            for i, node in enumerate(nodes)]
    return [daemonset, *pods]


def _installed(inv: Inventory) -> list[dict[str, Any]]:
    """What `helm install` of the missing components makes: ztunnel (istio/ztunnel), istio-cni-node (istio/cni)."""
    version = inv.istio_version or "latest"
    rev = next(iter(inv.revisions), None)
    xds = f"istiod{'-' + rev.revision if rev and rev.revision != 'default' else ''}.{inv.root_namespace}.svc:15012"
    out = []
    if not _ready(inv, "ztunnel"):
        out += _daemonset(inv, "ztunnel", {"app": "ztunnel", "sidecar.istio.io/inject": "false"},
                          {"name": "istio-proxy", "image": f"docker.io/istio/ztunnel:{version}-distroless",
                           "args": ["proxy", "ztunnel"], "env": [{"name": "CA_ADDRESS", "value": xds},
                                                                  {"name": "XDS_ADDRESS", "value": xds}],
                           "ports": [{"containerPort": 15020, "name": "ztunnel-stats", "protocol": "TCP"}]})
    if not _ready(inv, "istio-cni"):
        out += _daemonset(inv, "istio-cni-node", {"k8s-app": "istio-cni-node", "sidecar.istio.io/inject": "false"},
                          {"name": "install-cni", "image": f"docker.io/istio/install-cni:{version}-distroless",
                           "args": ["--log_output_level=info"], "env": [{"name": "AMBIENT_ENABLED", "value": "true"}]})
    return out


FEATURE = AmbientInstall()
