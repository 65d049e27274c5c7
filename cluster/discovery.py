"""Which Istio and Gateway API kinds a cluster serves, and at which versions, found through API discovery as
kubectl finds them: the aggregated discovery document (`/apis` as an APIGroupDiscoveryList: one request) where the
server has it, else `/apis` and each wanted group version's resource list. Discovery needs no special rights (every
authenticated user may read it), unlike the CRD list: a role that cannot list CRDs still reads every Istio kind."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from cluster.kubeapi import ApiServer, Failed
from cluster.model import GATEWAY_API_GROUP, ISTIO_GROUPS
from cluster.shapes import version_priority
from cluster.snapshot import Kind

WANTED = (*ISTIO_GROUPS, GATEWAY_API_GROUP)
# Aggregated discovery (GA in Kubernetes 1.30, beta since 1.27); a server without it answers the plain APIGroupList.
AGGREGATED = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")


@dataclass
class Discovered:
    """The wanted groups the server serves, their listable kinds, and the group versions discovery could not read
    (an aggregated API that is down answers 503), with why."""

    groups: set[str] = field(default_factory=set)
    # (group, plural) → (kind, the versions that serve it)
    resources: dict[tuple[str, str], tuple[str, list[str]]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # "group/version" → why

    def add(self, group: str, version: str, resources: Iterable[tuple[str, str, Iterable[str] | None]]) -> None:
        for plural, kind, verbs in resources:
            if "/" in plural or (verbs is not None and "list" not in verbs):  # a subresource, or not listable
                continue
            self.resources.setdefault((group, plural), (kind, []))[1].append(version)

    def kinds(self) -> list[Kind]:
        """One listable Kind per served resource, at the version Kubernetes prefers (the most stable served one:
        Istio still stores some kinds, e.g. Telemetry, as v1alpha1 while serving v1)."""
        out = []
        for (group, plural), (kind, versions) in sorted(self.resources.items()):
            version = max(versions, key=version_priority)
            out.append(Kind(f"{plural}.{group}", f"/apis/{group}/{version}/{plural}", kind, f"{group}/{version}"))
        return out

    @property
    def failed_groups(self) -> set[str]:
        return {gv.split("/")[0] for gv in self.failed}


def discover(api: ApiServer, each: Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]] = map) -> Discovered:
    """What the server serves of WANTED; `each` maps the per-group-version requests of plain discovery (a thread
    pool's map fetches them at once)."""
    doc = _json(api.get("/apis", [], "discovering the served APIs", accept=AGGREGATED))
    found = Discovered()
    if doc.get("kind") == "APIGroupDiscoveryList":
        for group in doc.get("items") or []:
            name = (group.get("metadata") or {}).get("name")
            if name not in WANTED:
                continue
            found.groups.add(name)
            for v in group.get("versions") or []:
                # A Stale version is an aggregated API the server could not reach: what it lists may be old, and
                # its lists will say whether it is back.
                found.add(name, v.get("version", ""), ((r.get("resource", ""), (r.get("responseKind") or {})
                                                        .get("kind", ""), r.get("verbs"))
                                                       for r in v.get("resources") or []))
        return found
    versions = [(g["name"], v["version"]) for g in doc.get("groups") or [] if g.get("name") in WANTED
                for v in g.get("versions") or []]
    found.groups = {g for g, _ in versions}

    def resources(gv: tuple[str, str]) -> tuple[str, str, Any]:
        group, version = gv
        try:
            return group, version, _json(api.get(f"/apis/{group}/{version}", [],
                                                 f"discovering {group}/{version}"))
        except Failed as e:
            if e.status == 404:  # gone between the two requests
                return group, version, {}
            if e.status is not None and e.status < 500:
                raise
            return group, version, e.why  # still unavailable after its tries: said, and the CRDs asked instead

    for group, version, listed in each(resources, versions):
        if isinstance(listed, str):
            found.failed[f"{group}/{version}"] = listed
            continue
        found.add(group, version, ((r.get("name", ""), r.get("kind", ""), r.get("verbs"))
                                   for r in listed.get("resources") or []))
    return found


def _json(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    return doc if isinstance(doc, dict) else {}
