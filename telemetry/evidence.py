"""What a command is given: the telemetry its options name (or a live cluster's Prometheus addon), the traffic
read once, and edges as rows for the app."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cluster.errors import MeshstepError
from telemetry.ambient import AmbientStage
from telemetry.edges import Edge, Traffic, count_text, read_traffic
from telemetry.metrics_file import MetricsFile
from telemetry.prometheus import HTTPTransport, KubeProxyTransport, Prometheus
from telemetry.series import DEFAULT_TIMEOUT, DEFAULT_WINDOW, DEMO_METRICS, Telemetry, TelemetryError, window_seconds
from telemetry.verification import Thresholds, Verification, verify

if TYPE_CHECKING:
    from cluster.inventory import Inventory

# The features whose stages move a namespace's traffic to ambient mode's proxies (ids of features.ambient_mode,
# features.waypoint, features.ambient_policies): their verification asks who carried it and whom they denied.
AMBIENT_SWITCH = "ambient-mode"
AMBIENT_WAYPOINT = "waypoint"  # puts the waypoint in the namespace's path (istio.io/use-waypoint)
AMBIENT_L7 = (AMBIENT_WAYPOINT, "ambient-policies")

# ---------------------------------------------------------------- opening a source


def open_telemetry(prometheus: str | None, metrics_file: str | None, inv: Inventory | None = None,
                   timeout: float = DEFAULT_TIMEOUT) -> tuple[Telemetry | None, str]:
    """The telemetry for the options given, and, when there is none, why: `--telemetry FILE` (`demo`: the demo
    cluster's), else `--prometheus URL`, else a live cluster's Prometheus addon through the API server."""
    if prometheus and metrics_file:
        raise MeshstepError("give either --prometheus or --telemetry, not both")
    if metrics_file:
        return MetricsFile(DEMO_METRICS if metrics_file == "demo" else metrics_file), ""
    if prometheus:
        return Prometheus(HTTPTransport(prometheus, timeout)), ""
    if inv is not None and live(inv):
        found = prometheus_addon(inv)
        if found is None:
            return None, "no --prometheus URL given and no Prometheus addon found in the cluster"
        from cluster.kubeapi import api_client

        context = inv.source.split(":", 1)[1] if inv.source.startswith("context:") else None
        return Prometheus(KubeProxyTransport(api_client(context)[0], *found, timeout=timeout)), ""
    hint = " (the demo's: --telemetry demo)" if inv is not None and inv.source == "demo" else ""
    return None, f"no telemetry given: traffic not checked (--prometheus URL or --telemetry FILE{hint})"


def live(inv: Inventory) -> bool:
    """Whether the inventory was read from a cluster's API (whose Prometheus addon can be asked)."""
    return inv.source == "live" or inv.source.startswith("context:")


def prometheus_addon(inv: Inventory) -> tuple[str, str, int] | None:
    """The Service (namespace, name, port) in front of the Prometheus pods the inventory recognised."""
    for c in inv.components:
        if c.component != "prometheus":
            continue
        pod = inv.pod(c.namespace, c.name)
        for svc in inv.services_by_namespace.get(c.namespace, ()):
            if pod is not None and svc.selector and all(pod.labels.get(k) == v for k, v in svc.selector.items()):
                port = next((p.port for p in svc.ports if p.port == 9090), svc.ports[0].port if svc.ports else 9090)
                return c.namespace, svc.name, port
    return None


# ---------------------------------------------------------------- what a command is given


@dataclass
class Evidence:
    """What a command knows of traffic: its telemetry (or why it has none), the window, verification thresholds.
    A Prometheus named on the command line that fails is an error; one found in the cluster that fails is
    reported and the command goes on without it."""

    telemetry: Telemetry | None
    missing: str = ""
    window: int = 3600
    verify_values: dict[str, Any] = field(default_factory=dict)  # the thresholds the command sets (Thresholds.values)
    explicit: bool = True
    _traffic: Traffic | None = None

    def traffic(self, needed: bool = True) -> Traffic | None:
        """The edges of the window, read once; None without telemetry, or when not `needed` (no gate of the stage
        reads traffic: then nothing is asked of Prometheus)."""
        if not needed:
            return None
        if self.telemetry is not None and self._traffic is None:
            try:
                self._traffic = read_traffic(self.telemetry, self.window)
            except TelemetryError as e:
                if self.explicit:
                    raise
                self.telemetry, self.missing = None, f"{e}; traffic not checked"
        return self._traffic

    def verify(self, steps: Iterable[tuple[str, str]], applied_at: datetime,
               thresholds: Thresholds | None = None, window: int | None = None) -> Verification:
        """A stage's verification: the requests its scopes served before `applied_at` and after (mesh: all), judged
        by `thresholds` (a plan's; default the defaults) with the ones the command sets on top; `window`: compare
        only that many seconds on each side (a bake's look before its window is over)."""
        t = replace(thresholds or Thresholds(), **self.verify_values)
        t = replace(t, window=window) if window else t
        if self.telemetry is None:
            return Verification("unavailable", (self.missing.replace("traffic not checked", "traffic not compared"),),
                                thresholds=t)
        steps = list(steps)
        scopes = {scope for _, scope in steps}
        features = {f for f, _ in steps}
        mode = "STRICT" if "mtls-strict" in features else "PERMISSIVE" if "mtls-permissive" in features else None
        at = applied_at if applied_at.tzinfo else applied_at.replace(tzinfo=UTC)  # SQLite keeps UTC, naive
        return verify(self.telemetry, None if not scopes or "mesh" in scopes else sorted(scopes), at.timestamp(),
                      mode, t, ambient=ambient_stage(steps))


def ambient_stage(steps: Iterable[tuple[str, str]]) -> AmbientStage | None:
    """What a stage's steps do to ambient mode: the namespaces they switch (ambient-mode) or hand to a waypoint (the
    waypoint, and the policies moved onto it); None for a stage that does neither."""
    steps = list(steps)
    namespaces = sorted({scope for f, scope in steps if f in (AMBIENT_SWITCH, *AMBIENT_L7) and scope != "mesh"})
    if not namespaces:
        return None
    features = {f for f, _ in steps}
    return AmbientStage(tuple(namespaces), AMBIENT_SWITCH in features, AMBIENT_WAYPOINT in features)


def evidence(prometheus: str | None, metrics_file: str | None, inv: Inventory | None, window: str = DEFAULT_WINDOW,
             verify_items: Iterable[str] = ()) -> Evidence:
    tel, missing = open_telemetry(prometheus, metrics_file, inv)
    return Evidence(tel, missing, window_seconds(window), Thresholds.values(verify_items),
                    explicit=bool(prometheus or metrics_file))


# ---------------------------------------------------------------- shown


def workload_of(inv: Inventory, ref: Any) -> tuple[str, str] | None:
    """The (namespace, workload) Istio's metrics name a pod or workload by: its controller's name."""
    if ref.kind == "Pod":
        pod = inv.pod(ref.namespace, ref.name)
        return (pod.namespace, pod.workload_name) if pod is not None else None
    return (ref.namespace, ref.name) if ref.namespace else None


def edge_row(e: Edge) -> dict[str, Any]:
    """An edge as the CLI's tables show it: mTLS or plaintext said per edge."""
    security = f"leaves the mesh ({e.egress})" if e.egress else {"mutual_tls": "mTLS", "none": "PLAINTEXT"}.get(
        e.security, f"{e.security} (reported by the caller)")
    return {"source": str(e.source) if e.source.known else "unknown (outside the mesh)", "destination": e.service,
            "workload": str(e.destination) if e.destination.known else "-", "protocol": e.protocol,
            "count": f"{count_text(e.count)} {e.unit}", "5xx": count_text(e.server_errors) if e.server_errors else "",
            "security": security}
