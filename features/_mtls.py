"""PeerAuthentication features: PERMISSIVE then STRICT, mesh-wide (root namespace) or per namespace."""
from __future__ import annotations

import copy
from typing import Any

from analysis.effective import UNKNOWN, mtls_mode, mtls_sent, mtls_strict
from analysis.readiness.scope import mesh_namespaces
from cluster.inventory import Inventory
from features._istio import free_name
from features.base import MESH, Feature, Observation, clean, obj, scope_of, target_namespace


def mtls_modes(inv: Inventory) -> list[dict[str, Any]]:
    """The mesh-wide mode, then each meshed namespace's, as the resolver (analysis.effective) finds them: with no
    PeerAuthentication at all, Istio behaves as PERMISSIVE (sidecars send mTLS to each other, and accept
    plaintext)."""
    out = []
    for scope in [MESH, *mesh_namespaces(inv)]:
        m = mtls_mode(inv, scope)
        by = str(m.by) if m.by else ("no PeerAuthentication: Istio's default, auto mTLS that also accepts plaintext"
                                     if m.known else "unknown")
        out.append({"scope": scope, "mode": m.value or UNKNOWN, "explicit": m.explicit, "by": by, "why": m.why})
    return out


class PeerAuthenticationMode(Feature):
    mode: str
    owns = ("spec.mtls.mode",)
    resolved = True

    def in_effect(self, inv, scope):
        """PERMISSIVE is in effect wherever the sidecars' mutual TLS is accepted (Istio's default included, and
        STRICT, which accepts nothing else); STRICT where the resolved mode is STRICT."""
        return mtls_strict(inv, scope) if self.mode == "STRICT" else mtls_sent(inv, scope)

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
