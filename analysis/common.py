"""Helpers shared by the istioctl-compatible check families: namespaces as Istio resolves them, host matching,
label selectors, exportTo visibility, service and port lookup, and the inputs `istioctl analyze` adds for local
files. Every family uses these, so that a host or a selector means the same thing in every check."""
from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

from analysis.base import Context, Message, Suppression, analyze_checks, check, run, suppress
from analysis.catalog import text
from cluster.inventory import Inventory, gc_paused
from cluster.model import (
    KubeObject,
    Pod,
    Ref,
)
from cluster.queries import annotations_of, istio_objects, ns_of, per_inventory
from cluster.snapshot import Snapshot

# ---------------------------------------------------------------- local files

# istioctl analyze adds an ingress gateway to every analysis of local files (pkg/config/analysis/local), so that
# Gateways selecting `istio: ingressgateway` have a workload to check against.
_DUMMY_INGRESS = (
    {"apiVersion": "v1", "kind": "Pod",
     "metadata": {"name": "istio-ingressgateway-dummypod", "namespace": "istio-system",
                  "labels": {"istio": "ingressgateway"}},
     "spec": {"containers": [{"name": "istio-proxy", "image": "proxyv2"}]}},
    {"apiVersion": "v1", "kind": "Service",
     "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
     "spec": {"selector": {"istio": "ingressgateway"},
              "ports": [{"name": "http2", "port": 80, "targetPort": 80, "protocol": "TCP"},
                        {"name": "https", "port": 443, "targetPort": 443, "protocol": "TCP"},
                        {"name": "tcp", "port": 31400, "targetPort": 31400, "protocol": "TCP"},
                        {"name": "tls", "port": 15443, "targetPort": 15443, "protocol": "TCP"}]}},
)


def with_dummy_ingress(snapshot: Snapshot) -> Snapshot:
    """The snapshot plus istioctl's dummy ingress gateway Pod and Service, as `istioctl analyze FILE` sees it."""
    def produce(visibility: Any) -> Iterator[dict[str, Any]]:
        return chain(snapshot.produce(visibility), copy.deepcopy(_DUMMY_INGRESS))

    return Snapshot(snapshot.label, produce, snapshot.visibility, snapshot.cluster)


# ---------------------------------------------------------------- running

@gc_paused()
def analyze(inv: Inventory, suppressions: Iterable[Suppression] = ()) -> list[Message]:
    """What `meshstep analyze` reports: every check that is not a stage gate and whose kinds the source showed,
    and what it skipped for each kind it could not show (MST0004, MST0005), less what is suppressed."""
    return suppress(run(analyze_checks(), Context(inv)), suppressions, lambda r: annotations_of(inv, r))


# ---------------------------------------------------------------- workload selectors of namespaced policies


@dataclass
class SelectorScan:
    """How the objects of one kind (Sidecar, Telemetry, …) select workloads in their namespaces."""

    unmatched: list[tuple[KubeObject, dict[str, str]]]  # a selector that selects no pod of its namespace
    conflicts: list[tuple[KubeObject, list[KubeObject], Pod]]  # a pod that several selectors select
    unselective: dict[str, list[KubeObject]]  # per namespace, the objects with no selector (if more than one)


def scan_selectors(inv: Inventory, objs: Iterable[KubeObject],
                   selector_of: Callable[[KubeObject], dict[str, str] | None]) -> SelectorScan:
    """One pass over a kind's objects: which select nothing, which select the same pod, which select all."""
    scan = SelectorScan([], [], {})
    selecting: dict[tuple[str, str], list[KubeObject]] = defaultdict(list)
    pods: dict[tuple[str, str], Pod] = {}
    no_selector: dict[str, list[KubeObject]] = defaultdict(list)
    for o in objs:
        sel = selector_of(o)
        if not sel:
            no_selector[ns_of(o)].append(o)
            continue
        matched = inv.pods_matching(ns_of(o), sel)
        if not matched:
            scan.unmatched.append((o, sel))
        for p in matched:
            selecting[(p.namespace, p.name)].append(o)
            pods[(p.namespace, p.name)] = p
    for key, owners in selecting.items():
        if len(owners) > 1:
            for o in owners:
                scan.conflicts.append((o, [x for x in owners if x is not o], pods[key]))
    scan.unselective = {ns: objs_ for ns, objs_ in no_selector.items() if len(objs_) > 1}
    return scan


def _unmatched_selectors(scan: SelectorScan, code: str) -> Iterator[tuple[Ref, str]]:
    """IST0101 for each selector that selects no pod of its namespace."""
    for o, sel in scan.unmatched:
        yield o.ref, text(code, "selector", selector_text(sel))


def _conflicting_selectors(scan: SelectorScan, code: str) -> Iterator[tuple[Ref, str]]:
    """A message for each object whose selector selects a pod another one selects too."""
    for o, others, pod in scan.conflicts:
        yield o.ref, text(code, sorted(x.name for x in [o, *others]), ns_of(o), pod.name)


def _unselective_objects(scan: SelectorScan, code: str) -> Iterator[tuple[Ref, str]]:
    """A message for each object of a namespace that has more than one without a selector."""
    for ns, objs in scan.unselective.items():
        names = sorted(o.name for o in objs)
        for o in objs:
            yield o.ref, text(code, names, ns)


def selector_checks(kind: str, selector_of: Callable[[KubeObject], dict[str, str] | None], *,
                    family: str, unmatched: tuple[str, str], conflicting: tuple[str, str],
                    unselective: tuple[str, str]) -> None:
    """Register the three error-level checks of how a kind's objects (Sidecar, Telemetry) select workloads, each
    given as (code, hint), reading the kind and Pods: a selector that selects no pod of its namespace, several
    objects that select one pod, several objects of a namespace without a selector. The objects are scanned once
    per inventory."""
    def scan(inv: Inventory) -> SelectorScan:
        return per_inventory(inv, f"{kind}-selectors",
                             lambda inv: scan_selectors(inv, istio_objects(inv, kind), selector_of))

    for (code, hint), report in ((unmatched, _unmatched_selectors), (conflicting, _conflicting_selectors),
                                 (unselective, _unselective_objects)):
        @check(code, hint, reads=(kind, "Pod"), family=family)
        def fn(ctx: Context, report=report, code=code) -> Iterator[tuple[Ref, str]]:
            return report(scan(ctx.inventory), code)


def selector_text(sel: dict[str, str]) -> str:
    """A selector as istioctl prints it: `k=v,k2=v2`."""
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items()))
