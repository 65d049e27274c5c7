"""Deployment checks (istioctl's deployment analyzers): a workload behind several Services that disagree on a
port's protocol or on which port reaches a target port, and application pods running as the proxy's UID."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from analysis.base import Context, check
from analysis.catalog import text
from cluster.inventory import Inventory
from cluster.model import PodSpecSummary, Ref, Service, Workload
from cluster.queries import SYSTEM_NAMESPACES, as_named, injection_requested, per_inventory, services_selecting


def _meshed_deployments(inv: Inventory) -> list[tuple[Workload, list[Service]]]:
    """Deployments in the mesh behind more than one Service of their namespace (computed once per inventory)."""
    def build(inv: Inventory) -> list[tuple[Workload, list[Service]]]:
        out = []
        for w in inv.workloads:
            if w.kind != "Deployment" or w.template is None or w.namespace in SYSTEM_NAMESPACES:
                continue
            if not injection_requested(inv, w.namespace, w.template):
                continue
            services = services_selecting(inv, w.namespace, w.template.labels)
            if len(services) > 1:
                out.append((w, sorted(services, key=lambda s: s.name)))
        return out

    return per_inventory(inv, "meshed-deployments", build)


@check("IST0116", "Give the port the same protocol (port name or appProtocol) in every Service that selects the "
       "deployment; Istio can serve one protocol per port.",
       reads=("Deployment", "Service", "Namespace"))
def multiple_protocols(ctx: Context) -> Iterator[tuple[Ref, str]]:
    for w, services in _meshed_deployments(ctx.inventory):
        protocols: dict[int, set[str]] = defaultdict(set)
        for s in services:
            for p in s.ports:
                protocols[p.port].add(p.istio_protocol)
        for port, seen in sorted(protocols.items()):
            if len(seen) > 1:
                yield as_named(ctx.inventory, w.ref), (
                    f"This deployment {w.name} is associated with multiple services using port {port} but different "
                    f"protocols: {sorted(seen)}")


@check("IST0137", "Make every Service that selects the deployment use the same port for a given targetPort.",
       reads=("Deployment", "Service", "Namespace"))
def conflicting_ports(ctx: Context) -> Iterator[tuple[Ref, str]]:
    for w, services in _meshed_deployments(ctx.inventory):
        ports: dict[str, set[int]] = defaultdict(set)
        names: dict[str, set[str]] = defaultdict(set)
        for s in services:
            for p in s.ports:
                target = str(p.target_port if p.target_port is not None else p.port)
                ports[target].add(p.port)
                names[target].add(s.name)
        for target, seen in sorted(ports.items()):
            if len(seen) > 1:
                yield as_named(ctx.inventory, w.ref), text("IST0137", w.name, sorted(names[target]), target,
                                                           sorted(seen))


# The UID the sidecar proxy runs as: iptables lets this UID's traffic out unredirected, so an app running as it
# bypasses the proxy entirely.
PROXY_UID = 1337
_NOT_APPS = frozenset({"istio-proxy", "istio-operator"})


def _istio_control_plane(labels: dict[str, str]) -> bool:
    """Istio's own components (istioctl skips them): labelled `istio: …` or `release: istio`."""
    return "istio" in labels or labels.get("release") == "istio"


def _runs_as_proxy_uid(template: PodSpecSummary) -> bool:
    """The pod's securityContext, or one of its app containers' (not the proxy's own), sets runAsUser 1337."""
    return template.run_as_user == PROXY_UID or any(
        c.run_as_user == PROXY_UID for c in template.containers if c.name not in _NOT_APPS)


@check("IST0144", "Run the application as another user (securityContext.runAsUser of the pod and its containers): UID "
       "1337 is the sidecar proxy's, and traffic from it bypasses the proxy.",
       reads=("Pod", "Deployment"))
def application_uid(ctx: Context) -> Iterator[tuple[Ref, str]]:
    inv = ctx.inventory
    text = "User ID (UID) 1337 is reserved for the sidecar proxy."
    for pod in inv.pods:
        if not _istio_control_plane(pod.labels) and _runs_as_proxy_uid(pod.spec):
            yield Ref("Pod", pod.namespace if pod.namespace_given else None, pod.name), text
    templates = {(w.namespace, w.name): w.template for w in inv.workloads if w.kind == "Deployment"}
    for d in inv.of_kind("Deployment"):
        template = templates.get((d.namespace or "default", d.name))
        if template is not None and not _istio_control_plane(d.labels) and _runs_as_proxy_uid(template):
            yield Ref("Deployment", d.namespace, d.name), text
