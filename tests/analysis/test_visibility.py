"""Checks declare the kinds they read: against a live cluster (kmock's emulator) that refuses some kinds, `analyze`
skips the checks that would read them and says so, in the table and the JSON, instead of reporting what it cannot
see as missing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from analysis.base import _LISTED, GATEWAY_API_KINDS, analyze_checks, registry, runnable
from app.cli import main
from benchmarks.kubeapi import write_kubeconfig
from cluster.inventory import build_inventory
from cluster.live import live_snapshot
from tests.kube import serve

DEMO = Path(__file__).resolve().parents[2] / "cluster" / "demo"


def _demo_objects() -> list[dict]:
    return [d for f in sorted(DEMO.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


@pytest.fixture
def refusing_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The demo cluster served live, refusing to list pods and namespaces (403)."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with serve(_demo_objects(), forbidden={"pods", "namespaces"}) as cluster:
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", {"test": cluster.url},
                                                              "test")))
        yield cluster


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(["analyze", "--source", "context:test", *argv])
    return code, capsys.readouterr().out


def test_forbidden_kinds_skip_their_checks_instead_of_false_errors(refusing_cluster, capsys):
    code, out = run(capsys, "--format", "json")
    messages = json.loads(out)
    # Without pods, every DestinationRule subset "selects no pods" and every Sidecar/Telemetry selector "matches
    # nothing": those checks are skipped, so nothing is at error level.
    assert code == 0, [m for m in messages if m["level"] == "error"]
    assert not {m["code"] for m in messages} & {"IST0173", "IST0101", "IST0103"}
    skipped = {m["name"]: m for m in messages if m["code"] == "MST0004"}
    assert set(skipped) == {"pods", "namespaces"}
    assert skipped["pods"]["kind"] == "APIResource" and skipped["pods"]["level"] == "warning"
    assert "IST0173 (destinationrule)" in skipped["pods"]["message"]
    assert "IST0102 (injection)" in skipped["namespaces"]["message"]
    assert "kubectl auth can-i list pods -A" in skipped["pods"]["hint"]


def test_the_table_lists_the_refused_kinds_and_what_was_skipped(refusing_cluster, capsys):
    code, out = run(capsys)
    assert code == 0
    assert "MST0004" in out and "APIResource pods" in out and "APIResource namespaces" in out
    assert "403 Forbidden" in out and "skipped" in out


def test_every_check_declares_kinds_and_runs_when_all_are_visible(refusing_cluster):
    inv = build_inventory(live_snapshot("test"))
    ok, skipped = runnable(analyze_checks(), inv)
    reading_pods = [c for c in analyze_checks() if "Pod" in c.reads]
    assert reading_pods and all(c in skipped[next(u for u in skipped if u.what == "pods")] for c in reading_pods)
    assert all("Pod" not in c.reads and "Namespace" not in c.reads for c in ok)
    # Every declared kind is one the sources know how to name (a typo would never be found unseen).
    istio_kinds = {c.kind for c in inv.crds.values()}
    for c in registry():
        for kind in c.reads:
            assert kind in _LISTED or kind in GATEWAY_API_KINDS or kind in istio_kinds, (c.code, c.family, kind)
