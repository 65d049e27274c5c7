"""Readiness checks: what will break when a stage turns a feature on, in the stage's scope (a namespace, or for
`mesh` every namespace that is or will be in the mesh). These run only in stage gates, never in `analyze`.

Their identity (code, name, level, gates, hint) comes from catalog.py; each check fills the hint in with the
names of the resources it blames."""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from analysis import destinationrule
from analysis.base import Context, check, registered
from analysis.catalog import CATALOG
from analysis.effective import mtls_mode
from cluster import components
from cluster.inventory import Inventory
from cluster.model import Container, Pod, PodSpecSummary, Ref, Service
from cluster.queries import (
    DOMAIN,
    application_namespace,
    fqdn,
    host_matches,
    injection_requested,
    istio_objects,
    labels_match,
    lookup,
    ns_of,
    opted_out,
    per_inventory,
    service_index,
)

Found = tuple[Ref, str, str]

# Istio's own init containers (and the native sidecar): they are the capture, not an app that needs the network.
_ISTIO_INIT = frozenset({components.PROXY_CONTAINER, "istio-init", "istio-validation"})
# Ports of protocols where the server sends the first bytes (Istio's protocol-selection page lists 25, 3306 and
# 27017 as incompatible with sniffing, and 53, which is mostly UDP and not proxied). PostgreSQL is not here: its
# client speaks first.
SERVER_FIRST = {21: "ftp", 22: "ssh", 25: "smtp", 110: "pop3", 143: "imap", 587: "smtp", 3306: "mysql",
                27017: "mongodb"}
# Commands that only make sense with the network: an init container running one will be cut off by capture.
_NETWORK_TOOLS = frozenset({"curl", "wget", "nc", "ncat", "nslookup", "dig", "psql", "pg_isready", "mysql",
                            "mysqladmin", "mongosh", "mongo", "redis-cli", "git", "kubectl", "helm", "aws", "gsutil",
                            "vault", "flyway", "liquibase", "migrate"})
_URL = re.compile(r"\b(?:https?|grpcs?|wss?|tcp|tls|amqps?|mongodb(?:\+srv)?|postgres(?:ql)?|mysql|redis)://"
                  r"(?:[^/@\s'\"]*@)?([A-Za-z0-9.-]+)")
_HOST_PORT = re.compile(r"(?<![\w./-])([a-z0-9][a-z0-9-]*\.[a-z0-9.-]*[a-z0-9]):\d{1,5}\b")
# `<service>.<namespace>` with the optional cluster suffixes, as workloads name in-cluster services.
_SERVICE_HOST = re.compile(r"(?<![\w.-])([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)"
                           r"(?:\.svc(?:\.cluster\.local)?)?(?![\w-])")
_IP = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_TRACERS = ("zipkin", "opentelemetry", "datadog", "skywalking", "stackdriver", "lightstep", "opencensus")
_TRACING_BACKENDS = {"zipkin": (9411, "zipkin"), "jaeger": (9411, "zipkin"), "otel-collector": (4317, "opentelemetry")}
_REWRITE_PROBES = "sidecar.istio.io/rewriteAppHTTPProbers"


# What most readiness checks read: the scope's namespaces, their workloads and pods.
_WORKLOADS = ("Namespace", "Deployment", "StatefulSet", "DaemonSet", "Pod")


def readiness(code: str, *more: str) -> Any:
    """Register a readiness check under its catalog identity; it reads the scope's workloads and `more` kinds."""
    return check(code, reads=_WORKLOADS + more)


def hint(code: str, **values: str) -> str:
    return CATALOG[code].hint_for(**values)


# ---------------------------------------------------------------- the scope


def mesh_namespaces(inv: Inventory) -> list[str]:
    """Namespaces that are or will be in the mesh: labelled for injection or ambient, or with pods in the mesh;
    not Kubernetes' own, not Istio's root namespace."""
    def meshed(name: str) -> bool:
        ns = inv.namespaces.get(name)
        if ns and ns.injection in ("sidecar", "ambient"):
            return True
        return any(inv.in_mesh(p) for p in inv.pods_by_namespace.get(name, ()))

    return [n for n in inv.namespace_names() if application_namespace(inv, n) and meshed(n)]


def scope_namespaces(ctx: Context) -> list[str]:
    if ctx.scope and ctx.scope != "mesh":
        return [ctx.scope]
    return mesh_namespaces(ctx.inventory)


@dataclass(frozen=True)
class Unit:
    """A workload as readiness sees it: its pods when the source has them, else its pod template."""

    ref: Ref
    spec: PodSpecSummary
    pods: tuple[Pod, ...]

    @property
    def namespace(self) -> str:
        return self.ref.namespace or "default"

    def restart(self) -> str:
        """The command that re-creates its pods (and so injects them)."""
        ns, kind, name = self.namespace, self.ref.kind, self.ref.name
        if kind in ("Deployment", "StatefulSet", "DaemonSet"):
            return f"kubectl -n {ns} rollout restart {kind.lower()}/{name}"
        if kind == "CronJob":
            return (f"its next run is injected; for a run now: kubectl -n {ns} create job --from=cronjob/{name} "
                    f"{name}-now")
        if kind == "Job":
            return f"re-run it: kubectl -n {ns} get job {name} -o yaml | kubectl replace --force -f -"
        if kind == "Pod":
            return (f"kubectl -n {ns} delete pod {name} and create it again from its manifest (no controller "
                    "re-creates it)")
        # A ReplicaSet of its own, a ReplicationController, an operator's resource: its controller re-creates them.
        if not self.pods:
            return f"nothing to restart: its {kind} {name} has no pods yet, and makes them injected"
        which = (f"-l {','.join(f'{k}={v}' for k, v in sorted(self.spec.labels.items()))}" if self.spec.labels
                 else " ".join(p.name for p in self.pods))
        return f"kubectl -n {ns} delete pod {which} (its {kind} {name} creates them again)"

    def inject(self, inv: Inventory) -> str:
        """What gets its pods a sidecar: whatever keeps them out removed first, then a restart."""
        if self.spec.host_network:
            return f"drop hostNetwork from its pod template, then {self.restart()}"
        if opted_out(self.spec):
            return f"remove sidecar.istio.io/inject: \"false\" from its pod template, then {self.restart()}"
        ns = inv.namespaces.get(self.namespace)
        if (not (ns and ns.injection in ("sidecar", "ambient"))
                and not injection_requested(inv, self.namespace, self.spec)):
            return f"kubectl label namespace {self.namespace} istio-injection=enabled, then {self.restart()}"
        return self.restart()


def _proxy_pods(inv: Inventory) -> set[tuple[str, str]]:
    """Pods that are Istio's own proxies or control plane (gateways, waypoints, ztunnel, istiod, istio-cni)."""
    return {(c.namespace, c.name) for c in inv.components
            if c.kind == "Pod" and c.component != "sidecar" and c.plane != "addon"}


def _units(inv: Inventory) -> dict[str, list[Unit]]:
    """Units by namespace: inv.workloads already leaves out what a workload owns (a Deployment's ReplicaSets, a
    CronJob's Jobs), and keeps a workload whose controller is something else (an operator's custom resource)."""
    out: dict[str, list[Unit]] = defaultdict(list)
    proxies = _proxy_pods(inv)
    by_name = {(p.namespace, p.name): p for p in inv.pods}
    for w in inv.workloads:
        if w.template is None and not w.pods:
            continue
        pods = tuple(by_name[(w.namespace, n)] for n in w.pods if (w.namespace, n) in by_name)
        if any((p.namespace, p.name) in proxies for p in pods):
            continue
        template = w.template or pods[0].spec
        recognised = components.recognise(template)
        if not pods and recognised and recognised[0] != "sidecar" and components.PLANES[recognised[0]] != "addon":
            continue
        out[w.namespace].append(Unit(w.ref, template, pods))
    return out


def units(inv: Inventory, namespaces: Iterable[str]) -> Iterator[Unit]:
    """The application workloads of these namespaces (Istio's own proxies and control plane left out)."""
    by_ns = per_inventory(inv, "readiness-units", _units)
    for n in namespaces:
        yield from by_ns.get(n, ())


def outside_mesh(inv: Inventory, unit: Unit) -> list[str]:
    """Names of the unit's pods without a sidecar (or ambient redirection); for a template without pods, [name]
    when the pods it will create stay out."""
    if unit.pods:
        return [p.name for p in unit.pods if not inv.in_mesh(p)]
    ns = inv.namespaces.get(unit.namespace)
    if injection_requested(inv, unit.namespace, unit.spec) or (ns and ns.injection == "ambient"):
        return []
    return [unit.ref.name]


def _pods_text(names: list[str]) -> str:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"{len(names)} pod{'s' if len(names) != 1 else ''} ({shown})"


def _without_sidecar(ctx: Context, code: str, effect: str) -> Iterator[Found]:
    """Workloads in scope with pods outside the mesh; what that means is the stage's (effect)."""
    inv = ctx.inventory
    for u in units(inv, scope_namespaces(ctx)):
        out = outside_mesh(inv, u)
        if out:
            yield u.ref, f"{_pods_text(out)} without a sidecar: {effect}", \
                hint(code, workload=str(u.ref), inject=u.inject(inv))


# ---------------------------------------------------------------- what workloads call


def _object_texts(obj: Any) -> Iterator[tuple[str, str]]:
    """(where, text) of a workload object's containers: command, args and literal env values."""
    pod_spec = (obj.spec.get("template") or {}).get("spec") or {}
    if obj.kind == "CronJob":
        pod_spec = ((((obj.spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec") or {})
    for c in (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or []):
        if c.get("name") in _ISTIO_INIT:
            continue
        for e in c.get("env") or ():
            if isinstance(e.get("value"), str):
                yield f"env {e.get('name')} of container {c.get('name')}", e["value"]


def texts(inv: Inventory, unit: Unit) -> list[tuple[str, str]]:
    """(where, text) of what a workload is configured with: its containers' command and args, and the literal env
    values of its workload object when the source has it."""
    out = [(f"{'command' if i < len(c.command) else 'args'} of container {c.name}", t)
           for c in unit.spec.containers + unit.spec.init_containers if c.name not in _ISTIO_INIT
           for i, t in enumerate(c.command + c.args)]
    obj = lookup(inv, unit.ref.kind, unit.namespace, unit.ref.name)
    if obj is not None:
        out.extend(_object_texts(obj))
    return out


def service_calls(inv: Inventory, unit: Unit) -> Iterator[tuple[Service, str]]:
    """In-cluster services a workload names (`svc.ns`, `svc.ns.svc.cluster.local`), with where it names them."""
    seen = set()
    for where, text in texts(inv, unit):
        for name, namespace in _SERVICE_HOST.findall(text):
            svc = inv.service(namespace, name)
            if svc is not None and (svc.name, svc.namespace) not in seen:
                seen.add((svc.name, svc.namespace))
                yield svc, where


def external_hosts(inv: Inventory, unit: Unit) -> Iterator[tuple[str, str]]:
    """Hosts outside the cluster a workload names in URLs or host:port, with where it names them."""
    namespaces = per_inventory(inv, "readiness-namespace-names", lambda i: frozenset(i.namespace_names()))
    seen = set()
    for where, text in texts(inv, unit):
        for host in _URL.findall(text) + _HOST_PORT.findall(text):
            host = host.lower().rstrip(".")
            if host in seen or "." not in host or _IP.match(host) or host.endswith((".local", ".svc", ".internal")):
                continue
            parts = host.split(".")
            if parts[1] in namespaces and (len(parts) == 2 or parts[2] == "svc"):
                continue  # `svc.ns`: a service of the cluster
            seen.add(host)
            yield host, where


# ---------------------------------------------------------------- before sidecar injection


@readiness("MST0101")
def restarts_to_join(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    for u in units(inv, scope_namespaces(ctx)):
        if u.spec.host_network or opted_out(u.spec) or not u.pods:
            continue  # host network and opted-out pods stay out (MST0102, MST0107); templates inject on creation
        out = outside_mesh(inv, u)
        if out:
            yield u.ref, f"{_pods_text(out)} without a sidecar until re-created", \
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
        _URL.search(a) or _HOST_PORT.search(a) for a in argv)


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
            if c.name not in _ISTIO_INIT and not c.restart_always and _uses_network(c):
                yield u.ref, (f"init container {c.name} calls the network: with the classic sidecar its "
                              f"traffic is captured before Envoy runs and fails"), hint("MST0103", container=c.name)


def _services_in_scope(ctx: Context) -> Iterator[Service]:
    inv = ctx.inventory
    proxies = _proxy_pods(inv)
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
    for svc in _services_in_scope(ctx):
        for p in svc.ports:
            if p.istio_protocol == "UNKNOWN" and not _server_first(p):
                name = f"{p.port} ({p.name})" if p.name else f"{p.port} (unnamed)"
                yield svc.ref, f"port {name}: Istio cannot tell its protocol and will sniff it", \
                    hint("MST0104", port=str(p.port), service=f"{svc.namespace}/{svc.name}", namespace=svc.namespace,
                         name=svc.name)


@readiness("MST0105", "Service")
def server_first_port(ctx: Context) -> Iterator[Found]:
    for svc in _services_in_scope(ctx):
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
    what = f"istiod revision {wanted} {state}" if wanted else state
    install = f"istioctl install --set revision={wanted}" if wanted else "istioctl install --set profile=default"
    for n in scope_namespaces(ctx):
        yield Ref("Namespace", None, n), f"{what}: pods of namespace {n} would get no sidecar", \
            hint("MST0106", istiod=f"istiod revision {wanted}" if wanted else "istiod", install=install,
                 root=inv.root_namespace)


@readiness("MST0107")
def workloads_opted_out(ctx: Context) -> Iterator[Found]:
    for u in units(ctx.inventory, scope_namespaces(ctx)):
        if opted_out(u.spec):
            yield u.ref, "sets sidecar.istio.io/inject: \"false\": it stays out of the mesh", \
                hint("MST0107", workload=str(u.ref))


# ---------------------------------------------------------------- before routing


@readiness("MST0201", "Service")
def without_version_labels(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    for svc in _services_in_scope(ctx):
        unlabelled = [p for p in inv.pods_of_service(svc)
                      if "version" not in p.labels and "app.kubernetes.io/version" not in p.labels]
        if unlabelled:
            workloads = sorted({f"{p.workload_kind} {p.namespace}/{p.workload_name}" for p in unlabelled})
            yield svc.ref, f"selects {_pods_text([p.name for p in unlabelled])} without a version label", \
                hint("MST0201", workloads=", ".join(workloads))


@readiness("MST0202")
def caller_without_sidecar(ctx: Context) -> Iterator[Found]:
    yield from _without_sidecar(ctx, "MST0202", "its calls are not routed, retried or limited by the mesh")


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


# ---------------------------------------------------------------- before mTLS


@readiness("MST0301")
def plaintext_workload(ctx: Context) -> Iterator[Found]:
    yield from _without_sidecar(ctx, "MST0301", "it keeps using plaintext, which PERMISSIVE accepts")


@readiness("MST0401")
def without_sidecar_under_strict(ctx: Context) -> Iterator[Found]:
    yield from _without_sidecar(ctx, "MST0401", "it can neither present nor accept mutual TLS under STRICT")


def _callers_outside(ctx: Context) -> Iterator[tuple[Ref, str, str, str, str]]:
    """(blamed resource, what calls, what it calls, caller, how to bring it in) for every plaintext caller of a
    service in scope from outside: workloads of other namespaces without sidecars, Ingress controllers,
    ExternalName Services and Endpoints of namespaces outside the mesh."""
    inv = ctx.inventory
    scope = set(scope_namespaces(ctx))
    meshed = set(mesh_namespaces(inv))
    outside_ns = [n for n in inv.namespace_names() if n not in scope and application_namespace(inv, n)]
    for u in units(inv, outside_ns):
        if not outside_mesh(inv, u):
            continue
        for svc, where in service_calls(inv, u):
            if svc.namespace in scope:
                yield u.ref, f"has no sidecar and names {svc.name}.{svc.namespace} in its {where}", \
                    f"Service {svc.namespace}/{svc.name}", str(u.ref), u.inject(inv)
    for ing in inv.of_kind("Ingress"):
        n = ns_of(ing)
        cls = ing.spec.get("ingressClassName") or ing.annotations.get("kubernetes.io/ingress.class") or "default"
        if n not in scope or cls == "istio":
            continue
        for name in sorted(_ingress_backends(ing.spec)):
            yield ing.ref, f"class {cls}: sends its traffic to Service {n}/{name}", \
                f"Service {n}/{name}", f"the {cls} ingress controller", \
                "inject the controller's pods, or route through an Istio Gateway instead"
    scope_hosts = {s.host: s for n in scope for s in inv.services_by_namespace.get(n, ())}
    for svc in inv.services:
        if svc.namespace in meshed or svc.type != "ExternalName":
            continue
        target = scope_hosts.get(_cluster_host(svc.external_name or "", svc.namespace))
        if target is not None:
            yield svc.ref, f"an ExternalName alias of {target.host} for namespace {svc.namespace}", \
                f"Service {target.namespace}/{target.name}", f"the workloads of namespace {svc.namespace}", \
                f"kubectl label namespace {svc.namespace} istio-injection=enabled, then restart its workloads"
    ips = {p.ip: p for n in scope for p in inv.pods_by_namespace.get(n, ()) if p.ip}
    for ep in inv.of_kind("Endpoints") + inv.of_kind("EndpointSlice"):
        if ns_of(ep) in meshed:
            continue
        hit = [ips[ip] for ip in _endpoint_ips(ep) if ip in ips]
        if hit:
            names = ", ".join(sorted({p.name for p in hit}))
            yield ep.ref, f"points at pods of {hit[0].namespace} ({names})", \
                f"Pod {hit[0].namespace}/{hit[0].name}", f"the workloads of namespace {ns_of(ep)}", \
                f"kubectl label namespace {ns_of(ep)} istio-injection=enabled, then restart its workloads"


def _cluster_host(name: str, namespace: str) -> str:
    """The full host of a Service named as a client may name it: `svc`, `svc.ns`, `svc.ns.svc[.cluster.local]`."""
    name = name.rstrip(".").removesuffix(".cluster.local").removesuffix(".svc")
    if name.count(".") == 1:
        return f"{name}.{DOMAIN}"
    return fqdn(name, namespace)


def _endpoint_ips(obj: Any) -> Iterator[str]:
    """The addresses of an Endpoints (subsets) or EndpointSlice (endpoints) object."""
    for s in obj.raw.get("subsets") or ():
        yield from (a.get("ip") for a in s.get("addresses") or ())
    for e in obj.raw.get("endpoints") or ():
        yield from e.get("addresses") or ()


def _ingress_backends(s: dict[str, Any]) -> set[str]:
    backends = [s.get("defaultBackend") or {}]
    backends += [p.get("backend") or {} for r in s.get("rules") or () for p in (r.get("http") or {}).get("paths") or ()]
    return {(b.get("service") or {}).get("name") or b.get("serviceName") for b in backends} - {None}


@readiness("MST0402", "Service")
def plaintext_callers(ctx: Context) -> Iterator[Found]:
    for r, text, target, caller, inject in _callers_outside(ctx):
        yield r, f"{text}: STRICT refuses its plaintext", \
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
            yield dr.ref, f"sets TLS mode DISABLE for {', '.join(hit)}", \
                hint("MST0403", rule=f"{ns_of(dr)}/{dr.name}", namespace=ns_of(dr), name=dr.name)


@readiness("MST0404")
def probes_not_rewritten(ctx: Context) -> Iterator[Found]:
    for u in units(ctx.inventory, scope_namespaces(ctx)):
        if u.spec.annotations.get(_REWRITE_PROBES) != "false":
            continue
        probes = [f"{p.type} {p.path or '/'} on port {p.port} of {c.name}" for c in u.spec.containers
                  if c.name != components.PROXY_CONTAINER for p in c.probes if p.handler == "httpGet"]
        if probes:
            yield u.ref, f"keeps its httpGet probes ({'; '.join(probes)}) out of the sidecar", \
                hint("MST0404", workload=str(u.ref))


@readiness("MST0405", "PeerAuthentication")
def permissive_not_in_place(ctx: Context) -> Iterator[Found]:
    for n in scope_namespaces(ctx):
        mode = mtls_mode(ctx.inventory, n)
        if mode.value != "DISABLE":  # no PeerAuthentication at all is PERMISSIVE: Istio's auto mTLS default
            continue
        yield Ref("Namespace", None, n), f"namespace {n} is not in PERMISSIVE yet ({mode.why})", \
            hint("MST0405", namespace=n, policy=str(mode.by))


# ---------------------------------------------------------------- before authorization


@readiness("MST0501", "PeerAuthentication")
def strict_not_in_place(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    for n in scope_namespaces(ctx):
        mode = mtls_mode(inv, n)
        fix = f"kubectl -n {n} apply a PeerAuthentication named default with spec.mtls.mode: STRICT"
        if mode.value != "STRICT":
            yield Ref("Namespace", None, n), f"mTLS is not STRICT in namespace {n} ({mode.why})", \
                hint("MST0501", namespace=n, fix=fix)
        for pa in istio_objects(inv, "PeerAuthentication"):
            s = pa.spec
            if ns_of(pa) != n or not s.get("selector"):
                continue
            modes = {(s.get("mtls") or {}).get("mode")} | {(p or {}).get("mode")
                                                          for p in (s.get("portLevelMtls") or {}).values()}
            weak = sorted(m for m in modes & {"PERMISSIVE", "DISABLE"})
            if weak:
                yield pa.ref, (f"keeps {'/'.join(weak)} "
                               "for the workloads it selects"), \
                    hint("MST0501", namespace=n, fix=f"set STRICT in PeerAuthentication {n}/{pa.name}, or delete it")


@readiness("MST0502")
def shared_service_account(ctx: Context) -> Iterator[Found]:
    by_account: dict[tuple[str, str], list[Unit]] = defaultdict(list)
    for u in units(ctx.inventory, scope_namespaces(ctx)):
        if u.spec.service_account != "default":  # the default account is MST0503's
            by_account[(u.namespace, u.spec.service_account)].append(u)
    for (n, account), us in sorted(by_account.items()):
        # Versions of one app (reviews-v1, reviews-v2) are one service to a policy: sharing is what they should do.
        apps = {u.spec.labels.get("app") or u.spec.labels.get("app.kubernetes.io/name") or str(u.ref) for u in us}
        if len(apps) > 1:
            names = ", ".join(str(u.ref) for u in us)
            yield Ref("ServiceAccount", n, account), \
                f"service account {n}/{account} is shared by {names}: one principal for all of them", \
                hint("MST0502", workloads=names, namespace=n)


@readiness("MST0503")
def default_service_account(ctx: Context) -> Iterator[Found]:
    for u in units(ctx.inventory, scope_namespaces(ctx)):
        if u.spec.service_account == "default":
            yield u.ref, f"runs as service account {u.namespace}/default", \
                hint("MST0503", workload=str(u.ref), namespace=u.namespace, name=u.ref.name)


@readiness("MST0504")
def policy_not_enforced(ctx: Context) -> Iterator[Found]:
    yield from _without_sidecar(ctx, "MST0504", "no sidecar enforces the policy for it")


# ---------------------------------------------------------------- before egress


@readiness("MST0601", "ServiceEntry")
def unregistered_external_hosts(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    index = service_index(inv)
    for u in units(inv, scope_namespaces(ctx)):
        for host, where in external_hosts(inv, u):
            if not index.known(host, u.namespace):
                yield u.ref, f"names external host {host} in its {where}, and no ServiceEntry registers it", \
                    hint("MST0601", host=host, namespace=u.namespace)


@readiness("MST0602", "ConfigMap")
def registry_only_already(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    if (inv.mesh_config.get("outboundTrafficPolicy") or {}).get("mode") == "REGISTRY_ONLY":
        yield _mesh_config_ref(inv), \
            "the mesh config already sets outboundTrafficPolicy mode REGISTRY_ONLY", hint("MST0602")


# ---------------------------------------------------------------- other features


def _mesh_config_ref(inv: Inventory) -> Ref:
    """The ConfigMap the mesh config comes from, as findings about it name it."""
    cm = inv.mesh_config_map
    return cm.ref if cm is not None else Ref("ConfigMap", inv.root_namespace, "istio")


def _components(inv: Inventory, *ids: str) -> list[Any]:
    return [c for c in inv.components if c.component in ids]


@readiness("MST0701", "ConfigMap", "Service")
def no_tracing_provider(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    providers = inv.mesh_config.get("extensionProviders") or ()
    if any(k in (p or {}) for p in providers for k in _TRACERS):
        return
    yield _mesh_config_ref(inv), "the mesh config has no tracing extensionProvider", \
        hint("MST0701", provider=_provider_example(inv))


def _provider_example(inv: Inventory) -> str:
    """A provider entry for a tracing backend the cluster runs, or a template when it runs none."""
    for c in _components(inv, *_TRACING_BACKENDS):
        port, kind = _TRACING_BACKENDS[c.component]
        pod = inv.pod(c.namespace, c.name)
        for svc in inv.services_by_namespace.get(c.namespace, ()):
            if pod and svc.selector and labels_match(svc.selector, pod.labels) \
                    and any(p.port == port for p in svc.ports):
                return f"{{name: {c.component}, {kind}: {{service: {svc.host}, port: {port}}}}}"
    return "{name: otel-tracing, opentelemetry: {service: <collector>.<namespace>.svc.cluster.local, port: 4317}}"


@readiness("MST0702", "Gateway")
def no_ingress_gateway(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    if not _components(inv, "ingress-gateway"):
        yield Ref("Namespace", None, inv.root_namespace), "no ingress gateway deployment is running", \
            hint("MST0702", namespace=inv.root_namespace)


@readiness("MST0703")
def ambient_components(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    for component in ("istio-cni", "ztunnel"):
        if not _components(inv, component):
            yield Ref("Namespace", None, inv.root_namespace), f"{component} is not running: ambient mode needs it", \
                hint("MST0703", component=component, namespace=inv.root_namespace)


@readiness("MST0704", "Sidecar", "Service", "VirtualService")
def sidecar_scope_cuts(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    for n in scope_namespaces(ctx):
        # The Sidecar's egress hosts: its own namespace, the root namespace and the ones the stage is given
        # (sidecar-scope's `hosts`, comma-separated).
        given = [h.strip() for h in str(ctx.params.get("hosts") or "").split(",") if h.strip()]
        allowed = ["./*", f"{inv.root_namespace}/*", *given]
        for u in units(inv, [n]):
            for svc, where in service_calls(inv, u):
                if not any(_egress_allows(h, n, svc) for h in allowed):
                    text = (f"calls {svc.name}.{svc.namespace} (in its {where}), "
                            "outside the Sidecar's egress hosts")
                    yield u.ref, text, hint("MST0704", host=f"{svc.namespace}/{svc.host}", namespace=n,
                                            target=svc.namespace)
        # a mesh route of the namespace sends its callers to another namespace: their proxies must know it
        for vs in istio_objects(inv, "VirtualService"):
            gateways = vs.spec.get("gateways") or ["mesh"]
            if ns_of(vs) != n or "mesh" not in gateways:
                continue
            for d in (d for r in vs.spec.get("http") or () for d in r.get("route") or ()):
                svc = service_of_host((d.get("destination") or {}).get("host", ""), n, inv)
                if svc is not None and not any(_egress_allows(h, n, svc) for h in allowed):
                    yield vs.ref, (f"VirtualService {n}/{vs.name} routes to {svc.name}.{svc.namespace}, outside the "
                                   "Sidecar's egress hosts"), hint("MST0704", host=f"{svc.namespace}/{svc.host}",
                                                                   namespace=n, target=svc.namespace)


def service_of_host(host: str, namespace: str, inv: Inventory) -> Service | None:
    """The in-cluster Service a host names (`svc`, `svc.ns`, `svc.ns.svc…`, short names in `namespace`)."""
    parts = host.split(".")
    if len(parts) == 1:
        return inv.service(namespace, parts[0])
    if len(parts) == 2 or parts[2] == "svc":
        return inv.service(parts[1], parts[0])
    return None


def _egress_allows(host: str, namespace: str, svc: Service) -> bool:
    """Whether a Sidecar egress host `ns/dnsName` (`.` own namespace, `*` any) lets a workload of `namespace`
    reach a service."""
    ns_part, _, dns = host.partition("/")
    ns_ok = ns_part == "*" or (ns_part == "." and svc.namespace == namespace) or ns_part == svc.namespace
    return ns_ok and host_matches(svc.host, dns)


@readiness("MST0705", "Service")
def no_metrics_backend(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    if not _components(inv, "prometheus"):
        yield Ref("Namespace", None, inv.root_namespace), "no Prometheus is running to scrape the proxies", \
            hint("MST0705")
