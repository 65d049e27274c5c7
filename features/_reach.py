"""Who a change reaches: for each route rule, policy or proxy scope a rendering changes, the traffic it applies to
on the cluster with the rendering applied — through which gateways (the mesh's sidecars, an ingress Gateway), for
which hosts, which requests, and the proxies of which namespaces apply it.

The render shows it; the gate (features.invariants, MST0815) refuses a fault or a timeout that reaches ingress
traffic unless the feature's `ingress` parameter says it is meant to."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from analysis.ambient import is_waypoint
from cluster.changes import clean, ref_of
from cluster.inventory import Inventory
from cluster.model import GATEWAY_API_GROUP, Ref

MESH = "mesh"
# Policies and proxy scopes: each reaches the workloads its selector picks in its namespace (the root namespace's,
# without a selector, every namespace's).
POLICIES = ("AuthorizationPolicy", "RequestAuthentication", "PeerAuthentication", "Telemetry", "Sidecar",
            "EnvoyFilter", "DestinationRule", "ServiceEntry")


@dataclass(frozen=True)
class Reach:
    ref: Ref
    part: str  # the rule (`http[0]`, `rules[1]`); '' for a whole object
    gateways: tuple[str, ...]  # `mesh` (the sidecars, waypoints) or the ingress Gateways, `namespace/name`
    hosts: tuple[str, ...]
    requests: str  # which requests: `every request`, or what its matches select
    namespaces: tuple[str, ...]  # whose proxies apply it (`*`: every namespace's)

    @property
    def ingress(self) -> tuple[str, ...]:
        return tuple(g for g in self.gateways if g != MESH)

    def __str__(self) -> str:
        where = f"{self.ref} {self.part}".strip()
        hosts = f" for {', '.join(self.hosts)}" if self.hosts else ""
        through = ", ".join(f"ingress gateway {g}" if g != MESH else "the mesh's sidecars" for g in self.gateways)
        namespaces = "every namespace" if "*" in self.namespaces else ", ".join(self.namespaces)
        return f"{where}: {self.requests}{hosts}, through {through}; proxies of {namespaces}"


def reached(before: Inventory, objects: tuple[dict[str, Any], ...]) -> list[Reach]:
    """What each changed rule or policy of `objects` applies to (rules the rendering leaves as they are, none)."""
    out: list[Reach] = []
    for o in objects:
        ref = ref_of(o)
        current = before.get(ref.kind, ref.namespace, ref.name)
        was = clean(current.raw) if current is not None else {}
        if ref.kind == "VirtualService":
            out += _rules(o, was, "http", _vs_reach)
        elif ref.kind == "HTTPRoute":
            out += _rules(o, was, "rules", lambda o, i, r: _route_reach(o, i, r, before))
        elif ref.kind in POLICIES and clean(o) != was:
            out.append(_policy_reach(o, before))
    return out


def _rules(o: dict[str, Any], was: dict[str, Any], key: str, reach: Any) -> Iterator[Reach]:
    old = [json.dumps(r, sort_keys=True) for r in (was.get("spec") or {}).get(key) or ()]
    for i, rule in enumerate(o["spec"].get(key) or ()):
        if json.dumps(rule, sort_keys=True) not in old:
            yield reach(o, i, rule)


def _vs_reach(vs: dict[str, Any], i: int, rule: dict[str, Any]) -> Reach:
    ns = vs["metadata"].get("namespace", "default")
    bound = vs["spec"].get("gateways") or [MESH]
    # a match's own gateways override the VirtualService's, for the requests of that match
    names = {g for m in rule.get("match") or [{}] for g in (m.get("gateways") or bound)}
    gateways = tuple(sorted(g if g == MESH or "/" in g else f"{ns}/{g}" for g in names))
    matches = [{k: v for k, v in m.items() if k != "gateways"} for m in rule.get("match") or ()]
    return Reach(ref_of(vs), f"http[{i}]", gateways, tuple(vs["spec"].get("hosts") or ()), _requests(matches),
                 _exported(vs, ns))


def _route_reach(route: dict[str, Any], i: int, rule: dict[str, Any], inv: Inventory) -> Reach:
    ns = route["metadata"].get("namespace", "default")
    gateways, hosts = set(), list(route["spec"].get("hostnames") or ())
    for p in route["spec"].get("parentRefs") or ():
        if p.get("kind", "Gateway") == "Gateway" and p.get("group", GATEWAY_API_GROUP) == GATEWAY_API_GROUP:
            gw = inv.get("Gateway", p.get("namespace", ns), p["name"])
            # a waypoint is the mesh's own L7 proxy; any other Gateway takes traffic from outside
            gateways.add(MESH if gw is not None and is_waypoint(gw) else f"{p.get('namespace', ns)}/{p['name']}")
        else:
            gateways.add(MESH)
            hosts.append(f"{p['name']}.{p.get('namespace', ns)}")
    return Reach(ref_of(route), f"rules[{i}]", tuple(sorted(gateways)), tuple(hosts),
                 _requests(rule.get("matches") or []), ("*",))


def _policy_reach(o: dict[str, Any], inv: Inventory) -> Reach:
    ns = o["metadata"].get("namespace", "default")
    spec = o.get("spec") or {}
    selector = (spec.get("selector") or spec.get("workloadSelector") or {})
    labels = selector.get("matchLabels") or selector.get("labels") or {}
    if labels:
        who = "workloads with " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    elif spec.get("targetRefs"):
        who = "the targets " + ", ".join(f"{t.get('kind')} {t.get('name')}" for t in spec["targetRefs"])
    else:
        who = "every workload"
    namespaces = ("*",) if ns == inv.root_namespace and not labels else (ns,)
    if o["kind"] in ("DestinationRule", "ServiceEntry"):
        namespaces = _exported(o, ns)
        who = "calls to the host"
    hosts = tuple(spec.get("hosts") or ([spec["host"]] if spec.get("host") else ()))
    return Reach(ref_of(o), "", (MESH,), hosts, who, namespaces)


def _exported(o: dict[str, Any], ns: str) -> tuple[str, ...]:
    """The namespaces whose proxies see an object: its exportTo (`.` its own), every one by default."""
    export = o["spec"].get("exportTo") or ["*"]
    return ("*",) if "*" in export else tuple(ns if e == "." else e for e in export)


def _requests(matches: list[dict[str, Any]]) -> str:
    """What a rule's matches select, in words: `every request`, or each match's conditions."""
    if not matches or all(not m for m in matches):
        return "every request"
    return "requests with " + " or ".join(" and ".join(_condition(k, v) for k, v in sorted(m.items())) or "anything"
                                          for m in matches)


def _condition(key: str, value: Any) -> str:
    if key == "headers" and isinstance(value, dict):  # Istio: name → {exact|prefix|regex: value}
        return " and ".join(f"header {h}{_value(v)}" for h, v in value.items())
    if key == "headers":  # Gateway API: [{name, value, type}]
        return " and ".join(f"header {h.get('name')}={h.get('value')}" for h in value)
    if key in ("uri", "path") and isinstance(value, dict):
        return f"path {' '.join(str(v) for v in value.values())}"
    return f"{key} {json.dumps(value, sort_keys=True)}"


def _value(v: Any) -> str:
    if isinstance(v, dict) and len(v) == 1:
        ((how, what),) = v.items()
        return f"={what}" if how == "exact" else f" {how} {what}"
    return f" {json.dumps(v, sort_keys=True)}"
