"""The decoded-inventory cache: a snapshot read once is kept, decoded (its pods typed, its other objects as the
source gave them), in the user's cache directory, so that the next command over the same snapshot skips reading
and parsing it (108 MB of JSON for 10,000 pods).

An entry is keyed by the source's content: the snapshot's path, each of its files' size, modification time and
SHA-256, the limits a snapshot is read within (MESHSTEP_MAX_*), and the code that decodes it (this room's decoding
modules, hashed, and the entry format's VERSION). It is never trusted when any of that differs: the snapshot is read
again and the entry replaced. An entry that cannot be read (truncated, corrupt, of another format) is read again the
same way, without an error. Deleting the directory is always safe. Only snapshots on disk of CACHED_FROM bytes or
more are kept: a live cluster is read afresh (what it holds changes without a file saying so), and a small file
reads faster than a cache entry would.

MESHSTEP_CACHE_DIR moves the directory; MESHSTEP_CACHE=off turns the cache off."""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Collection, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import msgspec

from cluster.inventory import Inventory, assemble, build_inventory, gc_paused
from cluster.model import Pod
from cluster.snapshot import Visibility
from cluster.sources import load_snapshot, source_label

# The entry format: raise it when an entry's fields change meaning (a change of their types is caught by decoding,
# and a change of the decoding code by its hash in the key).
VERSION = 1
CACHED_FROM = 1 << 20  # bytes of snapshot: smaller ones are read again each time
DIR_ENV, SWITCH_ENV = "MESHSTEP_CACHE_DIR", "MESHSTEP_CACHE"
# The modules whose code decides what an entry holds: a change to any of them makes every entry stale.
_DECODING = ("cache.py", "decode.py", "files.py", "inventory.py", "model.py", "shapes.py", "snapshot.py")


class _Entry(msgspec.Struct, array_like=True):
    version: int
    key: str
    source: str
    cluster: bool
    visibility: Visibility
    mesh_networks: dict[str, Any]
    pods: list[Pod]
    objects: list[dict[str, Any]]


def directory() -> Path:
    """Where entries are kept: MESHSTEP_CACHE_DIR, else the user's cache directory (platformdirs)."""
    if where := os.environ.get(DIR_ENV):
        return Path(where)
    import platformdirs

    return platformdirs.user_cache_path("meshstep") / "inventory"


def inventory(source: str | None, roots: Collection[Path] | None = None) -> Inventory:
    """The inventory of a `--source` value (as build_inventory(load_snapshot(source, roots)) reads it), from the
    cache when an entry for the source's content is there, else read and kept for the next time."""
    snapshot = load_snapshot(source, roots)
    key = _key(source, roots)
    if key is None:
        return build_inventory(snapshot)
    path = directory() / f"{hashlib.sha256(key[0].encode()).hexdigest()[:32]}.msgpack"
    found = _read(path, key[1])
    if found is not None:
        return found
    inv = build_inventory(snapshot)
    _write(path, key[1], inv)
    return inv


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
    """Keep the entry, atomically (a reader never sees half of one); a cache that cannot be written is no error."""
    pods, objects = inv.parts()
    entry = _Entry(VERSION, key, inv.source, inv.cluster, inv.visibility, inv.mesh_networks, pods, objects)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".entry-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(msgspec.msgpack.encode(entry))
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        return


@cache
def _decoder() -> msgspec.msgpack.Decoder[_Entry]:
    return msgspec.msgpack.Decoder(_Entry)


def _key(source: str | None, roots: Collection[Path] | None) -> tuple[str, str] | None:
    """Where the source's entry is kept and what its content is, or None when it is not cached: a live cluster,
    the demo, a small snapshot, a path outside `roots`, one that cannot be read (reading it says why), or the cache
    turned off."""
    label = source_label(source)
    if os.environ.get(SWITCH_ENV, "").lower() in ("off", "0", "no") or label in ("demo", "live") \
            or label.startswith("context:"):
        return None
    path = Path(label)
    try:
        real = path.resolve(strict=True)
        if roots is not None and not any(real == r or r in real.parents for r in roots):
            return None
        found = sorted(_files(real))
        if sum(size for _, size, _ in found) < CACHED_FROM:
            return None
        content = hashlib.sha256()
        for file, size, mtime in found:
            content.update(f"{file}\0{size}\0{mtime}\0".encode())
            with open(file, "rb") as f:
                content.update(hashlib.file_digest(f, "sha256").digest())
    except OSError:
        return None
    limits = sorted((k, v) for k, v in os.environ.items() if k.startswith("MESHSTEP_MAX_"))
    return f"{label}\0{real}", f"{VERSION}\0{_code()}\0{limits}\0{content.hexdigest()}"


def _files(path: Path) -> Iterator[tuple[str, int, int]]:
    """Each regular file a snapshot path holds, with its size and modification time (ns)."""
    if path.is_file():
        st = path.stat()
        yield str(path), st.st_size, st.st_mtime_ns
        return
    for top, _dirs, names in os.walk(path):
        for name in names:
            file = Path(top, name)
            if file.is_file():
                st = file.stat()
                yield str(file), st.st_size, st.st_mtime_ns


@cache
def _code() -> str:
    """The decoding modules' code, hashed."""
    here = Path(__file__).parent
    return hashlib.sha256(b"".join((here / m).read_bytes() for m in _DECODING)).hexdigest()
