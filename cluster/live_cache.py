"""The live half of the decoded-inventory cache (cluster.cache keeps snapshots'): a live cluster's large kinds kept
between reads, and brought up to date the way Kubernetes' own informers do it, by watching each from where its
last list or watch ended rather than listing it again.

Why not compare resourceVersions: a list's resourceVersion is the etcd revision, global to the cluster, so an
unchanged one cannot say "this kind is unchanged". Instead each kept kind has its items and the resourceVersion its
list (or last watch) was read at; the next read watches it from there (`watch=true&resourceVersion=RV
&allowWatchBookmarks=true&timeoutSeconds=WATCH_SECONDS`, kinds at once) and applies the ADDED, MODIFIED and DELETED
events to the items (https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes);
a BOOKMARK moves the resourceVersion on (#watch-bookmarks). A kind whose watch fails in any way — an ERROR event
(410 Expired: the history was compacted, https://kubernetes.io/docs/reference/using-api/api-concepts/
#410-gone-responses), a 403 (the user may no longer read it: listed afresh, the list says whether it is visible;
a role that may list but not watch lists each time), a stream that breaks off, more changes than one answer may
hold (MESHSTEP_MAX_FILE_MB) — is listed afresh exactly as without the cache, and its items are never served. An API
server keeps minutes of history (etcd compacts it every five minutes by default), so a read more than that after
the last one lists its kept kinds afresh; the ERROR comes at once, costing a request, not the watch's second.

What it costs and when it pays: a watch is held open for timeoutSeconds (whole seconds, at least 1), so a warm read
takes at least WATCH_SECONDS of wall time, but transfers only the changes, and is served from the API server's watch
cache where a list of a large kind costs the server (and etcd) a read of it all; a cold list of 10,000 pods is ~100
to 200 MB. On loopback a cold read of 1,000 pods (20 MB) takes half a second, less than the watch's second, and over
a network a list of a few MB takes less than that second too; so only kinds whose list was KEPT_FROM (16 MiB,
MESHSTEP_CACHE_LIVE_MB) or more are kept, and the others are listed each time, alongside the watches: a cluster
with no kind that large reads as it did without the cache (benchmarks/live_cache.py measures both ways).

Discovery is read each time: a kind that appeared is listed, one that is gone is not read and its items dropped,
one served at another version is another Kind and listed afresh. Kinds listed with a label selector or as metadata
only (Istio's ConfigMaps, Secrets) are small and always listed. Pods are kept decoded (shapes.POD, msgpack: the
fields meshstep reads, a third of their JSON and read back ten times faster), other objects as their trimmed JSON.

An entry is keyed by the API server, the identity the read is made as (the kubeconfig user and a hash of its
credentials: a rotated token starts a new entry), the code that reads and trims the objects, the entry format's
VERSION and the limits a source is read within (MESHSTEP_MAX_*). One that cannot be read, or is of another key, is
ignored and replaced. MESHSTEP_CACHE=off turns it off (cluster.cachedir)."""
from __future__ import annotations

import hashlib
import threading
from functools import cache
from pathlib import Path
from typing import Any

import msgspec

from cluster import cachedir
from cluster.snapshot import Kind, Limit

VERSION = 1
# The size of a kind's list from which it is kept and watched next time; smaller kinds are listed each time.
KEPT_FROM = Limit("MESHSTEP_CACHE_LIVE_MB", 16, "a live kind's list reaches for the kind to be kept and watched")
WATCH_SECONDS = 1  # how long each watch is held open (the API takes whole seconds)
ENTRIES_KEPT = 4  # clusters (server and identity) whose entry is kept, the most recently used
# The code that decides what an entry holds: how objects are read, stamped and trimmed.
_CODE = ("live_cache.py", "live.py", "owners.py", "shapes.py", "snapshot.py")


class Kept(msgspec.Struct, array_like=True):
    """One kind as last read: the resourceVersion it was read at, and its items in list order (namespace, name),
    each as its JSON (trimmed as cluster.snapshot keeps objects)."""

    kind: Kind
    resource_version: str
    items: list[tuple[str, str, bytes]]


class _Entry(msgspec.Struct, array_like=True):
    version: int
    key: str
    kinds: list[Kept]


def watched(kind: Kind) -> bool:
    """Whether a kind may be kept and watched: not one listed by label or as metadata only (small, and a watch of
    them would need what a list gives: the selector's edges, PartialObjectMetadata events)."""
    return not kind.label_selector and not kind.metadata_only


class Store:
    """The kept kinds of one cluster as one identity reads it: those found at the start of a read, and those to
    keep at its end (saved only when the read completed)."""

    def __init__(self, path: Path, key: str, found: dict[Kind, Kept]):
        self.path, self.key, self.found = path, key, found
        self.made: dict[Kind, Kept] = {}
        self.lock = threading.Lock()

    @classmethod
    def open(cls, client: Any, user: str) -> Store | None:
        """The store for an API client (None when the cache is off), with what an entry of its key holds."""
        if cachedir.off():
            return None
        cfg = client.configuration
        identity = _identity(cfg, user)
        name = hashlib.sha256(f"{cfg.host}\0{identity}".encode()).hexdigest()[:32]
        path = cachedir.directory() / f"{name}.live.msgpack"
        key = f"{VERSION}\0{cachedir.code(_CODE)}\0{cachedir.limits()}\0{cfg.host}\0{identity}"
        return cls(path, key, _read(path, key))

    def kept(self, kind: Kind) -> Kept | None:
        return self.found.get(kind)

    def keep(self, kind: Kind, resource_version: str, items: list[tuple[str, str, bytes]]) -> None:
        with self.lock:
            self.made[kind] = Kept(kind, resource_version, sorted(items, key=lambda i: (i[0], i[1])))

    def save(self) -> None:
        """Keep what this read made (and nothing of what it did not read again); none: no entry."""
        if self.made:
            cachedir.write(self.path, msgspec.msgpack.encode(_Entry(VERSION, self.key, list(self.made.values()))))
            cachedir.used(self.path, "[0-9a-f]" * 32 + ".live.msgpack", ENTRIES_KEPT)
        elif self.found:
            self.path.unlink(missing_ok=True)


def _identity(cfg: Any, user: str) -> str:
    """Who the read is made as, hashed (no credential is kept in clear): the kubeconfig user, and its token, basic
    credentials or client certificate."""
    digest = hashlib.sha256(user.encode())
    for secret in (*sorted((cfg.api_key or {}).items()), cfg.username, cfg.password):
        digest.update(f"\0{secret}".encode())
    try:
        digest.update(b"\0" + (Path(cfg.cert_file).read_bytes() if cfg.cert_file else b""))
    except OSError:
        digest.update(f"\0{cfg.cert_file}".encode())
    return digest.hexdigest()


def _read(path: Path, key: str) -> dict[Kind, Kept]:
    """The kinds an entry keeps; none when there is no entry, or it is of another key or cannot be read."""
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    try:
        entry = _decoder().decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError):
        return {}  # corrupt, or of another format: read afresh
    if entry.version != VERSION or entry.key != key:
        return {}
    return {k.kind: k for k in entry.kinds}


@cache
def _decoder() -> msgspec.msgpack.Decoder[_Entry]:
    return msgspec.msgpack.Decoder(_Entry)
