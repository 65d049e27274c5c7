"""The analysis of a changed cluster is incremental: on an inventory made from another by a change
(Inventory.with_changes), a check that read nothing the change changed is not run again. Shown equal to the full
analysis on every cluster of the corpus (the demo, bookinfo and its samples, istioctl's analyzer clusters, the
ambient and migration clusters, the synthetic one), for a change of every kind the cluster has."""
from __future__ import annotations

import copy

import pytest

from analysis.base import Context, analyze_checks, findings_of, run
from cluster.inventory import FACETS, Inventory, Traced, changed_facets
from cluster.model import Ref
from cluster.queries import per_inventory, service_index
from features.base import analysis_errors
from tests.features import corpus


def _full_errors(inv: Inventory) -> list:
    """What analysis_errors was before it was incremental: every check run, the errors kept."""
    return [m for m in run(analyze_checks(), Context(inv)) if m.level == "error"]


def _changes(inv: Inventory) -> list[tuple[str, Inventory]]:
    """The cluster with one change each: the first object of each kind deleted, then relabelled; the first pod
    deleted."""
    out = []
    for _kind, objs in sorted(inv.objects.items()):
        first = objs[0]
        out.append((f"delete {first.ref}", inv.with_changes(delete=[first.ref])))
        raw = copy.deepcopy(first.raw)
        raw.setdefault("metadata", {}).setdefault("labels", {})["meshstep-test"] = "changed"
        out.append((f"relabel {first.ref}", inv.with_changes(apply=[raw])))
    if inv.pods:
        pod = inv.pods[0]
        out.append((f"delete Pod {pod.namespace}/{pod.name}", inv.with_changes(delete=[Ref("Pod", pod.namespace,
                                                                                              pod.name)])))
    return out


@pytest.mark.parametrize("cluster", corpus.corpus(), ids=lambda c: c.name)
def test_incremental_analysis_equals_the_full_analysis(cluster):
    inv = corpus.loadable(cluster)
    if inv is None:
        pytest.skip("not a readable cluster on purpose")
    assert analysis_errors(inv) == _full_errors(inv)
    for what, after in _changes(inv):
        assert analysis_errors(after) == _full_errors(after), what


def test_a_change_reruns_only_the_checks_that_read_what_it_changed(demo_inventory):
    checks = analyze_checks()
    before = findings_of(checks, demo_inventory, "test-all")
    vs = demo_inventory.of_kind("VirtualService")[0]
    after = findings_of(checks, demo_inventory.with_changes(delete=[vs.ref]), "test-all")
    again = {r.check.fn.__name__ for r in after if r.again}
    assert "destination_not_found" in again  # reads VirtualServices
    assert "pod_missing_proxy" not in again  # reads Namespaces and Pods only
    assert all(not r.again for r in after if "kind:VirtualService" not in r.read and "kind:*" not in r.read
               and "*" not in r.read)
    assert [r.check for r in after] == [r.check for r in before]


def test_reads_through_an_index_built_before_are_the_checks_too(demo_inventory):
    inv = demo_inventory.with_changes()
    service_index(inv)  # built outside any check
    traced = Traced(inv)
    service_index(traced).known("reviews.default.svc.cluster.local", "default")
    assert {"services", "kind:ServiceEntry"} <= traced.reads()
    assert per_inventory(traced, "test-nothing", lambda _i: 1) == 1


def test_changed_facets_are_those_that_differ(demo_inventory):
    vs = demo_inventory.of_kind("VirtualService")[0]
    assert changed_facets(demo_inventory, demo_inventory.with_changes(delete=[vs.ref])) == {
        "kind:VirtualService", "kind:*"}
    relabelled = copy.deepcopy(vs.raw)
    relabelled["metadata"].setdefault("labels", {})["meshstep-test"] = "changed"  # equal as a KubeObject: raw is not
    assert changed_facets(demo_inventory, demo_inventory.with_changes(apply=[relabelled])) == {
        "kind:VirtualService", "kind:*"}
    pod = demo_inventory.pods[0]
    assert "pods" in changed_facets(demo_inventory, demo_inventory.with_changes(
        delete=[Ref("Pod", pod.namespace, pod.name)]))


def test_every_attribute_of_an_inventory_says_what_it_reads():
    public = {n for n in dir(Inventory) if not n.startswith("__")} | set(Inventory.__dataclass_fields__)
    # These read the whole inventory: a computation that calls them depends on everything.
    everything = {"with_changes", "parts", "report"}
    assert public - everything == set(FACETS) | {"of_kind", "get"}


def test_an_index_is_carried_across_a_change_of_nothing_it_read(demo_inventory):
    inv = demo_inventory.with_changes()
    built = []

    def services(i):
        built.append(i)
        return len(i.services)

    assert per_inventory(inv, "test-services", services) == len(inv.services)
    vs = inv.of_kind("VirtualService")[0]
    assert per_inventory(inv.with_changes(delete=[vs.ref]), "test-services", services) == len(inv.services)
    assert len(built) == 1  # carried: a VirtualService is nothing it read
    svc = inv.services[0]
    fewer = inv.with_changes(delete=[svc.ref])
    assert per_inventory(fewer, "test-services", services) == len(inv.services) - 1 and len(built) == 2
    store = per_inventory(inv, "test-store", lambda _i: {})
    assert per_inventory(inv.with_changes(delete=[vs.ref]), "test-store", lambda _i: {}) is not store
