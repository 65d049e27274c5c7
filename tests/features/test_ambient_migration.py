"""istio.io's sidecar-to-ambient migration guide (docs/ambient/migrate/) as the `sidecar-to-ambient` template: its
phases in order, each step's prerequisites, and the demo (sidecars, no Gateway API CRDs, istio-cni without the
ambient profile, no ztunnel) rehearsed to done."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import kubernetes_validate
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis import base as analysis
from analysis.ambient import MIGRATED_FROM, waypoint_for
from analysis.enforcement import decide, requests, routing
from cluster.inventory import Inventory
from cluster.model import Ref
from cluster.revisions import manifest
from features._gate import render_gated
from features.base import Refused, apply, registry, validate_object, validate_params
from features.invariants import as_run
from planner import plan
from tests.deploy.test_deploy import KUBERNETES_VERSION
from tests.features.corpus import _istio, control_plane, generated, migration, running
from tests.kubectl import kubectl

GUIDE = "https://istio.io/latest/docs/ambient/migrate/"


@pytest.fixture
def cli(run, tmp_path, monkeypatch):
    monkeypatch.setenv("MESHSTEP_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("MESHSTEP_ACTOR", "alice")
    return run


def test_the_template_follows_the_guides_phases_and_leaves_nothing_out_for_the_crds(demo_inventory):
    """The demo does not serve the Gateway API: installing the CRDs is the plan's first stage, and every waypoint
    that needs them stays in the plan (the old template left them all out and kept the switches). Per namespace,
    the guide's order: the waypoint before the switch."""
    draft = plan.new_plan("sidecar-to-ambient", demo_inventory)
    # only the policy migration of namespaces that have nothing for a waypoint, said so
    assert [(lo.feature, lo.scope) for lo in draft.left_out] == [("ambient-policies", "legacy"),
                                                                 ("ambient-policies", "payments")], GUIDE
    assert all("needs a waypoint" in lo.reason for lo in draft.left_out)
    assert [[(s.feature, s.scope) for s in st.steps] for st in draft.stages] == [
        [("gateway-api-crds", "mesh")], [("ambient-install", "mesh")], [("ambient-policies", "shop")],
        [("waypoint", "legacy")], [("ambient-mode", "legacy")], [("ambient-cleanup", "legacy")],
        [("waypoint", "payments")], [("ambient-mode", "payments")], [("ambient-cleanup", "payments")],
        [("waypoint", "shop")], [("ambient-mode", "shop")], [("ambient-cleanup", "shop")]]
    assert not any(st.done for st in draft.stages)


def test_the_crd_stage_installs_the_standard_channel_and_rolls_back(demo_inventory):
    feature = registry()["gateway-api-crds"]
    assert feature.detect(demo_inventory) == []
    (command,) = [n for n in feature.notes({}, "mesh", demo_inventory, False) if not n.startswith("#")]
    assert command.endswith("kubectl apply --server-side -f https://github.com/kubernetes-sigs/gateway-api/releases/"
                            "download/v1.3.0/standard-install.yaml")
    assert any(n.startswith("kubectl delete -f") for n in feature.notes({}, "mesh", demo_inventory, True))
    after = demo_inventory.with_changes(apply=feature.commanded({}, "mesh", demo_inventory))
    assert [o.feature for o in feature.detect(after)] == ["gateway-api-crds"]
    assert after.api_version("gateway.networking.k8s.io", "HTTPRoute") == "gateway.networking.k8s.io/v1"
    assert feature.commanded({}, "mesh", after) == []


def _gate(inv: Inventory, feature: str) -> list[tuple[str, str]]:
    return [(m.code, m.level) for m in _messages(inv, feature)]


def _messages(inv: Inventory, feature: str) -> list[analysis.Message]:
    return analysis.run(analysis.gate_checks(feature), analysis.Context(inv, "mesh"))


def _values(inv: Inventory, feature: str, code: str) -> list[str]:
    """What the cluster filled in of a code's message (analysis.catalog.Filled): shown as data, cut alone."""
    (m,) = [m for m in _messages(inv, feature) if m.code == code]
    return [t for t, value in getattr(m.message, "parts", ()) if value]


def _node_at(inv: Inventory, kubelet: str) -> tuple[str, Inventory]:
    node = json.loads(json.dumps(next(iter(inv.of_kind("Node"))).raw))
    node["status"]["nodeInfo"]["kubeletVersion"] = kubelet
    return node["metadata"]["name"], inv.with_changes(apply=[node])


def _istiod_at(inv: Inventory, version: str) -> Inventory:
    """istiod's pods running another image: the installed version is read from what runs."""
    pods = []
    for pod in (p for p in inv.pods if p.labels.get("app") == "istiod"):
        raw = manifest(pod, dict(pod.labels), dict(pod.annotations))
        for c in raw["spec"]["containers"]:
            c["image"] = c["image"].replace(":1.27.3", f":{version}")
        pods.append(raw)
    return inv.with_changes(pods=pods)


@pytest.mark.parametrize("feature", ["gateway-api-crds", "ambient-install"])
def test_nodes_are_judged_against_the_installed_releases_kubernetes_range(demo_inventory, feature):
    """It warned of Kubernetes 1.29 under Istio 1.27.3, which supports 1.29 to 1.33 (istio.io's supported
    releases): the migration guide's 1.31–1.35 is the latest release's range, not the installed one's."""
    assert demo_inventory.istio_version == "1.27.3"
    _, supported = _node_at(demo_inventory, "v1.29.4")
    assert [c for c in _gate(supported, feature) if c[0] == "MST0710"] == []
    name, older = _node_at(demo_inventory, "v1.28.15")
    assert ("MST0710", "warning") in _gate(older, feature)
    (m,) = [m for m in _messages(older, feature) if m.code == "MST0710"]
    assert m.message == (f"node {name} runs Kubernetes v1.28.15; Istio 1.27.3 supports Kubernetes 1.29 to 1.33 "
                         "(https://istio.io/latest/docs/releases/supported-releases/#support-status-of-istio-releases)")
    assert _values(older, feature, "MST0710") == [name, "v1.28.15", "1.27.3", "1.29", "1.33",
                                                   "https://istio.io/latest/docs/releases/supported-releases/"
                                                   "#support-status-of-istio-releases"]


@pytest.mark.parametrize("feature", ["gateway-api-crds", "ambient-install"])
def test_nodes_that_report_no_kubelet_version_are_said_so_not_passed_silently(demo_inventory, feature):
    """MST0710 skipped them (the install gate's MST0910 said so): it judged the nodes it could and passed the rest."""
    silent, older = (json.loads(json.dumps(n.raw)) for n in list(demo_inventory.of_kind("Node"))[:2])
    del silent["status"]["nodeInfo"]["kubeletVersion"]
    name = silent["metadata"]["name"]
    unreported = demo_inventory.with_changes(apply=[silent])
    (m,) = [m for m in _messages(unreported, feature) if m.code == "MST0710"]
    assert (m.level, m.ref) == ("warning", Ref("Node", None, name))
    assert m.message == (f"node {name} reports no kubelet version: whether Istio 1.27.3 supports its Kubernetes is "
                         "unknown")
    assert "Istio 1.27.3 supports (1.29 to 1.33: " in m.hint  # the range to compare it with
    older["status"]["nodeInfo"]["kubeletVersion"] = "v1.28.15"  # another node outside the range: said as well
    assert sorted(str(m.ref) for m in _messages(unreported.with_changes(apply=[older]), feature)
                  if m.code == "MST0710") == sorted([f"Node {name}", f"Node {older['metadata']['name']}"])


@pytest.mark.parametrize("feature", ["gateway-api-crds", "ambient-install"])
def test_a_source_without_nodes_is_said_so_not_passed_silently(demo_inventory, feature):
    """MST0710 judged no node and said nothing (the install gate's MST0910 said so): a snapshot without Node
    objects cannot show the Kubernetes the release runs on."""
    nodeless = demo_inventory.with_changes(delete=[n.ref for n in demo_inventory.of_kind("Node")])
    assert not nodeless.of_kind("Node")
    (m,) = [m for m in _messages(nodeless, feature) if m.code == "MST0710"]
    assert (m.level, m.ref) == ("warning", Ref("Namespace", None, nodeless.root_namespace))
    assert m.message == "no node is in the source: whether Istio 1.27.3 supports the cluster's Kubernetes is unknown"
    assert "Istio 1.27.3 supports (1.29 to 1.33: " in m.hint  # the range to compare `kubectl get nodes` with


def test_an_installed_release_meshstep_has_no_kubernetes_range_for_is_warned_of(demo_inventory):
    newer = _istiod_at(demo_inventory, "1.40.1")
    assert newer.istio_version == "1.40.1"
    (m,) = [m for m in _messages(newer, "ambient-install") if m.code == "MST0710"]
    assert (m.level, m.ref.kind) == ("warning", "Namespace")
    assert m.message == ("Istio 1.40.1 is newer than the releases whose supported Kubernetes versions meshstep knows "
                         "(1.20 to 1.29): whether it supports the nodes' Kubernetes (v1.33.5) is unknown")


def test_the_guides_prerequisites_gate_the_first_stages(demo_inventory):
    """Istio 1.27.3 and Kubernetes 1.33 pass; an Istio older than ambient GA (1.24) is refused."""
    assert _gate(demo_inventory, "gateway-api-crds") == []
    older = _istiod_at(demo_inventory, "1.22.3")
    assert older.istio_version == "1.22.3"
    assert ("MST0709", "error") in _gate(older, "gateway-api-crds")
    assert _values(older, "gateway-api-crds", "MST0709") == ["1.22.3"]


def _cilium(inv: Inventory, exclusive: str | None) -> Inventory:
    """Cilium's agents as its Helm chart installs them, and its cilium-config with cni-exclusive (None: no config
    read, as a live read shows it: meshstep reads Istio's ConfigMaps alone)."""
    where = {"namespace": "kube-system"}
    agent = {"name": "cilium-agent", "image": "quay.io/cilium/cilium:v1.18.2"}
    agents = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "cilium", **where},
              "spec": {"selector": {"matchLabels": {"k8s-app": "cilium"}},
                       "template": {"metadata": {"labels": {"k8s-app": "cilium"}}, "spec": {"containers": [agent]}}}}
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cilium-config", **where},
              "data": {"cluster-name": "default", **({"cni-exclusive": exclusive} if exclusive else {})}}
    return inv.with_changes(apply=[agents] + ([config] if exclusive is not None else []))


def test_cilium_must_leave_istio_cni_its_config(demo_inventory):
    """istio.io's ambient platform prerequisites: Cilium deletes other CNI plugins' config unless cni.exclusive is
    false (its default is true). Seen true (or unset): the install is refused; not seen: a warning with the command
    that tells; false: nothing."""
    assert not {c for c, _ in _gate(demo_inventory, "ambient-install")} & {"MST0730", "MST0731"}
    assert ("MST0730", "error") in _gate(_cilium(demo_inventory, "true"), "ambient-install")
    assert _values(_cilium(demo_inventory, "true"), "ambient-install", "MST0730") == ["DaemonSet kube-system/cilium"]
    assert ("MST0730", "error") in _gate(_cilium(demo_inventory, ""), "ambient-install")  # unset: Cilium's default
    unseen = _messages(_cilium(demo_inventory, None), "ambient-install")
    assert [(m.code, m.level) for m in unseen if m.code.startswith("MST073")] == [("MST0731", "warning")]
    assert "cni-exclusive" in str(next(m.hint for m in unseen if m.code == "MST0731"))
    assert not {c for c, _ in _gate(_cilium(demo_inventory, "false"), "ambient-install")} & {"MST0730", "MST0731"}


def _on_nodes(inv: Inventory, labels: dict[str, str], kubelet: str | None = None, name: str | None = None) -> Inventory:
    nodes = []
    for n in inv.of_kind("Node"):
        raw = json.loads(json.dumps(n.raw))
        raw["metadata"]["labels"].update(labels)
        if kubelet:
            raw["status"]["nodeInfo"]["kubeletVersion"] = kubelet
        if name:
            raw["metadata"]["name"] = raw["metadata"]["labels"]["kubernetes.io/hostname"] = f"{name}-{n.name}"
        nodes.append(raw)
    return inv.with_changes(apply=nodes, delete=[n.ref for n in inv.of_kind("Node")] if name else [])


@pytest.mark.parametrize("labels,kubelet,name,platform", [
    ({"cloud.google.com/gke-nodepool": "default-pool"}, None, None, "gke"),
    ({}, "v1.33.4+k3s1", None, "k3s"),
    ({}, "v1.33.4+k3s1", "k3d-dev-server", "k3d"),
    ({"minikube.k8s.io/name": "minikube"}, None, None, "minikube"),
    ({"microk8s.io/cluster": "true"}, None, None, "microk8s"),
    ({"node.openshift.io/os_id": "rhcos"}, None, None, "openshift"),
])
def test_the_install_commands_set_the_platform_the_nodes_are_on(demo_inventory, labels, kubelet, name, platform):
    """istio.io's ambient platform prerequisites: istio-cni and ztunnel are installed with global.platform where the
    platform keeps CNI paths elsewhere; the demo (plain nodes) sets none."""
    feature = registry()["ambient-install"]
    plain = [n for n in feature.notes({}, "mesh", demo_inventory, False) if n.startswith("helm")]
    assert not any("global.platform" in n for n in plain)
    inv = _on_nodes(demo_inventory, labels, kubelet, name)
    commands = [n for n in feature.notes({}, "mesh", inv, False) if n.startswith("helm")]
    assert [n for n in commands if "istio/cni" in n or "istio/ztunnel" in n] == [
        n.replace(" --wait", f" --set global.platform={platform} --wait")
        for n in plain if "istio/cni" in n or "istio/ztunnel" in n]
    assert (feature.build({}, "mesh", inv) != []) == (platform == "gke")


def test_on_gke_the_install_stage_admits_node_critical_pods_in_istio_system(demo_inventory, tmp_path):
    """On GKE, system-node-critical pods (ztunnel, istio-cni) outside kube-system need a ResourceQuota that admits
    them: the stage applies the one istio.io shows, valid against the API server's schema; none when one is there."""
    feature = registry()["ambient-install"]
    gke = _on_nodes(demo_inventory, {"cloud.google.com/gke-nodepool": "default-pool"})
    (quota,) = feature.build({}, "mesh", gke)
    assert (quota["kind"], quota["metadata"]["namespace"]) == ("ResourceQuota", "istio-system")
    assert quota["spec"]["scopeSelector"]["matchExpressions"] == [
        {"operator": "In", "scopeName": "PriorityClass", "values": ["system-node-critical"]}]
    kubernetes_validate.validate(quota, KUBERNETES_VERSION, strict=True)
    (tmp_path / "quota.yaml").write_text(feature.render({}, "mesh", gke).yaml)
    with kubectl(tmp_path) as dry_run:
        code, output = dry_run(tmp_path / "quota.yaml")
    assert code == 0 and "resourcequota/gcp-critical-pods created (dry run)" in output, output
    assert feature.build({}, "mesh", gke.with_changes(apply=[quota])) == []
    installed = gke.with_changes(apply=feature.commanded({}, "mesh", gke))
    assert feature.build({}, "mesh", installed) == []  # nothing left to install: nothing to admit


def test_the_demo_migration_rehearses_to_done(cli):
    """`meshstep plan new --template sidecar-to-ambient` then `meshstep plan rehearse`: every gate, invariant and
    exit check runs on the overlay, none overridden."""
    rc, out, err = cli("plan", "new", "--template", "sidecar-to-ambient", "--source", "demo")
    assert rc == 0, err
    assert "does not serve the Gateway API" not in out and "left out: " not in out
    rc, out, err = cli("plan", "rehearse", "--source", "demo")
    assert rc == 0, (out, err)
    assert out.rstrip().endswith("plan sidecar-to-ambient is complete: every stage is done"), out


# ---------------------------------------------------------------- walking the migration on the overlay


def walk(inv: Inventory, namespaces: list[str]) -> list[tuple[plan.StageSpec, Inventory]]:
    """The template's stages through their gate and invariants (render_gated), applied in turn on the overlay with
    what their commands make and the pods their restarts bring back: each stage with the cluster it leaves."""
    out = []
    for stage in (s for s in plan.new_plan("sidecar-to-ambient", inv, namespaces).stages if not s.done):
        for step in stage.steps:
            feature = registry()[step.feature]
            rendered, _ = render_gated(feature, step.params, step.scope, inv)
            inv = as_run(feature, validate_params(feature, step.params), step.scope, apply(rendered, inv))
            assert any(o.scope == step.scope for o in feature.detect(inv)), (stage.title, step)
        out.append((stage, inv))
    return out


def unchanged(before: Inventory, after: Inventory) -> list[str]:
    """The requests of `before` decided otherwise on `after`, and the Services whose L7 routes changed or lost
    whoever applied them."""
    diff = [f"{r}: {decide(before, r)} → {decide(after, r)}" for r in requests(before)
            if decide(before, r) != decide(after, r)]
    now = routing(after)
    return diff + [f"{svc}: {who} → {now.get(svc, ((), 'nobody'))[1]}" for svc, (rules, who) in routing(before).items()
                   if now.get(svc, ((), "nobody"))[0] != rules or now.get(svc, ((), "nobody"))[1].startswith("nobody")]


@pytest.fixture(scope="module")
def demo_walk(demo_inventory) -> tuple[Inventory, list[tuple[plan.StageSpec, Inventory]]]:
    return demo_inventory, walk(demo_inventory, plan.default_namespaces(demo_inventory))


def test_shops_canary_is_an_httproute_served_by_its_waypoint_before_its_sidecars_go(demo_walk):
    start, stages = demo_walk
    titles = [s.title for s, _ in stages]
    switch = titles.index("Switch shop to ambient mode")
    before_switch = stages[switch - 1][1]
    assert not [vs for vs in before_switch.of_kind("VirtualService") if vs.namespace == "shop" and vs.name == "reviews"]
    (route,) = [r for r in before_switch.of_kind("HTTPRoute") if r.namespace == "shop"]
    assert route.spec["parentRefs"] == [{"group": "", "kind": "Service", "name": "reviews", "port": 9080}]
    assert route.spec["rules"] == [{"backendRefs": [{"name": "reviews-v1", "port": 9080, "weight": 100}]}]
    assert before_switch.service("shop", "reviews-v1").selector == {"app": "reviews", "version": "v1"}
    assert waypoint_for(before_switch, "shop", before_switch.service("shop", "reviews")).name == "waypoint"
    assert any(p.sidecar is not None for p in before_switch.pods_by_namespace["shop"])  # sidecars still there
    after = stages[switch][1]
    assert all(p.sidecar is None and after.in_mesh(p) for p in after.pods_by_namespace["shop"])
    assert routing(after)["shop", "reviews"] == (routing(start)["shop", "reviews"][0], "waypoint shop/waypoint")


def test_the_invariant_holds_after_every_stage_of_the_demo(demo_walk):
    start, stages = demo_walk
    assert len(requests(start)) >= 90
    for stage, inv in stages:
        assert unchanged(start, inv) == [], stage.title


def test_switching_shop_without_migrating_its_routes_is_refused(demo_inventory):
    """With the CRDs, ambient and shop's waypoint active but its VirtualService left as it is, the switch would
    leave the canary to a waypoint that reads VirtualServices only as Alpha: MST0816 refuses it."""
    inv = demo_inventory
    for fid, scope in (("gateway-api-crds", "mesh"), ("ambient-install", "mesh"), ("waypoint", "shop")):
        feature = registry()[fid]
        inv = as_run(feature, {}, scope, apply(feature.render({}, scope, inv), inv))
    with pytest.raises(Refused) as refused:
        render_gated(registry()["ambient-mode"], {}, "shop", inv)
    (m,) = [m for m in refused.value.findings if m.code == "MST0816"]
    assert str(m.ref) == "Service shop/reviews" and "Alpha" in m.message


# ---------------------------------------------------------------- the corpus cluster: conversions and blockers


@pytest.fixture(scope="module")
def bank() -> Inventory:
    return migration()


def test_bank_policies_become_waypoint_objects(bank, tmp_path):
    """accounts' VirtualService is an HTTPRoute (a Service per subset, the header match, the weights, the timeout
    and the mirror kept) and is deleted; its L7 AuthorizationPolicy and RequestAuthentication, and audit's L4 one
    that checks the callers' namespace (behind the waypoint ztunnel would see the waypoint's), are copied onto what
    the waypoint serves (targetRefs), the originals kept for the sidecars and narrowed to pods with one, and ztunnel
    allows the waypoint where they allowed some callers; the DestinationRule is left as it is. Every object is
    valid against the Gateway API v1.3.0 and Istio CRD schemas and kubectl's client-side dry run."""
    rendered, _ = render_gated(registry()["ambient-policies"], {}, "bank", bank)
    by = {(o["kind"], o["metadata"]["name"]): o for o in rendered.objects}
    assert set(by) == {("Gateway", "waypoint"), ("Service", "accounts-v1"), ("Service", "accounts-v2"),
                       ("HTTPRoute", "accounts"), ("AuthorizationPolicy", "accounts-readers-waypoint"),
                       ("RequestAuthentication", "accounts-jwt-waypoint"), ("AuthorizationPolicy", "accounts-readers"),
                       ("RequestAuthentication", "accounts-jwt"), ("AuthorizationPolicy", "audit-callers"),
                       ("AuthorizationPolicy", "audit-callers-waypoint"),
                       ("AuthorizationPolicy", "accounts-readers-from-waypoint"),
                       ("AuthorizationPolicy", "audit-callers-from-waypoint")}
    assert by["AuthorizationPolicy", "audit-callers"]["spec"]["selector"] == {
        "matchLabels": {"app": "audit", "security.istio.io/tlsMode": "istio"}}
    # bound to every Service that reaches accounts' pods: the version Services are addressable too
    assert [str(r) for r in rendered.delete] == ["VirtualService bank/accounts"]
    route = by["HTTPRoute", "accounts"]
    assert route["metadata"]["labels"]["team"] == "core-banking"
    testers, default = route["spec"]["rules"]
    assert testers == {"matches": [{"headers": [{"name": "x-tester", "type": "Exact", "value": "yes"}]}],
                       "backendRefs": [{"name": "accounts-v2", "port": 8080}]}
    assert default["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert default["backendRefs"] == [{"name": "accounts-v1", "port": 8080, "weight": 90},
                                      {"name": "accounts-v2", "port": 8080, "weight": 10}]
    assert default["timeouts"] == {"request": "5s"}
    assert default["filters"] == [{"type": "RequestMirror", "requestMirror": {
        "backendRef": {"name": "audit", "port": 8080}, "percent": 10}}]
    policy = by["AuthorizationPolicy", "accounts-readers-waypoint"]["spec"]
    assert policy["targetRefs"] == [{"group": "", "kind": "Service", "name": n}
                                    for n in ("accounts", "accounts-v1", "accounts-v2")] and "selector" not in policy
    assert by["RequestAuthentication", "accounts-jwt-waypoint"]["spec"]["targetRefs"] == policy["targetRefs"]
    for o in rendered.objects:
        validate_object(o, bank)
    path = tmp_path / "bank.yaml"
    path.write_text(rendered.yaml)
    with kubectl(tmp_path) as dry_run:
        code, output = dry_run(path)
    assert code == 0, output
    # the rollback brings the VirtualService back as it was
    after = apply(rendered, bank)
    back = apply(registry()["ambient-policies"].rollback({}, "bank", after), after)
    assert back.get("VirtualService", "bank", "accounts").raw == bank.get("VirtualService", "bank", "accounts").raw
    assert not [r for r in back.of_kind("HTTPRoute") if r.namespace == "bank"]


def test_edge_blockers_are_named_with_codes(bank):
    """An EnvoyFilter (ignored by waypoints), a Sidecar's egress limits (no Sidecar in ambient) and retries and a
    fault (no standard-channel HTTPRoute field) are blockers: the policy migration and the switch are refused, each
    with its code, and nothing is converted with them dropped."""
    with pytest.raises(Refused) as refused:
        render_gated(registry()["ambient-policies"], {}, "edge", bank)
    found = {(m.code, str(m.ref)) for m in refused.value.findings}
    assert found >= {("MST0720", "EnvoyFilter edge/add-header"), ("MST0721", "Sidecar edge/default"),
                     ("MST0722", "VirtualService edge/gateway-api")}
    (m,) = [m for m in refused.value.findings if m.code == "MST0722"]
    assert "http[0].retries" in m.message and "http[0].fault" in m.message
    draft = plan.new_plan("sidecar-to-ambient", bank, ["edge"])
    assert [lo.feature for lo in draft.left_out] == ["ambient-policies"]
    assert "MST0722" in draft.left_out[0].reason


def test_bank_rehearses_to_ambient_with_every_decision_kept(bank):
    stages = walk(bank, ["bank"])
    assert [s.title for s, _ in stages][-4:] == ["Migrate bank's policies to its waypoint",
                                                  "Activate a waypoint for bank before it leaves sidecars",
                                                  "Switch bank to ambient mode", "Clean up bank's sidecar-only config"]
    for stage, inv in stages:
        assert unchanged(bank, inv) == [], stage.title
    end = stages[-1][1]
    # the selector-bound originals went in the clean-up; the waypoint copies decide now, ztunnel admits the waypoint
    assert end.get("AuthorizationPolicy", "bank", "accounts-readers") is None
    assert end.get("AuthorizationPolicy", "bank", "audit-callers") is None
    assert end.get("AuthorizationPolicy", "bank", "audit-callers-waypoint").spec["targetRefs"] == [
        {"group": "", "kind": "Service", "name": "audit"}]
    assert end.get("AuthorizationPolicy", "bank", "audit-callers-from-waypoint").spec["rules"] == [
        {"from": [{"source": {"principals": [WAYPOINT_SA]}}]}]
    teller = next(r for r in requests(bank) if r.principal == "cluster.local/ns/bank/sa/teller"
                  and r.service == ("bank", "accounts") and r.path == "/accounts/x" and r.method == "GET"
                  and r.token is None and r.header is None)
    assert decide(bank, teller) == decide(end, teller) == ("allow",)
    assert decide(end, replace(teller, token="invalid")) == ("deny",)  # the waypoint's RequestAuthentication


def test_switching_bank_before_its_policies_move_is_refused(bank):
    """A waypoint active but the L7 policy still bound by selector: ztunnel would deny everything to accounts,
    and no one would check the JWT: the switch is refused (MST0706 and MST0816), the enforcement never lapses."""
    inv = bank
    for fid, scope in (("ambient-install", "mesh"), ("waypoint", "bank")):
        feature = registry()[fid]
        inv = as_run(feature, {}, scope, apply(feature.render({}, scope, inv), inv))
    with pytest.raises(Refused) as refused:
        render_gated(registry()["ambient-mode"], {}, "bank", inv)
    codes = {m.code for m in refused.value.findings}
    assert {"MST0706", "MST0816"} <= codes


# ---------------------------------------------------------------- property: generated sidecar clusters

_REACHED: list[tuple[bool, bool]] = []  # (reached ambient, had a mesh-wide DENY by a client's principal)


@st.composite
def sidecar_clusters(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Sidecar namespaces on the demo's control plane: apps of one or two versions behind an HTTP Service, a mesh
    VirtualService splitting by subset (weights, a header match, a timeout) or none, and AuthorizationPolicies of
    every shape ztunnel and waypoints tell apart (L4 or L7, ALLOW or DENY, by selector or namespace-wide, checking
    the client's identity or not: behind a waypoint ztunnel sees the waypoint's), RequestAuthentications, Sidecar
    resources for the clean-up; and at times a mesh-wide DENY by a client's principal, which no waypoint copy can
    keep (a refused switch, never a lapse)."""
    namespaces = draw(st.lists(st.sampled_from(["north", "south"]), min_size=1, max_size=2, unique=True))
    objs: list[dict[str, Any]] = []
    for ns in namespaces:
        objs.append({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": ns, "labels": {"istio-injection": "enabled"}}})
        apps = draw(st.lists(st.sampled_from(["web", "api", "db"]), min_size=1, max_size=3, unique=True))
        for app in apps:
            versions = draw(st.sampled_from([["v1"], ["v1", "v2"]]))
            for v in versions:
                labels = {"app": app, "version": v}
                objs.append({"apiVersion": "apps/v1", "kind": "Deployment",
                             "metadata": {"name": f"{app}-{v}", "namespace": ns, "labels": labels},
                             "spec": {"selector": {"matchLabels": labels}, "template": {
                                 "metadata": {"labels": labels}, "spec": {"serviceAccountName": app, "containers": [
                                     {"name": app, "image": f"example/{app}:{v}",
                                      "ports": [{"containerPort": 8080}]}]}}}})
            objs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": app, "namespace": ns},
                         "spec": {"selector": {"app": app},
                                  "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]}})
            if len(versions) == 2 and draw(st.booleans()):
                objs += _routing(draw, ns, app)
        for i in range(draw(st.integers(0, 3))):
            objs.append(_policy(draw, ns, apps, namespaces, i))
        if draw(st.booleans()):  # sidecar-only config the clean-up removes: no sidecar reads it in ambient
            objs.append(_istio("networking.istio.io", "Sidecar", ns, "default", {
                "workloadSelector": {"labels": {"app": draw(st.sampled_from(apps))}}}))
        if draw(st.booleans()):
            app = draw(st.sampled_from(apps))
            objs.append(_istio("security.istio.io", "RequestAuthentication", ns, f"{app}-jwt", {
                "selector": {"matchLabels": {"app": app}},
                "jwtRules": [{"issuer": "https://id.example", "jwksUri": "https://id.example/jwks"}]}))
    if draw(st.integers(1, 5)) == 5:  # now and then (Hypothesis draws the least integers most)
        objs.append(_istio("security.istio.io", "AuthorizationPolicy", "istio-system", "mesh-deny", {
            "action": "DENY", "rules": [{"from": [{"source": {
                "principals": [f"cluster.local/ns/{draw(st.sampled_from(namespaces))}/sa/web"]}}]}]}))
    return [*control_plane(), *running(objs)]


def _routing(draw: st.DrawFn, ns: str, app: str) -> list[dict[str, Any]]:
    weight = draw(st.integers(0, 100))
    default: dict[str, Any] = {"route": [{"destination": {"host": app, "subset": "v1"}, "weight": weight},
                                         {"destination": {"host": app, "subset": "v2"}, "weight": 100 - weight}]}
    if draw(st.booleans()):
        default["timeout"] = draw(st.sampled_from(["1.5s", "10s"]))
    http = [default]
    if draw(st.booleans()):
        http.insert(0, {"match": [{"headers": {"x-canary": {"exact": "yes"}}}],
                        "route": [{"destination": {"host": app, "subset": "v2"}}]})
    return [_istio("networking.istio.io", "VirtualService", ns, app, {"hosts": [app], "http": http}),
            _istio("networking.istio.io", "DestinationRule", ns, app, {
                "host": app, "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")]})]


def _policy(draw: st.DrawFn, ns: str, apps: list[str], namespaces: list[str], i: int) -> dict[str, Any]:
    # the client identity checks a waypoint hides from the destination's ztunnel: principals, namespaces, their
    # negations, a source.principal condition
    principal = f"cluster.local/ns/{ns}/sa/{draw(st.sampled_from(apps))}"
    source = draw(st.sampled_from([
        {"namespaces": [draw(st.sampled_from(namespaces))]}, {"principals": [principal]},
        {"notPrincipals": [principal]}, {"notNamespaces": [draw(st.sampled_from(namespaces))]}, {}]))
    operation = draw(st.sampled_from([{}, {"methods": ["GET"]}, {"paths": ["/admin*"]},
                                      {"methods": ["POST"], "paths": ["/orders"]}]))
    rule: dict[str, Any] = {}
    if source:
        rule["from"] = [{"source": source}]
    elif draw(st.booleans()):
        rule["when"] = [{"key": "source.principal", "values": [principal]}]
    if operation:
        rule["to"] = [{"operation": operation}]
    spec: dict[str, Any] = {"action": draw(st.sampled_from(["ALLOW", "DENY"])), "rules": [rule]}
    if draw(st.booleans()):
        spec["selector"] = {"matchLabels": {"app": draw(st.sampled_from(apps))}}
    return _istio("security.istio.io", "AuthorizationPolicy", ns, f"policy-{i}", spec)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(sidecar_clusters())
def test_migration_stages_never_change_a_decision(objects):
    """For each generated cluster, the sidecar-to-ambient plan walked on its overlay: every stage that passes its
    gate and invariants leaves every request of the cluster as it was first (not only as the stage before left
    it) decided the same way, and every L7 route applied, by whichever proxy handles it now. A stage refused ends
    the walk (a refusal is never a lapse); most clusters without a mesh-wide DENY by a client's principal (which
    no waypoint copy can keep) reach ambient."""
    start = generated(objects)
    namespaces = [n for n in start.namespace_names() if n in ("north", "south")]
    inv, reached = start, True
    try:
        for stage, inv in walk(start, namespaces):
            assert unchanged(start, inv) == [], stage.title
    except Refused as e:
        reached = False
        assert e.findings or e.reason
    if reached:
        assert all(p.sidecar is None and inv.in_mesh(p) for ns in namespaces for p in inv.pods_by_namespace[ns])
    _REACHED.append((reached, any(o["metadata"]["name"] == "mesh-deny" for o in objects)))


def test_property_cases_counted(record_property):
    """Runs after the property test (same module, in order): how many generated clusters it walked, how many
    reached ambient, printed at the end of the run (tests/conftest.py)."""
    if not _REACHED:
        pytest.skip("the property test did not run in this process")
    reached = [r for r, _ in _REACHED]
    plain = [r for r, mesh_deny in _REACHED if not mesh_deny]
    record_property("summary", f"migration property cases (generated sidecar clusters walked to ambient): "
                               f"{len(_REACHED)} — {sum(reached)} reached ambient, "
                               f"{len(reached) - sum(reached)} stopped at a refused stage "
                               f"({len(_REACHED) - len(plain)} with a mesh-wide DENY by a client's principal)")
    assert sum(plain) >= len(plain) // 2


def test_an_l4_allow_moves_with_the_l7_allow_of_the_same_workload(bank):
    """A proxy evaluates its ALLOW policies as one union: an L4 ALLOW on accounts left at ztunnel while the L7
    ALLOW moves to the waypoint would deny at ztunnel what the waypoint allows (a caller of bank's, GET
    /accounts/x, allowed by the L7 policy alone). It moves too, and every decision is kept to the end."""
    l4 = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
          "metadata": {"name": "accounts-from-audit", "namespace": "bank"},
          "spec": {"selector": {"matchLabels": {"app": "accounts"}}, "action": "ALLOW",
                   "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/bank/sa/audit"]}}]}]}}
    inv = bank.with_changes(apply=[l4])
    rendered, _ = render_gated(registry()["ambient-policies"], {}, "bank", inv)
    names = {o["metadata"]["name"] for o in rendered.objects if o["kind"] == "AuthorizationPolicy"
             and MIGRATED_FROM in o["metadata"].get("annotations", {})}
    assert names == {"accounts-readers-waypoint", "accounts-from-audit-waypoint", "audit-callers-waypoint"}
    for stage, after in walk(inv, ["bank"]):
        assert unchanged(inv, after) == [], stage.title


def test_the_demo_migration_exports_for_gitops(cli, tmp_path):
    """A real plan (not a rehearsal) renders each stage on the cluster as the earlier stages' YAML and install
    commands leave it: the export has the policy migration's HTTPRoute, the VirtualService it deletes, and the
    rollback that brings the VirtualService back."""
    assert cli("plan", "new", "--template", "sidecar-to-ambient", "--source", "demo")[0] == 0
    rc, _, err = cli("plan", "export", str(tmp_path / "gitops"), "--source", "demo")
    assert rc == 0, err
    files = {p.name: p.read_text() for p in (tmp_path / "gitops").iterdir()}
    stage = "03-migrate-shop-s-policies-to-its-waypoint"
    assert "kind: HTTPRoute" in files[f"{stage}.yaml"]
    assert "kind: VirtualService" in files[f"{stage}.delete.yaml"]
    assert "kind: VirtualService" in files[f"{stage}.rollback.yaml"] and "subset: v1" in files[f"{stage}.rollback.yaml"]


# ---------------------------------------------------------------- the identity ztunnel sees behind a waypoint

WAYPOINT_SA = "cluster.local/ns/bank/sa/waypoint"  # istiod runs a waypoint under a service account of its name


def _policy_obj(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


TELLER_FROM_AUDIT = _policy_obj("bank", "teller-from-audit", {
    "selector": {"matchLabels": {"app": "teller"}}, "action": "ALLOW",
    "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/bank/sa/audit"]}}]}]})


def _switched_as_is(inv: Inventory, ns: str) -> Inventory:
    """ztunnel installed, the namespace's waypoint active and its pods restarted into ambient mode, with every
    policy left as it is (no migration, no gate): the cluster a team gets by skipping the policy migration."""
    for fid in ("ambient-install", "waypoint", "ambient-mode"):
        feature, scope = registry()[fid], "mesh" if fid == "ambient-install" else ns
        inv = as_run(feature, {}, scope, apply(feature.render({}, scope, inv, check=False), inv))
    return inv


def _request(inv: Inventory, principal: str, service: tuple[str, str]) -> Any:
    return next(r for r in requests(inv) if r.principal == principal and r.service == service
                and (r.method, r.path, r.header, r.token) == ("GET", "/", None, None))


def test_behind_a_waypoint_ztunnel_sees_the_waypoints_identity(bank):
    """istio.io (ambient L4 policy): with a waypoint in the path, the destination's ztunnel sees the waypoint's
    identity, not the client's. A selector-bound ALLOW of audit's principal then denies audit at teller; a
    namespace-based ALLOW of bank's own callers (audit-callers) lets edge's caller through the waypoint, which
    lives in bank."""
    inv = bank.with_changes(apply=[TELLER_FROM_AUDIT])
    audit = _request(inv, "cluster.local/ns/bank/sa/audit", ("bank", "teller"))
    edge = _request(inv, "cluster.local/ns/edge/sa/gateway-api", ("bank", "audit"))
    assert decide(inv, audit) == ("allow",) and decide(inv, edge) == ("deny",)
    after = _switched_as_is(inv, "bank")
    assert all(p.sidecar is None for p in after.pods_by_namespace["bank"])
    assert decide(after, audit) == ("deny",)  # ztunnel sees bank/sa/waypoint, not bank/sa/audit
    assert decide(after, edge) == ("allow",)  # bank/sa/waypoint is in bank
    from_waypoint = replace(audit, principal=WAYPOINT_SA, namespace="bank")
    assert decide(after.with_changes(apply=[_policy_obj("bank", "allow-waypoint", {
        "selector": {"matchLabels": {"app": "teller"}}, "action": "ALLOW",
        "rules": [{"from": [{"source": {"principals": [WAYPOINT_SA]}}]}]})]), audit) == ("allow",), from_waypoint


def test_the_migration_moves_client_checks_to_the_waypoint_and_allows_it_at_ztunnel(bank):
    """As istio.io recommends: the L4 policies that check the client's identity are copied onto the waypoint
    (targetRefs), and the destination's ztunnel allows the waypoint's service account in their place, for the
    workloads each ALLOW selected. Every decision is kept through the walk (before this, audit-callers let every
    namespace in once bank switched)."""
    inv = bank.with_changes(apply=[TELLER_FROM_AUDIT])
    rendered, _ = render_gated(registry()["ambient-policies"], {}, "bank", inv)
    by = {(o["kind"], o["metadata"]["name"]): o for o in rendered.objects}
    assert by["AuthorizationPolicy", "teller-from-audit-waypoint"]["spec"]["targetRefs"] == [
        {"group": "", "kind": "Service", "name": "teller"}]
    assert by["AuthorizationPolicy", "audit-callers-waypoint"]["spec"]["rules"] == [
        {"from": [{"source": {"namespaces": ["bank"]}}]}]
    assert by["AuthorizationPolicy", "teller-from-audit-from-waypoint"]["spec"] == {
        "selector": {"matchLabels": {"app": "teller"}}, "action": "ALLOW",
        "rules": [{"from": [{"source": {"principals": [WAYPOINT_SA]}}]}]}
    for o in rendered.objects:
        validate_object(o, inv)
    for stage, after in walk(inv, ["bank"]):
        assert unchanged(inv, after) == [], stage.title


def test_a_mesh_wide_deny_by_client_principal_is_refused_where_the_waypoint_would_void_it(bank):
    """A DENY in the root namespace by the client's principal is ztunnel's: behind bank's waypoint it would see
    bank/sa/waypoint and stop denying edge. The migration cannot move a mesh-wide policy onto one namespace's
    waypoint, so the switch is refused (MST0816), naming the request it would let through."""
    deny = _policy_obj("istio-system", "no-edge", {
        "action": "DENY", "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/edge/sa/gateway-api"]}}]}]})
    inv = bank.with_changes(apply=[deny])
    with pytest.raises(Refused) as refused:
        walk(inv, ["bank"])
    assert refused.value.feature == "ambient-mode"
    lapses = [m for m in refused.value.findings if m.code == "MST0816"]
    assert lapses and all("edge/sa/gateway-api" in m.message and "was deny" in m.message for m in lapses)


# ---------------------------------------------------------------- the seconds between the switch and the restarts


def test_no_decision_changes_while_the_switched_namespaces_pods_restart(bank):
    """Between the switch (namespace labelled, injection removed) and the restarts, pods keep their sidecars
    (istio.io: the sidecar takes precedence), and each restarted pod is ztunnel's at once. The selector-bound
    originals are narrowed to pods with a sidecar (security.istio.io/tlsMode, the injector's label) when the
    policies migrate and stay until the clean-up: in the window every request is decided as before, whichever
    pods have restarted (a pod's decision depends on its own state only, so both ends cover every mix)."""
    stages = walk(bank, ["bank"])
    titles = [s.title for s, _ in stages]
    before = stages[titles.index("Switch bank to ambient mode") - 1][1]
    feature = registry()["ambient-mode"]
    rendered, _ = render_gated(feature, {}, "bank", before)
    window = apply(rendered, before)  # labelled, nothing restarted yet
    assert all(p.sidecar is not None for p in window.pods_by_namespace["bank"])
    assert unchanged(bank, window) == []
    narrowed = window.get("AuthorizationPolicy", "bank", "accounts-readers")
    assert narrowed.spec["selector"]["matchLabels"] == {"app": "accounts", "security.istio.io/tlsMode": "istio"}
    done = as_run(feature, {}, "bank", window)
    assert not any("security.istio.io/tlsMode" in p.labels for p in done.pods_by_namespace["bank"])
    assert unchanged(bank, done) == []


def test_the_invariant_checks_the_window_before_the_restarts(bank):
    """A switch that deleted the selector-bound originals with the label (as it did) leaves the pods that have
    not restarted yet to sidecars without them: MST0816 names the window."""
    stages = walk(bank, ["bank"])
    titles = [s.title for s, _ in stages]
    before = stages[titles.index("Switch bank to ambient mode") - 1][1]
    feature = registry()["ambient-mode"]
    rendered = feature.render({}, "bank", before)
    early = replace(rendered, delete=(*rendered.delete, before.get("AuthorizationPolicy", "bank",
                                                                   "accounts-readers").ref))
    from features.invariants import check
    found = [m for m in check(feature, {}, "bank", before, early) if m.code == "MST0816"]
    assert found and any("before its pods restart" in m.message for m in found)


# ---------------------------------------------------------------- clean-up: the guide's step 5, as the last phase


def test_the_plan_ends_with_each_namespaces_clean_up(demo_inventory):
    draft = plan.new_plan("sidecar-to-ambient", demo_inventory)
    steps = [[(s.feature, s.scope) for s in st.steps] for st in draft.stages]
    for ns in ("legacy", "payments", "shop"):
        assert steps.index([("ambient-cleanup", ns)]) > steps.index([("ambient-mode", ns)])
    assert steps[-1] == [("ambient-cleanup", "shop")]


def test_the_demos_clean_up_deletes_the_subsets_only_the_old_route_used(demo_walk):
    """reviews' DestinationRule only held the subsets of the VirtualService that is now an HTTPRoute to version
    Services: deleted (istio.io: remove VirtualService and DestinationRule resources replaced by HTTPRoute).
    ratings' has a traffic policy, which waypoints apply: kept as it is."""
    start, stages = demo_walk
    (stage, end), = [(s, inv) for s, inv in stages if s.title == "Clean up shop's sidecar-only config"]
    assert end.get("DestinationRule", "shop", "reviews") is None
    assert end.get("DestinationRule", "shop", "ratings").raw == start.get("DestinationRule", "shop", "ratings").raw


def test_bank_clean_up_removes_what_only_sidecars_read_and_rolls_back(bank):
    """After bank's switch: the selector-bound originals the waypoint copies stand for, the subsets of accounts'
    DestinationRule (its connection pool stays: waypoints apply it) and a Sidecar resource go; what is deleted is
    kept in a backup ConfigMap (the guide's `kubectl apply -f istio-config-backup.yaml`), from which the rollback
    re-creates each object as it was. Every object is valid against the Istio CRD schemas."""
    sidecar = {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
               "metadata": {"name": "default", "namespace": "bank"},
               "spec": {"workloadSelector": {"labels": {"app": "teller"}}}}
    inv = bank.with_changes(apply=[sidecar])
    stages = walk(inv, ["bank"])
    assert [s.title for s, _ in stages][-1] == "Clean up bank's sidecar-only config"
    before, end = stages[-2][1], stages[-1][1]
    for kind, name in (("AuthorizationPolicy", "accounts-readers"), ("AuthorizationPolicy", "audit-callers"),
                       ("RequestAuthentication", "accounts-jwt"), ("Sidecar", "default")):
        assert before.get(kind, "bank", name) is not None and end.get(kind, "bank", name) is None, (kind, name)
    dr = end.get("DestinationRule", "bank", "accounts").spec
    assert "subsets" not in dr and dr["trafficPolicy"] == {"connectionPool": {"tcp": {"maxConnections": 50}}}
    feature = registry()["ambient-cleanup"]
    rendered, _ = render_gated(feature, {}, "bank", before)
    for o in rendered.objects:
        validate_object(o, before)
    back = apply(feature.rollback({}, "bank", end), end)
    for kind in ("AuthorizationPolicy", "RequestAuthentication", "Sidecar", "DestinationRule", "ConfigMap"):
        assert sorted(json.dumps(o.raw, sort_keys=True) for o in back.of_kind(kind) if o.namespace == "bank") == \
            sorted(json.dumps(o.raw, sort_keys=True) for o in before.of_kind(kind) if o.namespace == "bank"), kind


def test_clean_up_waits_for_the_switch(bank):
    """Before bank is in ambient mode the sidecars still read what the clean-up deletes: its gate says the switch
    is not done (MST0003), and nothing would be deleted."""
    with pytest.raises(Refused) as refused:
        render_gated(registry()["ambient-cleanup"], {}, "bank", bank)
    assert any(m.code == "MST0003" and "ambient-mode" in m.message for m in refused.value.findings)


def test_clean_up_waits_for_every_pod_to_restart(bank):
    """Switched but not restarted (the pods keep their sidecars, which still read the narrowed originals): the
    clean-up is refused with MST0723, each pod named."""
    stages = walk(bank, ["bank"])
    titles = [s.title for s, _ in stages]
    before = stages[titles.index("Switch bank to ambient mode") - 1][1]
    window = apply(registry()["ambient-mode"].render({}, "bank", before), before)
    with pytest.raises(Refused) as refused:
        render_gated(registry()["ambient-cleanup"], {}, "bank", window)
    assert {str(m.ref) for m in refused.value.findings if m.code == "MST0723"} == {
        f"Pod bank/{p.name}" for p in window.pods_by_namespace["bank"]}
