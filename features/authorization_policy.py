from __future__ import annotations

from analysis.callers import calls
from cluster.errors import MeshstepError
from features._istio import free_name
from features.base import Feature, Observation, Param, obj


class AuthorizationPolicyFeature(Feature):
    id = "authorization-policy"
    title = "Authorization: deny by default, allow what is expected"
    category = "security"
    depends_on = ("mtls-strict",)
    scopes = ("namespace",)
    params = (Param("allow_namespaces", str, "", "comma-separated namespaces whose workloads may call this one "
                                                 "(default: this namespace, the ingress gateway's, and those of "
                                                 "every meshed caller meshstep has evidence of)"),)
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
            # Deny by default must not deny what works today: the callers meshstep has evidence of are allowed
            # (those outside the mesh have no identity to allow; STRICT refuses them already). A list given
            # explicitly is taken as it is, and the invariants refuse it if it leaves a known caller out.
            gateways = {c.namespace for c in inv.components if c.component == "ingress-gateway"}
            callers = {c.namespace for c in calls(inv) if c.meshed and c.service and c.service.namespace == scope}
            allowed = [scope, *sorted(gateways | callers)]
        known = set(inv.namespace_names())
        unknown = [n for n in allowed if n not in known]
        if unknown:
            raise MeshstepError("authorization-policy: allow_namespaces names unknown namespace(s) "
                                f"{', '.join(unknown)}")
        ap = "AuthorizationPolicy"
        return [
            obj(inv, "security.istio.io", ap, scope, free_name(inv, ap, scope, "allow-nothing", feature=self.id), {}),
            obj(inv, "security.istio.io", ap, scope,
                free_name(inv, ap, scope, "allow-from-expected-namespaces", feature=self.id),
                {"action": "ALLOW", "rules": [{"from": [{"source": {"namespaces": sorted(set(allowed))}}]}]}),
        ]

    def detect(self, inv):
        by_ns: dict[str, list[str]] = {}
        for ap in inv.of_kind("AuthorizationPolicy"):
            by_ns.setdefault(ap.namespace or "", []).append(str(ap.ref))
        return [Observation(self.id, ns, ev) for ns, ev in sorted(by_ns.items()) if ns != inv.root_namespace] + [
            Observation(self.id, "mesh", ev) for ns, ev in by_ns.items() if ns == inv.root_namespace]


FEATURE = AuthorizationPolicyFeature()
