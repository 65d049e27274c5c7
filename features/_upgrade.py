"""Shared by the upgrade's features (revision-install, revision-label, gateway-revision, default-tag,
single-revision): each is one stage of Istio's canary upgrade, and reads the cluster through cluster.revisions.

Their detection reports the upgrade's progress: a step is on while two revisions run and the cluster shows it
done for the newest one (single-revision: once one revision serves every proxy)."""
from __future__ import annotations

from typing import Any

from cluster import revisions
from cluster.inventory import Inventory
from cluster.model import Revision
from features.base import MESH, Feature, Param

REVISION = Param("revision", str, "", "the istiod revision (or a tag naming it) to move to (default: the newest "
                                      "revision installed)")
CANARY_DOCS = "https://istio.io/latest/docs/setup/upgrade/canary/"


class MoveStep(Feature):
    """A step that moves something (namespaces, gateways, the default tag) to the revision revision-install put
    beside the old one: an operation of the install, on the target revision (REVISION)."""

    category = "install"
    operation = True
    depends_on = ("revision-install",)
    params = (REVISION,)
    scopes = (MESH,)


def target(p: dict[str, Any], inv: Inventory) -> Revision:
    return revisions.target(inv, p.get("revision", ""))

