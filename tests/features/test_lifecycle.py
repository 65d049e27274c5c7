"""Every registered feature, on the demo cluster: render → valid objects → applied, detection finds it on in that
scope → rolled back, detection finds it off again. A new feature module is picked up by `registry()`; give it a
case below when its defaults cannot render in the default scope."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from cluster.inventory import Inventory
from features.base import MESH, Feature, apply, registry
from features.validation import validate_object

# feature → (scope, params): a scope of the demo cluster where the feature is off, and what it needs to render.
# The demo already has request-routing and circuit-breaking in shop, egress-service-entry in payments, mTLS
# PERMISSIVE, metrics and tracing mesh-wide; ingress-gateway in shop would clash with shop-gateway (IST0145).
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "access-logging": (MESH, {}),
    "ambient-mode": ("legacy", {}),
    "ambient-policies": ("orders", {}),
    "authorization-policy": ("shop", {}),
    "circuit-breaking": ("payments", {}),
    "egress-registry-only": (MESH, {}),
    "egress-service-entry": ("shop", {"host": "api.example.com"}),
    "fault-injection": ("shop", {"abort_status": 503}),
    "ingress-gateway": ("payments", {}),
    "local-rate-limit": ("shop", {}),
    "metrics": ("payments", {}),
    "mtls-permissive": ("shop", {}),
    "mtls-strict": ("shop", {}),
    "request-authentication": ("shop", {"issuer": "https://id.example.com",
                                        "jwks_uri": "https://id.example.com/.well-known/jwks.json"}),
    "request-routing": ("payments", {}),
    "sidecar-injection": ("legacy", {}),
    "sidecar-scope": ("shop", {}),
    "timeouts-retries": ("shop", {}),
    "tracing": ("shop", {}),
    "traffic-shifting": ("shop", {}),
    "waypoint": ("store", {}),
}
# Features the demo cannot have, with their case on the ambient fixture (tests/fixtures/ambient): a waypoint is a
# Gateway API Gateway, and the demo serves no Gateway API.
ON_AMBIENT = ("waypoint", "ambient-policies")

# The canary upgrade's stages need two istiod revisions, which the demo has not: their render → apply → detect →
# rollback runs on the mid-upgrade fixture (tests/cluster/test_revisions.py).
UPGRADE_STAGES = tuple(f.id for f in registry().values() if f.operation)


def cluster_for(feature: Feature, demo: Inventory) -> Inventory:
    from tests.features.corpus import ambient

    return ambient() if feature.id in ON_AMBIENT else demo


def case(feature: Feature) -> tuple[str, dict[str, Any]]:
    return CASES.get(feature.id, (MESH if MESH in feature.scopes else "shop", {}))


def on_in(feature: Feature, inv: Inventory, scope: str) -> bool:
    return any(o.scope == scope for o in feature.detect(inv))


def satisfied(dep: Feature, inv: Inventory, scope: str) -> bool:
    """As the gate reads a dependency: on anywhere for a mesh-wide feature, else in the scope or mesh-wide."""
    scopes = {o.scope for o in dep.detect(inv)}
    return bool(scopes) if scope == MESH else bool(scopes & {scope, MESH})


def dependency_errors(feature: Feature, inv: Inventory, scope: str) -> list[str]:
    return [m.message for m in feature.checks(inv, scope, feature.defaults()) if m.code == "MST0003"]


def with_dependencies(feature: Feature, inv: Inventory, scope: str) -> Inventory:
    """The inventory with every missing dependency of `feature` turned on in `scope` (theirs first)."""
    for dep_id in feature.depends_on:
        dep = registry()[dep_id]
        if satisfied(dep, inv, scope):
            continue
        inv = with_dependencies(dep, inv, scope)
        inv = apply(dep.render(case(dep)[1], scope, inv), inv)
        assert on_in(dep, inv, scope), f"dependency {dep_id} is still off in {scope} once applied"
    return inv


@pytest.mark.parametrize("feature", [f for f in registry().values() if f.id not in UPGRADE_STAGES],
                         ids=lambda f: f.id)
def test_render_apply_detect_rollback(feature: Feature, demo_inventory: Inventory):
    scope, params = case(feature)
    before = with_dependencies(feature, cluster_for(feature, demo_inventory), scope)
    assert not dependency_errors(feature, before, scope)
    assert not on_in(feature, before, scope), f"{feature.id} is already on in {scope}: pick another scope"

    rendered = feature.render(params, scope, before)
    assert rendered.objects, f"{feature.id} rendered nothing for {scope}"
    for obj in rendered.objects:
        validate_object(obj, before)
    after = apply(rendered, before)
    assert on_in(feature, after, scope), f"{feature.id}: detection does not see what render produced"

    undo = feature.rollback(params, scope, before)
    assert undo.rollback
    off = apply(undo, after)
    assert not on_in(feature, off, scope), f"{feature.id}: still detected in {scope} after its rollback"
    # what the feature touched is back as it was: nothing of the rendering is left behind
    for obj in rendered.objects:
        meta = obj["metadata"]
        was, now = before.get(obj["kind"], meta.get("namespace"), meta["name"]), \
            off.get(obj["kind"], meta.get("namespace"), meta["name"])
        assert (was is None) == (now is None), f"{obj['kind']} {meta['name']} not restored/deleted by rollback"
        if was is not None:
            assert now.raw.get("spec") == was.raw.get("spec") and now.labels == was.labels


def test_every_registered_feature_has_a_case():
    """Default scopes are a fallback; a known, deliberate scope per feature keeps the test above meaningful."""
    assert sorted([*CASES, *UPGRADE_STAGES]) == sorted(registry())


@pytest.mark.parametrize("feature", [f for f in registry().values() if f.depends_on and "namespace" in f.scopes],
                         ids=lambda f: f.id)
def test_gate_names_a_missing_dependency(feature: Feature, demo_inventory: Inventory):
    """In a namespace where nothing is on, the gate refuses every namespaced feature that depends on another."""
    scope = "legacy"
    missing = [d for d in feature.depends_on if not satisfied(registry()[d], demo_inventory, scope)]
    errors = dependency_errors(feature, demo_inventory, scope)
    assert [m for m in errors if any(f"depends on {d}," in m for d in missing)] == errors
    assert len(errors) == len(missing)


@pytest.mark.parametrize("feature", [f for f in registry().values() if f.id not in UPGRADE_STAGES],
                         ids=lambda f: f.id)
def test_every_scope_that_renders_is_detected_and_rolled_back(feature: Feature, demo_inventory: Inventory):
    """Beyond the chosen case: in every scope of the demo where the feature renders (with its dependencies
    applied first) and is off, render and detection agree on the scope, and the rollback undoes it."""
    from cluster.errors import MeshstepError

    tried = []
    cluster = cluster_for(feature, demo_inventory)
    for scope in [MESH, *cluster.namespace_names()]:
        try:
            before = with_dependencies(feature, cluster, scope)
            rendered = feature.render(case(feature)[1], scope, before)
        except MeshstepError:
            continue  # this scope cannot have it (wrong kind of scope, nothing to act on): said, not rendered
        if on_in(feature, before, scope):
            continue
        after = apply(rendered, before)
        assert [o.scope for o in feature.detect(after) if o.scope == scope] , f"{feature.id} not seen in {scope}"
        assert not on_in(feature, apply(feature.rollback(case(feature)[1], scope, before), after), scope), scope
        tried.append(scope)
    assert case(feature)[0] in tried


@pytest.mark.parametrize("feature", [f for f in registry().values() if "namespace" in f.scopes], ids=lambda f: f.id)
def test_the_root_namespace_is_not_a_namespace_scope(feature: Feature, demo_inventory: Inventory):
    """Selector-less config in istio-system governs the whole mesh: `--scope istio-system` would quietly turn a
    feature on everywhere (a STRICT PeerAuthentication, a RequestAuthentication…), so it is refused."""
    from cluster.errors import MeshstepError

    with pytest.raises(MeshstepError, match="root namespace"):
        feature.render(case(feature)[1], demo_inventory.root_namespace, demo_inventory)


def test_sidecar_scope_extends_the_namespaces_own_sidecar(demo_inventory: Inventory):
    # shop already limits its egress to registered hosts with a selector-less Sidecar of its own name
    own = {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar", "metadata": {"name": "team", "namespace": "shop"},
           "spec": {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}}
    inv = demo_inventory.with_changes(apply=[own])
    (sc,) = registry()["sidecar-scope"].render({}, "shop", inv).objects
    assert sc["metadata"]["name"] == "team" and sc["spec"]["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
    assert sc["spec"]["egress"] == [{"hosts": ["./*", "istio-system/*"]}]


def test_traffic_shifting_names_the_port_of_a_multi_port_service(demo_inventory: Inventory):
    raw = copy.deepcopy(demo_inventory.get("Service", "shop", "reviews").raw)
    raw["spec"]["ports"] = [*raw["spec"]["ports"], {"name": "grpc-admin", "port": 9555, "targetPort": 9555}]
    inv = demo_inventory.with_changes(apply=[raw])
    assert len(inv.service("shop", "reviews").ports) == 2
    rendered = registry()["traffic-shifting"].render({}, "shop", inv)  # refused (IST0112) if a route lacks the port
    vs = next(o for o in rendered.objects if o["kind"] == "VirtualService")
    assert {d["destination"]["port"]["number"] for r in vs["spec"]["http"] for d in r["route"]} == {9080}


def test_egress_registry_only_patches_the_mesh_config_istiod_reads(tmp_path):
    from cluster.inventory import build_inventory
    from cluster.sources import files_snapshot

    f = tmp_path / "mesh.yaml"
    f.write_text("\n---\n".join(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: istio-system}}\n"
        f"data: {{mesh: 'rootNamespace: istio-system'}}" for name in ("istio-canary", "istio")))
    inv = build_inventory(files_snapshot([f]))
    assert inv.mesh_config_map.name == "istio"  # the default revision's, though the canary's comes first
    (cm,) = registry()["egress-registry-only"].render({}, MESH, inv).objects
    assert cm["metadata"]["name"] == "istio" and "REGISTRY_ONLY" in cm["data"]["mesh"]
    after = apply(registry()["egress-registry-only"].render({}, MESH, inv), inv)
    assert [o.evidence for o in registry()["egress-registry-only"].detect(after)] == [["ConfigMap istio-system/istio"]]
