"""Sidecar config as ambient reads it (istio.io, migrate policies): a VirtualService as the HTTPRoute a waypoint
serves (a Service per DestinationRule subset as its backendRefs), and the policies a sidecar enforced by selector
as copies a waypoint enforces through targetRefs. What the Gateway API's standard channel cannot say is named
(analysis.ambient.inexpressible), never dropped."""
from __future__ import annotations

import copy
import json
import re
from typing import Any

from analysis.ambient import (
    ALLOWS_WAYPOINT,
    HBONE_PORT,
    MIGRATED_FROM,
    SIDECAR_POD,
    WAYPOINT_CLASS,
    client_identity,
    inexpressible,
    l7_attributes,
    mesh_http_routes,
)
from cluster.changes import clean
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from cluster.model import GATEWAY_API_GROUP, KubeObject, Service
from features._gateway_api import backend, gateway_api_obj
from features._istio import free_name
from features.base import http_port

WAYPOINT = "waypoint"


def waypoint_gateway(inv: Inventory, namespace: str, name: str = WAYPOINT) -> dict[str, Any]:
    """The waypoint as `istioctl waypoint apply` creates it (the cluster's own where it has it)."""
    existing = inv.get("Gateway", namespace, name)
    if existing is not None:
        return clean(existing.raw)
    return gateway_api_obj(inv, "Gateway", namespace, name,
                           {"gatewayClassName": WAYPOINT_CLASS,
                            "listeners": [{"name": "mesh", "port": HBONE_PORT, "protocol": "HBONE"}]},
                           {"istio.io/waypoint-for": "service"})


def standing_for(new: dict[str, Any], original: KubeObject) -> dict[str, Any]:
    """`new` recording the object it stands for (MIGRATED_FROM)."""
    meta = new["metadata"]
    record = json.dumps(clean(original.raw), sort_keys=True, separators=(",", ":"))
    return new | {"metadata": meta | {"annotations": {**(meta.get("annotations") or {}), MIGRATED_FROM: record}}}


# ---------------------------------------------------------------- VirtualService → HTTPRoute

_PATH = {"exact": "Exact", "prefix": "PathPrefix", "regex": "RegularExpression"}
_MATCH = {"exact": "Exact", "regex": "RegularExpression"}
_UNITS = {"h": 3600000, "m": 60000, "s": 1000, "ms": 1}


def gateway_duration(istio: str) -> str:
    """An Istio duration (`1.5s`) as the Gateway API writes it (`1500ms`: whole units only)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", istio)
    if m is None:
        raise MeshstepError(f"timeout {istio!r} is not a duration")
    ms = float(m[1]) * _UNITS[m[2]]
    return f"{int(ms)}ms" if not ms.is_integer() or ms % 1000 else f"{int(ms) // 1000}s"


def _match(m: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "uri" in m:
        (how, value), = m["uri"].items()
        out["path"] = {"type": _PATH[how], "value": value}
    if m.get("headers"):
        out["headers"] = [{"name": k, "type": _MATCH[next(iter(v))], "value": next(iter(v.values()))}
                          for k, v in m["headers"].items()]
    if "method" in m:
        out["method"] = m["method"]["exact"]
    if m.get("queryParams"):
        out["queryParams"] = [{"name": k, "type": _MATCH[next(iter(v))], "value": next(iter(v.values()))}
                              for k, v in m["queryParams"].items()]
    return out


def _headers(ops: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ops.get("set"):
        out["set"] = [{"name": k, "value": v} for k, v in ops["set"].items()]
    if ops.get("add"):
        out["add"] = [{"name": k, "value": v} for k, v in ops["add"].items()]
    if ops.get("remove"):
        out["remove"] = list(ops["remove"])
    return out


class _Backends:
    """The Services a converted route sends to: the host's own, or one per DestinationRule subset (created)."""

    def __init__(self, inv: Inventory, svc: Service) -> None:
        self.inv, self.svc, self.created, self.names = inv, svc, [], {}

    def ref(self, dest: dict[str, Any], weight: int | None) -> dict[str, Any]:
        host = dest["host"].split(".")[0]
        target = self.svc if host == self.svc.name else self.inv.service(self.svc.namespace, host)
        if target is None:
            raise MeshstepError(f"route destination {dest['host']} is not a Service of {self.svc.namespace}")
        port = (dest.get("port") or {}).get("number") or http_port(target)
        name = self._subset(target, dest["subset"]) if dest.get("subset") else target.name
        return backend(name, port, weight)

    def _subset(self, target: Service, subset: str) -> str:
        if (target.name, subset) in self.names:
            return self.names[target.name, subset]
        labels = subset_labels(self.inv, target, subset)
        selector = {**target.selector, **labels}
        have = next((s for s in self.inv.services_by_namespace.get(target.namespace, ()) if s.selector == selector),
                    None)
        name = have.name if have else free_name(self.inv, "Service", target.namespace, f"{target.name}-{subset}",
                                                feature="ambient-policies")
        if have is None:
            ports = [{k: v for k, v in p.items() if k in ("name", "port", "targetPort", "protocol", "appProtocol")}
                     for p in (self.inv.get("Service", target.namespace, target.name).raw.get("spec") or {}).get(
                         "ports") or ()]
            self.created.append({"apiVersion": "v1", "kind": "Service",
                                 "metadata": {"name": name, "namespace": target.namespace,
                                              "labels": {"app.kubernetes.io/managed-by": "meshstep", **labels}},
                                 "spec": {"selector": selector, "ports": copy.deepcopy(ports)}})
        self.names[target.name, subset] = name
        return name


def subset_labels(inv: Inventory, svc: Service, subset: str) -> dict[str, str]:
    """The labels of a subset of a Service, from the DestinationRule for its host."""
    for dr in inv.of_kind("DestinationRule"):
        if dr.namespace == svc.namespace and dr.spec.get("host", "").split(".")[0] == svc.name:
            for s in dr.spec.get("subsets") or ():
                if s.get("name") == subset:
                    return dict(s.get("labels") or {})
    raise MeshstepError(f"subset {subset!r} of {svc.namespace}/{svc.name}: no DestinationRule defines it")


def _rule(route: dict[str, Any], backends: _Backends) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    matches = [_match(m) for m in route.get("match") or ()]
    if matches and matches != [{}]:
        rule["matches"] = matches
    dests = route.get("route") or ()
    weighted = len(dests) > 1 or any("weight" in d for d in dests)
    rule["backendRefs"] = [backends.ref(d["destination"], d.get("weight", 0) if weighted else None) for d in dests]
    filters = []
    heads = route.get("headers") or {}
    if _headers(heads.get("request") or {}):
        filters.append({"type": "RequestHeaderModifier", "requestHeaderModifier": _headers(heads["request"])})
    if _headers(heads.get("response") or {}):
        filters.append({"type": "ResponseHeaderModifier", "responseHeaderModifier": _headers(heads["response"])})
    if route.get("mirror"):
        mirror: dict[str, Any] = {"backendRef": backends.ref(route["mirror"], None)}
        if "mirrorPercentage" in route:
            mirror["percent"] = int(route["mirrorPercentage"]["value"])
        filters.append({"type": "RequestMirror", "requestMirror": mirror})
    if route.get("rewrite"):
        rewrite = {"hostname": route["rewrite"]["authority"]} if "authority" in route["rewrite"] else {}
        if "uri" in route["rewrite"]:
            rewrite["path"] = {"type": "ReplacePrefixMatch", "replacePrefixMatch": route["rewrite"]["uri"]}
        filters.append({"type": "URLRewrite", "urlRewrite": rewrite})
    if filters:
        rule["filters"] = filters
    if route.get("timeout"):
        rule["timeouts"] = {"request": gateway_duration(route["timeout"])}
    return rule


def http_routes(inv: Inventory, vs: KubeObject) -> list[dict[str, Any]]:
    """The HTTPRoutes (one per Service the VirtualService's hosts name) and version Services that carry what its
    HTTP routes do; MeshstepError naming the first thing the standard channel cannot say."""
    lost = inexpressible(vs)
    if lost:
        raise MeshstepError(f"{vs.ref}: {lost[0]} (MST0722): convert it by hand, or keep it on sidecars")
    out: list[dict[str, Any]] = []
    for svc in mesh_http_routes(inv, vs):
        backends = _Backends(inv, svc)
        rules = [_rule(r, backends) for r in vs.spec.get("http") or ()]
        name = free_name(inv, "HTTPRoute", svc.namespace, svc.name, feature="ambient-policies")
        route = gateway_api_obj(inv, "HTTPRoute", svc.namespace, name,
                                {"parentRefs": [{"group": "", "kind": "Service", "name": svc.name,
                                                 "port": http_port(svc)}], "rules": rules}, dict(vs.labels))
        out += [*backends.created, standing_for(route, vs)]
    return out


# ---------------------------------------------------------------- policies → waypoint targetRefs


def waypoint_copy(inv: Inventory, policy: KubeObject, waypoint: str) -> dict[str, Any]:
    """The policy bound to what a waypoint serves (targetRefs) instead of to the workloads (selector): the Services
    whose pods its selector selects, or the waypoint itself for a namespace-wide policy."""
    spec = copy.deepcopy({k: v for k, v in policy.spec.items() if k != "selector"})
    labels = (policy.spec.get("selector") or {}).get("matchLabels") or {}
    if labels:
        pods = {p.name for p in inv.pods_matching(policy.namespace or "", labels)}
        services = [s for s in inv.services_by_namespace.get(policy.namespace or "", ())
                    if s.selector and {p.name for p in inv.pods_of_service(s)} & pods]
        if not services:
            raise MeshstepError(f"{policy.ref}: no Service selects its pods, so no waypoint serves them")
        spec["targetRefs"] = [{"group": "", "kind": "Service", "name": s.name} for s in services]
    else:
        spec["targetRefs"] = [{"group": GATEWAY_API_GROUP, "kind": "Gateway", "name": waypoint}]
    name = free_name(inv, policy.kind, policy.namespace or "", f"{policy.name}-waypoint", feature="ambient-policies")
    new = {"apiVersion": policy.api_version, "kind": policy.kind,
           "metadata": {"name": name, "namespace": policy.namespace,
                        "labels": {**policy.labels, "app.kubernetes.io/managed-by": "meshstep"}},
           "spec": spec}
    return standing_for(new, policy)


def sidecars_only(policy: KubeObject) -> dict[str, Any]:
    """The selector-bound original narrowed to the pods that still have a sidecar (the injector's label): the
    sidecars keep enforcing it until each pod restarts, and ztunnel never evaluates it for a pod it carries."""
    narrowed = copy.deepcopy(clean(policy.raw))
    selector = narrowed["spec"].setdefault("selector", {})
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), **SIDECAR_POD}
    return narrowed


def waypoint_allowed(inv: Inventory, policy: KubeObject, waypoint: str) -> dict[str, Any]:
    """An ALLOW of the waypoint's service account for the workloads an ALLOW policy selects: behind the waypoint
    the destination's ztunnel sees its identity (istio.io, ambient L4 policy), and the client checks move to the
    waypoint's copy. The original's L4 rules that ask for no client identity stay too (a caller reaching the pods
    without the waypoint, plaintext, matched them as before); anyone else reaching the pods directly stays denied,
    as the original denied who it did not allow."""
    ns = policy.namespace or ""
    kept = [copy.deepcopy(r) for r in policy.spec.get("rules") or () if not l7_attributes({"rules": [r]})
            and not [k for k in client_identity({"rules": [r]}) if not k.rpartition(".")[2].startswith("not")]]
    spec: dict[str, Any] = {"action": "ALLOW", "rules": [
        {"from": [{"source": {"principals": [f"cluster.local/ns/{ns}/sa/{waypoint}"]}}]}, *kept]}
    if policy.spec.get("selector"):
        spec = {"selector": copy.deepcopy(policy.spec["selector"])} | spec
    name = free_name(inv, policy.kind, ns, f"{policy.name}-from-waypoint", feature="ambient-policies")
    return {"apiVersion": policy.api_version, "kind": policy.kind,
            "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/managed-by": "meshstep"},
                         "annotations": {ALLOWS_WAYPOINT: policy.name}},
            "spec": spec}
