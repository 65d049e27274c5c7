"""The bundled demo cluster (cluster/demo/*.yaml) is a consistent dump of a cluster running Istio 1.27 (revision 1-27):
every object well-formed, every owner reference resolvable, every injected pod recognisably injected."""
from __future__ import annotations

import json
import re
from collections import Counter, defaultdict

import pytest
import yaml

from cluster.files import YAML_LOADER
from cluster.sources import DEMO_DIR

REVISION = "1-27"
VERSION = "1.27.3"
PROXY_IMAGE = f"docker.io/istio/proxyv2:{VERSION}"

CLUSTER_SCOPED = {"Namespace", "Node", "CustomResourceDefinition", "MutatingWebhookConfiguration",
                  "ValidatingWebhookConfiguration", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "StorageClass", "PriorityClass"}
ISTIO_GROUPS = ("networking.istio.io", "security.istio.io", "telemetry.istio.io", "extensions.istio.io")
UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
SAFE = r"[bcdfghjklmnpqrstvwxz2456789]"  # the alphabet Kubernetes generates names from



def _load() -> dict[str, list[dict]]:
    files = sorted(DEMO_DIR.glob("*.yaml"))
    return {f.name: [d for d in yaml.load_all(f.read_text(encoding="utf-8"), Loader=YAML_LOADER) if d is not None]
            for f in files}


FILES = _load()
DOCS = [d for docs in FILES.values() for d in docs]


def _key(o: dict) -> tuple[str, str | None, str]:
    return o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]


BY_KEY = {_key(o): o for o in DOCS}


def of_kind(kind: str, namespace: str | None = None) -> list[dict]:
    return [o for o in DOCS if o["kind"] == kind and (namespace is None or o["metadata"].get("namespace") == namespace)]


def has_sidecar(pod: dict) -> str | None:
    """`native` or `classic` when the pod carries an injected istio-proxy, else None."""
    spec = pod["spec"]
    for c in spec.get("initContainers") or ():
        if c["name"] == "istio-proxy" and c.get("restartPolicy") == "Always":
            return "native"
    for c in spec.get("containers") or ():
        if c["name"] == "istio-proxy" and c.get("args", [])[:2] == ["proxy", "sidecar"]:
            return "classic"
    return None


def test_the_demo_is_there_split_by_theme():
    assert {"istio-system.yaml", "addons.yaml", "shop.yaml", "legacy.yaml", "config.yaml",
            "cluster.yaml"} <= set(FILES)
    assert all(FILES.values()), "no empty file"


# ---------------------------------------------------------------- every object


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_object_is_well_formed(name):
    for o in FILES[name]:
        where = f"{name}: {o.get('kind')} {o.get('metadata', {}).get('name')}"
        assert isinstance(o.get("apiVersion"), str) and o["apiVersion"], where
        assert isinstance(o.get("kind"), str) and o["kind"], where
        meta = o.get("metadata") or {}
        assert meta.get("name"), where
        assert UID.match(meta.get("uid", "")), f"{where}: uid"
        assert str(meta.get("creationTimestamp", "")).startswith("2026-"), f"{where}: creationTimestamp"
        assert "kubectl.kubernetes.io/last-applied-configuration" not in (meta.get("annotations") or {}), where
        if o["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in meta, f"{where}: cluster-scoped kind with a namespace"
        else:
            assert meta.get("namespace"), f"{where}: namespaced kind without a namespace"


def test_names_and_uids_are_unique():
    dupes = [k for k, n in Counter(_key(o) for o in DOCS).items() if n > 1]
    assert not dupes
    uids = Counter(o["metadata"]["uid"] for o in DOCS)
    assert not [u for u, n in uids.items() if n > 1]


def test_every_namespace_used_exists():
    namespaces = {o["metadata"]["name"] for o in of_kind("Namespace")}
    used = {o["metadata"]["namespace"] for o in DOCS if o["metadata"].get("namespace")}
    assert used <= namespaces
    assert {"kube-system", "istio-system", "shop", "payments", "legacy", "default"} <= namespaces


def test_no_secret_has_data():
    secrets = of_kind("Secret")
    assert secrets
    for s in secrets:
        assert "data" not in s and "stringData" not in s, s["metadata"]["name"]


# ---------------------------------------------------------------- ownership


def _owner(o: dict) -> dict:
    refs = o["metadata"].get("ownerReferences") or []
    assert len(refs) == 1 and refs[0].get("controller") is True, _key(o)
    return refs[0]


def _resolve(o: dict, kinds: tuple[str, ...]) -> dict:
    ref = _owner(o)
    assert ref["kind"] in kinds, (_key(o), ref["kind"])
    target = BY_KEY.get((ref["kind"], o["metadata"]["namespace"], ref["name"]))
    assert target is not None, f"{_key(o)}: owner {ref['kind']} {ref['name']} is not in the demo"
    assert target["metadata"]["uid"] == ref["uid"], f"{_key(o)}: owner uid"
    assert target["apiVersion"] == ref["apiVersion"]
    return target


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def test_every_pod_is_owned_by_a_controller_in_the_demo():
    pods = of_kind("Pod")
    assert 25 <= len(pods) <= 35
    for p in pods:
        owner = _resolve(p, ("ReplicaSet", "StatefulSet", "DaemonSet"))
        assert _selects(owner["spec"]["selector"], p["metadata"]["labels"]), _key(p)
        name = p["metadata"]["name"]
        if owner["kind"] == "StatefulSet":
            assert re.fullmatch(rf"{owner['metadata']['name']}-\d+", name)
        else:
            assert re.fullmatch(rf"{re.escape(owner['metadata']['name'])}-{SAFE}{{5}}", name), name
        if owner["kind"] == "ReplicaSet":
            assert p["metadata"]["labels"]["pod-template-hash"] == owner["metadata"]["name"].rsplit("-", 1)[1]


def test_every_replicaset_is_owned_by_a_deployment_and_counts_its_pods():
    pods_of = Counter((_owner(p)["kind"], p["metadata"]["namespace"], _owner(p)["name"]) for p in of_kind("Pod"))
    for rs in of_kind("ReplicaSet"):
        dep = _resolve(rs, ("Deployment",))
        h = rs["spec"]["selector"]["matchLabels"]["pod-template-hash"]
        assert rs["metadata"]["name"] == f"{dep['metadata']['name']}-{h}"
        assert re.fullmatch(rf"{SAFE}{{9,10}}", h)
        assert rs["spec"]["replicas"] == dep["spec"]["replicas"] == pods_of[_key(rs)]
    for d in of_kind("Deployment"):
        assert any(_owner(rs)["uid"] == d["metadata"]["uid"]
                   for rs in of_kind("ReplicaSet", d["metadata"]["namespace"]))
    for kind in ("DaemonSet", "StatefulSet"):
        for w in of_kind(kind):
            want = len(of_kind("Node")) if kind == "DaemonSet" else w["spec"]["replicas"]
            assert pods_of[_key(w)] == want, _key(w)


def test_pods_are_running_ready_and_well_placed():
    nodes = {n["metadata"]["name"] for n in of_kind("Node")}
    assert nodes == {"node-a", "node-b", "node-c"}
    ips = Counter()
    for p in of_kind("Pod"):
        st = p["status"]
        assert st["phase"] == "Running", _key(p)
        assert {"type": "Ready", "status": "True"}.items() <= next(
            c for c in st["conditions"] if c["type"] == "Ready").items(), _key(p)
        assert all(c["ready"] for c in st["containerStatuses"]), _key(p)
        assert p["spec"]["nodeName"] in nodes
        assert st["podIP"]
        if not p["spec"].get("hostNetwork"):
            ips[st["podIP"]] += 1
        sa = p["spec"]["serviceAccountName"]
        assert ("ServiceAccount", p["metadata"]["namespace"], sa) in BY_KEY, f"{_key(p)}: service account {sa}"
    assert not [ip for ip, n in ips.items() if n > 1], "pod IPs are unique"


def test_services_select_pods_and_cluster_ips_are_unique():
    ips = Counter(s["spec"]["clusterIP"] for s in of_kind("Service") if s["spec"]["clusterIP"] != "None")
    assert not [ip for ip, n in ips.items() if n > 1]
    for s in of_kind("Service"):
        sel = s["spec"].get("selector")
        if not sel:
            continue
        pods = [p for p in of_kind("Pod", s["metadata"]["namespace"]) if _selects({"matchLabels": sel},
                                                                                   p["metadata"]["labels"])]
        assert pods, f"{_key(s)} selects no pod"


# ---------------------------------------------------------------- Istio


def test_injected_pods_carry_a_sidecar_of_their_revision():
    for ns, shape in (("shop", "native"), ("payments", "classic")):
        assert BY_KEY[("Namespace", None, ns)]["metadata"]["labels"]["istio.io/rev"] == REVISION
        injected = [p for p in of_kind("Pod", ns) if "sidecar.istio.io/status" in p["metadata"].get("annotations", {})]
        assert injected
        for p in injected:
            status = json.loads(p["metadata"]["annotations"]["sidecar.istio.io/status"])
            assert status["revision"] == REVISION
            assert has_sidecar(p) == shape, _key(p)
            assert p["metadata"]["labels"]["security.istio.io/tlsMode"] == "istio"
            assert p["metadata"]["labels"]["service.istio.io/canonical-name"] == p["metadata"]["labels"]["app"]
            spec = p["spec"]
            names = [c["name"] for c in spec["initContainers"]]
            assert names[0] == "istio-init" and names == status["initContainers"]
            assert [c["name"] for c in spec["containers"] if c["name"] == "istio-proxy"] == (status["containers"] or [])
            proxy = next(c for c in spec["initContainers"] + spec["containers"] if c["name"] == "istio-proxy")
            assert proxy["image"] == PROXY_IMAGE
            env = {e["name"]: e.get("value") for e in proxy["env"]}
            assert env["CA_ADDR"] == f"istiod-{REVISION}.istio-system.svc:15012"
            assert env["ISTIO_META_WORKLOAD_NAME"] == _owner(BY_KEY[("ReplicaSet", ns, _owner(p)["name"])])["name"]
            # The app's HTTP probes go through pilot-agent, as the injector rewrites them.
            probers = json.loads(env["ISTIO_KUBE_APP_PROBERS"])
            for c in spec["containers"]:
                for probe in ("readinessProbe", "livenessProbe"):
                    if c["name"] != "istio-proxy" and "httpGet" in c.get(probe, {}):
                        assert c[probe]["httpGet"]["port"] == 15020
                        assert c[probe]["httpGet"]["path"] in probers


def test_exactly_one_shop_pod_predates_injection():
    pods = of_kind("Pod", "shop")
    bare = [p for p in pods if has_sidecar(p) is None]
    assert [p["metadata"]["name"].rsplit("-", 2)[0] for p in bare] == ["catalog"]
    (catalog,) = bare
    assert "sidecar.istio.io/status" not in (catalog["metadata"].get("annotations") or {})
    assert all(catalog["metadata"]["creationTimestamp"] < p["metadata"]["creationTimestamp"]
               for p in pods if p is not catalog)


def test_pods_outside_injected_namespaces_have_no_sidecar():
    for p in of_kind("Pod"):
        if p["metadata"]["namespace"] not in ("shop", "payments"):
            assert has_sidecar(p) is None, _key(p)
            assert "sidecar.istio.io/status" not in (p["metadata"].get("annotations") or {})
    legacy = BY_KEY[("Deployment", "legacy", "legacy-billing")]
    text = json.dumps(legacy["spec"]["template"])
    assert "http://orders.shop.svc.cluster.local:8080" in text
    assert "istio.io/rev" not in BY_KEY[("Namespace", None, "legacy")]["metadata"]["labels"]


def test_orders_and_ratings_share_a_service_account():
    def sa(name):
        return BY_KEY[("Deployment", "shop", name)]["spec"]["template"]["spec"]["serviceAccountName"]

    assert sa("orders") == sa("ratings") == "shop-backend"


def test_control_plane_is_revision_1_27():
    istiod = BY_KEY[("Deployment", "istio-system", f"istiod-{REVISION}")]
    assert istiod["spec"]["replicas"] == 2
    assert {"app": "istiod", "istio": "pilot", "istio.io/rev": REVISION}.items() <= istiod["metadata"]["labels"].items()
    (discovery,) = istiod["spec"]["template"]["spec"]["containers"]
    assert discovery["image"] == f"docker.io/istio/pilot:{VERSION}" and discovery["args"][0] == "discovery"
    assert {p["containerPort"] for p in discovery["ports"]} == {8080, 15010, 15012, 15014, 15017}
    mesh = yaml.safe_load(BY_KEY[("ConfigMap", "istio-system", f"istio-{REVISION}")]["data"]["mesh"])
    assert mesh["rootNamespace"] == "istio-system" and mesh["trustDomain"] == "cluster.local"
    assert mesh["defaultConfig"]["discoveryAddress"] == f"istiod-{REVISION}.istio-system.svc:15012"
    assert mesh["outboundTrafficPolicy"]["mode"] == "ALLOW_ANY"
    hooks = {h["metadata"]["name"]: h for h in of_kind("MutatingWebhookConfiguration")}
    assert hooks["istio-revision-tag-default"]["metadata"]["labels"]["istio.io/tag"] == "default"
    for h in hooks.values():
        assert h["metadata"]["labels"]["istio.io/rev"] == REVISION
        for w in h["webhooks"]:
            assert w["clientConfig"]["service"] == {"name": f"istiod-{REVISION}", "namespace": "istio-system",
                                                   "path": "/inject", "port": 443}
    gw = BY_KEY[("Deployment", "istio-system", "istio-ingressgateway")]["spec"]["template"]
    assert gw["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    assert gw["spec"]["containers"][0]["args"][:2] == ["proxy", "router"]
    cni = BY_KEY[("DaemonSet", "istio-system", "istio-cni-node")]["spec"]["template"]["spec"]["containers"][0]
    assert (cni["name"], cni["image"]) == ("install-cni", f"docker.io/istio/install-cni:{VERSION}")


def test_addons_are_not_injected():
    for name in ("kiali", "prometheus", "grafana", "jaeger"):
        dep = BY_KEY[("Deployment", "istio-system", name)]
        assert dep["spec"]["template"]["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"


def test_crds_serve_istios_versions():
    crds = {c["spec"]["names"]["kind"]: c for c in of_kind("CustomResourceDefinition")}
    assert set(crds) == {"VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "Sidecar", "EnvoyFilter",
                         "WorkloadEntry", "WorkloadGroup", "ProxyConfig", "PeerAuthentication", "AuthorizationPolicy",
                         "RequestAuthentication", "Telemetry", "WasmPlugin"}
    for kind, c in crds.items():
        spec = c["spec"]
        assert c["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
        assert spec["scope"] == "Namespaced" and spec["group"] in ISTIO_GROUPS
        assert spec["names"]["listKind"] == f"{kind}List" and spec["names"]["singular"] == kind.lower()
        assert [v["name"] for v in spec["versions"] if v["storage"]] == c["status"]["storedVersions"]
        assert len(c["status"]["storedVersions"]) == 1
        for v in spec["versions"]:
            assert v["served"]
            assert v["schema"]["openAPIV3Schema"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    for kind in ("VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "PeerAuthentication"):
        served = [v["name"] for v in crds[kind]["spec"]["versions"]]
        assert "v1" in served and "v1beta1" in served


def test_istio_config_is_v1_and_refers_to_what_exists():
    config = [o for o in DOCS if o["apiVersion"].split("/")[0] in ISTIO_GROUPS]
    assert Counter(o["kind"] for o in config) == {"Gateway": 1, "VirtualService": 2, "DestinationRule": 2,
                                                  "PeerAuthentication": 1, "ServiceEntry": 1}
    crd_kinds = {(c["spec"]["group"], c["spec"]["names"]["kind"]) for c in of_kind("CustomResourceDefinition")}
    for o in config:
        group, version = o["apiVersion"].split("/")
        assert version == "v1" and (group, o["kind"]) in crd_kinds
    gw = BY_KEY[("Gateway", "shop", "shop-gateway")]
    assert [p for p in of_kind("Pod", "istio-system") if _selects({"matchLabels": gw["spec"]["selector"]},
                                                                  p["metadata"]["labels"])]
    by_subset = defaultdict(dict)
    for dr in of_kind("DestinationRule", "shop"):
        for s in dr["spec"].get("subsets", ()):
            by_subset[dr["spec"]["host"]][s["name"]] = s["labels"]
    for s, labels in by_subset["reviews"].items():
        assert [p for p in of_kind("Pod", "shop") if _selects({"matchLabels": {**labels, "app": "reviews"}},
                                                              p["metadata"]["labels"])], s
    for vs in of_kind("VirtualService", "shop"):
        for g in vs["spec"].get("gateways", ()):
            assert ("Gateway", "shop", g) in BY_KEY
        for route in vs["spec"]["http"]:
            for r in route["route"]:
                host = r["destination"]["host"].split(".")[0]
                assert ("Service", "shop", host) in BY_KEY
                if "subset" in r["destination"]:
                    assert r["destination"]["subset"] in by_subset[host]
    pa = BY_KEY[("PeerAuthentication", "istio-system", "default")]
    assert pa["spec"] == {"mtls": {"mode": "PERMISSIVE"}}


# ---------------------------------------------------------------- as meshstep reads it


def test_meshstep_reads_the_demo_as_intended():
    from analysis.common import analyze
    from cluster.inventory import build_inventory
    from cluster.sources import load_snapshot

    inv = build_inventory(load_snapshot("demo"))
    ((rev, version, tags),) = [(r.revision, r.version, r.tags) for r in inv.revisions]
    assert (rev, version, tags) == (REVISION, VERSION, ("default",))
    assert inv.root_namespace == "istio-system"
    shapes = Counter((p.namespace, p.sidecar.shape) for p in inv.pods if p.sidecar)
    assert shapes == {("shop", "native"): 7, ("payments", "classic"): 2}
    components = Counter(c.component for c in inv.components)
    assert components == {"istiod": 2, "ingress-gateway": 2, "istio-cni": 3, "sidecar": 9, "kiali": 1,
                          "prometheus": 1, "grafana": 1, "jaeger": 1}
    errors = [m for m in analyze(inv) if m.level == "error"]
    assert not errors, [f"{m.code} {m.ref}: {m.message}" for m in errors]
