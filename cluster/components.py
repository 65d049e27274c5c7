"""Istio's components: how meshstep recognises each one, and the catalog that explains it.

Recognition looks at what a pod runs (images, container names, args), not at its name, so that revisions,
custom namespaces and renamed deployments are recognised too. The catalog says, per component id, what it is
for, its ports, who it talks to on which port and protocol, what breaks when it is down, and how to debug it."""
from __future__ import annotations

from dataclasses import dataclass

from cluster.model import Container, PodSpecSummary

# ---------------------------------------------------------------- catalog types


@dataclass(frozen=True, slots=True)
class Port:
    """A port a component listens on."""

    port: int
    protocol: str
    purpose: str
    local_only: bool = False  # bound to localhost inside the pod: reachable only with kubectl exec / port-forward


@dataclass(frozen=True, slots=True)
class Part:
    """One job of a component that does several (istiod)."""

    name: str
    role: str
    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Edge:
    """`source` opens connections to `target`: component ids, or peers outside Istio (see PEERS)."""

    source: str
    target: str
    port: int | None  # None: not over the network (a Unix socket, a CNI plugin call)
    protocol: str
    purpose: str

    @property
    def label(self) -> str:
        return f"{self.port} {self.protocol}" if self.port is not None else self.protocol


@dataclass(frozen=True, slots=True)
class Command:
    """A debug command; `template` takes {target} (pod name, or kind/name with no pod), {pod}, {namespace},
    {container}, {revision}, {istiod_namespace}."""

    purpose: str
    template: str
    note: str = ""
    needs_container: str | None = None  # only for pods that have this container

    def render(self, **values: str) -> str:
        return self.template.format(**values)


@dataclass(frozen=True, slots=True)
class Component:
    id: str
    title: str
    plane: str  # control | data | addon
    role: str
    recognised_by: str
    ports: tuple[Port, ...]
    when_down: tuple[str, ...]
    misconfigured: tuple[str, ...]
    commands: tuple[Command, ...]
    docs: str
    container: str | None  # the container debug commands address (`kubectl logs -c`), None when there is one
    parts: tuple[Part, ...] = ()

    @property
    def edges(self) -> tuple[Edge, ...]:
        """Every connection this component opens or accepts."""
        return tuple(e for e in EDGES if self.id in (e.source, e.target))


# ---------------------------------------------------------------- the catalog

# Every Envoy run by pilot-agent (sidecar, gateway, waypoint) has these; each component lists the ones it uses.
_ENVOY_PORTS = {
    15000: Port(15000, "HTTP", "Envoy admin: config dump, stats, log levels", local_only=True),
    15001: Port(15001, "TCP", "outbound capture: iptables sends the app's outgoing connections here"),
    15004: Port(15004, "HTTP", "pilot-agent debug endpoint", local_only=True),
    15006: Port(15006, "TCP", "inbound capture: iptables sends connections to the app's ports here"),
    15008: Port(15008, "HTTP/2 (HBONE)", "HBONE mTLS tunnel: the port ambient peers (ztunnel, waypoints) connect to"),
    15020: Port(15020, "HTTP", "merged Prometheus metrics (Envoy + pilot-agent + app) — what Prometheus scrapes"),
    15021: Port(15021, "HTTP", "health check (/healthz/ready): the readiness probe and load balancers use it"),
    15053: Port(15053, "DNS", "DNS proxy, when DNS capture is on", local_only=True),
    15090: Port(15090, "HTTP", "Envoy's own Prometheus metrics (/stats/prometheus)"),
}


def _envoy(*ports: int) -> tuple[Port, ...]:
    return tuple(_ENVOY_PORTS[p] for p in ports)


_PROXY_DEBUG = (
    Command("is this proxy connected to istiod and in sync (SYNCED on every xDS type)?",
            "istioctl proxy-status {target} -n {namespace}"),
    Command("upstream clusters (services) this proxy knows", "istioctl proxy-config cluster {target} -n {namespace}"),
    Command("listeners (ports) it accepts traffic on", "istioctl proxy-config listener {target} -n {namespace}"),
    Command("HTTP routes (what VirtualServices became)", "istioctl proxy-config route {target} -n {namespace}"),
    Command("its mTLS certificate and root CA, with expiry", "istioctl proxy-config secret {target} -n {namespace}"),
    Command("proxy logs (connection errors, rejected config)", "kubectl logs {target} -n {namespace} -c {container}"),
)
# The proxyv2 image ships ss, iptables and tcpdump; distroless images do not (use `kubectl debug` there).
_NETWORK_DEBUG = (
    Command("sockets the pod listens on and its open connections",
            "kubectl exec {pod} -n {namespace} -c {container} -- ss -tanp",
            "netstat -tanp where ss is missing"),
    Command("the traffic-capture rules (ISTIO_REDIRECT, ISTIO_INBOUND, ISTIO_OUTPUT chains)",
            "kubectl exec {pod} -n {namespace} -c {container} -- iptables -t nat -L -n -v",
            "needs NET_ADMIN"),
    Command("watch the packets on the pod's network",
            "kubectl exec {pod} -n {namespace} -c {container} -- tcpdump -i any -nn -c 50",
            "needs a privileged proxy (values.global.proxy.privileged=true), else use kubectl debug"),
)

_ISTIOD = Component(
    id="istiod",
    title="istiod — the Istio control plane",
    plane="control",
    role=("The brain of the mesh. It reads Kubernetes (Services, endpoints, pods) and Istio config, turns them into "
          "Envoy configuration and streams it to every proxy; it signs the certificates proxies use for mTLS; it "
          "adds sidecars to new pods; it rejects invalid Istio config. It carries no application traffic."),
    recognised_by="a container running pilot-discovery: the `pilot` image, or args starting with `discovery`",
    parts=(
        Part("xDS config server", "translates Services, endpoints and Istio config (VirtualService, DestinationRule, "
             "Gateway, …) into listeners, routes, clusters and endpoints and pushes them over gRPC (xDS) to every "
             "connected sidecar, gateway, waypoint and ztunnel", (15010, 15012)),
        Part("certificate authority (CA)", "signs each workload's short-lived certificate (its SPIFFE identity, "
             "from its service account) when the proxy's agent sends a CSR; the agent hands it to Envoy over SDS. "
             "The root certificate is published in every namespace as ConfigMap istio-ca-root-cert", (15012,)),
        Part("sidecar injector webhook", "a mutating admission webhook: the API server calls it for every new pod "
             "in an injection-enabled namespace, and it adds the istio-proxy sidecar (and istio-init, or "
             "istio-validation under istio-cni)", (15017,)),
        Part("config validation webhook", "a validating admission webhook: the API server calls it whenever Istio "
             "config is created or changed, and it rejects objects Istio could not use", (15017,)),
    ),
    ports=(
        Port(15010, "gRPC", "xDS and CA, plaintext — only for networks you trust"),
        Port(15012, "gRPC (TLS/mTLS)", "xDS and CA over TLS — what proxies use"),
        Port(15014, "HTTP", "control-plane metrics (/metrics) and debug endpoints (/debug/syncz, …)"),
        Port(15017, "HTTPS", "injection and validation webhooks (Service port 443 points here)"),
        Port(8080, "HTTP", "readiness (/ready) and legacy debug endpoint, container port only"),
    ),
    when_down=(
        "Pods created in injection-enabled namespaces are refused (the injector webhook fails closed): "
        "ReplicaSets show FailedCreate 'failed calling webhook …sidecar-injector.istio.io'.",
        "No config change reaches any proxy: new VirtualServices, DestinationRules, endpoints of new pods and "
        "scaled-down pods are not pushed; proxies keep their last config.",
        "No certificate is signed or renewed: running traffic keeps flowing until workload certificates "
        "expire (24h by default), then mTLS connections fail.",
        "New proxies (restarted pods, new gateways) cannot get config and stay not ready.",
    ),
    misconfigured=(
        "Several istiod revisions with overlapping injection labels: pods get the wrong revision's sidecar.",
        "Validation webhook pointing at a removed revision: every Istio config change is rejected.",
        "Proxies on a version more than one minor behind istiod: unsupported, config may be rejected.",
    ),
    commands=(
        Command("is istiod running and ready?", "kubectl get pod {pod} -n {namespace} -o wide"),
        Command("istiod's logs: pushes, rejected config, webhook and CA errors",
                "kubectl logs {target} -n {namespace} -c discovery"),
        Command("every proxy it serves and whether each is in sync", "istioctl proxy-status"),
        Command("control-plane metrics (pilot_xds_pushes, pilot_total_xds_rejects, pilot_proxy_convergence_time)",
                "kubectl port-forward {target} -n {namespace} 15014:15014  # then: curl -s localhost:15014/metrics"),
        Command("the injector and validation webhooks it registered",
                "kubectl get mutatingwebhookconfigurations,validatingwebhookconfigurations -l istio.io/rev={revision}"),
        Command("config problems istiod will not tell you about", "istioctl analyze --all-namespaces"),
        Command("client and control-plane versions", "istioctl version"),
    ),
    docs="https://istio.io/latest/docs/ops/deployment/architecture/",
    container="discovery",
)

_SIDECAR = Component(
    id="sidecar",
    title="istio-proxy sidecar — Envoy next to the app",
    plane="data",
    role=("An Envoy proxy (run by pilot-agent) in the application's own pod. iptables rules send every connection "
          "in and out of the pod through it, so it can encrypt with mTLS, route, retry, enforce "
          "AuthorizationPolicy and report metrics and traces — without changing the app."),
    recognised_by=("container istio-proxy running `proxy sidecar`: a native sidecar (an init container with "
                   "restartPolicy Always, today's default) or a classic one (among the containers, with istio-init)"),
    ports=_envoy(15000, 15001, 15004, 15006, 15020, 15021, 15053, 15090),
    when_down=(
        "The app's traffic in and out of the pod fails: iptables still sends it to a proxy that is not there.",
        "The pod is not ready (its readiness is rewritten to go through 15021), so Services stop sending to it.",
    ),
    misconfigured=(
        "Not in sync with istiod (proxy-status STALE/NOT SENT): it routes with old config.",
        "Service ports without a protocol name: Istio has to sniff the protocol, and server-first protocols "
        "(MySQL, SMTP) hang.",
        "The app starts before the proxy is ready and fails its first calls (holdApplicationUntilProxyStarts).",
        "App running as UID 1337 (the proxy's): its traffic skips the proxy.",
    ),
    commands=_PROXY_DEBUG + (
        Command("the capture rules istio-init installed", "kubectl logs {pod} -n {namespace} -c istio-init",
                needs_container="istio-init"),
        Command("whether istio-cni set up the capture (under istio-cni)",
                "kubectl logs {pod} -n {namespace} -c istio-validation", needs_container="istio-validation"),
    ) + _NETWORK_DEBUG,
    docs="https://istio.io/latest/docs/setup/additional-setup/sidecar-injection/",
    container="istio-proxy",
)

_GATEWAY_DEBUG = _PROXY_DEBUG + (
    Command("the Service that exposes it (external IP, ports)", "kubectl get svc -n {namespace} -o wide"),
) + _NETWORK_DEBUG


def _gateway(id_: str, title: str, role: str, recognised_by: str, when_down: tuple[str, ...],
             misconfigured: tuple[str, ...], docs: str) -> Component:
    # All gateways run the same Envoy in `proxy router` mode; only their job (their config) differs.
    return Component(id_, title, "data", role, recognised_by, _envoy(15000, 15020, 15021, 15090) + (
        Port(8080, "HTTP", "HTTP traffic (Service port 80 points here; a non-root proxy cannot bind 80)"),
        Port(8443, "HTTPS/TLS", "TLS traffic (Service port 443 points here)"),
    ), when_down, misconfigured, _GATEWAY_DEBUG, docs, "istio-proxy")


_INGRESS = _gateway(
    "ingress-gateway", "ingress gateway — the mesh's front door",
    "A standalone Envoy that receives traffic from outside the cluster (through its LoadBalancer or NodePort "
    "Service) and routes it into the mesh as Gateway and VirtualService (or Gateway API HTTPRoute) say.",
    "container istio-proxy running `proxy router` (or injected with the `gateway` template), not an egress or "
    "east-west gateway by its `istio`/`app` labels",
    ("Everything served through it is unreachable from outside: connection refused or timeouts at the load "
     "balancer.",),
    ("A Gateway whose selector matches no gateway pod: the host gets 404 (IST0101).",
     "Gateway servers on a port the gateway's Service does not expose (IST0162).",
     "TLS credentialName pointing at a Secret that is not in the gateway's namespace: handshake fails."),
    "https://istio.io/latest/docs/tasks/traffic-management/ingress/ingress-control/",
)
_EGRESS = _gateway(
    "egress-gateway", "egress gateway — the mesh's exit",
    "A standalone Envoy that calls to external services are routed through, so they leave the cluster from one "
    "place where they can be controlled, audited and given fixed source IPs.",
    "container istio-proxy running `proxy router`, labelled `istio: egressgateway` (or egress in its `app` label)",
    ("Calls routed through it to external services fail (503 from the sidecars).",),
    ("A ServiceEntry without the VirtualService that sends its traffic through the gateway: the traffic leaves "
     "directly from the sidecars, bypassing it.",),
    "https://istio.io/latest/docs/tasks/traffic-management/egress/egress-gateway/",
)
_EAST_WEST = _gateway(
    "east-west-gateway", "east-west gateway — the door between clusters",
    "A standalone Envoy that carries mesh traffic between clusters on different networks (port 15443, TLS "
    "passed through with SNI routing) and, with a remote control plane, exposes istiod (15012, 15017) to them.",
    "container istio-proxy running `proxy router`, labelled `istio: eastwestgateway` or of the `istio-east-west` "
    "gateway class",
    ("Calls to services whose endpoints are in another network fail; local endpoints still work.",
     "Remote clusters whose istiod is reached through it lose their control plane."),
    ("No Gateway exposing 15443 with tls mode AUTO_PASSTHROUGH: cross-network traffic is dropped.",
     "Networks (topology.istio.io/network) not set alike on the namespace and in meshNetworks."),
    "https://istio.io/latest/docs/setup/install/multicluster/multi-primary_multi-network/",
)

_CNI = Component(
    id="istio-cni",
    title="istio-cni node agent — traffic redirection without privileged pods",
    plane="data",
    role=("A DaemonSet (one pod per node) that installs Istio's CNI plugin on the node. When a pod starts, the "
          "plugin sets up the traffic redirection in the pod's network namespace, so injected pods need no "
          "privileged istio-init container; in ambient mode it hands ambient pods to the node's ztunnel."),
    recognised_by="container install-cni (the `install-cni` image)",
    ports=(Port(15014, "HTTP", "metrics"), Port(8000, "HTTP", "readiness (/readyz)")),
    when_down=(
        "Ambient pods started on that node meanwhile are not captured: they run outside the mesh until it is back.",
        "If the plugin is missing from the node, injected pods fail their istio-validation init container and do "
        "not start.",
        "Pods already running keep working.",
    ),
    misconfigured=(
        "CNI config directory or binary directory not the node's (cniConfDir, cniBinDir on GKE/OpenShift): the "
        "plugin never runs and istio-validation fails.",
        "Another CNI rewriting the chain after Istio: redirection silently missing.",
    ),
    commands=(
        Command("the agent's logs: plugin install, pods it set up",
                "kubectl logs {target} -n {namespace} -c {container}"),
        Command("one agent per node, all ready?", "kubectl get pods -n {namespace} -o wide -l k8s-app=istio-cni-node"),
        Command("the CNI config it wrote on the node",
                "kubectl exec {pod} -n {namespace} -c {container} -- ls -l /host/etc/cni/net.d"),
    ),
    docs="https://istio.io/latest/docs/setup/additional-setup/cni/",
    container="install-cni",
)

_ZTUNNEL = Component(
    id="ztunnel",
    title="ztunnel — the ambient node proxy",
    plane="data",
    role=("In ambient mode, one ztunnel per node (a DaemonSet, written in Rust) carries the traffic of the ambient "
          "pods on its node: it encrypts it with mTLS in HBONE tunnels, applies L4 AuthorizationPolicy and reports "
          "TCP metrics. HTTP-level features need a waypoint."),
    recognised_by="a container running the `ztunnel` image (`proxy ztunnel`)",
    ports=(
        Port(15001, "TCP", "outbound capture of the node's ambient pods"),
        Port(15006, "TCP", "inbound plaintext capture"),
        Port(15008, "HTTP/2 (HBONE)", "inbound HBONE mTLS tunnel from other ztunnels and waypoints"),
        Port(15020, "HTTP", "metrics"),
        Port(15021, "HTTP", "readiness"),
        Port(15053, "DNS", "DNS proxy", local_only=True),
        Port(15000, "HTTP", "admin: config dump, log levels", local_only=True),
    ),
    when_down=(
        "Ambient pods on that node can neither send nor receive traffic.",
        "Pods in sidecar mode and pods outside the mesh are not affected.",
    ),
    misconfigured=(
        "istio-cni not running on the node: ambient pods are not captured and talk in plaintext.",
        "Missing certificates for a pod's service account: its connections are refused.",
    ),
    commands=(
        Command("workloads this ztunnel knows, with protocol (HBONE/TCP) and waypoint",
                "istioctl ztunnel-config workloads {target}.{namespace}"),
        Command("the certificates it holds for the pods of its node",
                "istioctl ztunnel-config certificates {target}.{namespace}"),
        Command("ztunnel's logs: one line per connection, with source and destination identity",
                "kubectl logs {target} -n {namespace}"),
        Command("metrics",
                "kubectl port-forward {target} -n {namespace} 15020:15020  # then: curl -s localhost:15020/metrics"),
    ),
    docs="https://istio.io/latest/docs/ambient/architecture/data-plane/",
    container=None,
)

_WAYPOINT = Component(
    id="waypoint",
    title="waypoint proxy — ambient's L7 proxy",
    plane="data",
    role=("In ambient mode, an Envoy deployed per namespace or service account (a Gateway API Gateway of class "
          "istio-waypoint) that the ztunnels send traffic through when HTTP features are needed: routing, retries, "
          "L7 AuthorizationPolicy, HTTP metrics."),
    recognised_by="container istio-proxy running `proxy waypoint`, or a gateway labelled with class istio-waypoint",
    ports=_envoy(15000, 15008, 15020, 15021, 15090),
    when_down=("Traffic to the services that use it fails; services without a waypoint are not affected.",),
    misconfigured=(
        "Namespace or service not labelled istio.io/use-waypoint: the waypoint is skipped and L7 policy silently "
        "not applied.",
        "L7 AuthorizationPolicy bound to the workload selector instead of targetRefs: ztunnel enforces it, "
        "cannot evaluate its L7 rules and denies the traffic it selects (MST0707).",
    ),
    commands=(
        Command("waypoints of the namespace and their status", "istioctl waypoint status -n {namespace}"),
    ) + _PROXY_DEBUG,
    docs="https://istio.io/latest/docs/ambient/usage/waypoint/",
    container="istio-proxy",
)


def _addon(id_: str, title: str, role: str, ports: tuple[Port, ...], when_down: str, misconfigured: str,
           dashboard: str | None, docs: str) -> Component:
    # Addons are ordinary apps: their own logs, plus `istioctl dashboard` where istioctl knows them.
    commands = [Command("its logs", "kubectl logs {target} -n {namespace}")]
    if dashboard:
        commands.append(Command("open its UI locally", f"istioctl dashboard {dashboard} -n {{namespace}}"))
    return Component(id_, title, "addon", role, "a container running its image", ports, (when_down,),
                     (misconfigured,), tuple(commands), docs, None)


_ADDONS = (
    _addon("kiali", "Kiali — the mesh console",
           "Draws the live service graph from Prometheus metrics and validates Istio config; read-only by default.",
           (Port(20001, "HTTP", "UI and API"), Port(9090, "HTTP", "its own metrics")),
           "The console is unavailable; the mesh is not affected.",
           "Prometheus URL wrong: empty graph.", "kiali", "https://istio.io/latest/docs/ops/integrations/kiali/"),
    _addon("prometheus", "Prometheus — metrics store",
           "Scrapes the proxies (15020) and istiod (15014) and stores Istio's metrics (istio_requests_total, …).",
           (Port(9090, "HTTP", "query API and UI"),),
           "No metrics are collected; Kiali's graph and Grafana's dashboards go empty; the mesh is not affected.",
           "Scrape config without the prometheus.io annotations job: proxies not scraped.", "prometheus",
           "https://istio.io/latest/docs/ops/integrations/prometheus/"),
    _addon("grafana", "Grafana — dashboards",
           "Shows Istio's dashboards (mesh, service, workload, control plane) from Prometheus' metrics.",
           (Port(3000, "HTTP", "UI"),), "Dashboards are unavailable; the mesh is not affected.",
           "Prometheus data source pointing elsewhere: empty panels.", "grafana",
           "https://istio.io/latest/docs/ops/integrations/grafana/"),
    _addon("jaeger", "Jaeger — distributed tracing",
           "Receives the spans the proxies send (Zipkin format on 9411, OTLP on 4317/4318) and shows traces.",
           (Port(16686, "HTTP", "UI (Service tracing:80)"), Port(16685, "gRPC", "query API (Kiali uses it)"),
            Port(9411, "HTTP", "Zipkin-format spans (Service zipkin)"), Port(4317, "gRPC", "OTLP spans"),
            Port(4318, "HTTP", "OTLP spans"), Port(14268, "HTTP", "Jaeger-format spans"),
            Port(14250, "gRPC", "Jaeger-format spans")),
           "Spans are dropped; requests are not affected.",
           "Mesh tracing provider pointing at another service or sampling at 0%: no traces.", "jaeger",
           "https://istio.io/latest/docs/ops/integrations/jaeger/"),
    _addon("zipkin", "Zipkin — distributed tracing",
           "Receives the proxies' spans in Zipkin format and shows traces.",
           (Port(9411, "HTTP", "span intake, API and UI"),), "Spans are dropped; requests are not affected.",
           "Mesh tracing provider not pointing at zipkin.<namespace>:9411: no traces.", "zipkin",
           "https://istio.io/latest/docs/ops/integrations/zipkin/"),
    _addon("loki", "Loki — log store",
           "Stores logs, such as the proxies' access logs shipped by an OpenTelemetry collector; Grafana queries it.",
           (Port(3100, "HTTP", "push and query API"), Port(9095, "gRPC", "internal"),
            Port(7946, "TCP", "memberlist gossip")),
           "Logs are not stored; the mesh is not affected.", "No collector shipping to it: no access logs.", None,
           "https://istio.io/latest/docs/ops/integrations/"),
    _addon("otel-collector", "OpenTelemetry collector",
           "Receives spans, access logs and metrics from the proxies over OTLP and forwards them to backends "
           "(Jaeger, Loki, a vendor).",
           (Port(4317, "gRPC", "OTLP intake"), Port(4318, "HTTP", "OTLP intake")),
           "Telemetry sent through it is dropped; requests are not affected.",
           "No opentelemetry extensionProvider in the mesh config (or no Telemetry using it): nothing arrives.",
           None, "https://istio.io/latest/docs/tasks/observability/distributed-tracing/opentelemetry/"),
)

CATALOG: dict[str, Component] = {
    c.id: c for c in (_ISTIOD, _INGRESS, _EGRESS, _EAST_WEST, _CNI, _ZTUNNEL, _WAYPOINT, _SIDECAR, *_ADDONS)
}

PLANES = {c.id: c.plane for c in CATALOG.values()}

# Peers that are not Istio components but that components talk to.
PEERS = {
    "kube-apiserver": "the Kubernetes API server",
    "clients": "clients outside the cluster",
    "external-services": "services outside the mesh",
    "remote-clusters": "the other clusters of a multi-network mesh",
}

_PROXIES = ("sidecar", "ingress-gateway", "egress-gateway", "east-west-gateway", "waypoint")
# Every component fed by istiod over xDS: what stops getting config and certificates when istiod is down.
XDS_CLIENTS = (*_PROXIES, "ztunnel")
_XDS = "xDS config + certificate signing"

EDGES: tuple[Edge, ...] = (
    *(Edge(p, "istiod", 15012, "gRPC/mTLS", _XDS) for p in XDS_CLIENTS),
    Edge("kube-apiserver", "istiod", 15017, "HTTPS", "sidecar injection and config validation webhooks"),
    Edge("istiod", "kube-apiserver", 443, "HTTPS", "watches Services, endpoints, pods and Istio config"),
    Edge("istio-cni", "kube-apiserver", 443, "HTTPS", "watches the pods of its node"),
    Edge("istio-cni", "sidecar", None, "CNI plugin", "sets up traffic redirection in each new pod"),
    Edge("istio-cni", "ztunnel", None, "Unix socket", "hands over the network namespace of each ambient pod"),
    Edge("clients", "ingress-gateway", 443, "HTTPS/HTTP", "traffic entering the mesh (Service ports 80/443)"),
    Edge("ingress-gateway", "sidecar", 15006, "mTLS", "routed requests to the app pods"),
    Edge("ingress-gateway", "ztunnel", 15008, "HBONE", "routed requests to ambient pods"),
    Edge("sidecar", "sidecar", 15006, "mTLS", "app-to-app traffic, captured on both ends"),
    Edge("sidecar", "egress-gateway", 443, "mTLS", "calls to external services routed through the gateway"),
    Edge("egress-gateway", "external-services", 443, "TLS/TCP", "calls leaving the mesh"),
    Edge("remote-clusters", "east-west-gateway", 15443, "TLS (SNI passthrough)", "cross-network mesh traffic"),
    Edge("east-west-gateway", "sidecar", 15006, "mTLS", "cross-network traffic delivered to local pods"),
    Edge("ztunnel", "ztunnel", 15008, "HBONE", "ambient pod-to-pod traffic between nodes"),
    Edge("ztunnel", "waypoint", 15008, "HBONE", "traffic that needs L7 processing"),
    Edge("waypoint", "ztunnel", 15008, "HBONE", "traffic after L7 processing, to the destination pod"),
    Edge("prometheus", "istiod", 15014, "HTTP", "control-plane metrics scrape"),
    *(Edge("prometheus", p, 15020, "HTTP", "metrics scrape") for p in XDS_CLIENTS),
    *(Edge(p, "zipkin", 9411, "HTTP", "spans (Zipkin format), when the mesh's tracer points here") for p in _PROXIES),
    *(Edge(p, "jaeger", 9411, "HTTP", "spans (Zipkin format), when the mesh's tracer points here") for p in _PROXIES),
    *(Edge(p, "otel-collector", 4317, "gRPC (OTLP)", "spans and access logs, when a Telemetry provider points here")
      for p in _PROXIES),
    Edge("otel-collector", "jaeger", 4317, "gRPC (OTLP)", "forwarded spans"),
    Edge("otel-collector", "loki", 3100, "HTTP", "forwarded access logs"),
    Edge("kiali", "prometheus", 9090, "HTTP", "metrics for the service graph"),
    Edge("kiali", "istiod", 15014, "HTTP", "proxy sync status and config (debug endpoints)"),
    Edge("kiali", "kube-apiserver", 443, "HTTPS", "reads Istio config and workloads"),
    Edge("kiali", "jaeger", 16685, "gRPC", "traces shown beside the graph"),
    Edge("kiali", "grafana", 3000, "HTTP", "links to dashboards"),
    Edge("grafana", "prometheus", 9090, "HTTP", "dashboard queries"),
    Edge("grafana", "loki", 3100, "HTTP", "log queries"),
)

# ---------------------------------------------------------------- recognition

# Addons by the image repository's last segment (the part a rename of the Deployment does not touch).
_ADDON_IMAGES = {
    "kiali": "kiali",
    "kiali-operator": "kiali",
    "prometheus": "prometheus",
    "grafana": "grafana",
    "all-in-one": "jaeger",
    "jaeger": "jaeger",
    "jaeger-all-in-one": "jaeger",
    "zipkin": "zipkin",
    "zipkin-slim": "zipkin",
    "loki": "loki",
    "opentelemetry-collector": "otel-collector",
    "opentelemetry-collector-contrib": "otel-collector",
    "otelcol": "otel-collector",
    "otelcol-contrib": "otel-collector",
}

PROXY_CONTAINER = "istio-proxy"


def proxy_mode(c: Container) -> str | None:
    """`sidecar`, `router`, `waypoint` or `ztunnel` for a proxy started as `proxy <mode>`, else None."""
    argv = c.command + c.args
    for i, a in enumerate(argv[:-1]):
        if a == "proxy":
            return argv[i + 1]
    return None


def find_sidecar(spec: PodSpecSummary) -> Container | None:
    """The istio-proxy sidecar: a native sidecar init container (restartPolicy Always) or a classic container."""
    for c in spec.init_containers:
        if c.name == PROXY_CONTAINER and c.restart_always and proxy_mode(c) in (None, "sidecar"):
            return c
    for c in spec.containers:
        if c.name == PROXY_CONTAINER and proxy_mode(c) in (None, "sidecar") and c.image_name != "ztunnel":
            # Without args, only an injected pod (status annotation) is a sidecar; a bare istio-proxy is a gateway.
            if proxy_mode(c) == "sidecar" or "sidecar.istio.io/status" in spec.annotations:
                return c
    return None


def recognise(spec: PodSpecSummary) -> tuple[str, str] | None:
    """(component id, how it was recognised) for an Istio component, or None for an ordinary workload."""
    for c in spec.containers:
        name = c.image_name
        mode = proxy_mode(c)
        if name == "pilot" or (c.args[:1] == ("discovery",)):
            return "istiod", f"container {c.name} runs pilot-discovery ({c.image})"
        if name == "ztunnel" or mode == "ztunnel":
            return "ztunnel", f"container {c.name} runs ztunnel ({c.image})"
        if name == "install-cni" or c.name == "install-cni":
            return "istio-cni", f"container {c.name} runs the Istio CNI node agent ({c.image})"
        if mode == "waypoint" or (mode == "router" and _is_waypoint(spec)):
            return "waypoint", f"container {c.name} runs Envoy as a waypoint proxy"
        if mode == "router":
            return _gateway_kind(spec), f"container {c.name} runs Envoy as a standalone gateway (proxy router)"
        if c.name == PROXY_CONTAINER and mode is None and _gateway_template(spec):
            # A gateway Deployment before injection (image `auto`): the injector will make it `proxy router`.
            return _gateway_kind(spec), f"container {c.name} is injected with the gateway template"
    for c in spec.containers:
        addon = _ADDON_IMAGES.get(c.image_name)
        if addon:
            return addon, f"container {c.name} runs {c.image}"
    if find_sidecar(spec) is not None:
        return "sidecar", "the pod carries an istio-proxy sidecar"
    return None


def _is_waypoint(spec: PodSpecSummary) -> bool:
    labels = spec.labels
    return (
        labels.get("gateway.networking.k8s.io/gateway-class-name") == "istio-waypoint"
        or "istio.io/waypoint-for" in labels
    )


def _gateway_template(spec: PodSpecSummary) -> bool:
    if spec.annotations.get("inject.istio.io/templates") == "gateway":
        return True
    labels = spec.labels
    return "gateway.networking.k8s.io/gateway-name" in labels or "istio" in labels


def _gateway_kind(spec: PodSpecSummary) -> str:
    # What a gateway is for is a matter of its configuration (labels set by the install), not of its binary.
    labels = spec.labels
    if labels.get("gateway.networking.k8s.io/gateway-class-name") == "istio-east-west":
        return "east-west-gateway"
    names = ("istio", "app", "app.kubernetes.io/name", "gateway.networking.k8s.io/gateway-name")
    hints = " ".join(v for k, v in labels.items() if k in names).lower()
    if "eastwest" in hints or "east-west" in hints:
        return "east-west-gateway"
    if "egress" in hints:
        return "egress-gateway"
    return "ingress-gateway"
