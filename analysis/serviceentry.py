"""ServiceEntry checks (istioctl's serviceentry analyzers): TCP entries without addresses, and entries that give
one host and port two protocols."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from analysis.base import Context, check
from analysis.catalog import text
from cluster.model import KubeObject, Ref
from cluster.queries import istio_objects, ns_of, seen_together

# Protocols a proxy can only tell apart by destination address: without addresses, every such entry on a port
# shares one listener.
_ADDRESS_PROTOCOLS = ("", "TCP")


def _auto_allocates(mesh: dict) -> bool:
    """Whether istio-agent's DNS proxy allocates addresses to ServiceEntries (both proxy metadata flags on)."""
    meta = (mesh.get("defaultConfig") or {}).get("proxyMetadata") or {}
    return meta.get("ISTIO_META_DNS_CAPTURE") == "true" and meta.get("ISTIO_META_DNS_AUTO_ALLOCATE") == "true"


@check("IST0134", "Add spec.addresses (the service's IPs or CIDRs), or turn on DNS auto-allocation "
       "(ISTIO_META_DNS_CAPTURE and ISTIO_META_DNS_AUTO_ALLOCATE) so TCP traffic can be told apart.",
       reads=("ServiceEntry", "ConfigMap"))
def addresses_required(ctx: Context) -> Iterator[tuple[Ref, str]]:
    if _auto_allocates(ctx.inventory.mesh_config):
        return
    for se in istio_objects(ctx.inventory, "ServiceEntry"):
        s = se.spec
        if s.get("addresses") or (se.raw.get("status") or {}).get("addresses"):
            continue  # given, or allocated by istiod (status.addresses)
        if any((p.get("protocol") or "").upper() in _ADDRESS_PROTOCOLS for p in s.get("ports") or ()):
            yield se.ref, "ServiceEntry addresses are required for this protocol."


@check("IST0177", "Use one protocol for the host and port in every ServiceEntry that defines it (or merge the "
       "entries).",
       reads=("ServiceEntry",))
def conflicting_protocol(ctx: Context) -> Iterator[tuple[Ref, str]]:
    by_key: dict[tuple[str, int], list[tuple[KubeObject, str]]] = defaultdict(list)
    for se in istio_objects(ctx.inventory, "ServiceEntry"):
        for host in se.spec.get("hosts") or ():
            for p in se.spec.get("ports") or ():
                by_key[(host, p.get("number"))].append((se, (p.get("protocol") or "").upper()))
    blamed: dict[int, tuple[KubeObject, str, int, set[str], set[str]]] = {}
    for (host, number), entries in by_key.items():
        for i, (a, pa) in enumerate(entries):
            for b, pb in entries[i + 1:]:
                if a is b or pa == pb or not seen_together(a, b):
                    continue
                for me in (a, b):
                    _, _, _, names, protocols = blamed.setdefault(id(me), (me, host, number, set(), set()))
                    names.update((f"{ns_of(a)}/{a.name}", f"{ns_of(b)}/{b.name}"))
                    protocols.update((pa, pb))
    for se, host, number, names, protocols in blamed.values():
        yield se.ref, text("IST0177", ", ".join(sorted(names)), host, number, ", ".join(sorted(protocols)))
