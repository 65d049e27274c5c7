"""Kubernetes Gateway API checks (istioctl's k8sgateway analyzers): policies that pick a Gateway API gateway's pods
with a selector (ignored there: such policies attach with targetRef), and Gateway API CRDs older than Istio needs."""
from __future__ import annotations

import re
from collections.abc import Iterator

from analysis.base import Context, check
from analysis.catalog import text
from cluster.model import Ref
from cluster.queries import istio_objects, labels_match, ns_of

GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
BUNDLE_VERSION = "gateway.networking.k8s.io/bundle-version"
_POLICY_KINDS = ("AuthorizationPolicy", "RequestAuthentication", "Telemetry", "WasmPlugin")

# The oldest Gateway API bundle whose CRD istiod still watches, by CRD name: an older CRD is skipped entirely, so
# its routes are never programmed (e.g. TLSRoute below v1.5 leaves TLS passthrough listeners without routes).
MINIMUM_CRD_VERSIONS = {
    "grpcroutes.gateway.networking.k8s.io": (1, 1, 0),
    "backendtlspolicies.gateway.networking.k8s.io": (1, 4, 0),
    "tlsroutes.gateway.networking.k8s.io": (1, 5, 0),
}


@check("IST0166", "Attach the policy to the Gateway with targetRefs (group gateway.networking.k8s.io, kind Gateway, "
       "its name) instead of a selector: selectors are ignored on Kubernetes Gateway pods.",
       reads=("Pod", "AuthorizationPolicy", "RequestAuthentication", "Telemetry", "WasmPlugin"))
def ineffective_selector(ctx: Context) -> Iterator[tuple[Ref, str]]:
    inv = ctx.inventory
    gateway_pods = [p for p in inv.pods if GATEWAY_NAME_LABEL in p.labels]
    if not gateway_pods:
        return
    for kind in _POLICY_KINDS:
        for policy in istio_objects(inv, kind):
            s = policy.spec
            if s.get("targetRef") or s.get("targetRefs") or s.get("selector") is None:
                continue
            wanted = (s.get("selector") or {}).get("matchLabels") or {}
            for pod in gateway_pods:
                if pod.namespace == ns_of(policy) and labels_match(wanted, pod.labels):
                    yield policy.ref, text("IST0166", pod.labels[GATEWAY_NAME_LABEL])


_SEMVER = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")


def _bundle_version(text: str) -> tuple[tuple[int, int, int], str] | None:
    """`v1.4.1` → ((1, 4, 1), "1.4.1"); a pre-release compares as its release. None when not a version."""
    m = _SEMVER.fullmatch(text.strip())
    if not m:
        return None
    parts = (int(m[1]), int(m[2] or 0), int(m[3] or 0))
    return parts, ".".join(map(str, parts)) + (m[4] or "") + (m[5] or "")


@check("IST0176", "Upgrade the Gateway API CRDs (kubectl apply the release's standard or experimental install) to at "
       "least the version named; until then istiod ignores this kind's resources.",
       reads=("CustomResourceDefinition",))
def crd_version_below_minimum(ctx: Context) -> Iterator[tuple[Ref, str]]:
    for crd in ctx.inventory.of_kind("CustomResourceDefinition"):
        minimum = MINIMUM_CRD_VERSIONS.get(crd.name)
        installed = _bundle_version(str(crd.annotations.get(BUNDLE_VERSION, ""))) if minimum else None
        if installed is not None and installed[0] < minimum:
            wanted = ".".join(map(str, minimum))
            yield crd.ref, (f'Gateway API CRD "{crd.name}" is at version "{installed[1]}" but Istio requires at '
                            f'least "{wanted}"; resources of this kind will not be processed. Upgrade the Gateway '
                            f"API CRDs to satisfy the minimum version.")
