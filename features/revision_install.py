"""Install the new istiod revision beside the running one (the canary upgrade's first stage)."""
from __future__ import annotations

from typing import Any

from cluster import revisions
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from features._upgrade import CANARY_DOCS
from features.base import MESH, Feature, Observation, Param


class RevisionInstall(Feature):
    id = "revision-install"
    title = "Install a new istiod revision"
    category = "install"
    operation = True
    problem = "How do we try a new Istio release on a few namespaces while the others keep the one they run?"
    params = (Param("revision", str, "", "the new revision's name, e.g. 1-28 (default: the newest installed)",
                    pattern=r"([a-z0-9]([-a-z0-9]*[a-z0-9])?)?"),
              Param("version", str, "", "the Istio version to install, e.g. 1.28.0 (default: the revision's own)",
                    pattern=r"(\d+\.\d+\.\d+(-[\w.]+)?)?"))
    scopes = (MESH,)
    pitfalls = ("Reinstalling without your IstioOperator file or Helm values installs the default profile's settings.",
                "Install only istiod with the revision: gateways are moved in their own stage.",
                "Upgrade the CRDs (istio/base) first: a new istiod may serve fields the old CRDs reject.")
    docs = CANARY_DOCS

    def _revision(self, p: dict[str, Any], inv: Inventory) -> tuple[str, str | None]:
        target = revisions.to_install(inv, p["revision"], p["version"])
        if target is None:
            raise MeshstepError(f"{self.id}: one istiod revision runs; name the one to install: --set version=1.X.Y "
                                "(and --set revision=1-X, else it is named after the version)")
        return target

    def build(self, p, scope, inv):
        self._revision(p, inv)  # refuse early what cannot be installed
        return []  # installed by istioctl or Helm: the stage's commands, not objects meshstep renders

    def notes(self, p, scope, inv, rollback):
        rev, version = self._revision(p, inv)
        if rollback:
            return revisions.uninstall_commands(inv, rev)
        return revisions.install_commands(inv, rev, version)

    def commanded(self, p, scope, inv) -> list[dict[str, Any]]:
        """The new revision beside the running one, as the install commands leave it (revisions.installed_beside):
        for a revision not installed yet, at a version given."""
        rev, version = self._revision(p, inv)
        revs = revisions.installed(inv)
        if revisions.revision(inv, rev) is not None or not version or not revs:
            return []
        return revisions.installed_beside(inv, revs[-1], rev, version)

    def detect(self, inv: Inventory) -> list[Observation]:
        up = revisions.upgrade(inv)
        new = revisions.revision(inv, up.to_revision) if up else None
        if new is None or not revisions.ready(new):
            return []
        return [Observation(self.id, MESH, [f"Deployment {new.namespace}/istiod-{new.revision}: "
                                            f"{new.ready_pods}/{new.istiod_pods} ready"],
                            {"revision": new.revision})]


FEATURE = RevisionInstall()
