"""Readiness before request routing and traffic shifting: services without version labels, callers without a
sidecar, DestinationRule subsets that select no pods."""
from __future__ import annotations

from collections.abc import Iterator

from analysis import destinationrule
from analysis.base import Context, check, registered
from analysis.catalog import fill
from analysis.readiness.injection import services_in_scope
from analysis.readiness.scope import Found, hint, pods_text, readiness, scope_namespaces, without_sidecar
from cluster.queries import DOMAIN, fqdn, istio_objects, ns_of

# ---------------------------------------------------------------- before routing


@readiness("MST0201", "Service")
def without_version_labels(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    for svc in services_in_scope(ctx):
        unlabelled = [p for p in inv.pods_of_service(svc)
                      if "version" not in p.labels and "app.kubernetes.io/version" not in p.labels]
        if unlabelled:
            workloads = sorted({f"{p.workload_kind} {p.namespace}/{p.workload_name}" for p in unlabelled})
            pods = pods_text([p.name for p in unlabelled])
            yield svc.ref, fill("selects {pods} without a version label", pods=pods), \
                hint("MST0201", workloads=", ".join(workloads))


@readiness("MST0202")
def caller_without_sidecar(ctx: Context) -> Iterator[Found]:
    yield from without_sidecar(ctx, "MST0202", "its calls are not routed, retried or limited by the mesh")


_SUBSETS = registered(destinationrule.subset_selects_no_pods)


# istioctl's own finding, run for the routing stages on their scope only: a subset with no pods fails with 503s.
@check(_SUBSETS.code, _SUBSETS.hint, reads=_SUBSETS.reads, gates=("request-routing", "traffic-shifting"))
def subsets_without_pods(ctx: Context) -> Iterator[Found]:
    namespaces = set(scope_namespaces(ctx))
    hosts = {dr.ref: fqdn(dr.spec.get("host") or "", ns_of(dr))
             for dr in istio_objects(ctx.inventory, "DestinationRule")}
    for r, text, *h in _SUBSETS.fn(ctx):
        host = hosts.get(r, "")
        host_ns = host.split(".")[1] if host.endswith(DOMAIN) else None
        if (r.namespace or "default") in namespaces or host_ns in namespaces:
            yield r, text, h[0] if h else _SUBSETS.hint
