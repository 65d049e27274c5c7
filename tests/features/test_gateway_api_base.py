"""The Gateway API as a routing base (issue 25, point 3): a namespace served north–south by an HTTPRoute attached to
a Gateway, as istio.io's "Ingress with the Gateway API" task (docs/tasks/traffic-management/ingress/gateway-api)
sets one up, and east–west by callers in the mesh. The canary weights the backendRefs of the route that carries the
traffic, keeping everything else on it, and routing done through the Gateway API counts as routing that is on."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from features._gate import render_gated
from features.base import apply, registry, validate_object
from tests.features.corpus import GATEWAY_API_CRDS, _inventory, control_plane, read_paths, running

GW = "gateway.networking.k8s.io/v1"
INGRESS_RULE = {
    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
    "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x-env",
                                                                                      "value": "prod"}]}}],
    "timeouts": {"request": "5s"},
    "backendRefs": [{"name": "web", "port": 8080}],
}


def _deployment(ns: str, app: str, version: str, env: list[dict[str, str]] | None = None) -> dict[str, Any]:
    labels = {"app": app, "version": version}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": f"{app}-{version}", "namespace": ns, "labels": labels},
            "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
                "containers": [{"name": app, "image": f"example/{app}:{version}", "env": env or [],
                                "ports": [{"containerPort": 8080}]}]}}}}


def _service(ns: str, app: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": app, "namespace": ns},
            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]}}


def north_south(east_west: bool = False, ingress_rule: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """shop (injected) runs web v1 and v2 behind Service web; Gateway `public` of class istio in namespace ingress
    admits routes from every namespace; HTTPRoute shop/web attaches to its `http` listener for shop.example.com.
    With `east_west`, namespace checkout's meshed cart names web.shop in its env: a call inside the mesh too."""
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ingress"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop",
                                                               "labels": {"istio-injection": "enabled"}}},
        _deployment("shop", "web", "v1"), _deployment("shop", "web", "v2"), _service("shop", "web"),
        {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "public", "namespace": "ingress"},
         "spec": {"gatewayClassName": "istio", "listeners": [
             {"name": "http", "port": 80, "protocol": "HTTP", "hostname": "*.example.com",
              "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
        {"apiVersion": GW, "kind": "HTTPRoute", "metadata": {"name": "web", "namespace": "shop",
                                                            "labels": {"team": "storefront"}},
         "spec": {"parentRefs": [{"name": "public", "namespace": "ingress", "sectionName": "http"}],
                  "hostnames": ["shop.example.com"], "rules": [copy.deepcopy(ingress_rule or INGRESS_RULE)]}},
    ]
    if east_west:
        objs += [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "checkout",
                                                                      "labels": {"istio-injection": "enabled"}}},
                 _deployment("checkout", "cart", "v1", [{"name": "WEB_URL", "value": "http://web.shop:8080"}]),
                 _service("checkout", "cart")]
    return objs


def cluster(objs: list[dict[str, Any]]) -> Inventory:
    crds = list(read_paths(sorted(GATEWAY_API_CRDS.glob("*.yaml"))))
    return _inventory("north-south", [*control_plane(), *crds, *running(objs)])


@pytest.fixture(scope="module")
def ns() -> Inventory:
    return cluster(north_south())


@pytest.fixture(scope="module")
def ns_ew() -> Inventory:
    return cluster(north_south(east_west=True))


def routes(rendered) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in rendered.objects if o["kind"] == "HTTPRoute"}


def test_gateway_api_routing_counts_as_request_routing_on(ns):
    """The Gateway-attached route routes shop's traffic: request-routing is on there, so traffic-shifting's
    dependency (MST0003) is met and the gate passes."""
    assert [(o.scope, o.evidence) for o in registry()["request-routing"].detect(ns)] == [
        ("shop", ["HTTPRoute shop/web"])]
    rendered, msgs = render_gated(registry()["traffic-shifting"], {"weight": 10}, "shop", ns)
    assert "MST0003" not in [m.code for m in msgs]
    assert rendered.objects


def test_the_canary_weights_the_backends_of_the_ingress_route(ns):
    """The ingress route gets the weights; its parentRefs, hostnames, matches, filters and timeouts stay; no mesh
    route is added where nothing in the mesh calls web."""
    rendered, _ = render_gated(registry()["traffic-shifting"], {"weight": 10}, "shop", ns)
    (route,) = routes(rendered).values()
    assert route["metadata"]["name"] == "web" and route["metadata"]["labels"]["team"] == "storefront"
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "ingress", "sectionName": "http"}]
    assert route["spec"]["hostnames"] == ["shop.example.com"]
    (rule,) = route["spec"]["rules"]
    assert {k: v for k, v in rule.items() if k != "backendRefs"} == {
        k: v for k, v in INGRESS_RULE.items() if k != "backendRefs"}
    assert rule["backendRefs"] == [{"name": "web-v1", "port": 8080, "weight": 90},
                                   {"name": "web-v2", "port": 8080, "weight": 10}]
    for o in rendered.objects:
        validate_object(o, ns)  # against ../shared/gateway-api-reference's CRDs
    after = apply(rendered, ns)
    assert [o.params for o in registry()["traffic-shifting"].detect(after)] == [{"weight": 10}]


def test_east_west_traffic_gets_a_mesh_route_beside_the_ingress_one(ns_ew):
    rendered, _ = render_gated(registry()["traffic-shifting"], {"weight": 25}, "shop", ns_ew)
    got = routes(rendered)
    assert sorted(got) == ["web", "web-mesh"]
    mesh = got["web-mesh"]["spec"]
    assert mesh["parentRefs"] == [{"group": "", "kind": "Service", "name": "web", "port": 8080}]
    for route in got.values():
        assert route["spec"]["rules"][-1]["backendRefs"] == [{"name": "web-v1", "port": 8080, "weight": 75},
                                                            {"name": "web-v2", "port": 8080, "weight": 25}]


def test_a_call_by_short_name_from_the_same_namespace_gets_a_mesh_route():
    """shop's meshed cart naming `http://web:8080` calls web.shop: a pod's resolv.conf searches its own namespace
    first (https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/#namespaces-of-services)."""
    objs = [*north_south(), _deployment("shop", "cart", "v1", [{"name": "WEB_URL", "value": "http://web:8080"}]),
            _service("shop", "cart")]
    rendered, _ = render_gated(registry()["traffic-shifting"], {"service": "web", "weight": 25}, "shop",
                               cluster(objs))
    assert sorted(routes(rendered)) == ["web", "web-mesh"]


def test_a_header_release_on_the_ingress_route_keeps_its_path_match(ns):
    """The tester rule is the catch-all's matches with the header added: a Gateway API match ANDs its path and
    headers, so testers reach v2 on the same paths and nobody else does."""
    rendered, _ = render_gated(registry()["traffic-shifting"], {"strategy": "header"}, "shop", ns)
    tester, default = routes(rendered)["web"]["spec"]["rules"]
    assert tester["matches"] == [{"path": {"type": "PathPrefix", "value": "/"},
                                  "headers": [{"name": "x-canary", "value": "true"}]}]
    assert tester["backendRefs"] == [{"name": "web-v2", "port": 8080}]
    assert tester["filters"] == default["filters"] and tester["timeouts"] == default["timeouts"]
    assert default["matches"] == INGRESS_RULE["matches"]
    assert default["backendRefs"] == [{"name": "web-v1", "port": 8080}]
    again = registry()["traffic-shifting"].render({"strategy": "header"}, "shop", apply(rendered, ns))
    assert len(routes(again)["web"]["spec"]["rules"]) == 2  # rendering again replaces the tester rule


@pytest.mark.parametrize("fid, params", [("request-routing", {}), ("timeouts-retries", {"ingress": True})])
def test_the_other_routing_features_extend_the_ingress_route(ns, fid, params):
    rendered, _ = render_gated(registry()[fid], params, "shop", ns)
    assert list(routes(rendered)) == ["web"]
    (rule,) = routes(rendered)["web"]["spec"]["rules"]
    assert rule["matches"] == INGRESS_RULE["matches"] and rule["filters"] == INGRESS_RULE["filters"]


def test_request_routing_pins_the_ingress_route_to_the_first_version(ns):
    rendered, _ = render_gated(registry()["request-routing"], {}, "shop", ns)
    (rule,) = routes(rendered)["web"]["spec"]["rules"]
    assert rule["backendRefs"] == [{"name": "web-v1", "port": 8080}]


def test_timeouts_never_cap_a_request_below_the_routes_own_request_timeout(ns):
    """The ingress route's `request: 5s` stays, and no backendRequest is added: without retries (not in the
    standard channel) a 2s backendRequest would cap every request at 2s."""
    feature = registry()["timeouts-retries"]
    rendered, _ = render_gated(feature, {"ingress": True}, "shop", ns)
    assert routes(rendered)["web"]["spec"]["rules"][0]["timeouts"] == {"request": "5s"}
    explicit = feature.render({"ingress": True, "per_try_timeout": "3s"}, "shop", ns)
    assert routes(explicit)["web"]["spec"]["rules"][0]["timeouts"] == {"request": "5s", "backendRequest": "3s"}
    with pytest.raises(MeshstepError, match="must not exceed the request timeout 5s"):
        feature.render({"ingress": True, "per_try_timeout": "6s"}, "shop", ns)


def test_timeouts_aimed_at_the_mesh_leave_the_ingress_route_alone(ns):
    rendered, _ = render_gated(registry()["timeouts-retries"], {}, "shop", ns)
    assert list(routes(rendered)) == ["web-mesh"]
    assert any("# reaches: HTTPRoute shop/web-mesh rules[0]" in n and "the mesh's sidecars" in n
               for n in rendered.notes)


# ---------------------------------------------------------------- a route in the Gateway's namespace (ReferenceGrant)


def cross_namespace(grant_to: dict[str, str] | None) -> list[dict[str, Any]]:
    """The route lives beside the Gateway in namespace ingress and names shop's Service across namespaces; a
    ReferenceGrant in shop lets HTTPRoutes of ingress name `grant_to` (None: no grant). Without the grant the
    reference is not permitted (ResolvedRefs False, RefNotPermitted): the route carries nothing to web.
    Page: https://gateway-api.sigs.k8s.io/api-types/referencegrant/"""
    objs = north_south()
    route = next(o for o in objs if o["kind"] == "HTTPRoute")
    route["metadata"]["namespace"] = "ingress"
    route["spec"]["parentRefs"] = [{"name": "public", "sectionName": "http"}]
    route["spec"]["rules"][0]["backendRefs"] = [{"name": "web", "namespace": "shop", "port": 8080}]
    if grant_to is not None:
        objs.append({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
                     "metadata": {"name": "from-ingress", "namespace": "shop"},
                     "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                        "namespace": "ingress"}],
                              "to": [{"group": "", "kind": "Service"} | grant_to]}})
    return objs


def test_a_route_in_the_gateways_namespace_granted_by_name_is_the_base_and_its_grant_grows():
    inv = cluster(cross_namespace({"name": "web"}))
    assert [(o.scope, o.evidence) for o in registry()["request-routing"].detect(inv)] == [
        ("shop", ["HTTPRoute ingress/web"])]
    rendered, msgs = render_gated(registry()["traffic-shifting"], {"weight": 10}, "shop", inv)
    assert "MST0003" not in [m.code for m in msgs]
    (route,) = routes(rendered).values()
    assert route["metadata"]["namespace"] == "ingress"
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"name": "web-v1", "port": 8080, "weight": 90, "namespace": "shop"},
        {"name": "web-v2", "port": 8080, "weight": 10, "namespace": "shop"}]
    (grant,) = [o for o in rendered.objects if o["kind"] == "ReferenceGrant"]
    assert [t.get("name") for t in grant["spec"]["to"]] == ["web", "web-v1", "web-v2"]
    kinds = [o["kind"] for o in rendered.objects]
    assert kinds.index("ReferenceGrant") < kinds.index("HTTPRoute")  # granted before it is named
    for o in rendered.objects:
        validate_object(o, inv)


def test_a_grant_of_every_service_needs_no_change():
    inv = cluster(cross_namespace({}))
    rendered, _ = render_gated(registry()["traffic-shifting"], {"weight": 10}, "shop", inv)
    assert "ReferenceGrant" not in [o["kind"] for o in rendered.objects]
    assert list(routes(rendered)) == ["web"]


def test_a_route_whose_reference_is_not_granted_carries_nothing_and_is_no_base():
    inv = cluster(cross_namespace(None))
    assert not [o for o in registry()["request-routing"].detect(inv) if o.scope == "shop"]
    rendered = registry()["traffic-shifting"].render({"weight": 10, "api": "gateway-api"}, "shop", inv)
    assert [r["metadata"]["namespace"] for r in routes(rendered).values()] == ["shop"]  # the mesh's route only
