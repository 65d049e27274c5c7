"""Domain objects of the inventory: frozen, compact, picklable (Streamlit caches them).

Pods are kept compact (the bulk of a big cluster); every other object keeps its raw dict, read-only by
convention."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ISTIO_GROUPS = ("networking.istio.io", "security.istio.io", "telemetry.istio.io", "extensions.istio.io")
GATEWAY_API_GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True, slots=True)
class Ref:
    """`Kind namespace/name` — how messages and evidence name an object (as istioctl does)."""

    kind: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class ContainerPort:
    name: str | None
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class Probe:
    """A health probe; `port` is an int or a named port, `path` only for httpGet."""

    type: str  # readiness | liveness | startup
    handler: str  # httpGet | tcpSocket | grpc | exec
    port: int | str | None = None
    path: str | None = None


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    probes: tuple[Probe, ...] = ()
    # A native sidecar: an init container with restartPolicy Always (runs alongside the app).
    restart_always: bool = False
    run_as_user: int | None = None  # securityContext.runAsUser (1337 is the proxy's, IST0144)

    @property
    def image_tag(self) -> str | None:
        ref = self.image.rsplit("@", 1)[0]
        last = ref.rsplit("/", 1)[-1]
        return last.split(":", 1)[1] if ":" in last else None

    @property
    def image_name(self) -> str:
        """The repository's last path segment without tag: `docker.io/istio/proxyv2:1.27.3` → `proxyv2`."""
        return self.image.rsplit("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class Sidecar:
    """The istio-proxy sidecar of a pod."""

    shape: str  # native (init container, restartPolicy Always) | classic (regular container)
    image: str
    version: str | None  # from the image tag
    revision: str | None  # from the sidecar.istio.io/status annotation or istio.io/rev label


@dataclass(frozen=True, slots=True)
class PodSpecSummary:
    """What meshstep needs of a pod spec (a Pod's, or a workload's template)."""

    labels: dict[str, str]
    annotations: dict[str, str]
    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...]
    service_account: str
    host_network: bool
    run_as_user: int | None = None  # the pod-level securityContext.runAsUser

    def container(self, name: str) -> Container | None:
        return next((c for c in self.containers + self.init_containers if c.name == name), None)


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    spec: PodSpecSummary
    workload_kind: str  # Deployment, StatefulSet, DaemonSet, Job, CronJob, ReplicaSet or Pod (bare)
    workload_name: str
    node: str | None
    phase: str | None
    ready: bool
    ip: str | None
    created: str | None
    sidecar: Sidecar | None
    # False when the manifest names no namespace (the pod is then in `default`); messages name it as given.
    namespace_given: bool = True

    @property
    def labels(self) -> dict[str, str]:
        return self.spec.labels

    @property
    def annotations(self) -> dict[str, str]:
        return self.spec.annotations

    @property
    def ref(self) -> Ref:
        return Ref("Pod", self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class Workload:
    """A controller of pods (or a bare pod), from the object itself or grouped from its pods."""

    kind: str
    namespace: str
    name: str
    labels: dict[str, str]
    selector: dict[str, str]
    template: PodSpecSummary | None  # None when only pods were seen
    replicas: int | None
    pods: tuple[str, ...] = ()

    @property
    def ref(self) -> Ref:
        return Ref(self.kind, self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str | None
    port: int
    target_port: int | str | None
    protocol: str  # Kubernetes L4 protocol
    app_protocol: str | None
    istio_protocol: str  # as Istio selects it: HTTP, HTTP2, GRPC, HTTPS, TLS, TCP, MONGO, REDIS, MYSQL, UDP, UNKNOWN


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    type: str
    selector: dict[str, str]
    ports: tuple[ServicePort, ...]
    cluster_ip: str | None
    external_name: str | None
    labels: dict[str, str]
    annotations: dict[str, str]

    @property
    def host(self) -> str:
        return f"{self.name}.{self.namespace}.svc.cluster.local"

    @property
    def ref(self) -> Ref:
        return Ref("Service", self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    injection: str  # sidecar | ambient | disabled | none
    revision: str | None


@dataclass(frozen=True, slots=True)
class KubeObject:
    """Any other object, raw: Istio config, Gateway API, ConfigMaps, webhooks, CRDs, Secrets (metadata only)."""

    api_version: str
    kind: str
    namespace: str | None
    name: str
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def metadata(self) -> dict[str, Any]:
        return self.raw.get("metadata") or {}

    @property
    def labels(self) -> dict[str, str]:
        return self.metadata.get("labels") or {}

    @property
    def annotations(self) -> dict[str, str]:
        return self.metadata.get("annotations") or {}

    @property
    def spec(self) -> dict[str, Any]:
        return self.raw.get("spec") or {}

    @property
    def ref(self) -> Ref:
        """How istioctl names the object: without a namespace when its YAML gives none."""
        return Ref(self.kind, self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class CRD:
    name: str  # plural.group
    group: str
    kind: str
    plural: str
    served_versions: tuple[str, ...]
    storage_version: str | None
    schemas: dict[str, dict[str, Any]] = field(repr=False, compare=False, hash=False)  # version → openAPIV3Schema


@dataclass(frozen=True, slots=True)
class Revision:
    """One istiod revision of the control plane."""

    revision: str
    version: str | None
    namespace: str
    istiod_pods: int
    ready_pods: int
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ComponentInstance:
    """An Istio component found in the cluster: one per pod, or per workload when the source has no pods."""

    component: str
    plane: str  # control | data | addon
    kind: str
    namespace: str
    name: str
    reason: str  # how it was recognised

    @property
    def ref(self) -> Ref:
        return Ref(self.kind, self.namespace, self.name)
