"""Gate checks on observed traffic: callers and destinations Istio's telemetry saw in the window (MST08xx).

Config-based checks say what should happen; these say what did. Each finding gives the count and the window;
without telemetry each gated stage says so (MST0820) instead of passing silently."""
from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from analysis.base import Context
from analysis.catalog import fill
from analysis.readiness.scope import hint, outside_mesh, readiness, scope_namespaces, units
from cluster.inventory import Inventory
from cluster.model import Ref
from cluster.queries import application_namespace, host_matches, per_inventory, selector_matches, service_index
from telemetry.edges import Edge, Peer, Traffic, count_text
from telemetry.series import duration_text

Found = tuple[Ref, str, str]
_WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob", "Job", "ReplicaSet", "Pod")


def observed(code: str, *more: str) -> Callable[[Callable[[Context, Traffic], Iterator[Found]]], Any]:
    """Register a check on the traffic under its catalog identity (reading the workloads it names and `more`
    kinds); without telemetry it finds nothing (MST0820 says that the gate could not look)."""
    def register(fn: Callable[[Context, Traffic], Iterator[Found]]) -> Any:
        @functools.wraps(fn)
        def on_traffic(ctx: Context) -> Iterator[Found]:
            return fn(ctx, ctx.traffic) if ctx.traffic is not None else iter(())
        return readiness(code, *more)(on_traffic)
    return register


def workload_of(inv: Inventory, peer: Peer) -> Any:
    """The inventory's workload behind a telemetry peer (Istio names it by its controller)."""
    return next((w for k in _WORKLOAD_KINDS if (w := inv.workload(peer.namespace or "", k, peer.workload or ""))),
                None)


def _ref(inv: Inventory, peer: Peer) -> Ref:
    w = workload_of(inv, peer)
    return w.ref if w is not None else Ref("Workload", peer.namespace, peer.workload or "unknown")


def _grouped(edges: list[Edge]) -> list[tuple[tuple[Peer, Peer, str], list[Edge]]]:
    """Edges by caller, destination and host, in the traffic's own (sorted) order."""
    out: dict[tuple[Peer, Peer, str], list[Edge]] = defaultdict(list)
    for e in edges:
        out[(e.source, e.destination, e.service)].append(e)
    return list(out.items())


def counted(edges: list[Edge]) -> str:
    """`1,200 requests and 30 connections`."""
    by_unit: dict[str, float] = defaultdict(float)
    for e in edges:
        by_unit[e.unit] += e.count
    return " and ".join(f"{count_text(n)} {unit}" for unit, n in sorted(by_unit.items(), reverse=True))


@readiness("MST0820")
def no_traffic_evidence(ctx: Context) -> Iterator[Found]:
    if ctx.traffic is None:
        scope = ctx.scope or "mesh"
        ref = Ref("Namespace", None, scope) if scope != "mesh" else Ref("Mesh", None, "mesh")
        yield ref, fill("no telemetry was read: traffic into and out of {scope} was not checked", scope=scope), \
            hint("MST0820")


def unmeshed_workloads(inv: Inventory) -> list[str]:
    """The application workloads with pods outside the mesh (`legacy/curl`): the only callers whose plaintext a
    destination's sidecar reports without a source, since a caller without a proxy sends no peer metadata."""
    return per_inventory(inv, "traffic-unmeshed", lambda i: sorted({
        f"{u.namespace}/{u.ref.name}" for u in units(i, [n for n in i.namespace_names() if application_namespace(i, n)])
        if outside_mesh(i, u)}))


def plaintext_into(t: Traffic, namespaces: Iterable[str] | None) -> list[Edge]:
    """The calls in plaintext that the destinations' sidecars in `namespaces` (every one for None) reported."""
    return [e for e in t.into(namespaces) if e.reporter == "destination" and not e.mtls]


@observed("MST0821")
def plaintext_traffic(ctx: Context, t: Traffic) -> Iterator[Found]:
    plain = plaintext_into(t, scope_namespaces(ctx))
    suspects = unmeshed_workloads(ctx.inventory)
    for (src, dst, host), edges in _grouped(plain):
        security = "/".join(sorted({e.security for e in edges}))
        named = "" if src.known or not suspects else (
            f"; the workloads without a sidecar it can be: {', '.join(suspects[:5])}"
            + (f" and {len(suspects) - 5} more" if len(suspects) > 5 else ""))
        caller = str(src) if src.known else ", ".join(suspects[:5]) or "the callers outside the mesh"
        yield _ref(ctx.inventory, dst), (
            f"{counted(edges)} in plaintext (connection_security_policy={security}) from {edges[0].caller} to "
            f"{dst} ({host}) in {t.window_text}{named}"), hint(
            "MST0821", caller=caller, destination=str(dst), namespace=dst.namespace or "",
            window=duration_text(t.window))


# ---------------------------------------------------------------- authorization: the rendered policy, evaluated


def _principal(inv: Inventory, peer: Peer) -> str | None:
    w = workload_of(inv, peer)
    if w is None or w.template is None:
        return None
    trust = inv.mesh_config.get("trustDomain") or "cluster.local"
    return f"{trust}/ns/{peer.namespace}/sa/{w.template.service_account or 'default'}"


def _source_matches(source: dict[str, Any], namespace: str | None, principal: str | None) -> bool | None:
    """Whether a rule's `from.source` matches the caller's mTLS identity; None when it asks what an edge cannot
    tell (request principals, IP blocks)."""
    if set(source) - {"namespaces", "notNamespaces", "principals", "notPrincipals"}:
        return None
    if "namespaces" in source and not (namespace and any(host_matches(namespace, p) for p in source["namespaces"])):
        return False
    if namespace and any(host_matches(namespace, p) for p in source.get("notNamespaces", ())):
        return False
    if "principals" in source and not (principal and any(host_matches(principal, p) for p in source["principals"])):
        return False
    return not (principal and any(host_matches(principal, p) for p in source.get("notPrincipals", ())))


def _rule_matches(rule: dict[str, Any], namespace: str | None, principal: str | None) -> bool | None:
    """All of a rule's `from` entries must match (any source in each); `to`/`when` cannot be told from an edge."""
    if rule.get("to") or rule.get("when"):
        return None
    unsure = False
    for f in rule.get("from") or ():
        matched = _source_matches(f.get("source") or {}, namespace, principal)
        if matched is False:
            return False
        unsure = unsure or matched is None
    return None if unsure else True


def refused(inv: Inventory, policies: list[Any], edge: Edge) -> str | None:
    """The policy that refuses an observed caller, or None when the policies let it in (or cannot say)."""
    identified = edge.mtls and edge.source.known  # a plaintext caller has no principal and no namespace
    namespace = edge.source.namespace if identified else None
    principal = _principal(inv, edge.source) if identified else None
    allows = []
    for ap in policies:
        action = ap.spec.get("action", "ALLOW")
        rules = ap.spec.get("rules") or []
        if action == "DENY" and any(_rule_matches(r, namespace, principal) for r in rules):
            return f"DENY policy {ap.namespace}/{ap.name}"
        if action == "ALLOW":
            allows.append(ap)
    if not allows:
        return None
    if any(_rule_matches(r, namespace, principal) is not False for ap in allows for r in ap.spec.get("rules") or []):
        return None
    return "ALLOW policies " + ", ".join(f"{ap.namespace}/{ap.name}" for ap in allows) + " (none allows it)"


def _policies_for(inv: Inventory, peer: Peer) -> list[Any]:
    w = workload_of(inv, peer)
    labels = w.template.labels if w is not None and w.template is not None else {}
    return [ap for ap in inv.of_kind("AuthorizationPolicy")
            if ap.namespace in (peer.namespace, inv.root_namespace) and not ap.spec.get("targetRef")
            and not ap.spec.get("targetRefs")
            and selector_matches(ap.spec.get("selector"), labels)]


@observed("MST0822", "AuthorizationPolicy")
def observed_caller_refused(ctx: Context, t: Traffic) -> Iterator[Found]:
    if not ctx.scope or ctx.scope == "mesh" or ctx.after is None:
        return
    inv = ctx.inventory
    after = ctx.after()  # the stage's own rendering: the policies as they will be
    allowed = sorted({ap_ns for ap_ns in (ctx.params.get("allow_namespaces") or "").split(",") if ap_ns})
    callers = [e for e in t.into([ctx.scope]) if e.reporter == "destination"]
    for (src, dst, host), edges in _grouped(callers):
        policies = _policies_for(after, dst)
        why = next((w for e in edges if (w := refused(after, policies, e))), None)
        if why is None:
            continue
        plain = " in plaintext (no identity)" if not any(e.mtls for e in edges) else ""
        yield _ref(inv, dst), (f"{counted(edges)} from {edges[0].caller}{plain} to {dst} ({host}) in "
                               f"{t.window_text} would be refused by {why}"), hint(
            "MST0822", caller=str(src), destination=str(dst),
            namespaces=",".join(sorted({*allowed, ctx.scope, *([src.namespace] if src.namespace else [])})))


# ---------------------------------------------------------------- egress


def _external_ns(inv: Inventory, edge: Edge) -> str:
    return edge.source.namespace if edge.source.known and edge.source.namespace else inv.root_namespace


@observed("MST0823", "ServiceEntry")
def unregistered_host_traffic(ctx: Context, t: Traffic) -> Iterator[Found]:
    inv = ctx.inventory
    index = service_index(inv)
    leaving = [e for e in t.leaving() if e.egress != "BlackHoleCluster"]
    for (src, _dst, host), edges in _grouped(leaving):
        ns = _external_ns(inv, edges[0])
        if index.known(host, ns):
            continue
        ref = _ref(inv, src) if src.known else Ref("Namespace", None, ns)
        yield ref, (f"{counted(edges)} from {edges[0].caller} to {host} through the {edges[0].egress} in "
                    f"{t.window_text}: no ServiceEntry registers {host}"), hint("MST0823", host=host, namespace=ns)


def _service_namespace(edge: Edge, service_entries: dict[str, str]) -> str | None:
    """The namespace a Sidecar egress host names for a destination: a Service's, or its ServiceEntry's."""
    if edge.destination.known and ".svc" in edge.service:
        return edge.destination.namespace
    parts = edge.service.split(".")
    if len(parts) >= 3 and parts[2] == "svc":
        return parts[1]
    return service_entries.get(edge.service)


def _egress_hosts(ctx: Context) -> list[tuple[str, str]]:
    """The Sidecar's egress hosts as the stage renders them (its namespace, the root namespace, and `hosts`), as
    (namespace part, host part)."""
    extra = [h.strip() for h in (ctx.params.get("hosts") or "").split(",") if h.strip()]
    return [(ns, dns) for ns, _, dns in (h.partition("/") for h in
                                         ["./*", f"{ctx.inventory.root_namespace}/*", *extra])]


@observed("MST0824", "ServiceEntry")
def destination_outside_sidecar_scope(ctx: Context, t: Traffic) -> Iterator[Found]:
    inv = ctx.inventory
    scope = set(scope_namespaces(ctx))
    egress = _egress_hosts(ctx)
    service_entries = {h: se.namespace for se in inv.of_kind("ServiceEntry") for h in se.spec.get("hosts") or ()}
    calls = [e for e in t.edges if e.source.known and e.source.namespace in scope and e.egress != "PassthroughCluster"]
    for (src, _dst, host), edges in _grouped(calls):
        target = _service_namespace(edges[0], service_entries)
        if target is None:
            continue
        if not any((ns == "*" or (ns == "." and target == src.namespace) or ns == target) and host_matches(host, dns)
                   for ns, dns in egress):
            yield _ref(inv, src), (f"{counted(edges)} from {src} to {host} in {t.window_text}: outside the "
                                   "Sidecar's egress hosts"), hint("MST0824", host=f"{target}/{host}",
                                                                    target=target)

