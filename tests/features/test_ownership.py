"""Merging with ownership in mind: a stage's gate names the field managers that own what its features would change
(MST0008), from the managedFields a snapshot taken with `kubectl get -o yaml --show-managed-fields` (or a live
cluster) carries, before any dry run; and the kinds meshstep renders keep their owners when read."""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml

import cluster
from cluster.inventory import build_inventory
from cluster.owners import keeps_ownership
from cluster.sources import load_snapshot
from features._gate import render_gated
from features.base import apply, registry
from planner import plan
from telemetry.edges import read_traffic
from telemetry.metrics_file import MetricsFile
from telemetry.series import DEMO_METRICS
from tests.features.test_lifecycle import case, cluster_for, with_dependencies

DEMO = Path(cluster.__file__).parent / "demo"

# As `kubectl get vs -n shop reviews -o yaml --show-managed-fields` prints them: Argo CD syncs the VirtualService
# by server-side apply, and Kiali's wizard once edited its route (an update).
ARGO = yaml.safe_load("""
- apiVersion: networking.istio.io/v1
  fieldsType: FieldsV1
  fieldsV1:
    f:metadata:
      f:labels:
        f:app.kubernetes.io/part-of: {}
    f:spec:
      f:hosts: {}
  manager: argocd-controller
  operation: Apply
  time: "2026-02-18T12:20:00Z"
- apiVersion: networking.istio.io/v1
  fieldsType: FieldsV1
  fieldsV1:
    f:spec:
      f:http: {}
  manager: kiali
  operation: Update
  time: "2026-02-19T08:00:00Z"
""")
# `kubectl apply` (client-side) of the shop Namespace with its labels.
KUBECTL = yaml.safe_load("""
- apiVersion: v1
  fieldsType: FieldsV1
  fieldsV1:
    f:metadata:
      f:annotations:
        .: {}
        f:owner: {}
      f:labels:
        .: {}
        f:istio.io/rev: {}
        f:team: {}
  manager: kubectl-client-side-apply
  operation: Update
  time: "2026-02-05T13:58:20Z"
""")


def owned_demo(tmp_path: Path, vs_owners: list = ARGO) -> Path:
    """The demo cluster as a snapshot that shows its field managers."""
    out = tmp_path / "snap"
    shutil.copytree(DEMO, out, ignore=shutil.ignore_patterns("*.om"))
    for name, kind, obj_name, owned in (("config.yaml", "VirtualService", "reviews", vs_owners),
                                        ("shop.yaml", "Namespace", "shop", KUBECTL)):
        docs = [d for d in yaml.safe_load_all((out / name).read_text()) if d]
        for d in docs:
            if d["kind"] == kind and d["metadata"]["name"] == obj_name:
                d["metadata"]["managedFields"] = owned
        (out / name).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return out


def test_the_gate_names_who_owns_what_a_feature_would_change(tmp_path: Path) -> None:
    inv = build_inventory(load_snapshot(str(owned_demo(tmp_path))))
    shifting = registry()["traffic-shifting"]
    _rendered, msgs = render_gated(shifting, {"service": "reviews"}, "shop", inv)
    owned = [m for m in msgs if m.code == "MST0008"]
    assert [(m.level, str(m.ref)) for m in owned] == [("warning", "VirtualService shop/reviews")]
    assert "kiali (Update) owns .spec.http" in owned[0].message
    assert "argocd-controller" not in owned[0].message  # its fields (hosts, a label) are left as they are
    assert "kiali" in owned[0].hint and ".spec.http" in owned[0].hint


def test_an_apply_manager_is_named_with_the_conflict_it_would_raise(tmp_path: Path) -> None:
    argo = [dict(e, fieldsV1={"f:spec": {"f:hosts": {}, "f:http": {}}}) for e in ARGO[:1]]
    inv = build_inventory(load_snapshot(str(owned_demo(tmp_path, argo))))
    msgs = registry()["traffic-shifting"].checks(inv, "shop", {"service": "reviews"})
    owned = [m for m in msgs if m.code == "MST0008"]
    assert len(owned) == 1
    assert "argocd-controller (Apply) owns .spec.http" in owned[0].message and "409" in owned[0].message


def test_a_stage_gate_names_the_owner_and_runs_the_check(tmp_path: Path) -> None:
    inv = build_inventory(load_snapshot(str(owned_demo(tmp_path))))
    stage = plan.StageSpec("canary", "", (plan.Step("traffic-shifting", "shop", {"service": "reviews"}),))
    result = plan.gate(stage, inv)
    assert [str(m.ref) for m in result.messages if m.code == "MST0008"] == ["VirtualService shop/reviews"]
    assert any(r.startswith("MST0008 ") for r in result.ran)
    assert not any(r.startswith("MST0008 ") for r in result.skipped)
    # a snapshot taken without --show-managed-fields (kubectl's default) says nothing of owners: the check is not
    # passed in silence but skipped, with why and how to get them
    plain = build_inventory(load_snapshot("demo"))
    unseen = plan.gate(stage, plain)
    assert not [m for m in unseen.messages if m.code == "MST0008"]
    assert not any(r.startswith("MST0008 ") for r in unseen.ran)
    (said,) = [r for r in unseen.skipped if r.startswith("MST0008 ")]
    assert "shows no field owners" in said and "--show-managed-fields" in said


def test_a_step_that_renders_no_object_lists_no_owners_check(tmp_path: Path) -> None:
    """gateway-api-crds installs a release manifest by its command and renders no object: no field of it has an
    owner to name, so its gate lists no MST0008, neither run nor skipped (as a feature without dependencies lists
    no MST0003), on a snapshot with field owners or without."""
    stage = plan.StageSpec("crds", "", (plan.Step("gateway-api-crds", "mesh"),))
    for inv in build_inventory(load_snapshot("demo")), build_inventory(load_snapshot(str(owned_demo(tmp_path)))):
        result = plan.gate(stage, inv)
        assert plan.pending_steps(stage, inv) and result.ran  # its other checks ran
        assert not [r for r in (*result.ran, *result.skipped) if r.startswith("MST0008")], result.skipped


def test_a_gate_renders_its_feature_once(demo_inventory, monkeypatch) -> None:
    """The check of the cluster as the change leaves it (MST0822: a caller the rendered policies would refuse)
    and the owners check (MST0008) look at one rendering: a gate renders its feature once."""
    feature = registry()["authorization-policy"]
    builds, build = [], type(feature).build
    monkeypatch.setattr(type(feature), "build", lambda self, *a: builds.append(a) or build(self, *a))
    gate = feature.gate(demo_inventory, "shop", {**feature.defaults(), "allow_namespaces": ""},
                        read_traffic(MetricsFile(DEMO_METRICS), 3600))
    assert "MST0822" in {m.code for m in gate.findings}  # it looked at the cluster after the change
    assert len(builds) == 1


def test_every_kind_a_feature_renders_keeps_its_owners(demo_inventory) -> None:
    """The kinds whose managedFields are kept when read are those the features write (the demo's renderings)."""
    kinds = set()
    for feature in (f for f in registry().values() if not f.operation):
        scope, params = case(feature)
        before = with_dependencies(feature, cluster_for(feature, demo_inventory), scope)
        rendered = feature.render(params, scope, before)
        kinds |= {(o["apiVersion"], o["kind"]) for o in rendered.objects}
        apply(rendered, before)
    assert kinds and all(keeps_ownership({"apiVersion": a, "kind": k}) for a, k in kinds), sorted(kinds)
