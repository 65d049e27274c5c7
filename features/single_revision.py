"""One istiod revision serves the mesh: the upgrade's last stage removes the old revision once nothing uses it (no
namespace injects from it, no tag names it, no proxy is connected to it). Detection sees it on wherever a single
revision serves every proxy, upgraded or not: a state a team can record and keep."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from cluster import revisions
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from cluster.model import KubeObject
from features._upgrade import CANARY_DOCS
from features.base import MESH, Feature, Observation, Param, Rendered, validate_params


class SingleRevision(Feature):
    id = "single-revision"
    title = "One revision serves the mesh (the old one removed)"
    category = "install"
    operation = True
    problem = "When is the old Istio release no longer needed, so that it stops being patched and watched?"
    depends_on = ("default-tag", "gateway-revision")
    params = (Param("revision", str, "", "the revision to remove (default: the oldest, when two or more run)"),)
    scopes = (MESH,)
    pitfalls = ("A proxy whose revision is gone gets no config and no certificate renewal: move every pod first.",
                "A tag left pointing at the removed revision makes its namespaces' new pods fail to be injected.")
    docs = CANARY_DOCS

    def _old(self, p: dict[str, Any], inv: Inventory) -> str:
        if p["revision"]:
            if revisions.revision(inv, p["revision"]) is None:
                raise MeshstepError(f"{self.id}: no istiod revision {p['revision']!r} in the cluster")
            return p["revision"]
        revs = revisions.installed(inv)
        if len(revs) < 2:
            raise MeshstepError(f"{self.id}: one istiod revision runs: there is no old one to remove")
        return revs[0].revision

    def _objects(self, p: dict[str, Any], inv: Inventory) -> list[KubeObject]:
        return revisions.control_plane_objects(inv, self._old(p, inv))

    def build(self, p, scope, inv):
        self._old(p, inv)
        return []  # nothing to apply: the revision's objects are deleted (render)

    def render(self, params, scope, inv, check=True) -> Rendered:
        p = validate_params(self, params)
        rendered = super().render(params, scope, inv, check)
        istiods = [c for c in inv.components_by_id.get("istiod", ()) if c.kind == "Pod"
                   and revisions.resolve(inv, (inv.pod(c.namespace, c.name).labels.get("istio.io/rev")
                                               if inv.pod(c.namespace, c.name) else None)) == self._old(p, inv)]
        return replace(rendered, delete=tuple(o.ref for o in self._objects(p, inv)) + tuple(c.ref for c in istiods))

    def rollback(self, params, scope, inv) -> Rendered:
        """The removed revision's objects as they are now (its pods come back from its Deployment)."""
        p = validate_params(self, params)
        self.check_scope(scope, inv)
        return Rendered(self.id, scope, {"revision": self._old(p, inv)},
                        tuple(revisions.copy_of(o) for o in self._objects(p, inv)),
                        notes=tuple(self.notes(p, scope, inv, True)), rollback=True)

    def notes(self, p, scope, inv, rollback):
        old = self._old(p, inv)
        if rollback:
            return [f"# reinstall revision {old} as it was ({revisions.install_method(inv).method}); the objects "
                    "below are its control plane as it is now"]
        left = revisions.uses(inv, old)
        lines = revisions.uninstall_commands(inv, old)
        if left:
            lines.insert(0, f"# still uses {old}: {'; '.join(left[:5])}{' …' if len(left) > 5 else ''}")
        return lines

    def detect(self, inv: Inventory) -> list[Observation]:
        revs = revisions.installed(inv)
        if len(revs) != 1 or revs[0].revision == "default":
            return []
        only = revs[0].revision
        pods = revisions.proxies(inv)
        if any(p.revision != only for p in pods):
            return []
        return [Observation(self.id, MESH, [f"Deployment {revs[0].namespace}/istiod-{only}: the only revision, "
                                            f"{len(pods)} proxies on it"])]


FEATURE = SingleRevision()
