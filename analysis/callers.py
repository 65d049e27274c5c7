"""Who calls whom, as far as meshstep has evidence of it, and whether the cluster's config lets each call through.

`calls(inv)` is the evidence: workloads naming a service or an external host in their command, args or env, the
Kubernetes Ingresses that send to a Service, and the Istio ingress gateways' routes. It is the one seam where more
evidence (observed traffic) joins. `refusal(inv, call)` says what in the config refuses a call — STRICT mTLS, an
AuthorizationPolicy (a RequestAuthentication's DENY is one), REGISTRY_ONLY, a Sidecar's egress — so that the
invariants (features/invariants.py) can compare a cluster before and after a change. The checks at the end say
what this evidence cannot show."""
from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from analysis.base import Context
from analysis.catalog import fill, joined
from analysis.effective import mtls_mode
from analysis.readiness.egress import egress_allows
from analysis.readiness.mtls import ingress_backends
from analysis.readiness.scope import (
    Found,
    external_hosts,
    hint,
    outside_mesh,
    readiness,
    scope_namespaces,
    service_calls,
    service_of_host,
    units,
)
from cluster.inventory import Inventory
from cluster.model import KubeObject, Ref, Service
from cluster.queries import application_namespace, istio_objects, labels_match, ns_of, per_inventory, service_index


@dataclass(frozen=True, eq=False)
class Call:
    """One caller → one destination, with what shows it."""

    caller: Ref  # the workload (or Ingress, or gateway) that calls
    namespace: str  # where the caller runs
    meshed: bool  # it has a sidecar (or ambient redirection): it can present a mesh identity
    account: str  # its service account ('' when unknown)
    evidence: str  # where meshstep saw it
    service: Service | None = None  # the in-cluster destination …
    host: str = ""  # … or the external host
    end_user: bool = False  # requests from the edge (an ingress gateway): they may carry an end-user token

    @property
    def target(self) -> str:
        return f"{self.service.namespace}/{self.service.name}" if self.service else self.host

    def __str__(self) -> str:
        return f"{self.caller} → {self.target}"


# What `calls` and `refusal` read: the workloads and Services that show calls, the ingress gateways' routes, and
# the config that refuses a call (peer authentication, authorization, the mesh config's outbound policy, Sidecars).
CALLS_READ = ("Namespace", "Deployment", "StatefulSet", "DaemonSet", "Pod", "Service", "ConfigMap", "VirtualService",
              "ServiceEntry", "Sidecar", "PeerAuthentication", "AuthorizationPolicy")


def calls(inv: Inventory) -> list[Call]:
    """Every call meshstep has evidence of, from config (built once per inventory)."""
    return per_inventory(inv, "callers-calls", _config_calls)


def _config_calls(inv: Inventory) -> list[Call]:
    out = []
    for u in units(inv, [n for n in inv.namespace_names() if application_namespace(inv, n)]):
        meshed = not outside_mesh(inv, u)
        for svc, where in service_calls(inv, u):
            out.append(Call(u.ref, u.namespace, meshed, u.spec.service_account, f"its {where}", service=svc))
        for host, where in external_hosts(inv, u):
            out.append(Call(u.ref, u.namespace, meshed, u.spec.service_account, f"its {where}", host=host))
    for ing in inv.of_kind("Ingress"):
        n = ns_of(ing)
        cls = ing.spec.get("ingressClassName") or ing.annotations.get("kubernetes.io/ingress.class") or "default"
        for name in sorted(ingress_backends(ing.spec)):
            svc = inv.service(n, name)
            if svc is not None:  # the controller is Istio's gateway only for class istio
                out.append(Call(ing.ref, n, cls == "istio", "", f"Ingress {n}/{ing.name} (class {cls})",
                                service=svc, end_user=True))
    gateways = [c for c in inv.components if c.component == "ingress-gateway"]
    if gateways:
        gw = gateways[0]
        pod = inv.pod(gw.namespace, gw.name) if gw.kind == "Pod" else None
        account = pod.spec.service_account if pod else ""
        for vs in istio_objects(inv, "VirtualService"):
            if not [g for g in vs.spec.get("gateways") or () if g != "mesh"]:
                continue
            for route in vs.spec.get("http") or []:
                for d in route.get("route") or []:
                    svc = service_of_host((d.get("destination") or {}).get("host", ""), ns_of(vs), inv)
                    if svc is not None:
                        out.append(Call(Ref(gw.kind, gw.namespace, gw.name), gw.namespace, True, account,
                                        f"VirtualService {ns_of(vs)}/{vs.name}", service=svc, end_user=True))
    return list({(c.caller, c.target, c.evidence): c for c in out}.values())


# ---------------------------------------------------------------- what refuses a call


def refusal(inv: Inventory, call: Call) -> str | None:
    """What in the config refuses the call, or None when it goes through."""
    if call.service is None:
        return _caller_side(inv, call)
    return _caller_side(inv, call) or _server_side(inv, call)


def _sidecar_of(inv: Inventory, namespace: str) -> Any:
    """The Sidecar that scopes a namespace's proxies: its own selector-less one, else the root namespace's (Istio's
    mesh-wide default)."""
    first = per_inventory(inv, "callers-namespace-sidecars", lambda i: _by_namespace(
        s for s in istio_objects(i, "Sidecar") if not s.spec.get("workloadSelector")))
    return next((first[ns][0] for ns in (namespace, inv.root_namespace) if ns in first), None)


def _by_namespace(objects: Iterable[KubeObject]) -> dict[str, list[KubeObject]]:
    """Objects by the namespace they live in, in their order."""
    out: dict[str, list[KubeObject]] = defaultdict(list)
    for o in objects:
        out[ns_of(o)].append(o)
    return out


def _caller_side(inv: Inventory, call: Call) -> str | None:
    if not call.meshed or call.end_user:
        return None  # no sidecar: nothing on the caller's side applies
    sc = _sidecar_of(inv, call.namespace)
    if call.service is None:
        mode = ((sc.spec.get("outboundTrafficPolicy") or {}).get("mode") if sc else None) or \
            (inv.mesh_config.get("outboundTrafficPolicy") or {}).get("mode")
        if mode == "REGISTRY_ONLY" and not service_index(inv).known(call.host, call.namespace):
            by = sc.ref if sc and (sc.spec.get("outboundTrafficPolicy") or {}).get("mode") else "the mesh config"
            return f"outboundTrafficPolicy REGISTRY_ONLY ({by}) and no ServiceEntry registers {call.host}"
        return None
    egress = [h for e in (sc.spec.get("egress") or []) for h in e.get("hosts") or ()] if sc else []
    if egress and not any(egress_allows(h, call.namespace, call.service) for h in egress):
        return (f"{sc.ref} leaves {call.service.host} out of its egress hosts: the call falls to the "
                "PassthroughCluster (no routing, no mTLS) or, under REGISTRY_ONLY, fails")
    return None


def _server_side(inv: Inventory, call: Call) -> str | None:
    svc = call.service
    pods = inv.pods_of_service(svc)
    labels = [p.labels for p in pods] or [svc.selector or {}]
    if not call.meshed and _strict(inv, svc.namespace, labels):
        return f"mTLS STRICT in {svc.namespace} refuses its plaintext"
    by_ns = per_inventory(inv, "callers-authorization-policies", lambda i: _by_namespace(
        istio_objects(i, "AuthorizationPolicy")))
    near = sorted((ap for ns in {svc.namespace, inv.root_namespace} for ap in by_ns.get(ns, ())),
                  key=lambda ap: (ap.namespace or "", ap.name))  # in the inventory's order, as a scan finds them
    policies = [ap for ap in near if not ap.spec.get("targetRefs") and _selects(ap.spec.get("selector"), labels)]
    for ap in policies:
        rules = ap.spec.get("rules") or []
        if ap.spec.get("action") == "DENY" and any(_rule_matches(r, call, deny=True) for r in rules):
            return f"AuthorizationPolicy {ns_of(ap)}/{ap.name} (DENY) matches it"
    allows = [ap for ap in policies if ap.spec.get("action", "ALLOW") == "ALLOW"]
    if allows and not any(_rule_matches(r, call, deny=False) for ap in allows for r in ap.spec.get("rules") or []):
        return f"no ALLOW rule matches it ({', '.join(f'AuthorizationPolicy {ns_of(a)}/{a.name}' for a in allows)})"
    return None


def _selects(selector: dict[str, Any] | None, labels: list[dict[str, str]]) -> bool:
    match = (selector or {}).get("matchLabels")
    return not match or any(labels_match(match, pod) for pod in labels)


def _strict(inv: Inventory, namespace: str, labels: list[dict[str, str]]) -> bool:
    return any(mtls_mode(inv, namespace, pod).value == "STRICT" for pod in labels)


def _rule_matches(rule: dict[str, Any], call: Call, deny: bool) -> bool:
    """Whether a rule matches the call's requests. What config cannot tell (operations, conditions, IP blocks) is
    read so that a DENY is not said to refuse, and an ALLOW is said to let through: refusals are certain."""
    if deny and (rule.get("to") or rule.get("when")):
        return False
    sources = [f.get("source") or {} for f in rule.get("from") or []]
    return not sources or any(_source_matches(s, call, deny) for s in sources)


def _any(patterns: list[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _source_matches(src: dict[str, Any], call: Call, deny: bool) -> bool:
    principal = f"cluster.local/ns/{call.namespace}/sa/{call.account or 'default'}"
    # A caller without a sidecar has no identity: namespace and principal fields cannot match it.
    checks = {
        "namespaces": lambda v: call.meshed and _any(v, call.namespace),
        "notNamespaces": lambda v: not (call.meshed and _any(v, call.namespace)),
        "principals": lambda v: call.meshed and _any(v, principal),
        "notPrincipals": lambda v: not (call.meshed and _any(v, principal)),
        # Calls between workloads carry no end-user token; requests from the edge may: a rule on tokens is the
        # point of a RequestAuthentication there, not a refusal of the caller.
        "requestPrincipals": lambda v: call.end_user and not deny,
        "notRequestPrincipals": lambda v: not call.end_user,
    }
    for key, value in src.items():
        test = checks.get(key)
        if test is None:
            if deny:
                return False  # an IP block or another field config cannot evaluate
            continue
        if not test(value or []):
            return False
    return True


# ---------------------------------------------------------------- what the evidence cannot show


def _unseen(inv: Inventory) -> dict[str, int]:
    """Application namespaces with pods outside the mesh, and how many: any of them may call anything, and only
    what their config names is known."""
    out: dict[str, int] = defaultdict(int)
    for u in units(inv, [n for n in inv.namespace_names() if application_namespace(inv, n)]):
        out[u.namespace] += len(outside_mesh(inv, u))
    return {n: c for n, c in out.items() if c}


# Both blind spots are config's: with telemetry read, the traffic gates (analysis/traffic.py) see those
# callers (plaintext from an unknown source, PassthroughCluster hosts) and these warnings would only repeat them.
@readiness("MST0801")
def callers_not_visible(ctx: Context) -> Iterator[Found]:
    if ctx.traffic is not None:
        return
    inv = ctx.inventory
    scope = set(scope_namespaces(ctx))
    blind = {n: c for n, c in _unseen(inv).items() if n not in scope}
    if blind:
        names = joined(fill(f"{{n}} ({c} pod{'s' if c != 1 else ''})", n=n) for n, c in sorted(blind.items()))
        first = sorted(blind)[0]
        yield Ref("Namespace", None, first), \
            fill("pods without sidecars run in {names}: meshstep sees only the calls their config names, so a caller "
                 "among them may still be refused", names=names), hint("MST0801", namespaces=", ".join(sorted(blind)))


@readiness("MST0802")
def external_calls_not_visible(ctx: Context) -> Iterator[Found]:
    if ctx.traffic is not None:
        return
    inv = ctx.inventory
    named = {c.caller for c in calls(inv) if c.service is None}
    silent = defaultdict(list)
    for n in scope_namespaces(ctx):
        for u in units(inv, [n]):
            if not outside_mesh(inv, u) and u.ref not in named:
                silent[n].append(u.ref.name)
    if silent:
        names = joined((fill(f"{{n}}: {{ws}}{' …' if len(ws) > 5 else ''}", n=n, ws=joined(sorted(ws)[:5]))
                        for n, ws in sorted(silent.items())), "; ")
        yield Ref("Namespace", None, sorted(silent)[0]), \
            fill("meshed workloads name no external host in their config ({names}): hosts they reach by a name "
                 "built at run time are invisible here and refused under REGISTRY_ONLY", names=names), hint("MST0802")
