"""The decoded-inventory cache: a snapshot read once is kept, decoded (its pods typed, its other objects as the
source gave them), in the user's cache directory, so that the next command over the same snapshot skips reading
and parsing it (108 MB of JSON for 10,000 pods).

An entry is keyed by the source's content: the snapshot's path, each of its files' size, modification time and
SHA-256 (taken again only when the file's stat changed: SETTLED_NS), the limits a snapshot is read within
(MESHSTEP_MAX_*), and the code that decodes it (this room's decoding modules, hashed, and the entry format's
VERSION). It is never trusted when any of that differs: the snapshot is read
again and the entry replaced. An entry that cannot be read (truncated, corrupt, of another format) is read again the
same way, without an error. Deleting the directory is always safe. Only snapshots on disk of CACHED_FROM bytes or
more are kept: a small file reads faster than a cache entry would.

An inventory made from a cached one (a plan's overlay: the source with stages applied) can be kept beside it
(`derived`), keyed by the source's entry, what was made of it and the code of every room that made it; the few most
recently used are kept per source. So can what is made of a source's inventory (`kept`: the app's first page's
figures), so that it is read without decoding the inventory at all. Both go with the source's entry when it is no
longer among the most recently used (reading a kept value uses it).

A live cluster's large kinds are kept apart, by cluster.live_cache, and brought up to date by watching them.

MESHSTEP_CACHE_DIR moves the directory; MESHSTEP_CACHE=off turns the cache off (cluster.cachedir)."""
from __future__ import annotations

import hashlib
import os
import time
import weakref
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from cluster import cachedir
from cluster.cachedir import directory
from cluster.inventory import Inventory, assemble, build_inventory, gc_paused
from cluster.model import Pod
from cluster.snapshot import Visibility
from cluster.sources import load_snapshot, source_label

T = TypeVar("T")
# The entry format: raise it when an entry's fields change meaning (a change of their types is caught by decoding,
# and a change of the decoding code by its hash in the key).
VERSION = 2
CACHED_FROM = 1 << 20  # bytes of snapshot: smaller ones are read again each time
# The modules whose code decides what an entry holds: a change to any of them makes every entry stale.
_DECODING = ("cache.py", "decode.py", "files.py", "inventory.py", "model.py", "owners.py", "shapes.py", "snapshot.py")


class _Entry(msgspec.Struct, array_like=True):
    version: int
    key: str
    source: str
    cluster: bool
    visibility: Visibility
    mesh_networks: dict[str, Any]
    pods: list[Pod]
    objects: list[dict[str, Any]]



def inventory(source: str | None, roots: Collection[Path] | None = None) -> Inventory:
    """The inventory of a `--source` value (as build_inventory(load_snapshot(source, roots)) reads it), from the
    cache when an entry for the source's content is there, else read and kept for the next time."""
    snapshot = load_snapshot(source, roots)
    key = _key(source, roots)
    if key is None:
        return build_inventory(snapshot)
    path = directory() / f"{key[0]}.msgpack"
    inv = _read(path, key[1])
    if inv is None:
        inv = build_inventory(snapshot)
        _write(path, key[1], inv)
    cachedir.used(path, _SOURCES, SOURCES_KEPT, _BESIDE)
    _remember(inv, key[0], key[1])
    return inv



# Where the source's entry is kept and the content key of each inventory read through the cache (or derived from
# one), while it lives.
_CONTENT: dict[int, tuple[str, str]] = {}
SOURCES_KEPT = 8  # snapshots' entries kept, the most recently used
DERIVED_KEPT = 3  # derived entries kept per snapshot's entry, the most recently used (and as many kept values)
# A snapshot's entry, and what is kept beside it (its kept values and derived inventories): deleted with it.
_SOURCES, _BESIDE = "[0-9a-f]" * 32 + ".msgpack", "-*.msgpack"


def _remember(inv: Inventory, where: str, key: str) -> None:
    _CONTENT[id(inv)] = where, key
    weakref.finalize(inv, _CONTENT.pop, id(inv), None)


def derived(inv: Inventory, what: str, code: str, build: Callable[[], Inventory], keep: bool = True) -> Inventory:
    """What `build` makes of `inv` (`what`: all that decides it, e.g. the stages applied; `code`: the code that
    makes it, code_of), from the cache when it was made before from the same content by the same code; else made,
    and (with `keep`) kept when `inv` came from the cache."""
    if (base := _CONTENT.get(id(inv))) is None:
        return build()
    where, key = base[0], f"{base[1]}\0{code}\0{hashlib.sha256(what.encode()).hexdigest()}"
    path = directory() / f"{where}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.derived.msgpack"
    made = _read(path, key)
    if made is None:
        made = build()
        if not keep or id(made) in _CONTENT:  # not to keep, or nothing new (a change that changed nothing)
            return made
        _write(path, key, made)
    cachedir.used(path, f"{where}-*.derived.msgpack", DERIVED_KEPT)
    _remember(made, where, key)
    return made


def kept(source: str | None, roots: Collection[Path] | None, what: str, code: str, kind: type[T],
         build: Callable[[], T]) -> T:
    """What `build` makes of a source's inventory (`what`: all else that decides it; `code`: the code that makes
    it, code_of), kept beside the source's entry and keyed by its content: a process that needs only that (the
    app's first page) reads it without decoding the inventory. Made, and kept, when it is not there or is stale;
    made each time for a source that is not cached (a live cluster, the demo, a small snapshot)."""
    with _one_read():
        key = _key(source, roots)
        if key is None:
            return build()
        full = f"{key[1]}\0{what}\0{code}"
        path = directory() / f"{key[0]}-{hashlib.sha256(full.encode()).hexdigest()[:16]}.kept.msgpack"
        try:
            found, value = msgspec.msgpack.decode(path.read_bytes(), type=tuple[str, kind])
        except (OSError, msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError):
            found = None
        if found != full:
            value = build()
            cachedir.write(path, msgspec.msgpack.encode((full, value)))
    cachedir.used(path, f"{key[0]}-*.kept.msgpack", DERIVED_KEPT)
    # The source used: its entry (when there) is the most recently used, and what is kept beside it stays with it.
    cachedir.used(directory() / f"{key[0]}.msgpack", _SOURCES, SOURCES_KEPT, _BESIDE)
    return value


def _read(path: Path, key: str) -> Inventory | None:
    """The entry's inventory; None when there is none, or it is stale or unreadable."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    with gc_paused():
        try:
            e = _decoder().decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError):
            return None  # corrupt, or of another format: read the snapshot again
        if e.version != VERSION or e.key != key:
            return None
        return assemble(e.source, e.cluster, e.visibility, e.mesh_networks, e.pods, e.objects)


def _write(path: Path, key: str, inv: Inventory) -> None:
    """Keep the entry (cachedir.write: atomically, and no error when it cannot be written)."""
    pods, objects = inv.parts()
    entry = _Entry(VERSION, key, inv.source, inv.cluster, inv.visibility, inv.mesh_networks, pods, objects)
    cachedir.write(path, msgspec.msgpack.encode(entry))


@cache
def _decoder() -> msgspec.msgpack.Decoder[_Entry]:
    return msgspec.msgpack.Decoder(_Entry)


def _key(source: str | None, roots: Collection[Path] | None) -> tuple[str, str] | None:
    """Where the source's entry is kept and what its content is, or None when it is not cached: a live cluster,
    the demo, a small snapshot, a path outside `roots`, one that cannot be read (reading it says why), or the cache
    turned off."""
    label = source_label(source)
    if cachedir.off() or label in ("demo", "live") or label.startswith("context:"):
        return None
    path = Path(label)
    try:
        real = path.resolve(strict=True)
        if roots is not None and not any(real == r or r in real.parents for r in roots):
            return None
        found = sorted(_files(real))
        if sum(st.st_size for _, st in found) < CACHED_FROM:
            return None
        where = _stem(f"{label}\0{real}")
        content = hashlib.sha256()
        for (file, st), digest in zip(found, _digests(where, found), strict=True):
            content.update(f"{file}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
            content.update(digest)
    except OSError:
        return None
    return where, f"{VERSION}\0{cachedir.code(_DECODING)}\0{cachedir.limits()}\0{content.hexdigest()}"


def _stem(where: str) -> str:
    return hashlib.sha256(where.encode()).hexdigest()[:32]


# A snapshot file is hashed again only when its stat changed, as git trusts its index: any write, truncation, utime
# or replacement moves its change time (or its inode). Its hash is kept for the next read only when the file had
# settled for SETTLED_NS when it was hashed: on a file system whose clock ticks coarsely (1-2 s), a change within
# the tick it was hashed in would keep its times, so a file changed moments ago is hashed at every read (once in
# one: _one_read).
SETTLED_NS = 3_000_000_000
_DIGESTS = msgspec.json.Decoder(dict[str, tuple[tuple[int, int, int, int, int], str]])
# The hashes taken in the read under way (kept(): its key, and the inventory its maker reads for it), by file and
# stat, so that a file changed moments ago is hashed once in it. Its stat still decides: a change that moves it is
# seen within the read; one within the clock's tick would not be, as it would not be between its key and its making.
_TAKEN: ContextVar[dict[tuple[str, tuple[int, int, int, int, int]], bytes] | None] = ContextVar("_TAKEN",
                                                                                                 default=None)


@contextmanager
def _one_read() -> Iterator[None]:
    """What is read from here on is one read (the outermost one, when they nest): a file is hashed once in it."""
    token = _TAKEN.set({}) if _TAKEN.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _TAKEN.reset(token)


def _signature(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _digests(stem: str, found: list[tuple[str, os.stat_result]]) -> list[bytes]:
    """Each found file's SHA-256: kept from an earlier read while the file's stat is unchanged, else taken."""
    kept = directory() / f"{stem}.digests"
    try:
        known = _DIGESTS.decode(kept.read_bytes())
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        known = {}
    taken = _TAKEN.get()
    taken = {} if taken is None else taken
    digests, keep = [], {}
    for file, st in found:
        signature = _signature(st)
        if (k := known.get(file)) is not None and k[0] == signature:
            digest = bytes.fromhex(k[1])
        elif (digest := taken.get((file, signature))) is not None:  # not settled when it was taken in this read
            digests.append(digest)
            continue
        else:
            began = time.time_ns()
            with open(file, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").digest()
            if _signature(os.stat(file)) != signature:
                digests.append(digest)
                continue
            taken[file, signature] = digest
            if began - max(st.st_ctime_ns, st.st_mtime_ns) < SETTLED_NS:
                digests.append(digest)
                continue
        digests.append(digest)
        keep[file] = (signature, digest.hex())
    if keep:
        if keep != known:
            cachedir.write(kept, msgspec.json.encode(keep))
        cachedir.used(kept, "[0-9a-f]" * 32 + ".digests", SOURCES_KEPT)
    return digests


def _files(path: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Each regular file a snapshot path holds, with its stat."""
    if path.is_file():
        yield str(path), path.stat()
        return
    for top, _dirs, names in os.walk(path):
        for name in names:
            file = Path(top, name)
            if file.is_file():
                yield str(file), file.stat()



@cache
def code_of(packages: tuple[str, ...]) -> str:
    """The code of every module of these packages, hashed: what a derived inventory's maker passes as its code."""
    import importlib.util

    digest = hashlib.sha256()
    for name in packages:
        spec = importlib.util.find_spec(name)
        for where in (spec.submodule_search_locations or ()) if spec else ():
            for f in sorted(Path(where).rglob("*.py")):
                digest.update(f.read_bytes())
    return digest.hexdigest()
