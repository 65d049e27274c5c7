"""A real Kubernetes API on loopback for tests: kmock's KubernetesEmulator, taught what meshstep relies on
(list pagination with `limit`/`continue`, `labelSelector`, metadata-only lists, 403 for chosen resources),
served from a background thread with its own event loop so that the synchronous `kubernetes` client can
talk to it over HTTP."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmock import KubernetesEmulator, KubernetesError, ResourceInfo, Server, resource
from kmock._internal import parsing

from benchmarks.kubeapi import list_page, metadata_list, write_kubeconfig

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
    # Seconds each list answer waits, so that overlapping requests show in `most_in_flight`.
    delay: float
    in_flight: int
    most_in_flight: int

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.forbidden = set()
        self.honour_metadata_only = True
        self.delay = 0.0
        self.in_flight = self.most_in_flight = 0

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
        emulator.resources[res] = ResourceInfo(kind=kind)
        plurals[(api, kind)] = res
    for o in objects:
        meta = o["metadata"]
        res = plurals.get((o["apiVersion"], o["kind"]))
        if res is None:  # a kind meshstep does not read (ServiceAccount, Job …): served under a guessed plural
            group, _, version = o["apiVersion"].rpartition("/")
            res = resource(group=group, version=version, plural=o["kind"].lower() + "s")
        emulator.objects[res, meta.get("namespace"), meta["name"]] = o


@contextmanager
def serve(objects: Iterable[dict[str, Any]] = (), forbidden: Iterable[str] = ()) -> Iterator[Cluster]:
    """Run a PagingEmulator holding `objects` on a loopback port until the block ends."""
    emulator = PagingEmulator()
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
