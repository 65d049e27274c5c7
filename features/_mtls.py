"""PeerAuthentication features: PERMISSIVE then STRICT, mesh-wide (root namespace) or per namespace."""
from __future__ import annotations

from features.base import Feature, Observation, obj, scope_of, target_namespace


class PeerAuthenticationMode(Feature):
    mode: str

    def build(self, p, scope, inv):
        ns = target_namespace(scope, inv)
        existing = next((pa for pa in inv.of_kind("PeerAuthentication")
                         if pa.namespace == ns and not pa.spec.get("selector")), None)
        return [obj(inv, "security.istio.io", "PeerAuthentication", ns, existing.name if existing else "default",
                    {"mtls": {"mode": self.mode}})]

    def detect(self, inv):
        return [Observation(self.id, scope_of(pa, inv), [str(pa.ref)], {})
                for pa in inv.of_kind("PeerAuthentication")
                if not pa.spec.get("selector") and (pa.spec.get("mtls") or {}).get("mode") == self.mode]
