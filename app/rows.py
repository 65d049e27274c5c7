"""The app's tables: each namespace, workload and pod with how much of it is in the mesh (the Inventory page); each
feature with where it is observed, recorded and drifting (the Overview)."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from cluster.components import CATALOG
from cluster.inventory import Inventory, gc_paused
from cluster.model import Pod
from explain.report import MeshStatus, mesh_status
from features.base import MESH


@gc_paused()
def inventory_rows(inv: Inventory) -> dict[str, list[dict[str, Any]]]:
    """The inventory as tables a person reads (the app's Inventory page): namespaces, workloads, pods and services,
    each with how much of it is in the mesh; a pod with whether it is, and why (mesh_status)."""
    pods, in_mesh = [], {}
    for p in inv.pods:
        mesh = _istio_own(inv, p) or mesh_status(inv, p.spec, p.namespace, p)
        in_mesh[p.namespace, p.name] = mesh.in_mesh
        pods.append({"namespace": p.namespace, "pod": p.name, "workload": f"{p.workload_kind}/{p.workload_name}",
                     "phase": p.phase, "ready": p.ready, "in mesh": mesh.in_mesh, "mode": mesh.mode,
                     "proxy": p.sidecar.version if p.sidecar else "-", "node": p.node, "why": mesh.reason})
    meshed_in: dict[str, int] = {}
    for (ns, _), meshed in in_mesh.items():
        meshed_in[ns] = meshed_in.get(ns, 0) + meshed
    # "-" where there is none, as `meshstep inventory` prints it.
    namespaces = [{"namespace": r["name"], "injection": r["injection"], "revision": r["revision"] or "-",
                   "pods": r["pods"],
                   "pods with a sidecar": r["pods_with_sidecar"], "pods in mesh": meshed_in.get(r["name"], 0)}
                  for r in inv.namespace_rows()]
    workloads = [{"namespace": w.namespace, "kind": w.kind, "workload": w.name, "pods": len(w.pods),
                  "pods in mesh": sum(in_mesh.get((w.namespace, n), False) for n in w.pods)} for w in inv.workloads]
    services = []
    for s in inv.services:
        selected = inv.pods_of_service(s)
        services.append({"namespace": s.namespace, "service": s.name, "type": s.type,
                         "ports": ", ".join(f"{p.port}/{p.istio_protocol}" for p in s.ports), "pods": len(selected),
                         "pods in mesh": sum(in_mesh[p.namespace, p.name] for p in selected)})
    return {"Namespaces": namespaces, "Workloads": workloads, "Pods": pods, "Services": services}


def _istio_own(inv: Inventory, pod: Pod) -> MeshStatus | None:
    """istiod, gateways and node agents are Istio itself: "in the mesh" is not their question (explain says the
    same), and the inject=false label Istio's charts give them is not a team opting them out."""
    instance = inv.component("Pod", pod.namespace, pod.name)
    if instance is None or instance.component == "sidecar" or instance.plane == "addon":
        return None
    comp = CATALOG[instance.component]
    return MeshStatus(False, "istio", f"Istio itself: {comp.title.split(' — ')[0]}, of the {comp.plane} plane")


def where(scopes: Iterable[str]) -> str:
    """Scopes said short: "mesh-wide", "shop" (one namespace by name), "3 namespaces", "mesh-wide, 2 namespaces"."""
    scopes = set(scopes)
    namespaces = sorted(scopes - {MESH})
    said = [f"{len(namespaces)} namespaces"] if len(namespaces) > 1 else namespaces
    return ", ".join((["mesh-wide"] if MESH in scopes else []) + said)


def feature_summary(observed: Iterable[tuple[str, str]], recorded: Mapping[tuple[str, str], str],
                    drift: Mapping[tuple[str, str], str]) -> list[tuple[str, str, str, str]]:
    """Each feature once, from the (feature, scope) pairs detection finds on, the state recorded for each pair and
    the kind of drift of each: where it is observed, where each recorded state is, and where each kind of drift is."""
    seen: dict[str, list[str]] = defaultdict(list)
    for feature, scope in observed:
        seen[feature].append(scope)
    states, kinds = _by_feature(recorded), _by_feature(drift)

    def said(scopes: Mapping[str, list[str]]) -> str:
        return "; ".join(f"{what}: {where(s)}" for what, s in sorted(scopes.items())) or "—"

    return [(f, where(seen[f]) or "—", said(states[f]), said(kinds[f])) for f in sorted(seen.keys() | states.keys())]


def _by_feature(pairs: Mapping[tuple[str, str], str]) -> defaultdict[str, defaultdict[str, list[str]]]:
    """feature → what each of its scopes has (a recorded state, a kind of drift) → those scopes."""
    out: defaultdict[str, defaultdict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for (feature, scope), what in pairs.items():
        out[feature][what].append(scope)
    return out
