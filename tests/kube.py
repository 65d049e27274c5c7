"""A real Kubernetes API on loopback for tests: kmock's KubernetesEmulator, taught what meshstep relies on
(list pagination with `limit`/`continue`, `labelSelector`, metadata-only lists, 403 for chosen resources,
aggregated discovery), served from a background thread with its own event loop so that the synchronous
`kubernetes` client can talk to it over HTTP; and FaultyEmulator, which answers chosen requests with the faults a
real API server produces (each as the Kubernetes documentation page cited beside it describes); and WritableEmulator,
which takes writes, keeps their history and replays it to watches (from a resourceVersion, until timeoutSeconds,
410 Expired once compacted)."""
from __future__ import annotations

import asyncio
import copy
import json
import re
import socket
import struct
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import yaml
from kmock import KubernetesEmulator, KubernetesError, ResourceInfo, Server, resource
from kmock._internal import parsing, rendering

from benchmarks.kubeapi import aggregated_discovery, list_page, metadata_list, write_kubeconfig
from cluster.kubectl_apply import merge_patch

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
_CLUSTER_SCOPED = {"namespaces", "nodes", "mutatingwebhookconfigurations", "validatingwebhookconfigurations",
                   "customresourcedefinitions"}

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

    def list_version(self) -> str:
        """The resourceVersion a list is read at (one that nothing can be watched from: this emulator keeps no
        history of changes; WritableEmulator does)."""
        return "1"

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
                                int(request.params.get("continue") or 0), int(request.params.get("limit") or 0),
                                self.list_version())
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

    def apply_as(self, manager: str, path: str, config: dict[str, Any]) -> None:
        """Server-side apply `config` at `path` as field manager `manager` (Argo CD, kubectl …), over HTTP."""
        request = urllib.request.Request(f"{self.url}{path}?fieldManager={manager}", method="PATCH",
                                         data=json.dumps(config).encode(),
                                         headers={"Content-Type": "application/apply-patch+yaml"})
        with urllib.request.urlopen(request) as answer:
            assert answer.status == 200

    def list_requests(self, path: str) -> list[Any]:
        """The requests that listed the collection at `path` (e.g. /api/v1/pods)."""
        return [r for r in self.emulator if r.method == "GET" and r.url.path == path and "watch" not in r.params]

    def watch_requests(self, path: str) -> list[Any]:
        """The requests that watched the collection at `path`."""
        return [r for r in self.emulator if r.method == "GET" and r.url.path == path and "watch" in r.params]


def install(emulator: PagingEmulator, objects: Iterable[dict[str, Any]]) -> None:
    """Serve the built-in resources and those of every CRD among `objects` (empty lists, as a real cluster
    answers), and store the objects under their resource."""
    objects = list(objects)
    plurals: dict[tuple[str, str], resource] = {}  # (apiVersion, kind) → resource
    served = [(api, plural, kind, plural not in _CLUSTER_SCOPED) for api, plural, kind in _BUILTIN]
    for o in objects:
        if o["kind"] == "CustomResourceDefinition":
            spec = o["spec"]
            served += [(f"{spec['group']}/{v['name']}", spec["names"]["plural"], spec["names"]["kind"],
                        spec.get("scope", "Namespaced") == "Namespaced") for v in spec["versions"] if v.get("served")]
    for api, plural, kind, namespaced in served:
        group, _, version = api.rpartition("/")
        res = resource(group=group, version=version, plural=plural)
        emulator.resources[res] = ResourceInfo(kind=kind, verbs=_VERBS, namespaced=namespaced)
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
          faults: Iterable[Fault] = (), writes: bool = False) -> Iterator[Cluster]:
    """Run a PagingEmulator holding `objects` on a loopback port until the block ends (a FaultyEmulator, given
    faults; a WritableEmulator, with `writes`: then every object has a resourceVersion, as an API server gives
    each)."""
    faults = list(faults)
    emulator = WritableEmulator() if writes else FaultyEmulator() if faults else PagingEmulator()
    if isinstance(emulator, FaultyEmulator):
        emulator.faults = faults
    emulator.forbidden.update(forbidden)
    install(emulator, objects)
    if isinstance(emulator, WritableEmulator):
        for key, obj in list(emulator.objects.items()):
            emulator.objects[key] = {**obj.raw, "metadata": {**obj.raw["metadata"],
                                                             "resourceVersion": emulator.stamp()}}
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


# ---------------------------------------------------------------- writes: server-side apply, update, delete

# Fields the API server sets or reads apart from an applied configuration: never owned by a field manager.
_SERVER_SET = {"resourceVersion", "managedFields", "uid", "creationTimestamp", "generation", "selfLink"}
_IDENTITY = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}


def leaves(obj: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Each field set in `obj`, by path, as field management tracks them: maps are granular (each key its own
    field) and lists atomic, the default for custom resources whose schema declares no list type
    (https://kubernetes.io/docs/reference/using-api/server-side-apply/#merge-strategy)."""
    found: dict[tuple[str, ...], Any] = {}
    for key, value in obj.items():
        path = (*prefix, key)
        if path in _IDENTITY or (prefix == ("metadata",) and key in _SERVER_SET) or path == ("status",):
            continue
        if isinstance(value, dict) and value:
            found |= leaves(value, path)
        else:
            found[path] = value
    return found


def fields_v1(paths: Iterable[tuple[str, ...]]) -> dict[str, Any]:
    """Paths as managedFields' FieldsV1 (`{"f:spec": {"f:host": {}}}`)."""
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return tree


def _paths_of(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for key, sub in tree.items():
        path = (*prefix, key[2:])
        out |= _paths_of(sub, path) if sub else {path}
    return out


Held = dict[tuple[str, str], set[tuple[str, ...]]]  # (manager, operation) → the fields that entry owns


def owners(obj: dict[str, Any] | None) -> Held:
    """An object's managedFields: one entry per manager and operation, so that a manager's Apply and its Update
    (a PUT) own fields apart, and an apply removes only what its Apply entry owned
    (https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management)."""
    entries = ((obj or {}).get("metadata") or {}).get("managedFields") or []
    return {(e["manager"], e.get("operation", "Apply")): _paths_of(e.get("fieldsV1") or {}) for e in entries}


def _set(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        obj = obj.setdefault(key, {})
    obj[path[-1]] = copy.deepcopy(value)


def _unset(obj: dict[str, Any], path: tuple[str, ...]) -> None:
    node = obj
    for key in path[:-1]:
        node = node.get(key)
        if not isinstance(node, dict):
            return
    node.pop(path[-1], None)


class Refusal(Exception):
    """An error answer of the API server: its HTTP status and Status (reason, message, details)."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def response(self) -> aiohttp.web.Response:
        return aiohttp.web.json_response(
            {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": self.code,
             "reason": self.reason, "message": self.message, **({"details": self.details} if self.details else {})},
            status=self.code)


@dataclass(frozen=True)
class Target:
    """The object a write names: its resource, namespace and name, as the path says them."""

    resource: Any
    namespace: str | None
    name: str

    @property
    def group(self) -> str:
        return self.resource.group

    @property
    def qualified(self) -> str:
        """`virtualservices.networking.istio.io`, as the API server names a resource in its messages."""
        return f"{self.resource.plural}.{self.group}" if self.group else self.resource.plural

    @property
    def key(self) -> tuple[Any, str | None, str]:
        return (self.resource, self.namespace, self.name)


class WritableEmulator(FaultyEmulator):
    """A FaultyEmulator that takes writes as a Kubernetes API server does: server-side apply (PATCH
    application/apply-patch+yaml) with field managers, managedFields and conflicts, updates (PUT) and deletes
    with resourceVersion preconditions, dry runs that change nothing, RBAC refusals and validating webhooks'
    denials. Every write moves the object's resourceVersion, and is kept in a history of changes that watches
    replay (`watch`)."""

    # (verb, resource) the caller's RBAC does not allow: 403 (a plural, or "pods/proxy" for the pod proxy)
    forbidden_writes: set[tuple[str, str]]
    denials: dict[str, str]  # object name → what a validating webhook says denying a write of it
    before_write: Any  # called (target, dry_run) before a write is handled: another client acting in between
    version: int
    config_writes: list[float]  # when each write of Istio config (a *.istio.io resource) was stored
    # (namespace, pod, port) → what answers the pod proxy's requests for a path: (status, JSON body)
    proxied: dict[tuple[str, str, str], Any]
    # Each change stored: (its resourceVersion, the resource, ADDED | MODIFIED | DELETED, the object after it)
    history: list[tuple[int, Any, str, dict[str, Any]]]
    compacted: int  # the resourceVersion up to which the history is gone (compact)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.forbidden_writes, self.denials, self.before_write, self.version = set(), {}, None, 1000
        self.config_writes, self.proxied = [], {}
        self.history, self.compacted = [], 0

    def stamp(self) -> str:
        self.version += 1
        return str(self.version)

    def list_version(self) -> str:
        """A list is read at the latest change (https://kubernetes.io/docs/reference/using-api/api-concepts/
        #resource-versions: a collection's metadata.resourceVersion is the version it was read at)."""
        return str(self.version)

    def compact(self) -> None:
        """What etcd's compaction does (five minutes of history by default): every change so far is forgotten, and
        a watch from a resourceVersion before now answers 410 Expired."""
        self.history.clear()
        self.compacted = self.version

    async def watch(self, raw: aiohttp.web.BaseRequest, parsed: Any) -> aiohttp.web.StreamResponse:
        """A watch from a resourceVersion, as the API server answers it
        (https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes): the
        changes of the resource after that version, in order, one JSON event a line, then those that happen while
        it is open, until `timeoutSeconds` ends it. Refused as a list is (403 for a forbidden plural, 404 for a
        resource not served). A version older than the history kept answers 200 with one ERROR event, a Status
        410 Expired "too old resource version" (#410-gone-responses; the apiserver's watch cache sends it as an
        event rather than an HTTP status, as its uncached watch does). With `allowWatchBookmarks` a BOOKMARK ends
        the stream, carrying the resourceVersion it was current to (#watch-bookmarks: sent at the server's
        discretion, here before each timeout)."""
        self._requests.append(await rendering.Request._parse(raw, id=len(self._requests)))
        res = resource(group=parsed.group, version=parsed.version, plural=parsed.plural)
        if res not in self.resources:
            return Refusal(404, "NotFound", "the server could not find the requested resource").response()
        if parsed.plural in self.forbidden:
            return Refusal(403, "Forbidden", f'{parsed.plural} is forbidden: User "test" cannot watch it').response()
        since = int(raw.query["resourceVersion"])
        answer = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        answer.enable_chunked_encoding()
        await answer.prepare(raw)

        async def send(how: str, obj: dict[str, Any]) -> None:
            await answer.write(json.dumps({"type": how, "object": obj}).encode() + b"\n")

        if since < self.compacted:
            await send("ERROR", {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                 "message": f"too old resource version: {since} ({self.compacted})",
                                 "reason": "Expired", "code": 410})
            await answer.write_eof()
            return answer
        deadline = time.monotonic() + int(raw.query.get("timeoutSeconds") or 1)
        while True:
            for version, changed, how, obj in list(self.history):
                if version > since and (changed.group, changed.plural) == (res.group, res.plural) and \
                        parsed.namespace in (None, obj["metadata"].get("namespace")):
                    await send(how, obj)
                since = max(since, version)
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.02)
        if raw.query.get("allowWatchBookmarks") == "true":
            info = self.resources[res]
            await send("BOOKMARK", {"kind": info.kind, "apiVersion": f"{res.group}/{res.version}".lstrip("/"),
                                    "metadata": {"resourceVersion": str(self.version)}})
        await answer.write_eof()
        return answer

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw.method == "GET" and (via := _POD_PROXY.fullmatch(raw.path)):
            self._requests.append(await rendering.Request._parse(raw, id=len(self._requests)))
            try:
                status, answer = self.proxy(*via.groups())
            except Refusal as e:
                return e.response()
            return aiohttp.web.json_response(answer, status=status)
        if raw.method == "GET" and raw.query.get("watch") in ("true", "1") and "resourceVersion" in raw.query:
            return await self.watch(raw, parsing.parse_path(raw.path))
        if raw.method not in ("PATCH", "PUT", "DELETE", "POST"):
            return await super().__call__(raw)
        parsed = parsing.parse_path(raw.path)
        if parsed.group is None or bool(parsed.name) == (raw.method == "POST") or parsed.subresource:
            return await super().__call__(raw)
        request = await rendering.Request._parse(raw, id=len(self._requests))
        self._requests.append(request)
        # A create is POSTed to the collection: the object names itself.
        name = parsed.name or ((yaml.safe_load(request.body or b"") or {}).get("metadata") or {}).get("name", "")
        target = Target(resource(group=parsed.group, version=parsed.version, plural=parsed.plural),
                        parsed.namespace, name)
        dry_run = raw.query.get("dryRun") == "All"
        try:
            if self.before_write is not None:
                self.before_write(target, dry_run)
            answer = self.write(raw.method, target, request.body, dict(raw.query), raw.headers.get("Content-Type"))
        except Refusal as e:
            return e.response()
        return aiohttp.web.json_response(answer, status=200)

    def write(self, method: str, target: Target, body: bytes, query: dict[str, str], content_type: str | None
              ) -> dict[str, Any]:
        """The object after the write (not stored on a dry run), or a Refusal."""
        verb = {"PATCH": "patch", "PUT": "update", "DELETE": "delete", "POST": "create"}[method]
        self.authorize(verb, target)
        stored = self.objects[target.key] if target.key in self.objects else None  # noqa: SIM401 (no .get)
        live = None if stored is None or stored.deleted else copy.deepcopy(stored.raw)
        if method == "DELETE":
            after = self.delete(target, live, body)
        elif method == "POST":
            after = self.create(target, live, yaml.safe_load(body) or {}, query.get("fieldManager") or "unknown")
        elif method == "PUT":
            after = self.update(target, live, yaml.safe_load(body) or {}, query.get("fieldManager") or "unknown")
        elif content_type == "application/merge-patch+json":
            after = self.merge_patch(target, live, yaml.safe_load(body) or {}, query.get("fieldManager") or "unknown")
        else:
            if content_type != "application/apply-patch+yaml":
                raise Refusal(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                                                           "accepted media types include: "
                                                           "application/apply-patch+yaml, "
                                                           "application/merge-patch+json")
            manager = query.get("fieldManager")
            if not manager:  # https://kubernetes.io/docs/reference/using-api/server-side-apply/#using-server-side-apply-in-a-controller
                raise Refusal(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required "
                                              "value: is required for apply patch")
            after = self.apply(target, live, yaml.safe_load(body) or {}, manager, query.get("force") == "true")
        self.admit(target, after)
        # Dry run, a DELETE's as well as a write's: every stage of the request is run (authorization, the
        # preconditions, admission), and nothing is stored or deleted
        # (https://kubernetes.io/docs/reference/using-api/api-concepts/#dry-run).
        if query.get("dryRun") != "All":
            if target.group.endswith("istio.io"):
                self.config_writes.append(time.time())
            if method == "DELETE":
                del self.objects[target.key]
                gone = copy.deepcopy(after)
                gone["metadata"]["resourceVersion"] = self.stamp()
                self.history.append((self.version, target.resource, "DELETED", gone))
                if target.resource.plural == "customresourcedefinitions":
                    self.unserve(after)
            else:
                self.objects[target.key] = after
                self.history.append((int(after["metadata"]["resourceVersion"]), target.resource,
                                     "MODIFIED" if live is not None else "ADDED", copy.deepcopy(after)))
        return after

    def unserve(self, crd: dict[str, Any]) -> None:
        """A CustomResourceDefinition deleted: its resources are no longer served, and its objects are gone
        (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
        #delete-a-customresourcedefinition)."""
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        for res in [r for r in self.resources if (r.group, r.plural) == (group, plural)]:
            del self.resources[res]
            for key in [k for k in self.objects if k[0] == res]:
                del self.objects[key]

    def proxy(self, namespace: str, pod: str, port: str, path: str) -> tuple[int, Any]:
        """A GET through the API server's pod proxy, `/api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH`
        (https://kubernetes.io/docs/tasks/access-application-cluster/access-cluster-services/
        #manually-constructing-apiserver-proxy-urls): the `pods/proxy` subresource under RBAC (403, as the API
        server words it), 404 for a pod the cluster does not have, 503 when nothing answers on the port (the API
        server's "error trying to reach service"); else the backend's own answer, whatever its status."""
        if ("get", "pods/proxy") in self.forbidden_writes:
            raise Refusal(403, "Forbidden", f'pods "{pod}:{port}" is forbidden: User '
                                            '"system:serviceaccount:ops:meshstep" cannot get resource '
                                            f'"pods/proxy" in API group "" in the namespace "{namespace}"',
                          {"name": f"{pod}:{port}", "kind": "pods"})
        key = (resource(group="", version="v1", plural="pods"), namespace, pod)
        if key not in self.objects or self.objects[key].deleted:
            raise Refusal(404, "NotFound", f'pods "{pod}" not found', {"name": pod, "kind": "pods"})
        backend = self.proxied.get((namespace, pod, port))
        if backend is None:
            raise Refusal(503, "ServiceUnavailable", f"error trying to reach service: dial tcp 10.244.0.12:{port}: "
                                                     "connect: connection refused")
        return backend("/" + path)

    def authorize(self, verb: str, target: Target) -> None:
        """RBAC's refusal, in the API server's words (https://kubernetes.io/docs/reference/access-authn-authz/
        authorization/#review-your-request-attributes): 403 Forbidden naming the user, the verb and the resource."""
        if (verb, target.resource.plural) in self.forbidden_writes:
            where = f' in the namespace "{target.namespace}"' if target.namespace else ""
            raise Refusal(403, "Forbidden", f'{target.qualified} "{target.name}" is forbidden: User '
                                            f'"system:serviceaccount:ops:meshstep" cannot {verb} resource '
                                            f'"{target.resource.plural}" in API group "{target.group}"{where}',
                          {"name": target.name, "group": target.group, "kind": target.resource.plural})

    def admit(self, target: Target, after: dict[str, Any]) -> None:
        """A validating webhook's denial, as the API server relays it: 400 unless the webhook chose a code
        (https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#response), its
        message after `admission webhook "NAME" denied the request:`. Istio's validating webhook has
        sideEffects None, so dry runs are admitted by it too."""
        said = self.denials.get(target.name)
        if said is not None:
            raise Refusal(400, "BadRequest", f'admission webhook "validation.istio.io" denied the request: {said}')

    def apply(self, target: Target, live: dict[str, Any] | None, config: dict[str, Any], manager: str,
              force: bool) -> dict[str, Any]:
        """Server-side apply (https://kubernetes.io/docs/reference/using-api/server-side-apply/), as its sections
        say: the fields the configuration sets become the manager's Apply entry's (#field-management); a field
        another entry owns with the same value is shared, both owning it; set to another value it is a conflict
        (409, each one a cause naming the manager and the field) unless forced, when the other entry loses it
        (#conflicts); fields the manager's Apply entry owned and the configuration no longer sets are removed unless
        another entry owns them too (#merge-strategy); a resourceVersion in the configuration is a precondition."""
        self.precondition(target, live, (config.get("metadata") or {}).get("resourceVersion"))
        wanted = leaves(config)
        have = leaves(live) if live else {}
        me = (manager, "Apply")
        held = owners(live)
        conflicts = sorted({(other[0], path) for path, value in wanted.items() if have.get(path, _ABSENT) != value
                            for other, paths in held.items() if other != me and path in paths})
        if conflicts and not force:
            raise self.conflict(target, config.get("apiVersion", ""), conflicts)
        after = copy.deepcopy(live) if live else {"apiVersion": config.get("apiVersion"), "kind": config.get("kind"),
                                                  "metadata": {"name": target.name, "uid": f"uid-{self.stamp()}",
                                                               "creationTimestamp": "2026-01-01T00:00:00Z",
                                                               **({"namespace": target.namespace}
                                                                  if target.namespace else {})}}
        mine = held.pop(me, set())
        for path in mine - set(wanted) - set().union(*held.values()):
            _unset(after, path)
        for path, value in wanted.items():
            _set(after, path, value)
        held = {k: paths - {p for _m, p in conflicts} for k, paths in held.items()}
        held[me] = set(wanted)
        return self.stored(after, held, config.get("apiVersion", ""), me)

    def update(self, target: Target, live: dict[str, Any] | None, body: dict[str, Any], manager: str
               ) -> dict[str, Any]:
        """PUT: the object replaced, under its resourceVersion precondition (https://kubernetes.io/docs/reference/
        using-api/api-concepts/#resource-versions); managedFields sent with it replace the recorded ones, and the
        manager's Update entry owns what it changed, which every other entry loses, its Apply entry included
        (https://kubernetes.io/docs/reference/using-api/server-side-apply/#clearing-managedfields,
        and #field-management: a change made by an update moves the field's ownership to its updater)."""
        if live is None:
            raise Refusal(404, "NotFound", f'{target.qualified} "{target.name}" not found')
        self.precondition(target, live, (body.get("metadata") or {}).get("resourceVersion"), required=True)
        after = copy.deepcopy(body)
        meta = after.setdefault("metadata", {})
        for key in ("uid", "creationTimestamp"):
            meta[key] = live["metadata"].get(key)
        held = owners(after) if meta.get("managedFields") else owners(live)
        have, now = leaves(live), leaves(after)
        changed = {p for p in set(have) | set(now) if have.get(p, _ABSENT) != now.get(p, _ABSENT)}
        mine = held.pop((manager, "Update"), set())
        held = {k: paths - changed for k, paths in held.items()}
        held[manager, "Update"] = (mine | changed) & set(now)
        return self.stored(after, held, body.get("apiVersion", ""), (manager, "Update"))

    def merge_patch(self, target: Target, live: dict[str, Any] | None, patch: dict[str, Any], manager: str
                    ) -> dict[str, Any]:
        """PATCH application/merge-patch+json: the patch merged into the object as RFC 7386 says (a null removes a
        field, an object merges, anything else replaces; https://kubernetes.io/docs/tasks/manage-kubernetes-objects/
        update-api-object-kubectl-patch/#use-a-json-merge-patch-to-update-a-deployment), an update as far as field
        management goes; a resourceVersion in the patch is a precondition (https://kubernetes.io/docs/reference/
        using-api/api-concepts/#resource-versions), none means the object as it is."""
        if live is None:
            raise Refusal(404, "NotFound", f'{target.qualified} "{target.name}" not found')
        after = merge_patch(live, copy.deepcopy(patch))
        after["metadata"]["resourceVersion"] = (patch.get("metadata") or {}).get("resourceVersion") or \
            live["metadata"]["resourceVersion"]
        return self.update(target, live, after, manager)

    def delete(self, target: Target, live: dict[str, Any] | None, body: bytes) -> dict[str, Any]:
        """DELETE, under DeleteOptions' preconditions: the resourceVersion it names must be the object's, else 409
        Conflict (https://kubernetes.io/docs/reference/kubernetes-api/common-parameters/common-parameters/
        #body-deleteoptions); a missing object is 404. The answer is the object deleted."""
        if live is None:
            raise Refusal(404, "NotFound", f'{target.qualified} "{target.name}" not found')
        preconditions = ((yaml.safe_load(body) if body else None) or {}).get("preconditions") or {}
        self.precondition(target, live, preconditions.get("resourceVersion"))
        return live

    def create(self, target: Target, live: dict[str, Any] | None, body: dict[str, Any], manager: str
               ) -> dict[str, Any]:
        """POST to the collection: the object created, 409 AlreadyExists when one of that name exists
        (https://kubernetes.io/docs/reference/using-api/api-concepts/#api-verbs); what the server sets (uid,
        creationTimestamp, resourceVersion) set anew, the manager owning every field it sent, as an Update
        (https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management)."""
        if live is not None:
            raise Refusal(409, "AlreadyExists", f'{target.qualified} "{target.name}" already exists',
                          {"name": target.name, "group": target.group, "kind": target.resource.plural})
        after = copy.deepcopy(body)
        meta = after.setdefault("metadata", {})
        for key in ("resourceVersion", "managedFields", "uid", "creationTimestamp"):
            meta.pop(key, None)
        meta.update(uid=f"uid-{self.stamp()}", creationTimestamp="2026-01-01T00:00:00Z",
                    **({"namespace": target.namespace} if target.namespace else {}))
        writer = (manager, "Update")
        return self.stored(after, {writer: set(leaves(body))}, body.get("apiVersion", ""), writer)

    def precondition(self, target: Target, live: dict[str, Any] | None, version: str | None,
                     required: bool = False) -> None:
        """A resourceVersion the request names must be the object's: else 409, the API server's optimistic
        concurrency (https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions)."""
        if version is None and not required:
            return
        if live is None or live["metadata"].get("resourceVersion") != version:
            raise Refusal(409, "Conflict", f'Operation cannot be fulfilled on {target.qualified} "{target.name}": '
                                           "the object has been modified; please apply your changes to the latest "
                                           "version and try again",
                          {"name": target.name, "group": target.group, "kind": target.resource.plural})

    def conflict(self, target: Target, api_version: str, conflicts: list[tuple[str, tuple[str, ...]]]) -> Refusal:
        """409 as the API server words an apply conflict: a cause per field, naming its manager
        (https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts)."""
        causes = [{"reason": "FieldManagerConflict", "message": f'conflict with "{m}" using {api_version}',
                   "field": "." + ".".join(path)} for m, path in conflicts]
        said = "\n".join(f"{c['message']}: {c['field']}" for c in causes)
        return Refusal(409, "Conflict", f"Apply failed with {len(causes)} conflict{'s' if len(causes) > 1 else ''}: "
                                        f"{said}",
                       {"name": target.name, "group": target.group, "kind": target.resource.plural,
                        "causes": causes})

    def stored(self, obj: dict[str, Any], held: Held, api_version: str, writer: tuple[str, str]) -> dict[str, Any]:
        """The object with its managedFields and a new resourceVersion, as a write leaves it. Each entry keeps its
        time, the writer's is now (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/
        object-meta/#ObjectMeta: managedFields.time, updated when the manager changes its fields)."""
        meta = obj.setdefault("metadata", {})
        times = {(e["manager"], e.get("operation", "Apply")): e.get("time") for e in meta.get("managedFields") or ()}
        times[writer] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        meta["managedFields"] = [{"manager": m, "operation": op, "apiVersion": api_version,
                                  "time": times.get((m, op)), "fieldsType": "FieldsV1",
                                  "fieldsV1": fields_v1(sorted(paths))} for (m, op), paths in sorted(held.items())
                                 if paths]
        meta["resourceVersion"] = self.stamp()
        return obj


_ABSENT = object()
# The API server's pod proxy path (WritableEmulator.proxy).
_POD_PROXY = re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/:]+):([^/]+)/proxy/(.*)")


def claim(emulator: WritableEmulator, manager: str, operation: str = "Update") -> None:
    """Every object's fields owned by `manager` (kubectl's client-side apply, Argo CD …), each object with a
    resourceVersion: what a cluster whose objects were written by that client holds."""
    for key, obj in list(emulator.objects.items()):
        if obj.deleted:
            continue
        raw = copy.deepcopy(obj.raw)
        emulator.objects[key] = emulator.stored(raw, {(manager, operation): set(leaves(raw))},
                                                raw.get("apiVersion", ""), (manager, operation))


def rollout_restart(emulator: WritableEmulator, source: str, namespace: str) -> None:
    """What the team's `kubectl rollout restart` (a stage's notes) does on a real cluster, played on the emulator,
    which runs neither Kubernetes' controllers nor Istio's injector: the namespace's pods, read from `source` (the
    emulator's context), come back as the injector makes them (cluster/injector.py, the rehearsal's model)."""
    from cluster.injector import reinjected
    from cluster.inventory import build_inventory
    from cluster.sources import load_snapshot

    for pod in reinjected(build_inventory(load_snapshot(source)), namespace):
        emulator.objects[resource(group="", version="v1", plural="pods"), namespace, pod["metadata"]["name"]] = pod


def _proxies(emulator: WritableEmulator) -> list[tuple[str, str]]:
    """(proxy ID, type) of every pod with an istio-proxy container, classic or native: `NAME.NAMESPACE`, as istiod
    names the proxies connected to it; a pod not injected but running the proxy image alone is a gateway."""
    found = []
    for (res, ns, name), obj in emulator.objects.items():
        spec = obj.raw.get("spec") or {}
        if res.plural != "pods" or obj.deleted:
            continue
        containers = [c.get("name") for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])]
        if "istio-proxy" in containers:
            found.append((f"{name}.{ns}", "sidecar" if len(containers) > 1 else "router"))
    return sorted(found)


def pilot(emulator: WritableEmulator, namespace: str, pod: str, push_after: float = 1.0, ack_after: float = 0.5,
          nack: bool = False, replica: tuple[int, int] = (0, 1)) -> None:
    """istiod pod `pod` as the API server's pod proxy reaches it on port 15014: its /debug/syncz lists each proxy
    connected to it (pilot/pkg/xds/debug.go's SyncStatus: `proxy`, `proxy_type`, and per xDS type the nonce last
    sent and last acknowledged) — replica (i, n) of n has every n-th proxy, as the istiod Service spreads their
    connections. A write of Istio config is pushed to every proxy `push_after` seconds later (its debounce), with a
    nonce that starts with the push's version, the time of the push in RFC 3339 (pilot/pkg/xds/discovery.go:
    `nonce(PushVersion)`); each proxy acknowledges a push `ack_after` seconds after it, unless it rejects the config
    (`nack`: Envoy's NACK leaves the last acknowledged nonce as it was)."""
    started = time.time() - 60

    def nonce(pushed: float, index: int) -> str:
        return (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(pushed)) + f"/{index}"
                + str(uuid.uuid5(uuid.NAMESPACE_OID, str(index))))

    def syncz(path: str) -> tuple[int, Any]:
        if path != "/debug/syncz":
            return 404, {"error": "404 page not found"}
        now = time.time()
        pushes = [started, *(t + push_after for t in emulator.config_writes if t + push_after <= now)]
        sent = nonce(pushes[-1], len(pushes))
        acked = [i for i, t in enumerate(pushes, 1) if t + ack_after <= now and (not nack or i == 1)]
        ack = nonce(pushes[acked[-1] - 1], acked[-1])
        xds = ("cluster", "listener", "route", "endpoint")
        return 200, [{"cluster_id": "Kubernetes", "proxy": proxy, "proxy_type": kind, "istio_version": "1.27.3",
                      **{f"{t}_sent": sent for t in xds}, **{f"{t}_acked": ack for t in xds}}
                     for i, (proxy, kind) in enumerate(_proxies(emulator)) if i % replica[1] == replica[0]]
    emulator.proxied[(namespace, pod, "15014")] = syncz
