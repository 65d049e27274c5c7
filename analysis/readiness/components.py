"""Readiness of the components a feature needs: a tracing provider, an ingress gateway, ambient's components, a
metrics backend."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from analysis import kubernetes_support
from analysis.ambient import ambient_profile_missing
from analysis.base import Context
from analysis.catalog import fill
from analysis.readiness.scope import Found, hint, mesh_config_ref, readiness, running
from cluster.inventory import Inventory
from cluster.model import Ref
from cluster.queries import labels_match
from cluster.versions import minor

_TRACERS = ("zipkin", "opentelemetry", "datadog", "skywalking", "stackdriver", "lightstep", "opencensus")
_TRACING_BACKENDS = {"zipkin": (9411, "zipkin"), "jaeger": (9411, "zipkin"), "otel-collector": (4317, "opentelemetry")}


@readiness("MST0701", "ConfigMap", "Service")
def no_tracing_provider(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    providers = inv.mesh_config.get("extensionProviders") or ()
    if any(k in (p or {}) for p in providers for k in _TRACERS):
        return
    yield mesh_config_ref(inv), "the mesh config has no tracing extensionProvider", \
        hint("MST0701", provider=_provider_example(inv))


def _provider_example(inv: Inventory) -> str:
    """A provider entry for a tracing backend the cluster runs, or a template when it runs none."""
    for c in running(inv, *_TRACING_BACKENDS):
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
    if not running(inv, "ingress-gateway"):
        yield Ref("Namespace", None, inv.root_namespace), "no ingress gateway deployment is running", \
            hint("MST0702", namespace=inv.root_namespace)


@readiness("MST0703")
def ambient_components(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    for component in ("istio-cni", "ztunnel"):
        if not running(inv, component):
            yield Ref("Namespace", None, inv.root_namespace), f"{component} is not running: ambient mode needs it", \
                hint("MST0703", component=component, namespace=inv.root_namespace)


@readiness("MST0708", "ConfigMap", "Deployment")
def ambient_profile(ctx: Context) -> Iterator[Found]:
    for ref, what in ambient_profile_missing(ctx.inventory):
        yield ref, what, hint("MST0708", namespace=ctx.inventory.root_namespace)


# Ambient mode GA (Istio 1.24): the oldest Istio whose ztunnel, waypoints and targetRefs policies istio.io's
# migration guide relies on.
AMBIENT_MIGRATION_ISTIO = (1, 24)


@readiness("MST0709")
def ambient_istio_version(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    have = minor(inv.istio_version)
    if have is not None and have < AMBIENT_MIGRATION_ISTIO:
        need = ".".join(map(str, AMBIENT_MIGRATION_ISTIO))
        yield Ref("Namespace", None, inv.root_namespace), \
            fill(f"Istio {{version}} is older than {need}, the first release with ambient mode GA",
                 version=inv.istio_version), hint("MST0709", version=need)


@readiness("MST0710", "Node")
def ambient_kubernetes_version(ctx: Context) -> Iterator[Found]:
    """The nodes against the installed Istio release's Kubernetes versions (istio.io's supported releases). The
    migration guide's "Kubernetes supported version (1.31 … 1.35)" is the latest release's range: a cluster on an
    older supported Istio is judged by its own release's."""
    inv, source = ctx.inventory, kubernetes_support.SOURCE
    istio = inv.istio_version
    if istio is None:
        return  # no istiod runs: nothing installed to judge against
    said = hint("MST0710", istio=istio, source=source,
                supported=kubernetes_support.supported(istio) or "not in meshstep's copy of the table")
    unknown = kubernetes_support.unknown(inv, istio)
    if unknown is not None:
        yield *unknown, said
    for o in kubernetes_support.outside(inv, istio) or ():
        yield o.nodes[0], o.message, said


# Cilium's agents (DaemonSet cilium, pods k8s-app=cilium) and the ConfigMap its Helm chart writes its settings to.
CILIUM_CONFIG = "cilium-config"


def cilium_agents(inv: Inventory) -> list[Any]:
    return [d for d in inv.of_kind("DaemonSet") if d.name == "cilium" or
            ((d.spec.get("template") or {}).get("metadata") or {}).get("labels", {}).get("k8s-app") == "cilium"]


@readiness("MST0730", "DaemonSet", "ConfigMap")
def cilium_exclusive(ctx: Context) -> Iterator[Found]:
    """istio.io's ambient platform prerequisites: Cilium must not remove other CNI plugins' config."""
    inv = ctx.inventory
    for agents in cilium_agents(inv)[:1]:
        config = inv.get("ConfigMap", agents.namespace, CILIUM_CONFIG)
        if config is not None and str((config.raw.get("data") or {}).get("cni-exclusive", "true")).lower() != "false":
            yield config.ref, fill("Cilium ({agents}) runs with cni-exclusive on: it removes istio-cni's config",
                                   agents=str(agents.ref)), hint("MST0730", configmap=str(config.ref))


@readiness("MST0731", "DaemonSet", "ConfigMap")
def cilium_unchecked(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    for agents in cilium_agents(inv)[:1]:
        if inv.get("ConfigMap", agents.namespace, CILIUM_CONFIG) is None:
            yield agents.ref, fill("Cilium ({agents}) is the CNI; its cilium-config was not read",
                                   agents=str(agents.ref)), hint("MST0731", namespace=agents.namespace or "kube-system")


@readiness("MST0705", "Service")
def no_metrics_backend(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    if not running(inv, "prometheus"):
        yield Ref("Namespace", None, inv.root_namespace), "no Prometheus is running to scrape the proxies", \
            hint("MST0705")
