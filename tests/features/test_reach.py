"""Who a change reaches, and changes that pass the gate and still break traffic (issue 25, point 4), on the demo
with one object changed: each defect an Istio engineer found, reproduced before it was fixed."""
from __future__ import annotations

import copy

import pytest
import yaml

from analysis import effective
from cluster.inventory import Inventory
from features._gate import render_gated
from features.base import MESH, Refused, apply, registry
from tests.features.test_merges import changed, env_of, values


def dual_bound(inv: Inventory) -> Inventory:
    """frontend's VirtualService bound to the ingress gateway and to the mesh, its route without a match: what
    the mesh's sidecars and the internet's requests both take."""
    def edit(raw):
        raw["spec"]["gateways"] = ["shop-gateway", "mesh"]
        raw["spec"]["hosts"] = ["shop.example.com", "frontend"]
        raw["spec"]["http"][0].pop("match")
    return changed(inv, "VirtualService", "shop", "frontend", edit)


@pytest.fixture(scope="module")
def dual(demo_inventory) -> Inventory:
    return dual_bound(demo_inventory)


# ---------------------------------------------------------------- fault injection is scoped


def test_a_fault_on_an_ingress_bound_virtual_service_reaches_testers_in_the_mesh_only(dual):
    """istio.io's fault-injection task scopes the fault to a test user with a header match; here the route all
    users take keeps no fault, and the fault's route applies to the mesh's sidecars only."""
    rendered, msgs = render_gated(registry()["fault-injection"], {"service": "frontend"}, "shop", dual)
    (vs,) = rendered.objects
    fault_route, route = vs["spec"]["http"]
    assert "fault" not in route and route == dual.get("VirtualService", "shop", "frontend").spec["http"][0]
    assert fault_route["match"] == [{"headers": {"x-fault-test": {"exact": "true"}}, "gateways": ["mesh"]}]
    assert fault_route["route"] == route["route"] and fault_route["fault"]["delay"]["fixedDelay"] == "5s"
    assert any("reaches" in n and "x-fault-test" in n for n in rendered.notes)


def test_a_fault_for_ingress_traffic_is_an_explicit_choice(dual):
    rendered, _ = render_gated(registry()["fault-injection"], {"service": "frontend", "ingress": True}, "shop",
                               dual)
    fault_route = rendered.objects[0]["spec"]["http"][0]
    assert fault_route["match"] == [{"headers": {"x-fault-test": {"exact": "true"}}}]
    assert any("shop/shop-gateway" in n for n in rendered.notes)


def test_timeouts_that_reach_ingress_traffic_need_an_explicit_parameter(dual):
    """timeouts-retries aims at the mesh's calls; on a VirtualService the ingress gateway applies too, its routes'
    timeouts would reach the internet's requests: refused, with the parameter that means it."""
    with pytest.raises(Refused) as e:
        render_gated(registry()["timeouts-retries"], {"service": "frontend"}, "shop", dual)
    (m,) = [m for m in e.value.findings if m.code == "MST0815"]
    assert "shop/shop-gateway" in m.message and "ingress=true" in m.hint
    assert "VirtualService shop/" in values(m.message)
    rendered, _ = render_gated(registry()["timeouts-retries"], {"service": "frontend", "ingress": True}, "shop",
                               dual)
    assert rendered.objects[0]["spec"]["http"][0]["timeout"] == "10s"


# ---------------------------------------------------------------- timeouts and retries


def test_retries_default_to_istios_conditions_not_5xx(demo_inventory):
    rendered = registry()["timeouts-retries"].render({"service": "reviews"}, "shop", demo_inventory)
    (vs,) = rendered.objects
    assert vs["spec"]["http"][0]["retries"]["retryOn"] == (
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes")


def test_timeouts_say_which_routes_keep_their_own(demo_inventory):
    """A header route without a timeout and the default route with the team's 5s: the parameters at their defaults
    land on the first and not the second, and the rendering says so."""
    def edit(raw):
        default = raw["spec"]["http"][0]
        default["timeout"] = "5s"
        raw["spec"]["http"].insert(0, {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
                                       "route": copy.deepcopy(default["route"])})
    inv = changed(demo_inventory, "VirtualService", "shop", "reviews", edit)
    rendered = registry()["timeouts-retries"].render({"service": "reviews"}, "shop", inv)
    header, default = rendered.objects[0]["spec"]["http"]
    assert header["timeout"] == "10s" and default["timeout"] == "5s"
    assert any("VirtualService shop/reviews http[1] keeps its timeout 5s" in n for n in rendered.notes)


# ---------------------------------------------------------------- tracing compares behaviour


def _mesh_tracing(inv: Inventory, percent: float) -> Inventory:
    return inv.with_changes(apply=[{
        "apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
        "metadata": {"name": "mesh-default", "namespace": "istio-system"},
        "spec": {"tracing": [{"providers": [{"name": "jaeger"}], "randomSamplingPercentage": percent}]}}])


def test_tracing_never_lowers_the_sampling_the_mesh_has(demo_inventory):
    inv = _mesh_tracing(demo_inventory, 10.0)
    mesh = registry()["tracing"].render({}, MESH, inv)
    assert mesh.objects[0]["spec"]["tracing"][0]["randomSamplingPercentage"] == 10.0
    ns = registry()["tracing"].render({}, "shop", inv)
    assert all(t["randomSamplingPercentage"] == 10.0 for o in ns.objects for t in o["spec"].get("tracing", []))
    explicit = registry()["tracing"].render({"sampling": 1.0}, "shop", inv)  # asked for: the team's choice
    assert explicit.objects[0]["spec"]["tracing"][0]["randomSamplingPercentage"] == 1.0


def test_tracing_on_at_10_percent_mesh_wide_is_already_on_in_a_namespace(demo_inventory):
    inv = _mesh_tracing(demo_inventory, 10.0)
    rendered, msgs = render_gated(registry()["tracing"], {}, "shop", inv)
    assert rendered.objects == () or all(inv.get(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])
                                         for o in rendered.objects)


# ---------------------------------------------------------------- egress


def test_egress_service_entry_for_a_served_host_is_no_duplicate(demo_inventory):
    """payments/payments-provider already serves api.stripe.com:443 to every namespace."""
    rendered = registry()["egress-service-entry"].render({"host": "api.stripe.com"}, "shop", demo_inventory)
    after = apply(rendered, demo_inventory)
    serving = [se for se in after.of_kind("ServiceEntry") if "api.stripe.com" in se.spec.get("hosts", [])]
    assert [str(se.ref) for se in serving] == ["ServiceEntry payments/payments-provider"]


def test_a_mesh_wide_sidecar_scope_refuses_cross_namespace_calls_config_shows(demo_inventory):
    """A meshed workload of shop names a service of payments in its env: under a mesh-wide Sidecar that lets
    proxies know only their own namespace and istio-system, the call falls to the PassthroughCluster."""
    inv = demo_inventory
    callers = [u for u in inv.workloads if u.namespace == "shop" and u.kind == "Deployment"]
    target = next(s for s in inv.services if s.namespace == "payments" and s.selector)
    caller = callers[0]

    def edit(raw):
        env_of(raw, raw["spec"]["template"]["spec"]["containers"][0]["name"]).append(
            {"name": "PAY_URL", "value": f"http://{target.name}.payments:{target.ports[0].port}"})
    inv = changed(inv, caller.kind, caller.namespace, caller.name, edit)
    with pytest.raises(Refused) as e:
        render_gated(registry()["sidecar-scope"], {}, MESH, inv)
    assert any(m.code == "MST0812" and "PassthroughCluster" in m.message for m in e.value.findings)


def test_sidecar_scope_warns_of_virtual_service_destinations_in_other_namespaces(demo_inventory):
    target = next(s for s in demo_inventory.services if s.namespace == "payments" and s.selector)

    def edit(raw):
        raw["spec"]["http"][0]["route"][0]["destination"] = {"host": f"{target.name}.payments.svc.cluster.local"}
    inv = changed(demo_inventory, "VirtualService", "shop", "reviews", edit)
    msgs = registry()["sidecar-scope"].checks(inv, "shop", {"hosts": ""})
    assert any(m.code == "MST0704" and "VirtualService shop/reviews" in m.message for m in msgs)


# ---------------------------------------------------------------- hints that name the real fix


def test_in_an_ambient_namespace_the_dependency_hint_names_the_waypoint():
    """store is ambient without a waypoint: routing needs an L7 proxy, and there it is a waypoint, not sidecars."""
    from tests.features.corpus import ambient

    inv = ambient()
    for fid in ("request-routing", "timeouts-retries", "fault-injection"):
        (m,) = [m for m in registry()[fid].checks(inv, "store", registry()[fid].defaults()) if m.code == "MST0003"]
        assert "meshstep render waypoint --scope store" in m.hint and "sidecar-injection" not in m.hint, m.hint


def test_the_strict_hint_never_offers_a_peer_authentication_for_a_pod_without_a_proxy():
    """A PeerAuthentication is applied by the workload's own proxy: for a pod without one, PERMISSIVE through a
    selector does nothing. What keeps such a pod working is on the servers it calls."""
    from analysis.catalog import CATALOG

    hint = CATALOG["MST0401"].hint_for(workload="Deployment legacy/batch", inject="restart it", targets="shop/orders")
    assert "selector for it in mode PERMISSIVE" not in hint
    assert "no proxy" in hint and "servers it calls" in hint


def _mesh_sampling(inv: Inventory, percent: float) -> Inventory:
    """The mesh config's defaultConfig.tracing.sampling set, and a Telemetry naming a tracer but no percentage."""
    cm = inv.mesh_config_map
    mesh = yaml.safe_load(cm.raw["data"]["mesh"]) or {}
    mesh.setdefault("defaultConfig", {})["tracing"] = {"sampling": percent}
    return inv.with_changes(apply=[
        {**cm.raw, "data": {**cm.raw["data"], "mesh": yaml.safe_dump(mesh)}},
        {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
         "metadata": {"name": "mesh-default", "namespace": "istio-system"},
         "spec": {"tracing": [{"providers": [{"name": "jaeger"}]}]}}])


def test_a_telemetry_without_a_percentage_samples_what_the_mesh_config_says(demo_inventory):
    """A Telemetry that names no randomSamplingPercentage leaves the rate to the proxy config (the mesh config's
    defaultConfig.tracing.sampling), Istio's 1% only when that is unset: detection, the resolver and what a render
    keeps must read it the same way (they were decided in two places, and the render lowered 5% to 1%)."""
    five = _mesh_sampling(demo_inventory, 5.0)
    assert registry()["tracing"].detect(five)
    assert effective.tracing(five, MESH).value == "5%"
    rendered = registry()["tracing"].render({}, "shop", five)
    assert effective.tracing(five.with_changes(apply=rendered.objects), "shop").value == "5%"
    zero = _mesh_sampling(demo_inventory, 0.0)
    assert not registry()["tracing"].detect(zero) and registry()["tracing"].in_effect(zero, MESH).value == "off"
    on = registry()["tracing"].render({}, MESH, zero)  # turning on what samples nothing renders Istio's 1%
    assert on.objects[0]["spec"]["tracing"][0]["randomSamplingPercentage"] == 1.0


@pytest.mark.parametrize("telemetry", [
    {"tracing": [{"providers": [{"name": "jaeger"}], "randomSamplingPercentage": 0}]},
    {"tracing": [{"providers": [{"name": "jaeger"}], "disableSpanReporting": True}]},
])
def test_tracing_that_samples_nothing_is_not_on(demo_inventory, telemetry):
    """A Telemetry that samples 0% (or disables span reporting) sends no trace: Istio's Telemetry API reference
    (istio.io/latest/docs/reference/config/telemetry/#Tracing) — detection must not call that tracing on."""
    inv = demo_inventory.with_changes(apply=[{
        "apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
        "metadata": {"name": "mesh-default", "namespace": "istio-system"}, "spec": telemetry}])
    assert not registry()["tracing"].detect(inv)
    assert registry()["tracing"].in_effect(inv, MESH).value == "off"
    assert registry()["tracing"].detect(_mesh_tracing(demo_inventory, 10.0))
