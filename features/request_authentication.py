from __future__ import annotations

from cluster.errors import MeshstepError
from features._istio import free_name
from features.base import Feature, Observation, Param, obj, scope_of


class RequestAuthenticationFeature(Feature):
    id = "request-authentication"
    title = "End-user authentication (JWT)"
    category = "security"
    scopes = ("namespace",)
    params = (
        Param("issuer", str, "", "the JWT issuer (iss), e.g. https://accounts.example.com"),
        Param("jwks_uri", str, "", "where the issuer publishes its keys (JWKS)"),
        Param("require", bool, True, "also deny requests that come through the ingress gateway without a valid "
                                     "token (calls between workloads carry none, and keep working)"),
    )
    problem = "Which services must only be reached by requests carrying a valid token from our identity provider?"
    pitfalls = (
        "A RequestAuthentication alone only rejects invalid tokens: requests without a token pass unless an "
        "AuthorizationPolicy requires requestPrincipals.",
        "istiod fetches the JWKS: it must reach jwks_uri (egress, DNS).",
    )
    docs = "https://istio.io/latest/docs/tasks/security/authentication/authn-policy/#end-user-authentication"

    def build(self, p, scope, inv):
        if not p["issuer"] or not p["jwks_uri"]:
            raise MeshstepError("request-authentication needs --set issuer=URL --set jwks_uri=URL")
        objs = [obj(inv, "security.istio.io", "RequestAuthentication", scope,
                    free_name(inv, "RequestAuthentication", scope, "jwt", feature=self.id),
                    {"jwtRules": [{"issuer": p["issuer"], "jwksUri": p["jwks_uri"], "forwardOriginalToken": True}]})]
        if p["require"]:
            # End users' requests come through the ingress gateway; workloads calling each other carry no token.
            # A namespace-wide DENY of every token-less request would cut those calls: it is scoped to the edge.
            edge = sorted({c.namespace for c in inv.components if c.component == "ingress-gateway"})
            if not edge:
                raise MeshstepError("request-authentication: require=true denies token-less requests from the "
                                    "ingress gateway, and no ingress gateway runs here; pass --set require=false "
                                    "(invalid tokens are still rejected)")
            objs.append(obj(inv, "security.istio.io", "AuthorizationPolicy", scope,
                            free_name(inv, "AuthorizationPolicy", scope, "require-jwt", feature=self.id),
                            {"action": "DENY", "rules": [{"from": [{"source": {
                                "namespaces": edge, "notRequestPrincipals": ["*"]}}]}]}))
        return objs

    def detect(self, inv):
        return [Observation(self.id, scope_of(ra, inv), [str(ra.ref)],
                            {"issuer": ((ra.spec.get("jwtRules") or [{}])[0]).get("issuer", "")})
                for ra in inv.of_kind("RequestAuthentication")]


FEATURE = RequestAuthenticationFeature()
