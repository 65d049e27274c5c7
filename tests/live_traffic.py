"""Live traffic for bakes: an exporter on loopback serving Istio's request counters (and, for authorization in
shadow, the proxies' dry-run RBAC counters) as a workload's sidecar would, whose answers follow the emulated
cluster's objects (a route applied can start failing requests), scraped every second by a real Prometheus
(Debian's `prometheus`, an empty TSDB). The bake then reads the traffic before and after the apply as it would in
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
    requests its dry-run authorization policies would deny (`denied()`, a share)."""

    namespace: str
    name: str
    rate: float
    failing: Callable[[], float] = lambda: 0.0
    denied: Callable[[], float] = lambda: 0.0
    counts: dict[str, float] = field(default_factory=lambda: {"200": 0.0, "503": 0.0, "shadow_denied": 0.0})


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
                w.counts["503"] += served * failing
                w.counts["200"] += served * (1 - failing)
                w.counts["shadow_denied"] += served * w.denied()
                for code in ("200", "503"):
                    lines.append(
                        f'istio_requests_total{{reporter="destination",source_workload="frontend",'
                        f'source_workload_namespace="shop",destination_workload="{w.name}",'
                        f'destination_workload_namespace="{w.namespace}",destination_service="{w.name}.'
                        f'{w.namespace}.svc.cluster.local",destination_service_name="{w.name}",'
                        f'connection_security_policy="mutual_tls",response_code="{code}"}} {w.counts[code]:.3f}')
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
