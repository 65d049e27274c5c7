"""Reading a fleet: `meshstep fleet` over 1 cluster and over N, each served by a loopback API of its own.

    python -m benchmarks.fleet [--clusters 10 --pods 10000 --services 2000 --istio-objects 1000 --runs 3]

One synthetic cluster (benchmarks/synthetic.py) is served N times, each copy by benchmarks/inventory.py's server
in a process of its own, behind a kubeconfig context of its own (c00, c01, …). The fleet is read as `meshstep
fleet --contexts …` reads it (planner.fleet.read_fleet: every cluster in a process of its own, its pods decoded typed;
detection and the records of a fresh SQLite database included).
Times are the median of --runs runs, one cluster and the fleet interleaved; CPU time is this process's and any
process it starts (the servers' is not counted). The goal is the fleet in under 3x the time of one cluster. The
work of a fleet is N times that of one cluster; what concurrency can save is the waiting, not the CPU: on a machine
of C cores, N clusters cannot take less than N x (CPU of one) / C, printed as the bound.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, closing
from pathlib import Path

from benchmarks.inventory import _cpu, _mb
from benchmarks.kubeapi import write_kubeconfig
from planner import fleet
from state.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _server(cluster_file: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.inventory", "--serve", str(cluster_file)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)


def _stop(server: subprocess.Popen) -> None:
    server.stdin.close()  # type: ignore[union-attr]
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--services", type=int, default=2_000)
    parser.add_argument("--istio-objects", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from benchmarks.synthetic import expected_counts, synthetic_cluster, write

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        objects = synthetic_cluster(args.pods, args.services, args.istio_objects)
        expected = expected_counts(objects)
        cluster_file = Path(tmp) / "cluster.json"
        write(objects, cluster_file)
        del objects
        servers = [_server(cluster_file) for _ in range(args.clusters)]
        for s in servers:
            stack.callback(_stop, s)
        urls = [s.stdout.readline().strip() for s in servers]  # type: ignore[union-attr]
        if not all(urls):
            raise SystemExit("a benchmark API server did not start")
        contexts = {f"c{i:02}": url for i, url in enumerate(urls)}
        os.environ["KUBECONFIG"] = str(write_kubeconfig(Path(tmp) / "kubeconfig", contexts, "c00"))
        store = stack.enter_context(closing(Store.open(f"sqlite:///{Path(tmp) / 'state.db'}")))
        exclude = {s.pid for s in servers}
        print(f"{args.clusters} clusters of {expected['pods']} pods ({expected['pods_in_mesh']} with a sidecar), "
              f"{expected['services']} services, {expected['istio_config']} Istio objects each; "
              f"{_mb(cluster_file.stat().st_size)} of JSON each, one loopback server per cluster")

        one, all_ = fleet.members(list(contexts)[:1]), fleet.members(list(contexts))
        times: dict[str, list[float]] = {"one": [], "fleet": []}
        cpu: dict[str, list[float]] = {"one": [], "fleet": []}
        fleet.read_fleet(one, store)  # not timed: the first read imports the features and warms the servers
        for _ in range(args.runs):  # interleaved, so that drift in the machine's speed hits both alike
            for name, members in (("one", one), ("fleet", all_)):
                gc.collect()
                t, c = time.perf_counter(), _cpu(exclude)
                rows = fleet.read_fleet(members, store, deadline=600)
                times[name].append(time.perf_counter() - t)
                cpu[name].append(_cpu(exclude) - c)
                failed = [f"{r.name}: {r.error}" for r in rows if not r.ok]
                assert not failed, failed
                assert all(r.reading.mesh["pods_total"] == expected["pods"] for r in rows)  # type: ignore[union-attr]
                del rows

    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    cores = os.cpu_count() or 1
    print(f"median of {args.runs} runs; load average {os.getloadavg()[0]:.1f} on {cores} CPUs")
    print(f"  {'':<22} {'wall':>8} {'CPU':>8}   wall of each run")
    for name, label in (("one", "1 cluster"), ("fleet", f"{args.clusters} clusters (fleet)")):
        print(f"  {label:<22} {med[name]:7.2f}s {med_cpu[name]:7.2f}s   {', '.join(f'{x:.2f}' for x in times[name])}")
    ratio = med["fleet"] / med["one"]
    bound = args.clusters * med_cpu["one"] / cores
    print(f"fleet / one: {ratio:5.2f}x wall, {med_cpu['fleet'] / med_cpu['one']:5.2f}x CPU   (goal < 3x wall)   "
          f"{'ok' if ratio < 3 else 'MISSED'}")
    print(f"bound on {cores} CPUs: {args.clusters} x {med_cpu['one']:.2f} s CPU / {cores} = {bound:.2f} s = "
          f"{bound / med['one']:.2f}x one cluster's wall; the fleet took {med['fleet'] / bound:.2f}x that bound")


if __name__ == "__main__":
    main()
