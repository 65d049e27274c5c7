"""`istio-injection=enabled` is served by the `default` revision or tag only (issue 25): where neither webhook
exists, nothing injects such a namespace, and its running sidecars are not pods to restart — a restart would drop
them."""
from __future__ import annotations

import copy

from cluster import revisions
from cluster.inventory import Inventory
from cluster.model import Ref


def legacy_label(inv: Inventory, namespace: str) -> Inventory:
    """The namespace labelled istio-injection=enabled instead of istio.io/rev."""
    raw = copy.deepcopy(inv.get("Namespace", None, namespace).raw)
    labels = raw["metadata"]["labels"]
    labels.pop("istio.io/rev", None)
    labels["istio-injection"] = "enabled"
    return inv.with_changes(apply=[raw])


def test_without_a_default_revision_or_tag_no_pod_is_listed_to_restart(demo_inventory):
    inv = legacy_label(demo_inventory, "shop").with_changes(
        delete=[Ref("MutatingWebhookConfiguration", None, "istio-revision-tag-default")])
    assert "default" not in revisions.tags(inv)
    assert not [p.pod.name for p in revisions.stale_pods(inv) if p.pod.namespace == "shop"]
    ns = revisions.namespace_revisions(inv)["shop"]
    assert ns.injects == "default" and ns.revision is None and ns.stale == ()


def test_with_the_default_tag_the_legacy_label_resolves_to_its_revision(demo_inventory):
    inv = legacy_label(demo_inventory, "shop")
    ns = revisions.namespace_revisions(inv)["shop"]
    assert ns.revision == "1-27" and ns.stale == ()
