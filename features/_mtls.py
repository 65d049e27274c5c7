"""PeerAuthentication features: PERMISSIVE then STRICT, mesh-wide (root namespace) or per namespace."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from analysis.readiness.mtls import peer_mode
from analysis.readiness.scope import mesh_namespaces
from cluster.inventory import Inventory
from features._istio import free_name
from features.base import MESH, Feature, Observation, clean, obj, scope_of, target_namespace


@dataclass(frozen=True)
class MtlsMode:
    """The mTLS mode a namespace's workloads accept, as Istio resolves it, and what sets it."""

    scope: str  # mesh, or a namespace
    mode: str  # STRICT | PERMISSIVE | DISABLE
    explicit: bool  # set by a PeerAuthentication; else Istio's default (PERMISSIVE: auto mTLS, plaintext accepted)
    by: str

    def to_json(self) -> dict[str, Any]:
        return {"scope": self.scope, "mode": self.mode, "explicit": self.explicit, "by": self.by}


def mtls_modes(inv: Inventory) -> list[MtlsMode]:
    """The mesh-wide mode, then each meshed namespace's: with no PeerAuthentication at all, Istio behaves as
    PERMISSIVE (sidecars send mTLS to each other, and accept plaintext)."""
    implicit = "no PeerAuthentication: Istio's default, auto mTLS that also accepts plaintext"
    out = []
    root = [pa for pa in inv.of_kind("PeerAuthentication")
            if pa.namespace == inv.root_namespace and not pa.spec.get("selector")
            and (pa.spec.get("mtls") or {}).get("mode") not in (None, "UNSET")]
    out.append(MtlsMode(MESH, root[0].spec["mtls"]["mode"], True, str(root[0].ref)) if root
               else MtlsMode(MESH, "PERMISSIVE", False, implicit))
    for n in mesh_namespaces(inv):
        mode, by = peer_mode(inv, n)
        out.append(MtlsMode(n, mode, True, str(by)) if mode else MtlsMode(n, "PERMISSIVE", False, implicit))
    return out


class PeerAuthenticationMode(Feature):
    mode: str
    owns = ("spec.mtls.mode",)

    def build(self, p, scope, inv):
        ns = target_namespace(scope, inv)
        existing = next((pa for pa in inv.of_kind("PeerAuthentication")
                         if pa.namespace == ns and not pa.spec.get("selector")), None)
        if existing is None:
            return [obj(inv, "security.istio.io", "PeerAuthentication", ns,
                        free_name(inv, "PeerAuthentication", ns, "default"), {"mtls": {"mode": self.mode}})]
        pa = copy.deepcopy(clean(existing.raw))  # its labels, annotations and port-level settings stay
        pa.setdefault("spec", {}).setdefault("mtls", {})["mode"] = self.mode
        return [pa]

    def detect(self, inv):
        return [Observation(self.id, scope_of(pa, inv), [str(pa.ref)], {})
                for pa in inv.of_kind("PeerAuthentication")
                if not pa.spec.get("selector") and (pa.spec.get("mtls") or {}).get("mode") == self.mode]
