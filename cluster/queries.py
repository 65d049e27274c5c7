"""Questions every room asks of an inventory: which pods a selector picks, which Services select a workload, where
injection is asked for, how hosts match, and indexes built once per inventory to answer them fast."""
from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from cluster.components import PROXY_CONTAINER
from cluster.inventory import Inventory, Reads, Traced, changed_since, untraced
from cluster.model import Container, KubeObject, Pod, PodSpecSummary, Ref, Service

DOMAIN = "svc.cluster.local"
# Namespaces Kubernetes and cluster tooling own; istioctl skips their services and pods.
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})
DEFAULT_NAMESPACE = "default"
INJECT_KEY = "sidecar.istio.io/inject"


# ---------------------------------------------------------------- objects


def ns_of(obj: KubeObject) -> str:
    """The namespace an object lives in: Kubernetes puts an object without one in `default`."""
    return obj.namespace or DEFAULT_NAMESPACE


def application_namespace(inv: Inventory, name: str) -> bool:
    """Whether a namespace is one of applications: not Kubernetes' own, not Istio's root namespace."""
    return name not in SYSTEM_NAMESPACES and name != inv.root_namespace


def lookup(inv: Inventory, kind: str, namespace: str, name: str) -> KubeObject | None:
    """The object `namespace/name` of a kind; in `default` that includes objects whose YAML names no namespace."""
    return inv.get(kind, namespace, name) or (inv.get(kind, None, name) if namespace == DEFAULT_NAMESPACE else None)


def as_named(inv: Inventory, r: Ref) -> Ref:
    """A workload's or Service's Ref as its YAML names it (without a namespace when it gives none), as istioctl
    names it."""
    obj = lookup(inv, r.kind, r.namespace or DEFAULT_NAMESPACE, r.name)
    return obj.ref if obj is not None else r


def istio_objects(inv: Inventory, kind: str) -> tuple[KubeObject, ...]:
    """Objects of an Istio kind; the kind name alone is ambiguous (Gateway is also a Gateway API kind)."""
    return tuple(o for o in inv.of_kind(kind) if o.group.endswith(".istio.io"))


# ---------------------------------------------------------------- hosts


def fqdn(host: str, namespace: str) -> str:
    """A short host (`reviews`) is a service of the object's own namespace; dotted and wildcard hosts stay."""
    if host.startswith("*") or "." in host:
        return host
    return f"{host}.{namespace}.{DOMAIN}"


def host_matches(host: str, pattern: str) -> bool:
    """Whether `host` is covered by `pattern` (`*`, `*.example.com` or an exact name)."""
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return host.endswith(pattern[1:]) or (host.startswith("*") and host[1:].endswith(pattern[1:]))
    return host == pattern


def hosts_overlap(a: str, b: str) -> bool:
    return host_matches(a, b) or host_matches(b, a)


def exported_to(export_to: Iterable[str] | None, owner_ns: str, reader_ns: str) -> bool:
    """Whether an object of `owner_ns` with this exportTo is visible from `reader_ns` (empty: everywhere)."""
    targets = list(export_to or ())
    if not targets or "*" in targets:
        return True
    return ("." in targets and reader_ns == owner_ns) or reader_ns in targets


def audience(obj: KubeObject) -> frozenset[str] | None:
    """The namespaces an object's spec.exportTo exports it to; None for all of them."""
    targets = obj.spec.get("exportTo") or ["*"]
    if "*" in targets:
        return None
    return frozenset(ns_of(obj) if t == "." else t for t in targets)


def seen_together(a: KubeObject, b: KubeObject) -> bool:
    """Whether some namespace sees both objects (so that their configuration meets in one proxy)."""
    x, y = audience(a), audience(b)
    return x is None or y is None or bool(x & y)


# ---------------------------------------------------------------- selectors


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions) against labels; no selector matches all."""
    if not selector:
        return True
    if not labels_match(selector.get("matchLabels") or {}, labels):
        return False
    for e in selector.get("matchExpressions") or ():
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def match_labels(obj: KubeObject, field: str = "workloadSelector", key: str = "labels") -> dict[str, str] | None:
    """A selector of an Istio spec (`workloadSelector.labels`, `selector.matchLabels`); None when absent."""
    sel = obj.spec.get(field)
    if sel is None:
        return None
    return (sel or {}).get(key) or {}


def selected_pods(inv: Inventory, namespace: str, selector: dict[str, str] | None) -> list[Pod]:
    """Pods of a namespace a selector picks; no selector (or an empty one) picks every pod there."""
    if not selector:
        return list(inv.pods_by_namespace.get(namespace, ()))
    return inv.pods_matching(namespace, selector)


def proxy_container(template: PodSpecSummary) -> Container | None:
    """The istio-proxy container as istioctl finds it: by name, among containers or init containers (a native
    sidecar), whatever its args; a gateway's proxy counts too."""
    return template.container(PROXY_CONTAINER)


def inject_asked(template: PodSpecSummary) -> str | None:
    """A pod's own word on injection, sidecar.istio.io/inject: the label wins over the annotation, as the injector
    reads them; None when the pod says nothing (an empty value leaves it to the namespace, as for the injector)."""
    return template.labels.get(INJECT_KEY, template.annotations.get(INJECT_KEY)) or None


def opted_out(template: PodSpecSummary) -> bool:
    """Whether the pod says sidecar.istio.io/inject: "false" (it stays out even in an injected namespace)."""
    return inject_asked(template) == "false"


def injection_requested(inv: Inventory, namespace: str, template: PodSpecSummary) -> bool:
    """Whether pods of this template are (or will be) in the mesh as istioctl decides: an istio-proxy container,
    else the pod's own word (inject_asked), else its namespace's injection labels."""
    return proxy_container(template) is not None or injector_takes(inv, namespace, template)


def injector_takes(inv: Inventory, namespace: str, template: PodSpecSummary) -> bool:
    """Whether the injector adds a sidecar to pods of this template when they are created: the pod's own word
    (inject_asked), else its namespace's injection labels."""
    asked = inject_asked(template)
    if asked is not None:
        return asked == "true"
    ns = inv.namespaces.get(namespace)
    return bool(ns and ns.injection == "sidecar")


# Istio's injector webhooks are named `[rev.]namespace.` / `[rev.]object.sidecar-injector.istio.io`.
INJECTOR_WEBHOOK_SUFFIX = "sidecar-injector.istio.io"


def injector_webhooks(inv: Inventory) -> list[tuple[KubeObject, dict[str, Any]]]:
    """(MutatingWebhookConfiguration, webhook) of every Istio sidecar injector webhook."""
    return [(cfg, wh) for cfg in inv.of_kind("MutatingWebhookConfiguration") for wh in cfg.raw.get("webhooks") or ()
            if (wh.get("name") or "").endswith(INJECTOR_WEBHOOK_SUFFIX)]


def webhook_selects(wh: dict[str, Any], ns_labels: dict[str, str], obj_labels: dict[str, str]) -> bool:
    """Whether a webhook is called for a pod with these labels in a namespace with these labels."""
    return (selector_matches(wh.get("namespaceSelector"), ns_labels)
            and selector_matches(wh.get("objectSelector"), obj_labels))


def pods_anywhere(inv: Inventory, selector: dict[str, str]) -> list[Pod]:
    """Pods of any namespace matching a non-empty selector (gateways select their workload mesh-wide)."""
    return [p for ns in inv.pods_by_namespace for p in inv.pods_matching(ns, selector)]


# ---------------------------------------------------------------- services


class ServiceIndex:
    """Services by host, built once per inventory: Kubernetes Services (`name.ns.svc.cluster.local`) and the hosts
    of ServiceEntries, each with the namespaces it is exported to."""

    def __init__(self, inv: Inventory):
        self.kube: dict[str, Service] = {s.host: s for s in inv.services}
        self.entries: dict[str, list[KubeObject]] = defaultdict(list)
        self.wildcard_entries: list[tuple[str, KubeObject]] = []
        for se in istio_objects(inv, "ServiceEntry"):
            for h in se.spec.get("hosts") or ():
                if h.startswith("*"):
                    self.wildcard_entries.append((h, se))
                else:
                    self.entries[h].append(se)

    def known(self, host: str, reader_ns: str) -> bool:
        """Whether a (fully qualified) host is a service visible from `reader_ns`."""
        svc = self.kube.get(host)
        if svc is not None and exported_to(_csv(svc.annotations.get("networking.istio.io/exportTo")),
                                           svc.namespace, reader_ns):
            return True
        visible = lambda se: exported_to(se.spec.get("exportTo"), ns_of(se), reader_ns)
        if any(visible(se) for se in self.entries.get(host, ())):
            return True
        return any(host_matches(host, h) and visible(se) for h, se in self.wildcard_entries)

    def ports(self, host: str) -> list[int] | None:
        """The ports a host exposes (a Kubernetes Service's or its ServiceEntries'); None when unknown."""
        svc = self.kube.get(host)
        if svc is not None:
            return [p.port for p in svc.ports]
        entries = self.entries.get(host)
        if entries:
            return [p.get("number") for se in entries for p in se.spec.get("ports") or ()]
        return None


# Inventories are immutable but not hashable (they hold dicts): indexes are kept by identity, and dropped with
# the inventory they index.
# Each is built on a Traced inventory; what it read is kept with it, and counts for every computation that uses it.
_INDEXES: dict[tuple[int, str], tuple[Any, Reads]] = {}


def per_inventory(inv: Inventory | Traced, name: str, build: Callable[[Inventory], Any]) -> Any:
    """An index of `inv`, built once on first use: checks share it instead of re-scanning the inventory. On an
    inventory made from another by a change (Inventory.with_changes), the other's index is taken as it is where it
    read nothing the change changed (a stage's steps, each rendered on the cluster as the one before leaves it,
    share who calls whom). An index that read nothing of its inventory is a store of that inventory's own (the
    walks of planner.overlay), never taken."""
    real = untraced(inv)
    key = (id(real), name)
    if key not in _INDEXES:
        since = changed_since(real)
        was = _INDEXES.get((id(since[0]), name)) if since is not None else None
        reads = was[1].all() if was is not None else frozenset()
        if was is not None and reads and "*" not in reads and not reads & since[1]:  # type: ignore[index]
            _INDEXES[key] = was
        else:
            tracer = Traced(real)
            _INDEXES[key] = (build(tracer), tracer._reads)  # type: ignore[arg-type]  # it reads as an Inventory does
        weakref.finalize(real, _INDEXES.pop, key, None)
    value, reads_of = _INDEXES[key]
    if isinstance(inv, Traced):
        inv.uses(reads_of)
    return value


def service_index(inv: Inventory) -> ServiceIndex:
    return per_inventory(inv, "services", ServiceIndex)


def _services_by_label(inv: Inventory) -> dict[tuple[str, str, str], list[Service]]:
    """Services with a selector, by (namespace, key, value) of one selector label: any pod a Service selects has
    that label, so looking up a pod's labels finds every candidate without scanning the namespace."""
    out: dict[tuple[str, str, str], list[Service]] = defaultdict(list)
    for svc in inv.services:
        if svc.selector:
            k, v = next(iter(sorted(svc.selector.items())))
            out[(svc.namespace, k, v)].append(svc)
    return out


def services_selecting(inv: Inventory, namespace: str, labels: dict[str, str]) -> list[Service]:
    """Services of a namespace whose selector selects pods with these labels."""
    index = per_inventory(inv, "services-by-label", _services_by_label)
    return [svc for k, v in labels.items() for svc in index.get((namespace, k, v), ())
            if labels_match(svc.selector, labels)]


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]



def annotations_of(inv: Inventory, r: Ref) -> dict[str, str]:
    """The annotations of the resource a message blames (where analyze-suppress is read)."""
    ns = r.namespace or DEFAULT_NAMESPACE
    if r.kind == "Pod":
        pod = inv.pod(ns, r.name)
        return pod.annotations if pod else {}
    if r.kind == "Namespace":
        nsobj = inv.namespaces.get(r.name)
        return nsobj.annotations if nsobj else {}
    obj = inv.get(r.kind, r.namespace, r.name)
    return obj.annotations if obj else {}
