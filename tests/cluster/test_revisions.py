"""Revisions and upgrades, on a cluster in the middle of a canary upgrade from 1.26 (revision 1-26) to 1.27 (1-27):
tags default → 1-26 and canary → 1-27; shop labelled istio-injection=enabled, payments istio.io/rev=1-27, orders
istio.io/rev=canary with one pod on each revision; the ingress gateway still on 1-26."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from analysis.base import Context, Message, analyze_checks, run
from app.cli import main
from cluster import revisions
from cluster.changes import clean
from cluster.inventory import Inventory, build_inventory
from cluster.model import Ref
from cluster.sources import load_snapshot
from explain import report as explain
from features.base import apply, registry, validate_params
from planner import plan
from tests.rehearsal import rehearse_to_done, runner

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "upgrade" / "cluster.yaml"


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return build_inventory(load_snapshot(str(FIXTURE)))


def codes(inventory: Inventory, prefix: str = "MST09") -> dict[str, list[Message]]:
    out: dict[str, list[Message]] = {}
    for m in run(analyze_checks(), Context(inventory)):
        if m.code.startswith(prefix):
            out.setdefault(m.code, []).append(m)
    return out


# ---------------------------------------------------------------- inventory facts


def test_each_labelling_style_resolves_through_the_tags_to_a_revision_and_version(inv):
    nss = revisions.namespace_revisions(inv)
    got = {n: (nss[n].label, nss[n].injects, nss[n].revision, nss[n].version) for n in ("shop", "payments", "orders")}
    assert got == {"shop": ("istio-injection=enabled", "default", "1-26", "1.26.4"),
                   "payments": ("istio.io/rev=1-27", "1-27", "1-27", "1.27.3"),
                   "orders": ("istio.io/rev=canary", "canary", "1-27", "1.27.3")}


def test_moving_the_default_tag_moves_what_the_legacy_label_resolves_to(inv):
    moved = inv.with_changes(apply=registry()["default-tag"].render({}, "mesh", inv).objects)
    assert revisions.namespace_revisions(moved)["shop"].revision == "1-27"
    assert revisions.tags(moved) == {"default": "1-27", "canary": "1-27"}


def test_every_proxy_has_its_version_and_the_revision_it_is_connected_to(inv):
    got = {(p.kind, p.pod.name): (p.version, p.revision) for p in revisions.proxies(inv)}
    assert got == {("gateway", "istio-ingressgateway-6b7c8-zt5mn"): ("1.26.4", "1-26"),
                   ("sidecar", "orders-7f9c8-old01"): ("1.26.4", "1-26"),
                   ("sidecar", "orders-84d2b-new01"): ("1.27.3", "1-27"),
                   ("sidecar", "ledger-66b8d-kq2xw"): ("1.27.3", "1-27"),
                   ("sidecar", "frontend-5c7f9-abcde"): ("1.26.4", "1-26")}


def test_pods_whose_proxy_differs_from_what_their_namespace_injects(inv):
    assert [p.pod.name for p in revisions.stale_pods(inv)] == ["orders-7f9c8-old01"]


def test_inventory_json_has_an_upgrade_block_with_per_namespace_progress(capsys):
    assert main(["inventory", "--source", str(FIXTURE), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    up = report["upgrade"]
    assert (up["from"], up["to"], up["default_tag"]) == (
        {"revision": "1-26", "version": "1.26.4"}, {"revision": "1-27", "version": "1.27.3"}, "1-26")
    assert {n["namespace"]: (n["state"], n["on_new"], n["on_old"]) for n in up["namespaces"]} == {
        "orders": ("restart pending", 1, 1), "payments": ("done", 1, 0), "shop": ("not started", 0, 1)}
    row = next(r for r in report["namespaces"] if r["name"] == "orders")
    assert (row["label"], row["resolved_revision"], row["version"]) == ("istio.io/rev=canary", "1-27", "1.27.3")
    assert [p["pod"] for p in report["stale_pods"]] == ["orders-7f9c8-old01"]
    versions = {(c["name"], c["version"], c["revision"]) for c in report["components"]}
    assert {("istio-ingressgateway-6b7c8-zt5mn", "1.26.4", "1-26"), ("istiod-1-27-7d4b9c-x7", None, None)} <= versions


def test_no_upgrade_block_with_one_revision(capsys):
    assert main(["inventory", "--source", "demo", "--format", "json"]) == 0
    assert "upgrade" not in json.loads(capsys.readouterr().out)


def test_the_headline_names_both_versions_during_an_upgrade(capsys, demo_inventory):
    assert main(["inventory", "--source", str(FIXTURE)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "Istio 1.26.4 → 1.27.3" in first and "default tag on 1-26" in first
    assert revisions.headline(demo_inventory) == "Istio 1.27.3"


def test_explain_of_a_workload_shows_each_pods_proxy_when_they_differ(inv, demo_inventory):
    facts = explain.explain(inv, "orders/orders").subjects[0].facts
    assert "  orders-7f9c8-old01: proxy 1.26.4, revision 1-26 — restart it to move it" in facts
    assert "  orders-84d2b-new01: proxy 1.27.3, revision 1-27" in facts
    same = explain.explain(demo_inventory, "shop/frontend").subjects[0].facts
    assert not any("run different proxies" in f for f in same)


def test_install_method_is_read_from_the_istiod_deployments_marks(inv):
    assert revisions.install_method(inv).method == "istioctl"
    d = clean(inv.get("Deployment", "istio-system", "istiod-1-26").raw)
    d["metadata"]["annotations"] = {"meta.helm.sh/release-name": "istiod", "meta.helm.sh/release-namespace":
                                    "istio-system"}
    helm = inv.with_changes(apply=[d])
    assert revisions.install_method(helm).release == "istiod"
    assert any(c.startswith("helm install istiod-1-28 istio/istiod -n istio-system --version 1.28.0 --set "
                            "revision=1-28") for c in revisions.install_commands(helm, "1-28", "1.28.0"))


# ---------------------------------------------------------------- checks


def test_gateway_left_on_the_old_revision_is_flagged(inv):
    (m,) = codes(inv)["MST0901"]
    assert m.ref == Ref("Pod", "istio-system", "istio-ingressgateway-6b7c8-zt5mn")
    assert "kubectl rollout restart deployment/istio-ingressgateway -n istio-system" in m.hint


def _node_proxies() -> list[dict[str, Any]]:
    """A ztunnel left on 1-26 (as its Helm chart labels it) and a waypoint istiod 1-27 deployed."""
    ztunnel = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "ztunnel-abcde", "namespace": "istio-system",
                            "labels": {"app": "ztunnel", "istio.io/rev": "1-26"},
                            "ownerReferences": [{"kind": "DaemonSet", "name": "ztunnel", "controller": True}]},
               "spec": {"containers": [{"name": "istio-proxy", "image": "docker.io/istio/ztunnel:1.26.4-distroless",
                                        "args": ["proxy", "ztunnel"]}]}}
    waypoint = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "waypoint-7c9d-k2m4p", "namespace": "payments",
                             "labels": {"gateway.networking.k8s.io/gateway-name": "waypoint",
                                        "istio.io/waypoint-for": "service", "istio.io/rev": "1-27"},
                             "ownerReferences": [{"kind": "ReplicaSet", "name": "waypoint-7c9d", "controller": True}]},
                "spec": {"containers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.27.3",
                                         "args": ["proxy", "waypoint", "--domain", "payments.svc.cluster.local"]}]}}
    return [ztunnel, waypoint]


def test_ztunnel_and_waypoint_proxies_have_their_version_and_revision(inv):
    got = {(p.kind, p.pod.name): (p.version, p.revision) for p in revisions.proxies(inv.with_changes(
        pods=_node_proxies())) if p.kind in ("ztunnel", "waypoint")}
    assert got == {("ztunnel", "ztunnel-abcde"): ("1.26.4", "1-26"), ("waypoint", "waypoint-7c9d-k2m4p"):
                   ("1.27.3", "1-27")}


def test_ztunnel_left_on_the_old_revision_is_flagged(inv):
    refs = {m.ref.name for m in codes(inv.with_changes(pods=_node_proxies()))["MST0901"]}
    assert refs == {"istio-ingressgateway-6b7c8-zt5mn", "ztunnel-abcde"}


def test_default_tag_left_on_the_old_revision_while_namespaces_move(inv):
    (m,) = codes(inv)["MST0902"]
    assert "orders, payments already inject from 1-27" in m.message
    moved = inv.with_changes(apply=registry()["default-tag"].render({}, "mesh", inv).objects)
    assert "MST0902" not in codes(moved)


def _pod_at(inv: Inventory, name: str, version: str, rev: str) -> dict[str, Any]:
    p = next(p for p in revisions.proxies(inv) if p.pod.name == name)
    raw = revisions.restarted(inv, p, revisions.revision(inv, rev))
    for c in raw["spec"]["initContainers"]:
        c["image"] = revisions.with_tag(c["image"], version)
    return raw


def test_proxies_outside_the_supported_skew(inv):
    assert "MST0903" not in codes(inv)  # 1.26 proxies on istiod 1.26, 1.27 on 1.27
    behind = _pod_at(inv, "ledger-66b8d-kq2xw", "1.25.2", "1-27")  # istiod two minors ahead
    ahead = _pod_at(inv, "frontend-5c7f9-abcde", "1.27.3", "1-26")  # proxy ahead of its istiod
    one_behind = _pod_at(inv, "orders-84d2b-new01", "1.26.4", "1-27")  # supported
    found = {m.ref.name: m.message for m in codes(inv.with_changes(pods=[behind, ahead, one_behind]))["MST0903"]}
    assert set(found) == {"ledger-66b8d-kq2xw", "frontend-5c7f9-abcde"}
    assert "2 minor versions ahead" in found["ledger-66b8d-kq2xw"]
    assert "ahead of its istiod" in found["frontend-5c7f9-abcde"]


def test_a_revision_with_no_namespace_and_no_pods_is_ready_to_remove(inv):
    assert "MST0904" not in codes(inv)
    done = _walk(inv, until="Remove the old revision")
    (m,) = codes(done)["MST0904"]
    assert m.ref == Ref("Deployment", "istio-system", "istiod-1-26")


def test_removing_a_revision_with_proxies_left_on_it_is_refused_and_found(inv):
    stage = next(s for s in plan.new_plan("upgrade", inv).stages if s.title == "Remove the old revision")
    assert {"MST0907", "MST0003"} <= {m.code for m in plan.gate(stage, inv).messages if m.level == "error"}
    rendered = registry()["single-revision"].render({}, "mesh", inv)
    orphaned = {m.ref.name for m in codes(apply(rendered, inv))["MST0905"]}
    assert orphaned == {"istio-ingressgateway-6b7c8-zt5mn", "orders-7f9c8-old01", "frontend-5c7f9-abcde"}


# ---------------------------------------------------------------- the upgrade template


def _restarts(stage: plan.StageSpec, inv: Inventory) -> list[dict[str, Any]]:
    """What `kubectl rollout restart` in the stage's notes does, as the overlay sees it."""
    return [pod for s in stage.steps for pod in registry()[s.feature].restarted_pods(s.params, s.scope, inv)]


def _walk(inv: Inventory, until: str | None = None) -> Inventory:
    for stage in plan.new_plan("upgrade", inv).stages:
        if stage.title == until:
            return inv
        if stage.done:
            continue
        inv = _applied(stage, inv)
    return inv


def _applied(stage: plan.StageSpec, inv: Inventory) -> Inventory:
    """The stage applied as the overlay applies it: its objects and deletions, what its install commands make
    (Feature.commanded), then its restarts."""
    rendered = [registry()[s.feature].render(s.params, s.scope, inv) for s in stage.steps]
    objects = [o for r in rendered for o in r.objects]
    changed = inv.with_changes(apply=objects, delete=[d for r in rendered for d in r.delete])
    made = [o for s in stage.steps for o in registry()[s.feature].commanded(
        validate_params(registry()[s.feature], s.params), s.scope, changed)]
    changed = changed.with_changes(apply=made) if made else changed
    return changed.with_changes(pods=_restarts(stage, changed))


def test_the_upgrade_template_stages_in_order(inv):
    stages = plan.new_plan("upgrade", inv).stages
    assert [(s.title, s.done) for s in stages] == [
        ("Install the new revision", True), ("Move orders to the new revision", False),
        ("Move payments to the new revision", True), ("Move shop to the new revision", False),
        ("Move the gateways to the new revision", False), ("Point the default tag at the new revision", False),
        ("Remove the old revision", False)]


def test_every_stage_renders_gates_and_applied_in_order_leaves_no_pod_on_the_old_revision(inv):
    stages = [s for s in plan.new_plan("upgrade", inv).stages if not s.done]
    baseline = plan.error_keys(inv)
    now = inv
    for stage in stages:
        gate = plan.gate(stage, now)
        assert gate.passed, (stage.title, [f"{m.code} {m.message}" for m in gate.messages])
        cfg = plan.config(stage, now)
        assert cfg.apply_yaml and cfg.rollback_yaml, stage.title
        for doc in yaml.safe_load_all(cfg.apply_yaml):
            assert doc is None or doc["metadata"]["name"]
        now = _applied(stage, now)
        result = plan.exit_check(stage, now, baseline | plan.error_keys(inv))
        assert result.passed, (stage.title, result)
    assert [r.revision for r in now.revisions] == ["1-27"]
    assert {p.revision for p in revisions.proxies(now)} == {"1-27"}
    assert {p.version for p in revisions.proxies(now)} == {"1.27.3"}
    assert revisions.upgrade(now) is None and not revisions.stale_pods(now)
    assert not codes(now)


def test_the_upgrade_stages_gate_on_a_ready_new_istiod(inv):
    stage = next(s for s in plan.new_plan("upgrade", inv).stages if s.title == "Move shop to the new revision")
    istiod = next(p for p in inv.pods if p.name.startswith("istiod-1-27"))
    down = revisions.restarted(inv, revisions.Proxy("sidecar", "istiod", istiod, None, "1-27"),
                               revisions.revision(inv, "1-27"))
    down["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    gate = plan.gate(stage, inv.with_changes(pods=[down]))
    assert "MST0906" in {m.code for m in gate.messages if m.level == "error"}


def test_each_stage_is_detected_once_applied_and_rolls_back_to_where_it_started(inv):
    """render → apply (and the restarts its notes ask for) → detection sees it → rollback (and restarts) → the
    objects it touched are as they were, and detection no longer sees it."""
    now = inv
    for stage in [s for s in plan.new_plan("upgrade", inv).stages if not s.done]:
        for step in stage.steps:
            feature = registry()[step.feature]
            back = feature.rollback(step.params, step.scope, now)
            after = _applied(stage, now)
            assert any(o.scope == step.scope for o in feature.detect(after)), step
            restored = after.with_changes(apply=back.objects, delete=back.delete)
            restored = restored.with_changes(pods=_restarts(stage, restored))
            # every object it touched is as it was (a namespace the stage only restarted keeps its label: its
            # pods go back only when relabelled, a change of its own)
            for o in back.objects:
                key = (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
                assert clean(restored.get(*key).raw) == clean(now.get(*key).raw), key
            assert {(r.revision, r.tags) for r in restored.revisions} == {(r.revision, r.tags) for r in now.revisions}
            if step.feature != "revision-label" or revisions.namespace_revisions(now)[step.scope].revision != "1-27":
                assert not any(o.scope == step.scope for o in feature.detect(restored)), step
        now = _applied(stage, now)


def test_upgrade_features_report_nothing_on_a_cluster_with_one_revision(demo_inventory):
    for fid in ("revision-install", "revision-label", "gateway-revision", "default-tag"):
        assert registry()[fid].detect(demo_inventory) == [], fid


def test_a_tag_left_on_a_removed_revision_still_resolves_to_it(inv):
    """Removing 1-26 before moving the default tag: shop's label still resolves to 1-26, whose proxies are now
    connected to nothing (MST0905)."""
    removed = apply(registry()["single-revision"].render({}, "mesh", inv), inv)
    assert [r.revision for r in removed.revisions] == ["1-27"]
    shop = revisions.namespace_revisions(removed)["shop"]
    assert (shop.injects, shop.revision, shop.version) == ("default", "1-26", None)
    assert "frontend-5c7f9-abcde" in {m.ref.name for m in codes(removed)["MST0905"]}


def test_an_injected_gateway_is_moved_by_its_label_and_keeps_image_auto(inv):
    """A gateway installed with Helm's gateway chart is injected (image `auto`): only its revision label moves;
    one installed with its own proxy image (istioctl) also gets the new revision's image."""
    istioctl = registry()["gateway-revision"].render({}, "mesh", inv).objects[0]["spec"]["template"]
    assert istioctl["metadata"]["labels"]["istio.io/rev"] == "1-27"
    assert istioctl["spec"]["containers"][0]["image"] == "docker.io/istio/proxyv2:1.27.3"
    d = clean(inv.get("Deployment", "istio-system", "istio-ingressgateway").raw)
    template = d["spec"]["template"]
    template["metadata"]["annotations"] = {"inject.istio.io/templates": "gateway"}
    template["metadata"]["labels"]["sidecar.istio.io/inject"] = "true"
    template["spec"]["containers"][0]["image"] = "auto"
    helm = registry()["gateway-revision"].render({}, "mesh", inv.with_changes(apply=[d])).objects[0]
    assert helm["spec"]["template"]["metadata"]["labels"]["istio.io/rev"] == "1-27"
    assert helm["spec"]["template"]["spec"]["containers"][0]["image"] == "auto"


def test_the_upgrade_template_is_rehearsed_to_done_with_no_pod_left_on_the_old_revision(inv, tmp_path, monkeypatch,
                                                                                           capsys):
    """The whole canary upgrade walked on the plan's overlay from the CLI: every gate passes without an override,
    each stage's restarts and deletions are played, and the overlay ends with one revision that every proxy runs."""
    from app.cli import main
    from planner import overlay, stages
    from state.store import Store

    db = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("MESHSTEP_DATABASE_URL", db)
    monkeypatch.setenv("MESHSTEP_ACTOR", "alice")
    source = ["--source", str(FIXTURE)]
    assert main(["plan", "new", "--template", "upgrade", "--name", "up", *source]) == 0
    rehearse_to_done(runner(capsys), "up", *source)
    store = Store.open(db)
    try:
        plan = stages.find_plan(store, str(FIXTURE), "up")
        assert plan.mode == "rehearsal" and {s.status for s in plan.stages} == {"done"}
        end = overlay.overlay_at(plan, inv, plan.stages[-1], including=True).inventory
    finally:
        store.close()
    assert [r.revision for r in end.revisions] == ["1-27"]
    assert {p.revision for p in revisions.proxies(end)} == {"1-27"}
    assert not revisions.stale_pods(end)


# ---------------------------------------------------------------- restarts as a rehearsal plays them

_ISTIO = ("istio-init", "istio-validation", "istio-proxy")


def _sidecar_layout(spec: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """Where the injector put its containers: (list, name, restartPolicy)."""
    return [(key, c["name"], c.get("restartPolicy")) for key in ("initContainers", "containers")
            for c in spec.get(key) or () if c["name"] in _ISTIO]


def _reference_layout(reference: Path, name: str) -> list[tuple[str, str, str | None]]:
    deployment = next(d for d in yaml.safe_load_all((reference / "inject" / name).read_text()) if d)
    return _sidecar_layout(deployment["spec"]["template"]["spec"])


def _catalog_restarted(inventory: Inventory) -> dict[str, Any]:
    """shop/catalog (its pod predates shop's injection label) as the injection step's restart brings it back."""
    pods = registry()["sidecar-injection"].restarted_pods({"revision": ""}, "shop", inventory)
    assert [p["metadata"]["name"] for p in pods] == ["catalog-ls889pddtk-qx9dz"]  # the others have their sidecar
    return pods[0]


def test_a_rehearsed_restart_injects_the_native_sidecar_the_revision_injects(demo_inventory, reference):
    pod = _catalog_restarted(demo_inventory)
    assert _sidecar_layout(pod["spec"]) == _reference_layout(reference, "hello.yaml.injected")
    after = demo_inventory.with_changes(pods=[pod])
    back = after.pod("shop", pod["metadata"]["name"])
    assert (back.sidecar.shape, back.sidecar.revision) == ("native", "1-27") and after.in_mesh(back)
    assert [c.name for c in back.spec.containers] == ["catalog", "catalog-db"]  # the app's own, as they were


def test_a_rehearsed_restart_follows_an_install_that_injects_classic_sidecars(demo_inventory, reference):
    istiod = next(d for d in demo_inventory.of_kind("Deployment") if d.labels.get("app") == "istiod")
    raw = clean(istiod.raw)
    raw["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "ENABLE_NATIVE_SIDECARS",
                                                                    "value": "false"})
    pod = _catalog_restarted(demo_inventory.with_changes(apply=[raw]))
    assert _sidecar_layout(pod["spec"]) == _reference_layout(reference, "hello-old-version.yaml.injected")
    back = demo_inventory.with_changes(pods=[pod]).pod("shop", pod["metadata"]["name"])
    assert (back.sidecar.shape, back.sidecar.revision) == ("classic", "1-27")


def test_a_rehearsed_restart_takes_the_sidecars_out_once_the_namespace_no_longer_injects(demo_inventory):
    shop = clean(next(n for n in demo_inventory.of_kind("Namespace") if n.name == "shop").raw)
    shop["metadata"]["labels"] = {k: v for k, v in shop["metadata"]["labels"].items()
                                  if k not in ("istio.io/rev", "istio-injection")}
    unlabelled = demo_inventory.with_changes(apply=[shop])
    pods = registry()["sidecar-injection"].restarted_pods({"revision": ""}, "shop", unlabelled)
    injected = {p.name for p in demo_inventory.pods_by_namespace["shop"] if p.sidecar is not None}
    assert {p["metadata"]["name"] for p in pods} == injected and injected
    after = unlabelled.with_changes(pods=pods)
    assert all(p.sidecar is None and not _sidecar_layout({"initContainers": [{"name": c.name} for c in
                                                                             p.spec.init_containers],
                                                          "containers": [{"name": c.name} for c in
                                                                         p.spec.containers]})
               for p in after.pods_by_namespace["shop"])
