"""Who decides a request, and how: the allow/deny decision of each request to each Service, as the proxy that
handles it now evaluates the policies it is given — the destination's sidecar, or ztunnel and the Service's
waypoint in ambient mode (istio.io: ambient L4 and L7 policy; migrate policies).

- A sidecar enforces the PeerAuthentication, RequestAuthentications and AuthorizationPolicies bound to its
  workload (selector, namespace-wide, mesh-wide from the root namespace); it ignores targetRefs-bound ones.
- ztunnel enforces mTLS and the same workload-bound AuthorizationPolicies at L4; a policy with L7 attributes (or a
  CUSTOM action) it cannot evaluate fails safe: it denies every request to what it selects. It ignores
  RequestAuthentication.
- A waypoint (where a Service's istio.io/use-waypoint label names one) enforces what is bound to it or to the
  Service through targetRefs, L7 included, and RequestAuthentication bound the same way. A mesh caller's request
  reaches it first; what it lets through goes on to the destination's ztunnel, which sees the waypoint's identity
  as the source, not the client's (istio.io, ambient L4 policy): a workload-bound policy that checks principals or
  namespaces there judges the waypoint. A plaintext caller's request carries no identity to hide: it is decided as
  before, by ztunnel and then the waypoint.
- A pod out of the mesh enforces nothing; a policy in dry run (istio.io/dry-run) decides nothing.

The requests are built from the cluster as it is before a change (its callers, their identities, the methods,
paths, headers and tokens its policies name), so that the same requests can be decided on the cluster after it
(features.invariants, MST0816)."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
from typing import Any

from analysis.ambient import (
    l7_attributes,
    mesh_http_routes,
    services_of_hosts,
    waypoint_for,
    waypoint_principal,
    ztunnel_enforced,
)
from analysis.effective import mtls_mode
from cluster.inventory import Inventory
from cluster.model import GATEWAY_API_GROUP, KubeObject, Pod, Service
from cluster.queries import istio_objects, labels_match, ns_of

KINDS = ("AuthorizationPolicy", "RequestAuthentication", "PeerAuthentication", "Gateway", "Namespace", "Service",
         "Pod")


@dataclass(frozen=True)
class Request:
    """One request to a Service: who sends it (principal None: plaintext, from outside the mesh), what it asks."""

    principal: str | None
    namespace: str | None
    service: tuple[str, str]  # (namespace, name)
    method: str
    path: str
    header: tuple[str, str] | None = None
    token: str | None = None  # None, "valid" or "invalid": a JWT, as a RequestAuthentication judges it

    def __str__(self) -> str:
        who = self.principal or "a plaintext caller"
        extra = "".join([f" with {self.header[0]}: {self.header[1]}" if self.header else "",
                         f" with a {self.token} JWT" if self.token else ""])
        return f"{self.method} {self.path} from {who} to {self.service[0]}/{self.service[1]}{extra}"


def handler(inv: Inventory, pod: Pod) -> str:
    """sidecar | ambient | none: what handles a pod's inbound traffic."""
    if pod.sidecar is not None:
        return "sidecar"
    return "ambient" if inv.in_mesh(pod) else "none"


def _enforced(o: KubeObject) -> bool:
    """Not a dry run (istio.io/dry-run: "true"): a shadow policy is logged, not enforced."""
    return o.annotations.get("istio.io/dry-run", "").lower() != "true"


def _bound_to_workload(inv: Inventory, o: KubeObject, pod: Pod) -> bool:
    if not ztunnel_enforced(o) or not _enforced(o):
        return False
    labels = (o.spec.get("selector") or {}).get("matchLabels") or {}
    if ns_of(o) == inv.root_namespace and not labels:
        return True
    return ns_of(o) == pod.namespace and labels_match(labels, pod.labels)


def _bound_to_waypoint(o: KubeObject, svc: Service, waypoint: KubeObject) -> bool:
    if not _enforced(o):
        return False
    for ref in o.spec.get("targetRefs") or ([o.spec["targetRef"]] if o.spec.get("targetRef") else []):
        if ref.get("kind") == "Gateway" and ref.get("group") == GATEWAY_API_GROUP and ref.get("name") == waypoint.name \
                and ns_of(o) == waypoint.namespace:
            return True
        if ref.get("kind") == "Service" and ref.get("name") == svc.name and ns_of(o) == svc.namespace:
            return True
    return False


def _values_match(patterns: list[str], value: str | None) -> bool:
    return value is not None and any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _fields(spec: dict[str, Any], values: tuple[tuple[str, str | None], ...]) -> bool:
    """Each (field, the request's value) of a rule's source or operation: the value matches the field's patterns
    where it is set, and none of its negation's (`notPrincipals`, `notPaths`, …)."""
    for key, value in values:
        if key in spec and not _values_match(spec[key], value):
            return False
        negated = f"not{key[0].upper()}{key[1:]}"
        if negated in spec and _values_match(spec[negated], value):
            return False
    return True


def _source(src: dict[str, Any], req: Request) -> bool:
    return _fields(src, (("principals", req.principal), ("namespaces", req.namespace),
                         ("requestPrincipals", "issuer/subject" if req.token == "valid" else None)))


def _operation(op: dict[str, Any], req: Request) -> bool:
    return _fields(op, (("methods", req.method), ("paths", req.path)))


def _when(cond: dict[str, Any], req: Request) -> bool:
    key = cond.get("key", "")
    if key.startswith("request.headers["):
        name = key[len("request.headers["):-1].lower()
        value = req.header[1] if req.header and req.header[0] == name else None
    elif key == "source.namespace":
        value = req.namespace
    elif key == "source.principal":
        value = req.principal
    else:
        return True  # not modelled: taken to hold, the same way before and after
    return (not cond.get("values") or _values_match(cond["values"], value)) and not (
        cond.get("notValues") and _values_match(cond["notValues"], value))


def _rule(rule: dict[str, Any], req: Request) -> bool:
    return (any(_source(f.get("source") or {}, req) for f in rule.get("from") or [{}])
            and any(_operation(t.get("operation") or {}, req) for t in rule.get("to") or [{}])
            and all(_when(c, req) for c in rule.get("when") or ()))


def authorize(policies: list[KubeObject], req: Request, l4_only: bool = False) -> str:
    """allow | deny | custom:<names>: Istio's order (CUSTOM, DENY, then ALLOW: with any ALLOW policy, a request
    must match one). With `l4_only` (ztunnel), a policy with L7 attributes or a CUSTOM action denies everything."""
    if l4_only and any(l7_attributes(p.spec) or p.spec.get("action") == "CUSTOM" for p in policies):
        return "deny"
    custom = sorted(p.name for p in policies if p.spec.get("action") == "CUSTOM"
                    and any(_rule(r, req) for r in p.spec.get("rules") or ()))
    if custom:
        return "custom:" + ",".join(custom)
    if any(p.spec.get("action") == "DENY" and any(_rule(r, req) for r in p.spec.get("rules") or ()) for p in policies):
        return "deny"
    allows = [p for p in policies if p.spec.get("action", "ALLOW") == "ALLOW"]
    if allows and not any(_rule(r, req) for p in allows for r in p.spec.get("rules") or ()):
        return "deny"
    return "allow"


def _authn(requests: list[KubeObject], req: Request) -> str | None:
    return "deny" if requests and req.token == "invalid" else None


def decide_pod(inv: Inventory, svc: Service, pod: Pod, req: Request) -> str:
    """The decision on one request to one pod of a Service, by whatever handles the pod."""
    how = handler(inv, pod)
    if how == "none":
        return "allow"
    if req.principal is None and mtls_mode(inv, pod.namespace, pod.labels).value == "STRICT":
        return "deny"
    aps = [o for o in istio_objects(inv, "AuthorizationPolicy") if _bound_to_workload(inv, o, pod)]
    if how == "sidecar":
        ras = [o for o in istio_objects(inv, "RequestAuthentication") if _bound_to_workload(inv, o, pod)]
        return _authn(ras, req) or authorize(aps, req)
    waypoint = waypoint_for(inv, svc.namespace, svc)
    if waypoint is None:
        return authorize(aps, req, l4_only=True)
    bound = [o for kind in ("AuthorizationPolicy", "RequestAuthentication")
             for o in istio_objects(inv, kind) if _bound_to_waypoint(o, svc, waypoint)]
    ras = [o for o in bound if o.kind == "RequestAuthentication"]
    at_waypoint = _authn(ras, req) or authorize([o for o in bound if o.kind == "AuthorizationPolicy"], req)
    if req.principal is None:  # plaintext: ztunnel first, with no identity
        ztunnel = authorize(aps, req, l4_only=True)
        return ztunnel if ztunnel != "allow" else at_waypoint
    if at_waypoint != "allow":
        return at_waypoint
    return authorize(aps, replace(req, principal=waypoint_principal(waypoint), namespace=waypoint.namespace),
                     l4_only=True)


def decide(inv: Inventory, req: Request) -> tuple[str, ...]:
    """The decisions on a request to each pod of its Service (sorted, distinct): () where it has none."""
    svc = inv.service(*req.service)
    if svc is None:
        return ()
    return tuple(sorted({decide_pod(inv, svc, p, req) for p in inv.pods_of_service(svc)}))


def _callers(inv: Inventory) -> list[tuple[str | None, str | None]]:
    """(principal, namespace) of every service account with a pod in the mesh, and a plaintext caller."""
    out = {(f"cluster.local/ns/{p.namespace}/sa/{p.spec.service_account or 'default'}", p.namespace)
           for p in inv.pods if inv.in_mesh(p)}
    return sorted(out, key=str) + [(None, None)]


def _asks(inv: Inventory) -> tuple[list[tuple[str, str]], list[tuple[str, str] | None]]:
    """(method, path) pairs and headers the cluster's policies name, besides GET / and none."""
    ops, headers = {("GET", "/")}, [None]
    for ap in istio_objects(inv, "AuthorizationPolicy"):
        for rule in ap.spec.get("rules") or ():
            for t in rule.get("to") or ():
                op = t.get("operation") or {}
                for m in op.get("methods") or ["GET"]:
                    ops |= {(m, p.replace("*", "x")) for p in op.get("paths") or ["/"]}
            for c in rule.get("when") or ():
                if c.get("key", "").startswith("request.headers["):
                    headers += [(c["key"][len("request.headers["):-1].lower(), v.replace("*", "x"))
                                for v in c.get("values") or ()]
    return sorted(ops), list(dict.fromkeys(headers))


def requests(inv: Inventory) -> list[Request]:
    """The requests whose decisions a change must keep: each caller to each Service with pods, with each method,
    path and header the policies name, and without, with and with a bad JWT where a RequestAuthentication is."""
    ops, headers = _asks(inv)
    tokens = [None, "valid", "invalid"] if istio_objects(inv, "RequestAuthentication") else [None]
    services = [(s.namespace, s.name) for ns in inv.services_by_namespace.values() for s in ns
                if s.selector and inv.pods_of_service(s)]
    return [Request(principal, ns, svc, m, path, h, t) for principal, ns in _callers(inv) for svc in services
            for m, path in ops for h in headers for t in tokens]


# ---------------------------------------------------------------- L7 routing: what routes a Service, and who applies it


def _backends(inv: Inventory, namespace: str, pairs: list[tuple[Service | None, dict[str, str], Any]]) -> tuple:
    """A rule's destinations as (pod selector, weight), weights None for a single destination."""
    out = [(tuple(sorted({**svc.selector, **extra}.items())) if svc else None, w) for svc, extra, w in pairs]
    return tuple(sorted(((sel, None if len(out) == 1 else w) for sel, w in out), key=str))


def _vs_rules(inv: Inventory, vs: KubeObject) -> list[tuple]:
    rules = []
    for r in vs.spec.get("http") or ():
        pairs = []
        for d in r.get("route") or ():
            dest = d.get("destination") or {}
            (svc, *_) = services_of_hosts(inv, [dest.get("host", "")], ns_of(vs)) or [None]
            extra = _subset(inv, svc, dest["subset"]) if svc and dest.get("subset") else {}
            pairs.append((svc, extra, d.get("weight", 100)))
        rules.append(_backends(inv, ns_of(vs), pairs))
    return rules


def _subset(inv: Inventory, svc: Service, name: str) -> dict[str, str]:
    for dr in istio_objects(inv, "DestinationRule"):
        if ns_of(dr) == svc.namespace and dr.spec.get("host", "").split(".")[0] == svc.name:
            for s in dr.spec.get("subsets") or ():
                if s.get("name") == name:
                    return dict(s.get("labels") or {})
    return {"subset": name}  # a subset no DestinationRule defines: kept as itself, so that it compares


def _route_rules(inv: Inventory, route: KubeObject) -> list[tuple]:
    return [_backends(inv, route.namespace or "", [
        (inv.service(b.get("namespace", route.namespace or ""), b.get("name", "")), {}, b.get("weight", 1))
        for b in r.get("backendRefs") or ()]) for r in route.spec.get("rules") or ()]


def routing(inv: Inventory) -> dict[tuple[str, str], tuple[tuple, str]]:
    """Each Service routed at L7 in the mesh (a mesh VirtualService's HTTP routes, an HTTPRoute attached to it) →
    (its rules' destinations, who applies them: `sidecars`, `waypoint NS/NAME`, or `nobody: …`)."""
    found: dict[tuple[str, str], tuple[list[tuple], str]] = {}
    for vs in istio_objects(inv, "VirtualService"):
        for svc in mesh_http_routes(inv, vs):
            found[svc.namespace, svc.name] = (_vs_rules(inv, vs), "VirtualService")
    for route in inv.of_kind("HTTPRoute"):
        for ref in route.spec.get("parentRefs") or ():
            svc = inv.service(route.namespace or "", ref.get("name", "")) if ref.get("kind") == "Service" else None
            if svc is not None:
                found[svc.namespace, svc.name] = (_route_rules(inv, route), "HTTPRoute")
    out = {}
    for (ns, name), (rules, kind) in found.items():
        svc = inv.service(ns, name)
        pods = inv.pods_of_service(svc) if svc else []
        if not pods or all(handler(inv, p) == "sidecar" for p in pods):
            who = "sidecars"
        elif (wp := waypoint_for(inv, ns, svc)) is None:
            who = "nobody: its pods are in ambient mode and no waypoint serves it"
        else:
            who = f"waypoint {wp.namespace}/{wp.name}" if kind == "HTTPRoute" else (
                "nobody stable: a VirtualService at a waypoint is Alpha (migrate it to an HTTPRoute)")
        out[ns, name] = (tuple(sorted(rules, key=str)), who)
    return out
