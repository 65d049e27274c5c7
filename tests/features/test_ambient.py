"""Ambient mode and the Gateway API, on tests/fixtures/ambient (ztunnel, istio-cni, the Gateway API v1.3.0 CRDs from
../shared; ledger ambient with a waypoint and an HTTPRoute, store ambient without one, orders on sidecars, web not
in the mesh) and on the demo (no ztunnel, no Gateway API)."""
from __future__ import annotations

import copy
import json

import pytest
import yaml

from analysis import base as analysis
from analysis.ambient import waypoint_for
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from features._gate import render_gated
from features.base import Refused, apply, registry, validate_object, validate_params
from features.invariants import as_run
from planner import plan
from tests.features.corpus import ambient
from tests.rehearsal import rehearse_to_done, runner

TRAFFIC = ("ingress-gateway", "request-routing", "traffic-shifting", "timeouts-retries")


@pytest.fixture(scope="module")
def cluster() -> Inventory:
    return ambient()


def codes(msgs) -> list[str]:
    return [m.code for m in msgs]


# ---------------------------------------------------------------- which API


@pytest.mark.parametrize(("scope", "api"), [("ledger", "gateway-api"), ("store", "gateway-api"), ("orders", "istio"),
                                            ("web", "gateway-api")])
def test_the_default_api_is_read_from_the_cluster(cluster, scope, api):
    """ledger routes with an HTTPRoute, store is ambient, orders has VirtualServices (extended, never doubled by
    an HTTPRoute), web is new on a cluster that uses the Gateway API."""
    from features._gateway_api import default_api

    assert default_api(cluster, scope) == api


def test_without_gateway_api_use_a_sidecar_namespace_stays_on_istio_apis(cluster):
    from features._gateway_api import default_api

    unused = cluster.with_changes(delete=[r.ref for r in cluster.of_kind("HTTPRoute")])
    assert default_api(unused, "web") == "istio"
    assert default_api(unused, "store") == "gateway-api"  # ambient: waypoints read HTTPRoutes


def test_the_demo_without_gateway_api_crds_renders_istio_apis_and_refuses_gateway_api(demo_inventory):
    rendered = registry()["request-routing"].render({}, "payments", demo_inventory)
    assert {o["kind"] for o in rendered.objects} <= {"VirtualService", "DestinationRule"}
    with pytest.raises(MeshstepError, match="does not serve the Gateway API"):
        registry()["request-routing"].render({"api": "gateway-api"}, "payments", demo_inventory)


@pytest.mark.parametrize("fid", TRAFFIC)
def test_gateway_api_renderings_validate_detect_and_roll_back(cluster, fid):
    """Each traffic feature as Gateway API objects in ledger (ambient, with its waypoint): through the gate and
    the invariants (render_gated: nothing lost, rollback exact), valid against the v1.3.0 CRD schemas, detected,
    and gone again after the rollback."""
    feature = registry()[fid]
    before = cluster
    for dep in feature.depends_on:  # request-routing before traffic-shifting
        if not any(o.scope == "ledger" for o in registry()[dep].detect(before)):
            before = apply(registry()[dep].render({}, "ledger", before), before)
    rendered, _ = render_gated(feature, {"api": "gateway-api"}, "ledger", before)
    kinds = {o["kind"] for o in rendered.objects}
    assert kinds & {"HTTPRoute", "Gateway"} and not kinds & {"VirtualService", "DestinationRule"}, kinds
    for o in rendered.objects:
        validate_object(o, before)
    after = apply(rendered, before)
    assert any(o.scope == "ledger" for o in feature.detect(after))
    off = apply(feature.rollback({"api": "gateway-api"}, "ledger", after), after)
    assert not any(o.scope == "ledger" for o in feature.detect(off)) or any(
        o.scope == "ledger" for o in feature.detect(before))


def test_validation_uses_the_gateway_api_crd_schema(cluster):
    route = copy.deepcopy(cluster.get("HTTPRoute", "ledger", "accounts").raw)
    route["spec"]["rules"][0]["retry"] = {"attempts": 3}  # experimental channel only, not in v1.3.0 standard
    with pytest.raises(MeshstepError, match=r"rules\[0\]\.retry: unknown field"):
        validate_object(route, cluster)


def test_an_existing_httproute_is_extended_not_replaced(cluster):
    """accounts' HTTPRoute keeps its label, parent and 5s request timeout; the release changes its backends."""
    before = apply(registry()["request-routing"].render({}, "ledger", cluster), cluster)
    rendered = registry()["traffic-shifting"].render({"weight": 20}, "ledger", before)
    (route,) = [o for o in rendered.objects if o["kind"] == "HTTPRoute"]
    assert route["metadata"]["name"] == "accounts" and route["metadata"]["labels"]["team"] == "finance"
    assert route["spec"]["parentRefs"] == [{"group": "", "kind": "Service", "name": "accounts", "port": 8080}]
    (rule,) = route["spec"]["rules"]
    assert rule["timeouts"] == {"request": "5s"}
    assert rule["backendRefs"] == [{"name": "accounts-v1", "port": 8080, "weight": 80},
                                   {"name": "accounts-v2", "port": 8080, "weight": 20}]
    # the version Services select the service's pods of one version each
    v2 = before.service("ledger", "accounts-v2")
    assert v2.selector == {"app": "accounts", "version": "v2"}
    assert [p.name for p in before.pods_of_service(v2)] == ["accounts-v2-8d9e1f-fghij"]


def test_header_release_adds_a_tester_rule_before_the_default(cluster):
    before = apply(registry()["request-routing"].render({}, "ledger", cluster), cluster)
    rendered = registry()["traffic-shifting"].render({"strategy": "header"}, "ledger", before)
    (route,) = [o for o in rendered.objects if o["kind"] == "HTTPRoute"]
    tester, default = route["spec"]["rules"]
    assert tester["matches"] == [{"headers": [{"name": "x-canary", "value": "true"}]}]
    assert tester["backendRefs"] == [{"name": "accounts-v2", "port": 8080}]
    assert tester["timeouts"] == default["timeouts"] == {"request": "5s"}  # the rule's own settings go with it
    assert [o.params for o in registry()["traffic-shifting"].detect(apply(rendered, before))] == [
        {"strategy": "header"}]


def test_timeouts_under_gateway_api_say_retries_are_not_in_the_standard_channel(cluster):
    feature = registry()["timeouts-retries"]
    rendered = feature.render({"timeout": "30s"}, "ledger", cluster)
    (route,) = rendered.objects
    # no backendRequest by default: without retries it would cap every request at per_try_timeout (issue 25)
    assert route["spec"]["rules"][0]["timeouts"] == {"request": "30s"}
    assert any("no HTTPRoute retries" in n for n in rendered.notes)
    with pytest.raises(MeshstepError, match="not a Gateway API duration"):
        feature.render({"timeout": "1.5s"}, "ledger", cluster)
    with pytest.raises(MeshstepError, match="must not exceed"):
        feature.render({"timeout": "1s", "per_try_timeout": "3s"}, "ledger", cluster)


def test_fault_injection_has_no_gateway_api_equivalent(cluster):
    feature = registry()["fault-injection"]
    with pytest.raises(MeshstepError, match="Gateway API has no fault injection"):
        feature.render({"abort_status": 503}, "ledger", cluster)
    rendered = feature.render({"abort_status": 503, "api": "istio"}, "ledger", cluster)
    assert [o["kind"] for o in rendered.objects] == ["VirtualService"]


def test_ingress_under_gateway_api_is_a_gateway_of_class_istio_with_an_attached_route(cluster):
    rendered = registry()["ingress-gateway"].render({"host": "web.example.com"}, "web", cluster)
    gw, route = rendered.objects
    assert gw["kind"] == "Gateway" and gw["spec"]["gatewayClassName"] == "istio"
    assert gw["spec"]["listeners"] == [{"name": "http", "hostname": "web.example.com", "port": 80,
                                        "protocol": "HTTP"}]
    assert route["spec"]["parentRefs"] == [{"name": gw["metadata"]["name"]}]
    after = apply(rendered, cluster)
    assert [o.params for o in registry()["ingress-gateway"].detect(after) if o.scope == "web"] == [
        {"host": "web.example.com"}]


# ---------------------------------------------------------------- ambient mode and waypoints


def test_the_waypoint_is_what_istioctl_waypoint_apply_creates(cluster):
    rendered = registry()["waypoint"].render({}, "store", cluster)
    gw, ns = rendered.objects
    assert gw["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert gw["spec"] == {"gatewayClassName": "istio-waypoint",
                          "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}
    assert ns["metadata"]["labels"]["istio.io/use-waypoint"] == "waypoint"
    # per service: the Service is labelled, not the namespace
    gw, svc = registry()["waypoint"].render({"service": "catalog"}, "store", cluster).objects
    assert svc["kind"] == "Service" and svc["metadata"]["labels"] == {"istio.io/use-waypoint": "waypoint"} | {
        k: v for k, v in svc["metadata"]["labels"].items() if k != "istio.io/use-waypoint"}
    after = apply(registry()["waypoint"].render({"service": "catalog"}, "store", cluster), cluster)
    assert [o.evidence for o in registry()["waypoint"].detect(after) if o.scope == "store"] == [
        ["Gateway store/waypoint", "Service store/catalog"]]


def test_the_waypoint_gate_fires_for_l7_config_without_a_waypoint(cluster):
    """orders (sidecars) has subset routing: moving it to ambient would silently drop it, so the gate refuses
    until a waypoint serves it."""
    feature = registry()["ambient-mode"]
    with pytest.raises(Refused) as refused:
        render_gated(feature, {}, "orders", cluster)
    found = {(m.code, str(m.ref)) for m in refused.value.findings}
    # its routes would be applied by nobody: MST0706 for each object, MST0816 for the Service they route
    assert found == {("MST0706", "VirtualService orders/orders"), ("MST0706", "DestinationRule orders/orders"),
                     ("MST0816", "Service orders/orders")}
    # a waypoint alone serves the VirtualService only as Alpha: its routes must be an HTTPRoute first
    waypoint_only = apply(registry()["waypoint"].render({}, "orders", cluster), cluster)
    with pytest.raises(Refused) as refused:
        render_gated(feature, {}, "orders", waypoint_only)
    assert [(m.code, str(m.ref)) for m in refused.value.findings] == [("MST0816", "Service orders/orders")]
    migrated = apply(registry()["ambient-policies"].render({}, "orders", cluster), cluster)
    with_waypoint = apply(registry()["waypoint"].render({}, "orders", migrated), migrated)
    rendered, msgs = render_gated(feature, {}, "orders", with_waypoint)
    assert "MST0706" not in codes(msgs)
    # the restart brings orders' pods back without sidecars, captured by istio-cni
    after = apply(rendered, with_waypoint).with_changes(
        pods=feature.restarted_pods({}, "orders", apply(rendered, with_waypoint)))
    pods = after.pods_by_namespace["orders"]
    assert pods and all(p.sidecar is None and after.in_mesh(p) for p in pods)


def test_an_l7_policy_in_an_ambient_namespace_is_an_error_ztunnel_would_deny(cluster):
    policy = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
              "metadata": {"name": "catalog-readers", "namespace": "store"},
              "spec": {"selector": {"matchLabels": {"app": "catalog"}},
                       "rules": [{"from": [{"source": {"namespaces": ["store"]}}],
                                  "to": [{"operation": {"methods": ["GET"], "ports": ["9080"]}}]}]}}

    def mst0707(inv):
        return [m for m in analysis.run(analysis.analyze_checks(), analysis.Context(inv)) if m.code == "MST0707"]

    assert mst0707(cluster) == []  # store's own policy is L4 only
    (m,) = mst0707(cluster.with_changes(apply=[policy]))
    assert m.level == "error" and str(m.ref) == "AuthorizationPolicy store/catalog-readers"
    assert "to.operation.methods" in m.message and "no waypoint serves store" in m.message
    # bound to a waypoint with targetRefs, the waypoint enforces it: no finding
    bound = copy.deepcopy(policy)
    del bound["spec"]["selector"]
    bound["spec"]["targetRefs"] = [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}]
    assert mst0707(cluster.with_changes(apply=[bound])) == []
    # in a sidecar namespace the sidecar evaluates L7: no finding
    in_orders = copy.deepcopy(policy) | {"metadata": {"name": "x", "namespace": "orders"}}
    assert mst0707(cluster.with_changes(apply=[in_orders])) == []


def test_on_the_demo_ambient_mode_says_what_stops_applying(demo_inventory):
    """The demo has no ztunnel (MST0703), and shop's subset routing would stop applying (MST0706)."""
    with pytest.raises(Refused) as refused:
        render_gated(registry()["ambient-mode"], {}, "shop", demo_inventory)
    found = {(m.code, str(m.ref)) for m in refused.value.findings}
    assert ("MST0703", "Namespace istio-system") in found
    assert ("MST0706", "VirtualService shop/reviews") in found


# ---------------------------------------------------------------- templates


def test_the_ambient_install_stage_gives_the_missing_parts_install_commands(demo_inventory):
    """The demo runs istio-cni with AMBIENT_ENABLED "false", an istiod without PILOT_ENABLE_AMBIENT, and no ztunnel:
    ambient is not installed. The stage is not done; its gate does not refuse the install it is there to do (the
    missing parts are its commands); its commands are the guide's Helm upgrades of what lacks the profile and the
    install of ztunnel."""
    feature = registry()["ambient-install"]
    assert feature.detect(demo_inventory) == []
    assert [m for m in feature.checks(demo_inventory, "mesh", {}) if m.level == "error"] == []
    commands = [n for n in feature.notes({}, "mesh", demo_inventory, False) if not n.startswith("#")]
    assert commands == ["helm upgrade istiod istio/istiod -n istio-system --reuse-values --set profile=ambient --wait",
                        "helm upgrade istio-cni istio/cni -n istio-system --set profile=ambient --wait",
                        "helm install ztunnel istio/ztunnel -n istio-system --wait"]
    (crds, stage, *_) = plan.new_plan("ambient-first", demo_inventory).stages
    assert crds.title == "Before you begin: the Gateway API CRDs" and not crds.done  # the demo serves none
    assert stage.title == "Install and verify ztunnel and istio-cni" and not stage.done
    # what the commands leave (a rehearsal applies it): ambient installed, nothing left to install
    after = demo_inventory.with_changes(apply=feature.commanded({}, "mesh", demo_inventory))
    assert [o.feature for o in feature.detect(after)] == ["ambient-install"]
    assert feature.commanded({}, "mesh", after) == []
    assert [n for n in feature.notes({}, "mesh", after, False) if not n.startswith("#")] == []


def test_an_ambient_first_plan_judges_the_nodes_by_the_installed_releases_kubernetes(demo_inventory):
    """Istio 1.27.3 supports Kubernetes 1.29 to 1.33 (istio.io's supported releases): getting started on nodes at
    1.29 is not warned of (it was, against the migration guide's 1.31–1.35); nodes at 1.28 are, and pass (a
    warning)."""
    def gates(kubelet: str) -> list[plan.GateResult]:
        nodes = []
        for node in demo_inventory.of_kind("Node"):
            raw = copy.deepcopy(node.raw)
            raw["status"]["nodeInfo"]["kubeletVersion"] = kubelet
            nodes.append(raw)
        inv = demo_inventory.with_changes(apply=nodes)
        return [plan.gate(s, inv) for s in plan.new_plan("ambient-first", inv).stages[:2]]

    assert [[m.code for m in g.messages if m.code == "MST0710"] for g in gates("v1.29.4")] == [[], []]
    for g in gates("v1.28.15"):
        assert g.passed
        [m] = [m for m in g.messages if m.code == "MST0710"]
        assert (m.level, m.message) == ("warning", "nodes node-a, node-b, node-c run Kubernetes v1.28.15; Istio "
                                        "1.27.3 supports Kubernetes 1.29 to 1.33 (https://istio.io/latest/docs/"
                                        "releases/supported-releases/#support-status-of-istio-releases)")


def test_ztunnel_running_without_the_ambient_profile_is_not_ambient_installed(demo_inventory):
    """ztunnel runs, but istio-cni's AMBIENT_ENABLED is "false" and istiod lacks PILOT_ENABLE_AMBIENT: ambient-install
    does not say "nothing to install", and ambient-mode is refused with MST0708 for each."""
    feature = registry()["ambient-install"]
    made = feature.commanded({}, "mesh", demo_inventory)
    ztunnel_only = demo_inventory.with_changes(apply=[o for o in made if o["kind"] in ("DaemonSet", "Pod")])
    assert feature.detect(ztunnel_only) == []
    notes = feature.notes({}, "mesh", ztunnel_only, False)
    assert not any("nothing to install" in n for n in notes)
    assert [n for n in notes if n.startswith("helm")] == [
        "helm upgrade istiod istio/istiod -n istio-system --reuse-values --set profile=ambient --wait",
        "helm upgrade istio-cni istio/cni -n istio-system --set profile=ambient --wait"]
    with pytest.raises(Refused) as refused:
        render_gated(registry()["ambient-mode"], {}, "legacy", ztunnel_only)
    assert {(m.code, str(m.ref)) for m in refused.value.findings} >= {
        ("MST0708", "ConfigMap istio-system/istio-cni-config"), ("MST0708", "Deployment istio-system/istiod-1-27")}
    assert "MST0703" not in codes(refused.value.findings)  # ztunnel and istio-cni run


def rehearse(template: str, inv: Inventory, namespaces: list[str]) -> tuple[list[plan.StageSpec], Inventory]:
    """Each stage's steps through their gate and the invariants, applied in order on the overlay (with the pods
    their restarts bring back); detection sees each step on once applied."""
    stages = plan.new_plan(template, inv, namespaces).stages
    for stage in (s for s in stages if not s.done):
        for step in stage.steps:
            feature = registry()[step.feature]
            rendered, msgs = render_gated(feature, step.params, step.scope, inv)
            assert not [m for m in msgs if m.level == "error"]
            applied = inv.with_changes(apply=rendered.objects, delete=rendered.delete)
            inv = applied.with_changes(pods=feature.restarted_pods(step.params, step.scope, applied))
            assert any(o.scope == step.scope for o in feature.detect(inv)), (stage.title, step)
    return stages, inv


def test_ambient_first_takes_a_new_namespace_to_authorization(cluster):
    stages, after = rehearse("ambient-first", cluster, ["web"])
    assert [s.title for s in stages] == [
        "Before you begin: the Gateway API CRDs", "Install and verify ztunnel and istio-cni",
        "Move web to ambient mode", "See the traffic: metrics, traces, access logs", "Deploy a waypoint for web",
        "Route requests by version with HTTPRoutes", "Release with weighted HTTPRoutes",
        "mTLS STRICT in web", "Authorization in web"]
    assert stages[0].done and stages[1].done  # the fixture serves the Gateway API and runs ztunnel and istio-cni
    assert "mutual TLS" in stages[2].goal and "at once" in stages[2].goal
    assert after.namespaces["web"].injection == "ambient"
    assert all(after.in_mesh(p) for p in after.pods_by_namespace["web"])
    # routing went in as HTTPRoutes (one per service with version labels), served by web's waypoint
    assert {r.name for r in after.of_kind("HTTPRoute") if r.namespace == "web"} == {"shop", "cart"}
    assert not [vs for vs in after.of_kind("VirtualService") if vs.namespace == "web"]
    assert waypoint_for(after, "web", after.service("web", "shop")).name == "waypoint"


def test_on_the_demo_ambient_first_installs_the_gateway_api_crds_before_its_waypoints(demo_inventory):
    """The demo serves no Gateway API, which a waypoint is written in: the CRDs are the plan's first stage (as
    istio.io's ambient getting started installs them), so that every namespace's waypoint is planned, not left
    out."""
    draft = plan.new_plan("ambient-first", demo_inventory)
    assert [(s.feature, s.scope) for s in draft.stages[0].steps] == [("gateway-api-crds", "mesh")]
    assert not draft.stages[0].done
    assert not [lo for lo in draft.left_out if lo.feature == "waypoint"]
    assert {s.scope for st in draft.stages for s in st.steps if s.feature == "waypoint"} == {
        "legacy", "payments", "shop"}


def test_on_the_demo_ambient_first_moves_shop_behind_its_waypoint(demo_inventory):
    """shop runs sidecars that route reviews by DestinationRule subsets, which moving it with no waypoint would drop
    (MST0706, whose hint is to deploy a waypoint first): as istio.io's migration guide orders it, its routes become
    an HTTPRoute at its waypoint, the waypoint is activated, then shop moves, then its sidecar-only config goes.
    legacy and payments, with nothing a waypoint must serve, move at once (the guide skips the policies where there
    are none; said so) and get their waypoints after the metrics, as a new namespace does."""
    draft = plan.new_plan("ambient-first", demo_inventory)
    assert [[(s.feature, s.scope) for s in st.steps] for st in draft.stages][:11] == [
        [("gateway-api-crds", "mesh")], [("ambient-install", "mesh")],
        [("ambient-mode", "legacy")], [("ambient-mode", "payments")],
        [("ambient-policies", "shop")], [("waypoint", "shop")], [("ambient-mode", "shop")],
        [("ambient-cleanup", "shop")],
        [("metrics", "mesh"), ("tracing", "mesh"), ("access-logging", "mesh")],
        [("waypoint", "legacy")], [("waypoint", "payments")]]
    assert [s.title for s in draft.stages[4:8]] == [
        "Migrate shop's policies to its waypoint", "Activate a waypoint for shop before it leaves sidecars",
        "Move shop to ambient mode", "Clean up shop's sidecar-only config"]
    assert {(lo.feature, lo.scope) for lo in draft.left_out if lo.feature == "ambient-policies"} == {
        ("ambient-policies", "legacy"), ("ambient-policies", "payments")}
    # each step is planned once: shop's waypoint is not deployed again after its move
    steps = [(s.feature, s.scope) for st in draft.stages for s in st.steps]
    assert len(steps) == len(set(steps))


def test_a_namespace_whose_destination_rules_need_a_waypoint_gets_it_before_its_move(demo_inventory):
    """Without shop's VirtualService ambient-policies has nothing to move there, but reviews' subsets and ratings'
    connection pool would stop applying in the move (MST0706): shop's waypoint alone comes before it, and every
    stage up to the move passes its gate, applied in turn with what its commands install."""
    inv = demo_inventory.with_changes(delete=[vs.ref for vs in demo_inventory.of_kind("VirtualService")
                                              if vs.namespace == "shop"])
    stages = plan.new_plan("ambient-first", inv).stages
    titles = [s.title for s in stages]
    move = titles.index("Move shop to ambient mode")
    assert titles[move - 1] == "Activate a waypoint for shop before it leaves sidecars"
    assert not {"Migrate shop's policies to its waypoint", "Clean up shop's sidecar-only config"} & set(titles)
    for stage in stages[:move + 1]:
        for step in stage.steps:
            feature = registry()[step.feature]
            rendered, _ = render_gated(feature, step.params, step.scope, inv)  # Refused where a gate fails
            inv = as_run(feature, validate_params(feature, step.params), step.scope, apply(rendered, inv))
    assert all(p.sidecar is None and inv.in_mesh(p) for p in inv.pods_by_namespace["shop"])


def test_on_the_demo_ambient_first_is_rehearsed_to_done_from_the_cli(tmp_path, monkeypatch, capsys):
    """`plan new --template ambient-first` on the demo, then `plan advance --rehearse` to done with no gate
    overridden: shop's move is not stopped by MST0706, its waypoint serving its routes by then."""
    from app.cli import main

    monkeypatch.setenv("MESHSTEP_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("MESHSTEP_ACTOR", "alice")
    assert main(["plan", "new", "--template", "ambient-first", "--name", "p", "--source", "demo"]) == 0
    capsys.readouterr()
    rehearse_to_done(runner(capsys), "p", "--source", "demo")


def test_sidecar_to_ambient_deploys_the_waypoint_before_switching(cluster):
    stages, after = rehearse("sidecar-to-ambient", cluster, ["orders"])
    assert [[(s.feature, s.scope) for s in st.steps] for st in stages] == [
        [("gateway-api-crds", "mesh")], [("ambient-install", "mesh")], [("ambient-policies", "orders")],
        [("waypoint", "orders")], [("ambient-mode", "orders")], [("ambient-cleanup", "orders")]]
    assert stages[0].done and stages[1].done  # the fixture serves the Gateway API and runs ambient
    labels = after.namespaces["orders"].labels
    assert labels["istio.io/dataplane-mode"] == "ambient" and "istio.io/rev" not in labels
    assert not [p for p in after.pods_by_namespace["orders"] if p.sidecar is not None]
    # its routes keep applying, as an HTTPRoute at the waypoint
    assert not [vs for vs in after.of_kind("VirtualService") if vs.namespace == "orders"]
    assert {r.name for r in after.of_kind("HTTPRoute") if r.namespace == "orders"} == {"orders"}
    assert [m for m in analysis.run(analysis.gate_checks("ambient-mode"), analysis.Context(after, "orders"))
            if m.code == "MST0706"] == []


# ---------------------------------------------------------------- explain


def test_explain_names_the_ztunnel_the_hbone_port_and_the_waypoint_of_each_service(cluster):
    from explain.report import explain

    (e,) = explain(cluster, "ledger/accounts-v1-6f7c9d-abcde").subjects
    assert "its traffic goes through ztunnel istio-system/ztunnel-7xk2p on node node-1" in e.facts
    assert ("L7 traffic to Service ledger/accounts goes through waypoint ledger/waypoint "
            "(istio.io/use-waypoint=waypoint, HBONE port 15008)") in e.facts
    (e,) = explain(cluster, "store/catalog-v1-1a2b3c-pqrst").subjects
    assert "no waypoint: it gets L4 features only (mTLS, L4 AuthorizationPolicy, TCP metrics)" in e.facts
    # a label naming a waypoint the cluster does not have is said, not taken for one
    labelled = cluster.with_changes(apply=[registry()["waypoint"].build(
        {"service": "catalog", "name": "waypoint"}, "store", cluster)[1]])
    (e,) = explain(labelled, "store/catalog-v1-1a2b3c-pqrst").subjects
    assert any("Service store/catalog is labelled istio.io/use-waypoint=waypoint, and no such waypoint" in f
               for f in e.facts)
    (z,) = explain(cluster, "ztunnel").subjects
    assert any(p.port == 15008 and "HBONE" in p.protocol for p in z.component.ports)
    assert {(link.peer, link.port) for link in z.links} >= {("waypoint", 15008), ("istiod", 15012)}


def test_routing_in_an_ambient_namespace_waits_for_its_waypoint(cluster):
    """A waypoint stands in for sidecar-injection: routing in store (ambient, no waypoint) is gated until one is
    there, and the gate says which."""
    feature = registry()["request-routing"]
    (m,) = [m for m in feature.checks(cluster, "store", {}) if m.code == "MST0003"]
    assert "nor waypoint, which stands in for it" in m.message
    with_waypoint = apply(registry()["waypoint"].render({}, "store", cluster), cluster)
    assert [m for m in feature.checks(with_waypoint, "store", {}) if m.code == "MST0003"] == []


@pytest.mark.parametrize(("template", "namespace"), [("ambient-first", "web"), ("sidecar-to-ambient", "orders")])
def test_the_ambient_templates_are_rehearsed_to_done_from_the_cli(template, namespace, tmp_path, monkeypatch, capsys):
    """`plan advance --rehearse` walks each template to done on the plan's overlay, no gate overridden; the
    source is the fixture as a snapshot directory (the demo's control plane, the Gateway API CRDs, the fixture)."""
    import shutil

    from app.cli import main
    from tests.features.corpus import AMBIENT, GATEWAY_API_CRDS, control_plane

    snap = tmp_path / "cluster"
    snap.mkdir()
    (snap / "control-plane.yaml").write_text(yaml.safe_dump_all(control_plane(ambient=True)))
    for f in [*sorted(GATEWAY_API_CRDS.glob("*.yaml")), AMBIENT]:
        shutil.copy(f, snap / f.name)
    monkeypatch.setenv("MESHSTEP_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("MESHSTEP_ACTOR", "alice")
    source = ["--source", str(snap)]
    assert main(["plan", "new", "--template", template, "--namespaces", namespace, "--name", "p", *source]) == 0
    capsys.readouterr()
    rehearse_to_done(runner(capsys), "p", *source)
    assert main(["plan", "show", "--name", "p", "--format", "json", *source]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["complete"] and {s["status"] for s in shown["stages"]} == {"done"}
