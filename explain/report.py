"""Explanations of the Istio components of one inventory: what each is, how it talks, what depends on it, how to
debug it (commands with the real pod names), and the communication graph of this cluster.

The catalog (cluster.components) says what a component is in general; this module says what it is *here*."""
from __future__ import annotations

import difflib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from analysis.ambient import HBONE_PORT, USE_WAYPOINT, waypoint_for
from analysis.effective import authorization, mtls_mode, outbound_traffic_policy
from cluster import revisions
from cluster.components import CATALOG, EDGES, PEERS, XDS_CLIENTS, Component, Edge, find_sidecar
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from cluster.model import ComponentInstance, Pod, PodSpecSummary, Ref, Workload
from cluster.queries import labels_match, opted_out, services_selecting

# The API server's admission webhooks skip these namespaces, so Istio never injects there.
_NEVER_INJECTED = ("kube-system", "kube-public")


class NameNotFound(MeshstepError):
    """NAME matches no pod, workload or component id of the inventory."""


# ---------------------------------------------------------------- result types


@dataclass(frozen=True)
class MeshStatus:
    in_mesh: bool
    mode: str  # sidecar | ambient | none
    reason: str


@dataclass(frozen=True)
class Link:
    """A catalog edge of the subject, with the instances of the peer found in this cluster."""

    outgoing: bool
    peer: str  # component id or PEERS key
    port: int | None
    protocol: str
    purpose: str
    peer_instances: tuple[str, ...]  # namespace/name; empty for peers outside Istio


@dataclass(frozen=True)
class RenderedCommand:
    purpose: str
    command: str
    note: str = ""


@dataclass(frozen=True)
class Explanation:
    """One pod or workload, in depth."""

    ref: Ref
    component: Component | None
    recognised_by: str | None
    mesh: MeshStatus
    facts: tuple[str, ...]
    dependents: tuple[Ref, ...]
    links: tuple[Link, ...]
    commands: tuple[RenderedCommand, ...]


@dataclass(frozen=True)
class ComponentSummary:
    """One component id as found in this cluster: its instances, and the catalog entry."""

    component: Component
    instances: tuple[ComponentInstance, ...]
    links: tuple[Link, ...]
    commands: tuple[RenderedCommand, ...]  # for the first instance, as an example


@dataclass(frozen=True)
class Node:
    id: str
    label: str
    plane: str  # control | data | addon | external


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]


@dataclass(frozen=True)
class Report:
    """What `meshstep explain` shows: component summaries, subjects in depth, and the graph."""

    source: str
    summaries: tuple[ComponentSummary, ...]
    subjects: tuple[Explanation, ...]
    graph: Graph


# ---------------------------------------------------------------- entry points


def explain(inv: Inventory, name: str | None = None) -> Report:
    """Every Istio component of the inventory, or one NAME in depth: a pod, a workload (namespace/name allowed)
    or a component id."""
    if name is None:
        present = inv.components_by_id
        return Report(inv.source, tuple(summarise(inv, cid) for cid in CATALOG if cid in present), (), graph(inv))
    ns, _, short = name.rpartition("/")
    pods = [p for p in inv.pods if p.name == short and ns in ("", p.namespace)]
    if pods:
        return _subjects(inv, [explain_pod(inv, p) for p in pods])
    workloads = [w for w in inv.workloads if w.name == short and ns in ("", w.namespace) and w.kind != "ReplicaSet"]
    if workloads:
        return _subjects(inv, [explain_workload(inv, w) for w in workloads])
    if name in CATALOG:
        if name not in inv.components_by_id:
            raise NameNotFound(f"no {name} in {inv.source}: present components are "
                               f"{', '.join(sorted(inv.components_by_id)) or 'none'}")
        return Report(inv.source, (summarise(inv, name),), (), graph(inv, {name}))
    candidates = sorted({p.name for p in inv.pods} | {w.name for w in inv.workloads} | set(CATALOG))
    close = difflib.get_close_matches(short, candidates, n=5, cutoff=0.5)
    close += [c for c in candidates if short and c.startswith(short) and c not in close][: 5 - len(close)]
    hint = f"; did you mean: {', '.join(close)}?" if close else "; run `meshstep explain` to list the components"
    raise NameNotFound(f"{name!r} is not a pod, workload or Istio component id in {inv.source}{hint}")


def _subjects(inv: Inventory, subjects: list[Explanation]) -> Report:
    ids = {s.component.id for s in subjects if s.component}
    return Report(inv.source, (), tuple(subjects), graph(inv, ids) if ids else Graph((), ()))


def summarise(inv: Inventory, component_id: str) -> ComponentSummary:
    """A component id as found in this inventory."""
    comp = CATALOG[component_id]
    instances = tuple(inv.components_by_id.get(component_id, ()))
    first = instances[0] if instances else None
    commands: tuple[RenderedCommand, ...] = ()
    if first is not None:
        spec, pod = _spec_of(inv, first)
        commands = _commands(inv, comp, first.kind, first.namespace, first.name, spec, pod)
    return ComponentSummary(comp, instances, _links(inv, comp), commands)


def explain_pod(inv: Inventory, pod: Pod) -> Explanation:
    """A pod: the component it is (if any), whether it is in the mesh and why, and how to debug it."""
    instance = inv.component("Pod", pod.namespace, pod.name)
    return _explain(inv, pod.ref, pod.spec, pod.namespace, instance, pod)


def explain_workload(inv: Inventory, w: Workload) -> Explanation:
    """A workload: from its first pod when the source has pods, else from its pod template."""
    pods = inv.pods_of_workload(w)
    spec = pods[0].spec if pods else w.template
    if spec is None:
        raise NameNotFound(f"{w.ref}: the source has neither its pod template nor its pods")
    instance = (inv.component("Pod", w.namespace, pods[0].name) if pods
                else inv.component(w.kind, w.namespace, w.name))
    e = _explain(inv, w.ref, spec, w.namespace, instance, pods[0] if pods else None)
    if pods:
        e = Explanation(e.ref, e.component, e.recognised_by, e.mesh,
                        (f"pods: {', '.join(p.name for p in pods)}",) + revisions.pod_proxy_facts(inv, pods) + e.facts,
                        e.dependents, e.links, e.commands)
    return e


def _explain(inv: Inventory, ref: Ref, spec: PodSpecSummary, namespace: str, instance: ComponentInstance | None,
             pod: Pod | None) -> Explanation:
    mesh = mesh_status(inv, spec, namespace, pod)
    if instance is None:
        facts = _plain_facts(pod) + (_ambient_facts(inv, spec, namespace, pod) if mesh.mode == "ambient" else ())
        return Explanation(ref, None, None, mesh, facts, (), (), ())
    comp = CATALOG[instance.component]
    facts, dependents = _FACTS.get(comp.id, _no_facts)(inv, spec, namespace, pod)
    links = _links(inv, comp, revision_of(inv, spec, pod))
    return Explanation(ref, comp, instance.reason, mesh, _plain_facts(pod) + facts, dependents, links,
                       _commands(inv, comp, ref.kind, namespace, ref.name, spec, pod))


# ---------------------------------------------------------------- in the mesh, or why not


def mesh_status(inv: Inventory, spec: PodSpecSummary, namespace: str, pod: Pod | None = None) -> MeshStatus:
    """Whether a pod (or a workload's pods, from its template) is in the mesh, and the reason, as Istio decides."""
    ns = inv.namespaces.get(namespace)
    sidecar = find_sidecar(spec)
    if sidecar is not None:
        shape = ("a native sidecar (init container with restartPolicy Always)" if sidecar.restart_always
                 else "a classic sidecar (a regular container, traffic captured by istio-init)")
        return MeshStatus(True, "sidecar", f"injected: istio-proxy runs as {shape}")
    labels, annotations = spec.labels, spec.annotations
    if annotations.get("ambient.istio.io/redirection") == "enabled":
        return MeshStatus(True, "ambient", "ambient: istio-cni redirects its traffic to the ztunnel of its node")
    ambient_ns = ns is not None and ns.labels.get("istio.io/dataplane-mode") == "ambient"
    if labels.get("istio.io/dataplane-mode") == "none" and ambient_ns:
        return MeshStatus(False, "none", "opted out of ambient: the pod is labelled istio.io/dataplane-mode=none")
    if labels.get("istio.io/dataplane-mode") == "ambient" or ambient_ns:
        where = "the pod" if labels.get("istio.io/dataplane-mode") == "ambient" else f"namespace {namespace}"
        if pod is None:
            return MeshStatus(True, "ambient", f"ambient: {where} is labelled istio.io/dataplane-mode=ambient")
        return MeshStatus(False, "ambient", f"{where} is labelled istio.io/dataplane-mode=ambient, but istio-cni "
                          "has not marked the pod as redirected (annotation ambient.istio.io/redirection): check "
                          f"istio-cni and ztunnel on node {pod.node or '(unknown)'}")
    if spec.host_network:
        return MeshStatus(False, "none", "runs in the host network: Istio never injects such pods")
    if opted_out(spec):  # the label wins over the annotation, as the injector reads them
        where = "label" if "sidecar.istio.io/inject" in labels else "annotation"
        return MeshStatus(False, "none", f"opted out: the pod has the {where} sidecar.istio.io/inject=false")
    if namespace in _NEVER_INJECTED:
        return MeshStatus(False, "none", f"Istio never injects pods in {namespace}")
    # The injector webhook matches a namespace label, or a pod label in any namespace that does not disable it.
    if labels.get("sidecar.istio.io/inject") == "true" and (ns is None or ns.injection != "disabled"):
        asked = "the pod is labelled sidecar.istio.io/inject=true"
        revision = labels.get("istio.io/rev") or (ns.revision if ns else None) or "default"
    elif ns is None:
        return MeshStatus(False, "none", f"namespace {namespace} is not in this source, so injection is unknown; "
                          "the pod has no sidecar")
    elif ns.injection == "disabled":
        return MeshStatus(False, "none", f"namespace {namespace} has injection disabled (istio-injection=disabled)")
    elif ns.injection == "sidecar":
        asked, revision = f"namespace {namespace} is injection-enabled", ns.revision or "default"
    else:
        return MeshStatus(False, "none", f"namespace {namespace} is not labelled for the mesh (istio-injection=enabled,"
                          " istio.io/rev=<revision> or istio.io/dataplane-mode=ambient)")
    if pod is None:
        return MeshStatus(True, "sidecar", f"{asked} (revision {revision}): its pods get a sidecar when created")
    if not any(r.revision == _revision_name(inv, revision) for r in inv.revisions):
        return MeshStatus(False, "none", f"{asked} (revision {revision}), but no istiod of that revision is in this "
                          "cluster, so nothing injects it")
    return MeshStatus(False, "none", f"predates injection: {asked} (revision {revision}) but this pod has no sidecar "
                      "— it was created before that, or while the injector was unreachable. Restart it to inject it: "
                      f"kubectl rollout restart {pod.workload_kind.lower()}/{pod.workload_name} -n {namespace}")


# ---------------------------------------------------------------- cluster facts per component


def _plain_facts(pod: Pod | None) -> tuple[str, ...]:
    if pod is None:
        return ()
    return (f"pod {pod.namespace}/{pod.name}: {pod.phase or 'phase unknown'}, {'ready' if pod.ready else 'NOT ready'}"
            f", node {pod.node or '(unknown)'}, owned by {pod.workload_kind} {pod.workload_name}",)


def _no_facts(inv: Inventory, spec: PodSpecSummary, namespace: str,
              pod: Pod | None) -> tuple[tuple[str, ...], tuple[Ref, ...]]:
    return (), ()


def _revision_name(inv: Inventory, rev: str) -> str:
    """The istiod revision a revision or tag name resolves to (tags point at revisions)."""
    return revisions.resolve(inv, rev)


def revision_of(inv: Inventory, spec: PodSpecSummary, pod: Pod | None) -> str:
    """The istiod revision a pod belongs to: the one a proxy gets its config from, or an istiod's own."""
    rev = (pod.sidecar.revision if pod is not None and pod.sidecar else None) or spec.labels.get("istio.io/rev")
    return _revision_name(inv, rev or "default")


def _spec_of(inv: Inventory, c: ComponentInstance) -> tuple[PodSpecSummary, Pod | None]:
    if c.kind == "Pod":
        pod = inv.pod(c.namespace, c.name)
        return pod.spec, pod  # type: ignore[union-attr]
    return inv.workload(c.namespace, c.kind, c.name).template, None  # type: ignore[union-attr,return-value]


def dependents(inv: Inventory, revision: str) -> tuple[ComponentInstance, ...]:
    """The proxies (sidecars, gateways, waypoints, ztunnels) that get config and certificates from a revision."""
    return tuple(c for c in inv.components if c.component in XDS_CLIENTS and _instance_revision(inv, c) == revision)


def _instance_revision(inv: Inventory, c: ComponentInstance) -> str:
    return revision_of(inv, *_spec_of(inv, c))


def _istiod_facts(inv: Inventory, spec: PodSpecSummary, namespace: str, pod: Pod | None):
    rev = revision_of(inv, spec, pod)
    r = next((r for r in inv.revisions if r.revision == rev and r.namespace == namespace), None)
    facts = []
    if r is not None:
        tags = f", tags {', '.join(r.tags)}" if r.tags else ""
        pods = (f"{r.ready_pods}/{r.istiod_pods} istiod pods ready" if r.istiod_pods
                else "no istiod pods in this source")
        facts.append(f"revision {r.revision}{tags}, version {r.version or 'unknown'}: {pods} in {r.namespace}")
    injected = [n.name for n in inv.namespaces.values()
                if n.injection == "sidecar" and _revision_name(inv, n.revision or "default") == rev]
    facts.append(f"injects new pods of namespaces: {', '.join(injected)}" if injected
                 else "no namespace is labelled for injection by this revision")
    hooks = [f"{o.kind} {o.name}" for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
             for o in inv.of_kind(kind) if _revision_name(inv, o.labels.get("istio.io/rev") or "default") == rev]
    if hooks:
        facts.append(f"webhooks the API server calls on 15017: {', '.join(hooks)}")
    deps = dependents(inv, rev)
    counts: dict[str, int] = defaultdict(int)
    for d in deps:
        counts[d.component] += 1
    facts.append(f"{len(deps)} proxies get config and certificates from it"
                 + (f" ({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))})" if deps else ""))
    return tuple(facts), tuple(d.ref for d in deps)


def _proxy_facts(inv: Inventory, spec: PodSpecSummary, namespace: str, pod: Pod | None):
    rev = revision_of(inv, spec, pod)
    istiods = [c for c in inv.components_by_id.get("istiod", ()) if _instance_revision(inv, c) == rev]
    facts = []
    if pod is not None and pod.sidecar is not None:
        facts.append(f"sidecar: {pod.sidecar.shape}, version {pod.sidecar.version or 'unknown'}")
    if istiods:
        facts.append(f"gets config from istiod revision {rev}: {', '.join(f'{c.namespace}/{c.name}' for c in istiods)}")
        r = next((r for r in inv.revisions if r.revision == rev), None)
        version = pod.sidecar.version if pod is not None and pod.sidecar else None
        if r and r.version and version and version != r.version:
            facts.append(f"its proxy is version {version} but istiod is {r.version}: restart the pod to upgrade it")
    else:
        facts.append(f"istiod revision {rev} is not in this source: if it is gone, this proxy gets no config or "
                     "certificate updates")
    facts += _services_selecting(inv, spec, namespace)
    return tuple(facts), ()


def _sidecar_facts(inv: Inventory, spec: PodSpecSummary, namespace: str, pod: Pod | None):
    facts, dependents = _proxy_facts(inv, spec, namespace, pod)
    return facts + in_effect_facts(inv, spec, namespace), dependents


def in_effect_facts(inv: Inventory, spec: PodSpecSummary, namespace: str) -> tuple[str, ...]:
    """What Istio does with the workload's traffic, and what makes it so (config, or Istio's default)."""
    return (f"inbound mTLS: {mtls_mode(inv, namespace, spec.labels).why}",
            f"inbound requests: {authorization(inv, namespace).why}",
            f"calls to hosts no ServiceEntry registers: {outbound_traffic_policy(inv, namespace).why}")


def _services_selecting(inv: Inventory, spec: PodSpecSummary, namespace: str) -> list[str]:
    out = []
    for s in sorted(services_selecting(inv, namespace, spec.labels), key=lambda s: s.name):
        ports = ", ".join(f"{p.port}/{p.name or p.istio_protocol}" for p in s.ports)
        out.append(f"exposed by Service {s.name} ({s.type}): {ports}")
    return out


def _gateway_facts(inv: Inventory, spec: PodSpecSummary, namespace: str, pod: Pod | None):
    facts, _ = _proxy_facts(inv, spec, namespace, pod)
    served = [str(g.ref) for g in inv.of_kind("Gateway") if g.group == "networking.istio.io"
              and (selector := g.spec.get("selector") or {}) and labels_match(selector, spec.labels)]
    name = spec.labels.get("gateway.networking.k8s.io/gateway-name")
    if name:
        served.append(f"Gateway {namespace}/{name} (Gateway API)")
    facts += (f"serves: {', '.join(served)}",) if served else ("no Gateway resource selects it",)
    return facts, ()


def _waypoint_facts(inv: Inventory, spec: PodSpecSummary, namespace: str, pod: Pod | None):
    facts, _ = _gateway_facts(inv, spec, namespace, pod)
    name = spec.labels.get("gateway.networking.k8s.io/gateway-name")
    # Ambient sends traffic through a waypoint only for what is labelled to use it (namespace, then service).
    users = [f"namespace {n.name}" for n in inv.namespaces.values()
             if n.labels.get("istio.io/use-waypoint") == name
             and n.labels.get("istio.io/use-waypoint-namespace", n.name) == namespace]
    users += [f"Service {s.namespace}/{s.name}" for s in inv.services if s.labels.get("istio.io/use-waypoint") == name
              and s.labels.get("istio.io/use-waypoint-namespace", s.namespace) == namespace]
    facts += ((f"used by: {', '.join(users)}",) if users else
              (f"nothing is labelled istio.io/use-waypoint={name}: no traffic goes through it",))
    return facts, ()


def _ambient_facts(inv: Inventory, spec: PodSpecSummary, namespace: str, pod: Pod | None) -> tuple[str, ...]:
    facts = []
    if pod is not None:
        tunnels = [f"{c.namespace}/{c.name}" for c in inv.components_by_id.get("ztunnel", ())
                   if (p := inv.pod(c.namespace, c.name)) and p.node == pod.node]
        facts.append(f"its traffic goes through ztunnel {', '.join(tunnels)} on node {pod.node}" if tunnels
                     else f"no ztunnel runs on node {pod.node} in this source: its traffic cannot flow")
    facts.append(f"mTLS: ztunnel carries its connections in HBONE tunnels to port {HBONE_PORT} of the peer's "
                 "ztunnel or waypoint")
    ns = inv.namespaces.get(namespace)
    # A waypoint serves a Service (its istio.io/use-waypoint label, else its namespace's), not a pod.
    services = services_selecting(inv, namespace, spec.labels) or [None]
    served = False
    for svc in services:
        labels = [*([svc.labels] if svc else []), *([ns.labels] if ns else [])]
        name = next((lbl[USE_WAYPOINT] for lbl in labels if USE_WAYPOINT in lbl), None)
        what = f"Service {svc.namespace}/{svc.name}" if svc else "it"
        if name is None or name == "none":
            continue
        waypoint = _waypoint_named(inv, namespace, svc, name)
        served = True
        facts.append(f"L7 traffic to {what} goes through waypoint {waypoint} (istio.io/use-waypoint={name}, HBONE "
                     f"port {HBONE_PORT})" if waypoint else
                     f"{what} is labelled istio.io/use-waypoint={name}, and no such waypoint is in this source: "
                     "its VirtualServices and L7 policies are not applied")
    if not served:
        facts.append("no waypoint: it gets L4 features only (mTLS, L4 AuthorizationPolicy, TCP metrics)")
    return tuple(facts)


def _waypoint_named(inv: Inventory, namespace: str, svc: Any, name: str) -> str | None:
    """The waypoint serving a Service (or the namespace), as namespace/name: its Gateway of class istio-waypoint,
    or, in a source that lacks Gateway API kinds, the waypoint pods istiod deployed for it."""
    gw = waypoint_for(inv, namespace, svc)
    if gw is not None:
        return f"{gw.namespace}/{gw.name}"
    for c in inv.components_by_id.get("waypoint", ()):
        spec, _ = _spec_of(inv, c)
        if c.namespace == namespace and spec.labels.get("gateway.networking.k8s.io/gateway-name") == name:
            return f"{c.namespace}/{name}"
    return None


def _node_agent_facts(inv: Inventory, spec: PodSpecSummary, namespace: str, pod: Pod | None):
    facts = []
    if pod is not None:
        on_node = [p for p in inv.pods if p.node == pod.node and p.node is not None]
        ambient = [p.name for p in on_node if mesh_status(inv, p.spec, p.namespace, p).mode == "ambient"]
        facts.append(f"node {pod.node}: {len(on_node)} pods, {len(ambient)} in ambient mode")
    return tuple(facts), ()


def _ztunnel_facts(inv: Inventory, spec: PodSpecSummary, namespace: str, pod: Pod | None):
    proxy, _ = _proxy_facts(inv, spec, namespace, pod)
    node, _ = _node_agent_facts(inv, spec, namespace, pod)
    return proxy + node, ()


_FACTS = {
    "istiod": _istiod_facts,
    "sidecar": _sidecar_facts,
    "waypoint": _waypoint_facts,
    "ingress-gateway": _gateway_facts,
    "egress-gateway": _gateway_facts,
    "east-west-gateway": _gateway_facts,
    "ztunnel": _ztunnel_facts,
    "istio-cni": _node_agent_facts,
}


# ---------------------------------------------------------------- links and commands


def _links(inv: Inventory, comp: Component, revision: str | None = None) -> tuple[Link, ...]:
    """The component's edges whose peer is present; with a revision, istiod and proxies are matched by it (a
    proxy talks only to the istiod of its revision)."""
    present = inv.components_by_id
    out = []
    for e in comp.edges:
        for outgoing in (True, False):
            me, peer = (e.source, e.target) if outgoing else (e.target, e.source)
            if me != comp.id or (peer not in present and peer not in PEERS):
                continue
            instances = present.get(peer, [])
            if revision is not None and "istiod" in (me, peer) and {me, peer} & set(XDS_CLIENTS):
                instances = [c for c in instances if _instance_revision(inv, c) == revision]
                if not instances:
                    continue
            names = tuple(f"{c.namespace}/{c.name}" for c in instances)
            out.append(Link(outgoing, peer, e.port, e.protocol, e.purpose, names))
    return tuple(out)


def _commands(inv: Inventory, comp: Component, kind: str, namespace: str, name: str, spec: PodSpecSummary,
              pod: Pod | None) -> tuple[RenderedCommand, ...]:
    istiod = next(iter(inv.components_by_id.get("istiod", ())), None)
    values = {
        "target": pod.name if pod else f"{kind.lower()}/{name}",
        "pod": pod.name if pod else "",
        "namespace": namespace,
        "container": comp.container or "",
        "revision": _revision_name(inv, spec.labels.get("istio.io/rev") or "default"),
        "istiod_namespace": istiod.namespace if istiod else inv.root_namespace,
    }
    # Commands that need a running pod (exec, get pod) are left out when the source has only the workload.
    return tuple(RenderedCommand(c.purpose, c.render(**values), c.note) for c in comp.commands
                 if (pod is not None or "{pod}" not in c.template)
                 and (c.needs_container is None or spec.container(c.needs_container) is not None))


# ---------------------------------------------------------------- the graph


def graph(inv: Inventory, focus: set[str] | None = None) -> Graph:
    """Components present as nodes, catalog edges between present ends as edges; `focus` keeps only the edges
    that touch those component ids."""
    present = inv.components_by_id
    known = set(present) | set(PEERS)
    edges = [e for e in EDGES if e.source in known and e.target in known
             and (e.source in present or e.target in present)
             and (focus is None or e.source in focus or e.target in focus)]
    used = {e.source for e in edges} | {e.target for e in edges} | (set(focus or ()) & set(present))
    if focus is None:
        used |= set(present)
    nodes = []
    for cid in CATALOG:
        if cid in used:
            nodes.append(Node(cid, _node_label(inv, cid, present[cid]), CATALOG[cid].plane))
    nodes += [Node(p, PEERS[p], "external") for p in PEERS if p in used]
    return Graph(tuple(nodes), tuple(edges))


def _node_label(inv: Inventory, cid: str, instances: list[ComponentInstance]) -> str:
    namespaces = sorted({c.namespace for c in instances})
    where = namespaces[0] if len(namespaces) == 1 else f"{len(namespaces)} namespaces"
    pods = [p for c in instances if c.kind == "Pod" and (p := inv.pod(c.namespace, c.name))]
    if not pods:
        return f"{cid}\n" + ", ".join(sorted({f"{c.kind} {c.name}" for c in instances})) + f" in {where}"
    count = f"{len(pods)} pod{'s' * (len(pods) != 1)} in {where}"
    if all(p.workload_kind == "DaemonSet" for p in pods):
        # Node agents: what matters is that every node has one.
        count += f", on {len({p.node for p in pods})} nodes"
    return f"{cid}\n{count}"
