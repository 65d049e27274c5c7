"""Component recognition against what Istio itself ships, and the catalog's consistency with it."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from cluster import components
from cluster.components import CATALOG, EDGES, PEERS, PLANES
from cluster.inventory import build_inventory
from cluster.snapshot import Snapshot

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "istio-reference"
WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet")

# Every workload of Istio's rendered installs and addons, and the component it is (read from the files).
EXPECTED = {
    ("install/all_on.golden.yaml", "Deployment", "istio-system", "istiod"): "istiod",
    ("install/all_on.golden.yaml", "Deployment", "istio-system", "istio-ingressgateway"): "ingress-gateway",
    ("install/all_on.golden.yaml", "Deployment", "istio-system", "istio-egressgateway"): "egress-gateway",
    ("install/pilot_default.golden.yaml", "Deployment", "istio-system", "istiod"): "istiod",
    ("install/istio-cni.golden.yaml", "DaemonSet", "istio-system", "istio-cni-node"): "istio-cni",
    ("install/ztunnel.golden.yaml", "DaemonSet", "istio-system", "ztunnel"): "ztunnel",
    ("samples/addons/kiali.yaml", "Deployment", "istio-system", "kiali"): "kiali",
    ("samples/addons/prometheus.yaml", "Deployment", "istio-system", "prometheus"): "prometheus",
    ("samples/addons/jaeger.yaml", "Deployment", "istio-system", "jaeger"): "jaeger",
    ("samples/addons/loki.yaml", "StatefulSet", "istio-system", "loki"): "loki",
}
INSTALL_FILES = sorted({k[0] for k in EXPECTED})


def docs(rel: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((REFERENCE / rel).read_text()) if d]


def inventory_of(objects: list[dict]):
    return build_inventory(Snapshot("test", lambda _v: iter(copy.deepcopy(objects))))


def found(objects: list[dict]) -> dict[tuple[str, str, str], str]:
    return {(c.kind, c.namespace, c.name): c.component for c in inventory_of(objects).components}


def workload(rel: str, kind: str, name: str) -> dict:
    return copy.deepcopy(next(d for d in docs(rel) if d["kind"] == kind and d["metadata"]["name"] == name))


def pod_from(owner: dict, suffix: str) -> dict:
    """A running pod of a workload, owned by it as the API would show it (a Deployment's through a ReplicaSet)."""
    tmpl = owner["spec"]["template"]
    meta = copy.deepcopy(tmpl["metadata"])
    name = owner["metadata"]["name"]
    if owner["kind"] == "Deployment":
        meta.setdefault("labels", {})["pod-template-hash"] = "5d9c7b"
        ref = {"kind": "ReplicaSet", "name": f"{name}-5d9c7b", "controller": True}
        name = f"{name}-5d9c7b"
    else:
        ref = {"kind": owner["kind"], "name": name, "controller": True}
    meta.update(name=f"{name}-{suffix}", namespace=owner["metadata"].get("namespace", "default"), ownerReferences=[ref])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(tmpl["spec"]),
            "status": {"phase": "Running"}}


# ---------------------------------------------------------------- Istio's own installs and addons


@pytest.mark.parametrize("rel", INSTALL_FILES)
def test_every_workload_of_istios_installs_is_recognised_as_the_right_component(rel):
    objects = docs(rel)
    workloads = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
                 for d in objects if d["kind"] in WORKLOAD_KINDS}
    expected = {k[1:]: v for k, v in EXPECTED.items() if k[0] == rel}
    assert workloads == set(expected), "the table must list every workload of the file"
    assert found(objects) == expected


@pytest.mark.parametrize("rel", ["samples/bookinfo/bookinfo.yaml", "samples/curl.yaml", "samples/httpbin.yaml",
                                 "inject/hello.yaml"])
def test_ordinary_apps_are_not_components(rel):
    objects = docs(rel)
    assert any(d["kind"] == "Deployment" for d in objects)
    assert found(objects) == {}


@pytest.mark.parametrize("rel, shape, init", [
    ("inject/hello.yaml.injected", "native", "istio-init"),
    ("inject/hello.yaml.cni.injected", "native", "istio-validation"),
    ("inject/hello-old-version.yaml.injected", "classic", "istio-init"),
])
def test_injected_pods_are_sidecars_native_or_classic(rel, shape, init):
    deployment = next(d for d in docs(rel) if d["kind"] == "Deployment")
    inv = inventory_of([deployment, pod_from(deployment, "x1k2p")])
    (pod,) = inv.pods
    assert pod.sidecar is not None and pod.sidecar.shape == shape
    assert pod.spec.container(init) is not None
    assert [c.component for c in inv.components] == ["sidecar"]


def test_injected_daemonset_is_a_sidecar_not_a_node_agent():
    assert set(found(docs("inject/daemonset.yaml.injected")).values()) == {"sidecar"}


# ---------------------------------------------------------------- robustness: what it runs, not what it is called


def _rename(d: dict, name: str, namespace: str | None = None, labels: dict | None = None) -> dict:
    d["metadata"]["name"] = name
    if namespace:
        d["metadata"]["namespace"] = namespace
    if labels is not None:
        d["spec"]["template"]["metadata"]["labels"] = labels
        d["spec"]["selector"] = {"matchLabels": labels}
    return d


ROBUSTNESS = [
    # (why, workload, expected component)
    ("renamed istiod in a custom namespace",
     lambda: _rename(workload("install/pilot_default.golden.yaml", "Deployment", "istiod"), "control-plane",
                     "mesh-system", {"app": "control-plane"}), "istiod"),
    ("revisioned istiod",
     lambda: _rename(workload("install/pilot_default.golden.yaml", "Deployment", "istiod"), "istiod-1-27-3",
                     labels={"app": "istiod", "istio.io/rev": "1-27-3"}), "istiod"),
    ("ingress gateway with a custom name and labels",
     lambda: _rename(workload("install/all_on.golden.yaml", "Deployment", "istio-ingressgateway"), "public-edge",
                     "edge", {"app": "public-edge", "istio": "public-edge"}), "ingress-gateway"),
    ("egress gateway renamed, install labels kept",
     lambda: _rename(workload("install/all_on.golden.yaml", "Deployment", "istio-egressgateway"), "outbound",
                     "egress"), "egress-gateway"),
    ("ztunnel renamed",
     lambda: _rename(workload("install/ztunnel.golden.yaml", "DaemonSet", "ztunnel"), "node-tunnel", "kube-mesh",
                     {"app": "node-tunnel"}), "ztunnel"),
    ("istio-cni renamed",
     lambda: _rename(workload("install/istio-cni.golden.yaml", "DaemonSet", "istio-cni-node"), "cni-agent",
                     "kube-system", {"k8s-app": "cni-agent"}), "istio-cni"),
    ("kiali renamed",
     lambda: _rename(workload("samples/addons/kiali.yaml", "Deployment", "kiali"), "mesh-console", "observability",
                     {"app": "mesh-console"}), "kiali"),
]


@pytest.mark.parametrize("why, make, expected", ROBUSTNESS, ids=[r[0] for r in ROBUSTNESS])
def test_recognition_survives_renames_namespaces_and_revisions(why, make, expected):
    w = make()
    assert found([w]) == {(w["kind"], w["metadata"]["namespace"], w["metadata"]["name"]): expected}


def test_revisioned_istiod_is_its_own_revision():
    w = _rename(workload("install/pilot_default.golden.yaml", "Deployment", "istiod"), "istiod-canary",
                labels={"app": "istiod", "istio.io/rev": "canary"})
    inv = inventory_of([w, pod_from(w, "abcde")])
    assert [(r.revision, r.istiod_pods) for r in inv.revisions] == [("canary", 1)]


def _gateway_pod(name: str, labels: dict, args: list[str] | None, annotations: dict | None = None) -> dict:
    container = {"name": "istio-proxy", "image": "auto" if args is None else "docker.io/istio/proxyv2:1.27.3"}
    if args is not None:
        container["args"] = args
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "gw", "labels": labels, "annotations": annotations or {}},
            "spec": {"containers": [container]}}


@pytest.mark.parametrize("pod, expected", [
    (_gateway_pod("front-1", {"app": "front"}, ["proxy", "router"]), "ingress-gateway"),
    (_gateway_pod("front-2", {"app": "front"}, None, {"inject.istio.io/templates": "gateway"}), "ingress-gateway"),
    (_gateway_pod("out-1", {"istio": "egressgateway"}, ["proxy", "router"]), "egress-gateway"),
    (_gateway_pod("x-1", {"istio": "eastwestgateway"}, ["proxy", "router"]), "east-west-gateway"),
    (_gateway_pod("x-2", {"gateway.networking.k8s.io/gateway-class-name": "istio-east-west",
                          "gateway.networking.k8s.io/gateway-name": "cross"}, ["proxy", "router"]),
     "east-west-gateway"),
    (_gateway_pod("wp-1", {"gateway.networking.k8s.io/gateway-class-name": "istio-waypoint"}, ["proxy", "router"]),
     "waypoint"),
    (_gateway_pod("wp-2", {}, ["proxy", "waypoint"]), "waypoint"),
], ids=["router", "gateway-template", "egress", "east-west-label", "east-west-class", "waypoint-class",
        "waypoint-mode"])
def test_gateways_are_recognised_by_what_they_run(pod, expected):
    assert found([pod]) == {("Pod", "gw", pod["metadata"]["name"]): expected}


def test_a_bare_istio_proxy_without_gateway_signs_is_not_a_gateway():
    assert found([_gateway_pod("lonely", {"app": "lonely"}, None)]) == {}


# ---------------------------------------------------------------- the catalog


def test_catalog_has_one_entry_per_component_id_of_the_vocabulary():
    assert set(CATALOG) == {
        "istiod", "ingress-gateway", "egress-gateway", "east-west-gateway", "istio-cni", "ztunnel", "waypoint",
        "sidecar", "kiali", "prometheus", "grafana", "jaeger", "zipkin", "loki", "otel-collector"}
    assert {cid: c.plane for cid, c in CATALOG.items()} == PLANES


@pytest.mark.parametrize("cid", sorted(CATALOG))
def test_every_entry_is_complete(cid):
    c = CATALOG[cid]
    assert c.id == cid and c.plane in ("control", "data", "addon")
    assert c.role and c.recognised_by and c.ports and c.when_down and c.misconfigured and c.commands
    assert c.docs.startswith("https://istio.io/")
    assert c.edges, f"{cid} talks to nobody"
    values = dict(target="t", pod="p", namespace="n", container="c", revision="r", istiod_namespace="i")
    for cmd in c.commands:
        assert not re.search(r"[{}]", cmd.render(**values)), cmd.template


def test_istiod_has_its_four_parts_on_ports_it_declares():
    istiod = CATALOG["istiod"]
    assert [p.name for p in istiod.parts] == ["xDS config server", "certificate authority (CA)",
                                              "sidecar injector webhook", "config validation webhook"]
    declared = {p.port for p in istiod.ports}
    assert all(set(part.ports) <= declared for part in istiod.parts)


def test_edges_join_known_ends_and_proxies_reach_istiod_on_15012():
    for e in EDGES:
        assert e.source in CATALOG or e.source in PEERS, e
        assert e.target in CATALOG or e.target in PEERS, e
    to_istiod = {e.source for e in EDGES if e.target == "istiod" and e.port == 15012}
    assert to_istiod == {"sidecar", "ingress-gateway", "egress-gateway", "east-west-gateway", "waypoint", "ztunnel"}
    webhook = next(e for e in EDGES if e.source == "kube-apiserver" and e.target == "istiod")
    assert (webhook.port, webhook.protocol) == (15017, "HTTPS")


def _ports_in(rel: str, kind: str, name: str) -> set[int]:
    """Every numeric port a workload of Istio's manifests declares: container ports and probe ports."""
    d = workload(rel, kind, name)
    out = set()
    for c in d["spec"]["template"]["spec"]["containers"]:
        out |= {p["containerPort"] for p in c.get("ports") or ()}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
            if isinstance(port, int):
                out.add(port)
    return out


@pytest.mark.parametrize("rel, kind, name, cid", [
    ("install/all_on.golden.yaml", "Deployment", "istiod", "istiod"),
    ("install/all_on.golden.yaml", "Deployment", "istio-ingressgateway", "ingress-gateway"),
    ("install/all_on.golden.yaml", "Deployment", "istio-egressgateway", "egress-gateway"),
    ("install/istio-cni.golden.yaml", "DaemonSet", "istio-cni-node", "istio-cni"),
    ("install/ztunnel.golden.yaml", "DaemonSet", "ztunnel", "ztunnel"),
    ("samples/addons/kiali.yaml", "Deployment", "kiali", "kiali"),
    ("samples/addons/loki.yaml", "StatefulSet", "loki", "loki"),
    ("samples/addons/prometheus.yaml", "Deployment", "prometheus", "prometheus"),
])
def test_every_port_istios_manifests_open_is_explained(rel, kind, name, cid):
    explained = {p.port for p in CATALOG[cid].ports}
    # prometheus-config-reloader's own port is not Prometheus'.
    missing = _ports_in(rel, kind, name) - explained - ({8080} if cid == "prometheus" else set())
    assert not missing, f"{cid}: ports {sorted(missing)} are not explained"


def test_jaeger_service_ports_are_explained():
    ports = {p.get("targetPort") if isinstance(p.get("targetPort"), int) else p["port"]
             for d in docs("samples/addons/jaeger.yaml") if d["kind"] == "Service" for p in d["spec"]["ports"]}
    assert ports - {p.port for p in CATALOG["jaeger"].ports} == set()


def test_sidecar_ports_cover_the_injected_proxy():
    deployment = next(d for d in docs("inject/hello.yaml.injected") if d["kind"] == "Deployment")
    proxy = next(c for c in deployment["spec"]["template"]["spec"]["initContainers"] if c["name"] == "istio-proxy")
    declared = {p["containerPort"] for p in proxy.get("ports") or ()}
    declared.add(proxy["readinessProbe"]["httpGet"]["port"])
    assert declared and declared <= {p.port for p in CATALOG["sidecar"].ports}


def test_proxy_mode_reads_the_pilot_agent_command():
    c = components.Container("istio-proxy", "proxyv2", args=("proxy", "router", "--domain", "x"))
    assert components.proxy_mode(c) == "router"
    assert components.proxy_mode(components.Container("app", "nginx", args=("serve",))) is None


def test_ist_codes_the_catalog_cites_exist_in_istioctl_analyze():
    live = set(re.findall(r"^\s*code: (IST\d{4})", (REFERENCE / "analyzer" / "messages.yaml").read_text(), re.M))
    cited = {code for c in CATALOG.values() for text in c.misconfigured + c.when_down
             for code in re.findall(r"IST\d{4}", text)}
    assert cited and cited <= live, sorted(cited - live)
