"""Where raw Kubernetes objects come from: the bundled demo, a snapshot (file, directory, .tar.gz), or a live
cluster read-only through the official client. Objects are plain dicts; a live list's pages may also be handed on
unparsed (RawPage), for the inventory to decode its pods typed (shapes.POD)."""
from __future__ import annotations

import os
import queue
import re
import stat
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson
import yaml

from cluster import shapes
from cluster.errors import SourceError
from cluster.model import GATEWAY_API_GROUP, ISTIO_GROUPS

DEMO_DIR = Path(__file__).parent / "demo"
SNAPSHOT_SUFFIXES = (".yaml", ".yml", ".json")
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # safe either way; the C one is ~10x faster
_DOC_SEPARATOR = re.compile(r"^---(\s|$)")
_ANCHOR = re.compile(r"(?:^|[\s\[{,:-])&[^\s\[\]{},]", re.MULTILINE)  # `&name`, not a `&` inside a scalar

# A secret's values are never kept, whatever the source gives. What a check needs to know of a TLS credential is
# kept instead, under CREDENTIAL (see credential_facts): which keys it has, and its certificate's validity.
_SECRET_VALUE_KEYS = ("data", "stringData")
CREDENTIAL = "_meshstep_credential"
# The key pairs Istio's gateways read a credential from: a kubernetes.io/tls Secret's, or a generic Secret's.
CREDENTIAL_KEYS = (("tls.crt", "tls.key"), ("cert", "key"))


@dataclass
class Visibility:
    """What the source could not show: kinds the API refused (403), and what is not installed (the inventory
    fills that in from the CRDs of a whole-cluster source)."""

    forbidden: list[str] = field(default_factory=list)
    not_installed: list[str] = field(default_factory=list)


@dataclass
class Snapshot:
    """Raw objects of one source, produced lazily by `objects()` (a live cluster streams page by page)."""

    label: str
    produce: Callable[[Visibility], Iterable[dict[str, Any] | RawPage | RawPods]]
    visibility: Visibility = field(default_factory=Visibility)
    # Whether the source is a whole cluster (live, demo) rather than a set of manifests.
    cluster: bool = True

    def objects(self) -> Iterator[dict[str, Any]]:
        """Every object, as a dict."""
        return self.stream()  # type: ignore[return-value]  (no raw kinds: dicts only)

    def stream(self, raw_kinds: Collection[str] = ()) -> Iterator[dict[str, Any] | RawPage | RawPods]:
        """Every object as a dict, except that a live list's pages of `raw_kinds` (e.g. "Pod") come as RawPages, and
        a JSON snapshot's as RawPods, for the consumer to decode typed (the inventory decodes pods straight into
        Structs)."""
        for item in self.produce(self.visibility):
            if type(item) is RawPage or type(item) is RawPods:
                if item.kind.kind in raw_kinds:
                    yield item
                    continue
                for obj in item.parse():
                    yield _trimmed(obj)
            else:
                yield _trimmed(item)


def _trimmed(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without what meshstep never keeps: a Secret's values (what a check needs of them is kept as
    credential facts), and the API server's field-ownership record (metadata.managedFields: kilobytes an object on
    a live cluster, never read; a pod's typed decoding skips it already)."""
    meta = obj.get("metadata")
    if type(meta) is dict:
        meta.pop("managedFields", None)
    if obj.get("kind") == "Secret":
        if any(obj.get(k) for k in _SECRET_VALUE_KEYS):
            obj[CREDENTIAL] = credential_facts(obj.get("data") or {}, obj.get("stringData") or {})
        for k in _SECRET_VALUE_KEYS:
            obj.pop(k, None)
    return obj


def credential_facts(data: dict[str, Any], string_data: dict[str, Any]) -> dict[str, Any]:
    """What can be said of a Secret as a TLS credential without keeping its values: its keys, and either the
    certificate's expiry (`not_after`, ISO 8601) or why it cannot serve (`problem`), as Istio's gateways read it."""
    import base64
    import binascii
    import warnings

    from cryptography import x509

    values: dict[str, bytes] = {}
    for k, v in data.items():
        try:
            values[k] = base64.b64decode(str(v), validate=True)
        except (binascii.Error, ValueError):
            values[k] = b""
    values.update({k: str(v).encode() for k, v in string_data.items()})
    facts: dict[str, Any] = {"keys": sorted(values)}
    pair = next((p for p in CREDENTIAL_KEYS if all(values.get(k) for k in p)), None)
    if pair is None:
        facts["problem"] = "it has neither tls.crt and tls.key nor cert and key"
        return facts
    try:
        with warnings.catch_warnings():  # e.g. a non-positive serial number: judged below, not worth a warning
            warnings.simplefilter("ignore")
            cert = x509.load_pem_x509_certificate(values[pair[0]])
    except ValueError:
        facts["problem"] = f"its {pair[0]} is not a PEM certificate"
        return facts
    facts["not_after"] = cert.not_valid_after_utc.isoformat()
    return facts


def default_source() -> str:
    """`live` when a kubeconfig or in-cluster credentials exist, else the bundled `demo`."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return "live"
    if any(Path(p).is_file() for p in _kubeconfig_paths().split(os.pathsep) if p):
        return "live"
    return "demo"


def _kubeconfig_paths() -> str:
    """$KUBECONFIG (paths joined by os.pathsep, as kubectl takes them), else ~/.kube/config."""
    return os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")


def source_label(source: str | None) -> str:
    """The name a `--source` value gives its snapshot (and records key its cluster by), without reading it: demo,
    live, context:NAME, or the path as the system writes it (`./snap/` is `snap`)."""
    source = source or default_source()
    return source if source in ("demo", "live") or source.startswith("context:") else str(Path(source))


def load_snapshot(source: str | None = None, roots: Collection[Path] | None = None) -> Snapshot:
    """The Snapshot for a `--source` value: demo | live | context:NAME | a path (with `roots`, only files whose
    real path lies under one of them are read)."""
    source = source or default_source()
    if source == "demo":
        return Snapshot("demo", lambda _v: _read_paths(sorted(DEMO_DIR.glob("*.yaml"))))
    if source == "live":
        return live_snapshot(None)
    if source.startswith("context:"):
        return live_snapshot(source.split(":", 1)[1])
    path = Path(source)
    if not os.path.lexists(path):
        raise SourceError(
            f"source {source!r}: no such file or directory "
            "(--source takes demo, live, context:NAME, or a snapshot file, directory or .tar.gz)"
        )
    return Snapshot(source_label(source), lambda _v: _read_paths([path], roots), cluster=False)


def files_snapshot(paths: list[str | Path], label: str | None = None) -> Snapshot:
    """A Snapshot of several manifest files (as `meshstep analyze FILE...` takes them)."""
    for p in paths:
        if not os.path.lexists(p):
            raise SourceError(f"{p}: no such file or directory")
    return Snapshot(label or ", ".join(map(str, paths)), lambda _v: _read_paths([Path(p) for p in paths]),
                    cluster=False)


# ---------------------------------------------------------------- snapshot files


@dataclass(frozen=True)
class Limit:
    """A bound on what one snapshot may make meshstep read or build, settable through its environment variable:
    a hostile or broken file (a gzip of gigabytes of spaces, a YAML alias bomb, /dev/zero) must end in an error
    that says which bound it hit, not in an exhausted machine."""

    env: str
    default: int
    what: str  # "a snapshot file may hold", in "larger than the 256 MiB a snapshot file may hold"
    unit: str = "MiB"

    @property
    def value(self) -> int:
        raw = os.environ.get(self.env)
        try:
            return int(raw) if raw else self.default
        except ValueError:
            raise SourceError(f"{self.env}={raw!r} is not a whole number") from None

    @property
    def bytes(self) -> int:
        return self.value * (1 << 20) if self.unit == "MiB" else self.value

    def exceeded(self, where: str, what: str) -> SourceError:
        return SourceError(f"{where}: {what}, more than the {self.value:,} {self.unit} {self.what} "
                           f"(raise it with {self.env}=N if the snapshot is genuine)")


FILE_LIMIT = Limit("MESHSTEP_MAX_FILE_MB", 256, "a snapshot file or archive member may hold")
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
    for item in _read_paths(paths, roots):
        if type(item) is RawPods:
            yield from item.parse()
        else:
            yield item


def _read_paths(paths: Iterable[Path], roots: Collection[Path] | None = None) -> Iterator[dict[str, Any] | RawPods]:
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


# ---------------------------------------------------------------- live cluster


@dataclass(frozen=True)
class Kind:
    """A listable resource: `path` is the collection URL; `label` how visibility reports name it."""

    label: str
    path: str
    kind: str
    api_version: str
    label_selector: str | None = None
    metadata_only: bool = False


@dataclass(frozen=True)
class RawPage:
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
            if p.metadata is None or not p.metadata.name:
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
class RawPods:
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
    Kind("pods", "/api/v1/pods", "Pod", "v1"),
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
POD_KIND = next(k for k in CORE_KINDS if k.kind == "Pod")
CRD_KIND = Kind("customresourcedefinitions", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                "CustomResourceDefinition", "apiextensions.k8s.io/v1")

PAGE_SIZE = 500
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
# One deadline for the whole read: a server that answers slowly, or drips its answers a byte at a time, would
# otherwise keep every per-request timeout happy for ever.
DEADLINE = Limit("MESHSTEP_READ_TIMEOUT", 300, "a live read may take in all", unit="seconds")
PROGRESS_AFTER = 2.0  # seconds: a read that takes longer says how far it is (on stderr, when that is a terminal)
WORKERS = 6
_END = object()


def live_snapshot(context: str | None, api_client: Any = None, page_size: int = PAGE_SIZE,
                  progress: Callable[[str], None] | None = None) -> Snapshot:
    """A live cluster through kubeconfig (optionally a named context) or in-cluster config; read-only. A read
    that takes a while reports how far it is to `progress` (default: stderr, when it is a terminal; "" ends it)."""
    client = api_client or _api_client(context)
    where = f"kubeconfig context {context!r}" if context else "the current kubeconfig context"
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not context and api_client is None:
        where = "in-cluster configuration"
    reader = _LiveReader(client, client.configuration.host, where, page_size, progress)
    label = f"context:{context}" if context else "live"
    return Snapshot(label, reader.read)


def _stderr_progress() -> Callable[[str], None]:
    """Progress on one line of stderr when a person watches it (a terminal); nothing otherwise."""
    if not sys.stderr.isatty():
        return lambda _line: None

    def show(line: str) -> None:
        sys.stderr.write(f"\r\x1b[K{line}" if line else "\r\x1b[K")
        sys.stderr.flush()
    return show


def _api_client(context: str | None) -> Any:
    from kubernetes import client, config

    cfg = client.Configuration()
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not context:
            config.load_incluster_config(client_configuration=cfg)
        else:
            # The client reads $KUBECONFIG once, at import; read it now, as kubectl would.
            config.load_kube_config(config_file=_kubeconfig_paths(), context=context, client_configuration=cfg,
                                    persist_config=False)
    except (config.ConfigException, OSError, ValueError) as e:
        raise SourceError(f"cannot load kubeconfig{f' context {context!r}' if context else ''}: {e}") from e
    cfg.retries = 0  # an unreachable server must fail within the timeout, not after urllib3's retries
    return client.ApiClient(cfg)


class _LiveReader:
    """Lists every kind meshstep needs, in pages, kinds concurrently; JSON parsed raw with orjson."""

    def __init__(self, client: Any, server: str, where: str, page_size: int,
                 progress: Callable[[str], None] | None = None):
        self.client, self.server, self.where, self.page_size = client, server, where, page_size
        self.progress = progress if progress is not None else _stderr_progress()
        self.deadline = self.started = self.shown = 0.0
        self.showing = False
        self.pages = self.bytes = 0
        self.lock = threading.Lock()

    def read(self, visibility: Visibility) -> Iterator[dict[str, Any]]:
        self.started = time.monotonic()
        self.deadline = self.started + DEADLINE.value
        self.shown = self.started + PROGRESS_AFTER  # when progress is next due
        self.showing = False
        try:
            yield from self._read(visibility)
        finally:
            if self.showing:  # end its line
                self.progress("")

    def _read(self, visibility: Visibility) -> Iterator[dict[str, Any]]:
        self._preflight()
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
                with ThreadPoolExecutor(WORKERS) as pool:
                    futures = [pool.submit(self._list, k, visibility, put) for k in CORE_KINDS]
                    # Which Istio kinds exist is known only once the CRDs are read.
                    crds = self._list(CRD_KIND, visibility, put, keep=True)
                    futures += [pool.submit(self._list, k, visibility, put) for k in _custom_kinds(crds or [])]
                    for f in futures:
                        f.result()
                put(_END)
            except BaseException as e:  # handed to the consumer, who raises it
                put(e)

        threading.Thread(target=run, name="meshstep-live-read", daemon=True).start()
        try:
            while True:
                item = pages.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, RawPage):  # parsed by the consumer, one page at a time
                    yield item
                else:
                    yield from item
        finally:
            stop.set()

    def _preflight(self) -> None:
        try:
            self._get("/version", [])
        except SourceError:
            raise
        except Exception as e:
            raise SourceError(f"cannot reach the Kubernetes API server at {self.server} ({self.where}): "
                              f"{_reason(e)}") from e

    def _get(self, path: str, query: list[tuple[str, Any]], metadata_only: bool = False) -> bytes:
        """One GET through the client's auth and connection pool; the body is returned unparsed (orjson reads
        it, not the client's typed models)."""
        accept = ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
                  if metadata_only else "application/json")
        method, url, headers, _body, _post = self.client.param_serialize(
            "GET", path, query_params=query, header_params={"Accept": accept}, auth_settings=["BearerToken"])
        left = self._left()
        resp = self.client.call_api(method, url, header_params=headers,
                                    _request_timeout=(min(CONNECT_TIMEOUT, left), min(READ_TIMEOUT, left)))
        # Read as it arrives (read1: whatever the socket has), against the deadline and the size limit.
        body, size = [], 0
        while chunk := resp.response.read1(1 << 16):
            body.append(chunk)
            size += len(chunk)
            if size > FILE_LIMIT.bytes:
                raise FILE_LIMIT.exceeded(f"{self.server}{path}", "an answer larger than that")
            self._left()
            self._count(len(chunk))
        resp.response.release_conn()
        if not 200 <= resp.status < 300:
            raise _HTTPStatus(resp.status, resp.reason)
        with self.lock:
            self.pages += 1
        return b"".join(body)

    def _left(self) -> float:
        """Seconds left before the read's deadline; past it, the error that says so."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise SourceError(f"reading the cluster at {self.server} ({self.where}) took longer than "
                              f"{DEADLINE.value} s ({self.pages} lists, {self.bytes >> 20} MiB read so far): "
                              f"retry, or allow more with {DEADLINE.env}=SECONDS")
        return left

    def _count(self, n: int) -> None:
        with self.lock:
            self.bytes += n
            now = time.monotonic()
            if now < self.shown:
                return
            self.shown, self.showing = now + 1.0, True
        self.progress(f"reading {self.server} ({self.where}): {self.pages} pages, {self.bytes / (1 << 20):.1f} MiB, "
                      f"{now - self.started:.0f} s of at most {DEADLINE.value} s")

    def _list(self, kind: Kind, visibility: Visibility, put: Callable[[Any], None],
              keep: bool = False) -> list[dict[str, Any]] | None:
        """Pages through one kind; 403 → forbidden, 404 → not served; others raise with server and kind."""
        kept: list[dict[str, Any]] = []
        token = None
        while True:
            query: list[tuple[str, Any]] = [("limit", self.page_size)]
            if token:
                query.append(("continue", token))
            if kind.label_selector:
                query.append(("labelSelector", kind.label_selector))
            try:
                data = self._get(kind.path, query, kind.metadata_only)
                meta = _list_metadata(data)
                token = meta.get("continue") or None
                page = RawPage(kind, data, f"{self.server} ({self.where})")
                if keep:
                    items = page.parse()
                    kept.extend(items)
                    put(items)
                else:
                    # Pages wait in the queue as bytes and are parsed by the consumer as it reaches them: parsed,
                    # a page takes ~8x its JSON size, and a slower consumer would otherwise hold a queue of them.
                    put(page)
            except _HTTPStatus as e:
                if e.status == 403:
                    visibility.forbidden.append(kind.label)
                    return None
                if e.status == 404:
                    return None
                if e.status == 410:  # the continue token expired: Kubernetes asks for a fresh list
                    raise SourceError(f"listing {kind.label} on {self.server}: the list changed too fast to page "
                                      "through (continue token expired); retry") from e
                raise SourceError(f"listing {kind.label} on {self.server} ({self.where}): HTTP {e.status} "
                                  f"{e.reason}") from e
            except SourceError:
                raise
            except Exception as e:
                raise SourceError(f"listing {kind.label} on {self.server} ({self.where}): {_reason(e)}") from e
            if not token:
                return kept


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


class _HTTPStatus(Exception):
    """A non-2xx answer of the API server."""

    def __init__(self, status: int, reason: str | None):
        super().__init__(f"HTTP {status} {reason or ''}".strip())
        self.status, self.reason = status, reason


def _custom_kinds(crds: list[dict[str, Any]]) -> list[Kind]:
    """One listable Kind per installed Istio or Gateway API CRD, at the version Kubernetes prefers (the most
    stable served one: Istio still stores some kinds, e.g. Telemetry, as v1alpha1 while serving v1)."""
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


def _reason(e: Exception) -> str:
    text = str(getattr(e, "reason", None) or e)
    return text.splitlines()[0][:300] if text else type(e).__name__
