"""cluster.changes: a rendering told apart as created / modified / deleted / unchanged, with kubectl-diff text."""
from __future__ import annotations

import copy

from cluster.changes import diff
from cluster.inventory import Inventory
from cluster.model import Ref


def test_diff_tells_created_modified_unchanged_and_deleted_apart(demo_inventory: Inventory) -> None:
    vs = next(o for o in demo_inventory.of_kind("VirtualService"))
    same = copy.deepcopy(vs.raw)
    changed = copy.deepcopy(vs.raw)
    changed["spec"]["hosts"] = [*changed["spec"]["hosts"], "extra.example.com"]
    new = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
           "metadata": {"name": "brand-new", "namespace": vs.namespace}, "spec": {"host": "brand-new"}}
    dr = demo_inventory.of_kind("DestinationRule")[0]
    cs = diff([same, new], [dr.ref, Ref("Sidecar", "nowhere", "missing")], demo_inventory)
    assert [c.action for c in cs.changes] == ["unchanged", "create", "delete"]
    assert not cs.empty
    assert "0 modified" in cs.summary() and "1 created (DestinationRule" in cs.summary()
    cs = diff([changed], [], demo_inventory)
    assert [c.action for c in cs.changes] == ["modify"]
    assert f"live/VirtualService.{vs.namespace}.{vs.name}" in cs.diff
    assert "+  - extra.example.com" in cs.diff
    assert diff([same], [], demo_inventory).empty


def test_server_set_fields_are_not_a_change(demo_inventory: Inventory) -> None:
    vs = demo_inventory.of_kind("VirtualService")[0]
    noisy = copy.deepcopy(vs.raw)
    noisy["metadata"] |= {"resourceVersion": "999", "uid": "x", "managedFields": [{"manager": "kubectl"}]}
    noisy["status"] = {"observedGeneration": 3}
    assert diff([noisy], [], demo_inventory).empty
