"""Point the `default` revision tag at the new revision: namespaces labelled istio-injection=enabled (or
istio.io/rev=default) inject from it on their next restart."""
from __future__ import annotations

from typing import Any

from cluster import control_plane, revisions
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from cluster.model import Revision
from features._upgrade import MoveStep, target
from features.base import MESH, Observation


def _pointed(obj: dict[str, Any], rev: Revision) -> dict[str, Any]:
    """One of the tag's objects on `rev`'s istiod: its istio.io/rev label, a webhook's service, a Service's
    selector."""
    if "istio.io/rev" in (obj["metadata"].get("labels") or {}) or obj["kind"] != "Service":
        obj["metadata"].setdefault("labels", {})["istio.io/rev"] = rev.revision
    for hook in obj.get("webhooks") or ():
        service = (hook.get("clientConfig") or {}).get("service")
        if service:
            service["name"] = control_plane.service_name(rev.revision)
            service["namespace"] = rev.namespace
    selector = (obj.get("spec") or {}).get("selector")
    if obj["kind"] == "Service" and selector is not None:
        selector["istio.io/rev"] = rev.revision
    return obj


class DefaultTag(MoveStep):
    id = "default-tag"
    title = "Point the default tag at the new revision"
    problem = "When does the new release become what every unlabelled or istio-injection=enabled namespace gets?"
    pitfalls = ("Moving the tag changes only new pods: namespaces that follow it need a restart.",
                "The default tag also decides which istiod validates Istio config.")
    docs = "https://istio.io/latest/docs/setup/upgrade/canary/#stable-revision-labels"

    def build(self, p, scope, inv):
        rev = target(p, inv)
        hook = inv.get("MutatingWebhookConfiguration", None, revisions.TAG_WEBHOOK.format(tag="default"))
        if hook is None:
            raise MeshstepError(f"{self.id}: the cluster has no default tag (MutatingWebhookConfiguration "
                                f"istio-revision-tag-default): create it with "
                                f"{revisions.default_tag_commands(inv, rev.revision)[0]}")
        # The tag's validator and Services go with its webhook: `istiod.istio-system.svc`, which the charts and
        # ztunnel name, must reach the revision the tag names, before the old one is removed.
        return [_pointed(revisions.copy_of(o), rev) for o in control_plane.tag_objects(inv, "default")]

    def notes(self, p, scope, inv, rollback):
        rev = target(p, inv) if not rollback else revisions.revision(inv, revisions.tags(inv).get("default", ""))
        if rev is None:
            return []
        following = [n.namespace for n in revisions.namespace_revisions(inv).values() if n.injects == "default"]
        lines = revisions.default_tag_commands(inv, rev.revision)
        if following:
            lines += [f"# namespaces that follow the default tag keep their proxies until restarted: "
                      f"{', '.join(following)}"]
            lines += [f"kubectl rollout restart deployment -n {ns}" for ns in following]
        return lines

    def restarted_pods(self, p, scope, inv):
        return [pod for n in revisions.namespace_revisions(inv).values() if n.injects == "default"
                for pod in revisions.restart_namespace(inv, n.namespace)]

    def detect(self, inv: Inventory) -> list[Observation]:
        up = revisions.upgrade(inv)
        if up is None or up.default_tag != up.to_revision:
            return []
        return [Observation(self.id, MESH, [f"MutatingWebhookConfiguration "
                                            f"{revisions.TAG_WEBHOOK.format(tag='default')}"],
                            {"revision": up.to_revision})]


FEATURE = DefaultTag()
