"""Changes are merges (issue 12): each numbered defect of the issue, on the demo cluster (cluster/demo) or the demo
with one object changed, through the features' own API and the real CLI entry point."""
from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from analysis.base import Message
from cluster.changes import normalized_yaml
from cluster.inventory import Inventory
from cluster.model import Ref
from features import invariants
from features._gate import render_gated
from features.base import MESH, Feature, Refused, apply, registry

JWT = {"issuer": "https://id.example.com", "jwks_uri": "https://id.example.com/keys"}


def feature(fid: str) -> Feature:
    return registry()[fid]


def changed(inv: Inventory, kind: str, ns: str | None, name: str, edit) -> Inventory:
    """The inventory with one object edited in place (a copy of it)."""
    raw = copy.deepcopy(inv.get(kind, ns, name).raw)
    edit(raw)
    return inv.with_changes(apply=[raw])


def env_of(raw: dict[str, Any], container: str) -> list[dict[str, Any]]:
    c = next(c for c in raw["spec"]["template"]["spec"]["containers"] if c["name"] == container)
    return c.setdefault("env", [])


def same(a: Inventory, b: Inventory, ref: Ref) -> bool:
    x, y = a.get(ref.kind, ref.namespace, ref.name), b.get(ref.kind, ref.namespace, ref.name)
    return normalized_yaml(x and x.raw) == normalized_yaml(y and y.raw)


# ---------------------------------------------------------------- 2: the ingress VirtualService is never taken


@pytest.mark.parametrize("fid, params", [("request-routing", {}), ("timeouts-retries", {}),
                                         ("fault-injection", {"service": "frontend"})])
def test_mesh_routing_never_replaces_the_ingress_virtual_service(demo_inventory, fid, params):
    ingress = demo_inventory.get("VirtualService", "shop", "frontend")
    assert ingress.spec["gateways"] == ["shop-gateway"]
    rendered = feature(fid).render(params, "shop", demo_inventory)
    after = apply(rendered, demo_inventory)
    assert same(demo_inventory, after, ingress.ref), f"{fid} changed the ingress VirtualService"
    # mesh routing for frontend lives in a VirtualService of its own, under a free name
    mesh = [o for o in rendered.objects if o["kind"] == "VirtualService" and "frontend" in o["spec"]["hosts"]]
    assert [o["metadata"]["name"] for o in mesh] == ["frontend-mesh"]
    assert "gateways" not in mesh[0]["spec"]
    assert not list(invariants.config_lost(feature(fid), demo_inventory, rendered))


# ---------------------------------------------------------------- 3: fields a feature does not own are kept


def test_circuit_breaking_keeps_the_limits_a_destination_rule_has(demo_inventory):
    (dr,) = [o for o in feature("circuit-breaking").render({"service": "ratings"}, "shop", demo_inventory).objects]
    pool = dr["spec"]["trafficPolicy"]["connectionPool"]
    assert pool["tcp"] == {"connectTimeout": "2s", "maxConnections": 100}
    assert pool["http"] == {"http1MaxPendingRequests": 64, "maxRequestsPerConnection": 10}  # not the default 100
    assert dr["spec"]["trafficPolicy"]["outlierDetection"]["consecutive5xxErrors"] == 5
    # a limit set explicitly is what the team asks for
    (dr,) = feature("circuit-breaking").render({"service": "ratings", "max_pending": 32}, "shop",
                                               demo_inventory).objects
    assert dr["spec"]["trafficPolicy"]["connectionPool"]["http"] == {"http1MaxPendingRequests": 32,
                                                                     "maxRequestsPerConnection": 10}


def test_traffic_shifting_keeps_timeouts_retries_faults_and_other_routes(demo_inventory):
    extra = {"timeout": "3s", "retries": {"attempts": 2, "perTryTimeout": "1s"},
             "fault": {"delay": {"fixedDelay": "1s", "percentage": {"value": 1.0}}}, "mirror": {"host": "ratings"}}
    admin = {"match": [{"uri": {"prefix": "/admin"}}], "route": [{"destination": {"host": "reviews", "subset": "v1"}}]}

    def edit(raw):
        raw["spec"]["http"][0] |= extra
        raw["spec"]["http"].insert(0, admin)

    inv = changed(demo_inventory, "VirtualService", "shop", "reviews", edit)
    for strategy in ("canary", "blue-green", "header"):
        rendered = feature("traffic-shifting").render({"strategy": strategy}, "shop", inv)
        vs = next(o for o in rendered.objects if o["kind"] == "VirtualService")
        http = vs["spec"]["http"]
        assert http[0] == admin, strategy
        catch_all = [r for r in http if not r.get("match")]
        assert len(catch_all) == 1 and {k: catch_all[0][k] for k in extra} == extra, strategy
        assert not list(invariants.config_lost(feature("traffic-shifting"), inv, rendered)), strategy
    # the tester route takes the same timeout and retries as the route it sits before
    tester = http[1]
    assert tester["match"] == [{"headers": {"x-canary": {"exact": "true"}}}] and tester["timeout"] == "3s"


# ---------------------------------------------------------------- 4: HTTP only to HTTP ports


@pytest.mark.parametrize("fid, params", [
    ("request-routing", {}), ("timeouts-retries", {}), ("fault-injection", {}), ("local-rate-limit", {}),
    ("ingress-gateway", {"host": "db.example.com"})])
def test_a_database_port_never_gets_an_http_route(demo_inventory, fid, params):
    """shop/catalog serves PostgreSQL on 5432 (tcp-db) and an undeclared admin port: nothing HTTP goes there."""
    from cluster.errors import MeshstepError

    assert [p.port for p in demo_inventory.service("shop", "catalog").ports] == [5432, 7070]
    with pytest.raises(MeshstepError, match="catalog.*HTTP|HTTP.*catalog"):
        feature(fid).render(params | {"service": "catalog"}, "shop", demo_inventory)


def test_a_multi_port_service_is_routed_on_its_http_port_only(demo_inventory):
    def edit(raw):  # catalog gets an HTTP port beside its database
        raw["spec"]["ports"].append({"name": "http-api", "port": 8080, "targetPort": 8080})

    inv = changed(demo_inventory, "Service", "shop", "catalog", edit)
    for fid in ("request-routing", "timeouts-retries"):
        rendered = feature(fid).render({"service": "catalog"}, "shop", inv)
        vs = next(o for o in rendered.objects if o["kind"] == "VirtualService")
        assert {d["destination"]["port"]["number"] for r in vs["spec"]["http"] for d in r["route"]} == {8080}
        after = apply(rendered, inv)
        assert not list(invariants.http_to_other_ports(inv, after, rendered))


def values(message: str) -> str:
    """What of a message the cluster's values filled in (analysis.catalog.Filled: each shown as data, cut and
    escaped alone); a message built as plain text has none."""
    return " | ".join(t for t, value in getattr(message, "parts", ()) if value)


def test_the_invariant_refuses_an_http_route_to_a_database_port(demo_inventory):
    bad = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": "catalog", "namespace": "shop"},
           "spec": {"hosts": ["catalog"], "http": [{"route": [{"destination": {"host": "catalog",
                                                                               "port": {"number": 5432}}}]}]}}
    from features.base import Rendered

    rendered = Rendered("x", "shop", {}, (bad,))
    found = list(invariants.http_to_other_ports(demo_inventory, apply(rendered, demo_inventory), rendered))
    assert [(m.code, str(m.ref)) for m in found] == [("MST0811", "VirtualService shop/catalog")]
    assert values(found[0].message) == "VirtualService shop/catalog | 5432 | shop/catalog"


# ---------------------------------------------------------------- 6: rollback once applied


@pytest.mark.parametrize("fid, scope, params", [
    ("circuit-breaking", "shop", {}), ("traffic-shifting", "shop", {}), ("request-routing", "shop", {}),
    ("mtls-strict", "payments", {}), ("egress-registry-only", MESH, {}), ("sidecar-injection", "legacy", {}),
    ("timeouts-retries", "shop", {"timeout": "4s"}), ("access-logging", MESH, {})])
def test_rollback_after_apply_returns_the_cluster_to_where_it_started(demo_inventory, fid, scope, params):
    f = feature(fid)
    rendered = f.render(params, scope, demo_inventory)
    after = apply(rendered, demo_inventory)
    undo = f.rollback(params, scope, after)  # computed on the cluster with the feature on, as an operator would
    back = apply(undo, after)
    refs = {Ref(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in rendered.objects}
    assert refs and all(same(demo_inventory, back, r) for r in refs), fid
    assert undo.objects or undo.delete, f"{fid}: the rollback undoes nothing"
    # rendering again on the changed cluster changes nothing, and keeps the first record of how to undo it
    again = f.render(params, scope, after)
    assert all(same(after, apply(again, after), r) for r in refs)


def test_render_rollback_on_the_cli_undoes_an_applied_feature(run, tmp_path, demo_inventory):
    """`meshstep render X --rollback` read from a snapshot of the cluster with X applied."""
    rendered = feature("circuit-breaking").render({}, "shop", demo_inventory)
    after = apply(rendered, demo_inventory)
    snap = tmp_path / "cluster.yaml"
    snap.write_text(yaml.safe_dump_all([o.raw for objs in after.objects.values() for o in objs]
                                       + [p for p in _raw_pods(after)]))
    code, out, err = run("render", "circuit-breaking", "--scope", "shop", "--rollback", "--source", str(snap))
    assert code == 0, err
    docs = [d for d in yaml.safe_load_all(out) if d]
    ratings = next(d for d in docs if d["metadata"]["name"] == "ratings")
    assert normalized_yaml(ratings) == normalized_yaml(demo_inventory.get("DestinationRule", "shop", "ratings").raw)
    assert "# kubectl delete destinationrule frontend -n shop" in out  # created by it: deleted


def _raw_pods(inv: Inventory) -> list[dict[str, Any]]:
    return [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": p.name, "namespace": p.namespace,
                                                             "labels": p.labels}} for p in inv.pods]


# ---------------------------------------------------------------- 7: callers with evidence are not refused


def _calls_out(inv: Inventory, url: str) -> Inventory:
    return changed(inv, "Deployment", "shop", "frontend",
                   lambda raw: env_of(raw, "frontend").append({"name": "FX_URL", "value": url}))


def test_registry_only_is_refused_while_a_meshed_workload_calls_an_unregistered_host(demo_inventory, run):
    inv = _calls_out(demo_inventory, "https://api.fx-rates.example.com/v1")
    with pytest.raises(Refused) as refused:
        render_gated(feature("egress-registry-only"), {}, MESH, inv)
    codes = {m.code: m for m in refused.value.findings}
    assert "MST0812" in codes and "api.fx-rates.example.com" in codes["MST0812"].message
    assert "Deployment shop/frontend" in codes["MST0812"].message
    assert "api.fx-rates.example.com" in values(codes["MST0812"].message)
    assert "Deployment shop/frontend" in values(codes["MST0812"].message)
    # registered, it renders
    se = feature("egress-service-entry").render({"host": "api.fx-rates.example.com"}, "shop", inv)
    render_gated(feature("egress-registry-only"), {}, MESH, apply(se, inv))


def test_registry_only_cli_exits_non_zero_with_the_code(run, tmp_path, demo_inventory):
    inv = _calls_out(demo_inventory, "https://api.fx-rates.example.com/v1")
    snap = tmp_path / "cluster.yaml"
    snap.write_text(yaml.safe_dump_all([o.raw for objs in inv.objects.values() for o in objs]))
    code, out, err = run("render", "egress-registry-only", "--source", str(snap))
    assert (code, out) == (2, "") and "MST0812" in err and "# REFUSED" in err


def _strict(inv: Inventory, scope: str) -> Inventory:
    inv = apply(feature("mtls-strict").render({}, scope, inv), inv)
    return inv


def test_authorization_policy_allows_the_callers_it_has_evidence_of(demo_inventory):
    inv = _strict(demo_inventory, "payments")
    rendered, _ = render_gated(feature("authorization-policy"), {}, "payments", inv)
    allow = next(o for o in rendered.objects if o["spec"])
    assert "shop" in allow["spec"]["rules"][0]["from"][0]["source"]["namespaces"]  # shop/orders → payments-api
    # told to allow only payments, it refuses with the caller named
    with pytest.raises(Refused) as refused:
        render_gated(feature("authorization-policy"), {"allow_namespaces": "payments"}, "payments", inv)
    (m,) = [m for m in refused.value.findings if m.code == "MST0812"]
    assert "Deployment shop/orders → payments/payments-api" in m.message


def test_authorization_policy_keeps_the_calls_inside_its_namespace_that_name_a_short_name(demo_inventory):
    """shop's frontend calls orders as `http://orders:8080`, which Kubernetes DNS resolves in frontend's own
    namespace: a policy allowing only the ingress gateway's namespace would refuse it."""
    inv = _strict(demo_inventory, "shop")
    with pytest.raises(Refused) as refused:
        render_gated(feature("authorization-policy"), {"allow_namespaces": "istio-system"}, "shop", inv)
    refusals = " ".join(m.message for m in refused.value.findings if m.code == "MST0812")
    assert "Deployment shop/frontend → shop/orders" in refusals
    render_gated(feature("authorization-policy"), {}, "shop", inv)  # its default allows its own namespace


def test_require_jwt_does_not_deny_token_less_calls_between_workloads(demo_inventory):
    rendered, _ = render_gated(feature("request-authentication"), JWT, "payments", demo_inventory)
    deny = next(o for o in rendered.objects if o["kind"] == "AuthorizationPolicy")
    (source,) = [f["source"] for r in deny["spec"]["rules"] for f in r["from"]]
    assert source == {"namespaces": ["istio-system"], "notRequestPrincipals": ["*"]}  # the edge only
    after = apply(rendered, demo_inventory)
    assert not list(invariants.callers_refused(demo_inventory, after))


def test_a_namespace_wide_jwt_deny_is_caught_by_the_invariants(demo_inventory):
    from features.base import Rendered

    deny = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "require-jwt", "namespace": "payments"},
            "spec": {"action": "DENY", "rules": [{"from": [{"source": {"notRequestPrincipals": ["*"]}}]}]}}
    rendered = Rendered("request-authentication", "payments", {}, (deny,))
    found = list(invariants.callers_refused(demo_inventory, apply(rendered, demo_inventory)))
    assert any("shop/orders → payments/payments-api" in m.message and "DENY" in m.message for m in found)


def test_sidecar_scope_gate_reads_its_hosts_parameter(demo_inventory):
    gate = lambda params: {m.code for m in feature("sidecar-scope").checks(demo_inventory, "shop", params)}  # noqa
    assert "MST0704" in gate(feature("sidecar-scope").defaults())  # orders calls payments-api
    assert "MST0704" not in gate(feature("sidecar-scope").defaults() | {"hosts": "payments/*"})
    render_gated(feature("sidecar-scope"), {"hosts": "payments/*"}, "shop", demo_inventory)
    with pytest.raises(Refused, match="MST0812"):
        render_gated(feature("sidecar-scope"), {}, "shop", demo_inventory)


# ---------------------------------------------------------------- 8: the revision a namespace is on stays


def test_sidecar_injection_keeps_a_namespace_on_its_revision(demo_inventory):
    assert demo_inventory.namespaces["shop"].labels["istio.io/rev"] == "1-27"
    (ns,) = feature("sidecar-injection").render({}, "shop", demo_inventory).objects
    assert ns["metadata"]["labels"]["istio.io/rev"] == "1-27"
    assert normalized_yaml(ns) == normalized_yaml(demo_inventory.get("Namespace", None, "shop").raw)
    # asked for explicitly, another revision is what the team wants
    (ns,) = feature("sidecar-injection").render({"revision": "default"}, "shop", demo_inventory).objects
    assert ns["metadata"]["labels"]["istio.io/rev"] == "default"


# ---------------------------------------------------------------- 9, 10: mTLS as Istio resolves it


def _no_peer_authentication(inv: Inventory) -> Inventory:
    return inv.with_changes(delete=[Ref("PeerAuthentication", "istio-system", "default")])


def test_no_peer_authentication_is_permissive_not_a_reason_to_refuse_strict(demo_inventory):
    inv = _no_peer_authentication(demo_inventory)
    msgs = feature("mtls-strict").checks(inv, "payments", {})
    assert "MST0405" not in {m.code for m in msgs}
    assert not [m for m in msgs if "not in PERMISSIVE" in m.message]


def test_status_states_the_real_mtls_mode(run, tmp_path, demo_inventory):
    code, out, _ = run("status", "--source", "demo", "--db", f"sqlite:///{tmp_path / 's.db'}", "--format", "json")
    mtls = {m["scope"]: m for m in json.loads(out)["mtls"]}
    assert mtls["mesh"] == {"scope": "mesh", "mode": "PERMISSIVE", "explicit": True,
                            "by": "PeerAuthentication istio-system/default",
                            "why": "PERMISSIVE from PeerAuthentication istio-system/default"}
    assert mtls["shop"]["mode"] == "PERMISSIVE"
    inv = _no_peer_authentication(demo_inventory)
    snap = tmp_path / "cluster.yaml"
    snap.write_text(yaml.safe_dump_all([o.raw for objs in inv.objects.values() for o in objs]))
    code, out, _ = run("status", "--source", str(snap), "--db", f"sqlite:///{tmp_path / 's.db'}")
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("mesh "))
    assert "PERMISSIVE" in line and "no (Istio's default)" in line and "auto mTLS" in line


def test_strict_gate_says_which_namespaces_it_cannot_see(demo_inventory):
    """legacy runs pods without sidecars: their calls are known only where their config names them."""
    for fid in ("mtls-strict", "authorization-policy"):
        (m,) = [m for m in feature(fid).checks(demo_inventory, "payments", {}) if m.code == "MST0801"]
        assert m.level == "warning" and "legacy" in m.message and "legacy" in m.hint
    assert "MST0802" in {m.code for m in feature("egress-registry-only").checks(demo_inventory, MESH, {})}


def test_the_callers_evidence_is_one_function(demo_inventory):
    """The seam for more evidence (observed traffic): every invariant and builder reads analysis.callers."""
    from analysis.callers import calls, refusal

    found = {(str(c.caller), c.target) for c in calls(demo_inventory)}
    assert ("Deployment shop/orders", "payments/payments-api") in found
    assert ("Deployment legacy/legacy-billing", "shop/orders") in found
    assert all(refusal(demo_inventory, c) is None for c in calls(demo_inventory))  # the demo works today


# ---------------------------------------------------------------- 12: flags set checks as render does


@pytest.mark.parametrize("argv, says", [
    (["flags", "set", "circuit-breaking", "--scope", "shpo"], "circuit-breaking: namespace 'shpo' is not in"),
    (["flags", "set", "circuit-breaking", "--scope", "shop", "--set", "service=ratngs"],
     "circuit-breaking: no service ratngs "),
    (["flags", "set", "fault-injection", "--scope", "shop", "--set", "delay=", "--set", "abort_status=0"],
     "fault-injection: set a delay or an abort_status"),
    (["flags", "set", "timeouts-retries", "--scope", "shop", "--set", "service=catalog"],
     "timeouts-retries: no HTTP service catalog"),
])
def test_flags_set_refuses_what_render_refuses(run, tmp_path, argv, says):
    db = f"sqlite:///{tmp_path / 'f.db'}"
    code, out, err = run(*argv, "--reason", "x", "--db", db, "--source", "demo")
    assert code == 2 and err.startswith(f"error: {says}"), err
    assert run("flags", "list", "--db", db, "--format", "json")[1].strip() == "[]"


# ---------------------------------------------------------------- invariants


class _Replaces(Feature):
    """A feature that does what the issue saw: replaces the ingress VirtualService for its mesh routes."""

    id, title, category, problem, scopes = "replaces", "", "traffic", "", ("namespace",)

    def build(self, p, scope, inv):
        return [{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                 "metadata": {"name": "frontend", "namespace": scope},
                 "spec": {"hosts": ["frontend"], "http": [{"route": [{"destination": {"host": "frontend"}}]}]}}]

    def detect(self, inv):
        return []


def test_losing_a_gateway_binding_and_its_host_is_refused(demo_inventory):
    f = _Replaces()
    rendered = f.render({}, "shop", demo_inventory)
    found = [m for m in invariants.check(f, {}, "shop", demo_inventory, rendered) if m.code == "MST0810"]
    assert found and "gateways/shop-gateway" in found[0].message and "hosts/shop.example.com" in found[0].message
    assert "gateways/shop-gateway" in values(found[0].message).split(" | ")
    assert found[0].level == "error" and Message.url


def test_every_invariant_holds_for_a_plain_rendering(demo_inventory):
    f = feature("circuit-breaking")
    rendered = f.render({}, "shop", demo_inventory)
    assert invariants.check(f, f.defaults(), "shop", demo_inventory, rendered) == []


def test_the_rollback_record_restores_an_empty_map(demo_inventory):
    """Found by the property test: a namespace with `labels: {}` came back without its map emptied (an RFC 7386
    patch cannot set {} over a map, it must delete each key)."""
    from cluster.kubectl_apply import merge_patch
    from features.base import merge_diff

    old = {"metadata": {"name": "alpha", "labels": {}}}
    new = {"metadata": {"name": "alpha", "labels": {"istio.io/dataplane-mode": "ambient"}}}
    assert merge_patch(new, merge_diff(new, old)) == old
    inv = demo_inventory.with_changes(apply=[{"apiVersion": "v1", "kind": "Namespace",
                                              "metadata": {"name": "alpha", "labels": {}}}])
    f = feature("ambient-mode")
    after = apply(f.render({}, "alpha", inv), inv)
    assert same(inv, apply(f.rollback({}, "alpha", after), after), Ref("Namespace", None, "alpha"))
