"""Traffic evidence: what Istio's own telemetry shows — who calls whom, in mutual TLS or plaintext, how well.

Two sources of the same series (the standard metrics every Istio proxy exports):
- Prometheus's HTTP API (`--prometheus URL`; for a live cluster without a URL, the Prometheus addon the inventory
  finds, reached through the Kubernetes API's service proxy). Every query is a `sum by (…)` of `increase()` over a
  window, evaluated on the server: meshstep never pulls raw series.
- An OpenMetrics / Prometheus text file of those series (`--telemetry FILE`, the bundled demo's), parsed with
  prometheus_client's parser and summed the same way here.

Both answer one question, `increase(metric, by, start, end, match)`; edges, gates and verification are built on
it once."""
from __future__ import annotations

import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from cluster.errors import MeshstepError
from cluster.sources import DEMO_DIR

if TYPE_CHECKING:
    from cluster.inventory import Inventory

DEMO_METRICS = DEMO_DIR / "telemetry.om"
DEFAULT_WINDOW = "1h"
DEFAULT_TIMEOUT = 10.0  # seconds: a slow or silent Prometheus is named within this, never waited on

REQUESTS = "istio_requests_total"
TCP_OPENED = "istio_tcp_connections_opened_total"
DURATION_BUCKET = "istio_request_duration_milliseconds_bucket"
UNKNOWN = "unknown"  # what Istio's proxies write for a peer they have no metadata of
# Istio's metric labels of a caller and a callee; connection_security_policy is mutual_tls, none or unknown.
EDGE_LABELS = ("reporter", "source_workload", "source_workload_namespace", "destination_workload",
               "destination_workload_namespace", "destination_service", "destination_service_name",
               "connection_security_policy")
EGRESS_CLUSTERS = ("PassthroughCluster", "BlackHoleCluster")

Matchers = dict[str, str]  # label → anchored regular expression, as PromQL's =~
Rows = list[tuple[dict[str, str], float]]  # the label set of each group and its summed increase


class TelemetryError(MeshstepError):
    """Prometheus or the metrics file could not answer; the message names it and what to check."""


# ---------------------------------------------------------------- windows


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def window_seconds(text: str, zero: bool = False) -> int:
    """A Prometheus duration (`90s`, `10m`, `1h`, `7d`) in seconds; 0 only where `zero` allows it."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text or "")
    if not m or (int(m.group(1)) == 0 and not zero):
        raise MeshstepError(f"window {text!r}: write a duration as Prometheus does, e.g. 10m, 1h or 7d")
    return int(m.group(1)) * _UNITS[m.group(2)]


def duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


# ---------------------------------------------------------------- sources


class Telemetry(Protocol):
    label: str  # where the series come from, as messages name it

    def increase(self, metric: str, by: tuple[str, ...], start: float, end: float, match: Matchers) -> Rows:
        """`sum by (by) (increase(metric{match}[end-start]))` at `end`."""

    def reaches(self, end: float) -> bool:
        """Whether the series cover time `end` (a file stops where it was taken)."""

    def now(self) -> float:
        """The time a window ending "now" ends at."""

    def increase_steps(self, metric: str, by: tuple[str, ...], start: float, end: float, step: int,
                       match: Matchers) -> list[tuple[float, Rows]]:
        """`increase` over each step from `start` to `end`, as (the step's end, its rows), oldest first."""


def _promql_matchers(match: Matchers) -> str:
    return ",".join(f'{k}=~"{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                    for k, v in sorted(match.items()))


class Prometheus:
    """Prometheus's HTTP API, `/api/v1/query`, through a transport (plain HTTP, or the Kubernetes service proxy)."""

    def __init__(self, transport: _Transport):
        self.transport = transport
        self.label = transport.label

    def query(self, promql: str, at: float) -> list[dict[str, Any]]:
        body = self.transport.get("/api/v1/query", {"query": promql, "time": f"{at:.3f}",
                                                    "timeout": f"{int(self.transport.timeout)}s"})
        return self._answer(body, "vector")

    def _answer(self, body: bytes, kind: str) -> list[dict[str, Any]]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise TelemetryError(f"{self.label} did not answer as Prometheus's API does ({body[:80]!r}): is this "
                                 "the Prometheus URL (http://host:9090)?") from e
        if data.get("status") != "success":
            raise TelemetryError(f"{self.label} refused the query: {data.get('error', data)}")
        if data["data"]["resultType"] != kind:
            raise TelemetryError(f"{self.label} answered a {data['data']['resultType']}, not a {kind}")
        return data["data"]["result"]

    def increase(self, metric: str, by: tuple[str, ...], start: float, end: float, match: Matchers) -> Rows:
        promql = (f"sum by ({','.join(by)}) (increase({metric}{{{_promql_matchers(match)}}}"
                  f"[{duration_text(end - start)}]))")
        return [(r["metric"], float(r["value"][1])) for r in self.query(promql, end)
                if not math.isnan(float(r["value"][1]))]

    def increase_steps(self, metric: str, by: tuple[str, ...], start: float, end: float, step: int,
                       match: Matchers) -> list[tuple[float, Rows]]:
        """The increase over each `step` from `start` to `end`: one range query (`/api/v1/query_range`)."""
        promql = f"sum by ({','.join(by)}) (increase({metric}{{{_promql_matchers(match)}}}[{duration_text(step)}]))"
        body = self.transport.get("/api/v1/query_range", {"query": promql, "start": f"{start:.3f}",
                                                          "end": f"{end:.3f}", "step": str(step),
                                                          "timeout": f"{int(self.transport.timeout)}s"})
        data = self._answer(body, "matrix")
        at: dict[float, Rows] = defaultdict(list)
        for r in data:
            for t, v in r["values"]:
                if not math.isnan(float(v)):
                    at[float(t)].append((r["metric"], float(v)))
        return sorted(at.items(), key=lambda item: item[0])

    def reaches(self, end: float) -> bool:
        return end <= self.now()

    def now(self) -> float:
        return datetime.now(UTC).timestamp()


class _Transport(Protocol):
    label: str
    timeout: float

    def get(self, path: str, params: dict[str, str]) -> bytes: ...


def _api_error(body: bytes) -> str:
    try:
        return orjson.loads(body).get("error") or body[:200].decode(errors="replace")
    except (orjson.JSONDecodeError, AttributeError):
        return body[:200].decode(errors="replace")


@dataclass
class HTTPTransport:
    """Plain HTTP with a timeout on every request."""

    url: str
    timeout: float = DEFAULT_TIMEOUT
    label: str = ""

    def __post_init__(self) -> None:
        if not re.match(r"https?://", self.url):
            raise TelemetryError(f"--prometheus {self.url!r}: give Prometheus's URL, e.g. http://prometheus:9090")
        self.label = self.label or f"Prometheus at {self.url}"

    def get(self, path: str, params: dict[str, str]) -> bytes:
        url = f"{self.url.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as e:
            raise TelemetryError(f"{self.label} answered HTTP {e.code}: {_api_error(e.read())}") from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, TimeoutError):
                raise TelemetryError(f"{self.label} did not answer within {self.timeout:g} s: check that it is up "
                                     "and not overloaded, or narrow --window") from e
            raise TelemetryError(f"{self.label} cannot be reached ({reason}): check --prometheus / "
                                 "MESHSTEP_PROMETHEUS_URL") from e


@dataclass
class KubeProxyTransport:
    """The Prometheus addon's Service, through the Kubernetes API server's service proxy (kubectl's credentials)."""

    api_client: Any
    namespace: str
    service: str
    port: int
    timeout: float = DEFAULT_TIMEOUT
    label: str = ""

    def __post_init__(self) -> None:
        self.label = self.label or (f"Prometheus service {self.namespace}/{self.service}:{self.port} (through the "
                                    "Kubernetes API's service proxy)")

    def get(self, path: str, params: dict[str, str]) -> bytes:
        from urllib3.exceptions import HTTPError

        proxy = f"/api/v1/namespaces/{self.namespace}/services/{self.service}:{self.port}/proxy{path}"
        try:  # as cluster.sources reads: the client's auth and connection pool, the body unparsed
            method, url, headers, _body, _post = self.api_client.param_serialize(
                "GET", proxy, query_params=list(params.items()), header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"])
            resp = self.api_client.call_api(method, url, header_params=headers, _request_timeout=self.timeout)
            data = resp.read()
        except (HTTPError, OSError) as e:
            raise TelemetryError(f"{self.label} cannot be reached or did not answer within {self.timeout:g} s "
                                 f"({e}): give --prometheus URL to reach it another way") from e
        if not 200 <= resp.status < 300:
            raise TelemetryError(f"{self.label} answered HTTP {resp.status}: {_api_error(data or b'')} (give "
                                 "--prometheus URL to reach it another way)")
        return data


@dataclass(frozen=True)
class _Series:
    labels: tuple[tuple[str, str], ...]
    points: tuple[tuple[float, float], ...]  # (timestamp, value), oldest first; timestamp nan when the file has none


class MetricsFile:
    """An OpenMetrics (or Prometheus text) file of Istio's series, as `promtool tsdb create-blocks-from openmetrics`
    takes it. With timestamps, windows are read as Prometheus would; without, each value is the count since the
    proxy started, and the file says nothing of time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.label = f"metrics file {self.path}"
        try:
            text = self.path.read_text()
        except OSError as e:
            raise TelemetryError(f"--telemetry {self.path}: {e.strerror or e}") from e
        self.series = self._parse(text)
        stamps = [t for s in self.series.values() for ss in s for t, _ in ss.points if not math.isnan(t)]
        self.last = max(stamps) if stamps else None
        if self.last is None:
            self.label += " (no timestamps: counts since each proxy started)"

    def _parse(self, text: str) -> dict[str, list[_Series]]:
        if text.rstrip().endswith("# EOF"):
            from prometheus_client.openmetrics.parser import text_string_to_metric_families
        else:
            from prometheus_client.parser import text_string_to_metric_families
        points: dict[str, dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]] = defaultdict(
            lambda: defaultdict(list))
        try:
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    if s.name in (REQUESTS, TCP_OPENED, DURATION_BUCKET):
                        ts = float(s.timestamp) if s.timestamp is not None else math.nan
                        points[s.name][tuple(sorted(s.labels.items()))].append((ts, float(s.value)))
        except ValueError as e:
            raise TelemetryError(f"--telemetry {self.path}: not OpenMetrics or Prometheus text ({e}); write it "
                                 "as Prometheus's /federate or promtool's openmetrics input") from e
        return {name: [_Series(k, tuple(sorted(v))) for k, v in by.items()] for name, by in points.items()}

    def increase(self, metric: str, by: tuple[str, ...], start: float, end: float, match: Matchers) -> Rows:
        patterns = {k: re.compile(v) for k, v in match.items()}
        sums: dict[tuple[str, ...], float] = defaultdict(float)
        for s in self.series.get(metric, ()):
            labels = dict(s.labels)
            if all(p.fullmatch(labels.get(k, "")) for k, p in patterns.items()):
                value = _counter_increase(s.points, start, end)
                if value is not None:
                    sums[tuple(labels.get(k, "") for k in by)] += value
        return [(dict(zip(by, key)), v) for key, v in sums.items()]

    def increase_steps(self, metric: str, by: tuple[str, ...], start: float, end: float, step: int,
                       match: Matchers) -> list[tuple[float, Rows]]:
        """The increase between each two of the file's own sample times in [start, end] (`step` is Prometheus's
        resolution; a file has the one it was written at); without timestamps, one point: the counts so far."""
        if self.last is None:
            return [(self.now(), self.increase(metric, by, start, end, match))]
        stamps = sorted({t for s in self.series.get(metric, ()) for t, _ in s.points if start <= t <= end})
        if len(stamps) == 1:  # one reading: the counts from each series' start to it
            return [(stamps[0], self.increase(metric, by, -math.inf, stamps[0], match))]
        return [(b, self.increase(metric, by, a, b, match)) for a, b in zip(stamps, stamps[1:])]

    def reaches(self, end: float) -> bool:
        return self.last is not None and end <= self.last

    def now(self) -> float:
        # A file is a reading taken at its last sample: "the last hour" is the hour before it.
        return self.last if self.last is not None else datetime.now(UTC).timestamp()


def _counter_increase(points: tuple[tuple[float, float], ...], start: float, end: float) -> float | None:
    """How much a counter grew in (start, end]; a series first seen inside the window counts from zero (Istio
    creates it on its first request), and a drop is a proxy restart."""
    if points and math.isnan(points[0][0]):
        return points[-1][1]  # no timestamps: the count since the proxy started
    inside = [v for t, v in points if start < t <= end]
    if not inside:
        return None
    before = [v for t, v in points if t <= start]
    total, prev = 0.0, before[-1] if before else 0.0
    for v in inside:
        total += v - prev if v >= prev else v
        prev = v
    return total


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
        from cluster.sources import _api_client

        context = inv.source.split(":", 1)[1] if inv.source.startswith("context:") else None
        return Prometheus(KubeProxyTransport(_api_client(context), *found, timeout=timeout)), ""
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
        return f"the {duration_text(self.window)} to {_utc(self.end)} ({self.source})"

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
        return {"source": self.source, "window": duration_text(self.window), "end": _utc(self.end),
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


# ---------------------------------------------------------------- verification of a stage


@dataclass(frozen=True)
class Thresholds:
    """What counts as a regression after a stage; defaults below, each settable for a plan (`plan new --verify
    k=v`) and for one verification (`plan advance --verify k=v`)."""

    window: int = 600  # seconds compared before and after the stage
    settle: int = 60  # seconds after `applied` left out while proxies take the new config
    min_requests: int = 100  # fewer in either window: too little traffic to judge
    max_success_drop: float = 1.0  # percentage points the success rate (non-5xx share) may fall
    max_p99_increase: float = 25.0  # percent the p99 latency may rise …
    min_p99_increase_ms: float = 10.0  # … and by at least this many milliseconds (noise on fast services)
    min_mtls_share: float = 99.0  # percent of requests in mutual TLS after a STRICT stage

    @classmethod
    def values(cls, items: Iterable[str]) -> dict[str, Any]:
        """The values `key=value` items set, checked; windows take durations (10m), the rest numbers."""
        values: dict[str, Any] = {}
        names = cls.__dataclass_fields__
        for item in items:
            key, sep, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in names:
                raise MeshstepError(f"--verify {item!r}: expected key=value with key one of {', '.join(names)}")
            if key in ("window", "settle"):
                values[key] = window_seconds(value, zero=key == "settle")
                continue
            try:
                values[key] = type(getattr(cls, key))(value)
            except ValueError as e:
                raise MeshstepError(f"--verify {item!r}: {value!r} is not a number") from e
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> Thresholds:
        """The defaults with `values` (as values() gives them, as a plan keeps them)."""
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})

    def text(self, keys: Iterable[str] | None = None) -> str:
        """`key=value` of each threshold (or of `keys`), as `--verify` takes them."""
        return ", ".join(f"{k}={duration_text(v) if k in ('window', 'settle') else v}"
                         for k, v in self.__dict__.items() if keys is None or k in keys)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Figures:
    """One window's figures for the affected workloads (as their own sidecars counted the requests they served)."""

    start: float
    end: float
    requests: float
    server_errors: float
    p99_ms: float | None
    mtls_requests: float

    @property
    def success_rate(self) -> float | None:
        return 100.0 * (1 - self.server_errors / self.requests) if self.requests else None

    @property
    def mtls_share(self) -> float | None:
        return 100.0 * self.mtls_requests / self.requests if self.requests else None

    def text(self) -> str:
        p99 = f"{self.p99_ms:.0f} ms" if self.p99_ms is not None else "n/a"
        sr = f"{self.success_rate:.2f}%" if self.success_rate is not None else "n/a"
        share = f"{self.mtls_share:.1f}%" if self.mtls_share is not None else "n/a"
        return (f"{_utc(self.start)}–{_utc(self.end)[11:]}: {count_text(self.requests)} requests, success "
                f"{sr}, p99 {p99}, mTLS {share}")

    def to_json(self) -> dict[str, Any]:
        return {"start": _utc(self.start), "end": _utc(self.end), "requests": round(self.requests, 1),
                "success_rate": self.success_rate, "p99_ms": self.p99_ms, "mtls_share": self.mtls_share}


@dataclass(frozen=True)
class Verification:
    """passed | regressed (a threshold crossed) | insufficient (too little traffic, or the window not over yet) |
    unavailable (no telemetry for the stage's time)."""

    status: str
    lines: tuple[str, ...]
    before: Figures | None = None
    after: Figures | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def blocks(self, override_reason: str | None) -> bool:
        """A regression always stops `verified`; too little traffic does unless a reason to go on is given."""
        return self.status == "regressed" or (self.status == "insufficient" and not override_reason)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "lines": list(self.lines),
                "before": self.before.to_json() if self.before else None,
                "after": self.after.to_json() if self.after else None, "thresholds": self.thresholds.to_json()}


def p99(buckets: Rows, q: float = 0.99) -> float | None:
    """The quantile of summed histogram buckets (by `le`), interpolated inside its bucket as histogram_quantile
    does."""
    bounds = sorted((float(lb["le"]), v) for lb, v in buckets if lb.get("le"))
    if not bounds or bounds[-1][1] <= 0:
        return None
    rank = q * bounds[-1][1]
    lower, below = 0.0, 0.0
    for le, cumulative in bounds:
        if cumulative >= rank:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * (rank - below) / max(cumulative - below, 1e-12)
        lower, below = le, cumulative
    return lower


def figures(tel: Telemetry, match: Matchers, start: float, end: float) -> Figures:
    match = {"reporter": "destination", **match}
    rows = tel.increase(REQUESTS, ("response_code", "connection_security_policy"), start, end, match)
    total = sum(v for _, v in rows)
    errors = sum(v for lb, v in rows if lb.get("response_code", "").startswith("5"))
    mtls = sum(v for lb, v in rows if lb.get("connection_security_policy") == "mutual_tls")
    return Figures(start, end, total, errors, p99(tel.increase(DURATION_BUCKET, ("le",), start, end, match)), mtls)


def verify(tel: Telemetry, namespaces: list[str] | None, applied_at: float, mtls_mode: str | None = None,
           thresholds: Thresholds | None = None, now: float | None = None) -> Verification:
    """Compare the requests the affected workloads served in a window before `applied_at` and one after it."""
    t = thresholds or Thresholds()
    now = tel.now() if now is None else now
    after_start = applied_at + t.settle
    after_end = after_start + t.window
    where = "mesh-wide" if namespaces is None else "in " + ", ".join(namespaces)
    if not tel.reaches(after_end):
        if isinstance(tel, MetricsFile):
            return Verification("unavailable", (f"{tel.label} ends at {_utc(tel.now())}, before the window after "
                                                f"the stage ({_utc(after_start)}–{_utc(after_end)[11:]}): traffic "
                                                "not compared",), thresholds=t)
        return Verification("insufficient", (f"the window after the stage ends at {_utc(after_end)} "
                                              f"({duration_text(t.settle)} to settle, then {duration_text(t.window)}"
                                              f"): verify again after it",), thresholds=t)
    match = {"destination_workload_namespace": "|".join(re.escape(n) for n in namespaces)} if namespaces else {}
    before = figures(tel, match, applied_at - t.window, applied_at)
    after = figures(tel, match, after_start, after_end)
    head = (f"traffic {where} (requests the workloads' sidecars served, {tel.label}):",
            f"  before: {before.text()}", f"  after:  {after.text()}")
    low = [f"{name} window has {count_text(f.requests)} requests" for name, f in (("the before", before),
                                                                                   ("the after", after))
           if f.requests < t.min_requests]
    if low:
        return Verification("insufficient", (*head, f"too little traffic to judge: {' and '.join(low)} (at least "
                                             f"{t.min_requests} needed; --verify min_requests=N)",
                                             "  → advance again once the workloads have served traffic, or go on "
                                             "with --override-reason"), before, after, t)
    problems = []
    drop = before.success_rate - after.success_rate
    if drop > t.max_success_drop:
        problems.append(f"success rate fell {drop:.2f} points ({before.success_rate:.2f}% → "
                        f"{after.success_rate:.2f}%; at most {t.max_success_drop:g} allowed): "
                        f"{count_text(after.server_errors)} 5xx after, {count_text(before.server_errors)} before")
    if before.p99_ms is not None and after.p99_ms is not None:
        rise = after.p99_ms - before.p99_ms
        if rise > t.min_p99_increase_ms and rise > before.p99_ms * t.max_p99_increase / 100:
            problems.append(f"p99 latency rose {rise:.0f} ms ({before.p99_ms:.0f} → {after.p99_ms:.0f} ms; at most "
                            f"+{t.max_p99_increase:g}% allowed)")
    if mtls_mode == "STRICT" and after.mtls_share < t.min_mtls_share:
        problems.append(f"only {after.mtls_share:.1f}% of requests were mutual TLS after STRICT (at least "
                        f"{t.min_mtls_share:g}% expected)")
    if mtls_mode == "PERMISSIVE" and after.mtls_share + 1e-9 < before.mtls_share - t.max_success_drop:
        problems.append(f"the mutual-TLS share fell ({before.mtls_share:.1f}% → {after.mtls_share:.1f}%)")
    if problems:
        return Verification("regressed", (*head, *(f"  ✗ {p}" for p in problems),
                                          "  → find the cause, or roll the stage back: meshstep plan rollback "
                                          "--reason \"…\""), before, after, t)
    return Verification("passed", (*head, "  ✓ no regression beyond the thresholds"), before, after, t)


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
               thresholds: Thresholds | None = None) -> Verification:
        """A stage's verification: the requests its scopes served before `applied_at` and after (mesh: all), judged
        by `thresholds` (a plan's; default the defaults) with the ones the command sets on top."""
        t = replace(thresholds or Thresholds(), **self.verify_values)
        if self.telemetry is None:
            return Verification("unavailable", (self.missing.replace("traffic not checked", "traffic not compared"),),
                                thresholds=t)
        steps = list(steps)
        scopes = {scope for _, scope in steps}
        features = {f for f, _ in steps}
        mode = "STRICT" if "mtls-strict" in features else "PERMISSIVE" if "mtls-permissive" in features else None
        at = applied_at if applied_at.tzinfo else applied_at.replace(tzinfo=UTC)  # SQLite keeps UTC, naive
        return verify(self.telemetry, None if not scopes or "mesh" in scopes else sorted(scopes), at.timestamp(),
                      mode, t)


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
