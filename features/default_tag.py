"""Point the `default` revision tag at the new revision: namespaces labelled istio-injection=enabled (or
istio.io/rev=default) inject from it on their next restart."""
from __future__ import annotations

from typing import Any

from cluster import revisions
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from cluster.model import Revision
from features._upgrade import MoveStep, target
from features.base import MESH, Observation


def _pointed(webhook: dict[str, Any], rev: Revision) -> dict[str, Any]:
    """The tag's webhook calling `rev`'s istiod: its istio.io/rev label and every webhook's service."""
    webhook["metadata"].setdefault("labels", {})["istio.io/rev"] = rev.revision
    for hook in webhook.get("webhooks") or ():
        service = (hook.get("clientConfig") or {}).get("service")
        if service:
            service["name"] = f"istiod-{rev.revision}" if rev.revision != "default" else "istiod"
            service["namespace"] = rev.namespace
    return webhook


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
        return [_pointed(revisions.copy_of(hook), rev)]

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
