"""The decoded-inventory cache (cluster.cache): a snapshot read once is read back from the user's cache directory
as the same inventory; an entry is never trusted once the snapshot, the limits or the format differ, and one that
cannot be read is replaced without an error."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from benchmarks.synthetic import synthetic_cluster, write
from cluster import cache, cachedir
from cluster.errors import SourceError
from cluster.inventory import Inventory, build_inventory
from cluster.sources import load_snapshot


@functools.cache
def _objects() -> list:
    return synthetic_cluster(700, 300, 60, seed=1)


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.json"
    write(_objects(), path)
    assert path.stat().st_size >= cache.CACHED_FROM
    return path


def _same(a: Inventory, b: Inventory) -> None:
    assert (a.source, a.cluster, a.visibility, a.mesh_networks) == (b.source, b.cluster, b.visibility, b.mesh_networks)
    assert (a.pods, a.objects, a.namespaces, a.services, a.workloads, a.crds, a.mesh_configs) == (
        b.pods, b.objects, b.namespaces, b.services, b.workloads, b.crds, b.mesh_configs)


def _entries() -> list[Path]:
    return list(cache.directory().glob("*.msgpack")) if cache.directory().is_dir() else []


def test_a_snapshot_read_again_comes_from_the_cache_as_the_same_inventory(snapshot: Path, monkeypatch) -> None:
    first = cache.inventory(str(snapshot))
    _same(first, build_inventory(load_snapshot(str(snapshot))))
    (entry,) = _entries()
    assert str(entry).startswith(os.environ["XDG_CACHE_HOME"])  # the user's cache directory (platformdirs)
    # Read back, the snapshot is not parsed: a snapshot reader that fails shows it.
    monkeypatch.setattr(cache, "build_inventory", lambda *_: pytest.fail("the snapshot was read again"))
    _same(cache.inventory(str(snapshot)), first)


def test_a_changed_snapshot_is_read_again_even_with_its_size_and_time_kept(snapshot: Path) -> None:
    first = cache.inventory(str(snapshot))
    st = snapshot.stat()
    data = snapshot.read_bytes()
    renamed = data.replace(b'"name":"istio-system","labels"', b'"name":"istio-systen","labels"')  # the Namespace
    assert renamed != data and len(renamed) == len(data)
    snapshot.write_bytes(renamed)
    os.utime(snapshot, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = cache.inventory(str(snapshot))
    _same(again, build_inventory(load_snapshot(str(snapshot))))
    assert "istio-systen" in again.namespaces and "istio-systen" not in first.namespaces


@pytest.mark.parametrize("damage", [b"", b"\xc1 not msgpack", b"\x98\x01", "truncated", "other version"])
def test_an_entry_that_cannot_be_trusted_is_replaced_without_an_error(snapshot: Path, damage) -> None:
    good = cache.inventory(str(snapshot))
    (entry,) = _entries()
    data = entry.read_bytes()
    if damage == "truncated":
        entry.write_bytes(data[:len(data) // 2])
    elif damage == "other version":
        entry.write_bytes(data.replace(bytes([0x90 + 8, cache.VERSION]), bytes([0x90 + 8, cache.VERSION + 1]), 1))
        assert entry.read_bytes() != data
    else:
        entry.write_bytes(damage)
    _same(cache.inventory(str(snapshot)), good)
    assert entry.read_bytes() == data  # replaced by a good one


def test_other_limits_make_another_entry(snapshot: Path, monkeypatch) -> None:
    cache.inventory(str(snapshot))
    monkeypatch.setenv("MESHSTEP_MAX_FILE_MB", "1")
    with pytest.raises(SourceError, match="MESHSTEP_MAX_FILE_MB"):  # a lower bound is not got round by the cache
        cache.inventory(str(snapshot))


def test_what_is_not_cached(snapshot: Path, tmp_path: Path, monkeypatch) -> None:
    cache.inventory("demo")  # the demo: small, bundled
    small = tmp_path / "small.json"
    write([o for o in _objects() if o["kind"] == "Namespace"], small)
    assert small.stat().st_size < cache.CACHED_FROM
    cache.inventory(str(small))
    assert _entries() == []
    # a path outside the directories a server allows is refused as before, with nothing kept
    with pytest.raises(SourceError, match="outside"):
        cache.inventory(str(snapshot), roots=[tmp_path / "elsewhere"])
    assert _entries() == []
    monkeypatch.setenv(cachedir.SWITCH_ENV, "off")
    cache.inventory(str(snapshot))
    assert _entries() == []


def test_a_cache_that_cannot_be_written_is_no_error(snapshot: Path, tmp_path: Path, monkeypatch) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    monkeypatch.setenv(cachedir.DIR_ENV, str(blocked / "inventory"))
    _same(cache.inventory(str(snapshot)), build_inventory(load_snapshot(str(snapshot))))


def test_what_is_made_of_a_cached_inventory_is_kept_beside_it(snapshot: Path) -> None:
    import copy

    inv = cache.inventory(str(snapshot))
    vs = copy.deepcopy(inv.of_kind("VirtualService")[0].raw)
    vs["metadata"]["name"] = "made"
    made = cache.derived(inv, "one VirtualService more", "code 1", lambda: inv.with_changes(apply=[vs]))
    assert made.get("VirtualService", vs["metadata"]["namespace"], "made") is not None
    # Read again (another process would have another inventory of the same content): not made again.
    again = cache.derived(cache.inventory(str(snapshot)), "one VirtualService more", "code 1",
                          lambda: pytest.fail("made again"))
    _same(again, made)
    # Other code, or something else made: made again; only the most recently used are kept.
    for i in range(cache.DERIVED_KEPT + 1):
        cache.derived(inv, "one VirtualService more", f"code {i + 2}", lambda: inv.with_changes(apply=[vs]))
    assert len(list(cache.directory().glob("*.derived.msgpack"))) == cache.DERIVED_KEPT
    # made of an inventory that was not read through the cache (or not kept when asked not to): nothing kept
    for entry in cache.directory().glob("*.derived.msgpack"):
        entry.unlink()
    cache.derived(build_inventory(load_snapshot(str(snapshot))), "x", "code", lambda: inv)
    cache.derived(inv, "y", "code", lambda: inv, keep=False)
    assert list(cache.directory().glob("*.derived.msgpack")) == []


def test_only_the_most_recently_used_snapshots_are_kept(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cache, "SOURCES_KEPT", 2)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"cluster-{i}.json")
        write(_objects(), paths[-1])
        cache.inventory(str(paths[-1]))
    assert len(_entries()) == 2
    cache.inventory(str(paths[1]))  # read from the cache: the most recently used now
    write(_objects(), tmp_path / "another.json")
    cache.inventory(str(tmp_path / "another.json"))
    kept = {e.read_bytes() for e in _entries()}
    assert len(kept) == 2 and any(str(paths[1]).encode() in k for k in kept)


def _hashed(monkeypatch) -> list[str]:
    """The files whose content is hashed from now on."""
    import hashlib

    hashed, digest = [], hashlib.file_digest
    monkeypatch.setattr(hashlib, "file_digest", lambda f, name: hashed.append(f.name) or digest(f, name))
    return hashed


def test_an_unchanged_snapshot_is_not_hashed_again(snapshot: Path, monkeypatch) -> None:
    monkeypatch.setattr(cache, "SETTLED_NS", 0)  # as if the snapshot had been written long before it was read
    first = cache.inventory(str(snapshot))
    hashed = _hashed(monkeypatch)
    monkeypatch.setattr(cache, "build_inventory", lambda *_: pytest.fail("the snapshot was read again"))
    _same(cache.inventory(str(snapshot)), first)
    assert hashed == []
    # The kept hashes damaged: hashed again, without an error.
    (kept,) = cache.directory().glob("*.digests")
    kept.write_bytes(b"{not json")
    _same(cache.inventory(str(snapshot)), first)
    assert hashed == [str(snapshot)]


def test_a_snapshot_changed_after_its_hash_was_kept_is_hashed_and_read_again(snapshot: Path, monkeypatch) -> None:
    monkeypatch.setattr(cache, "SETTLED_NS", 0)
    first = cache.inventory(str(snapshot))
    st = snapshot.stat()
    data = snapshot.read_bytes()
    renamed = data.replace(b'"name":"istio-system","labels"', b'"name":"istio-systen","labels"')
    snapshot.write_bytes(renamed)  # the same size, and then the same modification time: its change time moves
    os.utime(snapshot, ns=(st.st_atime_ns, st.st_mtime_ns))
    hashed = _hashed(monkeypatch)
    again = cache.inventory(str(snapshot))
    assert hashed == [str(snapshot)]
    assert "istio-systen" in again.namespaces and "istio-systen" not in first.namespaces
    # Another file put in its place (a new inode), with the same size and times as the first: hashed again too.
    other = snapshot.with_name("other.json")
    other.write_bytes(data)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    other.replace(snapshot)
    hashed.clear()
    _same(cache.inventory(str(snapshot)), first)
    assert hashed == [str(snapshot)]


def test_a_snapshot_changed_moments_ago_is_hashed_at_every_read(snapshot: Path, monkeypatch) -> None:
    # Written within SETTLED_NS of the read: a change in the same tick of a coarse file system clock would keep its
    # change time, so its hash is not kept for the next read (git's "racy clean" files).
    cache.inventory(str(snapshot))
    hashed = _hashed(monkeypatch)
    cache.inventory(str(snapshot))
    cache.inventory(str(snapshot))
    assert hashed == [str(snapshot)] * 2


def test_what_is_made_of_a_source_is_kept_and_read_back_without_its_inventory(snapshot: Path, monkeypatch) -> None:
    made = []

    def build() -> dict[str, int]:
        inv = cache.inventory(str(snapshot))
        made.append(1)
        return {"pods": len(inv.pods), "services": len(inv.services)}

    first = cache.kept(str(snapshot), None, "counts", "code 1", dict[str, int], build)
    assert first == {"pods": len(_objects_of("Pod")), "services": len(_objects_of("Service"))} and made == [1]
    # Read back: neither made again nor is the inventory read.
    monkeypatch.setattr(cache, "_read", lambda *_: pytest.fail("the inventory was read"))
    assert cache.kept(str(snapshot), None, "counts", "code 1", dict[str, int], build) == first and made == [1]
    monkeypatch.undo()
    # Made again: for something else, by other code, or once the snapshot changed.
    cache.kept(str(snapshot), None, "other counts", "code 1", dict[str, int], build)
    cache.kept(str(snapshot), None, "counts", "code 2", dict[str, int], build)
    assert made == [1, 1, 1]
    snapshot.write_bytes(snapshot.read_bytes().replace(b'"kind":"Service"', b'"kind":"Servicf"', 1))
    again = cache.kept(str(snapshot), None, "counts", "code 1", dict[str, int], build)
    assert again == {"pods": first["pods"], "services": first["services"] - 1} and made == [1, 1, 1, 1]


@pytest.mark.parametrize("damage", [b"", b"\xc1 not msgpack", b"\x92\xa1x\x01"])
def test_a_kept_value_that_cannot_be_trusted_is_made_again(snapshot: Path, damage: bytes) -> None:
    cache.kept(str(snapshot), None, "n", "code", int, lambda: 7)
    (entry,) = cache.directory().glob("*.kept.msgpack")
    entry.write_bytes(damage)
    assert cache.kept(str(snapshot), None, "n", "code", int, lambda: 8) == 8


def test_what_is_made_of_a_source_that_is_not_cached_is_made_each_time() -> None:
    made = []
    for _ in range(2):
        cache.kept("demo", None, "n", "code", int, lambda: made.append(1) or len(made))
    assert made == [1, 1] and not list(cache.directory().glob("*.kept.msgpack"))


def _objects_of(kind: str) -> list:
    return [o for o in _objects() if o["kind"] == kind]


def test_a_snapshot_changed_moments_ago_is_hashed_once_in_one_read(snapshot: Path, monkeypatch) -> None:
    # A kept value's key and the inventory its maker reads (the app's first page, a fleet's reading): one read.
    hashed = _hashed(monkeypatch)
    pods = cache.kept(str(snapshot), None, "pods", "code", int, lambda: len(cache.inventory(str(snapshot)).pods))
    assert pods == len(_objects_of("Pod")) and hashed == [str(snapshot)]
    # Not settled: the next read hashes it again; a change within one read that moves its stat is seen in it.
    hashed.clear()

    def rewritten() -> int:
        snapshot.write_bytes(snapshot.read_bytes().replace(b'"kind":"Pod"', b'"kind":"Pox"', 1) + b" ")
        return len(cache.inventory(str(snapshot)).pods)

    assert cache.kept(str(snapshot), None, "other pods", "code", int, rewritten) == pods - 1
    assert hashed == [str(snapshot)] * 2


def test_a_source_s_kept_and_derived_entries_go_with_its_entry(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cache, "SOURCES_KEPT", 2)
    paths = [tmp_path / f"cluster-{i}.json" for i in range(3)]
    for path in paths:
        write(_objects(), path)
    inv = cache.inventory(str(paths[0]))
    cache.derived(inv, "with one more", "code", lambda: inv.with_changes(apply=[_objects_of("Namespace")[0]
                                                                                | {"metadata": {"name": "more"}}]))
    cache.kept(str(paths[0]), None, "n", "code", int, lambda: 7)
    cache.inventory(str(paths[1]))
    # Its kept value read: the source is used, and stays the most recently used.
    assert cache.kept(str(paths[0]), None, "n", "code", int, lambda: pytest.fail("made again")) == 7
    cache.inventory(str(paths[2]))
    assert len(list(cache.directory().glob("*.kept.msgpack"))) == 1
    assert len(list(cache.directory().glob("*.derived.msgpack"))) == 1
    # Evicted (two other sources read since): its entry, its kept values and its derived inventories together.
    cache.inventory(str(paths[1]))
    assert len(list(cache.directory().glob("[0-9a-f]" * 32 + ".msgpack"))) == 2
    assert list(cache.directory().glob("*.kept.msgpack")) == []
    assert list(cache.directory().glob("*.derived.msgpack")) == []
