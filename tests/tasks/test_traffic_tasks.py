"""istio.io's traffic management tasks on Bookinfo (Istio's sample, read from ../shared, in an injected namespace
on the demo's control plane), step by step: what each page applies, meshstep renders, and what the page says the
config does, meshstep's reading of it says too."""
from __future__ import annotations

import pytest

from analysis.callers import Call, refusal
from analysis.effective import outbound_traffic_policy
from cluster.model import Ref
from features._gate import render_gated
from features.base import apply, registry
from tests.features.corpus import BOOKINFO, bookinfo

REQUEST_ROUTING = "https://istio.io/latest/docs/tasks/traffic-management/request-routing/"
TRAFFIC_SHIFTING = "https://istio.io/latest/docs/tasks/traffic-management/traffic-shifting/"
EGRESS_CONTROL = "https://istio.io/latest/docs/tasks/traffic-management/egress/egress-control/"


def reviews_routes(rendered) -> list:
    (vs,) = [o for o in rendered.objects if o["kind"] == "VirtualService" and o["metadata"]["name"] == "reviews"]
    return vs["spec"]["http"]


def gated(feature: str, params: dict, inv):
    rendered, msgs = render_gated(registry()[feature], params, "bookinfo", inv)
    assert not [m for m in msgs if m.level == "error"]
    return rendered, msgs


@pytest.fixture(scope="module")
def app():
    return bookinfo(None)


@pytest.fixture(scope="module")
def all_v1(app):
    """The request-routing task's first step, as meshstep renders it."""
    rendered, _ = gated("request-routing", {}, app)
    return rendered, apply(rendered, app)


def test_request_routing_sends_every_service_to_version_1(all_v1, step):
    step("request-routing", "route to version 1 (virtual-service-all-v1, destination-rule-all)")
    rendered, _ = all_v1
    subsets = {o["metadata"]["name"]: [s["name"] for s in o["spec"]["subsets"]]
               for o in rendered.objects if o["kind"] == "DestinationRule"}
    assert subsets["reviews"] == ["v1", "v2", "v3"], REQUEST_ROUTING
    assert reviews_routes(rendered) == [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]


def test_request_routing_by_user_identity_sends_jason_to_v2(all_v1, step):
    step("request-routing", "route based on user identity (end-user: jason to reviews v2)")
    _, inv = all_v1
    rendered, _ = gated("traffic-shifting", {"service": "reviews", "strategy": "header", "header": "end-user",
                                             "header_value": "jason", "stable": "v1", "canary": "v2"}, inv)
    assert reviews_routes(rendered) == [
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
         "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
        {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}], REQUEST_ROUTING


def test_the_page_own_routing_counts_as_routing_that_is_on(step):
    step("request-routing", "virtual-service-all-v1 applied: routing is on, traffic shifting may follow")
    inv = bookinfo(BOOKINFO / "networking" / "virtual-service-all-v1.yaml")
    assert registry()["request-routing"].in_effect(inv, "bookinfo").value == "on"
    gate = registry()["traffic-shifting"].checks(inv, "bookinfo", registry()["traffic-shifting"].defaults())
    assert not [m for m in gate if m.code in ("MST0003", "MST0006")], TRAFFIC_SHIFTING


def test_traffic_shifting_moves_half_then_all_of_reviews_to_v3(all_v1, step):
    _, inv = all_v1
    step("traffic-shifting", "transfer 50% of the traffic from reviews v1 to v3")
    half, _ = gated("traffic-shifting", {"service": "reviews", "stable": "v1", "canary": "v3", "weight": 50}, inv)
    assert reviews_routes(half) == [{"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 50},
                                               {"destination": {"host": "reviews", "subset": "v3"}, "weight": 50}]}]
    step("traffic-shifting", "route 100% of the traffic to reviews v3")
    full, _ = gated("traffic-shifting", {"service": "reviews", "strategy": "blue-green", "stable": "v1",
                                         "canary": "v3"}, inv)
    weights = {d["destination"]["subset"]: d["weight"] for d in reviews_routes(full)[0]["route"]}
    assert weights == {"v3": 100, "v1": 0}, TRAFFIC_SHIFTING


def test_egress_control_allow_any_then_registry_only(app, step):
    """Page: ALLOW_ANY (the mesh config's) lets calls to unknown hosts through; a ServiceEntry registers one;
    REGISTRY_ONLY then refuses every other host."""
    productpage = Call(Ref("Deployment", "bookinfo", "productpage-v1"), "bookinfo", True, "bookinfo-productpage",
                       "the task's curl", host="edition.cnn.com")
    google = Call(productpage.caller, "bookinfo", True, productpage.account, "the task's curl", host="www.google.com")
    step("egress-control", "Envoy passthrough to external services (ALLOW_ANY)")
    assert outbound_traffic_policy(app, "bookinfo").value == "ALLOW_ANY", EGRESS_CONTROL
    assert refusal(app, productpage) is None and refusal(app, google) is None

    step("egress-control", "REGISTRY_ONLY, edition.cnn.com registered: cnn passes, google is refused")
    entry, _ = gated("egress-service-entry", {"host": "edition.cnn.com", "port": 443}, app)
    registered = apply(entry, app)
    feature = registry()["egress-registry-only"]
    locked = apply(feature.render(feature.defaults(), "mesh", registered), registered)
    assert outbound_traffic_policy(locked, "bookinfo").value == "REGISTRY_ONLY"
    assert refusal(locked, productpage) is None
    assert "REGISTRY_ONLY" in refusal(locked, google)
