"""The Inventory: an immutable, indexed model of one cluster (or set of manifests), built in one pass over a
Snapshot. Pods are compacted as they stream in, so a 10,000-pod cluster is never held as raw JSON at once."""
from __future__ import annotations

import gc
import threading
import weakref
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from cluster import components, decode
from cluster.kubectl_apply import stored
from cluster.live import CRD_KIND
from cluster.model import (
    CRD,
    GATEWAY_API_GROUP,
    ISTIO_GROUPS,
    ComponentInstance,
    KubeObject,
    Namespace,
    Pod,
    Ref,
    Revision,
    Service,
    Workload,
)
from cluster.shapes import version_priority
from cluster.snapshot import Raw, Snapshot, Visibility

DEFAULT_ROOT_NAMESPACE = "istio-system"

# Istio's protocol selection: appProtocol, else the port name's prefix before the first '-'.
# The kinds asked of any inventory (of_kind, get) within a `reading()` block, when one is open.
_READING: ContextVar[set[str] | None] = ContextVar("meshstep_reading", default=None)


@contextmanager
def reading() -> Iterator[set[str]]:
    """The kinds asked of any inventory (of_kind, get) within the block: what a computation reads."""
    kinds: set[str] = set()
    token = _READING.set(kinds)
    try:
        yield kinds
    finally:
        _READING.reset(token)


@dataclass(frozen=True)
class Inventory:
    source: str
    cluster: bool  # a whole cluster (live, demo) rather than a set of manifests
    visibility: Visibility
    namespaces: dict[str, Namespace]
    pods: tuple[Pod, ...]
    services: tuple[Service, ...]
    workloads: tuple[Workload, ...]
    objects: dict[str, tuple[KubeObject, ...]]  # by kind: every object but Pods (Services and Namespaces too)
    crds: dict[str, CRD]  # Istio and Gateway API CRDs, by plural.group
    mesh_configs: dict[str, dict[str, Any]]  # by revision ("default" for the `istio` ConfigMap)
    mesh_networks: dict[str, Any] = field(default_factory=dict)
    # The mesh config `--mesh-config` gave in place of the cluster's (mesh_configs holds it as "default"); kept so
    # that with_changes keeps it too.
    mesh_override: dict[str, Any] | None = field(default=None, repr=False)

    # ------------------------------------------------------------ indexes (computed once, on first use)

    @cached_property
    def pods_by_namespace(self) -> dict[str, tuple[Pod, ...]]:
        out: dict[str, list[Pod]] = defaultdict(list)
        for p in self.pods:
            out[p.namespace].append(p)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def services_by_namespace(self) -> dict[str, tuple[Service, ...]]:
        out: dict[str, list[Service]] = defaultdict(list)
        for s in self.services:
            out[s.namespace].append(s)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def _by_key(self) -> dict[tuple[str, str | None, str], KubeObject]:
        return {(o.kind, o.namespace, o.name): o for objs in self.objects.values() for o in objs}

    @cached_property
    def _pods_by_key(self) -> dict[tuple[str, str], Pod]:
        return _first_by_key(((p.namespace, p.name), p) for p in self.pods)

    @cached_property
    def _services_by_key(self) -> dict[tuple[str, str], Service]:
        return _first_by_key(((s.namespace, s.name), s) for s in self.services)

    @cached_property
    def _workloads_by_key(self) -> dict[tuple[str, str, str], Workload]:
        return _first_by_key(((w.namespace, w.kind, w.name), w) for w in self.workloads)

    @cached_property
    def _components_by_ref(self) -> dict[tuple[str, str, str], ComponentInstance]:
        return _first_by_key(((c.kind, c.namespace, c.name), c) for c in self.components)

    @cached_property
    def _namespace_names(self) -> tuple[str, ...]:
        names = set(self.namespaces) | set(self.pods_by_namespace) | set(self.services_by_namespace)
        names |= {o.namespace for objs in self.objects.values() for o in objs if o.namespace}
        return tuple(sorted(names))

    @cached_property
    def _pods_by_label(self) -> dict[tuple[str, str, str], list[Pod]]:
        out: dict[tuple[str, str, str], list[Pod]] = defaultdict(list)
        for p in self.pods:
            for k, v in p.labels.items():
                out[(p.namespace, k, v)].append(p)
        return out

    @cached_property
    def _recognised(self) -> dict[int, tuple[Any, Any]]:
        """components.recognise of each pod spec, by the spec's identity (the spec kept with it, so that the
        identity stays its own: an id is reused only once its object is freed, and a spec is freed only once its
        entry is gone): shared with the inventories made from this one, which keep most of its pods. Bounded by
        `components`: an app that keeps an inventory overlays it again and again, each restart a new spec."""
        return {}

    @cached_property
    def components(self) -> tuple[ComponentInstance, ...]:
        """One entry per Istio component pod; per workload where the source has no pods of that workload."""
        found = []
        with_pods = set()
        memo = self._recognised
        for p in self.pods:
            if (known := memo.get(id(p.spec))) is None:
                known = memo[id(p.spec)] = (p.spec, components.recognise(p.spec))
            hit = known[1]
            with_pods.add((p.namespace, p.workload_kind, p.workload_name))
            if hit:
                found.append(ComponentInstance(hit[0], components.PLANES[hit[0]], "Pod", p.namespace, p.name, hit[1]))
        if len(memo) > 2 * len(self.pods):  # mostly the specs of pods restarted since: only this one's are kept
            for key in memo.keys() - {id(p.spec) for p in self.pods}:
                memo.pop(key, None)
        for w in self.workloads:
            if w.template is None or (w.namespace, w.kind, w.name) in with_pods or w.kind == "ReplicaSet":
                continue
            hit = components.recognise(w.template)
            if hit:
                found.append(ComponentInstance(hit[0], components.PLANES[hit[0]], w.kind, w.namespace, w.name, hit[1]))
        return tuple(found)

    @cached_property
    def components_by_id(self) -> dict[str, list[ComponentInstance]]:
        """The component instances of each component id present, in `components` order."""
        out: dict[str, list[ComponentInstance]] = defaultdict(list)
        for c in self.components:
            out[c.component].append(c)
        return dict(out)

    @cached_property
    def revisions(self) -> tuple[Revision, ...]:
        """The istiod revisions, with their version (image tag) and the tags pointing at them."""
        tags: dict[str, list[str]] = defaultdict(list)
        for wh in self.of_kind("MutatingWebhookConfiguration"):
            tag = wh.labels.get("istio.io/tag")
            if tag:
                tags[wh.labels.get("istio.io/rev", "default")].append(tag)
        groups: dict[tuple[str, str], list[Any]] = {}  # (namespace, revision) → [pods, ready, version]
        for c in self.components:
            if c.component != "istiod":
                continue
            pod = self.pod(c.namespace, c.name) if c.kind == "Pod" else None
            spec = pod.spec if pod else self.workload(c.namespace, c.kind, c.name).template  # type: ignore[union-attr]
            g = groups.setdefault((c.namespace, spec.labels.get("istio.io/rev") or "default"), [0, 0, None])
            g[0] += pod is not None
            g[1] += bool(pod and pod.ready)
            g[2] = g[2] or decode.pilot_version(spec)
        out = [Revision(rev, version, ns, n, ready, tuple(sorted(tags[rev])))
               for (ns, rev), (n, ready, version) in sorted(groups.items())]
        return tuple(out)

    # ------------------------------------------------------------ lookups

    def of_kind(self, kind: str) -> tuple[KubeObject, ...]:
        if (kinds := _READING.get()) is not None:
            kinds.add(kind)
        return self.objects.get(kind, ())

    def get(self, kind: str, namespace: str | None, name: str) -> KubeObject | None:
        if (kinds := _READING.get()) is not None:
            kinds.add(kind)
        return self._by_key.get((kind, namespace, name))

    def pod(self, namespace: str, name: str) -> Pod | None:
        return self._pods_by_key.get((namespace, name))

    def workload(self, namespace: str, kind: str, name: str) -> Workload | None:
        return self._workloads_by_key.get((namespace, kind, name))

    def component(self, kind: str, namespace: str, name: str) -> ComponentInstance | None:
        """The Istio component a pod (kind "Pod") or a pod-less workload is, if any."""
        return self._components_by_ref.get((kind, namespace, name))

    def pods_matching(self, namespace: str, selector: dict[str, str]) -> list[Pod]:
        """Pods of a namespace whose labels match every key of a (non-empty) selector."""
        if not selector:
            return []
        items = iter(selector.items())
        k, v = next(items)
        return [p for p in self._pods_by_label.get((namespace, k, v), ())
                if all(p.labels.get(a) == b for a, b in items)]

    def pods_of_service(self, svc: Service) -> list[Pod]:
        return self.pods_matching(svc.namespace, svc.selector)

    def pods_of_workload(self, w: Workload) -> list[Pod]:
        """The workload's pods the source holds."""
        return [p for n in w.pods if (p := self.pod(w.namespace, n))]

    def service(self, namespace: str, name: str) -> Service | None:
        return self._services_by_key.get((namespace, name))

    def istio_config(self) -> list[KubeObject]:
        """Every Istio and Gateway API config object, in a stable order."""
        return [o for kind in sorted(self.objects) for o in self.objects[kind]
                if o.group in ISTIO_GROUPS or o.group == GATEWAY_API_GROUP]

    def namespace_names(self) -> list[str]:
        """Namespaces present, plus those only referred to by objects (manifests often omit the Namespace)."""
        return list(self._namespace_names)

    # ------------------------------------------------------------ mesh

    @property
    def _mesh_config_revision(self) -> str | None:
        """Whose mesh config is the default revision's: `default` (the `istio` ConfigMap), the default tag's
        revision, else the first there is."""
        if "default" in self.mesh_configs:
            return "default"
        for r in self.revisions:
            if "default" in r.tags and r.revision in self.mesh_configs:
                return r.revision
        return next(iter(self.mesh_configs), None)

    @property
    def mesh_config(self) -> dict[str, Any]:
        """The mesh config of the default revision (what `istio` or the default tag's ConfigMap says)."""
        rev = self._mesh_config_revision
        return self.mesh_configs[rev] if rev is not None else {}

    @property
    def mesh_config_map(self) -> KubeObject | None:
        """The ConfigMap `mesh_config` was read from (None for a --mesh-config file, or a cluster without one)."""
        rev = self._mesh_config_revision
        name = "istio" if rev == "default" else f"istio-{rev}"
        return next((cm for cm in self.of_kind("ConfigMap") if cm.name == name
                     and "mesh" in (cm.raw.get("data") or {})), None) if rev is not None else None

    @cached_property
    def mesh_summary(self) -> dict[str, int]:
        """How far the cluster is in the mesh: namespaces and pods in it, out of all (read it, do not change it)."""
        meshed = [p for p in self.pods if self.in_mesh(p)]
        return {"namespaces_in_mesh": len({p.namespace for p in meshed}),
                "namespaces_total": len(self.namespace_names()), "pods_in_mesh": len(meshed),
                "pods_total": len(self.pods)}

    @property
    def root_namespace(self) -> str:
        return self.mesh_config.get("rootNamespace") or DEFAULT_ROOT_NAMESPACE

    @property
    def istio_installed(self) -> bool:
        return any(c.group in ISTIO_GROUPS for c in self.crds.values()) or bool(self.revisions)

    @property
    def istio_version(self) -> str | None:
        versions = sorted({r.version for r in self.revisions if r.version})
        return versions[-1] if versions else None

    def api_version(self, group: str, kind: str) -> str:
        """The apiVersion to write a kind in: the most stable version the cluster serves (as Kubernetes orders them);
        v1 where the source has not the kind's CRD."""
        served = next((c.served_versions for c in self.crds.values() if c.group == group and c.kind == kind), ())
        return f"{group}/{max(served, key=version_priority, default='v1')}"

    def in_mesh(self, pod: Pod) -> bool:
        """Whether a pod's traffic goes through Istio: a sidecar, or ambient redirection."""
        return pod.sidecar is not None or pod.annotations.get("ambient.istio.io/redirection") == "enabled"

    def namespace_rows(self) -> list[dict[str, Any]]:
        """Per namespace: injection mode, revision, pods and pods with a sidecar."""
        rows = []
        for name in self.namespace_names():
            ns = self.namespaces.get(name)
            pods = self.pods_by_namespace.get(name, ())
            rows.append({"name": name, "injection": ns.injection if ns else "none",
                         "revision": ns.revision if ns else None,
                         "pods": len(pods), "pods_with_sidecar": sum(p.sidecar is not None for p in pods)})
        return rows

    def report(self) -> dict[str, Any]:
        """The JSON-ready inventory report (`meshstep inventory --format json`)."""
        return {
            "source": self.source,
            "istio": {"installed": self.istio_installed, "version": self.istio_version,
                      "root_namespace": self.root_namespace},
            "control_plane": {"revisions": [
                {"revision": r.revision, "version": r.version, "namespace": r.namespace, "istiod_pods": r.istiod_pods,
                 "ready_pods": r.ready_pods, "tags": list(r.tags)} for r in self.revisions]},
            "namespaces": self.namespace_rows(),
            "components": [{"component": c.component, "plane": c.plane, "kind": c.kind, "namespace": c.namespace,
                            "name": c.name} for c in self.components],
            "counts": {"pods": len(self.pods), "pods_in_mesh": sum(map(self.in_mesh, self.pods)),
                       "workloads": len(self.workloads), "services": len(self.services),
                       "istio_config": {k: len(v) for k, v in sorted(self.objects.items())
                                        if v and (v[0].group in ISTIO_GROUPS or v[0].group == GATEWAY_API_GROUP)}},
            "crds": sorted(f"{c.name} ({','.join(c.served_versions)})" for c in self.crds.values()),
            "visibility": {"forbidden": sorted(self.visibility.forbidden),
                           "not_installed": sorted(self.visibility.not_installed),
                           "not_visible": [n.to_json() for n in self.visibility.not_visible]},
        }

    # ------------------------------------------------------------ in-memory change

    def with_changes(self, apply: Iterable[dict[str, Any]] = (), delete: Iterable[Ref] = (),
                     pods: Iterable[dict[str, Any] | Pod] = ()) -> Inventory:
        """A new inventory with objects applied (created or replaced), deleted, and pods (raw, or Pod models)
        added or replaced (raw pods may come in `apply` too). Only what changes is decoded again: the objects of a
        kind the change does not touch are taken as they are, and so are the pod templates of the workloads it does
        not touch (a stage's overlay on 10,000 pods is built in a tenth of the time of its source)."""
        apply = list(apply)
        gone = {(r.kind, r.namespace, r.name) for r in delete}
        # a null in a manifest removes; the objects replaced keep their owners
        applied = {_key(o): self._owned_as_before(stored(o)) for o in apply if o.get("kind") != "Pod"}
        touched = gone | applied.keys()
        builder = _Builder(self.source, self.cluster, self.visibility, self.mesh_networks)
        builder.mesh_override = self.mesh_override
        builder.keep(self, touched)
        for o in applied.values():
            builder.add(o)
        # Keyed as Pod keys them: a pod whose manifest names no namespace is in `default`.
        new_pods = {(p.namespace, p.name): p
                    for p in (o if isinstance(o, Pod) else decode.pod_of(o)
                              for o in [*pods, *(o for o in apply if o.get("kind") == "Pod")])}
        gone_pods = {(r.namespace or "default", r.name) for r in delete if r.kind == "Pod"}
        replaced = new_pods.keys() | gone_pods
        if replaced:
            builder.pods = [p for p in self.pods if (p.namespace, p.name) not in replaced] + list(new_pods.values())
        else:  # its pods, sorted already; and its workloads, unless the change touches one (they read nothing else)
            builder.pods, builder.sorted_pods = list(self.pods), self.pods
            builder.workloads = None if _touched_workloads(touched) else self.workloads
        changed = builder.finish()
        # The indexes of what the change leaves as it was, as this inventory computed them (it is immutable).
        same = [] if replaced else [*_POD_INDEXES, *(() if _touched_workloads(touched) else ("components",))]
        for name in same:
            if name in self.__dict__:
                changed.__dict__[name] = self.__dict__[name]
        if "_by_key" in self.__dict__:  # the lookup of every object: this one's, less and plus what changed
            index = dict(self._by_key)
            for k in touched:
                index.pop(k, None)
            # as _by_key indexes a kind: the last object of a key
            now = {(o.kind, o.namespace, o.name): o for kind in {k for k, _, _ in touched}
                   for o in changed.objects.get(kind, ())}
            index.update((k, now[k]) for k in touched if k in now)
            changed.__dict__["_by_key"] = index
        changed.__dict__["_changed_from"] = weakref.ref(self)  # what it was made from: changed_since
        changed.__dict__["_recognised"] = self._recognised
        return changed

    def _owned_as_before(self, o: dict[str, Any]) -> dict[str, Any]:
        """An object applied over one of this inventory that says nothing of its owners, with that one's
        managedFields: meshstep applies without force, so its change takes over no field another manager owns."""
        meta = o.get("metadata")
        was = self._by_key.get(_key(o)) if isinstance(meta, dict) and "managedFields" not in meta else None
        if was is not None and "managedFields" in was.metadata:
            meta["managedFields"] = was.metadata["managedFields"]
        return o

    def parts(self) -> tuple[list[Pod], list[dict[str, Any]]]:
        """What `assemble` builds this inventory again from (with its source, visibility and mesh networks): its
        pods, decoded, and every other object as the source gave it."""
        return list(self.pods), [o.raw for objs in self.objects.values() for o in objs]


# ---------------------------------------------------------------- what a computation reads

# What each attribute of an Inventory is computed from, as facets: its fields by name, and `kind:K` for the objects
# of kind K (`kind:*`: of every kind). of_kind and get read the kind they are asked for; an attribute not listed
# here (with_changes, report, …) reads everything (`*`).
_COMPONENTS = ("pods", "workloads")
_REVISIONS = ("kind:MutatingWebhookConfiguration", *_COMPONENTS)
_MESH = ("mesh_configs", *_REVISIONS)
_NAMES = ("namespaces", "pods", "services", "kind:*")
FACETS: dict[str, tuple[str, ...]] = {
    **{f: (f,) for f in ("source", "cluster", "visibility", "namespaces", "pods", "services", "workloads", "crds",
                         "mesh_configs", "mesh_networks", "mesh_override")},
    **dict.fromkeys(("objects", "_by_key", "istio_config", "_owned_as_before"), ("kind:*",)),
    **dict.fromkeys(("pods_by_namespace", "_pods_by_key", "_pods_by_label", "pod", "pods_matching",
                     "pods_of_service", "pods_of_workload"), ("pods",)),
    **dict.fromkeys(("services_by_namespace", "_services_by_key", "service"), ("services",)),
    **dict.fromkeys(("_workloads_by_key", "workload"), ("workloads",)),
    **dict.fromkeys(("components", "components_by_id", "_components_by_ref", "component", "_recognised"),
                    _COMPONENTS),
    "revisions": _REVISIONS, "istio_version": _REVISIONS, "istio_installed": ("crds", *_REVISIONS),
    "_namespace_names": _NAMES, "namespace_names": _NAMES, "namespace_rows": _NAMES, "mesh_summary": _NAMES,
    **dict.fromkeys(("_mesh_config_revision", "mesh_config", "root_namespace"), _MESH),
    "mesh_config_map": (*_MESH, "kind:ConfigMap"), "api_version": ("crds",), "in_mesh": (),
}


class Reads:
    """What a computation read of an inventory: facets (FACETS), and the reads of the indexes it used (which an
    index kept with its value holds without the inventory, so that the inventory can go)."""

    def __init__(self) -> None:
        self.facets: set[str] = set()
        self.uses: list[Reads] = []

    def all(self) -> frozenset[str]:
        """Every facet read, directly or through the indexes used (as they are now: an index may read more when it
        is next asked)."""
        out: set[str] = set()
        todo, seen = [self], set()
        while todo:
            r = todo.pop()
            if id(r) not in seen:
                seen.add(id(r))
                out |= r.facets
                todo += r.uses
        return frozenset(out)


class Traced:
    """An inventory whose reads are noted as the facets (FACETS) they are computed from: what a computation on it
    depends on. Indexes built on it (cluster.queries.per_inventory) note their own reads, which count for every
    computation that uses them."""

    def __init__(self, inv: Inventory | Traced) -> None:
        self._inventory = untraced(inv)
        self._reads = Reads()

    def __getattr__(self, name: str) -> Any:
        """The inventory's attribute, its facets noted; kept here, so that it is asked (and noted) once: the
        inventory is immutable."""
        value = getattr(self._inventory, name)
        facets = self._reads.facets
        if name in ("of_kind", "get"):
            method = value

            def value(kind: str, *args: Any) -> Any:
                facets.add(f"kind:{kind}")
                return method(kind, *args)
        else:
            facets.update(FACETS.get(name, ("*",)))
        setattr(self, name, value)
        return value

    def uses(self, index: Reads) -> None:
        """Count what an index read as read here too."""
        self._reads.uses.append(index)

    def reads(self) -> frozenset[str]:
        return self._reads.all()


def untraced(inv: Inventory | Traced) -> Inventory:
    return inv._inventory if isinstance(inv, Traced) else inv


def changed_facets(before: Inventory, after: Inventory) -> frozenset[str]:
    """The facets whose values differ between two inventories (`kind:*` with any kind's)."""
    out = {f for f in Inventory.__dataclass_fields__ if f not in ("objects", "crds")
           and getattr(before, f) is not getattr(after, f) and getattr(before, f) != getattr(after, f)}
    if not _same(before.crds.values(), after.crds.values(), "schemas"):
        out.add("crds")
    kinds = {k for k in before.objects.keys() | after.objects.keys()
             if not _same(before.objects.get(k, ()), after.objects.get(k, ()), "raw")}
    return frozenset(out | {f"kind:{k}" for k in kinds} | ({"kind:*"} if kinds else set()))


def _same(a: Iterable[Any], b: Iterable[Any], uncompared: str) -> bool:
    """Whether two sequences hold equal objects, the field their equality leaves out (`uncompared`) included."""
    a, b = list(a), list(b)
    return len(a) == len(b) and all(x is y or (x == y and getattr(x, uncompared) == getattr(y, uncompared))
                                    for x, y in zip(a, b, strict=True))


def changed_since(inv: Inventory) -> tuple[Inventory, frozenset[str]] | None:
    """The inventory `inv` was made from by with_changes (while it lives), and the facets the change changed."""
    ref = inv.__dict__.get("_changed_from")
    base = ref() if ref is not None else None
    if base is None:
        return None
    if "_changed_facets" not in inv.__dict__:
        inv.__dict__["_changed_facets"] = changed_facets(base, inv)
    return base, inv.__dict__["_changed_facets"]


# Inventory's indexes that read its pods only; `components` reads its workloads' templates too.
_POD_INDEXES = ("pods_by_namespace", "_pods_by_key", "_pods_by_label")


def _touched_workloads(keys: Iterable[tuple[str, str | None, str]]) -> bool:
    return any(kind in decode.WORKLOAD_KINDS for kind, _, _ in keys)


def assemble(source: str, cluster: bool, visibility: Visibility, mesh_networks: dict[str, Any], pods: list[Pod],
             raw: Iterable[dict[str, Any]], mesh_override: dict[str, Any] | None = None) -> Inventory:
    """An inventory of decoded pods and the other objects as the source gave them (an inventory with changes, or
    one read back from the cache: cluster.cache)."""
    builder = _Builder(source, cluster, visibility, mesh_networks)
    builder.mesh_override = mesh_override
    builder.pods = pods
    for o in raw:
        builder.add(o)
    return builder.finish()


def build_inventory(snapshot: Snapshot, mesh_config: dict[str, Any] | None = None,
                    mesh_networks: dict[str, Any] | None = None) -> Inventory:
    """Build the inventory in one pass; `mesh_config` (as `--mesh-config` gives it) overrides the cluster's."""
    builder = _Builder(snapshot.label, snapshot.cluster, snapshot.visibility, mesh_networks or {})
    with gc_paused():
        # Pods come as pages of JSON (a live list's, a JSON snapshot's), decoded straight into typed Structs: only
        # the fields meshstep reads are built, so a pod costs less to read than to parse as a dict.
        for obj in snapshot.stream(("Pod",)):
            if isinstance(obj, Raw):
                builder.pods.extend(decode.pod(p, builder.cache) for p in obj.pods())
            else:
                builder.add(obj)
        if mesh_config is not None:
            builder.mesh_override = mesh_config
        return builder.finish()


class _GCPause:
    """Who is inside gc_paused, process-wide: the app serves sessions from threads, so one session's analysis can
    start while another's is still running. The collector is paused by the first to enter and re-enabled by the
    last to leave, and only if it was enabled when the first entered."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.was_enabled = False
        # Whether freeze() froze something (and unfreeze() has not thawed it): gc.get_freeze_count() would say so
        # too, but it counts the frozen objects one by one (0.05 s for an app's server with one inventory), and
        # every pause asked it as it ended.
        self.frozen = False

    def enter(self) -> None:
        with self.lock:
            if self.users == 0:
                self.was_enabled = gc.isenabled()
                gc.disable()
            self.users += 1

    def leave(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0 and self.was_enabled:
                if not self.frozen:
                    # What the pause kept (an inventory: a million objects) goes to the oldest generation at once
                    # (freeze, then unfreeze, which puts objects there: no scan), or the first allocation after
                    # enable() would collect the youngest one and walk all of it (0.12 s for 10,000 pods). Not when
                    # something is frozen (the app freezes its inventories): unfreeze would thaw that too.
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()


_GC_PAUSE = _GCPause()


def freeze() -> None:
    """gc.freeze(): what the process holds now (an inventory read for good: a command's, the app's) is kept out of
    the cyclic collector's sight, or each full collection walks all of it again. Freeze through this, not gc, so
    that gc_paused knows not to thaw it (gc_paused's own freeze and unfreeze would)."""
    with _GC_PAUSE.lock:
        gc.freeze()
        _GC_PAUSE.frozen = True


def unfreeze() -> None:
    """gc.unfreeze(): what freeze() froze is seen by the collector again."""
    with _GC_PAUSE.lock:
        gc.unfreeze()
        _GC_PAUSE.frozen = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC (a context manager, or a decorator for work over a whole inventory: analysis,
    detection, the app's tables). Reading a cluster, or analysing it, allocates millions of small objects and no
    reference cycles worth collecting (parsed JSON, frozen dataclasses, short-lived tuples); the collector would
    walk the whole inventory again and again for nothing (half the CPU time of reading 10,000 pods; half the
    time of analysing 40,000). Re-entrant and thread-safe: a count of users, not a flag."""
    _GC_PAUSE.enter()
    try:
        yield
    finally:
        _GC_PAUSE.leave()


def _first_by_key(items: Iterable[tuple[Any, Any]]) -> dict[Any, Any]:
    """A lookup index; where a source repeats a key (the same manifest given twice), the first one, as a scan
    would find it."""
    out: dict[Any, Any] = {}
    for k, v in items:
        out.setdefault(k, v)
    return out


def _key(o: dict[str, Any]) -> tuple[str, str | None, str]:
    meta = o.get("metadata") or {}
    return o.get("kind", ""), meta.get("namespace"), meta.get("name", "")


class _Builder:
    def __init__(self, source: str, cluster: bool, visibility: Visibility, mesh_networks: dict[str, Any]):
        self.source, self.cluster, self.visibility, self.mesh_networks = source, cluster, visibility, mesh_networks
        self.pods: list[Pod] = []
        self.namespaces: dict[str, Namespace] = {}
        self.services: list[Service] = []
        self.objects: dict[str, list[KubeObject]] = defaultdict(list)
        self.crds: dict[str, CRD] = {}
        self.mesh_override: dict[str, Any] | None = None
        self.cache: dict[Any, Any] = {}  # equal containers and sidecars, shared (see _containers)
        # What an inventory with changes takes from the one it changes (keep): each kind's objects, sorted, where
        # the change leaves the kind alone; the workloads' pod templates it leaves alone; its mesh configs.
        self.sorted: dict[str, tuple[KubeObject, ...]] = {}
        self.templates: dict[tuple[str, str, str], Any] = {}
        self.mesh_configs: dict[str, dict[str, Any]] | None = None
        self.sorted_pods: tuple[Pod, ...] | None = None  # `pods`, sorted already
        self.workloads: tuple[Workload, ...] | None = None  # of an inventory with the same pods and workload objects

    def keep(self, inv: Inventory, touched: set[tuple[str, str | None, str]]) -> None:
        """Take from `inv` every object but those of the `touched` keys, decoded as `inv` has them; the objects of
        an untouched kind are taken whole, already sorted."""
        kinds = {k for k, _, _ in touched}
        for kind, objs in inv.objects.items():
            if kind not in kinds:
                self.sorted[kind] = objs
            for o in objs if kind in kinds else ():
                if (o.kind, o.namespace, o.name) not in touched:
                    self.add(o.raw, o)
        if "Service" not in kinds:
            self.services = list(inv.services)
        if "Namespace" not in kinds:
            self.namespaces = dict(inv.namespaces)
        if "CustomResourceDefinition" not in kinds:
            self.crds = dict(inv.crds)
        if "ConfigMap" not in kinds:
            self.mesh_configs = inv.mesh_configs
        moved = {(k, n or "default", name) for k, n, name in touched}
        self.templates = {(w.namespace, w.kind, w.name): w.template for w in inv.workloads
                          if w.template is not None and (w.kind, w.namespace, w.name) not in moved}

    def add(self, o: dict[str, Any], decoded: KubeObject | None = None) -> None:
        """Add an object (`decoded`: as an inventory already holds it)."""
        kind = o.get("kind")
        if kind == "Pod":
            self.pods.append(decode.pod_of(o, self.cache))
            return
        if kind == "CustomResourceDefinition":
            crd = decode.crd(o)
            if crd is None:
                return  # not Istio's nor Gateway API's: nothing meshstep reads
            self.crds[crd.name] = crd
        elif kind == "Namespace":
            labels = decode.meta(o, "labels")
            mode, rev = decode.injection_mode(labels)
            name = o["metadata"]["name"]
            self.namespaces[name] = Namespace(name, labels, decode.meta(o, "annotations"), mode, rev)
        elif kind == "Service":
            self.services.append(decode.service(o))
        meta = o.get("metadata") or {}
        self.objects[kind].append(decoded or KubeObject(o.get("apiVersion", ""), kind, meta.get("namespace"),
                                                        meta["name"], o))

    def finish(self) -> Inventory:
        objects = {k: tuple(sorted(v, key=lambda x: (x.namespace or "", x.name))) for k, v in self.objects.items()}
        objects = {**self.sorted, **objects}
        return Inventory(
            source=self.source,
            cluster=self.cluster,
            visibility=self._visibility(),
            namespaces=dict(sorted(self.namespaces.items())),
            pods=self.sorted_pods or tuple(sorted(self.pods, key=lambda p: (p.namespace, p.name))),
            services=tuple(sorted(self.services, key=lambda s: (s.namespace, s.name))),
            workloads=(self.workloads if self.workloads is not None
                       else decode.workloads(self.pods, objects, self.cache, self.templates)),
            objects=objects,
            crds=self.crds,
            mesh_configs=({"default": self.mesh_override} if self.mesh_override is not None
                          else self.mesh_configs if self.mesh_configs is not None
                          else decode.mesh_configs(objects.get("ConfigMap", ()))),
            mesh_networks=self.mesh_networks,
            mesh_override=self.mesh_override,
        )


    def _visibility(self) -> Visibility:
        """What the source did not show; for a whole cluster whose CRDs were readable, also which APIs are not
        installed, unless the source found that out itself (a live cluster's discovery); a set of manifests lacking
        CRDs says nothing about that."""
        not_installed = set(self.visibility.not_installed)
        if self.cluster and not self.visibility.discovered and CRD_KIND.label not in self.visibility.forbidden:
            groups = {c.group for c in self.crds.values()}
            if not groups & set(ISTIO_GROUPS):
                not_installed.add("istio")
            if GATEWAY_API_GROUP not in groups:
                not_installed.add("gateway-api")
        return replace(self.visibility, not_visible=list(self.visibility.not_visible),
                       not_installed=sorted(not_installed))
