"""Revisions move whole (issue 25, point 5), on the mid-upgrade fixture (1-26 → 1-27, istioctl): a gateway moved to
the new revision takes every reference its proxy has to its control plane with it; the old revision is not removed
while anything still names it; removals are written so that `kubectl apply` really removes them; and the upgrade
plan exports on a half-done upgrade. Canary upgrades: https://istio.io/latest/docs/setup/upgrade/canary/"""
from __future__ import annotations

import shlex
from typing import Any

import pytest
import yaml

from analysis.base import Context, analyze_checks, run
from app.cli import main
from cluster import revisions
from cluster.changes import clean
from cluster.inventory import Inventory, build_inventory
from cluster.sources import load_snapshot
from features.base import ROLLBACK, apply, registry, without_record
from planner import plan
from tests.cluster.test_revisions import FIXTURE, _walk
from tests.conftest import REFERENCE
from tests.kubectl import kubectl, live_kubectl

GOLDEN = REFERENCE / "install" / "all_on.golden.yaml"  # istioctl manifest generate: istiod and the gateways
GATEWAY = ("Deployment", "istio-system", "istio-ingressgateway")


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return build_inventory(load_snapshot(str(FIXTURE)))


def _proxy(d: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "istio-proxy")


def _env(d: dict[str, Any], name: str) -> str | None:
    return next((e.get("value") for e in _proxy(d).get("env") or () if e["name"] == name), None)


def _config_map(d: dict[str, Any], volume: str) -> str | None:
    return next((v["configMap"]["name"] for v in d["spec"]["template"]["spec"].get("volumes") or ()
                 if v["name"] == volume), None)


# ---------------------------------------------------------------- a gateway moves whole


def test_moving_a_gateway_moves_its_ca_address_and_mesh_config_and_its_rollback_restores_them(inv):
    """istioctl's gateway chart names its revision's istiod in CA_ADDR and mounts that revision's mesh config
    (whose defaultConfig.discoveryAddress is where the proxy gets its config): moved by label and image alone, the
    gateway would run 1.27 on 1-26's control plane, absent from `istioctl proxy-status --revision 1-27`."""
    feature = registry()["gateway-revision"]
    rendered = feature.render({}, "mesh", inv)
    (moved,) = rendered.objects
    assert _env(moved, "CA_ADDR") == "istiod-1-27.istio-system.svc:15012"
    assert _config_map(moved, "config-volume") == "istio-1-27"
    assert _config_map(moved, "istiod-ca-cert") == "istio-ca-root-cert"  # every revision writes the same root cert
    after = apply(rendered, inv)
    assert not [u for u in revisions.uses(after, "1-26") if u.startswith(f"Deployment {GATEWAY[1]}/{GATEWAY[2]}")]
    back = apply(feature.rollback({}, "mesh", after), after)
    restored = clean(back.get(*GATEWAY).raw)
    assert _env(restored, "CA_ADDR") == "istiod-1-26.istio-system.svc:15012"
    assert _config_map(restored, "config-volume") == "istio-1-26"


def test_a_gateway_on_the_default_tag_moves_as_istioctl_renders_it_for_the_new_revision(inv):
    """The ingress gateway exactly as `istioctl manifest generate` renders it for the unnamed revision (CA_ADDR
    istiod.istio-system.svc, the `istio` mesh config), in the mid-upgrade cluster: moved, it is what the same chart
    renders with revision 1-27 — CA_ADDR `istiod-{{ .Values.revision }}`, mesh config `istio-{{ .Values.revision }}`,
    the revision's label and annotation and proxy image — and nothing else of it changes."""
    golden = next(d for d in yaml.safe_load_all(GOLDEN.read_text()) if d and d["kind"] == "Deployment"
                  and d["metadata"]["name"] == "istio-ingressgateway")
    del golden["spec"]["template"]["spec"]["affinity"]  # Helm's nulls, which no API server stores
    (moved,) = registry()["gateway-revision"].render({}, "mesh", inv.with_changes(apply=[golden])).objects
    expected = clean(golden)
    template = expected["spec"]["template"]
    for where in (expected["metadata"]["labels"], template["metadata"]["labels"], template["metadata"]["annotations"]):
        where["istio.io/rev"] = "1-27"
    proxy = _proxy(expected)
    proxy["image"] = "registry.istio.io/testing/proxyv2:1.27.3"
    next(e for e in proxy["env"] if e["name"] == "CA_ADDR")["value"] = "istiod-1-27.istio-system.svc:15012"
    next(v for v in template["spec"]["volumes"] if v["name"] == "config-volume")["configMap"]["name"] = "istio-1-27"
    assert without_record(clean(moved), ROLLBACK + "gateway-revision") == expected


def test_an_injected_gateways_proxy_config_names_the_new_revisions_discovery_address(inv):
    """A gateway whose template carries the proxy config (PROXY_CONFIG, as the injector renders it from the
    revision's mesh config, or the proxy.istio.io/config annotation) moves its discoveryAddress with it."""
    d = revisions.copy_of(inv.get(*GATEWAY))
    _proxy(d)["env"].append({"name": "PROXY_CONFIG",
                             "value": '{"discoveryAddress":"istiod-1-26.istio-system.svc:15012"}\n'})
    d["spec"]["template"]["metadata"]["annotations"]["proxy.istio.io/config"] = (
        "discoveryAddress: istiod-1-26.istio-system.svc:15012\nholdApplicationUntilProxyStarts: true\n")
    (moved,) = registry()["gateway-revision"].render({}, "mesh", inv.with_changes(apply=[d])).objects
    assert yaml.safe_load(_env(moved, "PROXY_CONFIG")) == {"discoveryAddress": "istiod-1-27.istio-system.svc:15012"}
    assert yaml.safe_load(moved["spec"]["template"]["metadata"]["annotations"]["proxy.istio.io/config"]) == {
        "discoveryAddress": "istiod-1-27.istio-system.svc:15012", "holdApplicationUntilProxyStarts": True}


def test_a_gateway_moved_by_label_and_image_alone_is_flagged_as_not_moved(inv):
    """The move as it was done before: label, annotation and image on 1-27, CA_ADDR and mesh config on 1-26."""
    half = revisions.copy_of(inv.get(*GATEWAY))
    template = half["spec"]["template"]
    template["metadata"]["labels"]["istio.io/rev"] = template["metadata"]["annotations"]["istio.io/rev"] = "1-27"
    _proxy(half)["image"] = "docker.io/istio/proxyv2:1.27.3"
    found = {m.message for m in run(analyze_checks(), Context(inv.with_changes(apply=[half])))
             if m.code == "MST0908"}
    assert found == {
        "labelled for revision 1-27, its env CA_ADDR istiod-1-26.istio-system.svc:15012 names revision 1-26: its "
        "proxies take config and certificates from 1-26 and are missing from `istioctl proxy-status --revision 1-27`",
        "labelled for revision 1-27, its volume config-volume (ConfigMap istio-1-26) names revision 1-26: its "
        "proxies take config and certificates from 1-26 and are missing from `istioctl proxy-status --revision 1-27`"}
    moved = apply(registry()["gateway-revision"].render({}, "mesh", inv), inv)
    assert not [m for m in run(analyze_checks(), Context(moved)) if m.code == "MST0908"]
    assert not [m for m in run(analyze_checks(), Context(inv)) if m.code == "MST0908"]


# ---------------------------------------------------------------- removed only once nothing names it


def test_the_default_tag_stage_repoints_the_tags_service_and_validator(inv):
    """`istiod.istio-system.svc` (the default tag's stable address) and the default validator go with the tag."""
    objects = {(o["kind"], o["metadata"]["name"]): o for o in registry()["default-tag"].render({}, "mesh", inv).objects}
    assert objects[("Service", "istiod")]["spec"]["selector"]["istio.io/rev"] == "1-27"
    assert objects[("Service", "istiod")]["metadata"]["labels"]["istio.io/rev"] == "1-27"
    hook = objects[("ValidatingWebhookConfiguration", "istiod-default-validator")]
    assert hook["webhooks"][0]["clientConfig"]["service"]["name"] == "istiod-1-27"


def test_the_old_revision_is_still_used_by_whatever_names_it(inv):
    used = revisions.uses(inv, "1-26")
    for referrer in ("Deployment istio-system/istio-ingressgateway: env CA_ADDR istiod-1-26.istio-system.svc:15012",
                     "Deployment istio-system/istio-ingressgateway: volume config-volume (ConfigMap istio-1-26)",
                     "Service istio-system/istiod: selects istiod of revision 1-26",
                     "ValidatingWebhookConfiguration istiod-default-validator: calls Service istio-system/istiod-1-26"):
        assert referrer in used, used


def test_removing_the_old_revision_is_refused_while_anything_references_it(inv):
    """Walked to its last stage, the upgrade leaves nothing on 1-26: the removal passes its gate. Each reference
    put back alone refuses it, the referrer named."""
    ready = _walk(inv, until="Remove the old revision")
    stage = next(s for s in plan.new_plan("upgrade", inv).stages if s.title == "Remove the old revision")
    assert plan.gate(stage, ready).passed
    gateway = revisions.copy_of(ready.get(*GATEWAY))
    next(e for e in _proxy(gateway)["env"] if e["name"] == "CA_ADDR")["value"] = "istiod-1-26.istio-system.svc:15012"
    service = revisions.copy_of(ready.get("Service", "istio-system", "istiod"))
    service["spec"]["selector"]["istio.io/rev"] = "1-26"
    validator = revisions.copy_of(ready.get("ValidatingWebhookConfiguration", None, "istiod-default-validator"))
    validator["webhooks"][0]["clientConfig"]["service"]["name"] = "istiod-1-26"
    app = revisions.copy_of(ready.get("Deployment", "payments", "ledger"))  # a proxyless gRPC app reads the mesh config
    app["spec"]["template"]["spec"]["volumes"] = [{"name": "mesh", "configMap": {"name": "istio-1-26"}}]
    for referrer in (gateway, service, validator, app):
        gate = plan.gate(stage, ready.with_changes(apply=[referrer]))
        (m,) = [m for m in gate.messages if m.code == "MST0907"]
        assert m.level == "error" and f"{referrer['kind']} " in m.message
        assert referrer["metadata"]["name"] in m.message, m.message


# ---------------------------------------------------------------- removals that kubectl apply honours


def _namespace_as_labelled() -> dict[str, Any]:
    """shop as `kubectl label namespace shop istio-injection=enabled` (Istio's docs) leaves it: no
    last-applied-configuration, so `kubectl apply` of a manifest that leaves the label out keeps it."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop",
                                                                  "labels": {"istio-injection": "enabled"}}}


def test_moving_a_namespace_removes_istio_injection_under_kubectl_apply_and_its_rollback_removes_the_rev(inv,
                                                                                                      tmp_path):
    feature = registry()["revision-label"]
    rendered = feature.render({}, "shop", inv)
    (ns,) = rendered.objects
    assert ns["metadata"]["labels"] == {"istio.io/rev": "1-27", "istio-injection": None}  # written, not left out
    moved = apply(rendered, inv)
    assert moved.namespaces["shop"].labels == {"istio.io/rev": "1-27"}
    assert revisions.namespace_revisions(moved)["shop"].revision == "1-27"
    back = feature.rollback({}, "shop", moved)
    assert back.objects[0]["metadata"]["labels"] == {"istio-injection": "enabled", "istio.io/rev": None}
    assert apply(back, moved).namespaces["shop"].labels == {"istio-injection": "enabled"}
    (tmp_path / "move.yaml").write_text(rendered.yaml)
    (tmp_path / "back.yaml").write_text(back.yaml)
    with live_kubectl(tmp_path, [_namespace_as_labelled()]) as (run, live):
        code, out = run("apply", "--validate=false", "-f", str(tmp_path / "move.yaml"))
        assert code == 0, out
        assert live["/api/v1/namespaces/shop"]["metadata"]["labels"] == {"istio.io/rev": "1-27"}
        code, out = run("apply", "--validate=false", "-f", str(tmp_path / "back.yaml"))
        assert code == 0, out
        assert live["/api/v1/namespaces/shop"]["metadata"]["labels"] == {"istio-injection": "enabled"}


def test_the_stages_label_command_removes_istio_injection(inv, tmp_path):
    (command,) = [n for n in registry()["revision-label"].render({}, "shop", inv).notes
                  if n.startswith("kubectl label")]
    with live_kubectl(tmp_path, [_namespace_as_labelled()]) as (run, live):
        code, out = run(*shlex.split(command)[1:])
        assert code == 0, out
        assert live["/api/v1/namespaces/shop"]["metadata"]["labels"] == {"istio.io/rev": "1-27"}


# ---------------------------------------------------------------- the plan's export on a half-done upgrade


def test_the_upgrade_plan_exports_on_a_half_done_upgrade(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MESHSTEP_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("MESHSTEP_ACTOR", "alice")
    source = ["--source", str(FIXTURE)]
    assert main(["plan", "new", "--template", "upgrade", "--name", "up", *source]) == 0
    out = tmp_path / "export"
    assert main(["plan", "export", str(out), "--name", "up", *source]) == 0, capsys.readouterr()
    files = {p.name: p for p in out.iterdir()}
    (gateway,) = [o for o in plan.objects_of(files["05-move-the-gateways-to-the-new-revision.yaml"].read_text())
                  if o["kind"] == "Deployment"]
    assert _env(gateway, "CA_ADDR") == "istiod-1-27.istio-system.svc:15012"
    assert _config_map(gateway, "config-volume") == "istio-1-27"
    (shop,) = plan.objects_of(files["04-move-shop-to-the-new-revision.yaml"].read_text())
    assert shop["metadata"]["labels"]["istio-injection"] is None
    deleted = [(o["kind"], o["metadata"]["name"])
               for o in plan.objects_of(files["07-remove-the-old-revision.delete.yaml"].read_text())]
    assert ("Deployment", "istiod-1-26") in deleted and ("ConfigMap", "istio-1-26") in deleted
    assert not [d for d in deleted if d[0] == "Pod"]  # its ReplicaSet's, gone with the Deployment
    applied = {name: path for name, path in files.items()
               if not name.endswith(".delete.yaml") and plan.objects_of(path.read_text())}
    assert "05-move-the-gateways-to-the-new-revision.rollback.yaml" in applied
    with kubectl(tmp_path) as dry_run:
        for name, path in sorted(applied.items()):
            code, output = dry_run(path)
            assert code == 0, f"{name}: {output}"
