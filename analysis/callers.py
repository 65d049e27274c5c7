"""Who calls whom, as far as meshstep has evidence of it, and whether the cluster's config lets each call through.

`calls(inv)` is the evidence: workloads naming a service or an external host in their command, args or env, the
Kubernetes Ingresses that send to a Service, and the Istio ingress gateways' routes. It is the one seam where more
evidence (observed traffic) joins; today observed traffic is read beside it, by the checks given telemetry (a caller
without a sidecar is unnamed there: it sends no metadata). `refusal(inv, call)` says what in the config refuses a
call — STRICT mTLS where a proxy enforces it, an AuthorizationPolicy (a RequestAuthentication's DENY is one),
REGISTRY_ONLY, a Sidecar's egress — so that the invariants (features/invariants.py) can compare a cluster before and
after a change. The checks at the end judge the pods without a sidecar of a STRICT stage by what they call
(MST0401, MST0406, MST0407), and say what this evidence cannot show (MST0801, MST0802)."""
from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from analysis.base import Context
from analysis.catalog import Filled, fill, joined
from analysis.readiness.egress import egress_allows
from analysis.readiness.mtls import (
    Plaintext,
    enforcing,
    ingress_backends,
    refuses_plaintext,
    servers_refuse,
    service_port,
    service_servers,
)
from analysis.readiness.scope import (
    Found,
    Unit,
    external_hosts,
    hint,
    outside_mesh,
    pods_text,
    readiness,
    scope_namespaces,
    service_calls,
    service_of_host,
    units,
)
from analysis.traffic import counted, plaintext_into, workload_of
from cluster.inventory import Inventory
from cluster.model import KubeObject, Ref, Service
from cluster.queries import application_namespace, istio_objects, labels_match, ns_of, per_inventory, service_index
from telemetry.edges import Edge, Traffic


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
    port: int | None = None  # the Service port it calls, where known
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
        for svc, port, where in service_calls(inv, u):
            out.append(Call(u.ref, u.namespace, meshed, u.spec.service_account, f"its {where}", service=svc,
                            port=port))
        for host, where in external_hosts(inv, u):
            out.append(Call(u.ref, u.namespace, meshed, u.spec.service_account, f"its {where}", host=host))
    for ing in inv.of_kind("Ingress"):
        n = ns_of(ing)
        cls = ing.spec.get("ingressClassName") or ing.annotations.get("kubernetes.io/ingress.class") or "default"
        for svc, port in ingress_backends(inv, ing):  # the controller is Istio's gateway only for class istio
            out.append(Call(ing.ref, n, cls == "istio", "", f"Ingress {n}/{ing.name} (class {cls})", service=svc,
                            port=port, end_user=True))
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
                    dest = d.get("destination") or {}
                    svc = service_of_host(dest.get("host", ""), ns_of(vs), inv)
                    if svc is not None:
                        out.append(Call(Ref(gw.kind, gw.namespace, gw.name), gw.namespace, True, account,
                                        f"VirtualService {ns_of(vs)}/{vs.name}", service=svc,
                                        port=service_port(svc, (dest.get("port") or {}).get("number")),
                                        end_user=True))
    return list({(c.caller, c.target, c.port, c.evidence): c for c in out}.values())


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
    """What the Service's servers refuse the call by: their mTLS, or their AuthorizationPolicies. Both are the
    proxy's to enforce: only the servers a proxy serves apply them (service_servers)."""
    svc = call.service
    if not call.meshed and (plain := refuses_plaintext(inv, svc, call.port)).refused:
        return f"mTLS refuses its plaintext ({plain.why})"
    _, labels = service_servers(inv, svc)
    if not labels:
        return None  # no proxy there to enforce a policy
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


# ---------------------------------------------------------------- pods without a sidecar under STRICT

# STRICT is enforced by the server's proxy: a pod of the scope without one keeps receiving calls (its callers' auto
# mTLS sends it plaintext, and no PeerAuthentication applies to it), and breaks only where it calls a server that is,
# or will be after the stage, STRICT. Each such pod is judged by what the evidence shows it calls: MST0401 (its
# config names such a server), MST0406 (nothing shows either way), MST0407 (telemetry saw no plaintext reach one).


@dataclass(frozen=True)
class _Judged:
    """A call of a pod without a sidecar to an in-cluster Service, judged on the cluster as the stage leaves it."""

    call: Call
    refused: bool  # its servers refuse plaintext after the stage
    why: str  # where their mode comes from, or why they accept plaintext
    today: bool  # they refuse it already


@dataclass(frozen=True)
class _Bare:
    """A workload of the scope with pods outside the mesh, and its calls to in-cluster Services as config shows
    them."""

    unit: Unit
    pods: list[str]
    calls: list[_Judged]

    @property
    def refused(self) -> list[_Judged]:
        return [j for j in self.calls if j.refused]


def _bare(ctx: Context) -> list[_Bare]:
    """The workloads of the scope with pods outside the mesh, each with its calls judged: once per gate evaluation
    (MST0401, MST0406 and MST0407 each ask), kept by scope with the inventory they are judged on, which is the
    stage's own overlay where there is one to judge on."""
    inv = ctx.inventory
    outside = per_inventory(inv, "callers-outside-mesh", lambda _: {})  # a store of the inventory's own, by scope
    if ctx.scope not in outside:
        named: dict[Ref, list[Call]] = defaultdict(list)
        for c in calls(inv):
            if c.service is not None:
                named[c.caller].append(c)
        outside[ctx.scope] = [(u, out, named.get(u.ref, [])) for u in units(inv, scope_namespaces(ctx))
                              if (out := outside_mesh(inv, u))]
    found = outside[ctx.scope]
    # The cluster as the stage leaves it; outside a stage's gate (no rendering), as it is.
    after = ctx.after() if ctx.after is not None and any(cs for _, _, cs in found) else inv
    judged = per_inventory(after, "callers-bare", lambda _: {})
    if ctx.scope not in judged:
        judged[ctx.scope] = [_Bare(u, out, [_Judged(c, bool((v := refuses_plaintext(after, c.service, c.port)).refused),
                                                    v.why, bool(v.refused if after is inv else
                                                              refuses_plaintext(inv, c.service, c.port).refused))
                                            for c in cs])
                             for u, out, cs in found]
    return judged[ctx.scope]


def _strict_destinations(ctx: Context, t: Traffic) -> list[tuple[Edge, Plaintext]]:
    """Plaintext from callers outside the mesh (no source: a pod without a sidecar sends no metadata) that reached a
    server that refuses it, or may, after the stage, each with why: the destination workload's pods judged as a
    Service's are (servers_refuse), on a port unknown (Istio's standard metrics carry none). Once per gate evaluation
    (MST0406 and MST0407 each ask), kept for the traffic last asked about with the inventory it is judged on."""
    plain = [e for e in plaintext_into(t, None) if not e.source.known]
    if not plain:
        return []
    after = ctx.after() if ctx.after is not None else ctx.inventory
    last = per_inventory(after, "callers-strict-destinations", lambda _: {})
    if last.get("traffic") is not t:
        out = []
        for e in plain:
            namespace, w = e.destination.namespace or "", workload_of(after, e.destination)
            pods = after.pods_of_workload(w) if w is not None else []
            template = w.template.labels if w is not None and w.template is not None else {}
            verdict = servers_refuse(after, namespace, enforcing(after, pods, template))
            if verdict.refused is not False:
                out.append((e, verdict))
        last.update(traffic=t, edges=out)
    return last["edges"]


def _targets(judged: list[_Judged]) -> Filled:
    return joined(fill("{target} ({why})", target=j.call.target, why=j.why) for j in judged)


@readiness("MST0401", "Service", "PeerAuthentication")
def calls_strict_without_sidecar(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    for b in _bare(ctx):
        if not b.refused:
            continue
        each = joined((fill("calls {target} (named in {evidence}), STRICT "
                            + ("already today" if j.today else "after this stage") + " ({why})",
                            target=j.call.target, evidence=j.call.evidence.removeprefix("its "),
                            why=j.why.removeprefix("STRICT "))
                       for j in b.refused), "; ")
        yield b.unit.ref, fill("{pods} without a sidecar {each}: with no proxy to present a certificate, its plaintext "
                               "is refused there", pods=pods_text(b.pods), each=each), \
            hint("MST0401", workload=str(b.unit.ref), inject=b.unit.inject(inv),
                 targets=", ".join(j.call.target for j in b.refused))


def _named(b: _Bare) -> Filled:
    """What its config names, all of which accepts its plaintext after the stage."""
    if not b.calls:
        return fill("its config names no Service of the cluster (as service.namespace, or one of its own namespace "
                    "by its short name as a URL's host or host:port)")
    return fill("its config names only {targets}, which accept" + "s" * (len(b.calls) == 1) + " its plaintext after "
                "the stage", targets=_targets(b.calls))


@readiness("MST0406", "Service", "PeerAuthentication")
def calls_unseen_without_sidecar(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    seen = _strict_destinations(ctx, ctx.traffic) if ctx.traffic is not None else None
    if seen == []:
        return  # telemetry saw no such call: MST0407
    for b in _bare(ctx):
        if b.refused:
            continue
        if seen is None:
            text = fill("{pods} without a sidecar: {named}; with no telemetry read, meshstep cannot see what "
                        + ("else " if b.calls else "") + "it calls: STRICT refuses any call it makes to a server "
                        "that is or will be STRICT", pods=pods_text(b.pods), named=_named(b))
        else:
            dests = sorted({fill("{dest} ({why})", dest=str(e.destination), why=v.why) for e, v in seen})
            text = fill("{pods} without a sidecar: {named}, but in {window} {counted} in plaintext from callers "
                        "outside the mesh reached servers that refuse it after the stage, or may on the port it "
                        "came to: {dests}; it may be one of them (they send no metadata: MST0821 blames what it "
                        "can)", pods=pods_text(b.pods), named=_named(b), window=ctx.traffic.window_text,
                        counted=counted([e for e, _ in seen]), dests=joined(dests[:5], "; "))
        yield b.unit.ref, text, hint("MST0406", workload=str(b.unit.ref), inject=b.unit.inject(inv))


@readiness("MST0407", "Service", "PeerAuthentication")
def calls_no_strict_without_sidecar(ctx: Context) -> Iterator[Found]:
    if ctx.traffic is None or _strict_destinations(ctx, ctx.traffic):
        return
    inv = ctx.inventory
    for b in _bare(ctx):
        if not b.refused:
            yield b.unit.ref, fill("{pods} without a sidecar: {named}, and in {window} no plaintext from callers "
                                   "outside the mesh reached a server that is or will be STRICT; STRICT does not "
                                   "cover what it serves (no proxy enforces it)", pods=pods_text(b.pods),
                                   named=_named(b), window=ctx.traffic.window_text), \
                hint("MST0407", workload=str(b.unit.ref), inject=b.unit.inject(inv))


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
