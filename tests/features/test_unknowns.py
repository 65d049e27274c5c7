"""Three values, not two: what the source could not show (a kind refused with a 403, a snapshot without CRDs) is
unknown — said in the gate, in `status` and in detection — never read as absent (issue 25, point 2)."""
from __future__ import annotations

import json

import pytest
import yaml

import app.commands.features_cmds as features_cmds
from analysis.effective import mtls_mode, unknown_kind
from cluster.inventory import build_inventory
from cluster.snapshot import NotVisible, Snapshot, Visibility
from features.base import dependency_state, registry
from tests.tasks.conftest import TASKS, objects

APP = TASKS / "mtls-migration.yaml"  # the task's namespaces and workloads, without a control plane or any CRD
FORBIDDEN = "peerauthentications.security.istio.io"


@pytest.fixture
def no_crds(tmp_path):
    """A snapshot of manifests that holds no CustomResourceDefinition at all."""
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump_all([o for o in objects("mtls-migration")
                                        if o["kind"] != "CustomResourceDefinition"]))
    return str(path)


@pytest.fixture
def refused():
    """The task's cluster read live by an identity that may not list PeerAuthentications (403)."""
    return build_inventory(Snapshot("live", lambda _v: iter(objects("mtls-migration")),
                                    Visibility([NotVisible("PeerAuthentication", FORBIDDEN,
                                                           f"403 Forbidden: {FORBIDDEN} is forbidden",
                                                           forbidden=True)])))


def test_a_snapshot_without_crds_renders_gateway_api_and_says_what_it_does_not_know(run, no_crds):
    rc, out, err = run("render", "request-routing", "--scope", "foo", "--set", "api=gateway-api",
                       "--source", no_crds)
    assert rc == 0, err
    assert "does not serve" not in err
    assert {d["kind"] for d in yaml.safe_load_all(out) if d} >= {"HTTPRoute"}
    assert "MST0007" in err and "whether the cluster serves HTTPRoute (gateway.networking.k8s.io) is unknown" in err
    assert "kubectl get crd httproutes.gateway.networking.k8s.io" in err


def test_a_snapshot_without_peer_authentication_leaves_strict_unrefused_and_says_so(run, no_crds):
    rc, out, err = run("render", "mtls-strict", "--scope", "foo", "--source", no_crds)
    assert rc == 0, err
    assert "MST0003" not in err and "MST0006" in err
    assert "whether it is in effect in foo is unknown: PeerAuthentication not in the snapshot" in err
    assert "kubectl get crd peerauthentications.security.istio.io" in err
    assert "kind: PeerAuthentication" in out


def test_a_forbidden_kind_is_unknown_in_the_resolver_the_gate_and_status(refused, run, monkeypatch):
    mode = mtls_mode(refused, "foo")
    assert mode.value is None and "not readable" in mode.why and "403" in mode.why
    assert unknown_kind(refused, "PeerAuthentication").check == f"kubectl auth can-i list {FORBIDDEN} -A"
    assert dependency_state("mtls-strict", "foo", refused).value is None
    gate = registry()["authorization-policy"].checks(refused, "foo", registry()["authorization-policy"].defaults())
    assert [m.level for m in gate if m.code == "MST0006"] == ["warning"]
    assert not [m for m in gate if m.code == "MST0003"]
    monkeypatch.setattr(features_cmds, "load_inventory", lambda source: refused)
    rc, out, err = run("status", "--format", "json")
    assert rc == 1 and "this answer is partial" in err, err  # kubectl's status for a partial answer
    rows = {m["scope"]: m for m in json.loads(out)["mtls"]}
    assert rows["foo"]["mode"] == "unknown" and "403" in rows["foo"]["why"]


def test_a_whole_cluster_without_the_crds_does_not_serve_them(demo_inventory):
    """The demo is read whole, its CRDs with it: no Gateway API CRD there is a fact, not an unknown."""
    from features._gateway_api import installed

    assert installed(demo_inventory) is False
    assert unknown_kind(demo_inventory, "HTTPRoute") is None


def test_a_feature_whose_detection_reads_a_refused_kind_is_unknown_not_off(demo_inventory):
    """request-routing is detected from VirtualServices: with them refused (403) its state is unknown, because the
    kinds a detection reads are recorded as it runs, not listed beside it."""
    vs = "virtualservices.networking.istio.io"
    objs = [o.raw for kind in demo_inventory.objects for o in demo_inventory.of_kind(kind) if kind != "VirtualService"]
    inv = build_inventory(Snapshot("live", lambda _v: iter(objs), Visibility([NotVisible(
        "VirtualService", vs, f"403 Forbidden: {vs} is forbidden", forbidden=True)])))
    state = registry()["request-routing"].in_effect(inv, "shop")
    assert state.value is None and "VirtualService" in state.why and "403" in state.why
    assert registry()["request-routing"].in_effect(demo_inventory, "shop").value == "on"


def test_a_plan_keeps_a_step_whose_dependency_is_unknown_and_its_gate_says_so():
    """ServiceEntries refused: whether egress-service-entry is on is unknown, so locking egress down is neither
    left out as "not on" nor an order error: the plan keeps the step and its gate warns MST0006."""
    import planner.plan

    se = "serviceentries.networking.istio.io"
    inv = build_inventory(Snapshot("live", lambda _v: iter(objects("mtls-migration")), Visibility([NotVisible(
        "ServiceEntry", se, f"403 Forbidden: {se} is forbidden", forbidden=True)])))
    draft = planner.plan.new_plan("routing-first", inv, ["foo", "bar"])
    assert not [x for x in draft.left_out if x.feature == "egress-registry-only"], draft.left_out
    stage = next(s for s in draft.stages if s.title == "Lock down egress")
    assert not stage.done
    planner.plan.check_order([stage], inv)  # an unknown dependency is no order error
    gate = planner.plan.gate(stage, inv)
    assert [m.code for m in gate.messages if m.code in ("MST0003", "MST0006")] == ["MST0006"]
    assert "serviceentries.networking.istio.io" in next(m.message for m in gate.messages if m.code == "MST0006")


def test_drift_asks_what_is_in_effect_at_mesh_scope(refused):
    """Drift's "unknown" is the features' own three-valued answer (in_effect, mesh scope), one path, not a
    second detection run: mtls-strict with PeerAuthentications refused is unknown, and a feature whose kinds were
    all read is not."""
    from features.base import MESH, unknown_features

    unknown = unknown_features(refused)
    assert unknown["mtls-strict"] == registry()["mtls-strict"].in_effect(refused, MESH).why
    assert "403" in unknown["mtls-strict"]
    assert "request-routing" not in unknown  # VirtualServices were read


def test_a_kind_whose_list_failed_is_unknown_and_not_called_forbidden():
    """A kind the source could not read for another reason than a 403 (the API did not answer) is unknown as a
    refused one is, and said as what happened: never "refused (403 Forbidden)"."""
    pa = "peerauthentications.security.istio.io"
    inv = build_inventory(Snapshot("live", lambda _v: iter(objects("mtls-migration")), Visibility([NotVisible(
        "PeerAuthentication", pa, "503 Service Unavailable: the server is currently unable to handle the request")])))
    u = unknown_kind(inv, "PeerAuthentication")
    assert u is not None and "503 Service Unavailable" in u.reason and "403" not in u.reason
    assert u.check == f"kubectl get {pa} -A"
    assert mtls_mode(inv, "foo").value is None
    gate = registry()["mtls-strict"].checks(inv, "foo", {})
    assert [m for m in gate if m.code == "MST0006"] and not [m for m in gate if "403" in m.message]
