from __future__ import annotations

from features.base import Feature, Observation, Param, obj
from planner.errors import MeshstepError


class AuthorizationPolicyFeature(Feature):
    id = "authorization-policy"
    title = "Authorization: deny by default, allow what is expected"
    category = "security"
    depends_on = ("mtls-strict",)
    scopes = ("namespace",)
    params = (Param("allow_namespaces", str, "", "comma-separated namespaces whose workloads may call this one "
                                                 "(default: this namespace and the ingress gateway's)"),)
    problem = ("Who should be allowed to call these services? Once mTLS is STRICT, identities are trustworthy and "
               "we can deny everything else.")
    pitfalls = (
        "An empty ALLOW policy set denies everything: apply the allow rules together with allow-nothing.",
        "Principals come from service accounts: workloads sharing one cannot be told apart.",
        "Health probes and Prometheus scrapes go through the sidecar's own ports and are not affected.",
    )
    docs = "https://istio.io/latest/docs/tasks/security/authorization/authz-http/"

    def build(self, p, scope, inv):
        allowed = [n.strip() for n in p["allow_namespaces"].split(",") if n.strip()]
        if not allowed:
            gateways = sorted({c.namespace for c in inv.components if c.component == "ingress-gateway"})
            allowed = [scope, *gateways]
        known = set(inv.namespace_names())
        unknown = [n for n in allowed if n not in known]
        if unknown:
            raise MeshstepError("authorization-policy: allow_namespaces names unknown namespace(s) "
                                f"{', '.join(unknown)}")
        return [
            obj(inv, "security.istio.io", "AuthorizationPolicy", scope, "allow-nothing", {}),
            obj(inv, "security.istio.io", "AuthorizationPolicy", scope, "allow-from-expected-namespaces",
                {"action": "ALLOW", "rules": [{"from": [{"source": {"namespaces": sorted(set(allowed))}}]}]}),
        ]

    def detect(self, inv):
        by_ns: dict[str, list[str]] = {}
        for ap in inv.of_kind("AuthorizationPolicy"):
            by_ns.setdefault(ap.namespace or "", []).append(str(ap.ref))
        return [Observation(self.id, ns, ev) for ns, ev in sorted(by_ns.items()) if ns != inv.root_namespace] + [
            Observation(self.id, "mesh", ev) for ns, ev in by_ns.items() if ns == inv.root_namespace]


FEATURE = AuthorizationPolicyFeature()
