"""Synthetic Istio telemetry, and a real Prometheus holding it (the tests and benchmarks/telemetry.py share these).

`openmetrics(flows, …)` writes the series Istio's proxies export (istio_requests_total,
istio_tcp_connections_opened_total, istio_request_duration_milliseconds; in ambient mode ztunnel's
istio_tcp_connections_opened/closed_total and waypoints' requests) as OpenMetrics with timestamps;
`PrometheusServer` loads them with `promtool tsdb create-blocks-from openmetrics` and serves them from Debian's
`prometheus` on a free loopback port."""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

BUCKETS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Flow:
    """Calls from one workload (or an unknown caller outside the mesh) to one host, at a steady rate while active."""

    source: tuple[str, str] | None  # (namespace, workload); None: a caller without a sidecar
    destination: tuple[str, str] | None  # None: outside the mesh
    service: str  # destination_service (host)
    rate: float  # requests (http) or connections (tcp) per second
    protocol: str = "http"
    security: str = "mutual_tls"
    code: str = "200"
    latency_ms: float = 20.0
    start: float = 0.0  # unix time it starts (0: from the beginning)
    stop: float = float("inf")  # unix time it stops
    reporters: tuple[str, ...] = ("destination", "source")
    service_name: str | None = None  # destination_service_name (PassthroughCluster …); default the host's first label
    # Who counts the flow: the pods' sidecars, or in ambient mode the node's ztunnel (connections, scraped from its
    # DaemonSet's pods: Istio's Prometheus addon copies their label app=ztunnel) or a waypoint (reporters=
    # ("waypoint",)).
    proxy: str = "sidecar"
    pod: str = ""  # the scraped pod (the addon's `pod` label) of a destination sidecar's series
    flags: str = "-"  # ztunnel's response_flags on the connections it closes: DENY (policy), CONNECT (upstream)

    def labels(self, reporter: str) -> dict[str, str]:
        src_ns, src = self.source or (UNKNOWN, UNKNOWN)
        dst_ns, dst = self.destination or (UNKNOWN, UNKNOWN)
        scraped = ({"app": "ztunnel"} if self.proxy == "ztunnel" else
                   {"pod": self.pod} if self.pod and reporter == "destination" else {})
        return {"reporter": reporter, "source_workload": src, "source_workload_namespace": src_ns,
                "destination_workload": dst, "destination_workload_namespace": dst_ns,
                "destination_service": self.service,
                "destination_service_name": self.service_name or self.service.split(".")[0],
                "connection_security_policy": self.security if reporter != "source" else UNKNOWN,
                **({"response_code": self.code} if self.protocol == "http" else {}), **scraped}

    def series(self, reporter: str, histograms: bool) -> list[tuple[str, tuple[tuple[str, str], ...], bool]]:
        """(metric, labels, whether the flow counts in it) of each series a proxy exports for the flow."""
        base = self.labels(reporter)
        if self.proxy == "ztunnel":  # every connection counted opened, and closed with its response flags
            return [("istio_tcp_connections_opened_total", tuple({**base, "response_flags": "-"}.items()), True),
                    ("istio_tcp_connections_closed_total", tuple({**base, "response_flags": self.flags}.items()),
                     True)]
        name = "istio_requests_total" if self.protocol == "http" else "istio_tcp_connections_opened_total"
        keys = [(name, tuple(base.items()), True)]
        # Every bucket, as a proxy exports them; the requests count from their latency's bucket up.
        if self.protocol == "http" and histograms:
            keys += [("istio_request_duration_milliseconds_bucket", tuple({**base, "le": str(le)}.items()),
                      le == "+Inf" or le >= self.latency_ms) for le in (*BUCKETS, "+Inf")]
            # A bucket below the latency stays zero: it is exported once the series exists.
        return keys


def _labels_text(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def openmetrics(flows: Iterable[Flow], start: float, end: float, step: float = 60.0,
                histograms: bool = True) -> Iterator[str]:
    """OpenMetrics lines for the flows sampled every `step` seconds from `start` to `end`: each series from the
    first request it counts (as a proxy creates it), flat once its flow stops; `histograms=False` leaves out the
    latency buckets (edges and gates do not read them)."""
    flows = list(flows)
    times = [start + i * step for i in range(int((end - start) // step) + 1)]
    # Per series, what each step adds: flows with the same labels (one code before and after a change) add up.
    steps: dict[str, dict[tuple[tuple[str, str], ...], dict[float, float]]] = defaultdict(dict)
    for f in flows:
        added = [(t, f.rate * max(0.0, min(t, f.stop) - max(f.start, t - step))) for t in times[1:]]
        for reporter in (r for r in f.reporters if (f.source if r == "source" else f.destination)):
            for metric, key, counts in f.series(reporter, histograms):
                series = steps[metric].setdefault(key, defaultdict(float))
                for t, n in added:
                    series[t] += n if counts else 0.0
    for metric, series in steps.items():
        # Each series whole, oldest first. The histogram's buckets are written as an untyped family of the same
        # series: prometheus_client's OpenMetrics parser (0.26) keeps only the first timestamp of a histogram's
        # group, and Prometheus stores the `_bucket` series the same either way.
        yield f"# TYPE {metric.removesuffix('_total')} {'counter' if metric.endswith('_total') else 'unknown'}"
        for key, added in series.items():
            text, total = _labels_text(dict(key)), 0.0
            for t in times[1:]:
                total += added.get(t, 0.0)
                if total > 0:
                    yield f"{metric}{{{text}}} {total:.1f} {t:.0f}"
    yield "# EOF"


# The bundled demo cluster's traffic (cluster/demo): the ingress gateway into frontend, the reviews canary taking a
# tenth, legacy-billing (no sidecar) calling orders in plaintext, orders calling payments, payments calling Stripe
# through its ServiceEntry, and frontend calling an exchange-rate API no ServiceEntry registers.
DEMO_END = 1771588800  # 2026-02-20 12:00 UTC, after the demo's objects were created
SHOP = "{}.shop.svc.cluster.local"
DEMO_FLOWS = (
    Flow(("istio-system", "istio-ingressgateway"), ("shop", "frontend"), SHOP.format("frontend"), 20, latency_ms=40),
    Flow(("istio-system", "istio-ingressgateway"), ("shop", "frontend"), SHOP.format("frontend"), 0.05, code="503"),
    Flow(("shop", "frontend"), ("shop", "reviews-v1"), SHOP.format("reviews"), 9),
    Flow(("shop", "frontend"), ("shop", "reviews-v2"), SHOP.format("reviews"), 1, latency_ms=30),
    Flow(("shop", "reviews-v1"), ("shop", "ratings"), SHOP.format("ratings"), 9, latency_ms=5),
    Flow(("shop", "reviews-v2"), ("shop", "ratings"), SHOP.format("ratings"), 1, latency_ms=5),
    Flow(("shop", "frontend"), ("shop", "orders"), SHOP.format("orders"), 5, latency_ms=60),
    Flow(("shop", "orders"), ("shop", "catalog"), SHOP.format("catalog"), 3, latency_ms=10),
    Flow(None, ("shop", "orders"), SHOP.format("orders"), 0.5, security="none", reporters=("destination",)),
    Flow(("shop", "orders"), ("payments", "payments-api"), "payments-api.payments.svc.cluster.local", 2,
         latency_ms=200),
    Flow(("payments", "payments-api"), None, "api.stripe.com", 0.2, protocol="tcp", security="unknown",
         reporters=("source",)),
    Flow(("shop", "frontend"), None, "api.exchangerate.example", 0.3, latency_ms=150,
         service_name="PassthroughCluster", reporters=("source",)),
)


def demo_metrics() -> str:
    """cluster/demo/telemetry.om: the demo's flows over the hour to DEMO_END, every 10 minutes."""
    return "\n".join(openmetrics(DEMO_FLOWS, DEMO_END - 3600, DEMO_END, step=600)) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binaries() -> tuple[str, str] | None:
    """Debian's prometheus and promtool, or None when they are not installed."""
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    return (prom, tool) if prom and tool else None


class PrometheusServer:
    """A real Prometheus on 127.0.0.1, its TSDB filled from an OpenMetrics file by promtool; stopped on exit."""

    def __init__(self, metrics: Path, workdir: Path | None = None):
        self.metrics = metrics
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="meshstep-prom-"))
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.load_seconds = 0.0

    def __enter__(self) -> PrometheusServer:
        found = binaries()
        if found is None:
            raise RuntimeError("prometheus/promtool not installed (apt-get install prometheus)")
        prom, tool = found
        data = self.workdir / "data"
        t0 = time.perf_counter()
        subprocess.run([tool, "tsdb", "create-blocks-from", "openmetrics", str(self.metrics), str(data)],
                       check=True, capture_output=True, timeout=600)
        self.load_seconds = time.perf_counter() - t0
        config = self.workdir / "prometheus.yml"
        config.write_text("global:\n  evaluation_interval: 1h\n")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = (self.workdir / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [prom, f"--config.file={config}", f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=3650d",
             f"--web.listen-address=127.0.0.1:{port}", "--query.timeout=60s"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.workdir / 'prometheus.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError("prometheus did not become ready within 60 s")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


if __name__ == "__main__":
    print(demo_metrics(), end="")
