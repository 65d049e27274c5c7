"""Readiness before mutual TLS: workloads and callers outside the mesh, DestinationRules that turn TLS off, health
probes not rewritten, and PERMISSIVE before STRICT."""
from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.base import Context
from analysis.catalog import fill, joined
from analysis.effective import mtls_mode
from analysis.readiness.scope import (
    Found,
    hint,
    mesh_namespaces,
    outside_mesh,
    readiness,
    scope_namespaces,
    service_calls,
    units,
    without_sidecar,
)
from cluster import components
from cluster.inventory import Inventory
from cluster.model import KubeObject, Pod, Ref, Service
from cluster.queries import DOMAIN, application_namespace, fqdn, host_matches, istio_objects, ns_of, selector_matches
from cluster.revisions import injection_label

_REWRITE_PROBES = "sidecar.istio.io/rewriteAppHTTPProbers"


# ---------------------------------------------------------------- before mTLS


@readiness("MST0301")
def plaintext_workload(ctx: Context) -> Iterator[Found]:
    yield from without_sidecar(ctx, "MST0301", "it keeps using plaintext, which PERMISSIVE accepts")


def _callers_outside(ctx: Context) -> Iterator[tuple[Ref, str, str, str, str]]:
    """(blamed resource, what calls, what it calls, caller, how to bring it in) for every plaintext caller of a
    service in scope from outside whose servers refuse it, or may, after the stage (refuses_plaintext, on the port
    it reaches): workloads of other namespaces without sidecars, Ingress controllers, ExternalName Services and
    Endpoints of namespaces outside the mesh."""
    inv = ctx.inventory
    scope = set(scope_namespaces(ctx))
    meshed = set(mesh_namespaces(inv))
    outside_ns = [n for n in inv.namespace_names() if n not in scope and application_namespace(inv, n)]
    # the cluster as the stage leaves it, built once a call needs it
    after = functools.cache(lambda: ctx.after() if ctx.after is not None else inv)
    for u in units(inv, outside_ns):
        if not outside_mesh(inv, u):
            continue
        for svc, port, where in service_calls(inv, u):
            if svc.namespace in scope and (unless := _unless(refuses_plaintext(after(), svc, port))) is not None:
                yield u.ref, fill("has no sidecar and names {name}.{namespace} in its {where}{unless}",
                                  name=svc.name, namespace=svc.namespace, where=where, unless=unless), \
                    f"Service {svc.namespace}/{svc.name}", str(u.ref), u.inject(inv)
    for ing in inv.of_kind("Ingress"):
        n = ns_of(ing)
        cls = ing.spec.get("ingressClassName") or ing.annotations.get("kubernetes.io/ingress.class") or "default"
        if n not in scope or cls == "istio":
            continue
        for svc, port in ingress_backends(inv, ing):
            if (unless := _unless(refuses_plaintext(after(), svc, port))) is not None:
                at = " port {port}" if port is not None else ""
                yield ing.ref, fill("class {cls}: sends its traffic to Service {n}/{name}" + at + "{unless}", cls=cls,
                                    n=n, name=svc.name, port=port, unless=unless), \
                    f"Service {n}/{svc.name}", f"the {cls} ingress controller", \
                    "inject the controller's pods, or route through an Istio Gateway instead"
    scope_hosts = {s.host: s for n in scope for s in inv.services_by_namespace.get(n, ())}
    for svc in inv.services:
        if svc.namespace in meshed or svc.type != "ExternalName":
            continue
        target = scope_hosts.get(_cluster_host(svc.external_name or "", svc.namespace))
        if target is not None and (unless := _unless(refuses_plaintext(after(), target))) is not None:
            yield svc.ref, fill("an ExternalName alias of {host} for namespace {namespace}{unless}", host=target.host,
                                namespace=svc.namespace, unless=unless), \
                f"Service {target.namespace}/{target.name}", f"the workloads of namespace {svc.namespace}", \
                f"kubectl label namespace {svc.namespace} {injection_label(inv, svc.namespace)}, then restart " \
                "its workloads"
    ips = {p.ip: p for n in scope for p in inv.pods_by_namespace.get(n, ()) if p.ip}
    for ep in inv.of_kind("Endpoints") + inv.of_kind("EndpointSlice"):
        if ns_of(ep) in meshed:
            continue
        hit = [(ips[ip], ports) for ip, ports in _endpoints(ep) if ip in ips]
        if not hit:
            continue
        # Endpoints name the pods' own ports: a call reaches the one it is made on, which is known if they name one.
        reached = frozenset(p for _, ports in hit for p in ports)
        port = next(iter(reached)) if len(reached) == 1 else None
        pods = [after().pod(p.namespace, p.name) or p for p, _ in hit]
        verdict = servers_refuse(after(), pods[0].namespace, enforcing(after(), pods, {}), port,
                                 reached if port is not None else None)
        if (unless := _unless(verdict)) is not None:
            names = joined(sorted({p.name for p in pods}))
            on = " on port {port}" if port is not None else ""
            yield ep.ref, fill("points at pods of {n} ({names})" + on + "{unless}", n=pods[0].namespace,
                               names=names, port=port, unless=unless), \
                f"Pod {pods[0].namespace}/{pods[0].name}", f"the workloads of namespace {ns_of(ep)}", \
                f"kubectl label namespace {ns_of(ep)} {injection_label(inv, ns_of(ep))}, then restart " \
                "its workloads"


def _unless(verdict: Plaintext) -> str | None:
    """What a caller's plaintext being refused depends on: nothing ("") where its servers refuse it, the port it
    calls where that decides and is unknown; None where they accept it."""
    if verdict.refused is False:
        return None
    return "" if verdict.refused else fill((", unless" if verdict.strict else ", if") + " the port it calls is {other}",
                                           other=verdict.other_text)


@dataclass(frozen=True)
class PortMode:
    """A port of a workload's pods whose mode a workload PeerAuthentication's portLevelMtls sets, over the workload's
    own mode (STRICT, PERMISSIVE or DISABLE; UNSET inherits it)."""

    port: int  # the pods' (container) port: portLevelMtls keys are the workload's ports, not the Service's
    mode: str
    by: Ref

    def __str__(self) -> str:
        return f"port {self.port} {self.mode} (portLevelMtls of {self.by})"


def port_modes(inv: Inventory, namespace: str, labels: list[dict[str, str]]) -> list[PortMode]:
    """The ports the workload PeerAuthentications of `namespace` selecting any of `labels` set a mode for
    (https://istio.io/latest/docs/reference/config/security/peer_authentication/: portLevelMtls takes effect with a
    selector only, keyed by the port of the workload, and wins over the workload's mode)."""
    return [PortMode(int(port), m["mode"], pa.ref)
            for pa in istio_objects(inv, "PeerAuthentication")
            if ns_of(pa) == namespace and pa.spec.get("selector")
            and any(selector_matches(pa.spec["selector"], one) for one in labels)
            for port, m in sorted((pa.spec.get("portLevelMtls") or {}).items())
            if str(port).isdigit() and (m or {}).get("mode") in ("STRICT", "PERMISSIVE", "DISABLE")]


def target_ports(svc: Service, port: int | None, pods: list[Pod]) -> frozenset[int] | None:
    """The pods' ports a call on the Service's `port` reaches: its targetPort (the port itself where none is set),
    a named one as the pods' containers name it; None where that is unknown (no port, no pod naming it)."""
    sp = next((p for p in svc.ports if p.port == port), None) if port is not None else None
    if sp is None:
        return None
    target = sp.target_port if sp.target_port is not None else sp.port
    if isinstance(target, int):
        return frozenset({target})
    named = frozenset(cp.port for pod in pods for c in pod.spec.containers for cp in c.ports if cp.name == target)
    return named or None


@dataclass(frozen=True)
class Plaintext:
    """Whether a Service's servers refuse a plaintext call on one of its ports, as Istio decides it: by the mode of
    each pods' port the call reaches, portLevelMtls's where a workload PeerAuthentication sets one, else the
    servers' own (their workload's, namespace's or mesh's)."""

    mode: str  # why the servers' own mode is what it is ("STRICT from PeerAuthentication app/default", …)
    strict: bool  # it refuses plaintext
    port: int | None = None  # the Service port called (None: unknown)
    reached: frozenset[int] | None = None  # the pods' ports it reaches (None: unknown)
    other: tuple[PortMode, ...] = ()  # the pods' ports whose portLevelMtls goes against the mode: open, or STRICT

    @property
    def refused(self) -> bool | None:
        """True where a pods' port the call reaches is STRICT, by its own mode or the servers'; None where that
        depends on which port it calls, which meshstep does not know."""
        against = {o.port for o in self.other}
        if self.reached is None:
            return None if against else self.strict
        return any((p in against) != self.strict for p in self.reached)

    @property
    def other_text(self) -> str:
        return ", ".join(map(str, self.other))

    @property
    def why(self) -> str:
        """Why a call in plaintext on this port is, or is not, refused."""
        if not self.other:
            return self.mode
        if self.reached is None:
            return f"{self.mode}, but {self.other_text}, and meshstep does not know which port it calls"
        if self.refused != self.strict:  # a port's own mode decides
            decided = ", ".join(str(o) for o in self.other if o.port in self.reached)
            return f"{self.mode}, but port {self.port} it calls reaches the pods' {decided}"
        return (f"{self.mode}; port {self.port} it calls reaches the pods' port "
                f"{', '.join(map(str, sorted(self.reached)))}, not {self.other_text}")


def enforcing(inv: Inventory, pods: Sequence[Pod], labels: dict[str, str]) -> list[dict[str, str]]:
    """The labels Istio's policies select servers by: those of the pods a proxy serves (a sidecar, or ztunnel), the
    only ones that apply a PeerAuthentication or an AuthorizationPolicy, none where every pod runs without one; with
    no pods to go by, the `labels` their pods are made with (a Service's selector, a workload's pod template)."""
    if not pods:
        return [labels]
    return [p.labels for p in pods if inv.in_mesh(p)]


def service_servers(inv: Inventory, svc: Service) -> tuple[list[Pod], list[dict[str, str]]]:
    """A Service's pods, and the labels its servers are selected by (`enforcing`)."""
    pods = inv.pods_of_service(svc)
    return pods, enforcing(inv, pods, svc.selector or {})


def servers_refuse(inv: Inventory, namespace: str, labels: list[dict[str, str]], port: int | None = None,
                   reached: frozenset[int] | None = None) -> Plaintext:
    """Whether the servers of `namespace` selected by `labels` (`enforcing`: none where no proxy serves them) refuse
    plaintext called on `port`, which reaches their `reached` ports (None: unknown), and why: STRICT where a proxy
    enforces it, each server by its own PeerAuthentication, else its namespace's, else the mesh's, and each pods' port
    by the portLevelMtls of a workload PeerAuthentication that sets one. A pod without a sidecar (or ztunnel) has no
    proxy to apply a PeerAuthentication: it takes whatever comes."""
    if not labels:
        return Plaintext("no sidecar there to enforce mTLS", False)
    modes = [mtls_mode(inv, namespace, one) for one in labels]
    mode = next((m for m in modes if m.value == "STRICT"), modes[0])
    strict = mode.value == "STRICT"
    # Only the ports whose mode goes the other way change a verdict: open under STRICT, STRICT under the others.
    other = tuple(o for o in port_modes(inv, namespace, labels) if (o.mode == "STRICT") != strict)
    return Plaintext(mode.why, strict, port, reached, other)


def refuses_plaintext(inv: Inventory, svc: Service, port: int | None = None) -> Plaintext:
    """Whether a Service's servers refuse plaintext on its `port` (None: unknown), and why (`servers_refuse`), on
    the pods' ports it reaches; with no pods to go by, its selector's mode is taken."""
    pods, labels = service_servers(inv, svc)
    return servers_refuse(inv, svc.namespace, labels, port, target_ports(svc, port, pods))


def _cluster_host(name: str, namespace: str) -> str:
    """The full host of a Service named as a client may name it: `svc`, `svc.ns`, `svc.ns.svc[.cluster.local]`."""
    name = name.rstrip(".").removesuffix(".cluster.local").removesuffix(".svc")
    if name.count(".") == 1:
        return f"{name}.{DOMAIN}"
    return fqdn(name, namespace)


def _endpoints(obj: Any) -> Iterator[tuple[str, frozenset[int]]]:
    """The addresses of an Endpoints (subsets) or EndpointSlice (endpoints) object, each with the ports it gives
    for them."""
    for s in obj.raw.get("subsets") or ():
        ports = frozenset(p["port"] for p in s.get("ports") or () if isinstance(p.get("port"), int))
        yield from ((a.get("ip"), ports) for a in s.get("addresses") or ())
    ports = frozenset(p["port"] for p in obj.raw.get("ports") or () if isinstance(p.get("port"), int))
    for e in obj.raw.get("endpoints") or ():
        yield from ((a, ports) for a in e.get("addresses") or ())


def service_port(svc: Service, named: int | str | None) -> int | None:
    """The Service port a config names, by number or by name; with none named, the Service's only port (a route
    destination may leave it out then, https://istio.io/latest/docs/reference/config/networking/virtual-service/#Destination);
    None where that is unknown: several ports and none named, or one the Service does not serve."""
    if named is None:
        return svc.ports[0].port if len(svc.ports) == 1 else None
    return next((p.port for p in svc.ports if named in (p.port, p.name)), None)


def ingress_backends(inv: Inventory, ing: KubeObject) -> list[tuple[Service, int | None]]:
    """The Services of its namespace an Ingress sends to (its default backend, `backend` in the legacy form, and its
    paths'), each with the Service port it names (`port.number` or `port.name`, the legacy `servicePort` either),
    once each, in name and port order."""
    s = ing.spec
    backends = [s.get("defaultBackend") or s.get("backend") or {}]
    backends += [p.get("backend") or {} for r in s.get("rules") or () for p in (r.get("http") or {}).get("paths") or ()]
    out = {}
    for b in backends:
        ref = b.get("service") or {}
        svc = inv.service(ns_of(ing), ref.get("name") or b.get("serviceName") or "")
        if svc is not None:
            port = ref.get("port") or {}
            at = service_port(svc, port.get("number") or port.get("name") or b.get("servicePort"))
            out[(svc.name, at or 0)] = (svc, at)
    return [out[k] for k in sorted(out)]


@readiness("MST0402", "Service")
def plaintext_callers(ctx: Context) -> Iterator[Found]:
    for r, text, target, caller, inject in _callers_outside(ctx):
        yield r, fill("{text}: STRICT refuses its plaintext", text=text), \
            hint("MST0402", caller=caller, inject=inject, target=target)


def _tls_modes(s: dict[str, Any]) -> Iterator[str]:
    policies = [s.get("trafficPolicy") or {}] + [sub.get("trafficPolicy") or {} for sub in s.get("subsets") or ()]
    for tp in policies:
        yield (tp.get("tls") or {}).get("mode") or ""
        for pls in tp.get("portLevelSettings") or ():
            yield (pls.get("tls") or {}).get("mode") or ""


@readiness("MST0403", "DestinationRule")
def tls_disabled(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    hosts = [s.host for n in scope_namespaces(ctx) for s in inv.services_by_namespace.get(n, ())]
    for dr in istio_objects(inv, "DestinationRule"):
        if "DISABLE" not in _tls_modes(dr.spec):
            continue
        host = fqdn(dr.spec.get("host") or "", ns_of(dr))
        hit = [h for h in hosts if host_matches(h, host)]
        if hit:
            yield dr.ref, fill("sets TLS mode DISABLE for {hosts}", hosts=joined(hit)), \
                hint("MST0403", rule=f"{ns_of(dr)}/{dr.name}", namespace=ns_of(dr), name=dr.name)


@readiness("MST0404")
def probes_not_rewritten(ctx: Context) -> Iterator[Found]:
    for u in units(ctx.inventory, scope_namespaces(ctx)):
        if u.spec.annotations.get(_REWRITE_PROBES) != "false":
            continue
        probes = [fill("{type} {path} on port {port} of {name}", type=p.type, path=p.path or "/", port=p.port,
                       name=c.name) for c in u.spec.containers
                  if c.name != components.PROXY_CONTAINER for p in c.probes if p.handler == "httpGet"]
        if probes:
            yield u.ref, fill("keeps its httpGet probes ({probes}) out of the sidecar", probes=joined(probes, "; ")), \
                hint("MST0404", workload=str(u.ref))


@readiness("MST0405", "PeerAuthentication")
def permissive_not_in_place(ctx: Context) -> Iterator[Found]:
    for n in scope_namespaces(ctx):
        mode = mtls_mode(ctx.inventory, n)
        if mode.value != "DISABLE":  # no PeerAuthentication at all is PERMISSIVE: Istio's auto mTLS default
            continue
        yield Ref("Namespace", None, n), fill("namespace {n} is not in PERMISSIVE yet ({why})", n=n, why=mode.why), \
            hint("MST0405", namespace=n, policy=str(mode.by))
