"""Plans in waves (planner.waves): on a cluster of more than ten application namespaces, the namespace-scoped
stages go over a pilot wave and growing batches; the pilot is the least risky namespace, said why; every namespace
is in one wave, and what a namespace needs is turned on by an earlier stage."""
from __future__ import annotations

import functools
import json

import pytest

from benchmarks.synthetic import synthetic_cluster
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from planner import waves
from planner.plan import check_order, default_namespaces, new_plan
from telemetry.edges import Edge, Peer, Traffic
from tests.features.corpus import _inventory

# The namespace-scoped blueprints of the two templates: injection, STRICT per namespace, authorization.
PER_NAMESPACE = ("sidecar-injection", "mtls-strict", "authorization-policy")


@functools.cache
def cluster() -> Inventory:
    """A synthetic cluster of 15 application namespaces."""
    return _inventory("synthetic-15", synthetic_cluster(700, 300, 60, seed=1))


@pytest.mark.parametrize(("spec", "total", "expected"), [
    ("1,10%,30%,rest", 100, [1, 10, 30, 59]),
    ("1,10%,30%,rest", 15, [1, 2, 5, 7]),  # shares round up
    ("1,10%,30%,rest", 2, [1, 1]),  # the namespaces run out before the waves do
    ("2,5", 13, [2, 5, 5, 1]),  # the last size repeats until every namespace is in a wave
    ("rest", 7, [7]),
])
def test_wave_sizes(spec: str, total: int, expected: list[int]) -> None:
    assert waves.sizes(spec, total) == expected


@pytest.mark.parametrize("spec", ["", "rest,1", "1,0", "1,ten", "0%"])
def test_bad_wave_sizes_are_refused_with_the_reason(spec: str) -> None:
    with pytest.raises(MeshstepError, match="--waves"):
        waves.sizes(spec, 20)


def _namespaces_of(stages, feature: str) -> list[list[str]]:
    return [[s.scope for s in st.steps if s.feature == feature] for st in stages
            if any(s.feature == feature and s.scope != "mesh" for s in st.steps)]


@pytest.mark.parametrize("template", ["routing-first", "security-first"])
def test_a_large_cluster_goes_in_waves_covering_every_namespace(template: str) -> None:
    inv = cluster()
    targets = default_namespaces(inv)
    assert len(targets) > waves.WAVES_ABOVE
    draft = new_plan(template, inv)
    assert draft.waves is not None
    assert [len(g) for g in draft.waves.groups] == waves.sizes(waves.DEFAULT, len(targets))
    assert sorted(n for g in draft.waves.groups for n in g) == sorted(targets)
    for feature in PER_NAMESPACE:
        # one stage per wave (fewer where a whole wave's steps were left out), each over its wave's namespaces
        stages = _namespaces_of(draft.stages, feature)
        covered = [n for ns in stages for n in ns]
        left = {x.scope for x in draft.left_out if x.feature == feature}  # each said with the reason
        assert len(covered) == len(set(covered)) and set(covered) | left == set(targets) and not left & set(covered)
        for ns in stages:
            assert any(set(ns) <= set(g) for g in draft.waves.groups), f"{feature}: {ns} spans waves"
        assert len(stages) <= len(draft.waves.groups)
    check_order(draft.stages, inv)  # every dependency holds: each namespace's injection before its STRICT


def test_the_pilot_is_the_least_risky_namespace_and_says_why() -> None:
    inv = cluster()
    draft = new_plan("routing-first", inv)
    (pilot,) = draft.waves.groups[0]
    pods = {n: len(inv.pods_by_namespace[n]) for n in default_namespaces(inv)}
    assert pods[pilot] == min(pods.values())
    assert draft.stages[1].title == f"Inject sidecars into the pilot namespace {pilot}"
    reasons = "\n".join(draft.waves.pilot_reasons)
    assert f"{pods[pilot]} pod(s)" in reasons
    assert "no caller from outside the mesh" in reasons
    assert "no telemetry given" in reasons


def _exposed(inv: Inventory, namespace: str) -> Inventory:
    """The cluster with a Kubernetes Ingress (class nginx: outside the mesh) in front of one of `namespace`'s
    services."""
    svc = inv.services_by_namespace[namespace][0]
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "public", "namespace": namespace},
               "spec": {"ingressClassName": "nginx", "rules": [{"http": {"paths": [{
                   "path": "/", "pathType": "Prefix",
                   "backend": {"service": {"name": svc.name, "port": {"number": svc.ports[0].port}}}}]}}]}}
    return inv.with_changes(apply=[ingress])


def test_a_namespace_called_from_outside_the_mesh_is_not_the_pilot() -> None:
    inv = cluster()
    (first,) = new_plan("routing-first", inv).waves.groups[0]
    exposed = _exposed(inv, first)
    draft = new_plan("routing-first", exposed)
    assert draft.waves.groups[0] != (first,)
    assert first in draft.waves.groups[-1]  # the riskiest go last
    risk = next(r for r in waves.risks(exposed, default_namespaces(exposed)) if r.namespace == first)
    assert any("Ingress" in c for c in risk.outside)


def test_traffic_weighs_the_pilot() -> None:
    inv = cluster()
    (first,) = new_plan("routing-first", inv).waves.groups[0]
    workload = inv.pods_by_namespace[first][0].workload_name
    busy = Traffic("test", 3600, 0.0, (Edge(Peer("elsewhere", "caller"), Peer(first, workload),
                                            f"{workload}.{first}.svc.cluster.local", "http", "mutual_tls",
                                            "destination", 50_000.0),))
    draft = new_plan("routing-first", inv, traffic=busy)
    assert draft.waves.groups[0] != (first,)
    assert any("request(s) and connection(s)" in r for r in draft.waves.pilot_reasons)


def test_waves_are_the_plans_to_set() -> None:
    inv = cluster()
    draft = new_plan("security-first", inv, waves="3,rest")
    assert [len(g) for g in draft.waves.groups] == [3, 12]
    assert draft.waves.label(0) == "pilot wave (3 namespaces)"
    off = new_plan("security-first", inv, waves="off")
    assert off.waves is None
    assert len(_namespaces_of(off.stages, "mtls-strict")) == len(default_namespaces(inv))


def test_a_small_cluster_keeps_one_stage_per_namespace(demo_inventory) -> None:
    assert len(default_namespaces(demo_inventory)) <= waves.WAVES_ABOVE
    assert new_plan("routing-first", demo_inventory).waves is None


def test_plan_new_keeps_its_waves_and_shows_the_pilot_with_its_reasons(tmp_path, capsys) -> None:
    from benchmarks.synthetic import write
    from tests.rehearsal import runner

    source = tmp_path / "cluster.json"
    write(synthetic_cluster(700, 300, 60, seed=1), source)
    run = runner(capsys)
    where = ("--source", str(source), "--db", f"sqlite:///{tmp_path / 'state.db'}")
    rc, out, err = run("plan", "new", "--template", "security-first", "--waves", "1,4,rest", "--format", "json", *where)
    assert rc == 0, err
    kept = json.loads(out)["waves"]
    assert kept["spec"] == "1,4,rest" and [len(g) for g in kept["waves"]] == [1, 4, 10]
    rc, out, _ = run("plan", "show", *where)
    assert rc == 0
    assert "WAVES (1,4,rest): 1 → 4 → 10 namespaces" in out
    assert f"  pilot: {kept['waves'][0][0]}\n" in out and "    - no caller from outside the mesh" in out
    assert "mTLS STRICT in wave 3 of 3 (10 namespaces)" in out


def test_a_plans_overlay_is_read_back_from_the_inventory_cache(tmp_path, monkeypatch) -> None:
    """The next command over the same plan and snapshot reads the overlay its stage starts from from the cache
    (cluster.cache.derived) instead of applying every earlier stage again."""
    from benchmarks.synthetic import write
    from cluster import cache
    from planner import moves, stages
    from planner.overlay import Overlay, overlay_at
    from state.store import Store

    source = tmp_path / "cluster.json"
    write(synthetic_cluster(700, 300, 60, seed=1), source)
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        inv = cache.inventory(str(source))
        plan = stages.create(store, "c", inv, "routing-first", None, "p", "alice")
        assert moves.rehearse(store, plan, inv, "alice", to=3).refusal is None
        plan = store.get_plan(plan.id)
        target = plan.stages[3]
        walked = overlay_at(plan, inv, target).inventory
        monkeypatch.setattr(Overlay, "add", lambda *_: pytest.fail("a stage applied again"))
        read = overlay_at(plan, cache.inventory(str(source)), target).inventory
        assert (read.objects, read.pods, read.workloads) == (walked.objects, walked.pods, walked.workloads)
    finally:
        store.close()
