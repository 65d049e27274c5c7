"""Reading a big live cluster: meshstep's inventory against the floor and the naive way, on one loopback API.

    python -m benchmarks.inventory [--pods 10000 --services 2000 --istio-objects 1000 --runs 3 --managed-fields]

The synthetic cluster (benchmarks/synthetic.py) is served by a small HTTP server in a process of its own (so it
does not share the contenders' GIL) that answers the list endpoints the live reader uses — `limit`/`continue`
pages, `labelSelector`, metadata-only lists — from pages serialized once, before timing. Three contenders read
the same collections at the same page size:

  floor    plain http.client GETs, WORKERS connections in parallel, each page parsed with orjson and dropped,
           with the cyclic GC paused as meshstep pauses it (else the floor would pay for GC walks meshstep skips)
  naive    the `kubernetes` client's typed list_* calls (list_pod_for_all_namespaces …), paginated, one after
           the other as a script would; custom resources through CustomObjectsApi (the client has no types)
  meshstep build_inventory(load_snapshot("context:bench")) through a kubeconfig pointing at the server

and meshstep once more with its retry layer taken out (each GET made once): the difference is what the retries,
backoff and relists cost a read that needs none (it should be noise).

Times are the median of --runs runs (the naive way runs once), as wall-clock time and as CPU time: that of the
benchmark process (all its threads) plus that of any process it starts (the server's is not counted). The targets
are on wall-clock time; CPU time shows what the speed costs (on a loaded machine, the steadier figure). Memory is
meshstep's, measured in a fresh subprocess: the growth of its peak RSS over the RSS it had just before reading (the
peak is the kernel's VmHWM, reset through /proc/self/clear_refs just before; ru_maxrss would carry the parent's peak
over the fork), i.e. everything the read and the build held at their worst (pages in flight, the client's buffers,
the inventory); were there child processes, the peak of the sum of its and their proportional set sizes (PSS: a
page shared by n processes counts 1/n in each), sampled every 10 ms. It is compared with the size of the JSON the
server sent. Targets: meshstep <= 1.0x the floor (it decodes only what it reads, typed, where the floor builds every
field), >= 5x faster than naive, peak memory <= 2x the raw JSON.
"""
from __future__ import annotations

import argparse
import gc
import http.client
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import orjson

from benchmarks.kubeapi import aggregated_discovery, list_page, metadata_list, write_kubeconfig
from cluster import live, sources
from cluster.live import CORE_KINDS, CRD_KIND, PAGE_SIZE, WORKERS
from cluster.snapshot import Kind

CONTEXT = "bench"
# Built-in collections (apiVersion, kind) → plural; custom ones come from the CRDs.
_BUILTIN_PLURALS = {
    ("v1", "Namespace"): "namespaces", ("v1", "Pod"): "pods", ("v1", "Service"): "services",
    ("v1", "Node"): "nodes", ("v1", "ConfigMap"): "configmaps", ("v1", "Secret"): "secrets",
    ("v1", "ServiceAccount"): "serviceaccounts", ("apps/v1", "Deployment"): "deployments",
    ("apps/v1", "ReplicaSet"): "replicasets", ("apps/v1", "StatefulSet"): "statefulsets",
    ("apps/v1", "DaemonSet"): "daemonsets",
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"): "mutatingwebhookconfigurations",
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"): "validatingwebhookconfigurations",
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): "customresourcedefinitions",
}


# ---------------------------------------------------------------- the loopback API server


def _collection(api_version: str, plural: str) -> str:
    return f"/api/v1/{plural}" if api_version == "v1" else f"/apis/{api_version}/{plural}"


class _Store:
    """Objects by collection path (sorted as Kubernetes lists them) and their pages, serialized once."""

    def __init__(self, objects: list[dict[str, Any]]):
        # path → (apiVersion, kind, custom, items)
        self.collections: dict[str, tuple[str, str, bool, list[dict[str, Any]]]] = {}
        custom: dict[tuple[str, str], tuple[str, list[str]]] = {}  # (group, kind) → (plural, served versions)
        for o in objects:
            if o["kind"] == "CustomResourceDefinition":
                spec = o["spec"]
                custom[(spec["group"], spec["names"]["kind"])] = (
                    spec["names"]["plural"], [v["name"] for v in spec["versions"] if v.get("served")])
        for o in objects:
            group = o["apiVersion"].rpartition("/")[0]
            if (group, o["kind"]) in custom:  # a custom resource is served at every served version of its CRD
                plural, versions = custom[(group, o["kind"])]
                paths = [(f"{group}/{v}", _collection(f"{group}/{v}", plural)) for v in versions]
            elif (o["apiVersion"], o["kind"]) in _BUILTIN_PLURALS:
                paths = [(o["apiVersion"],
                          _collection(o["apiVersion"], _BUILTIN_PLURALS[(o["apiVersion"], o["kind"])]))]
            else:
                continue
            for api, path in paths:
                entry = self.collections.setdefault(path, (api, o["kind"], (group, o["kind"]) in custom, []))
                entry[3].append(o)
        # Every CRD's collections exist even when empty, as on a real cluster.
        for o in objects:
            if o["kind"] == "CustomResourceDefinition":
                spec = o["spec"]
                for v in spec["versions"]:
                    if v.get("served"):
                        path = _collection(f"{spec['group']}/{v['name']}", spec["names"]["plural"])
                        self.collections.setdefault(path, (f"{spec['group']}/{v['name']}", spec["names"]["kind"],
                                                           True, []))
        for (api, _kind), plural in _BUILTIN_PLURALS.items():
            self.collections.setdefault(_collection(api, plural), (api, _kind, False, []))
        for _api, _kind, _custom, items in self.collections.values():
            items.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
        self.discovery = orjson.dumps(aggregated_discovery(
            (group, v, plural, kind, True) for (group, kind), (plural, versions) in custom.items() for v in versions))
        self.pages: dict[tuple[str, str, bool, int, int], bytes] = {}
        self.lock = threading.Lock()

    def page(self, path: str, selector: str, metadata_only: bool, limit: int, start: int) -> bytes | None:
        key = (path, selector, metadata_only, limit, start)
        body = self.pages.get(key)
        if body is None:
            entry = self.collections.get(path)
            if entry is None:
                return None
            body = self._render(entry, selector, metadata_only, limit, start)
            with self.lock:
                self.pages[key] = body
        return body

    def _render(self, entry: tuple[str, str, bool, list[dict[str, Any]]], selector: str, metadata_only: bool,
                limit: int, start: int) -> bytes:
        api, kind, custom, items = entry
        page, meta = list_page(items, selector, start, limit, "424242")
        if metadata_only:
            return orjson.dumps(metadata_list(page, meta))
        if custom:  # custom resources carry apiVersion and kind; built-in list items do not
            page = [{**o, "apiVersion": api} for o in page]
        else:
            page = [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in page]
        return orjson.dumps({"apiVersion": api, "kind": f"{kind}List", "metadata": meta, "items": page})

    def warm(self, limit: int) -> None:
        """Serialize every page a contender asks for at this page size before anything is timed."""
        for path, (_api, kind, _custom, _items) in self.collections.items():
            selectors = [""] + [k.label_selector for k in CORE_KINDS if k.path == path and k.label_selector]
            for selector in selectors:
                for metadata_only in (False, True) if kind == "Secret" else (False,):
                    start: int | None = 0
                    while start is not None:
                        body = self.page(path, selector or "", metadata_only, limit, start)
                        token = orjson.loads(body)["metadata"].get("continue") if body else None
                        start = int(token) if token else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the clients' connection pools reuse their connections
    disable_nagle_algorithm = True  # else the body waits for the client's delayed ACK of the headers (40 ms)
    store: _Store
    sent: ClassVar[list[int]] = [0, 0]  # bytes, requests since the last /_bench/stats
    sent_lock = threading.Lock()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/_bench/stats":
            with self.sent_lock:
                body = orjson.dumps({"bytes": self.sent[0], "requests": self.sent[1]})
                self.sent[0] = self.sent[1] = 0
            return self._reply(200, body, count=False)
        if url.path == "/apis":
            return self._reply(200, self.store.discovery)
        if url.path == "/version":
            return self._reply(200, orjson.dumps({"major": "1", "minor": "31", "gitVersion": "v1.31.2",
                                                  "platform": "linux/amd64"}))
        q = parse_qs(url.query)
        metadata_only = "as=PartialObjectMetadataList" in (self.headers.get("Accept") or "")
        body = self.store.page(url.path, (q.get("labelSelector") or [""])[0], metadata_only,
                               int((q.get("limit") or ["0"])[0]), int((q.get("continue") or ["0"])[0]))
        if body is None:
            return self._reply(404, orjson.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                  "reason": "NotFound", "code": 404}))
        self._reply(200, body)

    def _reply(self, status: int, body: bytes, count: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if count:
            with self.sent_lock:
                self.sent[0] += len(body)
                self.sent[1] += 1

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(cluster_file: Path) -> None:
    """The server process: load, warm the pages, print the URL, serve until stdin closes."""
    objects = orjson.loads(cluster_file.read_bytes())["items"]
    store = _Store(objects)
    del objects
    store.warm(PAGE_SIZE)
    _Handler.store = store
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    sys.stdin.read()  # until the parent closes it (or dies)
    os._exit(0)  # without waiting for keep-alive connections


# ---------------------------------------------------------------- the contenders


def _stats(url: str) -> dict[str, int]:
    conn = http.client.HTTPConnection(urlsplit(url).netloc)
    conn.request("GET", "/_bench/stats")
    data = orjson.loads(conn.getresponse().read())
    conn.close()
    return data


def _kinds(url: str) -> list[Kind]:
    """What meshstep lists: its core kinds, the CRDs, and one kind per Istio / Gateway API CRD."""
    conn = http.client.HTTPConnection(urlsplit(url).netloc)
    conn.request("GET", f"{CRD_KIND.path}?limit=0")
    crds = orjson.loads(conn.getresponse().read())["items"]
    conn.close()
    return [*CORE_KINDS, CRD_KIND, *live.crd_kinds(crds)]


def floor(url: str, kinds: list[Kind], page_size: int) -> int:
    """Plain GETs of every page, WORKERS kinds at a time on keep-alive connections, parsed with orjson."""
    local = threading.local()
    netloc = urlsplit(url).netloc

    def list_kind(kind: Kind) -> int:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(netloc)
        headers = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
                   if kind.metadata_only else "application/json", "Authorization": "Bearer bench"}
        n, token = 0, None
        while True:
            query = f"limit={page_size}" + (f"&continue={token}" if token else "")
            if kind.label_selector:
                query += f"&labelSelector={kind.label_selector}"
            conn.request("GET", f"{kind.path}?{query}", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                return n
            page = orjson.loads(body)
            n += len(page["items"])
            token = page["metadata"].get("continue")
            if not token:
                return n

    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            return sum(pool.map(list_kind, kinds))
    finally:
        if gc_was_enabled:
            gc.enable()


def naive(kubeconfig: Path, kinds: list[Kind], page_size: int) -> int:
    """The kubernetes client's typed list calls, page by page, one kind after the other."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig), context=CONTEXT)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    admission, ext = client.AdmissionregistrationV1Api(api), client.ApiextensionsV1Api(api)
    custom = client.CustomObjectsApi(api)
    typed = {
        "namespaces": core.list_namespace, "pods": core.list_pod_for_all_namespaces,
        "services": core.list_service_for_all_namespaces, "nodes": core.list_node,
        "configmaps": core.list_config_map_for_all_namespaces, "secrets": core.list_secret_for_all_namespaces,
        "deployments": apps.list_deployment_for_all_namespaces,
        "statefulsets": apps.list_stateful_set_for_all_namespaces,
        "daemonsets": apps.list_daemon_set_for_all_namespaces,
        "mutatingwebhookconfigurations": admission.list_mutating_webhook_configuration,
        "validatingwebhookconfigurations": admission.list_validating_webhook_configuration,
        "customresourcedefinitions": ext.list_custom_resource_definition,
    }
    n = 0
    for kind in kinds:
        token = None
        while True:
            extra: dict[str, Any] = {"limit": page_size}
            if token:
                extra["_continue"] = token
            if kind.label_selector:
                extra["label_selector"] = kind.label_selector
            if kind.label in typed:
                page = typed[kind.label](**extra)
                items, token = page.items, page.metadata._continue
            else:
                group, version, plural = kind.path.split("/")[2:5]
                page = custom.list_cluster_custom_object(group, version, plural, **extra)
                items, token = page["items"], page["metadata"].get("continue")
            n += len(items)
            if not token:
                break
    api.close()
    return n


def meshstep() -> Any:
    from cluster.inventory import build_inventory

    return build_inventory(sources.load_snapshot(f"context:{CONTEXT}"))


def without_retries() -> Any:
    """meshstep's read with the retry layer taken out (each GET made once, no retry loop): the layer's cost on a
    clean read is meshstep's time less this."""
    from cluster.kubeapi import ApiServer

    get = ApiServer.get
    ApiServer.get = lambda self, path, query, what, accept="application/json": self._once(path, query, accept)
    try:
        return meshstep()
    finally:
        ApiServer.get = get


def measure_memory() -> None:
    """In a fresh process: RSS growth of meshstep's read and build over the RSS just before (KUBECONFIG set)."""
    import gc

    from kubernetes import client  # noqa: F401  (imported before the baseline, as meshstep's import does)

    from cluster.inventory import build_inventory  # noqa: F401

    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = _rss_now()
    peak_total, done = 0, threading.Event()

    def sample() -> None:  # this process and its worker processes, together
        nonlocal peak_total
        while not done.wait(0.01):
            peak_total = max(peak_total, sum(_pss_of(pid) for pid in [os.getpid(), *_descendants(set())]))

    sampler = threading.Thread(target=sample)
    sampler.start()
    inv = meshstep()
    done.set()
    sampler.join()
    peak = _status_kb("VmHWM") * 1024
    gc.collect()
    after = _rss_now()
    print(orjson.dumps({"before": before, "peak": peak, "peak_total": max(peak_total, peak), "after": after,
                        "pods": len(inv.pods)}).decode())


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(field + ":")).split()[1])


def _rss_now() -> int:
    return _rss_of(os.getpid())


def _rss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:  # it has just exited
        return 0


def _pss_of(pid: int) -> int:
    """Proportional set size: RSS with each page shared by n processes counted 1/n in each (from /proc)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:")) * 1024
    except (OSError, StopIteration):  # it has just exited
        return 0


def _children() -> dict[int, list[tuple[int, int]]]:
    """Every process's children, from /proc: parent pid → [(pid, CPU ticks it and the children it reaped used)]."""
    out: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command: state, ppid, …; utime, stime, cutime, cstime are fields 14-17 of the line
        out.setdefault(int(fields[1]), []).append((int(entry), sum(int(x) for x in fields[11:15])))
    return out


def _descendants(exclude: set[int]) -> list[int]:
    children, out, todo = _children(), [], [os.getpid()]
    while todo:
        for pid, _ticks in children.get(todo.pop(), ()):
            if pid not in exclude:
                out.append(pid)
                todo.append(pid)
    return out


def _cpu(exclude: set[int]) -> float:
    """CPU seconds of this process, the children it reaped, and its live descendants (but `exclude`, the API server,
    and theirs) with the children they reaped: meshstep's worker processes are such descendants."""
    children, ticks, todo = _children(), 0, [os.getpid()]
    while todo:
        for pid, t in children.get(todo.pop(), ()):
            if pid not in exclude:
                ticks += t
                todo.append(pid)
    own = os.times()
    return time.process_time() + own.children_user + own.children_system + ticks / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the run


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--services", type=int, default=2_000)
    parser.add_argument("--istio-objects", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--managed-fields", action="store_true",
                        help="objects carry metadata.managedFields, as a live API server returns them")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    if args.memory:
        return measure_memory()

    from benchmarks.synthetic import expected_counts, synthetic_cluster, write

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        objects = synthetic_cluster(args.pods, args.services, args.istio_objects, managed_fields=args.managed_fields)
        expected = expected_counts(objects)
        cluster_file = Path(tmp) / "cluster.json"
        write(objects, cluster_file)
        del objects
        server = subprocess.Popen([sys.executable, "-m", "benchmarks.inventory", "--serve", str(cluster_file)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  cwd=Path(__file__).resolve().parent.parent)
        try:
            url = server.stdout.readline().strip()  # type: ignore[union-attr]
            if not url:
                raise SystemExit("the benchmark API server did not start")
            print(f"cluster: {expected['pods']} pods ({expected['pods_in_mesh']} with a sidecar), "
                  f"{expected['services']} services, {expected['istio_config']} Istio objects; "
                  f"{_mb(cluster_file.stat().st_size)} as one JSON List; served at {url} "
                  f"(ready in {time.perf_counter() - start:.1f} s)")
            kubeconfig = write_kubeconfig(Path(tmp) / "kubeconfig", {CONTEXT: url}, CONTEXT)
            os.environ["KUBECONFIG"] = str(kubeconfig)
            run(url, kubeconfig, expected, args.runs, args.skip_naive, server.pid)
        finally:
            server.stdin.close()  # type: ignore[union-attr]
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()


def run(url: str, kubeconfig: Path, expected: dict[str, int], runs: int, skip_naive: bool, server_pid: int) -> None:
    kinds = _kinds(url)
    _stats(url)
    times: dict[str, list[float]] = {"floor": [], "meshstep": [], "naive": [], "bare": []}
    cpu: dict[str, list[float]] = {"floor": [], "meshstep": [], "naive": [], "bare": []}
    served: dict[str, int] = {}

    def timed(name: str, f: Any, *a: Any) -> Any:
        gc.collect()  # start each run from the same heap, without the previous run's garbage
        t, c = time.perf_counter(), _cpu({server_pid})
        result = f(*a)
        times[name].append(time.perf_counter() - t)
        cpu[name].append(_cpu({server_pid}) - c)
        served[name] = _stats(url)["bytes"]
        return result

    for i in range(runs):  # interleaved, so that drift in the machine's speed hits all alike
        n = timed("floor", floor, url, kinds, PAGE_SIZE)
        # with and without the retry layer, in turn first: neither gains from following the other
        for name, read in (("meshstep", meshstep), ("bare", without_retries))[:: 1 if i % 2 == 0 else -1]:
            inv = timed(name, read)
            report = inv.report()["counts"]
            got = {"pods": report["pods"], "pods_in_mesh": report["pods_in_mesh"], "services": report["services"],
                   "istio_config": sum(report["istio_config"].values())}
            assert got == expected, (got, expected)
            del inv
    if not skip_naive:
        n_naive = timed("naive", naive, kubeconfig, kinds, PAGE_SIZE)
        assert n_naive == n, (n_naive, n)

    out = subprocess.run([sys.executable, "-m", "benchmarks.inventory", "--memory"], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent, env=os.environ)
    mem = orjson.loads(out.stdout.strip().splitlines()[-1])
    _stats(url)

    med = {k: statistics.median(v) for k, v in times.items() if v}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items() if v}
    raw = served["meshstep"]
    print(f"{n} objects in {len(kinds)} collections, pages of {PAGE_SIZE}, {WORKERS} workers; "
          f"median of {runs} runs (naive: 1 run); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  {'':<36} {'wall':>8} {'CPU':>8}   wall of each run")
    for name, label in (("floor", "floor    (http.client + orjson)"), ("naive", "naive    (kubernetes typed list_*)"),
                        ("meshstep", "meshstep (build_inventory, live)")):
        if name in med:
            print(f"  {label:<36} {med[name]:7.2f}s {med_cpu[name]:7.2f}s   "
                  f"{', '.join(f'{x:.2f}' for x in times[name])}   read {_mb(served[name])}")
    ratio, ratio_cpu = med["meshstep"] / med["floor"], med_cpu["meshstep"] / med_cpu["floor"]
    print(f"meshstep / floor:  {ratio:5.2f}x wall, {ratio_cpu:5.2f}x CPU   (target <= 1.0x wall)  "
          f"{'ok' if ratio <= 1.0 else 'MISSED'}")
    if "naive" in med:
        speedup, speedup_cpu = med["naive"] / med["meshstep"], med_cpu["naive"] / med_cpu["meshstep"]
        print(f"naive / meshstep:  {speedup:5.2f}x wall, {speedup_cpu:5.2f}x CPU   (target >= 5x wall)    "
              f"{'ok' if speedup >= 5 else 'MISSED'}")
    cost = med["meshstep"] - med["bare"]
    spread = statistics.pstdev(times["meshstep"]) if runs > 1 else 0.0
    print(f"retry layer on a clean read: {cost * 1000:+.0f} ms wall ({cost / med['bare']:+.1%}), "
          f"{(med_cpu['meshstep'] - med_cpu['bare']) * 1000:+.0f} ms CPU; meshstep's own run-to-run spread "
          f"{spread * 1000:.0f} ms  (without the layer: {', '.join(f'{x:.2f}' for x in times['bare'])} s)")
    growth, own = mem["peak_total"] - mem["before"], mem["peak"] - mem["before"]
    print(f"meshstep memory (fresh process, peak RSS - RSS before reading): {_mb(growth)} = "
          f"{growth / raw:.2f}x the {_mb(raw)} of JSON read  (target <= 2x)  {'ok' if growth <= 2 * raw else 'MISSED'};"
          f" of which this process: {_mb(own)}; held after the build: {_mb(mem['after'] - mem['before'])}")


if __name__ == "__main__":
    main()
