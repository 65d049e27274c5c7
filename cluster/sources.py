"""Where raw Kubernetes objects come from, as `--source` names it: the bundled demo, a snapshot (file, directory,
.tar.gz: cluster.files), or a live cluster read-only through the official client (cluster.live). What any source
hands on is a cluster.snapshot.Snapshot."""
from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from cluster import files
from cluster.errors import SourceError
from cluster.kubeapi import kubeconfig_paths
from cluster.live import live_snapshot
from cluster.snapshot import Snapshot

DEMO_DIR = Path(__file__).parent / "demo"


def default_source() -> str:
    """`live` when a kubeconfig or in-cluster credentials exist, else the bundled `demo`."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return "live"
    if any(Path(p).is_file() for p in kubeconfig_paths().split(os.pathsep) if p):
        return "live"
    return "demo"


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
        return Snapshot("demo", lambda _v: files.raw_paths(sorted(DEMO_DIR.glob("*.yaml"))))
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
    return Snapshot(source_label(source), lambda _v: files.raw_paths([path], roots), cluster=False)


def files_snapshot(paths: list[str | Path], label: str | None = None) -> Snapshot:
    """A Snapshot of several manifest files (as `meshstep analyze FILE...` takes them)."""
    for p in paths:
        if not os.path.lexists(p):
            raise SourceError(f"{p}: no such file or directory")
    return Snapshot(label or ", ".join(map(str, paths)), lambda _v: files.raw_paths([Path(p) for p in paths]),
                    cluster=False)
