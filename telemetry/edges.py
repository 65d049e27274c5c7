"""Observed edges: who calls whom, in mutual TLS or plaintext, how often, and the mTLS share over time."""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telemetry.series import (
    EDGE_LABELS,
    EGRESS_CLUSTERS,
    REQUESTS,
    TCP_OPENED,
    UNKNOWN,
    Matchers,
    Rows,
    Telemetry,
    duration_text,
    utc_text,
)

if TYPE_CHECKING:
    pass

# ---------------------------------------------------------------- observed edges


@dataclass(frozen=True)
class Peer:
    """One end of an edge: a workload in a namespace, or unknown (a caller without a sidecar reports nothing)."""

    namespace: str | None
    workload: str | None

    @property
    def known(self) -> bool:
        return self.workload is not None

    def __str__(self) -> str:
        return f"{self.namespace}/{self.workload}" if self.known else "unknown"


def _peer(workload: str, namespace: str) -> Peer:
    if not workload or workload == UNKNOWN:
        return Peer(None, None)
    return Peer(namespace if namespace and namespace != UNKNOWN else None, workload)


@dataclass(frozen=True)
class Edge:
    """Calls from one caller to one destination host, as the proxies counted them in the window."""

    source: Peer
    destination: Peer
    service: str  # destination_service: the host called (a Service's FQDN, a ServiceEntry host, an address)
    protocol: str  # http (istio_requests_total: requests) | tcp (istio_tcp_connections_opened_total: connections)
    security: str  # connection_security_policy: mutual_tls | none | unknown
    reporter: str  # destination | source: whose proxy's count this is
    count: float
    server_errors: float = 0.0  # 5xx responses (http)
    egress: str = ""  # PassthroughCluster | BlackHoleCluster | ServiceEntry when the call leaves the mesh

    @property
    def mtls(self) -> bool:
        return self.security == "mutual_tls"

    @property
    def plaintext(self) -> bool:
        return self.security == "none"

    @property
    def unit(self) -> str:
        return "requests" if self.protocol == "http" else "connections"

    @property
    def caller(self) -> str:
        """The caller as a message names it; an unknown one is said to be outside the mesh."""
        if self.source.known:
            return str(self.source)
        return "an unknown caller outside the mesh (only the destination's sidecar reports it: no source metadata)"

    def to_json(self) -> dict[str, Any]:
        return {"source": str(self.source), "destination": str(self.destination), "service": self.service,
                "protocol": self.protocol, "security": self.security, "mtls": self.mtls, "reporter": self.reporter,
                "count": round(self.count, 1), "unit": self.unit, "server_errors": round(self.server_errors, 1),
                "egress": self.egress or None}


def _egress(service_name: str, host: str, destination: Peer) -> str:
    if service_name in EGRESS_CLUSTERS:
        return service_name
    if not destination.known and host and not re.search(r"\.svc(\.[\w.-]+)?$", host):
        return "ServiceEntry"
    return ""


@dataclass(frozen=True)
class Traffic:
    """The edges observed in one window."""

    source: str  # the telemetry's label
    window: int  # seconds
    end: float  # unix time the window ends at
    edges: tuple[Edge, ...] = field(default=())

    @property
    def window_text(self) -> str:
        return f"the {duration_text(self.window)} to {utc_text(self.end)} ({self.source})"

    def into(self, namespaces: Iterable[str] | None) -> list[Edge]:
        """Edges whose destination workload is in the namespaces (every in-mesh destination for None)."""
        wanted = set(namespaces) if namespaces is not None else None
        return [e for e in self.edges if e.destination.known and (wanted is None or e.destination.namespace in wanted)]

    def leaving(self) -> list[Edge]:
        return [e for e in self.edges if e.egress]

    def of_workload(self, namespace: str, name: str) -> list[Edge]:
        me = Peer(namespace, name)
        return [e for e in self.edges if me in (e.source, e.destination)]

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "window": duration_text(self.window), "end": utc_text(self.end),
                "edges": [e.to_json() for e in self.edges]}


def read_traffic(tel: Telemetry, window: int, end: float | None = None, match: Matchers | None = None) -> Traffic:
    """Who called whom in the window: one Edge per caller, destination, host, protocol and security policy.

    Both proxies of a call report it; the destination's count is kept (it alone sees callers without a sidecar,
    and what it accepted), the caller's only for destinations that report nothing: hosts outside the mesh and
    pods without a sidecar."""
    end = tel.now() if end is None else end
    start = end - window
    match = match or {}
    # The caller's reports are asked for only where it has no metadata of the destination (outside the mesh, or
    # no sidecar there): every other call is the destination's report again, and would double the rows.
    rows: dict[str, Rows] = {}
    for protocol, metric, by in (("http", REQUESTS, (*EDGE_LABELS, "response_code")), ("tcp", TCP_OPENED, EDGE_LABELS)):
        rows[protocol] = (tel.increase(metric, by, start, end, {**match, "reporter": "destination"})
                          + tel.increase(metric, by, start, end, {**match, "reporter": "source",
                                                                  "destination_workload": UNKNOWN}))
    # Keyed by the labels' own strings (cheap to hash and sort: 100,000 rows for 10,000 workloads); a Peer is made
    # once per workload.
    reported = {(lb.get("source_workload", ""), lb.get("source_workload_namespace", ""),
                 lb.get("destination_service", "")) for group in rows.values() for lb, _ in group
                if lb.get("reporter") == "destination"}
    totals: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for protocol, group in rows.items():
        for lb, value in group:
            if value <= 0:
                continue
            src = (lb.get("source_workload", ""), lb.get("source_workload_namespace", ""))
            host, reporter = lb.get("destination_service", ""), lb.get("reporter", "")
            if reporter != "destination" and (*src, host) in reported:
                continue
            key = (*src, lb.get("destination_workload", ""), lb.get("destination_workload_namespace", ""), host,
                   protocol, lb.get("connection_security_policy") or UNKNOWN, reporter,
                   lb.get("destination_service_name", ""))
            totals[key][0] += value
            if lb.get("response_code", "").startswith("5"):
                totals[key][1] += value
    peers: dict[tuple[str, str], Peer] = {}

    def peer(workload: str, namespace: str) -> Peer:
        found = peers.get((workload, namespace))
        if found is None:
            found = peers[(workload, namespace)] = _peer(workload, namespace)
        return found

    edges = []
    for (sw, sn, dw, dn, host, protocol, sec, reporter, name), (count, errors) in sorted(totals.items()):
        dst = peer(dw, dn)
        edges.append(Edge(peer(sw, sn), dst, host, protocol, sec, reporter, count, errors, _egress(name, host, dst)))
    return Traffic(tel.label, window, end, tuple(edges))


def count_text(n: float) -> str:
    return f"{n:,.0f}" if n >= 10 else f"{n:.1f}".rstrip("0").rstrip(".")


# ---------------------------------------------------------------- mutual TLS over time


@dataclass(frozen=True)
class SharePoint:
    """The requests the mesh's sidecars served in one step ending at `at`, and how many came in mutual TLS."""

    at: float
    requests: float
    mtls_requests: float

    @property
    def share(self) -> float:
        return 100.0 * self.mtls_requests / self.requests


def mtls_share_over_time(tel: Telemetry, span: int = 6 * 3600, step: int = 600) -> list[SharePoint]:
    """The share of requests in mutual TLS, step by step over the `span` to the telemetry's now, as the
    destinations' sidecars counted them (a pod without a sidecar counts nothing); steps without requests are left
    out."""
    end = tel.now()
    steps = tel.increase_steps(REQUESTS, ("connection_security_policy",), end - span, end, step,
                               {"reporter": "destination"})
    points = [SharePoint(at, sum(v for _, v in rows),
                         sum(v for lb, v in rows if lb.get("connection_security_policy") == "mutual_tls"))
              for at, rows in steps]
    return [p for p in points if p.requests > 0]
