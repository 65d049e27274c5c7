"""Reading a live cluster, read-only, through the official client (cluster.kubeapi): every kind meshstep needs,
listed in pages, kinds at once; the Istio and Gateway API kinds found through discovery (cluster.discovery). A list
whose continue token expires (410) is started again; a kind the API refuses (403) is noted as not visible, with the
server's reason, and the rest is read. Pages may be handed on unparsed (RawPage), for the inventory to decode its
pods typed (shapes.POD). A kind kept from the last read (cluster.live_cache: large kinds) is watched from where that
read ended instead of listed, and listed as above whenever its watch fails."""
from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from cluster import kubeapi, live_cache, shapes
from cluster.discovery import discover
from cluster.errors import SourceError
from cluster.kubeapi import DEADLINE, ApiServer, Failed, TooLarge
from cluster.live_cache import Kept
from cluster.model import GATEWAY_API_GROUP, ISTIO_GROUPS
from cluster.snapshot import POD_KIND, Kind, NotVisible, Raw, Snapshot, Visibility, trimmed

PAGE_SIZE = 500
PROGRESS_AFTER = 2.0  # seconds: a read that takes longer says how far it is (on stderr, when that is a terminal)
WORKERS = 6
# Kept kinds watched at once, beside the WORKERS lists (within kubeapi.CONNECTIONS); a kind is kept only when large
# (live_cache.KEPT_FROM), and a cluster has few such kinds.
WATCHES = 8
# How often one kind's list is started again after its continue token expired (410 Expired: the list took longer
# than the server keeps its snapshot, five minutes by default).
RELISTS = 3
_END = object()


@dataclass(frozen=True)
class RawPage(Raw):
    """One page of a live list as the server sent it (JSON bytes), parsed when and where the consumer chooses."""

    kind: Kind
    data: bytes
    where: str  # the server and how it was reached, for errors

    def parse(self) -> list[dict[str, Any]]:
        try:
            page = orjson.loads(self.data)
        except orjson.JSONDecodeError as e:
            raise SourceError(f"listing {self.kind.label} on {self.where}: malformed JSON: {e}") from e
        return _stamp(self.kind, page.get("items") or [], self.where)

    def pods(self) -> list[Any]:
        """The page's pods decoded typed (shapes.POD): only the fields meshstep reads are built."""
        try:
            pods = shapes.decode_pods(self.data)
        except shapes.TypeProblem as e:
            raise self._error(e.index, str(e)) from None
        except msgspec.DecodeError:
            self.parse()  # says what is malformed, as the plain way does
            raise
        for i, p in enumerate(pods):
            if not _named(p):
                raise self._error(i, "metadata.name is required")
        return pods

    def _error(self, index: int | None, problem: str) -> SourceError:
        """The plain way's error for a typed decode's problem: it names the object and the field exactly."""
        try:
            self.parse()
        except SourceError as e:
            return e
        item = (orjson.loads(self.data).get("items") or [None])[index or 0] if index is not None else None
        obj = f"{shapes.ref({**item, 'kind': self.kind.kind})}: " if isinstance(item, dict) else ""
        return SourceError(f"listing {self.kind.label} on {self.where}: {obj}{problem}")



@dataclass(frozen=True)
class DecodedPods(Raw):
    """Pods already decoded typed (shapes.POD): by the reader, to keep them, or kept from the last read
    (cluster.live_cache). As dicts they have the fields meshstep reads, null where absent."""

    kind: Kind
    decoded: list[Any]

    def parse(self) -> list[dict[str, Any]]:
        return [{**msgspec.to_builtins(p), "kind": self.kind.kind, "apiVersion": self.kind.api_version}
                for p in self.decoded]

    def pods(self) -> list[Any]:
        return self.decoded


def _stamp(kind: Kind, items: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """A live list's items with their kind and apiVersion (list items carry none of their own), shapes checked."""
    for item in items:
        if not isinstance(item, dict):
            raise SourceError(f"listing {kind.label} on {where}: an item is {shapes.describe(item)}, not an object")
        item["kind"] = kind.kind
        item["apiVersion"] = kind.api_version
        found = shapes.problem(item)
        if found:
            raise SourceError(f"listing {kind.label} on {where}: {shapes.ref(item)}: {found}")
    return items



# What meshstep reads of every cluster. ConfigMaps only where Istio keeps its own (labelled istio.io/rev);
# Secrets as metadata only: meshstep never reads a secret's values.
CORE_KINDS = (
    Kind("namespaces", "/api/v1/namespaces", "Namespace", "v1"),
    POD_KIND,
    Kind("services", "/api/v1/services", "Service", "v1"),
    Kind("nodes", "/api/v1/nodes", "Node", "v1"),
    Kind("configmaps", "/api/v1/configmaps", "ConfigMap", "v1", label_selector="istio.io/rev"),
    Kind("secrets", "/api/v1/secrets", "Secret", "v1", metadata_only=True),
    Kind("deployments", "/apis/apps/v1/deployments", "Deployment", "apps/v1"),
    Kind("statefulsets", "/apis/apps/v1/statefulsets", "StatefulSet", "apps/v1"),
    Kind("daemonsets", "/apis/apps/v1/daemonsets", "DaemonSet", "apps/v1"),
    Kind("mutatingwebhookconfigurations", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
         "MutatingWebhookConfiguration", "admissionregistration.k8s.io/v1"),
    Kind("validatingwebhookconfigurations", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
         "ValidatingWebhookConfiguration", "admissionregistration.k8s.io/v1"),
)
CRD_KIND = Kind("customresourcedefinitions", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                "CustomResourceDefinition", "apiextensions.k8s.io/v1")


def _list_metadata(data: bytes) -> dict[str, Any]:
    """A list page's metadata (its continue token), read from what precedes `items` (where the API
    server writes it) without parsing the items; the whole page is parsed when the metadata is not found there."""
    i = data.find(b'"items"')
    if i > 0:
        try:
            meta = orjson.loads(data[:i].rstrip().rstrip(b",") + b"}").get("metadata")
        except orjson.JSONDecodeError:
            meta = None
        if isinstance(meta, dict):
            return meta
    return orjson.loads(data).get("metadata") or {}


def live_snapshot(context: str | None, api_client: Any = None, page_size: int | None = None,
                  progress: Callable[[str], None] | None = None) -> Snapshot:
    """A live cluster through kubeconfig (optionally a named context) or in-cluster config; read-only. A read
    that takes a while reports how far it is to `progress` (default: stderr, when it is a terminal; "" ends it)."""
    user, given = "", api_client is not None
    if not given:
        api_client, user = kubeapi.api_client(context)
    where = f"kubeconfig context {context!r}" if context else "the current kubeconfig context"
    if kubeapi.in_cluster(context) and not given:
        where = "in-cluster configuration"
    reader = _LiveReader(api_client, where, user, page_size or PAGE_SIZE, progress)
    return Snapshot(f"context:{context}" if context else "live", reader.read)


def _stderr_progress() -> Callable[[str], None]:
    """Progress on one line of stderr when a person watches it (a terminal); nothing otherwise."""
    if not sys.stderr.isatty():
        return lambda _line: None

    def show(line: str) -> None:
        sys.stderr.write(f"\r\x1b[K{line}" if line else "\r\x1b[K")
        sys.stderr.flush()
    return show


class _LiveReader:
    """Lists every kind meshstep needs, in pages, kinds concurrently; JSON parsed raw with orjson."""

    def __init__(self, client: Any, where: str, user: str, page_size: int,
                 progress: Callable[[str], None] | None = None):
        self.client, self.where, self.user, self.page_size = client, where, user, page_size
        self.progress = progress if progress is not None else _stderr_progress()
        self.api = ApiServer(client, where, user)
        self.store: live_cache.Store | None = None
        self.shown = 0.0
        self.showing = False
        self.lock = threading.Lock()

    def read(self, visibility: Visibility) -> Iterator[dict[str, Any] | Raw]:
        self.api = ApiServer(self.client, self.where, self.user, progress=self._show)
        self.store = live_cache.Store.open(self.client, self.user)
        self.shown = self.api.started + PROGRESS_AFTER  # when progress is next due
        self.showing = False
        try:
            yield from self._read(visibility)
        finally:
            if self.showing:  # end its line
                self.progress("")

    def _read(self, visibility: Visibility) -> Iterator[dict[str, Any] | Raw]:
        self.api.get("/version", [], "reaching the Kubernetes API server")
        pages: queue.Queue[Any] = queue.Queue(maxsize=WORKERS * 2)
        stop = threading.Event()

        def put(item: Any) -> None:
            while not stop.is_set():
                try:
                    pages.put(item, timeout=0.2)
                    return
                except queue.Full:
                    continue

        def run() -> None:
            try:
                with ThreadPoolExecutor(WORKERS) as pool, ThreadPoolExecutor(WATCHES) as watching:
                    def start(kind: Kind, keep: bool = False) -> Future[list[dict[str, Any]] | None]:
                        # A kept kind's watch mostly waits out its second: apart from the lists, so that the watches
                        # run at once and hold no list up.
                        kept = self.store is not None and self.store.kept(kind) is not None
                        return (watching if kept else pool).submit(self._list, kind, visibility, put, keep)

                    futures = [start(k) for k in CORE_KINDS]
                    crds = start(CRD_KIND, keep=True)
                    kinds = self._custom_kinds(visibility, crds.result, pool.map)
                    futures += [start(k) for k in kinds]
                    for f in [*futures, crds]:
                        f.result()
                put(_END)
            except BaseException as e:  # handed to the consumer, who raises it
                put(e)

        threading.Thread(target=run, name="meshstep-live-read", daemon=True).start()
        try:
            while True:
                item = pages.get()
                if item is _END:
                    if self.store is not None:  # only a read that completed is kept
                        self.store.save()
                    return
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, Raw):  # parsed by the consumer, one page at a time
                    yield item
                else:
                    yield from item
        finally:
            stop.set()

    def _custom_kinds(self, visibility: Visibility, crds: Callable[[], list[dict[str, Any]] | None],
                      each: Any) -> list[Kind]:
        """The Istio and Gateway API kinds to list, from discovery; the CRDs are waited for only for a group whose
        discovery failed (an aggregated API that stayed unavailable), and a kind neither could name is not
        visible. What discovery shows is served also says what is not installed."""
        found = discover(self.api, each)
        visibility.discovered = True
        if not found.groups & set(ISTIO_GROUPS):
            visibility.not_installed.append("istio")
        if GATEWAY_API_GROUP not in found.groups:
            visibility.not_installed.append("gateway-api")
        kinds = found.kinds()
        if found.failed:
            from_crds = [k for k in crd_kinds(crds() or []) if k.api_version.split("/")[0] in found.failed_groups]
            kinds += from_crds
            known = {k.api_version.split("/")[0] for k in from_crds}
            for gv, why in sorted(found.failed.items()):
                if gv.split("/")[0] not in known:
                    visibility.not_visible.append(NotVisible(f"{gv} kinds", gv, f"discovery failed: {why}"))
        return kinds

    def _show(self) -> None:
        """The progress line, at most once a second once the read has taken PROGRESS_AFTER."""
        with self.lock:
            now = time.monotonic()
            if now < self.shown:
                return
            self.shown, self.showing = now + 1.0, True
        api = self.api
        retries = f", {api.retries} retr{'y' if api.retries == 1 else 'ies'}" if api.retries else ""
        self.progress(f"reading {api.at}: {api.requests} answers, {api.bytes / (1 << 20):.1f} MiB{retries}, "
                      f"{now - api.started:.0f} s of at most {DEADLINE.value} s")

    def _list(self, kind: Kind, visibility: Visibility, put: Callable[[Any], None],
              keep: bool = False) -> list[dict[str, Any]] | None:
        """Pages through one kind: 403 → not visible, 404 → not served, 410 on a continue token → the list is
        started again (at most RELISTS times); every other failure raises, naming server, context and kind. A kind
        kept from the last read is watched instead, and listed when its watch fails; one whose list reaches
        live_cache.KEPT_FROM is kept for the next read."""
        kept: list[dict[str, Any]] = []
        store = self.store if self.store is not None and live_cache.watched(kind) else None
        if store is not None and (was := store.kept(kind)) is not None and (now := self._watch(was)) is not None:
            store.keep(kind, now.resource_version, now.items)
            for raw in self._kept_pages(now):
                self._hand_on(raw, keep, kept, put)
            return kept
        # What the store keeps of the list (_kept), and the resourceVersion of its first page (after a relist, the
        # older one: a watch from there replays every change since). Pods are decoded here once, for the consumer
        # and the store; another kind's pages are handed on as they came and made items only if the whole list
        # reaches KEPT_FROM (most never do).
        items: list[tuple[str, str, bytes]] | None = [] if store is not None else None
        listed: list[RawPage] = []
        version, size = "", 0
        token, after, relists = None, None, 0
        last: RawPage | None = None
        what = f"listing {kind.label}"
        while True:
            query: list[tuple[str, Any]] = [("limit", self.page_size)]
            if token:
                query.append(("continue", token))
            if kind.label_selector:
                query.append(("labelSelector", kind.label_selector))
            accept = ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
                      if kind.metadata_only else "application/json")
            try:
                data = self.api.get(kind.path, query, what, accept)
            except Failed as e:
                if e.status == 403:
                    visibility.not_visible.append(NotVisible(kind.kind, kind.label, e.why, forbidden=True))
                    return None
                if e.status == 404:
                    return None
                if e.status == 410 and token and relists < RELISTS:
                    # The server no longer has the snapshot the token pages through: a new list, from the start,
                    # handing on only what follows the last object already handed on.
                    relists += 1
                    token, after = None, (_last_key(last) if last else None) or after
                    kubeapi.log.info("%s on %s: %s; listing it again from the start (%d of %d)", what, self.api.at,
                                     e.why, relists, RELISTS)
                    continue
                if e.status == 410:
                    raise SourceError(f"{e}: the list changed faster than it could be paged through, {relists + 1} "
                                      "times; retry") from None
                raise
            meta = _list_metadata(data)
            token, version, size = meta.get("continue") or None, version or meta.get("resourceVersion") or "", \
                size + len(data)
            page = RawPage(kind, data, self.api.at)
            if after is not None:
                page, after = _after(page, after)
            last = page
            raw: Raw | list[dict[str, Any]] = page
            if items is not None and kind.kind == POD_KIND.kind:
                raw, more = _kept(page)
                items.extend(more)
            elif items is not None:
                listed.append(page)
            self._hand_on(raw, keep, kept, put)
            if not token:
                if store is not None and items is not None and version and size >= live_cache.KEPT_FROM.bytes:
                    store.keep(kind, version, items + [item for p in listed for item in _kept(p)[1]])
                return kept

    @staticmethod
    def _hand_on(page: Raw | list[dict[str, Any]], keep: bool, kept: list[dict[str, Any]],
                 put: Callable[[Any], None]) -> None:
        """A page to the consumer: as it is, or parsed and kept (the CRDs). Pages wait in the queue as bytes where
        they can and are parsed by the consumer as it reaches them: parsed, a page takes ~8x its JSON size, and a
        slower consumer would otherwise hold a queue of them."""
        if keep:
            page = page.parse() if isinstance(page, Raw) else page
            kept.extend(page)
        put(page)

    def _watch(self, was: Kept) -> Kept | None:
        """The kind brought up to date from where it was last read: watched from its resourceVersion for
        WATCH_SECONDS, each ADDED, MODIFIED and DELETED applied to its items, a BOOKMARK moving the resourceVersion
        on; None (list it afresh) when the watch fails in any way — refused (403: the list says whether the kind is
        still visible), an ERROR event (410 Expired: the history since was compacted), a stream cut off, more
        changes than an answer may hold."""
        kind, what = was.kind, f"watching {was.kind.label} from resourceVersion {was.resource_version}"
        query = [("watch", "true"), ("resourceVersion", was.resource_version), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", live_cache.WATCH_SECONDS)]
        try:
            data = self.api.get(kind.path, query, what)
        except Failed as e:
            kubeapi.log.info("%s on %s: %s; listing it afresh", what, self.api.at, e.why)
            return None
        except TooLarge as e:  # more changes than one answer may hold (a rollout of every pod): pages hold them
            kubeapi.log.info("%s; listing it afresh", e)
            return None
        items = {(ns, name): item for ns, name, item in was.items}
        version = was.resource_version
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                event = _EVENT.decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError):  # not JSON, or not an object
                event = _Event()
            try:
                head = _HEAD.decode(event.object)
            except (msgspec.DecodeError, msgspec.ValidationError):  # no object, or not one
                head = None
            how = event.type
            if head is None or how not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
                said = head.message if head is not None else None
                kubeapi.log.info("%s on %s: %s; listing it afresh", what, self.api.at,
                                 f"{how} {said}" if how else "the stream broke off")
                return None
            if how != "BOOKMARK":
                ns, name, item = _event_item(kind, event.object, self.api.at)
                if how == "DELETED":
                    items.pop((ns, name), None)
                else:
                    items[ns, name] = item
            version = str((head.metadata.resourceVersion if head.metadata is not None else None) or version)
        return Kept(kind, version, [(ns, name, item) for (ns, name), item in sorted(items.items())])

    def _kept_pages(self, kept: Kept) -> Iterator[Raw]:
        """A kept kind's items as pages for the consumer: pods decoded, other objects as their JSON."""
        if kept.kind.kind == POD_KIND.kind:
            yield DecodedPods(kept.kind, [_POD_DECODER.decode(item) for _ns, _name, item in kept.items])
            return
        for i in range(0, len(kept.items), self.page_size):
            data = b'{"items":[' + b",".join(item for _ns, _name, item in kept.items[i:i + self.page_size]) + b"]}"
            yield RawPage(kept.kind, data, self.api.at)


_POD_ENCODER, _POD_DECODER = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(shapes.POD)


def _kept(page: RawPage) -> tuple[Raw | list[dict[str, Any]], list[tuple[str, str, bytes]]]:
    """A page as it is handed on and as the store keeps its items (namespace, name, the object), each decoded once:
    pods typed, kept as msgpack (the fields meshstep reads: a third of their JSON, read back ten times faster);
    other objects parsed, kept as their JSON trimmed as the snapshot keeps them."""
    if page.kind.kind == POD_KIND.kind:
        pods = page.pods()
        return DecodedPods(page.kind, pods), [_pod_item(p) for p in pods]
    objects = page.parse()
    return objects, [_object_item(obj) for obj in objects]


def _pod_item(pod: Any) -> tuple[str, str, bytes]:
    return pod.metadata.namespace or "", pod.metadata.name, _POD_ENCODER.encode(pod)


def _object_item(obj: dict[str, Any]) -> tuple[str, str, bytes]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or "", orjson.dumps(trimmed(obj))


def _named(pod: Any) -> bool:
    """Whether a typed pod has the name every pod of a list must have."""
    return pod.metadata is not None and bool(pod.metadata.name)


class _Event(msgspec.Struct):
    """A watch event, its object left as its JSON (decoded as the kind's list items are, once)."""

    type: Any = None
    object: msgspec.Raw = msgspec.Raw()


class _Version(msgspec.Struct):
    resourceVersion: Any = None


class _Head(msgspec.Struct):
    """What a watch reads of every event's object, the rest skipped: where it leaves the history, an ERROR's
    message (a Status)."""

    metadata: _Version | None = None
    message: Any = None


_EVENT, _HEAD = msgspec.json.Decoder(_Event), msgspec.json.Decoder(_Head)


def _event_item(kind: Kind, obj: msgspec.Raw, where: str) -> tuple[str, str, bytes]:
    """A watch event's object as the store keeps a list's items (_kept), decoded once: a pod typed, another object
    parsed and checked as a list's are; one a list would refuse is refused with the list's error."""
    if kind.kind != POD_KIND.kind:
        return _object_item(_stamp(kind, [orjson.loads(memoryview(obj))], where)[0])
    try:
        pod = shapes.decode_pod(obj)
    except shapes.TypeProblem:
        pod = None
    if pod is None or not _named(pod):  # the list's error for it, naming the object and field
        (pod,) = RawPage(kind, b'{"items":[' + bytes(obj) + b"]}", where).pods()
    return _pod_item(pod)


_KEYS = msgspec.json.Decoder(msgspec.defstruct("Keys", [("items", list[msgspec.defstruct(
    "Item", [("metadata", msgspec.defstruct("Meta", [("namespace", str, ""), ("name", str, "")]))])], [])]))


def _key(item: Any) -> tuple[str, str]:
    """An object's place in a list: Kubernetes lists in key order, namespace then name."""
    return item.metadata.namespace, item.metadata.name


def _last_key(page: RawPage) -> tuple[str, str] | None:
    items = _KEYS.decode(page.data).items
    return _key(items[-1]) if items else None


def _after(page: RawPage, after: tuple[str, str]) -> tuple[RawPage, tuple[str, str] | None]:
    """The page without the objects up to `after` (handed on before the list started again), and what is still to
    skip (None once the page passes it)."""
    items = _KEYS.decode(page.data).items
    if not items or _key(items[-1]) <= after:
        return RawPage(page.kind, b'{"items": []}', page.where), after
    if _key(items[0]) > after:
        return page, None
    doc = orjson.loads(page.data)
    doc["items"] = [o for o, k in zip(doc["items"], items) if _key(k) > after]
    return RawPage(page.kind, orjson.dumps(doc), page.where), None


def crd_kinds(crds: list[dict[str, Any]]) -> list[Kind]:
    """One listable Kind per Istio or Gateway API CRD, at the version Kubernetes prefers: what discovery would
    have said, for a group whose discovery failed."""
    kinds = []
    for crd in crds:
        spec = crd.get("spec") or {}
        group = spec.get("group", "")
        if group not in ISTIO_GROUPS and group != GATEWAY_API_GROUP:
            continue
        versions = [v for v in spec.get("versions") or [] if v.get("served")]
        if not versions:
            continue
        version = max((v["name"] for v in versions), key=shapes.version_priority)
        names = spec.get("names") or {}
        plural = names.get("plural", "")
        kinds.append(Kind(f"{plural}.{group}", f"/apis/{group}/{version}/{plural}", names.get("kind", ""),
                          f"{group}/{version}"))
    return kinds
