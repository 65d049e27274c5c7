"""Ambient mode: what ztunnel enforces (L4) and what only a waypoint can (L7).

In an ambient namespace ztunnel carries every pod's traffic and applies L4 AuthorizationPolicy; VirtualServices,
DestinationRules and L7 AuthorizationPolicy apply only where a waypoint (a Gateway API Gateway of class
`istio-waypoint`, chosen by the `istio.io/use-waypoint` label of the Service or its namespace) serves the
destination. A policy bound to the workloads (selector, or none) that uses an L7 attribute is one ztunnel cannot
evaluate: istio.io says it then fails safe by becoming a DENY policy for everything it selects."""
from __future__ import annotations

import json
from collections.abc import Iterator

from analysis.base import Context, check
from analysis.catalog import CATALOG, fill
from cluster.inventory import Inventory
from cluster.model import GATEWAY_API_GROUP, KubeObject, Ref, Service
from cluster.queries import istio_objects, ns_of, proxy_container

WAYPOINT_CLASS = "istio-waypoint"
USE_WAYPOINT = "istio.io/use-waypoint"
USE_WAYPOINT_NAMESPACE = "istio.io/use-waypoint-namespace"
HBONE_PORT = 15008

# The attributes ztunnel evaluates (istio.io, ambient L4 policy): anything else in a rule is L7.
_L4_SOURCE = {"principals", "notPrincipals", "namespaces", "notNamespaces", "ipBlocks", "notIpBlocks",
              "remoteIpBlocks", "notRemoteIpBlocks", "serviceAccounts", "notServiceAccounts"}
_L4_OPERATION = {"ports", "notPorts"}
_L4_CONDITIONS = {"source.ip", "source.namespace", "source.principal", "remote.ip", "destination.ip",
                  "destination.port", "source.serviceAccount"}


def is_waypoint(o: KubeObject) -> bool:
    return o.kind == "Gateway" and o.group == GATEWAY_API_GROUP and o.spec.get("gatewayClassName") == WAYPOINT_CLASS


def waypoint_for(inv: Inventory, namespace: str, service: Service | None = None) -> KubeObject | None:
    """The waypoint that serves a Service (its own `istio.io/use-waypoint` label, else its namespace's), if that
    label names one the cluster has; `none` opts a Service out of its namespace's waypoint."""
    ns = inv.namespaces.get(namespace)
    for labels in ([service.labels] if service else []) + ([ns.labels] if ns else []):
        name = labels.get(USE_WAYPOINT)
        if name is None:
            continue
        if name == "none":
            return None
        o = inv.get("Gateway", labels.get(USE_WAYPOINT_NAMESPACE, namespace), name)
        return o if o is not None and is_waypoint(o) else None
    return None


def l7_attributes(spec: dict) -> list[str]:
    """The L7 attributes an AuthorizationPolicy's rules use (request principals, hosts, methods, paths, headers,
    JWT claims), as `from.source.requestPrincipals`, `to.operation.methods`, `when request.headers[x]`."""
    found = []
    for rule in spec.get("rules") or ():
        for f in rule.get("from") or ():
            found += [f"from.source.{k}" for k in (f.get("source") or {}) if k not in _L4_SOURCE]
        for t in rule.get("to") or ():
            found += [f"to.operation.{k}" for k in (t.get("operation") or {}) if k not in _L4_OPERATION]
        found += [f"when {c.get('key')}" for c in rule.get("when") or () if c.get("key") not in _L4_CONDITIONS]
    return list(dict.fromkeys(found))


# The client identity a rule checks (istio.io, ambient L4 policy): behind a waypoint the destination's ztunnel sees
# the waypoint's identity in these, not the client's.
_IDENTITY_SOURCE = {"principals", "notPrincipals", "namespaces", "notNamespaces", "serviceAccounts",
                    "notServiceAccounts"}
_IDENTITY_CONDITIONS = {"source.principal", "source.namespace", "source.serviceAccount"}
# The injector's label on every pod it gives a sidecar (../shared/istio-reference api/labels.yaml): a policy that
# selects it applies to pods with a sidecar only, never to one that ztunnel carries.
SIDECAR_POD = {"security.istio.io/tlsMode": "istio"}
# On a policy the migration adds so that the destination's ztunnel allows the waypoint: the policy it serves.
ALLOWS_WAYPOINT = "migrated.meshstep.io/allows-waypoint"


def client_identity(spec: dict) -> list[str]:
    """The client identity checks of an AuthorizationPolicy's rules (`from.source.principals`, `when
    source.namespace`, …)."""
    found = []
    for rule in spec.get("rules") or ():
        for f in rule.get("from") or ():
            found += [f"from.source.{k}" for k in (f.get("source") or {}) if k in _IDENTITY_SOURCE]
        found += [f"when {c.get('key')}" for c in rule.get("when") or () if c.get("key") in _IDENTITY_CONDITIONS]
    return list(dict.fromkeys(found))


def waypoint_principal(waypoint: KubeObject) -> str:
    """The identity a waypoint's requests carry: istiod runs it under a service account named as its Gateway."""
    return f"cluster.local/ns/{waypoint.namespace}/sa/{waypoint.name}"


def for_sidecars(ap: KubeObject) -> bool:
    """Whether a workload-bound policy selects only pods with a sidecar (SIDECAR_POD in its selector)."""
    labels = (ap.spec.get("selector") or {}).get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in SIDECAR_POD.items())


def ztunnel_enforced(ap: KubeObject) -> bool:
    """Whether ztunnel enforces the policy: bound to workloads (selector, or the whole namespace), not through
    targetRefs to a waypoint or Service."""
    return not (ap.spec.get("targetRefs") or ap.spec.get("targetRef"))


def services_of_hosts(inv: Inventory, hosts: list[str], namespace: str) -> list[Service]:
    out = []
    for h in hosts:
        parts = h.split(".")
        svc = inv.service(parts[1] if len(parts) > 1 and parts[1] != "svc" else namespace, parts[0])
        if svc is not None and svc.namespace == namespace:
            out.append(svc)
    return out


# On an object the migration to ambient made: the object it stands for, as it was (JSON), so that a rollback can
# bring back what a later step deletes (the VirtualService an HTTPRoute replaces, the selector-bound policy a
# waypoint copy replaces).
MIGRATED_FROM = "migrated.meshstep.io/from"
POLICY_KINDS = ("AuthorizationPolicy", "RequestAuthentication", "WasmPlugin")


def stood_for(o: KubeObject) -> dict | None:
    """The original an object of the migration stands for, as it was."""
    record = o.annotations.get(MIGRATED_FROM)
    return json.loads(record) if record else None


def copied(inv: Inventory, namespace: str) -> dict[tuple[str, str], KubeObject]:
    """(kind, name) of each policy of the namespace → the waypoint copy that stands for it."""
    out = {}
    for kind in POLICY_KINDS:
        for o in inv.of_kind(kind):
            original = stood_for(o) if o.namespace == namespace else None
            if original is not None and original.get("kind") == kind:
                out[kind, original["metadata"]["name"]] = o
    return out


def needs_waypoint(inv: Inventory, namespace: str) -> Iterator[tuple[KubeObject, str]]:
    """The L7 config of a namespace that ambient mode would not apply: VirtualServices and DestinationRules no
    waypoint serves, and L7 AuthorizationPolicies ztunnel would enforce; each with what happens to it."""
    for vs in istio_objects(inv, "VirtualService"):
        gateways = vs.spec.get("gateways") or []
        if ns_of(vs) != namespace or gateways and "mesh" not in gateways or not vs.spec.get("http"):
            continue
        for svc in services_of_hosts(inv, vs.spec.get("hosts") or [], namespace):
            if waypoint_for(inv, namespace, svc) is None:
                yield vs, (f"its HTTP routes for {svc.name} (subsets, weights, timeouts, retries, faults) stop "
                           f"applying: no waypoint serves {svc.name}")
                break
    for dr in istio_objects(inv, "DestinationRule"):
        if ns_of(dr) != namespace:
            continue
        for svc in services_of_hosts(inv, [dr.spec.get("host", "")], namespace):
            if waypoint_for(inv, namespace, svc) is None and (dr.spec.get("subsets") or dr.spec.get("trafficPolicy")):
                yield dr, f"its subsets and traffic policy for {svc.name} stop applying: no waypoint serves it"
    for route in inv.of_kind("HTTPRoute"):
        for ref in route.spec.get("parentRefs") or () if route.namespace == namespace else ():
            svc = inv.service(namespace, ref.get("name", "")) if ref.get("kind") == "Service" else None
            if svc is not None and waypoint_for(inv, namespace, svc) is None:
                yield route, f"its rules for {svc.name} stop applying: no waypoint serves {svc.name}"
                break
    moved = copied(inv, namespace)  # a policy a waypoint copy stands for goes with the sidecars (ambient-mode)
    for ap in istio_objects(inv, "AuthorizationPolicy"):
        attrs = l7_attributes(ap.spec)
        if ns_of(ap) == namespace and attrs and ztunnel_enforced(ap) and ("AuthorizationPolicy", ap.name) not in moved:
            yield ap, (f"ztunnel would enforce it (bound by selector, not to a waypoint) and cannot evaluate its L7 "
                       f"rules ({', '.join(attrs[:3])}): it denies the traffic the policy selects instead")


@check("MST0706", reads=("VirtualService", "DestinationRule", "AuthorizationPolicy", "Gateway", "Namespace",
                         "Service"))
def l7_config_without_waypoint(ctx: Context) -> Iterator[tuple[Ref, str, str]]:
    inv = ctx.inventory
    if not ctx.scope or ctx.scope == "mesh":
        return
    for o, what in needs_waypoint(inv, ctx.scope):
        yield (o.ref, f"{o.ref} in ambient mode: {what}",
               CATALOG["MST0706"].hint_for(namespace=ctx.scope))


@check("MST0707", reads=("AuthorizationPolicy", "Namespace", "Pod", "Gateway"))
def l7_policy_on_ztunnel(ctx: Context) -> Iterator[tuple[Ref, str, str]]:
    inv = ctx.inventory
    for ap in istio_objects(inv, "AuthorizationPolicy"):
        ns = inv.namespaces.get(ns_of(ap))
        attrs = l7_attributes(ap.spec)
        if ns is None or ns.injection != "ambient" or not attrs or not ztunnel_enforced(ap) or for_sidecars(ap):
            continue
        selector = (ap.spec.get("selector") or {}).get("matchLabels") or {}
        pods = inv.pods_matching(ns.name, selector) if selector else list(inv.pods_by_namespace.get(ns.name, ()))
        if pods and all(proxy_container(p.spec) is not None for p in pods):
            continue  # every pod it selects still has its sidecar, which evaluates L7
        waypoint = waypoint_for(inv, ns.name)
        where = (f"bind it to the waypoint {waypoint.name} with targetRefs" if waypoint
                 else f"no waypoint serves {ns.name}")
        yield (ap.ref, f"{ap.ref} is enforced by ztunnel in ambient namespace {ns.name} but uses L7 attributes "
                       f"({', '.join(attrs[:3])}): ztunnel denies the traffic it selects ({where})",
               CATALOG["MST0707"].hint_for(namespace=ns.name, policy=ap.name))


# ---------------------------------------------------------------- the ambient profile

CNI_CONFIG = "istio-cni-config"  # the istio-cni chart's ConfigMap: AMBIENT_ENABLED is "true" under profile=ambient
AMBIENT_ENV = "PILOT_ENABLE_AMBIENT"  # istiod's switch for programming ztunnel, set by profile=ambient


def istiod_deployments(inv: Inventory) -> list[KubeObject]:
    """istiod's Deployments (one per revision)."""
    return [d for d in inv.of_kind("Deployment") if d.labels.get("app") == "istiod"]


def env_of(deployment: KubeObject, name: str) -> str | None:
    """The value a Deployment's containers set for an environment variable (its first container that sets it)."""
    for c in ((deployment.spec.get("template") or {}).get("spec") or {}).get("containers") or ():
        for e in c.get("env") or ():
            if e.get("name") == name and "value" in e:
                return str(e["value"])
    return None


def ambient_profile_missing(inv: Inventory) -> list[tuple[Ref, str]]:
    """Where the control plane shows the ambient profile was never applied, though ztunnel may run: istio-cni's
    config with AMBIENT_ENABLED "false" (it hands no pod to ztunnel), an istiod without PILOT_ENABLE_AMBIENT=true
    (it programs no ztunnel). Each with what follows."""
    out = []
    cni = inv.get("ConfigMap", inv.root_namespace, CNI_CONFIG)
    if cni is not None and str((cni.raw.get("data") or {}).get("AMBIENT_ENABLED", "")).lower() == "false":
        out.append((cni.ref, f"istio-cni runs with AMBIENT_ENABLED=\"false\" ({cni.ref}): it hands no pod to "
                             "ztunnel, so pods labelled ambient get no mTLS and no L4 policy"))
    for d in istiod_deployments(inv):
        if (env_of(d, AMBIENT_ENV) or "").lower() != "true":
            out.append((d.ref, f"istiod {d.ref} runs without {AMBIENT_ENV}=true: it does not program ztunnel"))
    return out


# ---------------------------------------------------------------- what ambient cannot carry (migrate policies)

# The parts of a VirtualService HTTP route an HTTPRoute of the Gateway API's standard channel says (features._ambient
# converts them); anything else — retries, faults, CORS, redirects, delegation, direct responses — it cannot.
_ROUTE_FIELDS = {"name", "match", "route", "timeout", "headers", "mirror", "mirrorPercentage", "rewrite"}
_MATCH_FIELDS = {"uri", "headers", "method", "queryParams", "name"}
_VS_FIELDS = {"hosts", "http", "gateways", "exportTo"}


def inexpressible(vs: KubeObject) -> list[str]:
    """What of a mesh VirtualService an HTTPRoute (standard channel) cannot say, each as `http[i].field`."""
    out = [f"{k} (a VirtualService's {k} routes)" for k in vs.spec if k not in _VS_FIELDS]
    for i, route in enumerate(vs.spec.get("http") or ()):
        out += [f"http[{i}].{k}" for k in route if k not in _ROUTE_FIELDS]
        for j, m in enumerate(route.get("match") or ()):
            out += [f"http[{i}].match[{j}].{k}" for k in m if k not in _MATCH_FIELDS]
            out += [f"http[{i}].match[{j}].uri" for _ in [0] if "uri" in m and len(m["uri"]) != 1]
        if "uri" in (route.get("rewrite") or {}) and any(
                "prefix" not in (m.get("uri") or {}) for m in route.get("match") or [{}]):
            out.append(f"http[{i}].rewrite.uri (only a prefix match's rewrite is an HTTPRoute URLRewrite)")
    return out


def mesh_http_routes(inv: Inventory, vs: KubeObject) -> list[Service]:
    """The Services of its own namespace whose mesh traffic a VirtualService routes at L7 (none for a VirtualService
    bound only to ingress gateways, or with no HTTP routes)."""
    gateways = vs.spec.get("gateways") or []
    if gateways and "mesh" not in gateways or not vs.spec.get("http"):
        return []
    return services_of_hosts(inv, vs.spec.get("hosts") or [], ns_of(vs))


def needs_waypoint_binding(ap: KubeObject) -> list[str]:
    """Why a policy bound to workloads must move to a waypoint (targetRefs): its L7 attributes, a CUSTOM or AUDIT
    action (AuthorizationPolicy), or its kind (RequestAuthentication, WasmPlugin: only waypoints enforce them)."""
    if not ztunnel_enforced(ap):
        return []
    if ap.kind in ("RequestAuthentication", "WasmPlugin"):
        return [f"a {ap.kind} is enforced only by a waypoint"]
    action = ap.spec.get("action", "ALLOW")
    return l7_attributes(ap.spec) + ([f"action {action}"] if action in ("CUSTOM", "AUDIT") else [])


def _blocker_scope(ctx: Context) -> str | None:
    return ctx.scope if ctx.scope and ctx.scope != "mesh" else None


@check("MST0720", reads=("EnvoyFilter",))
def envoyfilter_ignored(ctx: Context) -> Iterator[tuple[Ref, str, str]]:
    ns = _blocker_scope(ctx)
    for ef in istio_objects(ctx.inventory, "EnvoyFilter"):
        if ns is not None and ns_of(ef) in (ns, ctx.inventory.root_namespace):
            where = "every namespace" if ns_of(ef) == ctx.inventory.root_namespace else ns
            yield (ef.ref, f"{ef.ref} patches the sidecars of {where}: waypoints and ztunnel ignore EnvoyFilters, so "
                           f"what it does stops once {ns} leaves sidecars", CATALOG["MST0720"].hint_for(
                               namespace=ns, filter=ef.name))


@check("MST0721", reads=("Sidecar",))
def sidecar_resource_lapses(ctx: Context) -> Iterator[tuple[Ref, str, str]]:
    ns = _blocker_scope(ctx)
    for sc in istio_objects(ctx.inventory, "Sidecar"):
        limits = [k for k in ("egress", "outboundTrafficPolicy", "ingress") if sc.spec.get(k)]
        if ns is not None and ns_of(sc) == ns and limits:
            yield (sc.ref, f"{sc.ref} sets {', '.join(limits)} for {ns}'s sidecars: ambient has no Sidecar resource, "
                           "so the limit lapses once its sidecars go", CATALOG["MST0721"].hint_for(namespace=ns))


@check("MST0722", reads=("VirtualService",))
def route_not_expressible(ctx: Context) -> Iterator[tuple[Ref, str, str]]:
    ns = _blocker_scope(ctx)
    for vs in istio_objects(ctx.inventory, "VirtualService"):
        lost = inexpressible(vs)
        if ns is not None and ns_of(vs) == ns and lost and mesh_http_routes(ctx.inventory, vs):
            yield (vs.ref, f"{vs.ref} uses what an HTTPRoute (Gateway API standard channel) cannot say: "
                           f"{', '.join(lost[:3])}", CATALOG["MST0722"].hint_for(namespace=ns))


@check("MST0723", reads=("Namespace", "Pod"))
def sidecars_still_running(ctx: Context) -> Iterator[tuple[Ref, str, str]]:
    ns = ctx.inventory.namespaces.get(_blocker_scope(ctx) or "")
    if ns is None or ns.injection != "ambient":
        return
    for pod in ctx.inventory.pods_by_namespace.get(ns.name, ()):
        if pod.sidecar is not None:
            yield (Ref("Pod", ns.name, pod.name), fill("Pod {ns}/{pod} still has its sidecar in ambient namespace "
                                                        "{ns}: it has not restarted since the switch", ns=ns.name,
                                                        pod=pod.name),
                   CATALOG["MST0723"].hint_for(namespace=ns.name))
