"""What readiness checks look at: the stage's scope (a namespace, or for `mesh` every namespace that is or will be
in the mesh), its workloads as units (pods, or the pod template before there are any), and what they call; and
the decorator that registers a readiness check."""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from analysis.base import Context, check
from analysis.catalog import CATALOG, Filled, fill, joined
from cluster import components
from cluster.inventory import Inventory
from cluster.model import Pod, PodSpecSummary, Ref, Service
from cluster.queries import application_namespace, injection_requested, lookup, opted_out, per_inventory
from cluster.revisions import injection_label

Found = tuple[Ref, str, str]

# Istio's own init containers (and the native sidecar): they are the capture, not an app that needs the network.
ISTIO_INIT = frozenset({components.PROXY_CONTAINER, "istio-init", "istio-validation"})
_SCHEMES = r"https?|grpcs?|wss?|tcp|tls|amqps?|mongodb(?:\+srv)?|postgres(?:ql)?|mysql|redis"
_USERINFO = r"(?:[^/@\s'\"]*@)?"  # a URL up to its host, past any user:password@
URL = re.compile(r"\b(?:" + _SCHEMES + r")://" + _USERINFO + r"([A-Za-z0-9.-]+)")
HOST_PORT = re.compile(r"(?<![\w./-])([a-z0-9][a-z0-9-]*\.[a-z0-9.-]*[a-z0-9]):\d{1,5}\b")
# The port a URL without one uses, for the schemes above that define one: http and https (RFC 9110 4.2), ws and
# wss (RFC 6455 3), amqp and amqps (the AMQP 0-9-1 URI spec), and the clients' own defaults for mongodb, postgres
# (libpq), mysql and redis. grpc(s), tcp, tls and mongodb+srv (its port comes from DNS SRV records) define none.
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "amqp": 5672, "amqps": 5671, "mongodb": 27017,
                 "postgres": 5432, "postgresql": 5432, "mysql": 3306, "redis": 6379}
_PORT = r"(?::(\d{1,5}))?"
# `<service>.<namespace>` with the optional cluster suffixes, as workloads name in-cluster services, with its port
# where written; and the scheme of a URL whose host ends where the text searched ends (looked for only once a
# Service is found without a port, not at every position of every text).
_SERVICE_HOST = re.compile(r"(?<![\w.-])([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)"
                           r"(?:\.svc(?:\.cluster\.local)?)?" + _PORT + r"(?![\w-])")
_SCHEME_BEFORE = re.compile(r"\b(" + _SCHEMES + r")://" + _USERINFO + r"\Z")
_IP = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
# A Service's short name (a DNS-1035 label) in a host position, with its port if written: a URL's host, or
# `name:port` not inside a longer name, a path or a URL. A bare word is no evidence (an env value `api` may mean
# anything), and `name:port` alone may be an image tag (`redis:7`): `_service_port` keeps the calls whose port
# the Service serves.
_LABEL = r"([a-z](?:[-a-z0-9]*[a-z0-9])?)"
_SHORT_URL = re.compile(r"\b(" + _SCHEMES + r")://" + _USERINFO + _LABEL + _PORT + r"(?![\w.-])")
_SHORT_HOST_PORT = re.compile(r"(?<![\w./:@-])" + _LABEL + r":(\d{1,5})(?![\w.:-])")


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
            return (f"kubectl label namespace {self.namespace} {injection_label(inv, self.namespace)}, then "
                    f"{self.restart()}")
        return self.restart()


def proxy_pods(inv: Inventory) -> set[tuple[str, str]]:
    """Pods that are Istio's own proxies or control plane (gateways, waypoints, ztunnel, istiod, istio-cni)."""
    return {(c.namespace, c.name) for c in inv.components
            if c.kind == "Pod" and c.component != "sidecar" and c.plane != "addon"}


def _units(inv: Inventory) -> dict[str, list[Unit]]:
    """Units by namespace: inv.workloads already leaves out what a workload owns (a Deployment's ReplicaSets, a
    CronJob's Jobs), and keeps a workload whose controller is something else (an operator's custom resource)."""
    out: dict[str, list[Unit]] = defaultdict(list)
    proxies = proxy_pods(inv)
    for w in inv.workloads:
        if w.template is None and not w.pods:
            continue
        pods = tuple(inv.pods_of_workload(w))
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


def pods_text(names: list[str]) -> Filled:
    """`3 pods (a, b, c)`: the first five names, each a value."""
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return fill(f"{len(names)} pod{'s' if len(names) != 1 else ''} ({{names}}{more})", names=joined(names[:5]))


def without_sidecar(ctx: Context, code: str, effect: str) -> Iterator[Found]:
    """Workloads in scope with pods outside the mesh; what that means is the stage's (effect)."""
    inv = ctx.inventory
    for u in units(inv, scope_namespaces(ctx)):
        out = outside_mesh(inv, u)
        if out:
            yield u.ref, fill("{pods} without a sidecar: " + effect, pods=pods_text(out)), \
                hint(code, workload=str(u.ref), inject=u.inject(inv))


# ---------------------------------------------------------------- what workloads call


def _object_texts(obj: Any) -> Iterator[tuple[str, str]]:
    """(where, text) of a workload object's containers: command, args and literal env values."""
    pod_spec = (obj.spec.get("template") or {}).get("spec") or {}
    if obj.kind == "CronJob":
        pod_spec = ((((obj.spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec") or {})
    for c in (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or []):
        if c.get("name") in ISTIO_INIT:
            continue
        for e in c.get("env") or ():
            if isinstance(e.get("value"), str):
                yield f"env {e.get('name')} of container {c.get('name')}", e["value"]


def texts(inv: Inventory, unit: Unit) -> list[tuple[str, str]]:
    """(where, text) of what a workload is configured with: its containers' command and args, and the literal env
    values of its workload object when the source has it."""
    out = [(f"{'command' if i < len(c.command) else 'args'} of container {c.name}", t)
           for c in unit.spec.containers + unit.spec.init_containers if c.name not in ISTIO_INIT
           for i, t in enumerate(c.command + c.args)]
    obj = lookup(inv, unit.ref.kind, unit.namespace, unit.ref.name)
    if obj is not None:
        out.extend(_object_texts(obj))
    return out


def _service_port(svc: Service, port: int) -> int | None:
    """The Service port a call to the Service's name on `port` reaches its pods by, or None when it does not reach
    them: its cluster IP forwards its own ports only; a headless Service's name resolves to the pods' addresses, so
    their ports (its target ports) are reached too, each by the Service port that sends to it."""
    if any(p.port == port for p in svc.ports):
        return port
    if svc.cluster_ip == "None":
        return next((p.port for p in svc.ports if p.target_port == port), None)
    return None


def _call(svc: Service | None, scheme: str, port: str) -> tuple[Service, int | None] | None:
    """The call of a Service named with a URL's `scheme` and a written `port` ('' where there is none), with the
    Service port it uses. The port written, else the scheme's default port, is the one used: a call on a port the
    Service does not serve never reaches it, and is none. With neither (no scheme, or one that defines no default
    port) the port is unknown (None), and the name alone is the call."""
    if svc is None:
        return None
    used = int(port) if port else DEFAULT_PORTS.get(scheme)
    if used is None:
        return svc, None
    served = _service_port(svc, used)
    return (svc, served) if served is not None else None


def _named_services(inv: Inventory, namespace: str, text: str) -> Iterator[tuple[Service, int | None]]:
    """The Services a text of a workload of `namespace` names, each with the Service port it calls (None: unknown):
    `svc.ns[.svc[.cluster.local]]` anywhere, and a Service of its own namespace by its short name in a host
    position. A pod's resolv.conf searches `<its namespace>.svc.cluster.local` first, so a short name is the Service
    of its own namespace (https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/#namespaces-of-services).
    Its port is `_call`'s: a short name with neither scheme nor port is no call (a bare word may mean anything)."""
    named: list[tuple[Service | None, str, str]] = []
    # Each search only where the text has what it needs: most texts (ports, levels, flags) have none of it.
    if "." in text:
        for m in _SERVICE_HOST.finditer(text):
            name, ns, port = m.groups("")
            svc = inv.service(ns, name)
            if svc is not None:
                scheme = "" if port else (url[1] if (url := _SCHEME_BEFORE.search(text, 0, m.start())) else "")
                named.append((svc, scheme, port))
    if "://" in text:
        named += [(inv.service(namespace, name), scheme, port) for scheme, name, port in _SHORT_URL.findall(text)]
    if ":" in text:
        named += [(inv.service(namespace, name), "", port) for name, port in _SHORT_HOST_PORT.findall(text)]
    for svc, scheme, port in named:
        if (call := _call(svc, scheme, port)) is not None:
            yield call


def service_calls(inv: Inventory, unit: Unit) -> Iterator[tuple[Service, int | None, str]]:
    """In-cluster services a workload names (`svc.ns`, `svc.ns.svc.cluster.local`, or a short name of its own
    namespace as a URL's host or `name:port`), each with the Service port it calls and where it names them, once
    per Service and port. The port is the one written, else the default port of the URL's scheme (http 80, https
    443, …: DEFAULT_PORTS), and must be one the Service serves, or the name is no call of it; with neither (`svc.ns`
    alone, `grpc://svc`) it is unknown (None) and the name is the call."""
    seen = set()
    for where, text in texts(inv, unit):
        for svc, port in _named_services(inv, unit.namespace, text):
            if (svc.name, svc.namespace, port) not in seen:
                seen.add((svc.name, svc.namespace, port))
                yield svc, port, where


def external_hosts(inv: Inventory, unit: Unit) -> Iterator[tuple[str, str]]:
    """Hosts outside the cluster a workload names in URLs or host:port, with where it names them."""
    namespaces = per_inventory(inv, "readiness-namespace-names", lambda i: frozenset(i.namespace_names()))
    seen = set()
    for where, text in texts(inv, unit):
        for host in URL.findall(text) + HOST_PORT.findall(text):
            host = host.lower().rstrip(".")
            if host in seen or "." not in host or _IP.match(host) or host.endswith((".local", ".svc", ".internal")):
                continue
            parts = host.split(".")
            if parts[1] in namespaces and (len(parts) == 2 or parts[2] == "svc"):
                continue  # `svc.ns`: a service of the cluster
            seen.add(host)
            yield host, where


# ---------------------------------------------------------------- what the mesh runs


def mesh_config_ref(inv: Inventory) -> Ref:
    """The ConfigMap the mesh config comes from, as findings about it name it."""
    cm = inv.mesh_config_map
    return cm.ref if cm is not None else Ref("ConfigMap", inv.root_namespace, "istio")


def running(inv: Inventory, *ids: str) -> list[Any]:
    return [c for c in inv.components if c.component in ids]


def service_of_host(host: str, namespace: str, inv: Inventory) -> Service | None:
    """The in-cluster Service a host names (`svc`, `svc.ns`, `svc.ns.svc…`, short names in `namespace`)."""
    parts = host.split(".")
    if len(parts) == 1:
        return inv.service(namespace, parts[0])
    if len(parts) == 2 or parts[2] == "svc":
        return inv.service(parts[1], parts[0])
    return None
