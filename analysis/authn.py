"""Request authentication checks (istioctl's authn analyzers): istiod fetching JWKS from any address."""
from __future__ import annotations

from collections.abc import Iterator

from analysis.base import Context, check
from analysis.catalog import text
from cluster.model import Ref
from cluster.queries import istio_objects, ns_of

_BLOCKED_CIDRS = "BLOCKED_CIDRS_IN_JWKS_URIS"


@check("IST0175", "Set BLOCKED_CIDRS_IN_JWKS_URIS on istiod (e.g. the cluster's pod, service and metadata CIDRs) so a "
       "RequestAuthentication's jwksUri cannot make istiod fetch from internal addresses.",
       reads=("RequestAuthentication", "Deployment"))
def jwks_fetch_unrestricted(ctx: Context) -> Iterator[tuple[Ref, str]]:
    inv = ctx.inventory
    with_uri = [ra for ra in istio_objects(inv, "RequestAuthentication")
                if any(r.get("jwksUri") for r in ra.spec.get("jwtRules") or ())]
    if not with_uri:
        return
    names = ", ".join(f"{ns_of(ra)}/{ra.name}" for ra in with_uri)
    for d in inv.of_kind("Deployment"):
        containers = ((d.spec.get("template") or {}).get("spec") or {}).get("containers") or ()
        discovery = next((c for c in containers if c.get("name") == "discovery"), None)
        if discovery is None:
            continue  # not an istiod
        if any(e.get("name") == _BLOCKED_CIDRS and e.get("value") for e in discovery.get("env") or ()):
            continue
        yield Ref("Deployment", d.namespace, d.name), text("IST0175", len(with_uri), names)
