"""Revisions and upgrades: which istiod revision each namespace injects from (through revision tags), which one
each proxy is connected to and at which version, and — when two revisions run side by side — how far the canary
upgrade from the older to the newer one has gone.

Istio's canary upgrade (https://istio.io/latest/docs/setup/upgrade/canary/): install the new revision beside the
old one, relabel namespaces to it and restart their pods, move the gateways, point the `default` tag at it, and
uninstall the old revision once nothing uses it."""
from __future__ import annotations

import copy
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from planner.analysis.common import per_inventory
from planner.components import PROXY_CONTAINER, find_sidecar
from planner.errors import MeshstepError
from planner.inventory import Inventory
from planner.model import Container, KubeObject, Pod, Revision

# Component ids of the proxies that connect to an istiod revision, and the kind of proxy each is.
PROXY_KINDS = {"sidecar": "sidecar", "ingress-gateway": "gateway", "egress-gateway": "gateway",
               "east-west-gateway": "gateway", "waypoint": "waypoint", "ztunnel": "ztunnel"}
TAG_WEBHOOK = "istio-revision-tag-{tag}"  # the MutatingWebhookConfiguration `istioctl tag set` writes


# ---------------------------------------------------------------- versions and names


def minor(version: str | None) -> tuple[int, int] | None:
    """`1.27.3` → (1, 27); None for a version that is not one."""
    parts = (version or "").split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        return None


def _order(r: Revision) -> tuple[Any, ...]:
    """Oldest first: by version, revisions without a known version before the others, then by name."""
    v = tuple(int(x) if x.isdigit() else 0 for x in (r.version or "").split(".")) if r.version else ()
    return (bool(v), v, r.revision)


def tags(inv: Inventory) -> dict[str, str]:
    """Revision tag → the istiod revision it points at (from the tag webhooks' istio.io/tag and istio.io/rev)."""
    return {t: r.revision for r in inv.revisions for t in r.tags}


def resolve(inv: Inventory, name: str | None) -> str:
    """The istiod revision a revision or tag name resolves to; `default` (the legacy label, an unlabelled pod) is
    the default tag's revision when there is one. A name nothing resolves is returned as it is."""
    name = name or "default"
    if any(r.revision == name for r in inv.revisions) and name != "default":
        return name
    return tags(inv).get(name, name)


def revision(inv: Inventory, name: str) -> Revision | None:
    return next((r for r in inv.revisions if r.revision == name), None)


def installed(inv: Inventory) -> list[Revision]:
    """The istiod revisions, oldest first."""
    return sorted(inv.revisions, key=_order)


# ---------------------------------------------------------------- proxies


@dataclass(frozen=True)
class Proxy:
    """A proxy pod (sidecar, gateway, waypoint or ztunnel), its version and the istiod revision it is connected to."""

    kind: str  # sidecar | gateway | waypoint | ztunnel
    component: str  # the component id (ingress-gateway, …)
    pod: Pod
    version: str | None
    revision: str  # resolved through tags

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "component": self.component, "namespace": self.pod.namespace,
                "pod": self.pod.name, "workload": f"{self.pod.workload_kind}/{self.pod.workload_name}",
                "version": self.version, "revision": self.revision}


def _proxy_container(pod: Pod) -> Container | None:
    spec = pod.spec
    return find_sidecar(spec) or next(
        (c for c in spec.containers if c.name == PROXY_CONTAINER or c.image_name in ("proxyv2", "ztunnel")), None)


def _connected_revision(inv: Inventory, pod: Pod) -> str:
    """The injector's record (sidecar.istio.io/status), else the pod's istio.io/rev label (gateways and ztunnel
    installed by istioctl or Helm carry it), else the default revision."""
    rev = (pod.sidecar.revision if pod.sidecar else None) or pod.labels.get("istio.io/rev")
    if rev is None and pod.annotations.get("sidecar.istio.io/status"):
        from planner.inventory import _injected_revision  # the injector's JSON, as the inventory reads it

        rev = _injected_revision(pod.spec)
    return resolve(inv, rev)


def _proxies(inv: Inventory) -> tuple[Proxy, ...]:
    from planner.inventory import _version_of

    out = []
    for c in inv.components:
        kind = PROXY_KINDS.get(c.component)
        if kind is None or c.kind != "Pod":
            continue
        pod = inv.pod(c.namespace, c.name)
        if pod is None:
            continue
        container = _proxy_container(pod)
        version = pod.sidecar.version if pod.sidecar else _version_of(container.image_tag) if container else None
        out.append(Proxy(kind, c.component, pod, version, _connected_revision(inv, pod)))
    return tuple(out)


def proxies(inv: Inventory) -> tuple[Proxy, ...]:
    """Every proxy pod of the inventory, built once per inventory."""
    return per_inventory(inv, "revisions.proxies", _proxies)


def proxy_of(inv: Inventory, pod: Pod) -> Proxy | None:
    return per_inventory(inv, "revisions.proxy_by_pod",
                         lambda i: {(p.pod.namespace, p.pod.name): p for p in proxies(i)}).get((pod.namespace, pod.name))


# ---------------------------------------------------------------- namespaces


@dataclass(frozen=True)
class NamespaceRevision:
    """What a namespace injects: its label as written, and the revision and version that resolves to."""

    namespace: str
    label: str | None  # `istio-injection=enabled`, `istio.io/rev=canary`; None when not labelled for sidecars
    injects: str | None  # the revision or tag the label names (`default` for istio-injection=enabled)
    revision: str | None  # the istiod revision that resolves to
    version: str | None
    proxies: dict[str, int]  # revision → sidecars and waypoints of the namespace connected to it
    stale: tuple[str, ...]  # pods whose proxy differs from what the namespace injects now (restart them)

    def to_json(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "label": self.label, "injects": self.injects,
                "revision": self.revision, "version": self.version, "proxies": dict(self.proxies),
                "stale_pods": list(self.stale)}


def _label(labels: dict[str, str]) -> str | None:
    if labels.get("istio-injection") == "enabled":
        return "istio-injection=enabled"
    if labels.get("istio.io/rev") and labels.get("istio-injection") != "disabled":
        return f"istio.io/rev={labels['istio.io/rev']}"
    return None


def _namespace_revisions(inv: Inventory) -> dict[str, NamespaceRevision]:
    by_ns: dict[str, list[Proxy]] = defaultdict(list)
    for p in proxies(inv):
        if p.kind in ("sidecar", "waypoint"):
            by_ns[p.pod.namespace].append(p)
    out = {}
    for name in inv.namespace_names():
        ns = inv.namespaces.get(name)
        injects = ns.revision if ns is not None and ns.injection == "sidecar" else None
        rev = resolve(inv, injects) if injects else None
        version = (r.version if (r := revision(inv, rev)) else None) if rev else None
        mine = by_ns.get(name, [])
        if not mine and injects is None:
            continue
        stale = tuple(p.pod.name for p in mine if p.kind == "sidecar" and rev is not None
                      and (p.revision != rev or version is not None and p.version not in (None, version)))
        out[name] = NamespaceRevision(name, _label(ns.labels) if ns else None, injects, rev, version,
                                      dict(sorted(Counter(p.revision for p in mine).items())), stale)
    return out


def namespace_revisions(inv: Inventory) -> dict[str, NamespaceRevision]:
    """Per namespace labelled for sidecars or running proxies: what it injects and what its proxies run."""
    return per_inventory(inv, "revisions.namespaces", _namespace_revisions)


def stale_pods(inv: Inventory) -> list[Proxy]:
    """Sidecars whose revision or version differs from what their namespace injects now: a restart moves them."""
    nss = namespace_revisions(inv)
    return [p for p in proxies(inv) if p.kind == "sidecar" and p.pod.name in (nss.get(p.pod.namespace)
                                                                              or _NONE).stale]


_NONE = NamespaceRevision("", None, None, None, None, {}, ())


# ---------------------------------------------------------------- the upgrade in progress


@dataclass(frozen=True)
class NamespaceProgress:
    namespace: str
    injects: str | None  # the revision the namespace's label resolves to
    target: str  # the revision the upgrade moves to
    on_new: int  # proxies connected to the new revision
    on_old: int  # proxies connected to any other

    @property
    def state(self) -> str:
        """done (injects from the new revision, every proxy on it), restart pending (relabelled, some pods still
        on an old revision) or not started (injects from an old revision)."""
        if self.injects != self.target:
            return "not started"
        return "done" if self.on_old == 0 else "restart pending"

    def to_json(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "injects": self.injects, "on_new": self.on_new, "on_old": self.on_old,
                "state": self.state}


@dataclass(frozen=True)
class Upgrade:
    """Two or more istiod revisions side by side: from the oldest to the newest."""

    from_revision: str
    from_version: str | None
    to_revision: str
    to_version: str | None
    namespaces: tuple[NamespaceProgress, ...]
    default_tag: str | None  # the revision the `default` tag points at

    @property
    def done(self) -> int:
        return sum(n.state == "done" for n in self.namespaces)

    def to_json(self) -> dict[str, Any]:
        return {"from": {"revision": self.from_revision, "version": self.from_version},
                "to": {"revision": self.to_revision, "version": self.to_version},
                "default_tag": self.default_tag, "namespaces_done": self.done,
                "namespaces_total": len(self.namespaces), "namespaces": [n.to_json() for n in self.namespaces]}


def _upgrade(inv: Inventory) -> Upgrade | None:
    revs = installed(inv)
    if len(revs) < 2:
        return None
    old, new = revs[0], revs[-1]
    progress = []
    for ns in namespace_revisions(inv).values():
        on_new = ns.proxies.get(new.revision, 0)
        progress.append(NamespaceProgress(ns.namespace, ns.revision, new.revision, on_new,
                                          sum(ns.proxies.values()) - on_new))
    return Upgrade(old.revision, old.version, new.revision, new.version, tuple(progress), tags(inv).get("default"))


def upgrade(inv: Inventory) -> Upgrade | None:
    """The upgrade in progress (more than one istiod revision installed), else None."""
    return per_inventory(inv, "revisions.upgrade", _upgrade)


def headline(inv: Inventory) -> str:
    """`Istio 1.27.3`; during an upgrade both versions: `Istio 1.26.4 → 1.27.3 (upgrading 1-26 → 1-27, …)`."""
    up = upgrade(inv)
    if up is None:
        return f"Istio {inv.istio_version or '(version unknown)'}"
    return (f"Istio {up.from_version or '?'} → {up.to_version or '?'} (upgrading revision {up.from_revision} → "
            f"{up.to_revision}: {up.done} of {len(up.namespaces)} namespaces done, default tag on "
            f"{up.default_tag or 'no revision'})")
