"""istio.io's sidecar-to-ambient migration guide (docs/ambient/migrate/) as the `sidecar-to-ambient` template: its
phases in order, each step's prerequisites, and the demo (sidecars, no Gateway API CRDs, istio-cni without the
ambient profile, no ztunnel) rehearsed to done."""
from __future__ import annotations

import json

import pytest

from analysis import base as analysis
from cluster.inventory import Inventory
from cluster.revisions import manifest
from features.base import registry
from planner import plan

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
    assert draft.left_out == [], GUIDE
    assert [[(s.feature, s.scope) for s in st.steps] for st in draft.stages] == [
        [("gateway-api-crds", "mesh")], [("ambient-install", "mesh")],
        [("waypoint", "legacy")], [("ambient-mode", "legacy")],
        [("waypoint", "payments")], [("ambient-mode", "payments")],
        [("waypoint", "shop")], [("ambient-mode", "shop")]]
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
    return [(m.code, m.level) for m in analysis.run(analysis.gate_checks(feature), analysis.Context(inv, "mesh"))]


def test_the_guides_prerequisites_gate_the_first_stages(demo_inventory):
    """Istio 1.27.3 and Kubernetes 1.33 pass; an Istio older than ambient GA (1.24) is refused, a node outside
    Kubernetes 1.31–1.35 is warned of."""
    assert _gate(demo_inventory, "gateway-api-crds") == []
    node = next(iter(demo_inventory.of_kind("Node"))).raw
    old_node = json.loads(json.dumps(node))
    old_node["status"]["nodeInfo"]["kubeletVersion"] = "v1.29.4"
    assert ("MST0710", "warning") in _gate(demo_inventory.with_changes(apply=[old_node]), "ambient-install")
    pods = []  # istiod's pods running a 1.22 image: the version is read from what runs
    for pod in (p for p in demo_inventory.pods if p.labels.get("app") == "istiod"):
        raw = manifest(pod, dict(pod.labels), dict(pod.annotations))
        for c in raw["spec"]["containers"]:
            c["image"] = c["image"].replace(":1.27.3", ":1.22.3")
        pods.append(raw)
    older = demo_inventory.with_changes(pods=pods)
    assert older.istio_version == "1.22.3"
    assert ("MST0709", "error") in _gate(older, "gateway-api-crds")


def test_the_demo_migration_rehearses_to_done(cli):
    """`meshstep plan new --template sidecar-to-ambient` then `meshstep plan rehearse`: every gate, invariant and
    exit check runs on the overlay, none overridden."""
    rc, out, err = cli("plan", "new", "--template", "sidecar-to-ambient", "--source", "demo")
    assert rc == 0, err
    assert "LEFT OUT" not in out
    rc, out, err = cli("plan", "rehearse", "--source", "demo")
    assert rc == 0, (out, err)
    assert out.rstrip().endswith("plan sidecar-to-ambient is complete: every stage is done"), out
