"""Builders shared by the traffic and telemetry features: they start from what the cluster already has for a
host or namespace, so that turning a second feature on extends the first one's object instead of conflicting."""
from __future__ import annotations

import copy
from typing import Any

from features.base import MESH, clean, http_port, obj, target_namespace
from planner.inventory import Inventory
from planner.model import Service


def _matches_host(host: str, svc: Service) -> bool:
    return host in (svc.name, f"{svc.name}.{svc.namespace}", f"{svc.name}.{svc.namespace}.svc",
                    svc.host)


def virtual_service(inv: Inventory, svc: Service) -> dict[str, Any]:
    """The VirtualService routing mesh traffic to `svc` (a copy of the existing one), else a new one."""
    for vs in inv.of_kind("VirtualService"):
        if vs.namespace == svc.namespace and not vs.spec.get("gateways") and any(
                _matches_host(h, svc) for h in vs.spec.get("hosts") or ()):
            return copy.deepcopy(clean(vs.raw))
    return obj(inv, "networking.istio.io", "VirtualService", svc.namespace, svc.name,
               {"hosts": [svc.name], "http": [{"route": [destination(svc)]}]})


def destination_rule(inv: Inventory, svc: Service) -> dict[str, Any]:
    """The DestinationRule of `svc` (a copy of the existing one), else a new one."""
    for dr in inv.of_kind("DestinationRule"):
        if dr.namespace == svc.namespace and _matches_host(dr.spec.get("host", ""), svc):
            return copy.deepcopy(clean(dr.raw))
    return obj(inv, "networking.istio.io", "DestinationRule", svc.namespace, svc.name, {"host": svc.name})


def with_subsets(dr: dict[str, Any], versions: list[str]) -> dict[str, Any]:
    """Add a subset per `version` label value that the DestinationRule lacks."""
    subsets = dr["spec"].setdefault("subsets", [])
    have = {s.get("name") for s in subsets}
    subsets.extend({"name": v, "labels": {"version": v}} for v in versions if v not in have)
    return dr


def telemetry(inv: Inventory, scope: str) -> dict[str, Any]:
    """The selector-less Telemetry of the scope (a copy), else a new one: Istio allows one per namespace."""
    ns = target_namespace(scope, inv)
    for t in inv.of_kind("Telemetry"):
        if t.namespace == ns and not t.spec.get("selector") and not t.spec.get("targetRefs"):
            return copy.deepcopy(clean(t.raw))
    return obj(inv, "telemetry.istio.io", "Telemetry", ns, "mesh-default" if scope == MESH else "namespace-default", {})


def telemetry_scopes(inv: Inventory, section: str) -> dict[str, list[str]]:
    """Scopes whose selector-less Telemetry configures `section` (tracing, metrics, accessLogging) → evidence."""
    out: dict[str, list[str]] = {}
    for t in inv.of_kind("Telemetry"):
        if t.spec.get(section) and not t.spec.get("selector") and not t.spec.get("targetRefs"):
            scope = MESH if t.namespace == inv.root_namespace else t.namespace
            out.setdefault(scope, []).append(str(t.ref))
    return out


def destination(svc: Service, subset: str | None = None, weight: int | None = None,
                host: str | None = None) -> dict[str, Any]:
    """A route destination for `svc` (as `host` names it, default its name): the port is named only when the
    service has several, as Istio requires then (IST0112)."""
    dest: dict[str, Any] = {"host": host or svc.name}
    if subset:
        dest["subset"] = subset
    if len(svc.ports) > 1:
        dest["port"] = {"number": http_port(svc)}
    out: dict[str, Any] = {"destination": dest}
    if weight is not None:
        out["weight"] = weight
    return out


def sidecar(inv: Inventory, scope: str) -> dict[str, Any]:
    """The selector-less Sidecar of the scope (a copy), else a new one: a second one would be IST0110."""
    ns = target_namespace(scope, inv)
    for s in inv.of_kind("Sidecar"):
        if s.namespace == ns and not s.raw.get("spec", {}).get("workloadSelector"):
            return copy.deepcopy(clean(s.raw))
    return obj(inv, "networking.istio.io", "Sidecar", ns, "default", {})


def namespace_labelled(inv: Inventory, name: str, add: dict[str, str], remove: tuple[str, ...]) -> dict[str, Any]:
    """The namespace as it is, with labels added and removed: the patch a label change applies."""
    current = inv.get("Namespace", None, name)
    ns = copy.deepcopy(clean(current.raw)) if current else {"apiVersion": "v1", "kind": "Namespace",
                                                            "metadata": {"name": name}}
    labels = {k: v for k, v in (ns["metadata"].get("labels") or {}).items() if k not in remove}
    ns["metadata"]["labels"] = labels | add
    return ns


def label_notes(inv: Inventory, name: str, add: dict[str, str], remove: tuple[str, ...], rollback: bool) -> list[str]:
    """The kubectl command for a namespace label change, and the reminder that running pods keep their old shape."""
    current = inv.namespaces.get(name)
    labels = current.labels if current else {}
    if rollback:  # put back what the change removes, take off what it adds
        parts = [f"{k}={labels[k]}" for k in remove if k in labels] + [f"{k}-" for k in add if k not in labels]
    else:
        parts = [f"{k}={v}" for k, v in add.items()] + [f"{k}-" for k in remove if k in labels]
    # Restart what really runs there: StatefulSets and DaemonSets keep their old pods as much as Deployments do.
    kinds = sorted({w.kind.lower() for w in inv.workloads if w.namespace == name
                    and w.kind in ("Deployment", "StatefulSet", "DaemonSet")}) or ["deployment"]
    return [f"kubectl label namespace {name} {' '.join(parts)} --overwrite",
            f"# existing pods in {name} keep their current data plane until restarted:",
            f"kubectl rollout restart {','.join(kinds)} -n {name}"]
