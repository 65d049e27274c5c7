"""What the two loopback Kubernetes APIs share — the tests' (kmock's emulator) and the inventory benchmark's (a
plain threaded server, fast enough for 100 MB of lists): how the API server pages a list, and a kubeconfig that
points at such a server, and the aggregated discovery document both serve."""
from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import yaml

from cluster.shapes import version_priority


def selects(selector: str, labels: dict[str, str]) -> bool:
    """A label selector's equality and existence terms, comma-separated (what meshstep sends)."""
    for term in selector.split(","):
        key, eq, value = term.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def list_page(items: list[dict[str, Any]], selector: str, start: int, limit: int,
              resource_version: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One page of a list answer, as the API server gives it: the items (already in key order) that `selector`
    selects, from the `continue` offset `start`, at most `limit` (0: all); and the list's metadata — the next
    `continue` token and, for an unfiltered list, `remainingItemCount`."""
    if selector:
        items = [o for o in items if selects(selector, o["metadata"].get("labels") or {})]
    end = start + limit if limit else len(items)
    meta: dict[str, Any] = {"resourceVersion": resource_version}
    if end < len(items):
        meta["continue"] = str(end)
        if not selector:  # as the API server: the count of what follows, except for filtered lists
            meta["remainingItemCount"] = len(items) - end
    return items[start:end], meta


def metadata_list(items: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """A list answered as `PartialObjectMetadataList` (the Accept header's `as=`): the items' metadata only."""
    return {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": meta,
            "items": [{"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": o["metadata"]}
                      for o in items]}


def aggregated_discovery(served: Iterable[tuple[str, str, str, str, bool]],
                         stale: Collection[str] = ()) -> dict[str, Any]:
    """`/apis` as aggregated discovery answers it (an APIGroupDiscoveryList: every group, its versions in order of
    preference, each with its resources) for the served (group, version, plural, kind, namespaced) resources; a
    group/version in `stale` is an aggregated API that is down."""
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for group, version, plural, kind, namespaced in served:
        groups.setdefault(group, {}).setdefault(version, []).append({
            "resource": plural, "responseKind": {"group": group, "version": version, "kind": kind},
            "scope": "Namespaced" if namespaced else "Cluster", "verbs": ["get", "list", "watch"]})
    return {"apiVersion": "apidiscovery.k8s.io/v2", "kind": "APIGroupDiscoveryList", "metadata": {},
            "items": [{"metadata": {"name": g}, "versions": [
                {"version": v, "resources": versions[v],
                 "freshness": "Stale" if f"{g}/{v}" in stale else "Current"}
                for v in sorted(versions, key=version_priority, reverse=True)]}
                for g, versions in sorted(groups.items())]}


def write_kubeconfig(path: Path, servers: dict[str, str], current: str) -> Path:
    """A kubeconfig with one context per entry of `servers` (context name → server URL; token auth, plain HTTP)."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": f"{c}-cluster", "cluster": {"server": url}} for c, url in servers.items()],
        "users": [{"name": f"{c}-user", "user": {"token": "test-token"}} for c in servers],
        "contexts": [{"name": c, "context": {"cluster": f"{c}-cluster", "user": f"{c}-user"}} for c in servers],
    }))
    return path
