"""Raw Kubernetes objects decoded into the model: pods and their specs (shared between pods of one owner with
equal specs), the revision and version their proxies run, Services, CRDs, workloads and mesh configs."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import orjson
import yaml

from cluster import components, shapes
from cluster.errors import SourceError
from cluster.files import YAML_LOADER
from cluster.model import (
    CRD,
    GATEWAY_API_GROUP,
    ISTIO_GROUPS,
    Container,
    ContainerPort,
    KubeObject,
    Pod,
    PodSpecSummary,
    Probe,
    Service,
    ServicePort,
    Sidecar,
    Workload,
)

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")
_PROTOCOLS = {
    "http": "HTTP", "http2": "HTTP2", "https": "HTTPS", "grpc": "GRPC", "grpc-web": "GRPC-Web", "tcp": "TCP",
    "tls": "TLS", "udp": "UDP", "mongo": "Mongo", "redis": "Redis", "mysql": "MySQL",
    "kubernetes.io/h2c": "HTTP2", "kubernetes.io/ws": "HTTP", "kubernetes.io/wss": "HTTPS",
}


def istio_protocol(name: str | None, app_protocol: str | None, l4: str = "TCP") -> str:
    """The protocol Istio selects for a service port; UNKNOWN means Istio must sniff (auto-detect) it."""
    if l4 == "UDP":
        return "UDP"
    if l4 == "SCTP":
        return "SCTP"
    if app_protocol:
        p = _PROTOCOLS.get(app_protocol.lower())
        if p:
            return p
    if name:
        p = _PROTOCOLS.get(name.lower().split("-", 1)[0])
        if p:
            return p
    return "UNKNOWN"


def injection_mode(labels: dict[str, str]) -> tuple[str, str | None]:
    """(sidecar | ambient | disabled | none, revision) of a namespace, from its labels as Istio reads them."""
    inj, rev = labels.get("istio-injection"), labels.get("istio.io/rev")
    # Revisioned injectors select `istio.io/rev` only where `istio-injection` is absent: with both labels the
    # default injector wins (istioctl warns about it, IST0123).
    if inj == "enabled":
        return "sidecar", "default"
    if rev and inj != "disabled":
        return "sidecar", rev
    if labels.get("istio.io/dataplane-mode") == "ambient":
        return "ambient", rev
    if inj == "disabled" or labels.get("istio.io/dataplane-mode") == "none":
        return "disabled", None
    return "none", None


def meta(o: dict[str, Any], key: str) -> dict[str, str]:
    return (o.get("metadata") or {}).get(key) or {}


# ---------------------------------------------------------------- pods and pod specs


def _containers(items: list[Any] | None, cache: dict[Any, Any] | None = None) -> tuple[Container, ...]:
    """Containers (typed, shapes.CONTAINER), equal ones shared through `cache`: a cluster's pods repeat a few
    containers (every injected pod has the same istio-init and istio-proxy), and comparing the decoded Structs (a
    C-level compare) costs a fraction of building the frozen objects."""
    if not items:
        return ()
    out = []
    for c in items:
        bucket = cache.setdefault((c.name, c.image), []) if cache is not None else []
        container = next((built for seen, built in bucket if seen == c), None)
        if container is None:
            container = _container(c)
            if len(bucket) < 8:  # many variants of one name and image: build them, do not search a long list
                bucket.append((c, container))
        out.append(container)
    return tuple(out)


def _container(c: Any) -> Container:
    probes = tuple(probe for probe in (_probe("readiness", c.readinessProbe), _probe("liveness", c.livenessProbe),
                                       _probe("startup", c.startupProbe)) if probe is not None)
    ports = tuple(ContainerPort(p.name, p.containerPort or 0, p.protocol or "TCP") for p in c.ports or ())
    return Container(c.name or "", c.image or "", tuple(map(str, c.command or ())), tuple(map(str, c.args or ())),
                     ports, probes, c.restartPolicy == "Always",
                     c.securityContext.runAsUser if c.securityContext is not None else None)


def _probe(type_: str, p: Any) -> Probe | None:
    """A probe; None when absent or empty (as a manifest's `readinessProbe: {}` probes nothing)."""
    if p is None:
        return None
    for handler in ("httpGet", "tcpSocket", "grpc"):
        h = getattr(p, handler)
        if h is not None:
            return Probe(type_, handler, h.port, getattr(h, "path", None))
    if p.exec is not None:
        return Probe(type_, "exec")
    return None if p == type(p)() else Probe(type_, "unknown")


_NO_METADATA, _NO_SPEC, _NO_STATUS = shapes.METADATA_STRUCT(), shapes.POD_SPEC_STRUCT(), shapes.POD_STATUS_STRUCT()


def pod_spec_summary(meta: dict[str, Any], spec: dict[str, Any], cache: dict[Any, Any] | None = None) -> PodSpecSummary:
    """What meshstep reads of a pod template's metadata and spec (dicts; shapes.TypeProblem for a wrong type)."""
    template = shapes.typed({"metadata": meta, "spec": spec}, shapes.POD_TEMPLATE_STRUCT)
    return _summary(template.metadata, template.spec, cache)


def _summary(meta: Any, spec: Any, cache: dict[Any, Any] | None = None) -> PodSpecSummary:
    """What meshstep reads of a pod spec, from its typed metadata and spec (shapes.METADATA, shapes.POD_SPEC)."""
    meta = meta if meta is not None else _NO_METADATA
    spec = spec if spec is not None else _NO_SPEC
    return PodSpecSummary(
        labels=meta.labels or {},
        annotations=meta.annotations or {},
        containers=_containers(spec.containers, cache),
        init_containers=_containers(spec.initContainers, cache),
        service_account=spec.serviceAccountName or spec.serviceAccount or "default",
        host_network=bool(spec.hostNetwork),
        run_as_user=spec.securityContext.runAsUser if spec.securityContext is not None else None,
    )


def _shared_summary(meta: Any, spec: Any, cache: dict[Any, Any] | None) -> PodSpecSummary:
    """A pod's summary, shared with the pod of the same owner met before when both have equal labels, annotations
    and the spec fields a summary reads: a ReplicaSet's pods mostly do, and comparing their decoded Structs (a
    C-level compare) costs a fraction of building the summary (10,000 pods: 0.08 s)."""
    owners = meta.ownerReferences
    if cache is None or not owners:
        return _summary(meta, spec, cache)
    key = ("summary", meta.namespace, owners[0].kind, owners[0].name)
    seen = cache.get(key)
    if seen is not None:
        m, s, summary = seen
        if (meta.labels == m.labels and meta.annotations == m.annotations and spec.containers == s.containers
                and spec.initContainers == s.initContainers and spec.serviceAccountName == s.serviceAccountName
                and spec.serviceAccount == s.serviceAccount and spec.hostNetwork == s.hostNetwork
                and spec.securityContext == s.securityContext):
            return summary
    summary = _summary(meta, spec, cache)
    cache[key] = (meta, spec, summary)
    return summary


def pod(p: Any, cache: dict[Any, Any] | None = None) -> Pod:
    """A Pod from its typed form (shapes.POD: decoded from JSON, or converted from a dict by shapes.typed)."""
    meta = p.metadata if p.metadata is not None else _NO_METADATA
    spec = p.spec if p.spec is not None else _NO_SPEC
    status = p.status if p.status is not None else _NO_STATUS
    summary = _shared_summary(meta, spec, cache)
    wkind, wname = _owner(meta)
    proxy = components.find_sidecar(summary)
    sidecar = None
    if proxy is not None:
        key = ("native" if proxy.restart_always else "classic", proxy.image, version_of(proxy.image_tag),
               injected_revision(summary))
        sidecar = cache.get(key) if cache is not None else None
        if sidecar is None:
            sidecar = Sidecar(*key)
            if cache is not None:
                cache[key] = sidecar
    ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions or ())
    return Pod(meta.namespace or "default", meta.name, summary, wkind, wname, spec.nodeName, status.phase, ready,
               status.podIP, meta.creationTimestamp, sidecar, namespace_given=bool(meta.namespace))


def pod_of(o: dict[str, Any], cache: dict[Any, Any] | None = None) -> Pod:
    """A Pod from a pod dict (a YAML snapshot's, one a feature writes)."""
    try:
        return pod(shapes.typed(o), cache)
    except shapes.TypeProblem as e:
        raise SourceError(f"{shapes.ref(o)}: {e}") from None


def _owner(meta: Any) -> tuple[str, str]:
    """The workload that owns a pod. A ReplicaSet named `<deployment>-<pod-template-hash>` is a Deployment's."""
    owners = meta.ownerReferences or ()
    owner = next((r for r in owners if r.controller), None) or next(iter(owners), None)
    if not owner:
        return "Pod", meta.name
    kind, name = owner.kind or "", owner.name or ""
    if kind == "ReplicaSet":
        h = (meta.labels or {}).get("pod-template-hash")
        if h and name.endswith("-" + h):
            return "Deployment", name[: -len(h) - 1]
    return kind, name


def injected_revision(spec: PodSpecSummary) -> str | None:
    status = spec.annotations.get("sidecar.istio.io/status")
    if status:
        # The injector writes JSON; orjson reads it ~100x faster than YAML (it ran once per pod). YAML remains
        # for hand-written manifests.
        try:
            parsed = orjson.loads(status)
        except orjson.JSONDecodeError:
            try:
                parsed = yaml.load(status, Loader=YAML_LOADER)
            except yaml.YAMLError:
                parsed = None
        rev = parsed.get("revision") if isinstance(parsed, dict) else None
        if rev:
            return str(rev)
    return spec.labels.get("istio.io/rev") or spec.annotations.get("istio.io/rev")


def version_of(tag: str | None) -> str | None:
    """`1.27.3-distroless` → `1.27.3`; tags that are not versions (latest, a digest) → None."""
    if not tag:
        return None
    v = tag.split("-", 1)[0]
    return v if v[:1].isdigit() else None


def pilot_version(spec: PodSpecSummary) -> str | None:
    c = next((c for c in spec.containers if c.image_name == "pilot" or c.args[:1] == ("discovery",)), None)
    return version_of(c.image_tag) if c else None


# ---------------------------------------------------------------- other kinds


def service(o: dict[str, Any]) -> Service:
    meta, spec = o["metadata"], o.get("spec") or {}
    ports = tuple(
        ServicePort(p.get("name"), p.get("port", 0), p.get("targetPort"), p.get("protocol", "TCP"),
                    p.get("appProtocol"), istio_protocol(p.get("name"), p.get("appProtocol"), p.get("protocol", "TCP")))
        for p in spec.get("ports") or ()
    )
    return Service(meta.get("namespace") or "default", meta["name"], spec.get("type", "ClusterIP"),
                   spec.get("selector") or {}, ports, spec.get("clusterIP"), spec.get("externalName"),
                   meta.get("labels") or {}, meta.get("annotations") or {})


def crd(o: dict[str, Any]) -> CRD | None:
    spec = o.get("spec") or {}
    group = spec.get("group", "")
    if group not in ISTIO_GROUPS and group != GATEWAY_API_GROUP:
        return None
    versions = spec.get("versions") or []
    names = spec.get("names") or {}
    return CRD(
        name=o["metadata"]["name"], group=group, kind=names.get("kind", ""), plural=names.get("plural", ""),
        served_versions=tuple(v["name"] for v in versions if v.get("served")),
        storage_version=next((v["name"] for v in versions if v.get("storage")), None),
        schemas={v["name"]: (v.get("schema") or {}).get("openAPIV3Schema") or {} for v in versions},
    )


def workloads(pods: list[Pod], objects: dict[str, tuple[KubeObject, ...]],
               cache: dict[Any, Any] | None = None,
               known: dict[tuple[str, str, str], PodSpecSummary] | None = None) -> tuple[Workload, ...]:
    """Controllers from their objects, plus groupings of pods whose controller object the source lacks (`cache`:
    containers shared with the pods', see _containers; `known`: pod templates already decoded, by namespace, kind
    and name, of objects unchanged since)."""
    by_key: dict[tuple[str, str, str], Workload] = {}
    for kind in WORKLOAD_KINDS:
        for o in objects.get(kind, ()):
            owners = o.metadata.get("ownerReferences") or ()
            if any(r.get("controller") and r.get("kind") in WORKLOAD_KINDS for r in owners):
                continue  # a Deployment's ReplicaSet, a CronJob's Job: the owner is the workload
            spec = o.spec
            tmpl = spec.get("template") or {}
            if kind == "CronJob":
                tmpl = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
            sel = (spec.get("selector") or {}).get("matchLabels") or {}
            template = (known or {}).get((o.namespace or "default", kind, o.name))
            try:
                template = template or pod_spec_summary(tmpl.get("metadata") or {}, tmpl.get("spec") or {}, cache)
            except shapes.TypeProblem as e:  # checked at the edge; an object a feature wrote is not
                raise SourceError(f"{o.ref}: its pod template's {e}") from None
            by_key[(o.namespace or "default", kind, o.name)] = Workload(
                kind, o.namespace or "default", o.name, o.labels, sel, template, spec.get("replicas"))
    members: dict[tuple[str, str, str], list[Pod]] = defaultdict(list)
    for p in pods:
        members[(p.namespace, p.workload_kind, p.workload_name)].append(p)
    for key, ps in members.items():
        names = tuple(sorted(p.name for p in ps))
        w = by_key.get(key)
        if w is not None:
            by_key[key] = replace(w, pods=names)
        else:
            by_key[key] = Workload(key[1], key[0], key[2], {}, {}, None, None, names)
    return tuple(by_key[k] for k in sorted(by_key))


def mesh_configs(configmaps: Iterable[KubeObject]) -> dict[str, dict[str, Any]]:
    """Mesh config per revision from the `istio` / `istio-<rev>` ConfigMaps (data.mesh, YAML)."""
    out = {}
    for cm in configmaps:
        if cm.name != "istio" and not cm.name.startswith("istio-"):
            continue
        mesh = (cm.raw.get("data") or {}).get("mesh")
        if mesh is None:
            continue
        rev = "default" if cm.name == "istio" else cm.name[len("istio-"):]
        try:
            # the C loader: an overlay rebuilds the inventory, and with it this, once per rendering it checks
            parsed = yaml.load(mesh, Loader=YAML_LOADER) or {}
        except yaml.YAMLError as e:
            raise SourceError(f"ConfigMap {cm.namespace}/{cm.name}: data.mesh is not valid YAML: {e}") from e
        if not isinstance(parsed, dict):
            raise SourceError(f"ConfigMap {cm.namespace}/{cm.name}: data.mesh must be a mapping")
        out[rev] = parsed
    return out
