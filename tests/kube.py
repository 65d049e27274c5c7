"""A real Kubernetes API on loopback for tests: kmock's KubernetesEmulator, taught what meshstep relies on
(list pagination with `limit`/`continue`, `labelSelector`, metadata-only lists, 403 for chosen resources,
aggregated discovery), served from a background thread with its own event loop so that the synchronous
`kubernetes` client can talk to it over HTTP; and FaultyEmulator, which answers chosen requests with the faults a
real API server produces (each as the Kubernetes documentation page cited beside it describes)."""
from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
from kmock import KubernetesEmulator, KubernetesError, ResourceInfo, Server, resource
from kmock._internal import parsing, rendering

from benchmarks.kubeapi import aggregated_discovery, list_page, metadata_list, write_kubeconfig

# The built-in resources every cluster serves (group/version, plural, kind); custom ones come from CRDs.
_BUILTIN = (
    ("v1", "namespaces", "Namespace"), ("v1", "pods", "Pod"), ("v1", "services", "Service"), ("v1", "nodes", "Node"),
    ("v1", "configmaps", "ConfigMap"), ("v1", "secrets", "Secret"), ("apps/v1", "deployments", "Deployment"),
    ("apps/v1", "statefulsets", "StatefulSet"), ("apps/v1", "daemonsets", "DaemonSet"),
    ("apps/v1", "replicasets", "ReplicaSet"),
    ("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration"),
    ("apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition"),
)


# What discovery says every resource here allows (a real API server lists each resource's verbs).
_VERBS = {"get", "list", "watch"}
_BUILTIN_GROUPS = {api.rpartition("/")[0] for api, _, _ in _BUILTIN} | {"batch", "policy", "rbac.authorization.k8s.io"}

_parse_path = parsing.parse_path


def _parse_path_with_namespaces(path: str) -> parsing.ParsedPath:
    """kmock reads `/api/v1/namespaces` as a namespaced path without a namespace (and fails); it is the
    Namespace collection, and `/api/v1/namespaces/NAME` one Namespace."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"] and parts[2:3] == ["namespaces"] and len(parts) <= 4:
        return parsing.ParsedPath("", "v1", "namespaces", None, parts[3] if len(parts) == 4 else None)
    return _parse_path(path)


parsing.parse_path = _parse_path_with_namespaces


class PagingEmulator(KubernetesEmulator):
    """KubernetesEmulator whose lists page, select by label, answer metadata-only and refuse chosen plurals."""

    forbidden: set[str]
    honour_metadata_only: bool
    aggregated_discovery: bool  # answer /apis as an APIGroupDiscoveryList when asked (else the plain list only)
    stale: set[str]  # group/versions an aggregated API serves that is down
    # Seconds each list answer waits, so that overlapping requests show in `most_in_flight`.
    delay: float
    in_flight: int
    most_in_flight: int

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.forbidden = set()
        self.honour_metadata_only = True
        self.aggregated_discovery = True
        self.stale = set()
        self.delay = 0.0
        self.in_flight = self.most_in_flight = 0

    async def _serve_apis(self, request: Any) -> Any:
        """`/apis` as an APIGroupDiscoveryList when the client asks for it (aggregated discovery, as every API
        server since 1.30 serves it: https://kubernetes.io/docs/concepts/overview/kubernetes-api/#aggregated-discovery):
        each group with its versions in order of preference, each version with its resources; a version whose
        aggregated API is down is marked Stale. Otherwise the plain APIGroupList."""
        if not (self.aggregated_discovery and "as=APIGroupDiscoveryList" in request.headers.get("Accept", "")):
            return await super()._serve_apis(request)
        return aggregated_discovery(((r.group, r.version, r.plural, info.kind, bool(info.namespaced))
                                     for r, info in self.resources.items() if r.group), self.stale)

    async def _serve_list(self, request: Any) -> Any:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return await self._page(request)
        finally:
            self.in_flight -= 1

    async def _page(self, request: Any) -> Any:
        if request.resource is not None and request.resource.plural in self.forbidden:
            raise KubernetesError(status=403, reason="Forbidden",
                                  message=f'{request.resource.plural} is forbidden: User "test" cannot list it')
        page = await super()._serve_list(request)
        # The emulator keeps objects unordered; Kubernetes lists in key order, which continue tokens rely on.
        items = sorted(page["items"], key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
        items, meta = list_page(items, request.params.get("labelSelector") or "",
                                int(request.params.get("continue") or 0), int(request.params.get("limit") or 0), "1")
        if self.honour_metadata_only and "as=PartialObjectMetadataList" in request.headers.get("Accept", ""):
            return metadata_list(items, meta)
        return {"metadata": meta, "items": items}


@dataclass
class Fault:
    """A fault the API server produces for the requests to `path`, `times` times (after which it has passed)."""

    path: str
    # "status": an error answer with a Status body (https://kubernetes.io/docs/reference/kubernetes-api/
    # common-definitions/status/); "reset": the connection reset before any answer (an API server restarting, a
    # load balancer dropping it); "cut": a 200 whose body stops halfway (the connection closed mid-answer).
    how: str = "status"
    status: int = 500
    reason: str = "InternalError"
    message: str = "etcdserver: request timed out"
    retry_after: int | None = None
    times: int = 1
    on_continue: bool = False  # only requests that carry a continue token
    hits: int = 0


# The faults as API servers produce them.
def internal_error(path: str, times: int = 1) -> Fault:
    """etcd too slow for the apiserver: a 500 InternalError with etcd's own message."""
    return Fault(path, times=times)


def too_many_requests(path: str, retry_after: int = 1, times: int = 1) -> Fault:
    """API Priority and Fairness shedding load: 429 TooManyRequests with a Retry-After, in seconds
    (https://kubernetes.io/docs/concepts/cluster-administration/flow-control/)."""
    return Fault(path, status=429, reason="TooManyRequests", retry_after=retry_after, times=times,
                 message="Too many requests, please try again later.")


def expired(path: str, times: int = 1) -> Fault:
    """A continue token older than the server keeps its snapshot (five minutes by default): 410 Expired, and the
    client must start the list again (https://kubernetes.io/docs/reference/using-api/api-concepts/
    #retrieving-large-results-sets-in-chunks)."""
    return Fault(path, status=410, reason="Expired", on_continue=True, times=times,
                 message="The provided continue parameter is too old to display a consistent list result. You can "
                         "start a new list without the continue parameter.")


def unavailable(path: str, times: int = 1) -> Fault:
    """An aggregated API whose backing service is down: the aggregator answers 503 ServiceUnavailable
    (https://kubernetes.io/docs/concepts/extend-kubernetes/api-extension/apiserver-aggregation/)."""
    return Fault(path, status=503, reason="ServiceUnavailable", times=times,
                 message="the server is currently unable to handle the request")


class FaultyEmulator(PagingEmulator):
    """A PagingEmulator that answers the requests its `faults` match with those faults, then as usual."""

    faults: list[Fault]

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.faults = []

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        fault = next((f for f in self.faults if f.path == raw.path and f.hits < f.times
                      and (not f.on_continue or "continue" in raw.query)), None)
        if fault is None:
            return await super().__call__(raw)
        fault.hits += 1
        if fault.how == "reset":
            await raw.read()
            sock = raw.transport.get_extra_info("socket") if raw.transport else None
            if sock is not None:  # linger 0: the close sends a RST, as a dropped connection does
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.transport.abort()  # type: ignore[union-attr]
            return aiohttp.web.Response()
        if fault.how == "cut":
            answer = await super().__call__(raw)
            body = answer.body if isinstance(answer, aiohttp.web.Response) else b""
            cut = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            cut.content_length = len(body)
            await cut.prepare(raw)
            await cut.write(bytes(body[: len(body) // 2]))
            raw.transport.close()  # type: ignore[union-attr]
            return cut
        await raw.read()
        self._requests.append(await rendering.Request._parse(raw, id=len(self._requests)))
        return aiohttp.web.json_response(
            {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": fault.status,
             "reason": fault.reason, "message": fault.message}, status=fault.status,
            headers={"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None)


@dataclass
class Cluster:
    """A running emulator: its URL, the emulator (requests, objects, forbidden), and a kubeconfig writer."""

    url: str
    emulator: PagingEmulator

    def kubeconfig(self, path: Path, context: str = "test") -> Path:
        """Write a kubeconfig whose current context `context` points at this server (token auth, plain HTTP)."""
        return write_kubeconfig(path, {context: self.url}, context)

    def list_requests(self, path: str) -> list[Any]:
        """The requests that listed the collection at `path` (e.g. /api/v1/pods)."""
        return [r for r in self.emulator if r.method == "GET" and r.url.path == path]


def install(emulator: PagingEmulator, objects: Iterable[dict[str, Any]]) -> None:
    """Serve the built-in resources and those of every CRD among `objects` (empty lists, as a real cluster
    answers), and store the objects under their resource."""
    objects = list(objects)
    plurals: dict[tuple[str, str], resource] = {}  # (apiVersion, kind) → resource
    served = [(api, plural, kind) for api, plural, kind in _BUILTIN]
    for o in objects:
        if o["kind"] == "CustomResourceDefinition":
            spec = o["spec"]
            served += [(f"{spec['group']}/{v['name']}", spec["names"]["plural"], spec["names"]["kind"])
                       for v in spec["versions"] if v.get("served")]
    for api, plural, kind in served:
        group, _, version = api.rpartition("/")
        res = resource(group=group, version=version, plural=plural)
        emulator.resources[res] = ResourceInfo(kind=kind, verbs=_VERBS)
        plurals[(api, kind)] = res
    for o in objects:
        meta = o["metadata"]
        res = plurals.get((o["apiVersion"], o["kind"]))
        if res is None:  # a kind meshstep does not read (ServiceAccount, Job …): served under a guessed plural
            group, _, version = o["apiVersion"].rpartition("/")
            if group not in _BUILTIN_GROUPS:  # a custom kind without its CRD: an API server would hold none
                continue
            res = resource(group=group, version=version, plural=o["kind"].lower() + "s")
        emulator.objects[res, meta.get("namespace"), meta["name"]] = o


@contextmanager
def serve(objects: Iterable[dict[str, Any]] = (), forbidden: Iterable[str] = (),
          faults: Iterable[Fault] = ()) -> Iterator[Cluster]:
    """Run a PagingEmulator holding `objects` on a loopback port until the block ends (a FaultyEmulator, given
    faults)."""
    faults = list(faults)
    emulator = FaultyEmulator() if faults else PagingEmulator()
    if isinstance(emulator, FaultyEmulator):
        emulator.faults = faults
    emulator.forbidden.update(forbidden)
    install(emulator, objects)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None
    url: list[str] = []
    failure: list[BaseException] = []

    async def run() -> None:
        nonlocal stop
        stop = asyncio.Event()
        try:
            async with emulator, Server(emulator) as server:
                url.append(str(server.url).rstrip("/"))
                started.set()
                await stop.wait()
        except BaseException as e:  # reported to the test thread below
            failure.append(e)
            started.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    started.wait(10)
    if failure or not url:
        raise RuntimeError(f"the loopback Kubernetes API did not start: {failure}")
    try:
        yield Cluster(url[0], emulator)
    finally:
        loop.call_soon_threadsafe(stop.set)  # type: ignore[union-attr]
        thread.join(10)
        loop.close()
