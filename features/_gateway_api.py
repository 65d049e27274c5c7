"""The Kubernetes Gateway API side of the traffic features: which API a rendering uses, and builders that extend
the HTTPRoute already serving a Service (GAMMA: an HTTPRoute whose parentRef is the Service) rather than replace it.

Gateway API has no subsets: a version is a Service of its own (`reviews-v1`, selecting the service's pods with
version=v1), as istio.io's Gateway API tasks deploy them, and a route's weighted backendRefs name those Services."""
from __future__ import annotations

import copy
import re
from typing import Any

from analysis.ambient import is_waypoint
from analysis.effective import served
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from cluster.model import GATEWAY_API_GROUP, Service
from features._istio import _copy, free_name, mesh_bound, serves_http
from features.base import Param, clean, http_port, obj

ISTIO, GATEWAY_API = "istio", "gateway-api"
API = Param("api", str, "", "istio (VirtualService, DestinationRule, Gateway) or gateway-api (Gateway, HTTPRoute); "
                            "default: gateway-api where the cluster serves the Gateway API and already uses it, or "
                            "the namespace is in ambient mode (waypoints read HTTPRoutes); else istio",
            choices=("", ISTIO, GATEWAY_API))
# Gateway API durations (GEP-2257): no fractions, no `us`; the CRD rejects `1.5s`.
GATEWAY_DURATION = r"([0-9]{1,5}(h|m|s|ms)){1,4}"
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def installed(inv: Inventory) -> bool | None:
    """Whether the cluster serves HTTPRoute (the Gateway API CRDs); None when the source cannot tell (CRDs not
    readable, or a snapshot that holds none): the gate says so (features._gate) rather than guess."""
    return served(inv, GATEWAY_API_GROUP, "HTTPRoute")


def in_use(inv: Inventory) -> bool:
    """Whether the cluster already routes with the Gateway API: a route, or a Gateway that is not a waypoint."""
    return bool(inv.of_kind("HTTPRoute") or inv.of_kind("GRPCRoute")) or any(
        o.group == GATEWAY_API_GROUP and not is_waypoint(o) for o in inv.of_kind("Gateway"))


def default_api(inv: Inventory, scope: str) -> str:
    """The API a traffic feature renders when none is asked for (see API): the one the namespace already routes
    with (its routes are extended, never doubled by the other API's), else gateway-api for an ambient namespace or
    a cluster that uses it."""
    if not installed(inv):
        return ISTIO
    if any(r.namespace == scope for r in inv.of_kind("HTTPRoute")):
        return GATEWAY_API
    if any(vs.namespace == scope and mesh_bound(vs) for vs in inv.of_kind("VirtualService")):
        return ISTIO
    ns = inv.namespaces.get(scope)
    return GATEWAY_API if in_use(inv) or ns is not None and ns.injection == "ambient" else ISTIO


def chosen_api(feature: str, p: dict[str, Any], scope: str, inv: Inventory) -> str:
    """The `api` parameter, else the cluster's default; gateway-api on a cluster without its CRDs is an error."""
    if p.get("api") == GATEWAY_API and installed(inv) is False:
        raise MeshstepError(
            f"{feature}: api=gateway-api, but the cluster does not serve the Gateway API's HTTPRoute: install its "
            "CRDs (kubectl apply -f https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.3.0/"
            "standard-install.yaml) or pass --set api=istio")
    return p.get("api") or default_api(inv, scope)


def gateway_api_obj(inv: Inventory, kind: str, namespace: str, name: str, spec: dict[str, Any],
                    labels: dict[str, str] | None = None) -> dict[str, Any]:
    return obj(inv, GATEWAY_API_GROUP, kind, namespace, name, spec, labels)


def service_ref(ref: dict[str, Any]) -> bool:
    """Whether a parentRef or backendRef names a core Service (backendRefs default to it)."""
    return ref.get("group", "") in ("", "core") and ref.get("kind", "Service") == "Service"


def granted(inv: Inventory, route_ns: str, ns: str, name: str) -> Any | None:
    """The ReferenceGrant of namespace `ns` that lets HTTPRoutes of `route_ns` name its Service `name`, if one does
    (https://gateway-api.sigs.k8s.io/api-types/referencegrant/: a `to` without a name grants every Service)."""
    return next((g for g in inv.of_kind("ReferenceGrant") if g.namespace == ns and any(
        f.get("group") == GATEWAY_API_GROUP and f.get("kind") == "HTTPRoute" and f.get("namespace") == route_ns
        for f in g.spec.get("from") or ()) and any(
        t.get("group", "") in ("", "core") and t.get("kind") == "Service" and t.get("name", name) == name
        for t in g.spec.get("to") or ())), None)


def backends(inv: Inventory, route: Any) -> list[tuple[str, str]]:
    """The (namespace, name) of the Services an HTTPRoute of the inventory may send to: those of its own namespace,
    and those of another that a ReferenceGrant there permits (else the reference is not resolved: RefNotPermitted)."""
    out = []
    for rule in route.spec.get("rules") or ():
        for b in rule.get("backendRefs") or ():
            ns = b.get("namespace", route.namespace)
            if service_ref(b) and (ns == route.namespace or granted(inv, route.namespace, ns, b["name"])):
                out.append((ns, b["name"]))
    return out


def grants_for(inv: Inventory, route: Any, svc: Service, names: list[str]) -> list[dict[str, Any]]:
    """The ReferenceGrants of `svc`'s namespace extended so that `route` (in another namespace) may also name the
    Services `names`: the grant that lets it name `svc` gets one `to` per name it does not grant yet."""
    grant = granted(inv, route.namespace, svc.namespace, svc.name)
    missing = [n for n in names if granted(inv, route.namespace, svc.namespace, n) is None]
    if route.namespace == svc.namespace or grant is None or not missing:
        return []
    out = _copy(grant)
    out["spec"]["to"] = [*out["spec"]["to"], *({"group": "", "kind": "Service", "name": n} for n in missing)]
    return [out]


def parent_services(route: Any) -> list[str]:
    """The Services an HTTPRoute (object of the inventory) is attached to: a mesh (GAMMA) route's parents."""
    ns = route.namespace
    return [r["name"] for r in route.spec.get("parentRefs") or () if r.get("kind") == "Service" and service_ref(r)
            and r.get("namespace", ns) == ns]


def backend(name: str, port: int, weight: int | None = None, namespace: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "port": port}
    if weight is not None:
        out["weight"] = weight
    if namespace:
        out["namespace"] = namespace
    return out


def mesh_route(inv: Inventory, svc: Service) -> dict[str, Any]:
    """The HTTPRoute attached to `svc` (a copy of the existing one), else a new one routing to it: the route the
    callers' sidecars or the Service's waypoint apply."""
    if not serves_http(svc):
        raise MeshstepError(f"service {svc.namespace}/{svc.name} has no port declared HTTP, HTTP2 or gRPC: only "
                            "those get HTTP routes")
    for route in inv.of_kind("HTTPRoute"):
        if route.namespace == svc.namespace and svc.name in parent_services(route):
            return _copy(route)
    port = http_port(svc)
    return gateway_api_obj(inv, "HTTPRoute", svc.namespace,
                           free_name(inv, "HTTPRoute", svc.namespace, svc.name, f"{svc.name}-mesh"),
                           {"parentRefs": [{"group": "", "kind": "Service", "name": svc.name, "port": port}],
                            "rules": [{"backendRefs": [backend(svc.name, port)]}]})


def rules_to(route: dict[str, Any], names: set[str]) -> list[dict[str, Any]]:
    """The rules of a route that send traffic to one of the Services `names`."""
    return [r for r in route["spec"].get("rules") or []
            if any(service_ref(b) and b.get("name") in names for b in r.get("backendRefs") or ())]


def version_services(inv: Inventory, svc: Service, versions: list[str],
                     feature: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """A Service per version of `svc` (its selector and version=V, its ports), as backendRefs need them: the one
    the cluster has for that selector, else a new one. Returns the new Services and version → Service name."""
    objs, names = [], {}
    ports = [{k: v for k, v in p.items() if k in ("name", "port", "targetPort", "protocol", "appProtocol")}
             for p in (clean(inv.get("Service", svc.namespace, svc.name).raw).get("spec") or {}).get("ports") or ()]
    for v in versions:
        selector = {**svc.selector, "version": v}
        have = next((s for s in inv.services_by_namespace.get(svc.namespace, ()) if s.selector == selector), None)
        if have is not None:
            names[v] = have.name
            continue
        name = free_name(inv, "Service", svc.namespace, f"{svc.name}-{v}", feature=feature)
        names[v] = name
        objs.append({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": name, "namespace": svc.namespace,
                                  "labels": {"app.kubernetes.io/managed-by": "meshstep", "version": v}},
                     "spec": {"selector": selector, "ports": copy.deepcopy(ports)}})
    return objs, names


def seconds(duration: str) -> float:
    """A Gateway API duration (`1m30s`, `500ms`) in seconds."""
    return sum(float(n) * _UNITS[u] for n, u in re.findall(r"([0-9]+)(h|ms|m|s)", duration))


def attached(inv: Inventory, gateway: Any) -> list[Any]:
    """The HTTPRoutes attached to a Gateway API Gateway (a parentRef of kind Gateway naming it)."""
    return [r for r in inv.of_kind("HTTPRoute") if any(
        p.get("kind", "Gateway") == "Gateway" and p.get("group", GATEWAY_API_GROUP) == GATEWAY_API_GROUP
        and p.get("name") == gateway.name and p.get("namespace", r.namespace) == gateway.namespace
        for p in r.spec.get("parentRefs") or ())]
