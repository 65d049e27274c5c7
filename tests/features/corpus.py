"""The clusters the property test (test_property.py) runs every feature on: the demo; Istio's bookinfo sample with
each of its networking samples, running on the demo's control plane; each of istioctl's analyzer test clusters; the
synthetic cluster of the benchmarks; and clusters generated with Hypothesis (`clusters()`).

Manifests (bookinfo, generated clusters) have Deployments but no Pods: `running()` adds the pod each Deployment's
ReplicaSet would create, with the sidecar Istio's injector adds in a namespace labelled for injection (a native
sidecar, as Istio 1.27 injects it), so that the cluster is read as it would run."""
from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from benchmarks.synthetic import synthetic_cluster
from cluster.errors import MeshstepError
from cluster.files import read_paths
from cluster.inventory import Inventory, build_inventory
from cluster.snapshot import Snapshot
from cluster.sources import DEMO_DIR, load_snapshot
from tests.conftest import REFERENCE

GATEWAY_API_CRDS = REFERENCE.parent / "gateway-api-reference" / "crds"
AMBIENT = Path(__file__).parent.parent / "fixtures" / "ambient" / "cluster.yaml"
MIGRATION = AMBIENT.parent / "migration.yaml"

BOOKINFO = REFERENCE / "samples" / "bookinfo"
ANALYZER = REFERENCE / "analyzer" / "testdata"
# The demo's control plane: CRDs, istiod with its mesh config and webhooks, the ingress gateway, istio-cni.
CONTROL_PLANE = ("crds.yaml", "istio-system.yaml", "cluster.yaml")


@dataclass(frozen=True)
class Cluster:
    name: str
    load: Callable[[], Inventory]


def _inventory(label: str, objects: list[dict[str, Any]]) -> Inventory:
    return build_inventory(Snapshot(label, lambda _v: iter(objects)))


def control_plane(ambient: bool = False) -> list[dict[str, Any]]:
    """The demo's control plane; with `ambient`, as the ambient profile's Helm upgrade leaves it (istio-cni's
    AMBIENT_ENABLED "true", istiod's PILOT_ENABLE_AMBIENT=true), the values the ambient profile sets."""
    objects = list(read_paths([DEMO_DIR / f for f in CONTROL_PLANE]))
    for o in objects if ambient else ():
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "istio-cni-config":
            o["data"]["AMBIENT_ENABLED"] = "true"
        if o["kind"] == "Deployment" and o["metadata"].get("labels", {}).get("app") == "istiod":
            o["spec"]["template"]["spec"]["containers"][0]["env"].append(
                {"name": "PILOT_ENABLE_AMBIENT", "value": "true"})
    return objects


def running(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects with one Pod per Deployment, injected where its namespace asks for a sidecar."""
    injected = {}
    for o in objects:
        if o.get("kind") == "Namespace":
            labels = o["metadata"].get("labels") or {}
            if labels.get("istio-injection") == "enabled" or labels.get("istio.io/rev"):
                injected[o["metadata"]["name"]] = labels.get("istio.io/rev", "default")
    pods = []
    for i, d in enumerate(o for o in objects if o.get("kind") == "Deployment"):
        meta, template = d["metadata"], copy.deepcopy(d["spec"]["template"])
        ns = meta.get("namespace", "default")
        spec = template["spec"]
        annotations = dict(template.get("metadata", {}).get("annotations") or {})
        if ns in injected and annotations.get("sidecar.istio.io/inject") != "false":
            spec.setdefault("initContainers", []).append({
                "name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.27.3", "restartPolicy": "Always",
                "args": ["proxy", "sidecar", "--domain", f"{ns}.svc.cluster.local"]})
            annotations["sidecar.istio.io/status"] = json.dumps(
                {"initContainers": ["istio-validation", "istio-proxy"], "revision": injected[ns]})
            # the injector's label on a pod it gives a sidecar (../shared/istio-reference inject/*.injected)
            template.setdefault("metadata", {}).setdefault("labels", {})["security.istio.io/tlsMode"] = "istio"
        pods.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": f"{meta['name']}-7d4b9c-{i:05d}", "namespace": ns,
                                  # the ReplicaSet's hash ties the pod to its Deployment, as Kubernetes labels it
                                  "labels": {**(template.get("metadata", {}).get("labels") or {}),
                                             "pod-template-hash": "7d4b9c"},
                                  "annotations": annotations,
                                  "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                       "name": f"{meta['name']}-7d4b9c", "controller": True}]},
                     "spec": spec, "status": {"phase": "Running", "podIP": f"10.244.{i // 250}.{i % 250 + 2}"}})
    return objects + pods


def _in_namespace(objects: Iterator[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    out = []
    for o in objects:
        o = copy.deepcopy(o)
        o.setdefault("metadata", {}).setdefault("namespace", namespace)
        out.append(o)
    return out


def bookinfo(sample: Path | None) -> Inventory:
    """bookinfo in an injected namespace on the demo's control plane, with one networking sample applied."""
    ns = {"apiVersion": "v1", "kind": "Namespace",
          "metadata": {"name": "bookinfo", "labels": {"istio.io/rev": "1-27"}}}
    app = _in_namespace(read_paths([BOOKINFO / "bookinfo.yaml"]), "bookinfo")
    config = _in_namespace(read_paths([sample]), "bookinfo") if sample else []
    return _inventory(f"bookinfo+{sample.name if sample else 'app'}", [*control_plane(), *running([ns, *app]), *config])


def ambient() -> Inventory:
    """tests/fixtures/ambient on the demo's control plane under the ambient profile, with the Gateway API v1.3.0
    CRDs Istio 1.27 installs (read from ../shared, so that rendered Gateways and HTTPRoutes are validated against
    their real schemas)."""
    return _inventory("ambient", ambient_objects())


def ambient_objects() -> list[dict[str, Any]]:
    """The objects of `ambient()`'s cluster (as tests/kube.py's emulator serves them)."""
    crds = list(read_paths(sorted(GATEWAY_API_CRDS.glob("*.yaml"))))
    return [*control_plane(ambient=True), *crds, *read_paths([AMBIENT])]


def migration() -> Inventory:
    """tests/fixtures/ambient/migration.yaml (sidecar namespaces to move to ambient) running on the demo's control
    plane, with the Gateway API v1.3.0 CRDs from ../shared."""
    crds = list(read_paths(sorted(GATEWAY_API_CRDS.glob("*.yaml"))))
    return _inventory("migration", [*control_plane(), *crds, *running(list(read_paths([MIGRATION])))])


def corpus() -> list[Cluster]:
    """Every fixed cluster of the corpus (the Hypothesis-generated ones are `clusters()`)."""
    out = [Cluster("demo", lambda: build_inventory(load_snapshot("demo")))]
    out.append(Cluster("ambient", ambient))
    out.append(Cluster("migration", migration))
    out.append(Cluster("bookinfo", lambda: bookinfo(None)))
    for sample in sorted((BOOKINFO / "networking").glob("*.yaml")):
        out.append(Cluster(f"bookinfo+{sample.stem}", lambda s=sample: bookinfo(s)))
    for f in sorted(ANALYZER.glob("*.yaml")):
        out.append(Cluster(f"analyzer/{f.stem}", lambda f=f: build_inventory(load_snapshot(str(f)))))
    out.append(Cluster("synthetic", lambda: _inventory("synthetic", synthetic_cluster(100, 25, 30, seed=0))))
    return out


def loadable(cluster: Cluster) -> Inventory | None:
    """The cluster's inventory; None for an analyzer case that is not a readable cluster on purpose."""
    try:
        return cluster.load()
    except MeshstepError:
        return None


# ---------------------------------------------------------------- generated clusters

_PORTS = (("http", 8080, None), ("grpc", 9090, None), ("tcp-db", 5432, None), (None, 7070, None),
          ("web", 8000, "http"))


@st.composite
def clusters(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A cluster on the demo's control plane: namespaces injected or not, apps with one or two versions behind a
    Service of one or two ports (HTTP, gRPC, a database, undeclared), calls between them and out of the cluster in
    env, and the config a team may already have: mesh and ingress VirtualServices (the ingress one often named
    like the service), DestinationRules with limits, PeerAuthentications, Sidecars."""
    names = draw(st.lists(st.sampled_from(["web", "api", "db", "cart", "auth", "search"]), min_size=1, max_size=4,
                          unique=True))
    namespaces = draw(st.lists(st.sampled_from(["alpha", "beta", "gamma"]), min_size=1, max_size=2, unique=True))
    objs: list[dict[str, Any]] = []
    apps = [(n, draw(st.sampled_from(namespaces))) for n in names]
    for ns in namespaces:
        labels = draw(st.sampled_from([{"istio.io/rev": "1-27"}, {"istio-injection": "enabled"}, {}]))
        objs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}})
        mode = draw(st.sampled_from([None, "PERMISSIVE", "STRICT", "DISABLE"]))
        if mode:
            objs.append(_istio("security.istio.io", "PeerAuthentication", ns, "default", {"mtls": {"mode": mode}}))
        if draw(st.booleans()):
            objs.append(_istio("networking.istio.io", "Sidecar", ns, "default",
                               {"outboundTrafficPolicy": {"mode": draw(st.sampled_from(["ALLOW_ANY",
                                                                                       "REGISTRY_ONLY"]))}}))
    for name, ns in apps:
        ports = draw(st.lists(st.sampled_from(_PORTS), min_size=1, max_size=2, unique_by=lambda p: p[1]))
        versions = draw(st.sampled_from([["v1"], ["v1", "v2"]]))
        env = []
        for target, tns in draw(st.lists(st.sampled_from(apps), max_size=2, unique=True)):
            env.append({"name": f"{target.upper()}_URL", "value": f"http://{target}.{tns}:8080"})
        if draw(st.booleans()):
            env.append({"name": "PARTNER_URL", "value": "https://api.partner.example.com/v2"})
        for v in versions:
            labels = {"app": name, "version": v}
            objs.append({"apiVersion": "apps/v1", "kind": "Deployment",
                         "metadata": {"name": f"{name}-{v}", "namespace": ns, "labels": labels},
                         "spec": {"selector": {"matchLabels": labels}, "template": {
                             "metadata": {"labels": labels},
                             "spec": {"serviceAccountName": name, "containers": [{
                                 "name": name, "image": f"example/{name}:{v}", "env": env,
                                 "ports": [{"containerPort": p[1]} for p in ports]}]}}}})
        svc_ports = [{"port": p[1], "targetPort": p[1]} | ({"name": p[0]} if p[0] else {})
                     | ({"appProtocol": p[2]} if p[2] else {}) for p in ports]
        objs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                     "spec": {"selector": {"app": name}, "ports": svc_ports}})
        route = {"route": [{"destination": {"host": name, "port": {"number": ports[0][1]}}}]}
        extra = draw(st.sampled_from([{}, {"timeout": "3s"}, {"retries": {"attempts": 1, "perTryTimeout": "1s"}},
                                      {"fault": {"abort": {"httpStatus": 500, "percentage": {"value": 1.0}}}}]))
        if draw(st.booleans()):  # an ingress VirtualService that takes the service's name
            objs.append(_istio("networking.istio.io", "Gateway", ns, f"{name}-gw", {
                "selector": {"istio": "ingressgateway"},
                "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                             "hosts": [f"{name}.example.com"]}]}))
            objs.append(_istio("networking.istio.io", "VirtualService", ns, name, {
                "hosts": [f"{name}.example.com"], "gateways": [f"{name}-gw"], "http": [route | extra]}))
        elif draw(st.booleans()):
            objs.append(_istio("networking.istio.io", "VirtualService", ns, name,
                               {"hosts": [name], "http": [route | extra]}))
        if draw(st.booleans()):
            pool = draw(st.sampled_from([{"tcp": {"maxConnections": 7, "connectTimeout": "1s"}},
                                         {"http": {"http1MaxPendingRequests": 3, "maxRequestsPerConnection": 1}}]))
            objs.append(_istio("networking.istio.io", "DestinationRule", ns, name,
                               {"host": name, "trafficPolicy": {"connectionPool": pool}}))
    return [*control_plane(), *running(objs)]


def _istio(group: str, kind: str, ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{group}/v1", "kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": spec}


def generated(objects: list[dict[str, Any]]) -> Inventory:
    return _inventory("generated", objects)
