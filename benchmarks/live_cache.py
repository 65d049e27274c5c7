"""A live read cold (every kind listed) against a warm one (the kinds cluster.live_cache kept, watched from where the
last read ended, after a few changes), on the emulated API server (tests/kube.py's WritableEmulator on loopback):
wall seconds and bytes received of each, the inventory built included, and the CPU count and load. A fresh read
with the cache off, after the changes, is the reference the warm one must equal.

    python -m benchmarks.live_cache [--pods 3000] [--changes 10] [--runs 3] [--kept-from MIB]

The watch is held open WATCH_SECONDS (the API takes whole seconds), so on loopback a warm read is not faster than a
cold one until the lists take longer than that; it always transfers far less. --kept-from 0 keeps every kind (the
default keeps only kinds of MESHSTEP_CACHE_LIVE_MB or more, as meshstep does)."""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.kubeapi import write_kubeconfig
from benchmarks.synthetic import synthetic_cluster
from cluster import cachedir, live_cache
from cluster.inventory import Inventory, build_inventory
from cluster.live import live_snapshot
from tests.kube import serve

CONTEXT = "bench"


def read() -> tuple[Inventory, float, int]:
    """The inventory of a live read, its wall seconds and the bytes of the answers it received."""
    snapshot = live_snapshot(CONTEXT, progress=lambda _line: None)
    t = time.perf_counter()
    inv = build_inventory(snapshot)
    return inv, time.perf_counter() - t, snapshot.produce.__self__.api.bytes  # type: ignore[attr-defined]


def change(url: str, pods: list[dict[str, Any]], n: int) -> None:
    """n changes of these pods as a cluster makes them: a third created, a third relabelled, a third deleted."""
    def send(method: str, path: str, body: Any = None, kind: str = "application/merge-patch+json") -> None:
        request = urllib.request.Request(f"{url}{path}?fieldManager=bench", method=method, headers={
            "Content-Type": kind}, data=json.dumps(body).encode() if body is not None else None)
        urllib.request.urlopen(request).close()

    for i in range(n):
        pod = pods[i]
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        if i % 3 == 0:
            send("POST", f"/api/v1/namespaces/{ns}/pods",
                 {**pod, "metadata": {**pod["metadata"], "name": f"{name}-new"}}, "application/json")
        elif i % 3 == 1:
            send("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}", {"metadata": {"labels": {"bench": str(i)}}})
        else:
            send("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=3000)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3, help="changes then a warm and a fresh read, this many times")
    parser.add_argument("--kept-from", type=int, default=live_cache.KEPT_FROM.value,
                        help="MiB of a kind's list from which it is kept (MESHSTEP_CACHE_LIVE_MB)")
    args = parser.parse_args()
    os.environ[live_cache.KEPT_FROM.env] = str(args.kept_from)
    work = Path(tempfile.mkdtemp(prefix="meshstep-bench-live-cache-"))
    os.environ[cachedir.DIR_ENV] = str(work / "cache")
    objects = synthetic_cluster(args.pods, args.pods // 5, args.pods // 10, seed=1, managed_fields=True)
    pods = [o for o in objects if o["kind"] == "Pod"]
    with serve(objects, writes=True) as served:
        os.environ["KUBECONFIG"] = str(write_kubeconfig(work / "kubeconfig", {CONTEXT: served.url}, CONTEXT))
        cold, cold_s, cold_b = read()
        rows, same = [("cold (lists, entry kept)", cold_s, cold_b)], True
        for run in range(args.runs):
            change(served.url, pods[run * args.changes:], args.changes)
            watched = sum("watch" in r.params for r in served.emulator)
            warm, warm_s, warm_b = read()
            watched = sum("watch" in r.params for r in served.emulator) - watched
            os.environ[cachedir.SWITCH_ENV] = "off"
            fresh, fresh_s, fresh_b = read()
            del os.environ[cachedir.SWITCH_ENV]
            rows += [(f"warm ({watched} kinds watched)", warm_s, warm_b), ("fresh, cache off", fresh_s, fresh_b)]
            same &= (warm.pods, warm.objects, warm.visibility) == (fresh.pods, fresh.objects, fresh.visibility)
    kept = sum(p.stat().st_size for p in (work / "cache").glob("*.live.msgpack")) if (work / "cache").is_dir() else 0
    print(f"cpus: {os.cpu_count()}, load: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"cluster: {len(cold.pods)} pods, {len(objects)} objects; {args.changes} changes a run; kinds kept from "
          f"{args.kept_from} MiB (entry: {kept / (1 << 20):.1f} MiB)")
    print(f"{'read':<34} {'wall':>8} {'received':>12}")
    for label, seconds, received in rows:
        print(f"{label:<34} {seconds:>6.2f} s {received / (1 << 20):>8.2f} MiB")
    print(f"each warm inventory equals the fresh one read after it: {same}")


if __name__ == "__main__":
    main()
