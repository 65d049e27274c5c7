"""Time a full `meshstep analyze` on an in-memory inventory of a big cluster, at 1x, 2x and 4x its size.

The 1x cluster is the one Kiali's pages time out on (kiali/kiali#7917): 10,000 pods, 1,400 ServiceEntries,
800 VirtualServices and 800 DestinationRules. Prints times and ratios; the target is under 2 s at 1x and a cost
that grows linearly (ratio ~2 at 2x, ~4 at 4x). Run: python benchmarks/analysis.py
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.base import registry
from analysis.common import analyze
from cluster.inventory import Inventory, build_inventory
from cluster.snapshot import Snapshot

PODS, SERVICE_ENTRIES, VIRTUAL_SERVICES, DESTINATION_RULES = 10_000, 1_400, 800, 800
PODS_PER_NAMESPACE, PODS_PER_APP = 200, 5


def _meta(name: str, ns: str | None = None, **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, **extra}
    if ns:
        m["namespace"] = ns
    return m


def synthetic_cluster(scale: int = 1) -> Iterator[dict[str, Any]]:
    """Raw objects of a meshed cluster `scale` times the 1x size: apps of 5 pods, each with a Deployment and a
    Service, routed by VirtualServices and DestinationRules with subsets, plus external ServiceEntries."""
    pods = PODS * scale
    apps = pods // PODS_PER_APP
    namespaces = pods // PODS_PER_NAMESPACE
    yield {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta("istio-system")}
    yield {"apiVersion": "v1", "kind": "Pod", "metadata": _meta("istio-ingressgateway-0", "istio-system",
                                                                 labels={"istio": "ingressgateway"}),
           "spec": {"containers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.27.3",
                                    "args": ["proxy", "router"]}]}}
    yield {"apiVersion": "v1", "kind": "Service", "metadata": _meta("istio-ingressgateway", "istio-system"),
           "spec": {"selector": {"istio": "ingressgateway"},
                    "ports": [{"name": "http2", "port": 80, "targetPort": 8080}]}}
    for n in range(namespaces):
        yield {"apiVersion": "v1", "kind": "Namespace",
               "metadata": _meta(f"team-{n}", labels={"istio-injection": "enabled"})}
    for a in range(apps):
        ns, app = f"team-{a % namespaces}", f"app-{a}"
        labels = {"app": app, "version": "v1"}
        yield {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(app, ns),
               "spec": {"replicas": PODS_PER_APP, "selector": {"matchLabels": labels},
                        "template": {"metadata": {"labels": labels},
                                     "spec": {"containers": [{"name": app, "image": f"example/{app}:1",
                                                              "ports": [{"containerPort": 8080}]}]}}}}
        # One Service in 20 leaves its port unnamed, as real clusters do: analyze has findings to report.
        port_name = {"name": "http"} if a % 20 else {}
        yield {"apiVersion": "v1", "kind": "Service", "metadata": _meta(app, ns),
               "spec": {"selector": {"app": app}, "ports": [{**port_name, "port": 80, "targetPort": 8080}]}}
        for i in range(PODS_PER_APP):
            yield {"apiVersion": "v1", "kind": "Pod",
                   "metadata": _meta(f"{app}-{i}", ns, labels={**labels, "pod-template-hash": "abc"},
                                     annotations={"sidecar.istio.io/status": '{"revision":"default"}'},
                                     ownerReferences=[{"kind": "ReplicaSet", "name": f"{app}-abc",
                                                       "controller": True}]),
                   "spec": {"containers": [{"name": app, "image": f"example/{app}:1"},
                                           {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.27.3",
                                            "args": ["proxy", "sidecar"]}]},
                   "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    for v in range(VIRTUAL_SERVICES * scale):
        ns, app = f"team-{v % namespaces}", f"app-{v}"
        yield {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": _meta(app, ns),
               "spec": {"hosts": [app], "http": [{"route": [{"destination": {"host": app, "subset": "v1"}}]}]}}
    for d in range(DESTINATION_RULES * scale):
        ns, app = f"team-{d % namespaces}", f"app-{d}"
        yield {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": _meta(app, ns),
               "spec": {"host": app, "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}
    for s in range(SERVICE_ENTRIES * scale):
        yield {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
               "metadata": _meta(f"external-{s}", f"team-{s % namespaces}"),
               "spec": {"hosts": [f"api-{s}.example.com"], "location": "MESH_EXTERNAL", "resolution": "DNS",
                        "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}]}}


def inventory(scale: int) -> Inventory:
    objects = list(synthetic_cluster(scale))
    return build_inventory(Snapshot(f"synthetic x{scale}", lambda _v: iter(objects)))


def timed(scale: int) -> tuple[float, int, Inventory]:
    inv = inventory(scale)
    start = time.perf_counter()
    messages = analyze(inv)
    return time.perf_counter() - start, len(messages), inv


def main() -> None:
    registry()  # the check modules load once, before anything is timed: the figures compare analysis alone
    base = None
    for scale in (1, 2, 4):
        seconds, found, inv = timed(scale)
        counts = {k: len(inv.of_kind(k)) for k in ("ServiceEntry", "VirtualService", "DestinationRule")}
        base = base or seconds
        print(f"{scale}x: {len(inv.pods):>6} pods, {counts['ServiceEntry']:>5} ServiceEntries, "
              f"{counts['VirtualService']:>5} VirtualServices, {counts['DestinationRule']:>5} DestinationRules: "
              f"analyze {seconds:6.3f} s ({seconds / base:4.1f}x the 1x time), {found} messages")


if __name__ == "__main__":
    main()
