"""Detection on Istio's own bookinfo sample (samples/bookinfo in the reference data), file by file, as
`kubectl apply -f FILE` would add it. The expectations are read from the files themselves: what each one turns on,
and — as much — what it does not (no bookinfo file sets timeouts, retries, connection pools or outlier detection,
so timeouts-retries and circuit-breaking must stay off everywhere, even where a DestinationRule has a
trafficPolicy for TLS or load balancing)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cluster.files import read_paths
from cluster.inventory import Inventory, build_inventory
from cluster.snapshot import Snapshot
from cluster.sources import load_snapshot
from features.base import registry
from tests.conftest import REFERENCE

BOOKINFO = REFERENCE / "samples" / "bookinfo"
NET = BOOKINFO / "networking"


def vs(*names: str) -> list[str]:
    return sorted(f"VirtualService {n}" for n in names)


# file → {feature: {scope: sorted evidence}} for every feature detection finds on, and nothing else.
# The manifests carry no namespace, so what they govern is not tied to one: detection reports scope `mesh` and
# names them as istioctl does (`Kind name`); the namespaced test below applies them to a namespace instead.
EXPECTED: dict[str, dict[str, dict[str, list[str]]]] = {
    "bookinfo.yaml": {},  # Services, Deployments, ServiceAccounts: the app, no Istio config
    "networking/bookinfo-gateway.yaml": {
        "ingress-gateway": {"mesh": ["Gateway bookinfo-gateway", "VirtualService bookinfo"]}},
    "networking/certmanager-gateway.yaml": {
        "ingress-gateway": {"istio-system": ["Gateway istio-system/cert-manager-gateway",
                                             "VirtualService istio-system/cert-manager"]}},
    "networking/destination-rule-all.yaml": {},  # subsets alone route nothing
    "networking/destination-rule-all-mtls.yaml": {},  # tls ISTIO_MUTUAL is not circuit breaking
    "networking/destination-rule-reviews.yaml": {},  # loadBalancer RANDOM is not circuit breaking
    "networking/egress-rule-google-apis.yaml": {"egress-service-entry": {"mesh": ["ServiceEntry googleapis"]}},
    "networking/fault-injection-details-v1.yaml": {
        "fault-injection": {"mesh": vs("details")}, "request-routing": {"mesh": vs("details")}},
    "networking/virtual-service-all-v1.yaml": {
        "request-routing": {"mesh": vs("productpage", "reviews", "ratings", "details")}},
    "networking/virtual-service-details-v2.yaml": {"request-routing": {"mesh": vs("details")}},
    "networking/virtual-service-ratings-db.yaml": {"request-routing": {"mesh": vs("reviews", "ratings")}},
    "networking/virtual-service-ratings-mysql.yaml": {"request-routing": {"mesh": vs("reviews", "ratings")}},
    "networking/virtual-service-ratings-mysql-vm.yaml": {"request-routing": {"mesh": vs("reviews", "ratings")}},
    # jason gets a fault on the same subset (v1) as everyone else: a fault test, not a release to testers
    "networking/virtual-service-ratings-test-abort.yaml": {
        "fault-injection": {"mesh": vs("ratings")}, "request-routing": {"mesh": vs("ratings")}},
    "networking/virtual-service-ratings-test-delay.yaml": {
        "fault-injection": {"mesh": vs("ratings")}, "request-routing": {"mesh": vs("ratings")}},
    "networking/virtual-service-reviews-50-v3.yaml": {
        "request-routing": {"mesh": vs("reviews")}, "traffic-shifting": {"mesh": vs("reviews")}},
    "networking/virtual-service-reviews-80-20.yaml": {
        "request-routing": {"mesh": vs("reviews")}, "traffic-shifting": {"mesh": vs("reviews")}},
    "networking/virtual-service-reviews-90-10.yaml": {
        "request-routing": {"mesh": vs("reviews")}, "traffic-shifting": {"mesh": vs("reviews")}},
    "networking/virtual-service-reviews-jason-v2-v3.yaml": {
        "request-routing": {"mesh": vs("reviews")}, "traffic-shifting": {"mesh": vs("reviews")}},
    "networking/virtual-service-reviews-test-v2.yaml": {
        "request-routing": {"mesh": vs("reviews")}, "traffic-shifting": {"mesh": vs("reviews")}},
    "networking/virtual-service-reviews-v2-v3.yaml": {
        "request-routing": {"mesh": vs("reviews")}, "traffic-shifting": {"mesh": vs("reviews")}},
    "networking/virtual-service-reviews-v3.yaml": {"request-routing": {"mesh": vs("reviews")}},
}

# what traffic-shifting reads back from each release file: the share and subset of the new version, or the
# header strategy (jason reaches another version than everyone else)
SHIFT_PARAMS = {
    "virtual-service-reviews-50-v3.yaml": {"weight": 50, "canary": "v3"},
    "virtual-service-reviews-80-20.yaml": {"weight": 20, "canary": "v2"},
    "virtual-service-reviews-90-10.yaml": {"weight": 10, "canary": "v2"},
    "virtual-service-reviews-v2-v3.yaml": {"weight": 50, "canary": "v3"},
    "virtual-service-reviews-jason-v2-v3.yaml": {"strategy": "header"},
    "virtual-service-reviews-test-v2.yaml": {"strategy": "header"},
}


def detected(inv: Inventory) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for f in registry().values():
        for o in f.detect(inv):
            out.setdefault(f.id, {}).setdefault(o.scope, []).extend(o.evidence)
    return {f: {s: sorted(ev) for s, ev in scopes.items()} for f, scopes in out.items()}


def test_every_bookinfo_file_has_an_expectation():
    on_disk = sorted(str(p.relative_to(BOOKINFO)) for p in BOOKINFO.rglob("*.yaml"))
    assert on_disk == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_detection_on_bookinfo_file(name: str):
    inv = build_inventory(load_snapshot(str(BOOKINFO / name)))
    assert detected(inv) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(SHIFT_PARAMS))
def test_traffic_shifting_reads_back_the_release(name: str):
    inv = build_inventory(load_snapshot(str(NET / name)))
    (obs,) = registry()["traffic-shifting"].detect(inv)
    assert obs.params == SHIFT_PARAMS[name]


def test_no_bookinfo_file_sets_timeouts_retries_or_circuit_breaking():
    inv = build_inventory(load_snapshot(str(BOOKINFO)))
    assert registry()["timeouts-retries"].detect(inv) == []
    assert registry()["circuit-breaking"].detect(inv) == []


def _in_namespace(path: Path, namespace: str) -> Snapshot:
    """The file as `kubectl apply -n NAMESPACE -f FILE` creates it."""
    def produce(_visibility: Any):
        for o in read_paths([path]):
            o.setdefault("metadata", {}).setdefault("namespace", namespace)
            yield o
    return Snapshot(f"{path} -n {namespace}", produce, cluster=False)


@pytest.mark.parametrize("name", [n for n, want in sorted(EXPECTED.items())
                                  if want and all(list(scopes) == ["mesh"] for scopes in want.values())])
def test_applied_to_a_namespace_the_scope_is_that_namespace(name: str):
    inv = build_inventory(_in_namespace(BOOKINFO / name, "bookinfo"))
    want = {f: {"bookinfo": [e.replace(" ", " bookinfo/", 1) for e in ev["mesh"]]}
            for f, ev in EXPECTED[name].items()}
    assert detected(inv) == want
