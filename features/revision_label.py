"""Move one namespace to the new revision: relabel it, restart its workloads, verify their proxies."""
from __future__ import annotations

from typing import Any

from cluster import revisions
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from features._istio import label_notes, namespace_labelled
from features._upgrade import CANARY_DOCS, MoveStep, target
from features.base import Observation

# The legacy label would win over istio.io/rev (IST0123): a namespace moved by revision drops it.
_REMOVED = ("istio-injection",)


class RevisionLabel(MoveStep):
    id = "revision-label"
    title = "Move a namespace to the new revision"
    problem = "Which namespaces take the new Istio release now, and which wait until it has proved itself?"
    scopes = ("namespace",)
    pitfalls = ("Relabelling changes nothing running: only restarted pods get the new proxy.",
                "istio-injection=enabled wins over istio.io/rev: remove it, or the namespace stays on the default tag.",
                "Pods of a StatefulSet restart one by one: wait for the rollout before verifying.")
    docs = CANARY_DOCS
    owns = ("labels/istio.io/rev", *(f"labels/{k}" for k in _REMOVED))

    def _change(self, p: dict[str, Any], scope: str, inv: Inventory) -> tuple[dict[str, str], tuple[str, ...]]:
        """The labels to add and remove. A namespace whose label already resolves to the target keeps it (a tag
        stays a tag, so that moving the tag moves it); the others get istio.io/rev=<revision> as given."""
        if revisions.upgrade(inv) is None:
            raise MeshstepError(f"{self.id}: one istiod revision runs: there is no other revision to move {scope} to "
                                "(install the new one first: meshstep render revision-install)")
        ns = revisions.namespace_revisions(inv).get(scope)
        if ns is None or ns.injects is None:
            raise MeshstepError(f"{self.id}: namespace {scope} is not labelled for sidecar injection: nothing to "
                                "move (turn on sidecar-injection instead)")
        to = target(p, inv)
        if not p["revision"] and ns.revision == to.revision:
            kept = dict([ns.label.split("=", 1)])  # type: ignore[union-attr]
            return kept, ()
        return {"istio.io/rev": p["revision"] or to.revision}, _REMOVED

    def build(self, p, scope, inv):
        return [namespace_labelled(inv, scope, *self._change(p, scope, inv))]

    def notes(self, p, scope, inv, rollback):
        lines = label_notes(inv, scope, *self._change(p, scope, inv), rollback)
        rev = (revisions.namespace_revisions(inv)[scope].revision if rollback else target(p, inv).revision)
        return lines + [f"# verify: every proxy in {scope} on revision {rev}",
                        f"kubectl get pods -n {scope} -L istio.io/rev",
                        f"istioctl proxy-status --revision {rev}"]

    def restarted_pods(self, p, scope, inv):
        return revisions.restart_namespace(inv, scope)

    def detect(self, inv: Inventory) -> list[Observation]:
        up = revisions.upgrade(inv)
        if up is None:
            return []
        nss = revisions.namespace_revisions(inv)
        return [Observation(self.id, n.namespace, [f"Namespace {n.namespace} ({nss[n.namespace].label}): "
                                                   f"{n.on_new} proxies on {up.to_revision}, none on another"],
                            {"revision": up.to_revision})
                for n in up.namespaces if n.state == "done" and nss[n.namespace].label]


FEATURE = RevisionLabel()
