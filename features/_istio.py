"""Builders shared by the features: they start from what the cluster already has for a host, workload or
namespace, so that turning a feature on extends the object that serves it — keeping every field the feature does
not own — and never takes the name of an object that serves another purpose."""
from __future__ import annotations

import copy
import shlex
from typing import Any

from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from cluster.model import Service
from features.base import CREATED, HTTP_PROTOCOLS, MESH, ROLLBACK, clean, http_port, obj, target_namespace


def _copy(o: Any) -> dict[str, Any]:
    """An object of the cluster as one would apply it, to extend (with a spec, which a manifest may leave out)."""
    out = copy.deepcopy(clean(o.raw))
    out.setdefault("spec", {})
    return out


def matches_host(host: str, svc: Service) -> bool:
    """Whether a host as config names it (short, `svc.ns`, FQDN) is the service."""
    return host in (svc.name, f"{svc.name}.{svc.namespace}", f"{svc.name}.{svc.namespace}.svc",
                    svc.host)


def serves_http(svc: Service) -> bool:
    """Whether a port of the service is declared HTTP, HTTP/2 or gRPC (by its name or appProtocol): only those
    get HTTP routes. A port Istio must sniff, or a TCP one (a database), does not."""
    return any(p.istio_protocol in HTTP_PROTOCOLS for p in svc.ports)


def free_name(inv: Inventory, kind: str, namespace: str, *names: str, feature: str = "") -> str:
    """The first of `names` that no object of `kind` in the namespace has (or that `feature` created, rendering
    again), else the last one numbered: a new object never takes the name of one that serves another purpose."""
    def free(name: str) -> bool:
        o = inv.get(kind, namespace, name)
        return o is None or bool(feature) and o.annotations.get(ROLLBACK + feature) == CREATED

    for name in names:
        if free(name):
            return name
    n = 2
    while not free(f"{names[-1]}-{n}"):
        n += 1
    return f"{names[-1]}-{n}"


def mesh_bound(vs: Any) -> bool:
    """Whether a VirtualService applies to sidecars: no gateways (mesh implied), or `mesh` among them."""
    gateways = vs.spec.get("gateways") or []
    return not gateways or "mesh" in gateways


def virtual_service(inv: Inventory, svc: Service) -> dict[str, Any]:
    """The VirtualService routing mesh traffic to `svc` (a copy of the existing one), else a new one.

    An ingress VirtualService (bound to a Gateway, for an external host) is never it: mesh routing goes into a
    VirtualService of its own, as Istio's own samples keep them (bookinfo's `bookinfo` for the gateway,
    `reviews` for the mesh). Adding `mesh` to the ingress one's gateways would make its routes — written for the
    external host and the internet's requests — apply to every sidecar, and its owners would find routes they
    did not write; a free name is taken when the service's own is used by another VirtualService."""
    if not serves_http(svc):
        raise MeshstepError(f"service {svc.namespace}/{svc.name} has no HTTP port (ports: "
                            f"{', '.join(f'{p.name or p.port}/{p.istio_protocol}' for p in svc.ports)}): "
                            "only ports declared HTTP, HTTP2 or gRPC (name http-*, grpc-*, or appProtocol) get "
                            "HTTP routes")
    for vs in inv.of_kind("VirtualService"):
        if vs.namespace == svc.namespace and mesh_bound(vs) and any(
                matches_host(h, svc) for h in vs.spec.get("hosts") or ()):
            return _copy(vs)
    name = free_name(inv, "VirtualService", svc.namespace, svc.name, f"{svc.name}-mesh")
    return obj(inv, "networking.istio.io", "VirtualService", svc.namespace, name,
               {"hosts": [svc.name], "http": [{"route": [destination(svc)]}]})


def routes_to(vs: dict[str, Any], svc: Service) -> list[dict[str, Any]]:
    """The HTTP routes of a VirtualService that send traffic to `svc` (others, to other hosts, are not ours)."""
    return [r for r in vs["spec"].get("http") or []
            if any(matches_host((d.get("destination") or {}).get("host", ""), svc) for d in r.get("route") or [])]


def destination_rule(inv: Inventory, svc: Service) -> dict[str, Any]:
    """The DestinationRule of `svc` (a copy of the existing one), else a new one under a free name."""
    for dr in inv.of_kind("DestinationRule"):
        if dr.namespace == svc.namespace and matches_host(dr.spec.get("host", ""), svc):
            return _copy(dr)
    name = free_name(inv, "DestinationRule", svc.namespace, svc.name, f"{svc.name}-traffic")
    return obj(inv, "networking.istio.io", "DestinationRule", svc.namespace, name, {"host": svc.name})


def kept_or_set(current: dict[str, Any], key: str, value: Any, default: Any) -> None:
    """Set a field the feature owns — unless the object already has a value and the parameter is at its default:
    an existing limit or timeout is the team's decision, not to be replaced by meshstep's default silently."""
    if key not in current or value != default:
        current[key] = value


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
            return _copy(t)
    return obj(inv, "telemetry.istio.io", "Telemetry", ns,
               free_name(inv, "Telemetry", ns, "mesh-default" if scope == MESH else "namespace-default"), {})


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
    if len(svc.ports) > 1:  # only HTTP callers reach it, so the port is the HTTP one, never a database's
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
            return _copy(s)
    return obj(inv, "networking.istio.io", "Sidecar", ns, free_name(inv, "Sidecar", ns, "default"), {})


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
    # Quoted for the shell: a label value is the cluster's (or a parameter's), and must stay one argument.
    if rollback:  # put back what the change removes, take off what it adds
        parts = [f"{k}={labels[k]}" for k in remove if k in labels] + [f"{k}-" for k in add if k not in labels]
    else:
        parts = [f"{k}={v}" for k, v in add.items()] + [f"{k}-" for k in remove if k in labels]
    # Restart what really runs there: StatefulSets and DaemonSets keep their old pods as much as Deployments do.
    kinds = sorted({w.kind.lower() for w in inv.workloads if w.namespace == name
                    and w.kind in ("Deployment", "StatefulSet", "DaemonSet")}) or ["deployment"]
    label = f"kubectl label namespace {shlex.quote(name)} {' '.join(map(shlex.quote, parts))} --overwrite"
    return [label][:bool(parts)] + [
        f"# existing pods in {name} keep their current data plane until restarted:",
        f"kubectl rollout restart {','.join(kinds)} -n {shlex.quote(name)}"]
