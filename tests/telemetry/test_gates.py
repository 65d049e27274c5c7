"""Gates that ask Istio's telemetry who really calls, through `meshstep render` against a real Prometheus.

The cluster is the demo with shop ready for STRICT by its config (every pod injected, legacy-billing's manifest
gone): only traffic can show that something outside the mesh still calls orders in plaintext."""
from __future__ import annotations

import pytest

import app.commands.features_cmds as features_cmds
from analysis.base import registered
from analysis.traffic import observed_caller_refused
from app.cli import main
from benchmarks.istio_metrics import DEMO_FLOWS, Flow
from cluster.model import Ref
from features.base import registry
from telemetry.edges import read_traffic
from telemetry.metrics_file import MetricsFile
from telemetry.series import DEMO_METRICS
from tests.planner.test_plan import Cluster
from tests.telemetry.conftest import now_minute

ORDERS = "orders.shop.svc.cluster.local"
MESH_TRAFFIC = [
    Flow(("istio-system", "istio-ingressgateway"), ("shop", "frontend"), "frontend.shop.svc.cluster.local", 5),
    Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 3),
]


@pytest.fixture
def ready_for_strict(demo_inventory):
    """shop injected throughout; legacy-billing's objects gone, so no config names a caller outside the mesh."""
    gone = [o.ref for objs in demo_inventory.objects.values() for o in objs
            if o.namespace == "legacy" and o.name.startswith("legacy-billing")]
    gone += [Ref("Pod", p.namespace, p.name) for p in demo_inventory.pods_by_namespace["legacy"]
             if p.name.startswith("legacy-billing")]
    cluster = Cluster(demo_inventory.with_changes(delete=gone))
    cluster.restart_with_sidecars("shop")
    return cluster.inv


@pytest.fixture
def render(ready_for_strict, monkeypatch, capsys):
    monkeypatch.setattr(features_cmds, "load_inventory", lambda source: ready_for_strict)
    monkeypatch.delenv("MESHSTEP_PROMETHEUS_URL", raising=False)

    def run_cli(*args: str) -> tuple[int, str, str]:
        rc = main(["render", *args])
        out, err = capsys.readouterr()
        return rc, out, err

    return run_cli


def test_config_alone_lets_strict_through_but_says_traffic_was_not_checked(render):
    rc, out, err = render("mtls-strict", "--scope", "shop")
    assert rc == 0 and "mode: STRICT" in out
    assert "MST0820" in err and "traffic into and out of shop was not checked" in err


def test_strict_refused_while_plaintext_from_outside_the_mesh_is_observed_then_passes(render, prometheus):
    # legacy has no sidecars: only orders' own sidecar reports its calls, plaintext and with no source.
    legacy = Flow(None, ("shop", "orders"), ORDERS, 0.5, security="none", reporters=("destination",))
    url = prometheus([*MESH_TRAFFIC, legacy])
    rc, out, err = render("mtls-strict", "--scope", "shop", "--prometheus", url)
    assert rc == 2 and out == ""
    said, refused = err.split("\n# REFUSED: ")
    head, finding, message, hint, _see = said.strip().splitlines()  # one finding: the plaintext MST0821 saw
    assert head.startswith("error: mtls-strict cannot be turned on in shop: 1 error")
    assert finding.startswith("× error   MST0821 ") and hint.startswith("    hint: ")
    assert "to shop/orders (orders.shop.svc.cluster.local)" in message
    # 0.5 requests/s over the hour to now; the samples end a minute or two before now (the minute they were
    # written, less one), and increase() extrapolates within a sample interval: 1,800 less up to three minutes'.
    count = float(message.split(" requests")[0].replace(",", ""))
    assert 1700 <= count <= 1830, message
    assert "in the 1h to " in message and "unknown caller outside the mesh" in message
    assert "frontend" not in message  # mutual-TLS callers are not blamed
    assert refused.startswith("mtls-strict in shop — the YAML it would apply, NOT to be applied")

    # legacy-billing got its sidecar 90 minutes ago: its plaintext stopped, its calls are now mutual TLS.
    switch = now_minute() - 5400
    url = prometheus([*MESH_TRAFFIC, Flow(None, ("shop", "orders"), ORDERS, 0.5, security="none",
                                          reporters=("destination",), stop=switch),
                      Flow(("legacy", "legacy-billing"), ("shop", "orders"), ORDERS, 0.5, start=switch)])
    rc, out, err = render("mtls-strict", "--scope", "shop", "--prometheus", url)
    assert rc == 0 and "mode: STRICT" in out, err
    assert "MST08" not in err
    # The same series over three hours still hold the plaintext: the window is what the evidence covers.
    rc, _, err = render("mtls-strict", "--scope", "shop", "--prometheus", url, "--window", "3h")
    assert rc == 2 and "MST0821" in err and "in the 3h to " in err


def test_a_prometheus_that_is_down_is_named_not_waited_on(render):
    from benchmarks.istio_metrics import free_port

    rc, _, err = render("mtls-strict", "--scope", "shop", "--prometheus", f"http://127.0.0.1:{free_port()}")
    assert rc == 2 and err.startswith("error: Prometheus at http://127.0.0.1:") and "cannot be reached" in err
    assert "Traceback" not in err


def test_egress_lock_down_refused_for_an_unregistered_host_the_demo_calls(demo_inventory):
    traffic = read_traffic(MetricsFile(DEMO_METRICS), 3600)
    feat = registry()["egress-registry-only"]
    msgs = [m for m in feat.checks(demo_inventory, "mesh", feat.defaults(), traffic) if m.code.startswith("MST08")]
    assert [(m.code, m.level, str(m.ref)) for m in msgs] == [("MST0823", "error", "Deployment shop/frontend")]
    assert "api.exchangerate.example through the PassthroughCluster" in msgs[0].message
    assert "api.stripe.com" not in msgs[0].message  # registered by payments' ServiceEntry


def test_sidecar_scope_refused_for_an_observed_destination_outside_its_hosts(demo_inventory):
    traffic = read_traffic(MetricsFile(DEMO_METRICS), 3600)
    feat = registry()["sidecar-scope"]
    found = [m for m in feat.checks(demo_inventory, "shop", feat.defaults(), traffic) if m.code == "MST0824"]
    assert [str(m.ref) for m in found] == ["Deployment shop/orders"]
    assert "payments-api.payments.svc.cluster.local" in found[0].message
    allowed = feat.checks(demo_inventory, "shop", {"hosts": "payments/*"}, traffic)
    assert not [m for m in allowed if m.code == "MST0824"]


def test_authorization_refuses_the_plaintext_caller_and_allows_the_named_namespaces(demo_inventory):
    traffic = read_traffic(MetricsFile(DEMO_METRICS), 3600)
    feat = registry()["authorization-policy"]
    gate = feat.checks(demo_inventory, "shop", {**feat.defaults(), "allow_namespaces": ""}, traffic)
    found = [m for m in gate if m.code == registered(observed_caller_refused).code]
    # The default rendering allows shop and the ingress gateway's namespace: the plaintext caller (no identity)
    # is the one refused; frontend (shop) and the gateway (istio-system) are allowed.
    assert [(m.code, str(m.ref)) for m in found] == [("MST0822", "Deployment shop/orders")]
    assert "unknown caller outside the mesh" in found[0].message and "in plaintext (no identity)" in found[0].message
    only_shop = feat.checks(demo_inventory, "shop", {**feat.defaults(), "allow_namespaces": "shop"}, traffic)
    assert any("istio-system/istio-ingressgateway" in m.message for m in only_shop)


def test_demo_flows_are_the_demo_file_and_the_demo_cluster(demo_inventory):
    """cluster/demo/telemetry.om is `python -m benchmarks.istio_metrics` output: regenerate it with the flows."""
    from benchmarks.istio_metrics import demo_metrics

    assert DEMO_METRICS.read_text() == demo_metrics()
    workloads = {(w.namespace, w.name) for w in demo_inventory.workloads}
    assert {p for f in DEMO_FLOWS for p in (f.source, f.destination) if p} <= workloads
