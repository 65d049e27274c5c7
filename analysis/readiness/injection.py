"""Readiness before sidecar injection: pods to restart, host-network pods, init containers that need the network,
ports whose protocol Istio cannot tell or where the server speaks first, revisions without an istiod, opt-outs."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from analysis.base import Context
from analysis.catalog import fill
from analysis.readiness.scope import (
    HOST_PORT,
    ISTIO_INIT,
    URL,
    Found,
    hint,
    outside_mesh,
    pods_text,
    proxy_pods,
    readiness,
    scope_namespaces,
    units,
)
from cluster.inventory import Inventory
from cluster.model import Container, Ref, Service
from cluster.queries import opted_out, per_inventory

# Ports of protocols where the server sends the first bytes (Istio's protocol-selection page lists 25, 3306 and
# 27017 as incompatible with sniffing, and 53, which is mostly UDP and not proxied). PostgreSQL is not here: its
# client speaks first.
SERVER_FIRST = {21: "ftp", 22: "ssh", 25: "smtp", 110: "pop3", 143: "imap", 587: "smtp", 3306: "mysql",
                27017: "mongodb"}
# Commands that only make sense with the network: an init container running one will be cut off by capture.
_NETWORK_TOOLS = frozenset({"curl", "wget", "nc", "ncat", "nslookup", "dig", "psql", "pg_isready", "mysql",
                            "mysqladmin", "mongosh", "mongo", "redis-cli", "git", "kubectl", "helm", "aws", "gsutil",
                            "vault", "flyway", "liquibase", "migrate"})


# ---------------------------------------------------------------- before sidecar injection


@readiness("MST0101")
def restarts_to_join(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    for u in units(inv, scope_namespaces(ctx)):
        if u.spec.host_network or opted_out(u.spec) or not u.pods:
            continue  # host network and opted-out pods stay out (MST0102, MST0107); templates inject on creation
        out = outside_mesh(inv, u)
        if out:
            yield u.ref, fill("{pods} without a sidecar until re-created", pods=pods_text(out)), \
                hint("MST0101", restart=u.restart())


@readiness("MST0102")
def host_network(ctx: Context) -> Iterator[Found]:
    for u in units(ctx.inventory, scope_namespaces(ctx)):
        if u.spec.host_network:
            yield u.ref, "uses hostNetwork: it gets no sidecar and its traffic is not captured", \
                hint("MST0102", workload=str(u.ref))


def _sidecar_shapes(inv: Inventory) -> dict[str | None, set[str]]:
    """The shapes of the sidecars already injected, by revision."""
    out: dict[str | None, set[str]] = defaultdict(set)
    for p in inv.pods:
        if p.sidecar is not None:
            out[p.sidecar.revision].add(p.sidecar.shape)
    return out


def _native_shape(inv: Inventory, revision: str | None) -> bool:
    """Whether the injector makes native sidecars, as the pods it already injected show (those of the same
    revision first); unknown counts as not, since the classic shape is the one that breaks."""
    shapes = per_inventory(inv, "readiness-sidecar-shapes", _sidecar_shapes)
    seen = shapes.get(revision) or set().union(*shapes.values())
    return seen == {"native"}


def _uses_network(c: Container) -> bool:
    """Whether a container runs a network tool (by its command, args or image) or names a URL or host:port."""
    argv = c.command + c.args
    words = {w.rsplit("/", 1)[-1] for a in argv for w in a.split()}
    return bool(words & _NETWORK_TOOLS) or c.image_name in _NETWORK_TOOLS or any(
        URL.search(a) or HOST_PORT.search(a) for a in argv)


@readiness("MST0103")
def init_container_network(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    for u in units(inv, scope_namespaces(ctx)):
        if u.spec.host_network or opted_out(u.spec) or (u.pods and not outside_mesh(inv, u)):
            continue  # never injected, or injected and running: only pods still to be injected can break
        ns = inv.namespaces.get(u.namespace)
        if _native_shape(inv, ns.revision if ns else None):
            continue
        for c in u.spec.init_containers:
            if c.name not in ISTIO_INIT and not c.restart_always and _uses_network(c):
                yield u.ref, fill("init container {name} calls the network: with the classic sidecar its traffic is "
                                  "captured before Envoy runs and fails", name=c.name), \
                    hint("MST0103", container=c.name)


def services_in_scope(ctx: Context) -> Iterator[Service]:
    inv = ctx.inventory
    proxies = proxy_pods(inv)
    for n in scope_namespaces(ctx):
        for svc in inv.services_by_namespace.get(n, ()):
            if svc.type == "ExternalName" or "gateway.istio.io/managed" in svc.labels:
                continue
            pods = inv.pods_of_service(svc)
            if pods and all((p.namespace, p.name) in proxies for p in pods):
                continue  # a gateway's or waypoint's own Service
            yield svc


def _server_first(port: Any) -> str | None:
    return SERVER_FIRST.get(port.port) or (SERVER_FIRST.get(port.target_port) if isinstance(port.target_port, int)
                                           else None)


@readiness("MST0104", "Service")
def protocol_not_declared(ctx: Context) -> Iterator[Found]:
    for svc in services_in_scope(ctx):
        for p in svc.ports:
            if p.istio_protocol == "UNKNOWN" and not _server_first(p):
                name = fill("{port} ({name})", port=p.port, name=p.name) if p.name else f"{p.port} (unnamed)"
                yield svc.ref, fill("port {name}: Istio cannot tell its protocol and will sniff it", name=name), \
                    hint("MST0104", port=str(p.port), service=f"{svc.namespace}/{svc.name}", namespace=svc.namespace,
                         name=svc.name)


@readiness("MST0105", "Service")
def server_first_port(ctx: Context) -> Iterator[Found]:
    for svc in services_in_scope(ctx):
        for p in svc.ports:
            protocol = _server_first(p)
            if p.istio_protocol == "UNKNOWN" and protocol:
                yield svc.ref, (f"port {p.port} is {protocol.upper()}'s port (a server-first protocol) "
                                f"and does not declare it"), \
                    hint("MST0105", port=str(p.port), service=f"{svc.namespace}/{svc.name}", protocol=protocol)


@readiness("MST0106", "ConfigMap")
def no_istiod_for_revision(ctx: Context) -> Iterator[Found]:
    # The stage labels the namespace with the revision it is given, else with one the cluster runs (the default
    # tag's, or the only one): without a revision param, any running istiod will do.
    inv = ctx.inventory
    wanted = ctx.params.get("revision") or None
    running, installed = set(), set()
    for r in inv.revisions:
        names = {r.revision, *r.tags}
        installed |= names
        # Without pods in the source (manifests) a revision's Deployment is all there is: count it as running.
        if r.ready_pods > 0 or r.istiod_pods == 0:
            running |= names
    if (wanted in running) if wanted else running:
        return
    state = ("has no ready pod" if wanted in installed else "is not installed") if wanted else "no istiod is running"
    what = fill("istiod revision {wanted} " + state, wanted=wanted) if wanted else fill(state)
    install = f"istioctl install --set revision={wanted}" if wanted else "istioctl install --set profile=default"
    for n in scope_namespaces(ctx):
        yield Ref("Namespace", None, n), fill("{what}: pods of namespace {n} would get no sidecar", what=what, n=n), \
            hint("MST0106", istiod=f"istiod revision {wanted}" if wanted else "istiod", install=install,
                 root=inv.root_namespace)


@readiness("MST0107")
def workloads_opted_out(ctx: Context) -> Iterator[Found]:
    for u in units(ctx.inventory, scope_namespaces(ctx)):
        if opted_out(u.spec):
            yield u.ref, "sets sidecar.istio.io/inject: \"false\": it stays out of the mesh", \
                hint("MST0107", workload=str(u.ref))
