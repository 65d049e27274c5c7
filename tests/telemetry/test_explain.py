"""`meshstep explain` shows the traffic observed: every edge, or one workload's, mTLS or plaintext per edge."""
from __future__ import annotations

import json

import pytest

from app.cli import main


@pytest.fixture
def explain(capsys, monkeypatch):
    monkeypatch.delenv("MESHSTEP_PROMETHEUS_URL", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        rc = main(["explain", "--source", "demo", *args])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def test_one_workload_its_edges_with_the_plaintext_caller_said_to_be_outside_the_mesh(explain):
    rc, out, _ = explain("shop/orders", "--telemetry", "demo")
    assert rc == 0
    section = out.split("OBSERVED TRAFFIC (the 1h to 2026-02-20 12:00 UTC")[1]
    rows = [line.split() for line in section.splitlines()[2:] if line.strip()]
    plain = next(line for line in section.splitlines() if "PLAINTEXT" in line)
    assert plain.startswith("unknown (outside the mesh)") and "orders.shop.svc.cluster.local" in plain
    assert "1,800 requests" in plain
    assert any(r[0] == "shop/frontend" and r[-1] == "mTLS" for r in rows)
    assert any(r[0] == "shop/orders" and "payments-api.payments.svc.cluster.local" in r for r in rows)
    assert "only the destination's sidecar reports them" in section
    assert "api.exchangerate.example" not in section  # frontend's call, not orders'


def test_json_lists_every_edge_and_says_when_there_is_no_telemetry(explain):
    rc, out, _ = explain("--telemetry", "demo", "-o", "json")
    traffic = json.loads(out)["traffic"]
    egress = {e["service"]: e["egress"] for e in traffic if e["egress"]}
    assert egress == {"api.stripe.com": "ServiceEntry", "api.exchangerate.example": "PassthroughCluster"}
    canary = {e["destination"]: e["count"] for e in traffic if e["service"] == "reviews.shop.svc.cluster.local"}
    assert canary["shop/reviews-v2"] * 8 < canary["shop/reviews-v1"]  # the canary takes a tenth
    assert all(e["mtls"] == (e["security"] == "mutual_tls") for e in traffic)
    rc, out, _ = explain("-o", "json")
    report = json.loads(out)
    assert report["traffic"] is None and "--telemetry demo" in report["traffic_missing"]
