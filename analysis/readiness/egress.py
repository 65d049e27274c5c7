"""Readiness before egress control and Sidecar scopes: external hosts with no ServiceEntry, REGISTRY_ONLY already
set, calls a Sidecar's egress would cut."""
from __future__ import annotations

from collections.abc import Iterator

from analysis.base import Context
from analysis.catalog import fill
from analysis.readiness.scope import (
    Found,
    external_hosts,
    hint,
    mesh_config_ref,
    readiness,
    scope_namespaces,
    service_calls,
    service_of_host,
    units,
)
from cluster.model import Service
from cluster.queries import host_matches, istio_objects, ns_of, service_index

# ---------------------------------------------------------------- before egress


@readiness("MST0601", "ServiceEntry")
def unregistered_external_hosts(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    index = service_index(inv)
    for u in units(inv, scope_namespaces(ctx)):
        for host, where in external_hosts(inv, u):
            if not index.known(host, u.namespace):
                yield u.ref, fill("names external host {host} in its {where}, and no ServiceEntry registers it",
                                  host=host, where=where), \
                    hint("MST0601", host=host, namespace=u.namespace)


@readiness("MST0602", "ConfigMap")
def registry_only_already(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    if (inv.mesh_config.get("outboundTrafficPolicy") or {}).get("mode") == "REGISTRY_ONLY":
        yield mesh_config_ref(inv), \
            "the mesh config already sets outboundTrafficPolicy mode REGISTRY_ONLY", hint("MST0602")


@readiness("MST0704", "Sidecar", "Service", "VirtualService")
def sidecar_scope_cuts(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    for n in scope_namespaces(ctx):
        # The Sidecar's egress hosts: its own namespace, the root namespace and the ones the stage is given
        # (sidecar-scope's `hosts`, comma-separated).
        given = [h.strip() for h in str(ctx.params.get("hosts") or "").split(",") if h.strip()]
        allowed = ["./*", f"{inv.root_namespace}/*", *given]
        for u in units(inv, [n]):
            for svc, _port, where in service_calls(inv, u):
                if not any(egress_allows(h, n, svc) for h in allowed):
                    text = fill("calls {name}.{namespace} (in its {where}), outside the Sidecar's egress hosts",
                                name=svc.name, namespace=svc.namespace, where=where)
                    yield u.ref, text, hint("MST0704", host=f"{svc.namespace}/{svc.host}", namespace=n,
                                            target=svc.namespace)
        # a mesh route of the namespace sends its callers to another namespace: their proxies must know it
        for vs in istio_objects(inv, "VirtualService"):
            gateways = vs.spec.get("gateways") or ["mesh"]
            if ns_of(vs) != n or "mesh" not in gateways:
                continue
            for d in (d for r in vs.spec.get("http") or () for d in r.get("route") or ()):
                svc = service_of_host((d.get("destination") or {}).get("host", ""), n, inv)
                if svc is not None and not any(egress_allows(h, n, svc) for h in allowed):
                    text = fill("VirtualService {n}/{vs} routes to {name}.{namespace}, outside the Sidecar's egress "
                                "hosts", n=n, vs=vs.name, name=svc.name, namespace=svc.namespace)
                    yield vs.ref, text, hint("MST0704", host=f"{svc.namespace}/{svc.host}", namespace=n,
                                             target=svc.namespace)


def egress_allows(host: str, namespace: str, svc: Service) -> bool:
    """Whether a Sidecar egress host `ns/dnsName` (`.` own namespace, `*` any) lets a workload of `namespace`
    reach a service."""
    ns_part, _, dns = host.partition("/")
    ns_ok = ns_part == "*" or (ns_part == "." and svc.namespace == namespace) or ns_part == svc.namespace
    return ns_ok and host_matches(svc.host, dns)
