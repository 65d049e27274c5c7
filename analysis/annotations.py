"""Istio annotations on Kubernetes objects (istioctl's annotations.K8sAnalyzer): annotations Istio does not know,
annotations on a kind of resource they do nothing on, values Istio would reject, and deprecated annotations.

Istio reads an annotation only from the kinds it documents it for; one on the wrong object (a pod annotation on a
Deployment's own metadata rather than its pod template) is silently ignored, which is what these checks catch."""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import yaml

from analysis.base import Context, check
from analysis.catalog import text
from cluster.inventory import Inventory
from cluster.model import Ref
from cluster.queries import per_inventory

ANY = "Any"


@dataclass(frozen=True)
class Annotation:
    name: str
    kinds: tuple[str, ...]  # the resource kinds Istio reads it from (`Any`: every kind)
    deprecated: bool = False


def _table(kinds: tuple[str, ...], names: str, deprecated: bool = False) -> list[Annotation]:
    return [Annotation(n, kinds, deprecated) for n in names.split()]


# Istio's annotations (istio/api annotation/annotations.yaml): where each belongs and whether it is deprecated.
# Hidden ones (set by Istio itself) are listed too, so that they are never reported as unknown.
_POD = ("Pod",)
ANNOTATIONS: dict[str, Annotation] = {a.name: a for a in [
    *_table(_POD, """
        prometheus.istio.io/merge-metrics
        sidecar.istio.io/status sidecar.istio.io/rewriteAppHTTPProbers sidecar.istio.io/proxyImage
        sidecar.istio.io/proxyImageType sidecar.istio.io/proxyCPU sidecar.istio.io/proxyCPULimit
        sidecar.istio.io/proxyMemory sidecar.istio.io/proxyMemoryLimit sidecar.istio.io/interceptionMode
        sidecar.istio.io/bootstrapOverride sidecar.istio.io/statsHistogramBuckets sidecar.istio.io/statsFlushInterval
        sidecar.istio.io/statsEvictionInterval sidecar.istio.io/statsHistogramBins sidecar.istio.io/userVolume
        sidecar.istio.io/userVolumeMount status.sidecar.istio.io/port sidecar.istio.io/logLevel
        sidecar.istio.io/componentLogLevel sidecar.istio.io/agentLogLevel sidecar.istio.io/nativeSidecar
        readiness.status.sidecar.istio.io/initialDelaySeconds readiness.status.sidecar.istio.io/periodSeconds
        readiness.status.sidecar.istio.io/failureThreshold readiness.status.sidecar.istio.io/applicationPorts
        traffic.sidecar.istio.io/includeOutboundIPRanges traffic.sidecar.istio.io/excludeOutboundIPRanges
        traffic.sidecar.istio.io/includeInboundPorts traffic.sidecar.istio.io/excludeInboundPorts
        traffic.sidecar.istio.io/excludeInterfaces traffic.sidecar.istio.io/includeOutboundPorts
        traffic.sidecar.istio.io/excludeOutboundPorts
        proxy.istio.io/config proxy.istio.io/overrides istio.io/rev inject.istio.io/templates
        ambient.istio.io/redirection ambient.istio.io/bypass-inbound-capture ambient.istio.io/dns-capture
        istio.io/reroute-virtual-interfaces"""),
    *_table(_POD, """
        sidecar.istio.io/inject sidecar.istio.io/discoveryAddress sidecar.istio.io/statsInclusionPrefixes
        sidecar.istio.io/statsInclusionSuffixes sidecar.istio.io/statsInclusionRegexps
        traffic.sidecar.istio.io/kubevirtInterfaces sidecar.istio.io/extraStatTags sidecar.istio.io/statsCompression""",
           deprecated=True),
    *_table(("Service",), "networking.istio.io/exportTo traffic.istio.io/nodeSelector"),
    *_table(("Service",), "alpha.istio.io/kubernetes-serviceaccounts alpha.istio.io/canonical-serviceaccounts",
            deprecated=True),
    *_table(("Ingress",), "kubernetes.io/ingress.class"),
    *_table((ANY,), "galley.istio.io/analyze-suppress gateway.istio.io/controller-version"),
    *_table(("AuthorizationPolicy",), "istio.io/dry-run"),
    *_table(("WorkloadEntry",), "istio.io/autoRegistrationGroup istio.io/workloadController istio.io/connectedAt "
                                "istio.io/disconnectedAt"),
    *_table(("Namespace",), "topology.istio.io/controlPlaneClusters"),
    *_table(("GatewayClass", "Gateway"), "ambient.istio.io/waypoint-inbound-binding"),
    *_table(("Gateway",), "gateway.istio.io/service-account gateway.istio.io/name-override "
                          "networking.istio.io/service-type"),
    *_table(("Namespace", "Service", "ServiceEntry"), "networking.istio.io/traffic-distribution"),
    *_table(("Service", "ServiceEntry", "Namespace"), "istio.io/use-waypoint-canary-weight"),
]}

# Annotations Istio's own controllers write (injection status, revision, controller version): never the user's doing.
_SET_BY_ISTIO = frozenset({"sidecar.istio.io/status", "gateway.istio.io/controller-version", "istio.io/rev"})
_DEPRECATION_DETAIL = {"sidecar.istio.io/inject": ' in favor of the "sidecar.istio.io/inject" label'}


def istio_annotation(name: str) -> bool:
    """Whether an annotation is in Istio's namespace (`*istio.io/…`), or the Kubernetes one Istio documents."""
    return name == "kubernetes.io/ingress.class" or name.split("/", 1)[0].endswith("istio.io")


# ---------------------------------------------------------------- values, validated as the sidecar injector does

def _uint(value: str, bits: int) -> str | None:
    if not re.fullmatch(r"\+?[0-9]+", value):
        return f'parsing "{value}": invalid syntax'
    if int(value) >= 1 << bits:
        return f'parsing "{value}": value out of range'
    return None


def _uint32(value: str) -> str | None:
    return _uint(value, 32)


def _ports(what: str, allow_star: bool = False) -> Callable[[str], str | None]:
    def validate(value: str) -> str | None:
        if (allow_star and value == "*") or not value.strip():
            return None
        for port in value.strip().split(","):
            if _uint(port.strip(), 16):
                return f"{what} invalid: failed parsing port {port!r}: not a port number (0-65535)"
        return None
    return validate


def _cidrs(what: str, allow_star: bool = False) -> Callable[[str], str | None]:
    def validate(value: str) -> str | None:
        if (allow_star and value == "*") or not value:
            return None
        for cidr in value.split(","):
            try:
                if "/" not in cidr:
                    raise ValueError("no prefix length")
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as e:
                return f"{what} invalid: failed parsing cidr {cidr!r}: {e}"
        return None
    return validate


def _status_port(value: str) -> str | None:
    return f"not a port number (0-65535): {value!r}" if _uint(value.strip(), 16) else None


def _interception_mode(value: str) -> str | None:
    return (None if value in ("REDIRECT", "TPROXY", "NONE")
            else f"interceptionMode invalid, use REDIRECT,TPROXY,NONE: {value}")


_BOOLS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}


def _bool(value: str) -> str | None:
    return None if value in _BOOLS else f'parsing "{value}": invalid syntax (want true or false)'


_QUANTITY = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[mkMGTPE]|[eE][+-]?[0-9]+)?")


def _quantity(value: str) -> str | None:
    return None if _QUANTITY.fullmatch(value) else (f"quantities must match the regular expression "
                                                    f"'{_QUANTITY.pattern}'")


def _proxy_config(value: str) -> str | None:
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as e:
        return f"failed to convert to apply proxy config: {str(e).splitlines()[0]}"
    return None if parsed is None or isinstance(parsed, dict) else \
        "failed to convert to apply proxy config: not a ProxyConfig mapping"


VALIDATORS: dict[str, Callable[[str], str | None]] = {
    "sidecar.istio.io/interceptionMode": _interception_mode,
    "status.sidecar.istio.io/port": _status_port,
    "readiness.status.sidecar.istio.io/initialDelaySeconds": _uint32,
    "readiness.status.sidecar.istio.io/periodSeconds": _uint32,
    "readiness.status.sidecar.istio.io/failureThreshold": _uint32,
    "traffic.sidecar.istio.io/includeOutboundIPRanges": _cidrs("includeIPRanges", allow_star=True),
    "traffic.sidecar.istio.io/excludeOutboundIPRanges": _cidrs("excludeIPRanges"),
    "traffic.sidecar.istio.io/includeInboundPorts": _ports("includeInboundPorts", allow_star=True),
    "traffic.sidecar.istio.io/excludeInboundPorts": _ports("excludeInboundPorts"),
    "traffic.sidecar.istio.io/excludeOutboundPorts": _ports("excludeOutboundPorts"),
    "prometheus.istio.io/merge-metrics": _bool,
    "sidecar.istio.io/proxyCPU": _quantity,
    "sidecar.istio.io/proxyMemory": _quantity,
    "sidecar.istio.io/proxyCPULimit": _quantity,
    "sidecar.istio.io/proxyMemoryLimit": _quantity,
    "proxy.istio.io/config": _proxy_config,
}


# ---------------------------------------------------------------- the objects istioctl reads annotations of


@dataclass(frozen=True)
class Annotated:
    ref: Ref
    kind: str
    labels: dict[str, str]
    annotations: dict[str, str]


def _annotated(inv: Inventory) -> Iterator[Annotated]:
    """Namespaces, Services, Pods and Deployments with annotations (their own metadata, not a pod template's)."""
    for kind in ("Namespace", "Service", "Deployment"):
        for o in inv.of_kind(kind):
            if o.annotations:
                yield Annotated(Ref(kind, o.namespace, o.name), kind, o.labels, o.annotations)
    for p in inv.pods:
        if p.annotations:
            yield Annotated(Ref("Pod", p.namespace if p.namespace_given else None, p.name), "Pod", p.labels,
                            p.annotations)


def _istio_annotations(inv: Inventory) -> list[tuple[Annotated, str, str, Annotation | None]]:
    """(object, name, value, what Istio documents for it) of every Istio annotation, found once per inventory for
    the four checks that read them."""
    def build(inv: Inventory) -> list[tuple[Annotated, str, str, Annotation | None]]:
        return [(obj, name, str(value), ANNOTATIONS.get(name)) for obj in _annotated(inv)
                for name, value in sorted(obj.annotations.items())
                if istio_annotation(name) and name not in _SET_BY_ISTIO]

    return per_inventory(inv, "istio-annotations", build)


def _placed(a: Annotation, kind: str) -> bool:
    return ANY in a.kinds or kind in a.kinds


@check("IST0108", "Check the annotation's spelling against istio.io/latest/docs/reference/config/annotations/ and "
       "remove it if Istio has no such annotation: Istio ignores it.",
       reads=("Namespace", "Service", "Deployment", "Pod"))
def unknown_annotation(ctx: Context) -> Iterator[tuple[Ref, str]]:
    for obj, name, _, a in _istio_annotations(ctx.inventory):
        if a is None:
            yield obj.ref, text("IST0108", name)


@check("IST0107", "Move the annotation to a resource of the kind it belongs on (a pod annotation goes in a "
       "Deployment's spec.template.metadata, not its own metadata): Istio ignores it where it is.",
       reads=("Namespace", "Service", "Deployment", "Pod"))
def misplaced_annotation(ctx: Context) -> Iterator[tuple[Ref, str]]:
    for obj, name, _, a in _istio_annotations(ctx.inventory):
        if a is not None and not _placed(a, obj.kind):
            yield obj.ref, text("IST0107", name, ", ".join(a.kinds))


@check("IST0125", "Fix the annotation's value: the sidecar injector rejects it (and the pod may not be injected as "
       "intended).",
       reads=("Namespace", "Service", "Deployment", "Pod"))
def invalid_annotation(ctx: Context) -> Iterator[tuple[Ref, str]]:
    for obj, name, value, a in _istio_annotations(ctx.inventory):
        validate = VALIDATORS.get(name)
        if a is None or not _placed(a, obj.kind) or validate is None:
            continue
        problem = validate(value)
        if problem:
            yield obj.ref, text("IST0125", name, problem)


@check("IST0135", "Replace the deprecated annotation with what istio.io/latest/docs/reference/config/annotations/ "
       "names instead (for sidecar.istio.io/inject, the label of the same name).",
       reads=("Namespace", "Service", "Deployment", "Pod"))
def deprecated_annotation(ctx: Context) -> Iterator[tuple[Ref, str]]:
    for obj, name, _, a in _istio_annotations(ctx.inventory):
        if a is None or not a.deprecated:
            continue
        # Someone who also set the replacement label knows; keeping both is deliberate compatibility.
        if name == "sidecar.istio.io/inject" and "sidecar.istio.io/inject" in obj.labels:
            continue
        yield obj.ref, (f'Annotation "{name}" has been deprecated{_DEPRECATION_DETAIL.get(name, "")} and may not '
                        f"work in future Istio versions.")
