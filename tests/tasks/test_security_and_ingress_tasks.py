"""istio.io's authorization-for-HTTP-traffic, Kubernetes Gateway API ingress and ambient getting-started tasks,
step by step: meshstep's reading of each step's config says what the page says it does."""
from __future__ import annotations

import pytest

from analysis import base as analysis
from analysis.callers import Call, refusal
from analysis.effective import ambient_l7, authorization
from cluster.model import Ref
from features._gateway_api import default_api
from features.base import apply, dependency_state, registry
from tests.features.corpus import ambient, bookinfo
from tests.tasks.conftest import task_cluster

AUTHZ_HTTP = "https://istio.io/latest/docs/tasks/security/authorization/authz-http/"
GATEWAY_API = "https://istio.io/latest/docs/tasks/traffic-management/ingress/gateway-api/"
AMBIENT = "https://istio.io/latest/docs/ambient/getting-started/"


def policy(name: str, spec: dict) -> dict:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": "bookinfo"}, "spec": spec}


@pytest.fixture(scope="module")
def app():
    return bookinfo(None)


def call(inv, caller: str, account: str, service: str) -> Call:
    return Call(Ref("Deployment", "bookinfo", caller), "bookinfo", True, account, "the page's request",
                service=inv.service("bookinfo", service))


def test_authorization_for_http_traffic_step_by_step(app, step):
    to_productpage = call(app, "istio-ingressgateway", "istio-ingressgateway", "productpage")
    to_details = call(app, "productpage-v1", "bookinfo-productpage", "details")
    step("authz-http", "before any policy: every request is allowed")
    assert authorization(app, "bookinfo").why == "ALLOW by default: no AuthorizationPolicy in bookinfo or istio-system"
    assert refusal(app, to_productpage) is None and refusal(app, to_details) is None, AUTHZ_HTTP

    step("authz-http", "allow-nothing: every request to the namespace is denied")
    nothing = app.with_changes(apply=[policy("allow-nothing", {})])
    assert authorization(nothing, "bookinfo").why == "checked against AuthorizationPolicy bookinfo/allow-nothing"
    assert "no ALLOW rule matches it" in refusal(nothing, to_productpage)
    assert "no ALLOW rule matches it" in refusal(nothing, to_details)

    step("authz-http", "productpage-viewer: GET to productpage allowed, details still denied")
    viewer = nothing.with_changes(apply=[policy("productpage-viewer", {
        "selector": {"matchLabels": {"app": "productpage"}}, "action": "ALLOW",
        "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]})])
    assert refusal(viewer, to_productpage) is None
    assert "no ALLOW rule matches it" in refusal(viewer, to_details)

    step("authz-http", "details-viewer: productpage's service account may GET details")
    details = viewer.with_changes(apply=[policy("details-viewer", {
        "selector": {"matchLabels": {"app": "details"}}, "action": "ALLOW",
        "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/bookinfo/sa/bookinfo-productpage"]}}],
                   "to": [{"operation": {"methods": ["GET"]}}]}]})])
    assert refusal(details, to_details) is None
    other = call(details, "reviews-v1", "bookinfo-reviews", "details")
    assert "no ALLOW rule matches it" in refusal(details, other), AUTHZ_HTTP


@pytest.fixture(scope="module")
def ingress():
    return task_cluster("gateway-api-ingress", gateway_api=True)


def test_gateway_api_ingress_is_the_routing_base_of_its_namespace(ingress, step):
    step("gateway-api-ingress", "configuring a gateway: Gateway and HTTPRoute accepted, ingress on")
    errors = [m for m in analysis.run(analysis.analyze_checks(), analysis.Context(ingress)) if m.level == "error"]
    assert not [m for m in errors if m.ref.kind in ("Gateway", "HTTPRoute")], GATEWAY_API
    assert registry()["ingress-gateway"].in_effect(ingress, "istio-ingress").value == "on"
    assert default_api(ingress, "default") == "gateway-api"  # its routes are extended, never doubled


def test_gateway_api_ingress_routing_extends_the_route_that_carries_the_traffic(ingress, step):
    step("gateway-api-ingress", "routing httpbin by version extends the Gateway's HTTPRoute default/http")
    rendered = registry()["request-routing"].render({}, "default", ingress)
    routes = [o for o in rendered.objects if o["kind"] == "HTTPRoute"]
    assert [(r["metadata"]["name"], r["spec"]["parentRefs"][0]["name"]) for r in routes] == [("http", "gateway")]


@pytest.fixture(scope="module")
def store():
    return ambient()


def test_ambient_getting_started_l4_until_a_waypoint(store, step):
    step("ambient-getting-started", "add the application to the mesh: mTLS by ztunnel, no sidecar")
    assert dependency_state("mtls-permissive", "store", store).value == "on", AMBIENT  # ambient-mode stands in
    l7 = ambient_l7(store, "store")
    assert (l7.value, l7.why) == ("off", "off by default: ztunnel only (L4): no waypoint serves the namespace")

    step("ambient-getting-started", "control traffic needs a waypoint: routing waits for it")
    routing = registry()["request-routing"]
    assert [m.code for m in routing.checks(store, "store", {}) if m.code == "MST0003"] == ["MST0003"]

    step("ambient-getting-started", "deploy a waypoint proxy: L7 at the waypoint, routing may follow")
    with_waypoint = apply(registry()["waypoint"].render({}, "store", store), store)
    l7 = ambient_l7(with_waypoint, "store")
    assert l7.value == "on" and l7.why.startswith("on at waypoint Gateway store/"), AMBIENT
    assert not [m for m in routing.checks(with_waypoint, "store", {}) if m.code == "MST0003"]
