"""What every rendering must keep, checked on the overlay (the cluster with the rendering applied) against the
cluster as it is: the DESIGN's "changes are merges, proved on a copy".

- MST0810: every host, gateway binding, route (by its match), route destination, route field (timeout, retries,
  fault, mirror, …), traffic-policy field, label and annotation of an object the rendering changes is still there,
  with its value — unless the feature owns it (`Feature.owns`: what it is there to change).
- MST0811: no new HTTP route to a port that is not declared HTTP, HTTP2 or gRPC.
- MST0812: no call meshstep has evidence of (analysis.callers) is newly refused.
- MST0813: analysis reports no error the cluster does not have today.
- MST0814: the rollback, applied to the overlay, gives back the objects the cluster has today, byte for byte once
  normalised.
- MST0815: a feature aimed at the mesh's calls (one with an `ingress` parameter, left false) changes no rule an
  ingress gateway applies (features._reach).
- MST0816: enforcement never lapses (for a feature that moves who enforces, Feature.keeps_decisions): on the
  cluster as the rendering leaves it — with the objects its install
  commands make and the pods its restarts bring back — every request is allowed or denied as before by whichever
  proxy handles it now (sidecar, ztunnel, waypoint: analysis.enforcement), and every Service routed at L7 is still
  routed the same way by someone (no VirtualService left to a pod without sidecar nor waypoint)."""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from analysis.base import Message, catalog_message, runnable, unseen_message
from analysis.callers import CALLS_READ, calls, refusal
from analysis.catalog import fill, joined
from analysis.enforcement import KINDS as ENFORCEMENT_READS
from analysis.enforcement import decide, requests, routing
from cluster.changes import clean, normalized_yaml, ref_of
from cluster.inventory import Inventory
from cluster.model import Ref
from features._gateway_api import service_ref
from features._reach import reached
from features.base import Feature, Rendered, analysis_errors, apply

_ROLLBACK = "rollback.meshstep.io/"


@dataclass(frozen=True)
class Invariant:
    code: str
    # What it reads of the cluster as it is, beyond the kinds of the rendered objects: without them it would
    # compare the rendering against objects it could not see.
    reads: tuple[str, ...]
    fn: Callable[[Feature, dict[str, Any], str, Inventory, Inventory, Rendered], Iterable[Message]]
    # An API that is not installed holds nothing to compare: only what the source refused to show is unknown.
    sees_uninstalled: bool = True
    # The features it is about; one it is not about is neither checked nor reported as not checked.
    applies: Callable[[Feature], bool] = lambda _f: True


INVARIANTS = (
    Invariant("MST0810", (), lambda f, p, s, before, after, r: config_lost(f, before, r)),
    Invariant("MST0811", ("VirtualService", "HTTPRoute", "Service"),
              lambda f, p, s, before, after, r: http_to_other_ports(before, after, r)),
    Invariant("MST0812", CALLS_READ, lambda f, p, s, before, after, r: callers_refused(before, after)),
    # analysis skips, and says so, the checks whose kinds the source could not show: it reads nothing more itself
    Invariant("MST0813", (), lambda f, p, s, before, after, r: new_analysis_errors(before, after)),
    Invariant("MST0814", (), lambda f, p, s, before, after, r: rollback_not_exact(f, p, s, before, after, r)),
    Invariant("MST0815", ("Gateway",), lambda f, p, s, before, after, r: ingress_reached(f, p, before, r)),
    Invariant("MST0816", ENFORCEMENT_READS, lambda f, p, s, before, after, r: enforcement_lapses(f, p, s, before,
                                                                                                 after, r),
              applies=lambda f: f.keeps_decisions),
)


def check(feature: Feature, params: dict[str, Any], scope: str, before: Inventory,
          rendered: Rendered) -> list[Message]:
    """Every invariant the rendering breaks (an empty list when it keeps them all), and those it could not check
    because the source could not show what they compare (a 403: the objects there may be)."""
    after = apply(rendered, before)
    kinds = tuple(sorted({o["kind"] for o in rendered.objects} | {r.kind for r in rendered.delete}))
    about = [i for i in INVARIANTS if i.applies(feature)]
    _, unknown = runnable([replace(i, reads=i.reads + kinds) for i in about], before)
    blocked = {i.code for invs in unknown.values() for i in invs}
    out = [m for i in about if i.code not in blocked
           for m in i.fn(feature, params, scope, before, after, rendered)]
    return out + [unseen_message(u, f"{len(invs)} invariant{'s' * (len(invs) != 1)} not checked: "
                                 f"{', '.join(i.code for i in invs)}") for u, invs in unknown.items()]


# ---------------------------------------------------------------- MST0810: what the objects had


def facts(o: dict[str, Any]) -> dict[str, Any]:
    """What an object has that something may depend on, as path → value (see the module docstring)."""
    meta = o.get("metadata") or {}
    out: dict[str, Any] = {f"labels/{k}": v for k, v in (meta.get("labels") or {}).items()}
    out |= {f"annotations/{k}": v for k, v in (meta.get("annotations") or {}).items() if not k.startswith(_ROLLBACK)}
    spec = o.get("spec") or {}
    kind = o.get("kind")
    if kind == "VirtualService":
        ns = meta.get("namespace") or ""
        out |= {f"hosts/{h}": True for h in spec.get("hosts") or ()}
        out |= {f"gateways/{g}": True for g in spec.get("gateways") or ()}
        for proto in ("http", "tcp", "tls"):
            for r in spec.get(proto) or ():
                key = f"{proto}[{json.dumps(r.get('match'), sort_keys=True)}]"
                out[key] = True
                for d in r.get("route") or ():
                    dest = d.get("destination") or {}
                    host = dest.get("host", "")
                    host = f"{host}.{ns}" if "." not in host else host.removesuffix(".svc.cluster.local")
                    out[f"destination/{host}:{(dest.get('port') or {}).get('number', '')}"] = True
                out |= {f"{key}.{k}": json.dumps(v, sort_keys=True) for k, v in r.items()
                        if k not in ("match", "route", "name")}
    elif kind == "DestinationRule":
        out["host"] = spec.get("host")
        out |= _leaves(spec.get("trafficPolicy") or {}, "trafficPolicy")
        for s in spec.get("subsets") or ():
            out[f"subsets/{s.get('name')}"] = json.dumps(s.get("labels"), sort_keys=True)
            out |= _leaves(s.get("trafficPolicy") or {}, f"subsets/{s.get('name')}.trafficPolicy")
    elif kind == "HTTPRoute":
        out |= {f"hostnames/{h}": True for h in spec.get("hostnames") or ()}
        out |= {f"parentRefs/{r.get('kind', 'Gateway')}/{r.get('name')}:{r.get('port', '')}": True
                for r in spec.get("parentRefs") or ()}
        for r in spec.get("rules") or ():
            key = f"rules[{json.dumps(r.get('matches'), sort_keys=True)}]"
            out[key] = True
            out |= {f"{key}.{k}": json.dumps(v, sort_keys=True) for k, v in r.items() if k not in ("matches", "name")}
    elif kind == "Gateway" and "gatewayClassName" in spec:  # the Gateway API's
        out["gatewayClassName"] = spec["gatewayClassName"]
        out |= {f"listeners/{li.get('port')}/{li.get('protocol')}/{li.get('hostname', '*')}": True
                for li in spec.get("listeners") or ()}
    elif kind == "ReferenceGrant":  # each reference it grants: adding one takes none away
        out |= {f"from/{f.get('group')}/{f.get('kind')}/{f.get('namespace')}": True for f in spec.get("from") or ()}
        out |= {f"to/{t.get('group')}/{t.get('kind')}/{t.get('name', '*')}": True for t in spec.get("to") or ()}
    elif kind == "Gateway":
        out |= {f"servers/{(s.get('port') or {}).get('number')}/{h}": True
                for s in spec.get("servers") or () for h in s.get("hosts") or ()}
        out |= {f"selector/{k}": v for k, v in (spec.get("selector") or {}).items()}
    else:
        out |= _leaves(spec, "spec") | _leaves(o.get("data") or {}, "data")
    return out


def _leaves(d: dict[str, Any], path: str) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out |= _leaves(v, f"{path}.{k}")
        else:
            out[f"{path}.{k}"] = json.dumps(v, sort_keys=True)
    return out


def _owned(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """A feature's `owns` patterns as one expression: `*` stands for anything, every other character for itself
    (facts have brackets in them, which shell patterns would read as classes)."""
    return re.compile("|".join(re.escape(p).replace(r"\*", ".*") for p in patterns) or "(?!)")


def config_lost(feature: Feature, before: Inventory, rendered: Rendered) -> Iterator[Message]:
    for o in rendered.objects:
        ref = ref_of(o)
        current = before.get(ref.kind, ref.namespace, ref.name)
        if current is None:
            continue
        was, now = facts(clean(current.raw)), facts(o)
        owned = _owned(feature.owns)
        lost = [k for k, v in was.items() if (k not in now or now[k] != v) and not owned.fullmatch(k)]
        if lost:
            more = f" and {len(lost) - 4} more" if len(lost) > 4 else ""
            shown = ", ".join(lost[:4]) + more
            text = fill(f"{feature.id} would drop or change {{lost}}{more} of {{ref}}", lost=joined(lost[:4]),
                        ref=str(ref))
            yield catalog_message("MST0810", ref, text,
                           feature=feature.id, object=str(ref), lost=shown)


# ---------------------------------------------------------------- MST0811: HTTP routes only to HTTP ports

_HTTP = ("HTTP", "HTTP2", "GRPC")


def _http_to_other_ports(inv: Inventory) -> set[tuple[Ref, str, int]]:
    """(VirtualService or HTTPRoute, service, port) of HTTP routes and ingress hosts that reach a port not declared
    HTTP."""
    out = set()
    for vs in inv.of_kind("VirtualService"):
        for r in vs.spec.get("http") or ():
            for d in r.get("route") or ():
                dest = d.get("destination") or {}
                parts = (dest.get("host") or "").split(".")
                ns = vs.namespace or "default"
                svc = inv.service(parts[1] if len(parts) > 1 else ns, parts[0])
                if svc is None or not svc.ports:
                    continue
                number = (dest.get("port") or {}).get("number")
                ports = [p for p in svc.ports if p.port == number] if number else list(svc.ports)[:1]
                for p in ports:
                    if p.istio_protocol not in _HTTP:
                        out.add((vs.ref, f"{svc.namespace}/{svc.name}", p.port))
    for route in inv.of_kind("HTTPRoute"):
        for r in route.spec.get("rules") or ():
            for b in r.get("backendRefs") or ():
                svc = inv.service(b.get("namespace", route.namespace or "default"), b.get("name", ""))
                if svc is None or not service_ref(b):
                    continue
                out |= {(route.ref, f"{svc.namespace}/{svc.name}", p.port) for p in svc.ports
                        if p.port == b.get("port") and p.istio_protocol not in _HTTP}
    return out


def http_to_other_ports(before: Inventory, after: Inventory, rendered: Rendered) -> Iterator[Message]:
    mine = {ref_of(o) for o in rendered.objects}
    for ref, svc, port in sorted(_http_to_other_ports(after) - _http_to_other_ports(before), key=str):
        if ref in mine:
            yield catalog_message("MST0811", ref,
                                  fill("{ref} sends HTTP to port {port} of Service {svc}, which is not declared "
                                       "HTTP", ref=str(ref), port=port, svc=svc),
                                  service=svc)


# ---------------------------------------------------------------- MST0812: callers with evidence


def callers_refused(before: Inventory, after: Inventory) -> Iterator[Message]:
    for call in calls(before):
        if refusal(before, call) is not None:
            continue  # refused already: not this rendering's doing
        why = refusal(after, call)
        if why is not None:
            fix = (f"keep {call.caller} ({call.evidence}) able to reach {call.target}: change the parameters so the "
                   f"new config lets it through, or bring it into the mesh first")
            text = fill("{call} ({evidence}) would be refused: {why}", call=str(call), evidence=call.evidence, why=why)
            yield catalog_message("MST0812", call.caller, text, fix=fix)


# ---------------------------------------------------------------- MST0813: analysis


def new_analysis_errors(before: Inventory, after: Inventory) -> Iterator[Message]:
    was = {(m.code, str(m.ref), m.message) for m in analysis_errors(before)}
    for m in analysis_errors(after):
        if (m.code, str(m.ref), m.message) not in was:
            text = fill(f"analysis would report {m.code} {{message}}", message=m.message)
            yield catalog_message("MST0813", m.ref, text, finding=f"{m.code}: {m.hint}")


# ---------------------------------------------------------------- MST0814: rollback


def rollback_not_exact(feature: Feature, params: dict[str, Any], scope: str, before: Inventory, after: Inventory,
                       rendered: Rendered) -> Iterator[Message]:
    undo = feature.rollback(params, scope, after)
    back = apply(undo, after)
    refs = dict.fromkeys([*map(ref_of, rendered.objects), *rendered.delete, *map(ref_of, undo.objects), *undo.delete])
    for ref in refs:
        was, now = before.get(ref.kind, ref.namespace, ref.name), back.get(ref.kind, ref.namespace, ref.name)
        if normalized_yaml(was and was.raw) != normalized_yaml(now and now.raw):
            yield catalog_message("MST0814", ref,
                                  fill(f"the rollback of {feature.id} does not give back {{ref}} as it is today",
                                       ref=str(ref)),
                                  object=str(ref))


# ---------------------------------------------------------------- MST0815: aimed at the mesh, reaching ingress


def ingress_reached(feature: Feature, params: dict[str, Any], before: Inventory,
                    rendered: Rendered) -> Iterator[Message]:
    if "ingress" not in {p.name for p in feature.params} or params.get("ingress") or rendered.rollback:
        return
    for r in reached(before, rendered.objects):
        if r.ingress:
            text = fill(f"{feature.id} would change {{r}}: ingress traffic gets it too", r=str(r))
            yield catalog_message("MST0815", r.ref, text, gateway=", ".join(r.ingress))


# ---------------------------------------------------------------- MST0816: enforcement never lapses

# What decides a request or routes it at L7: a rendering that touches none of these (and restarts no pod, installs
# nothing) leaves every decision as it was.
_DECIDING = {"AuthorizationPolicy", "RequestAuthentication", "PeerAuthentication", "Namespace", "Service", "Gateway",
             "HTTPRoute", "VirtualService", "DestinationRule", "ConfigMap", "Deployment", "DaemonSet", "Pod"}


def as_run(feature: Feature, params: dict[str, Any], scope: str, after: Inventory, restart: bool = True) -> Inventory:
    """The cluster as the rendering leaves it once its commands ran and (unless not `restart`) its restarts
    brought the pods back (what a rehearsal applies: an overlay runs neither)."""
    made = feature.commanded(params, scope, after)
    after = after.with_changes(apply=made) if made else after
    pods = feature.restarted_pods(params, scope, after) if restart else []
    return after.with_changes(pods=pods) if pods else after


def enforcement_lapses(feature: Feature, params: dict[str, Any], scope: str, before: Inventory, after: Inventory,
                       rendered: Rendered) -> Iterator[Message]:
    kinds = {o["kind"] for o in rendered.objects} | {r.kind for r in rendered.delete}
    if rendered.rollback or not kinds & _DECIDING \
            and not feature.restarted_pods(params, scope, after) and not feature.commanded(params, scope, after):
        return
    ran = as_run(feature, params, scope, after, restart=False)
    pods = feature.restarted_pods(params, scope, ran)
    now = ran.with_changes(pods=pods) if pods else ran  # as_run(…) with its restarts, its commands not run again
    # the seconds between the change and the restarts: the pods as they were, each restarted pod as in `now` (a
    # pod's decisions depend on its own state alone, so these two ends cover every mix of restarted and not)
    window = [(" before its pods restart", ran)] if pods else []
    decisions = {req: decide(before, req) for req in requests(before)}
    for when, inv in [("", now), *window]:
        changed = [(req, was, is_) for req, was in decisions.items() if (is_ := decide(inv, req)) != was]
        for req, was, is_ in changed[:3]:
            yield catalog_message("MST0816", Ref("Service", req.service[0], req.service[1]),
                                  fill(f"{feature.id} in {{scope}} changes a decision{when}: {{req}} was {{was}}, "
                                       "would be {is_}" + (f" (and {len(changed) - 3} more requests)"
                                                           if len(changed) > 3 else ""),
                                       scope=scope, req=str(req), was="/".join(was) or "unserved",
                                       is_="/".join(is_) or "unserved"),
                                  feature=feature.id, scope=scope)
    routes = routing(now)
    for (ns, name), (rules, who) in sorted(routing(before).items()):
        if who.startswith("nobody"):
            continue  # not applied before either: not this rendering's doing
        new_rules, new_who = routes.get((ns, name), ((), "nobody: its L7 routes are gone"))
        if new_who.startswith("nobody") or new_rules != rules:
            what = new_who if new_who.startswith("nobody") else "its routes send to other destinations or weights"
            yield catalog_message("MST0816", Ref("Service", ns, name),
                                  fill(f"{feature.id} in {{scope}} drops {{ns}}/{{name}}'s L7 routing, applied by "
                                       "{who} before: {what}", scope=scope, ns=ns, name=name, who=who, what=what),
                                  feature=feature.id, scope=scope)
