"""Live traffic for bakes: an exporter on loopback serving Istio's request counters (and, for authorization in
shadow, the proxies' dry-run RBAC counters) as a workload's sidecar would — or, in ambient mode, as its waypoint
(reporter="waypoint") and its node's ztunnel (TCP connections, app="ztunnel", response_flags DENY on those a policy
refused) would — whose answers follow the emulated cluster's objects (a route applied can start failing requests, a
namespace labelled ambient is carried by ztunnel), scraped every second by a real Prometheus (Debian's
`prometheus`, an empty TSDB). The bake then reads the traffic before and after the apply as it would in
production."""
from __future__ import annotations

import os
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benchmarks.istio_metrics import binaries, free_port


@dataclass
class Workload:
    """One workload's inbound requests: `rate` per second, the share `failing()` says failing with 503, and the
    requests its dry-run authorization policies would deny (`denied()`, a share). Who reports them: its sidecar while
    `sidecar()`, a waypoint while `waypoint()` (then the failures are the waypoint's, never reaching the sidecar);
    while `ztunnel()`, its node's ztunnel accepts one HBONE connection
    per ten requests, and closes DENY `refused()` connections a second from legacy's billing job."""

    namespace: str
    name: str
    rate: float
    failing: Callable[[], float] = lambda: 0.0
    denied: Callable[[], float] = lambda: 0.0
    sidecar: Callable[[], bool] = lambda: True
    waypoint: Callable[[], bool] = lambda: False
    ztunnel: Callable[[], bool] = lambda: False
    refused: Callable[[], float] = lambda: 0.0
    counts: dict[str, float] = field(default_factory=lambda: {"shadow_denied": 0.0})
    reported: dict[tuple[str, str], float] = field(default_factory=dict)  # (reporter, code) → requests counted
    connections: dict[tuple[str, str], float] = field(default_factory=dict)  # (caller, response_flags) → closed

    def requests(self, served: float, failing: float) -> list[str]:
        """The request counters of whoever reports this workload's requests now."""
        lines = []
        # A waypoint in the path fails requests itself: those never reach the sidecar behind it.
        behind = self.waypoint()
        by = [r for r, on in (("destination", self.sidecar()), ("waypoint", behind)) if on]
        for reporter in by:
            reached = 0.0 if behind and reporter == "destination" else failing
            for code, share in (("200", 1 - failing), ("503", reached)):
                self.reported[reporter, code] = self.reported.get((reporter, code), 0.0) + served * share
        for (reporter, code), n in sorted(self.reported.items()):
            lines.append(
                f'istio_requests_total{{reporter="{reporter}",source_workload="frontend",'
                f'source_workload_namespace="shop",destination_workload="{self.name}",'
                f'destination_workload_namespace="{self.namespace}",destination_service="{self.name}.'
                f'{self.namespace}.svc.cluster.local",destination_service_name="{self.name}",'
                f'connection_security_policy="mutual_tls",response_code="{code}"}} {n:.3f}')
        return lines

    def carried(self, dt: float) -> list[str]:
        """ztunnel's connection counters for this workload (app="ztunnel", reporter="destination")."""
        if self.ztunnel():
            for caller, flags, n in (("shop/frontend", "-", self.rate * dt / 10),
                                     ("legacy/billing", "DENY", self.refused() * dt)):
                self.connections[caller, flags] = self.connections.get((caller, flags), 0.0) + n
        lines = []
        for metric in ("istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total"):
            for (caller, flags), n in sorted(self.connections.items()):
                ns, name = caller.split("/")
                lines.append(
                    f'{metric}{{app="ztunnel",reporter="destination",source_workload="{name}",'
                    f'source_workload_namespace="{ns}",destination_workload="{self.name}",'
                    f'destination_workload_namespace="{self.namespace}",connection_security_policy="mutual_tls",'
                    f'response_flags="{flags if metric.endswith("closed_total") else "-"}"}} {n:.3f}')
        return lines


class Exporter:
    """/metrics in Prometheus' text format, the counters grown since the last scrape as the workloads' state
    says now."""

    def __init__(self, workloads: list[Workload]):
        self.workloads, self.last = workloads, time.time()
        self.lock = threading.Lock()

    def text(self) -> str:
        with self.lock:
            now = time.time()
            dt, self.last = now - self.last, now
            lines = ["# TYPE istio_requests_total counter"]
            for w in self.workloads:
                served = w.rate * dt
                failing = min(1.0, max(0.0, w.failing()))
                w.counts["shadow_denied"] += served * w.denied()
                lines += w.requests(served, failing)
            lines.append("# TYPE istio_tcp_connections_opened_total counter")
            for w in self.workloads:
                lines += w.carried(dt)
            lines.append("# TYPE envoy_http_inbound_0_0_0_0_8080_rbac_istio_dry_run_allow_shadow_denied counter")
            for w in self.workloads:
                lines.append(f'envoy_http_inbound_0_0_0_0_8080_rbac_istio_dry_run_allow_shadow_denied{{'
                             f'namespace="{w.namespace}",pod="{w.name}-0"}} {w.counts["shadow_denied"]:.3f}')
            return "\n".join(lines) + "\n"


@contextmanager
def live_prometheus(tmp: Path, workloads: list[Workload], warm: float = 8.0) -> Iterator[str]:
    """A Prometheus scraping the workloads' exporter every second; its URL once `warm` seconds of samples are in
    (the window before an apply)."""
    if binaries() is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's prometheus is not installed (CI installs it: see .ci/run)")
        pytest.skip("Debian's prometheus is not installed")
    exporter = Exporter(workloads)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = exporter.text().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    config = tmp / "prometheus.yml"
    target = f"127.0.0.1:{server.server_port}"
    config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1h\nscrape_configs:\n"
                      f"  - job_name: sidecars\n    static_configs:\n      - targets: ['{target}']\n")
    log = (tmp / "prometheus.log").open("w")
    process = subprocess.Popen([binaries()[0], f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
                                f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError((tmp / "prometheus.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        time.sleep(warm)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        server.shutdown()
