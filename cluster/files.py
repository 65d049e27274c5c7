"""Snapshot files: YAML and JSON in every shape kubectl writes them (documents, Lists, bare arrays), directories
of them and .tar.gz archives, read within bounds that a hostile or broken file cannot get past."""
from __future__ import annotations

import os
import re
import stat
import tarfile
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson
import yaml

from cluster import shapes
from cluster.errors import SourceError
from cluster.snapshot import FILE_LIMIT, POD_KIND, Kind, Limit, Raw

SNAPSHOT_SUFFIXES = (".yaml", ".yml", ".json")
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # safe either way; the C one is ~10x faster
_DOC_SEPARATOR = re.compile(r"^---(\s|$)")
_ANCHOR = re.compile(r"(?:^|[\s\[{,:-])&[^\s\[\]{},]", re.MULTILINE)  # `&name`, not a `&` inside a scalar

SOURCE_LIMIT = Limit("MESHSTEP_MAX_SOURCE_MB", 1024, "one source may hold in all (a directory's files, an "
                     "archive's members expanded)")
FILES_LIMIT = Limit("MESHSTEP_MAX_FILES", 20_000, "one directory or archive may hold", unit="entries")
# A YAML alias is a reference: loading it costs nothing, but whatever walks the document (str() of a container's
# args, a copy, JSON) expands it. The nodes aliases add, beyond the document's own, may be at most this many.
ALIAS_LIMIT = Limit("MESHSTEP_MAX_ALIAS_NODES", 100_000, "aliases may add to a YAML document", unit="nodes")
# Directories that are the system's, not anyone's snapshot: reading them either never ends or means nothing.
_SYSTEM_DIRS = (Path("/proc"), Path("/sys"), Path("/dev"))


class _Budget:
    """What one source has read so far, against SOURCE_LIMIT and FILES_LIMIT."""

    def __init__(self, root: Path):
        self.root, self.bytes, self.files = root, 0, 0

    def file(self, where: str) -> None:
        self.files += 1
        if self.files > FILES_LIMIT.value:
            raise FILES_LIMIT.exceeded(str(self.root), f"more than {FILES_LIMIT.value:,} files")

    def read(self, where: str, n: int) -> None:
        self.bytes += n
        if self.bytes > SOURCE_LIMIT.bytes:
            raise SOURCE_LIMIT.exceeded(where, f"{self.root} holds more than {SOURCE_LIMIT.value:,} MiB")


def read_paths(paths: Iterable[Path], roots: Collection[Path] | None = None) -> Iterator[dict[str, Any]]:
    """Objects of files, directories (recursively) and .tar.gz archives, in a stable order, within the limits
    (and, given `roots`, only of files whose real path lies under one of them)."""
    for item in raw_paths(paths, roots):
        if type(item) is RawPods:
            yield from item.parse()
        else:
            yield item


def raw_paths(paths: Iterable[Path], roots: Collection[Path] | None = None) -> Iterator[dict[str, Any] | RawPods]:
    """As read_paths, but a JSON List's pods come as RawPods (see Snapshot.stream)."""
    for path in paths:
        budget = _Budget(path)
        for file in _snapshot_files(path, budget):
            if roots is not None:
                real = file.resolve()
                if not any(real == r or r in real.parents for r in roots):
                    raise SourceError(f"{file}: leads outside the directories this server allows")
            if file.name.endswith((".tar.gz", ".tgz")):
                yield from _read_archive(file, budget)
            else:
                yield from parse_data(_read_file(file, budget), str(file))


def _snapshot_files(path: Path, budget: _Budget) -> list[Path]:
    """The regular files a path names: itself, or the snapshot files under a directory (sorted). Anything else —
    a FIFO, a device, a socket, the system's own directories — is refused, and so is a subdirectory that cannot
    be read (a snapshot silently missing part of a cluster would mislead)."""
    try:
        st = path.stat()
    except OSError as e:
        raise SourceError(f"{path}: cannot read: {e.strerror or e}") from e
    real = path.resolve()
    system = "the root directory" if real == Path(real.anchor) else next(
        (f"in {d}, the system's own" for d in _SYSTEM_DIRS if real == d or d in real.parents), None)
    if system:
        raise SourceError(f"{path}: {system}, not a snapshot: give a snapshot file, a directory of them or a "
                          ".tar.gz")
    if stat.S_ISREG(st.st_mode):
        return [path]
    if not stat.S_ISDIR(st.st_mode):
        raise SourceError(f"{path}: {_file_type(st.st_mode)}, not a snapshot: give a regular file, a directory of "
                          "them or a .tar.gz")

    def unreadable(e: OSError) -> None:
        raise SourceError(f"{e.filename}: cannot read this directory ({e.strerror}): the snapshot would be "
                          "incomplete; fix its permissions or leave it out") from e

    found = []
    for top, dirs, names in os.walk(path, onerror=unreadable):
        dirs.sort()
        for name in names:
            if _is_snapshot_file(name):
                budget.file(str(path))
                found.append(Path(top) / name)
    if not found:
        raise SourceError(f"{path}: no snapshot files in this directory (.yaml, .yml, .json, .tar.gz)")
    return sorted(found)


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _read_file(path: Path, budget: _Budget) -> bytes:
    """A regular file's bytes, at most FILE_LIMIT of them. Opened without blocking and checked again once open:
    a FIFO put in the file's place meanwhile must not hang the read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise SourceError(f"{path}: cannot read: {e.strerror or e}") from e
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SourceError(f"{path}: {_file_type(mode)}, not a snapshot file")
        try:
            data = f.read(FILE_LIMIT.bytes + 1)
        except OSError as e:
            raise SourceError(f"{path}: cannot read: {e.strerror or e}") from e
    if len(data) > FILE_LIMIT.bytes:
        raise FILE_LIMIT.exceeded(str(path), "larger than that")
    budget.read(str(path), len(data))
    return data


def _decode(data: bytes, name: str) -> str:
    if not data.strip():
        raise SourceError(f"{name}: empty: no Kubernetes objects in it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SourceError(f"{name}:{line}: not UTF-8 text (byte {e.start}): a snapshot is YAML or JSON") from None


def _is_snapshot_file(name: str) -> bool:
    return name.endswith(SNAPSHOT_SUFFIXES) or name.endswith((".tar.gz", ".tgz"))


def _read_archive(path: Path, budget: _Budget) -> Iterator[dict[str, Any] | RawPods]:
    """The snapshot files of a .tar.gz, in name order. Read as a stream, member by member: every member's size
    (any type, matched or not) counts against the limits before a byte of it is expanded."""
    members: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(path, "r|gz") as tar:
            for m in tar:
                budget.file(f"{path}:{m.name}")
                if m.size > FILE_LIMIT.bytes:
                    raise FILE_LIMIT.exceeded(f"{path}:{m.name}", f"{m.size >> 20:,} MiB expanded")
                budget.read(f"{path}:{m.name}", m.size)
                if not (m.isfile() and m.name.endswith(SNAPSHOT_SUFFIXES)):
                    continue
                data = tar.extractfile(m)
                assert data is not None  # isfile() members always have content
                members.append((m.name, data.read(m.size)))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise SourceError(f"{path}: not a readable .tar.gz archive: {e}") from e
    if not members:
        raise SourceError(f"{path}: no snapshot files in this archive (.yaml, .yml, .json)")
    for name, data in sorted(members):
        where = f"{path}:{name}"
        yield from parse_data(data, where)


_JSON_START = re.compile(rb"\s*[\[{]")


def parse_data(data: bytes, name: str) -> Iterator[dict[str, Any] | RawPods]:
    """Objects of one JSON or (multi-document) YAML file; errors name the file and line. A JSON file is decoded
    from its bytes, not copied into a str first (100 MB of snapshot: 0.06 s); it is checked to be UTF-8 all the
    same, as the fields meshstep skips are not decoded: at once when it is ASCII, as most are, else by decoding."""
    if name.endswith(".json") and _JSON_START.match(data):
        if not data.isascii():
            _decode(data, name)
        listed = _json_list(data, name)
        if listed is not None:
            yield from _json_items(listed, data, name)
            return
        text = _decode(data, name)
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise SourceError(f"{name}:{e.lineno}: malformed JSON: {e.msg}") from e
        yield from _flatten(doc, name, 1)
        return
    text = _decode(data, name)
    for start, chunk in _yaml_documents(text):
        try:
            doc = yaml.load(chunk, Loader=YAML_LOADER)
        except RecursionError:
            raise SourceError(f"{name}:{start}: the YAML document is nested too deeply") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = start + (mark.line if mark else 0)
            problem = getattr(e, "problem", None) or str(e)
            raise SourceError(f"{name}:{line}: malformed YAML: {problem}") from e
        if doc is None:
            continue
        if "&" in chunk and _ANCHOR.search(chunk):  # aliases need an anchor: what would expanding them cost?
            _check_aliases(doc, f"{name}:{start}")
        yield from _flatten(doc, name, start)


# A JSON List (what `kubectl get -o json` writes) with its items left as JSON: each is decoded as its kind needs.
_JSON_LIST = msgspec.defstruct("JsonList", [("kind", Any, None), ("apiVersion", Any, None),
                                            ("items", list[msgspec.Raw] | None, None)])
PODS_PER_BATCH = 500  # a JSON snapshot's pods, handed on in batches of a live page's size


def _json_list(data: bytes, name: str) -> Any:
    """The JSON document as a List whose items are still JSON, or None when it is something else (an object that
    is not a List, an array: read the plain way)."""
    try:
        doc = msgspec.json.decode(data, type=_JSON_LIST)
    except msgspec.ValidationError:
        return None  # not an object, or a `kind`/`items` of another type: the plain way says what is wrong
    except msgspec.DecodeError as error:
        text = _decode(data, name)
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError as e:  # orjson says where (msgspec gives only the character)
            raise SourceError(f"{name}:{e.lineno}: malformed JSON: {e.msg}") from e
        raise SourceError(f"{name}: malformed JSON: {error}") from error
    if not (isinstance(doc.kind, str) and doc.kind.endswith("List") and doc.items is not None):
        return None
    return doc


def _json_items(doc: Any, data: bytes, name: str) -> Iterator[dict[str, Any] | RawPods]:
    """A JSON List's items: pods as RawPods (decoded typed by the consumer, or as dicts), the rest as dicts."""
    item_kind = doc.kind[: -len("List")] if doc.kind != "List" else None
    api_version = doc.apiVersion if isinstance(doc.apiVersion, str) else "v1"
    pods: list[msgspec.Raw] = []
    for raw in doc.items:
        try:
            kind = shapes.kind_of(raw)
        except msgspec.ValidationError:  # not an object: said as the plain way says it
            kind = None
        if kind == "Pod" or (kind is None and item_kind == "Pod"):
            pods.append(raw)
            if len(pods) == PODS_PER_BATCH:
                yield RawPods(POD_KIND, pods, data, name, api_version)
                pods = []
            continue
        item = orjson.loads(memoryview(raw))
        if isinstance(item, dict) and item_kind and "kind" not in item:
            item["kind"] = item_kind
            item.setdefault("apiVersion", api_version)
        yield from _flatten(item, name, lambda raw=raw: _line_of(data, raw))
    if pods:
        yield RawPods(POD_KIND, pods, data, name, api_version)


def _line_of(data: bytes, raw: msgspec.Raw) -> int:
    """The line of a JSON document on which one of its items (a slice of it) starts: sought only for an error."""
    at = data.find(bytes(memoryview(raw)))
    return data.count(b"\n", 0, at) + 1 if at >= 0 else 1


def _check_aliases(doc: Any, where: str) -> None:
    """Refuse a document whose aliases, expanded, add more than ALIAS_LIMIT nodes to it (a "billion laughs": a
    few lines that expand to gigabytes), or that contains itself. Counted over the shared structure: each
    distinct node once."""
    sizes: dict[int, int] = {}
    own = 0  # nodes as written: each distinct mapping or list, and each of its entries

    def size(node: Any) -> int:
        nonlocal own
        if not isinstance(node, (dict, list)):
            return 1
        known = sizes.get(id(node))
        if known is not None:
            if known < 0:
                raise SourceError(f"{where}: a YAML alias refers to a node that contains it (a cycle)")
            return known
        sizes[id(node)] = -1
        children = node.values() if isinstance(node, dict) else node
        own += 1 + len(children)
        n = 1 + sum(size(c) for c in children)
        sizes[id(node)] = n
        return n

    try:
        expanded = size(doc)
    except RecursionError:
        raise SourceError(f"{where}: the YAML document is nested too deeply") from None
    if expanded - own > ALIAS_LIMIT.value:
        raise ALIAS_LIMIT.exceeded(where, f"its YAML aliases expand it by {expanded - own:,} nodes")


def _yaml_documents(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each YAML document, so that errors can be placed in the whole file."""
    lines = text.splitlines(keepends=True)
    start, buf = 1, []
    for i, line in enumerate(lines, 1):
        if _DOC_SEPARATOR.match(line):
            if buf:
                yield start, "".join(buf)
            start, buf = i, ["\n"]  # keep line numbers: the separator line becomes empty
        else:
            buf.append(line)
    if buf:
        yield start, "".join(buf)


def _flatten(doc: Any, name: str, line: int | Callable[[], int]) -> Iterator[dict[str, Any]]:
    """The objects of a document (a List's items, a bare array's), checked; `line` may be a function, called only
    for an error (finding a JSON item's line is a search of the file)."""
    if isinstance(doc, list):  # a bare JSON array of objects
        for item in doc:
            yield from _flatten(item, name, line)
        return
    if not isinstance(doc, dict):
        raise SourceError(f"{name}:{line() if callable(line) else line}: expected a Kubernetes object (a mapping), "
                          f"got {type(doc).__name__}")
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
        item_kind = kind[: -len("List")] if kind != "List" else None
        for item in doc["items"]:
            if isinstance(item, dict):
                if item_kind and "kind" not in item:
                    item["kind"] = item_kind
                    item.setdefault("apiVersion", doc.get("apiVersion", "v1"))
            yield from _flatten(item, name, line)
        return
    found = shapes.problem(doc)
    if found:
        raise SourceError(f"{name}:{line() if callable(line) else line}: {shapes.ref(doc)}: {found}")
    if not kind or not doc.get("apiVersion") or not (doc.get("metadata") or {}).get("name"):
        raise SourceError(f"{name}:{line() if callable(line) else line}: not a Kubernetes object: apiVersion, kind "
                          "and metadata.name are required")
    yield doc



@dataclass(frozen=True)
class RawPods(Raw):
    """A JSON snapshot's pods, each still JSON (a slice of the file's text), decoded when and as the consumer
    chooses: typed (pods()) or as dicts (parse())."""

    kind: Kind
    items: list[msgspec.Raw]
    data: bytes  # the file's, for an error's line
    file: str
    api_version: str  # the List's

    def parse(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.items:
            item = orjson.loads(memoryview(raw))
            if isinstance(item, dict) and "kind" not in item:
                item["kind"] = self.kind.kind
                item.setdefault("apiVersion", self.api_version)
            out.extend(_flatten(item, self.file, lambda raw=raw: _line_of(self.data, raw)))
        return out

    def pods(self) -> list[Any]:
        """The pods decoded typed (shapes.POD); a problem names the file, line, object and field."""
        out = []
        for raw in self.items:
            try:
                pod = shapes.decode_pod(raw)
                if pod.metadata is None or not pod.metadata.name:
                    raise shapes.TypeProblem("metadata.name is required", None)
            except shapes.TypeProblem as e:
                line = _line_of(self.data, raw)
                item = orjson.loads(memoryview(raw))
                if not isinstance(item, dict):
                    raise SourceError(f"{self.file}:{line}: {e}") from None
                item.setdefault("kind", self.kind.kind)
                list(_flatten(item, self.file, line))  # the plain way's error, naming the field exactly, if it has one
                raise SourceError(f"{self.file}:{line}: {shapes.ref(item)}: {e}") from None
            out.append(pod)
        return out
