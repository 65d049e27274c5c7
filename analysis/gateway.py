"""Istio Gateway checks (istioctl's gateway analyzers): the workload a Gateway selects, the ports its Service
exposes, its TLS credentials, and Gateways that claim the same port and host or the same certificate."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime

from analysis.base import Context, check
from analysis.catalog import text
from analysis.common import selector_text
from cluster.inventory import Inventory
from cluster.model import KubeObject, Pod, Ref
from cluster.queries import (
    hosts_overlap,
    istio_objects,
    labels_match,
    ns_of,
    per_inventory,
    pods_anywhere,
    services_selecting,
)
from cluster.snapshot import CREDENTIAL


def _selector(gw: KubeObject) -> dict[str, str]:
    return gw.spec.get("selector") or {}


def _workloads(inv: Inventory) -> dict[tuple[str, str | None, str], list[Pod]]:
    """The pods each Gateway selects, computed once (gateways select across namespaces)."""
    return {(g.kind, g.namespace, g.name): pods_anywhere(inv, _selector(g))
            for g in istio_objects(inv, "Gateway") if _selector(g)}


def gateway_pods(inv: Inventory, gw: KubeObject) -> list[Pod]:
    """The gateway workload's pods (the selector matches pods in any namespace, as istiod reads it)."""
    return per_inventory(inv, "gateway-pods", _workloads).get((gw.kind, gw.namespace, gw.name), [])


def _selects_subset(a: dict[str, str], b: dict[str, str]) -> bool:
    """Whether selector `a` asks for a subset of `b`'s labels: every pod `b` selects, `a` selects too."""
    return labels_match(a, b)


@check("IST0101", "Fix the Gateway's selector to match the labels of the ingress gateway pods (kubectl get pods -A -l "
       "…), or create the Secret its credentialName names in the gateway pods' namespace.",
       reads=("Gateway", "Pod", "Secret"))
def gateway_references(ctx: Context) -> Iterator[tuple[Ref, str]]:
    inv = ctx.inventory
    secrets = {(s.namespace, s.name) for s in inv.of_kind("Secret")}
    for gw in istio_objects(inv, "Gateway"):
        sel = _selector(gw)
        if not sel:
            continue
        pods = gateway_pods(inv, gw)
        if not pods:
            # One message per Gateway: its credentials cannot be resolved without a workload either.
            yield gw.ref, text("IST0101", "selector", selector_text(sel))
            continue
        for server in gw.spec.get("servers") or ():
            cred = (server.get("tls") or {}).get("credentialName")
            if not cred:
                continue
            # The gateway pods read the Secret from their own namespace.
            for ns in sorted({p.namespace for p in pods}):
                if (ns, cred) not in secrets:
                    yield gw.ref, text("IST0101", "credentialName", cred)


_CREDENTIAL_HINT = ("Fix the Secret the Gateway's credentialName names: a kubernetes.io/tls Secret with tls.crt and "
                    "tls.key (or a generic one with cert and key), holding a PEM certificate that has not expired "
                    "(kubectl create secret tls …).")


@check("IST0161", _CREDENTIAL_HINT, reads=("Gateway", "Pod", "Secret"))
def gateway_credentials(ctx: Context) -> Iterator[tuple[Ref, str]]:
    """Only Secrets read with their values (snapshot files) can be judged: meshstep reads a live cluster's Secrets
    as metadata only, and keeps of any Secret only what credential_facts says of it."""
    inv = ctx.inventory
    now = datetime.now(UTC).isoformat()
    for gw in istio_objects(inv, "Gateway"):
        namespaces = sorted({p.namespace for p in gateway_pods(inv, gw)})
        problems = []
        for server in gw.spec.get("servers") or ():
            cred = (server.get("tls") or {}).get("credentialName")
            for ns in namespaces if cred else ():
                secret = inv.get("Secret", ns, cred)
                facts = secret.raw.get(CREDENTIAL) if secret is not None else None
                if not facts:
                    continue
                if facts.get("problem"):
                    problems.append(f"Secret {ns}/{cred}: {facts['problem']}")
                elif facts.get("not_after", now) < now:
                    problems.append(f"Secret {ns}/{cred}: its certificate expired on {facts['not_after'][:10]}")
        if problems:  # Istio's text says that it is invalid; the hint says why, then what to do
            yield gw.ref, text("IST0161", gw.name, ns_of(gw)), f"{'; '.join(problems)}. {_CREDENTIAL_HINT}"


@check("IST0162", "Add the port to the gateway's Service (port or targetPort), or change the Gateway server's port to "
       "one the Service exposes; otherwise nothing reaches that listener.",
       reads=("Gateway", "Pod", "Service"))
def gateway_port_on_service(ctx: Context) -> Iterator[tuple[Ref, str]]:
    inv = ctx.inventory
    for gw in istio_objects(inv, "Gateway"):
        pods = gateway_pods(inv, gw)
        if not pods:
            continue
        exposed: set[int] = set()
        for p in pods:
            for svc in services_selecting(inv, p.namespace, p.labels):
                for port in svc.ports:
                    if port.protocol == "TCP":
                        exposed.add(port.port)
                        if isinstance(port.target_port, int):
                            exposed.add(port.target_port)
        for server in gw.spec.get("servers") or ():
            number = (server.get("port") or {}).get("number")
            if number is not None and number not in exposed:
                yield gw.ref, text("IST0162", number, selector_text(_selector(gw)))


@check("IST0145", "Merge the Gateways' servers into one Gateway, or give them different ports or hosts; the gateway "
       "workload cannot serve two listeners on one port and host.",
       reads=("Gateway",))
def conflicting_gateways(ctx: Context) -> Iterator[tuple[Ref, str]]:
    by_port: dict[int, list[tuple[KubeObject, str]]] = defaultdict(list)
    for gw in istio_objects(ctx.inventory, "Gateway"):
        for server in gw.spec.get("servers") or ():
            number = (server.get("port") or {}).get("number")
            if number is None:
                continue
            for host in server.get("hosts") or ():
                by_port[number].append((gw, host.split("/", 1)[-1]))
    conflicts: dict[tuple[str | None, str], tuple[KubeObject, set[str], set[int], set[str]]] = {}
    for number, entries in by_port.items():
        for i, (a, ha) in enumerate(entries):
            for b, hb in entries[i + 1:]:
                if a is b or not hosts_overlap(ha, hb):
                    continue
                sa, sb = _selector(a), _selector(b)
                if not (_selects_subset(sa, sb) or _selects_subset(sb, sa)):
                    continue
                for me, other in ((a, b), (b, a)):
                    entry = conflicts.setdefault((me.namespace, me.name), (me, set(), set(), set()))
                    entry[1].add(other.name)
                    entry[2].add(number)
                    entry[3].update((ha, hb))
    for gw, others, ports, hosts in conflicts.values():
        yield gw.ref, (f"Conflict with gateways {','.join(sorted(others))} (workload selector "
                       f"{selector_text(_selector(gw))}, port {','.join(map(str, sorted(ports)))}, "
                       f"hosts {sorted(hosts)}).")


@check("IST0138", "Use a distinct certificate per Gateway (or merge the Gateways): browsers re-use an HTTP/2 "
       "connection for every host of a certificate and get 404s from the other Gateway's routes.",
       reads=("Gateway",))
def duplicate_certificate(ctx: Context) -> Iterator[tuple[Ref, str]]:
    by_cert: dict[tuple[str, ...], list[KubeObject]] = defaultdict(list)
    for gw in istio_objects(ctx.inventory, "Gateway"):
        certs = set()
        for server in gw.spec.get("servers") or ():
            tls = server.get("tls") or {}
            if tls.get("credentialName"):
                certs.add(("credential", tls["credentialName"]))
            elif tls.get("serverCertificate"):
                certs.add(("files", tls["serverCertificate"], tls.get("privateKey") or ""))
        for c in certs:
            by_cert[c].append(gw)
    for gateways in by_cert.values():
        for gw in gateways:
            # A gateway whose selector is a subset of another's shares pods with it, so a client's connection
            # for one host can land on the other's listener.
            dupes = [o for o in gateways if o is not gw and _selects_subset(_selector(gw), _selector(o))]
            if dupes:
                names = sorted(f"{ns_of(o)}/{o.name}" for o in [gw, *dupes])
                yield gw.ref, (f"Duplicate certificate in multiple gateways {names} may cause 404s if clients "
                               f"re-use HTTP2 connections.")
