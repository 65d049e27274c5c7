"""The inventory: Istio's own injected pod shapes, injection modes and protocol selection as Istio decides
them, the control plane, the report's JSON shape on the demo cluster, in-memory changes, and the CLI."""
from __future__ import annotations

import copy
import dataclasses
import gc
import json
from pathlib import Path

import pytest
import yaml

from app.cli import main
from benchmarks.kubeapi import write_kubeconfig
from cluster.decode import injection_mode, istio_protocol
from cluster.inventory import Inventory, build_inventory, gc_paused
from cluster.model import CRD, Ref
from cluster.sources import files_snapshot, load_snapshot
from tests.kube import serve

FIXTURE = Path(__file__).parents[1] / "fixtures" / "inventory" / "cluster.yaml"


@pytest.fixture(scope="module")
def small() -> Inventory:
    return build_inventory(load_snapshot(str(FIXTURE)))


def _injected_pod(reference: Path, name: str) -> dict:
    """A Pod made from the template of one of Istio's injector test outputs, as its ReplicaSet would make it."""
    deployment = next(d for d in yaml.safe_load_all((reference / "inject" / name).read_text())
                      if d and d["kind"] == "Deployment")
    template = copy.deepcopy(deployment["spec"]["template"])
    meta = template["metadata"]
    meta["labels"]["pod-template-hash"] = "5d8b9c"
    meta.update(name=f"{deployment['metadata']['name']}-5d8b9c-abcde", namespace="default",
                ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": True,
                                  "name": f"{deployment['metadata']['name']}-5d8b9c", "uid": "u"}])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]}


# ---------------------------------------------------------------- Istio's injected shapes


@pytest.mark.parametrize("file, shape, init", [
    ("hello.yaml.injected", "native", "istio-init"),
    ("hello-old-version.yaml.injected", "classic", "istio-init"),
    ("hello.yaml.cni.injected", "native", "istio-validation"),
])
def test_istios_injected_shapes_are_sidecars(tmp_path: Path, reference: Path, file: str, shape: str,
                                             init: str) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(_injected_pod(reference, file)))
    inv = build_inventory(load_snapshot(str(path)))
    (pod,) = inv.pods
    assert pod.sidecar is not None
    assert (pod.sidecar.shape, pod.sidecar.revision) == (shape, "default")
    assert pod.sidecar.image == "registry.istio.io/testing/proxyv2:latest"
    assert pod.sidecar.version is None  # `latest` is not a version
    assert pod.spec.container(init) is not None
    assert (pod.workload_kind, pod.workload_name) == ("Deployment", "hello")
    assert [(c.component, c.kind, c.name) for c in inv.components] == [("sidecar", "Pod", pod.name)]


def test_istios_injected_deployment_without_pods_is_one_component(reference: Path) -> None:
    # A manifest has no pods: the component is the workload itself.
    inv = build_inventory(files_snapshot([reference / "inject" / "hello.yaml.injected"]))
    assert inv.pods == ()
    assert [(c.component, c.kind, c.name) for c in inv.components] == [("sidecar", "Deployment", "hello")]


def test_the_uninjected_original_carries_no_sidecar(reference: Path) -> None:
    inv = build_inventory(files_snapshot([reference / "inject" / "hello.yaml"]))
    assert [w.name for w in inv.workloads] == ["hello"]
    assert inv.components == ()


def test_sidecar_version_and_revision_from_pod(small: Inventory) -> None:
    injected = small.pod("shop", "cart-v1-7f8d9c-xyz12")
    predates = small.pod("shop", "cart-v1-7f8d9c-old01")
    assert injected is not None and predates is not None
    assert injected.sidecar is not None
    assert (injected.sidecar.shape, injected.sidecar.version, injected.sidecar.revision) == ("native", "1.27.3", "1-27")
    assert predates.sidecar is None
    assert (injected.workload_kind, injected.workload_name) == ("Deployment", "cart-v1")


# ---------------------------------------------------------------- Istio's decisions


@pytest.mark.parametrize("labels, expected", [
    ({"istio-injection": "enabled"}, ("sidecar", "default")),
    ({"istio.io/rev": "1-27"}, ("sidecar", "1-27")),
    ({"istio.io/rev": "prod"}, ("sidecar", "prod")),  # a tag is a revision name as far as namespaces go
    ({"istio-injection": "enabled", "istio.io/rev": "1-27"}, ("sidecar", "default")),  # default injector wins
    ({"istio-injection": "disabled", "istio.io/rev": "1-27"}, ("disabled", None)),
    ({"istio.io/dataplane-mode": "ambient"}, ("ambient", None)),
    ({"istio.io/dataplane-mode": "ambient", "istio.io/rev": "1-27", "istio-injection": "disabled"},
     ("ambient", "1-27")),
    ({"istio-injection": "disabled"}, ("disabled", None)),
    ({"istio.io/dataplane-mode": "none"}, ("disabled", None)),
    ({}, ("none", None)),
    ({"istio-injection": "true"}, ("none", None)),  # only `enabled` enables
])
def test_injection_mode(labels: dict[str, str], expected: tuple[str, str | None]) -> None:
    assert injection_mode(labels) == expected


@pytest.mark.parametrize("name, app_protocol, l4, expected", [
    ("http", None, "TCP", "HTTP"),
    ("http-web", None, "TCP", "HTTP"),
    ("HTTP-web", None, "TCP", "HTTP"),
    ("http2-api", None, "TCP", "HTTP2"),
    ("https", None, "TCP", "HTTPS"),
    ("grpc", None, "TCP", "GRPC"),
    ("grpc-web", None, "TCP", "GRPC"),  # the prefix before the first '-' is what counts
    ("tls-passthrough", None, "TCP", "TLS"),
    ("tcp-db", None, "TCP", "TCP"),
    ("mongo", None, "TCP", "Mongo"),
    ("redis-cache", None, "TCP", "Redis"),
    ("mysql", None, "TCP", "MySQL"),
    ("httpx", None, "TCP", "UNKNOWN"),
    ("web", None, "TCP", "UNKNOWN"),
    (None, None, "TCP", "UNKNOWN"),
    ("metrics", "http", "TCP", "HTTP"),
    ("http", "grpc", "TCP", "GRPC"),  # appProtocol wins over the name
    (None, "grpc-web", "TCP", "GRPC-Web"),
    (None, "kubernetes.io/h2c", "TCP", "HTTP2"),
    ("web", "custom.example/proto", "TCP", "UNKNOWN"),
    ("dns", None, "UDP", "UDP"),
    ("http", "http", "UDP", "UDP"),  # Istio serves UDP as UDP whatever the name says
])
def test_istio_protocol_selection(name: str | None, app_protocol: str | None, l4: str, expected: str) -> None:
    assert istio_protocol(name, app_protocol, l4) == expected


def test_service_ports_carry_istios_protocol(small: Inventory) -> None:
    svc = small.service("shop", "cart")
    assert svc is not None
    assert [(p.port, p.istio_protocol) for p in svc.ports] == [
        (80, "HTTP"), (9090, "GRPC"), (9100, "HTTP"), (5000, "UNKNOWN"), (53, "UDP")]


# ---------------------------------------------------------------- control plane and report


def test_small_cluster_control_plane(small: Inventory) -> None:
    (rev,) = small.revisions
    assert (rev.revision, rev.version, rev.namespace, rev.istiod_pods, rev.ready_pods, rev.tags) == (
        "1-27", "1.27.3", "istio-system", 2, 1, ("prod",))
    assert small.mesh_configs == {"1-27": {"rootNamespace": "istio-system", "enableTracing": False}}
    assert small.istio_version == "1.27.3"
    rows = {r["name"]: r for r in small.namespace_rows()}
    assert {n: (r["injection"], r["revision"], r["pods"], r["pods_with_sidecar"]) for n, r in rows.items()} == {
        "ambient": ("ambient", None, 0, 0), "batch": ("disabled", None, 0, 0), "istio-system": ("none", None, 2, 0),
        "legacy": ("sidecar", "default", 0, 0), "shop": ("sidecar", "1-27", 2, 1), "tools": ("none", None, 0, 0)}


def test_lookups_find_what_the_lists_hold(demo_inventory: Inventory) -> None:
    inv = demo_inventory
    assert all(inv.pod(p.namespace, p.name) is p for p in inv.pods)
    assert all(inv.service(s.namespace, s.name) is s for s in inv.services)
    assert all(inv.workload(w.namespace, w.kind, w.name) is w for w in inv.workloads)
    assert all(inv.component(c.kind, c.namespace, c.name) is c for c in inv.components)
    assert inv.pod("no-such-namespace", inv.pods[0].name) is None and inv.service("shop", "no-such") is None
    assert inv.workload(inv.workloads[0].namespace, "CronJob", inv.workloads[0].name) is None
    assert inv.components_by_id == {cid: [c for c in inv.components if c.component == cid]
                                    for cid in dict.fromkeys(c.component for c in inv.components)}
    names = inv.namespace_names()
    assert names == sorted(set(inv.namespaces) | {p.namespace for p in inv.pods} | {s.namespace for s in inv.services}
                           | {o.namespace for os in inv.objects.values() for o in os if o.namespace})
    names.append("mutated")  # a caller's list: the inventory's own is unchanged
    assert "mutated" not in inv.namespace_names()


@pytest.mark.parametrize("served, expected", [
    (("v1", "v1beta1"), "v1"), (("v1alpha3", "v1beta1"), "v1beta1"), (("v1alpha2",), "v1alpha2"),
    (("v1beta1", "v1beta2"), "v1beta2"), (("v1", "v2"), "v2"), ((), "v1"),
])
def test_api_version_is_the_most_stable_served(small: Inventory, served: tuple[str, ...], expected: str) -> None:
    group = "gateway.networking.k8s.io"
    crd = CRD(f"tlsroutes.{group}", group, "TLSRoute", "tlsroutes", served, None, {})
    inv = dataclasses.replace(small, crds={crd.name: crd})
    assert inv.api_version(group, "TLSRoute") == f"{group}/{expected}"


def test_secret_metadata_kept_values_not(small: Inventory) -> None:
    secret = small.get("Secret", "istio-system", "cacerts")
    assert secret is not None
    assert "data" not in secret.raw and "stringData" not in secret.raw


def test_demo_report(demo_inventory: Inventory) -> None:
    report = json.loads(json.dumps(demo_inventory.report()))
    assert report["source"] == "demo"
    assert report["control_plane"]["revisions"] == [
        {"revision": "1-27", "version": "1.27.3", "namespace": "istio-system", "istiod_pods": 2, "ready_pods": 2,
         "tags": ["default"]}]
    assert report["visibility"] == {"forbidden": [], "not_installed": ["gateway-api"], "not_visible": []}
    namespaces = {n["name"]: n for n in report["namespaces"]}
    assert set(namespaces["shop"]) == {"name", "injection", "revision", "pods", "pods_with_sidecar"}
    shop = namespaces["shop"]
    assert (shop["injection"], shop["revision"]) == ("sidecar", "1-27")
    # One shop pod predates injection: it carries no sidecar.
    assert shop["pods_with_sidecar"] == shop["pods"] - 1
    assert namespaces["legacy"]["injection"] == "none" and namespaces["legacy"]["pods_with_sidecar"] == 0
    components = report["components"]
    assert all(set(c) == {"component", "plane", "kind", "namespace", "name"} for c in components)
    by_component: dict[str, list[dict]] = {}
    for c in components:
        by_component.setdefault(c["component"], []).append(c)
    assert len(by_component["istiod"]) == 2 and {c["plane"] for c in by_component["istiod"]} == {"control"}
    assert {"ingress-gateway", "istio-cni", "kiali", "prometheus", "grafana", "jaeger"} <= set(by_component)
    assert {c["plane"] for c in by_component["kiali"]} == {"addon"}
    # One `sidecar` entry per pod that carries one, and nothing for pods that are not Istio components.
    with_sidecar = sum(n["pods_with_sidecar"] for n in report["namespaces"])
    assert len(by_component["sidecar"]) == with_sidecar
    assert all(c["kind"] == "Pod" for c in components)
    assert len(components) <= report["counts"]["pods"]


# ---------------------------------------------------------------- in-memory change


def test_with_changes_applies_and_deletes(small: Inventory) -> None:
    relabelled = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tools",
                                                                        "labels": {"istio-injection": "enabled"}}}
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
          "metadata": {"name": "cart", "namespace": "shop"}, "spec": {"host": "cart"}}
    new_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug", "namespace": "tools"},
               "spec": {"containers": [{"name": "sh", "image": "busybox:1.36"}]}}
    changed = small.with_changes(apply=[relabelled, dr], pods=[new_pod],
                                 delete=[Ref("Service", "shop", "cart"), Ref("Pod", "shop", "cart-v1-7f8d9c-old01")])
    assert changed.namespaces["tools"].injection == "sidecar"
    assert changed.get("DestinationRule", "shop", "cart") is not None
    assert changed.service("shop", "cart") is None
    assert changed.pod("shop", "cart-v1-7f8d9c-old01") is None
    assert changed.pod("tools", "debug") is not None
    # The original is untouched.
    assert small.namespaces["tools"].injection == "none" and small.service("shop", "cart") is not None
    assert small.get("DestinationRule", "shop", "cart") is None and len(small.pods) == 4
    # Replacing an object keeps one copy of it.
    again = changed.with_changes(apply=[{**dr, "spec": {"host": "cart.shop.svc.cluster.local"}}])
    (only,) = again.of_kind("DestinationRule")
    assert only.spec["host"] == "cart.shop.svc.cluster.local"


def _pod_manifest(name: str, namespace: str | None, image: str) -> dict:
    meta = {"name": name} | ({"namespace": namespace} if namespace else {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "c", "image": image}]}}


def test_with_changes_a_pod_applied_replaces_the_pod(small: Inventory) -> None:
    old = small.pods[0]
    changed = small.with_changes(apply=[_pod_manifest(old.name, old.namespace, "busybox:1.36")])
    assert len(changed.pods) == len(small.pods)
    (pod,) = [p for p in changed.pods if (p.namespace, p.name) == (old.namespace, old.name)]
    assert pod.spec.containers[0].image == "busybox:1.36"
    again = changed.with_changes(apply=[_pod_manifest(old.name, old.namespace, "busybox:1.37")])
    assert len(again.pods) == len(small.pods)
    assert again.pod(old.namespace, old.name).spec.containers[0].image == "busybox:1.37"


def test_with_changes_a_pod_without_namespace_replaces_the_one_in_default(small: Inventory) -> None:
    once = small.with_changes(pods=[_pod_manifest("debug", None, "busybox:1.36")])
    twice = once.with_changes(pods=[_pod_manifest("debug", None, "busybox:1.37")])
    assert [(p.namespace, p.spec.containers[0].image) for p in twice.pods if p.name == "debug"] == [
        ("default", "busybox:1.37")]
    named = twice.with_changes(pods=[_pod_manifest("debug", "default", "busybox:1.38")])
    assert [p.spec.containers[0].image for p in named.pods if p.name == "debug"] == ["busybox:1.38"]
    assert named.with_changes(delete=[Ref("Pod", None, "debug")]).pod("default", "debug") is None


def test_with_changes_keeps_the_mesh_config_override() -> None:
    override = {"rootNamespace": "mesh-root"}
    inv = build_inventory(load_snapshot(str(FIXTURE)), mesh_config=override)
    changed = inv.with_changes(apply=[{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "new"}}])
    assert changed.mesh_configs == inv.mesh_configs == {"default": override}
    assert changed.root_namespace == "mesh-root"


# ---------------------------------------------------------------- live == files


def test_live_inventory_equals_the_snapshot_of_the_same_objects(tmp_path: Path, monkeypatch,
                                                                 demo_inventory: Inventory) -> None:
    objects = [o for p in sorted((Path(__file__).parents[2] / "cluster" / "demo").glob("*.yaml"))
               for o in yaml.safe_load_all(p.read_text()) if o]
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    with serve(objects) as cluster:
        write_kubeconfig(tmp_path / "kubeconfig", {"demo": cluster.url}, "demo")
        live_inventory = build_inventory(load_snapshot("context:demo"))
    live = live_inventory.report()
    files = demo_inventory.report()
    assert live.pop("source") == "context:demo" and files.pop("source") == "demo"
    assert live == files
    assert live_inventory.mesh_configs == demo_inventory.mesh_configs


# ---------------------------------------------------------------- CLI


def test_cli_json_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inventory", "--source", str(FIXTURE), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["control_plane"]["revisions"][0]["ready_pods"] == 1
    assert {"source", "control_plane", "namespaces", "components", "visibility"} <= set(report)
    assert main(["inventory", "--source", str(FIXTURE)]) == 0
    table = capsys.readouterr().out
    assert "CONTROL PLANE" in table and "istiod-1-27-6d5c9b7f4-abcde" in table


def test_cli_malformed_snapshot_is_an_error_not_a_traceback(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": ')
    assert main(["inventory", "--source", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: malformed JSON" in err
    assert "Traceback" not in err


def test_gc_paused_restores_the_collector_as_it_found_it():
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        with gc_paused():  # nested: the inner pause leaves it to the outer one
            pass
        assert not gc.isenabled()
        raise RuntimeError("a check failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled(), "a collector paused by the caller stays paused"
    finally:
        gc.enable()


def test_pods_of_one_owner_share_a_summary_only_when_equal(tmp_path: Path) -> None:
    def pod(name: str, image: str = "shop:1", annotations: dict | None = None, account: str = "shop") -> dict:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "shop", "labels": {"app": "shop", "pod-template-hash": "h1"},
                             "annotations": annotations or {"team": "a"},
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "shop-h1",
                                                  "controller": True, "uid": "u"}]},
                "spec": {"nodeName": f"node-{name}", "serviceAccountName": account,
                         "containers": [{"name": "shop", "image": image}]}}

    pods = [pod("a"), pod("b"), pod("c", image="shop:2"), pod("d", annotations={"team": "b"}),
            pod("e", account="other")]
    path = tmp_path / "pods.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
    inv = build_inventory(load_snapshot(str(path)))
    by_name = {p.name: p for p in inv.pods}
    assert by_name["a"].spec is by_name["b"].spec  # equal: one summary
    assert by_name["a"].node != by_name["b"].node  # what is the pod's own stays its own
    for p in pods:  # each pod's summary is what it alone makes
        alone = tmp_path / f"{p['metadata']['name']}.json"
        alone.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [p]}))
        [only] = build_inventory(load_snapshot(str(alone))).pods
        assert by_name[only.name].spec == only.spec
    assert len({id(p.spec) for p in inv.pods}) == 4


# ---------------------------------------------------------------- with_changes decodes only what changes


def _rebuilt(inv, apply=(), delete=(), pods=()):
    """What with_changes must give: the inventory built again from every object, the changes made to its parts."""
    from cluster import decode
    from cluster.inventory import _key, assemble
    from cluster.kubectl_apply import stored

    gone = {(r.kind, r.namespace, r.name) for r in delete}
    applied = {_key(o): stored(o) for o in apply if o.get("kind") != "Pod"}
    old_pods, raw = inv.parts()
    raw = [o for o in raw if _key(o) not in gone | applied.keys()] + list(applied.values())
    new = {(p.namespace, p.name): p for p in (decode.pod_of(o) for o in [*pods, *(o for o in apply
                                                                                 if o.get("kind") == "Pod")])}
    gone_pods = {(r.namespace or "default", r.name) for r in delete if r.kind == "Pod"}
    kept = [p for p in old_pods if (p.namespace, p.name) not in new.keys() | gone_pods]
    return assemble(inv.source, inv.cluster, inv.visibility, inv.mesh_networks, kept + list(new.values()), raw,
                    inv.mesh_override)


def _changes(inv):
    """One change of each sort a stage makes: a workload's template, a namespace's labels, the mesh config, a
    new Istio object, a Service deleted, a pod restarted; and nothing at all."""
    import copy

    from cluster.model import Ref

    deployment = copy.deepcopy(inv.of_kind("Deployment")[-1].raw)
    deployment["spec"]["template"]["metadata"].setdefault("annotations", {})["sidecar.istio.io/inject"] = "false"
    ns = copy.deepcopy(next(n for n in inv.of_kind("Namespace") if n.name not in ("kube-system",)).raw)
    ns["metadata"]["labels"] = {**ns["metadata"].get("labels", {}), "istio-injection": "enabled"}
    mesh = copy.deepcopy(next(c for c in inv.of_kind("ConfigMap") if c.name.startswith("istio") and "mesh" in
                              (c.raw.get("data") or {})).raw)
    mesh["data"]["mesh"] = "defaultConfig:\n  holdApplicationUntilProxyStarts: true\n"
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
          "metadata": {"name": "new-vs", "namespace": ns["metadata"]["name"]},
          "spec": {"hosts": ["x"], "http": [{"route": [{"destination": {"host": "x"}}]}]}}
    svc = inv.of_kind("Service")[-1]
    pod = inv.pods[-1]
    restarted = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod.name + "-new", "namespace": pod.namespace,
                                                                 "labels": dict(pod.labels)},
                 "spec": {"containers": [{"name": "app", "image": "app:2"}]}}
    return [{}, {"apply": [deployment]}, {"apply": [ns]}, {"apply": [mesh]}, {"apply": [vs]},
            {"delete": [Ref("Service", svc.namespace, svc.name), Ref("Pod", pod.namespace, pod.name)]},
            {"pods": [restarted]}, {"apply": [deployment, ns, mesh, vs], "delete": [Ref("Service", svc.namespace,
                                                                                           svc.name)]}]


def test_with_changes_is_the_inventory_built_again(demo_inventory):
    from benchmarks.synthetic import synthetic_cluster
    from tests.features.corpus import _inventory

    for inv in (demo_inventory, _inventory("synthetic", synthetic_cluster(300, 80, 40, seed=2))):
        assert inv.components and inv.pods_by_namespace and inv._pods_by_label and inv._by_key  # indexes kept
        for change in _changes(inv):
            got, want = inv.with_changes(**change), _rebuilt(inv, **change)
            assert (got.pods_by_namespace, got._pods_by_label) == (want.pods_by_namespace, want._pods_by_label)
            assert got._by_key == want._by_key
            assert (got.namespaces, got.pods, got.services, got.workloads, got.objects, got.crds, got.mesh_configs,
                    got.visibility) == (want.namespaces, want.pods, want.services, want.workloads, want.objects,
                                        want.crds, want.mesh_configs, want.visibility), change
            assert got.components == want.components and got.revisions == want.revisions


def test_recognising_the_pods_of_overlay_after_overlay_keeps_little_and_stays_right() -> None:
    """An inventory the app keeps is overlaid again and again (each rehearsal restarts pods, new pod specs): the
    components each overlay recognises are those of the same inventory built afresh, and what recognising them keeps
    does not grow with the overlays (at most twice the pods, each spec kept with its result, so that the identity
    it is found by is its own)."""
    from cluster.inventory import assemble

    inv = build_inventory(load_snapshot("demo"))
    specs = [p.spec for p in inv.pods]
    for turn in range(1, 9):  # each pod restarted with a copy of another's spec: what it is recognised as changes
        restarted = [dataclasses.replace(p, spec=dataclasses.replace(specs[(i + turn) % len(specs)]))
                     for i, p in enumerate(inv.pods)]
        inv = inv.with_changes(pods=restarted)
        pods, raw = inv.parts()
        afresh = assemble(inv.source, inv.cluster, inv.visibility, inv.mesh_networks, pods, raw, inv.mesh_override)
        assert inv.components == afresh.components and inv.components
        memo = inv._recognised
        assert len(memo) <= 2 * len(inv.pods), turn
        assert all(key == id(spec) for key, (spec, _hit) in memo.items())
