"""Observed edges and traffic gates for 10,000 workloads / ~200,000 Istio series, read from a real Prometheus.

Debian's prometheus is filled (promtool tsdb create-blocks-from openmetrics) with an hour of synthetic series
(requests and TCP connections; the latency histograms, which edges and gates do not read, are left out):
10,000 Deployments in 200 injected namespaces, each calling nine others in mutual TLS (both proxies report), one
external host (the caller reports), half of them a database over TCP, and 1% receiving plaintext from callers
outside the mesh. Prints, for reading the edges: the server's own query time (Prometheus's `stats=all` timings),
the HTTP round trips (query + transfer), and meshstep's own time (decoding and building edges); then the four
gate checks on the edges, and their findings.

    python -m benchmarks.telemetry [--workloads 10000] [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from analysis.base import Context, gate_checks, run
from benchmarks.istio_metrics import Flow, PrometheusServer, openmetrics
from cluster.inventory import build_inventory
from cluster.snapshot import Snapshot
from telemetry.edges import read_traffic
from telemetry.prometheus import HTTPTransport, Prometheus
from telemetry.series import DEFAULT_TIMEOUT

PER_NAMESPACE = 50


def _ns(i: int) -> str:
    return f"team-{i // PER_NAMESPACE:03d}"


def flows(workloads: int, end: float) -> list[Flow]:
    out = []
    for i in range(workloads):
        me = (_ns(i), f"app-{i:05d}")
        for k in range(1, 10):  # eight in its namespace, one in the next
            j = (i // PER_NAMESPACE) * PER_NAMESPACE + (i + k) % PER_NAMESPACE if k < 9 else (i + PER_NAMESPACE) % \
                workloads
            dst = (_ns(j), f"app-{j:05d}")
            out.append(Flow(me, dst, f"{dst[1]}.{dst[0]}.svc.cluster.local", 1 + k % 3))
        out.append(Flow(me, None, f"api-{i % 150}.example.com", 0.2, reporters=("source",)))
        if i % 2 == 0:
            out.append(Flow(me, (me[0], "db"), f"db.{me[0]}.svc.cluster.local", 0.1, protocol="tcp"))
        if i % 100 == 0:
            out.append(Flow(None, me, f"{me[1]}.{me[0]}.svc.cluster.local", 0.5, security="none",
                            reporters=("destination",)))
    return out


def cluster(workloads: int) -> list[dict[str, Any]]:
    """Namespaces labelled for injection, a Deployment per workload, ServiceEntries for 100 of the 150 hosts."""
    objs: list[dict[str, Any]] = []
    for n in range((workloads + PER_NAMESPACE - 1) // PER_NAMESPACE):
        ns = f"team-{n:03d}"
        objs.append({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": ns, "labels": {"istio-injection": "enabled"}}})
        objs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "db", "namespace": ns},
                     "spec": {"selector": {"matchLabels": {"app": "db"}},
                              "template": {"metadata": {"labels": {"app": "db"}},
                                           "spec": {"containers": [{"name": "db", "image": "postgres"}]}}}})
    for i in range(workloads):
        name = f"app-{i:05d}"
        objs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": _ns(i)},
                     "spec": {"selector": {"matchLabels": {"app": name}},
                              "template": {"metadata": {"labels": {"app": name}},
                                           "spec": {"serviceAccountName": name,
                                                    "containers": [{"name": "app", "image": "app"}]}}}})
    for h in range(100):
        objs.append({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                     "metadata": {"name": f"api-{h}", "namespace": "istio-system"},
                     "spec": {"hosts": [f"api-{h}.example.com"], "location": "MESH_EXTERNAL", "resolution": "DNS",
                              "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}]}})
    return objs


class TimedTransport(HTTPTransport):
    """Plain HTTP that also asks Prometheus for its own timings (stats=all) and keeps them."""

    def __init__(self, url: str):
        super().__init__(url, DEFAULT_TIMEOUT * 6)
        self.server = self.round_trip = self.own_cpu = 0.0
        self.rows = 0

    def get(self, path: str, params: dict[str, str]) -> bytes:
        t0 = time.perf_counter()
        body = super().get(path, {**params, "stats": "all"})
        self.round_trip += time.perf_counter() - t0
        c0 = time.process_time()
        data = json.loads(body)  # read here for the timings only (not counted); meshstep decodes the body again
        self.server += data["data"]["stats"]["timings"]["execTotalTime"]
        self.rows += len(data["data"]["result"])
        self.own_cpu += time.process_time() - c0
        return body


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    end = time.time() // 60 * 60 - 60
    work = Path(tempfile.mkdtemp(prefix="meshstep-telemetry-bench-"))
    metrics = work / "metrics.om"
    t0 = time.perf_counter()
    series = 0
    with metrics.open("w") as f:
        for line in openmetrics(flows(args.workloads, end), end - 3600, end, step=900, histograms=False):
            f.write(line + "\n")
            series += line.startswith("istio_") and line.endswith(f" {end:.0f}")
    print(f"setup: {args.workloads:,} workloads, {series:,} series, {metrics.stat().st_size / 1e6:.0f} MB of "
          f"OpenMetrics written in {time.perf_counter() - t0:.1f} s")
    objs = cluster(args.workloads)
    inv = build_inventory(Snapshot("synthetic", lambda _v: iter(objs)))
    with PrometheusServer(metrics, work) as prom:
        print(f"setup: promtool loaded them in {prom.load_seconds:.1f} s")
        reads = []
        for _ in range(args.runs):
            transport = TimedTransport(prom.url)
            t0, c0 = time.perf_counter(), time.process_time()
            traffic = read_traffic(Prometheus(transport), 3600)
            total, cpu = time.perf_counter() - t0, time.process_time() - c0 - transport.own_cpu
            reads.append((total, transport.server, transport.round_trip, total - transport.round_trip, cpu,
                          transport.rows))
        total, server, trip, own, cpu, rows = (statistics.median(r[i] for r in reads) for i in range(6))
        print(f"edges: {len(traffic.edges):,} from {rows:,.0f} aggregated rows (4 queries: sum by over [1h]); "
              f"median of {args.runs}: {total:.2f} s = HTTP round trips {trip:.2f} s (of which Prometheus's own "
              f"query time {server:.2f} s) + meshstep {own:.2f} s (decode, edges; {cpu:.2f} s of CPU)")
        gate_times = []
        for feature, scope in (("mtls-strict", "mesh"), ("authorization-policy", "team-000"),
                               ("egress-registry-only", "mesh"), ("sidecar-scope", "mesh")):
            checks = [c for c in gate_checks(feature) if c.code.startswith("MST08")]
            t0, c0 = time.perf_counter(), time.process_time()
            found = run(checks, Context(inv, scope, {"allow_namespaces": "", "hosts": ""}, traffic))
            gate_times.append((time.perf_counter() - t0, time.process_time() - c0))
            codes = sorted({m.code for m in found if m.level == "error"})
            print(f"gate {feature} ({scope}): {len(found):,} findings {codes} in {gate_times[-1][0]:.2f} s "
                  f"({gate_times[-1][1]:.2f} s of CPU)")
        print(f"gates: {sum(t for t, _ in gate_times):.2f} s for the four ({sum(c for _, c in gate_times):.2f} s "
              "of CPU)")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
