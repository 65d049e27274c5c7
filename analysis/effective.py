"""What Istio does in a scope, and why: the one resolver every verdict asks (feature detection and dependencies,
gates, `status`, `explain`, the app).

Istio decides by behaviour, not by the presence of objects: with no PeerAuthentication a workload is PERMISSIVE,
with no AuthorizationPolicy every request is allowed, with no outboundTrafficPolicy unregistered hosts pass. Each
answer is an `Effective`: the value in force and where it comes from — an object ("STRICT from PeerAuthentication
istio-system/default") or Istio's default, with the istio.io page that states it ("PERMISSIVE by default: no
PeerAuthentication"). Where the source could not show the kinds that decide it (a 403, or a snapshot that does not
hold them) the value is unknown — a third value, with the reason and the command that checks — never taken as
"none", which would read as Istio's default."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analysis.ambient import waypoint_for
from analysis.base import GATEWAY_API_KINDS, unseen_kind
from cluster import versions
from cluster.inventory import Inventory
from cluster.model import GATEWAY_API_GROUP, KubeObject, Ref
from cluster.queries import istio_objects, ns_of, selector_matches

MESH = "mesh"
ON, OFF, UNKNOWN = "on", "off", "unknown"


# ---------------------------------------------------------------- Istio's defaults, as istio.io states them


@dataclass(frozen=True)
class Default:
    """What Istio does where no config says otherwise, from `since` (the first minor release it holds for)."""

    behaviour: str
    value: str
    says: str
    page: str
    since: tuple[int, int] = (1, 5)  # PeerAuthentication and auto mTLS (on by default) came in 1.5
    until: tuple[int, int] | None = None  # the first minor release it no longer holds for

    def to_json(self) -> dict[str, Any]:
        return {"behaviour": self.behaviour, "value": self.value, "says": self.says, "page": self.page,
                "since": _text(self.since), "until": _text(self.until) if self.until else None}


DEFAULTS: tuple[Default, ...] = (
    Default("mtls", "PERMISSIVE",
            "with no PeerAuthentication, workloads accept both mutual TLS and plaintext",
            "https://istio.io/latest/docs/tasks/security/authentication/mtls-migration/"),
    Default("auto-mtls", ON,
            "sidecars send mutual TLS to workloads that have a proxy and plaintext to those without "
            "(meshConfig.enableAutoMtls)",
            "https://istio.io/latest/docs/concepts/security/#auto-mutual-tls"),
    Default("outbound-traffic-policy", "ALLOW_ANY",
            "calls to hosts no ServiceEntry registers pass through (PassthroughCluster)",
            "https://istio.io/latest/docs/tasks/traffic-management/egress/egress-control/"),
    Default("authorization", "ALLOW",
            "with no AuthorizationPolicy selecting a workload, every request to it is allowed",
            "https://istio.io/latest/docs/concepts/security/#authorization-policies"),
    Default("tracing", "1%",
            "the proxies sample 1% of requests (meshConfig.defaultConfig.tracing.sampling), sent to the mesh's "
            "tracing provider if it has one",
            "https://istio.io/latest/docs/tasks/observability/distributed-tracing/sampling/"),
    Default("access-logging", OFF,
            "the default profile writes no access logs (meshConfig.accessLogFile empty; the demo profile sets "
            "/dev/stdout)",
            "https://istio.io/latest/docs/tasks/observability/logs/access-log/"),
    Default("ambient-l7", OFF,
            "an ambient namespace's traffic is carried by ztunnel at L4 (mTLS, L4 policy) until a waypoint serves "
            "it: routes and L7 policies apply only at a waypoint",
            "https://istio.io/latest/docs/ambient/usage/waypoint/", since=(1, 22)),
)


def _text(minor: tuple[int, int]) -> str:
    return ".".join(map(str, minor))


def defaults(version: str | None = None) -> list[Default]:
    """Istio's defaults for an installed version (every one meshstep knows when the version is unknown)."""
    minor = versions.minor(version)
    return [d for d in DEFAULTS if minor is None or d.since <= minor and (d.until is None or minor < d.until)]


def default(behaviour: str, version: str | None = None) -> Default:
    return next(d for d in defaults(version) + list(DEFAULTS) if d.behaviour == behaviour)


# ---------------------------------------------------------------- what the source could not show


# The CRD of each custom kind meshstep reasons on (plural.group): what `kubectl get crd` names.
_GROUPS = {"PeerAuthentication": "security.istio.io", "AuthorizationPolicy": "security.istio.io",
           "RequestAuthentication": "security.istio.io", "Telemetry": "telemetry.istio.io",
           "VirtualService": "networking.istio.io", "DestinationRule": "networking.istio.io",
           "ServiceEntry": "networking.istio.io", "Sidecar": "networking.istio.io",
           "EnvoyFilter": "networking.istio.io", "WorkloadEntry": "networking.istio.io",
           **{k: GATEWAY_API_GROUP for k in GATEWAY_API_KINDS}}


def crd_name(kind: str, group: str | None = None) -> str:
    """`httproutes.gateway.networking.k8s.io`: the CRD that serves a kind."""
    low = kind.lower()
    plural = low[:-1] + "ies" if low.endswith("y") else low + "es" if low.endswith("s") else low + "s"
    return f"{plural}.{group or _GROUPS.get(kind, 'networking.istio.io')}"


@dataclass(frozen=True)
class Unknown:
    """Why the source cannot tell what a kind holds, and how to find out."""

    kind: str
    reason: str
    check: str

    def __str__(self) -> str:
        return f"{self.kind} {self.reason}"


def unknown_kind(inv: Inventory, kind: str, group: str | None = None) -> Unknown | None:
    """Why the source does not show `kind`'s objects — its list refused or failed (as the API server said it), or
    absent from a snapshot that holds neither its CRD nor any of its objects (a set of manifests says nothing of
    what else the cluster has) — else None: what the inventory holds of it is all there is (a whole cluster without
    the CRD does not serve it)."""
    grp = group or _GROUPS.get(kind)
    said = inv.visibility.unreadable().get(kind)
    if said is not None:
        return Unknown(kind, f"not readable ({said.reason})", f"kubectl auth can-i list {said.resource} -A"
                       if said.forbidden else f"kubectl get {said.resource} -A")
    unseen = unseen_kind(inv)(kind)
    if unseen is None and not inv.cluster and grp and not inv.of_kind(kind) and \
            not any(c.kind == kind and c.group == grp for c in inv.crds.values()):
        return Unknown(kind, "not in the snapshot (it holds neither the CRD nor any object of the kind)",
                       f"kubectl get crd {crd_name(kind, grp)}")
    return None


def served(inv: Inventory, group: str, kind: str) -> bool | None:
    """Whether the cluster serves a custom kind: True, False, or None when the source cannot tell."""
    if any(c.group == group and c.kind == kind for c in inv.crds.values()) or inv.of_kind(kind):
        return True
    return None if unknown_kind(inv, kind, group) is not None else False


# ---------------------------------------------------------------- the answers


@dataclass(frozen=True)
class Effective:
    """One behaviour in one scope: its value (None: unknown) and why."""

    behaviour: str
    scope: str
    value: str | None
    why: str
    by: Ref | None = None  # the object that sets it; None for Istio's default, or unknown
    page: str = ""  # the istio.io page of the default, where the value is the default

    @property
    def known(self) -> bool:
        return self.value is not None

    @property
    def explicit(self) -> bool:
        return self.by is not None

    def to_json(self) -> dict[str, Any]:
        return {"behaviour": self.behaviour, "scope": self.scope, "value": self.value if self.known else UNKNOWN,
                "why": self.why, "by": str(self.by) if self.by else None, "page": self.page or None}


def _unknown(behaviour: str, scope: str, u: Unknown) -> Effective:
    return Effective(behaviour, scope, None, f"unknown: {u}; check with `{u.check}`")


def _by_default(behaviour: str, scope: str, inv: Inventory, because: str) -> Effective:
    d = default(behaviour, inv.istio_version)
    return Effective(behaviour, scope, d.value, f"{d.value} by default: {because}", page=d.page)


def _mesh_config_ref(inv: Inventory) -> Ref:
    cm = inv.mesh_config_map
    return cm.ref if cm else Ref("ConfigMap", inv.root_namespace, "istio")


def _mode(pa: KubeObject) -> str | None:
    mode = (pa.spec.get("mtls") or {}).get("mode")
    return mode if mode and mode != "UNSET" else None  # UNSET inherits from the parent scope


def mtls_mode(inv: Inventory, scope: str, labels: dict[str, str] | None = None) -> Effective:
    """The mTLS mode workloads of `scope` (mesh, or a namespace; with `labels`, one workload's) accept, as Istio
    resolves it: the workload's PeerAuthentication, else its namespace's, else the root namespace's, else
    PERMISSIVE."""
    u = unknown_kind(inv, "PeerAuthentication")
    if u is not None:
        return _unknown("mtls", scope, u)
    policies = istio_objects(inv, "PeerAuthentication")
    root = inv.root_namespace
    where = [root] if scope == MESH else [scope, root]
    if labels is not None and scope != MESH:
        for pa in policies:  # a workload's own policy wins over the namespace's
            if ns_of(pa) == scope and pa.spec.get("selector") and _mode(pa) and \
                    selector_matches(pa.spec["selector"], labels):
                return Effective("mtls", scope, _mode(pa), f"{_mode(pa)} from {pa.ref}", pa.ref)
    for ns in where:
        for pa in policies:
            if ns_of(pa) == ns and not pa.spec.get("selector") and _mode(pa):
                return Effective("mtls", scope, _mode(pa), f"{_mode(pa)} from {pa.ref}", pa.ref)
    because = "no PeerAuthentication" if not policies else f"no PeerAuthentication in {' or '.join(where)}"
    return _by_default("mtls", scope, inv, because)


def auto_mtls(inv: Inventory) -> Effective:
    """Whether sidecars send mutual TLS on their own to workloads with a proxy (meshConfig.enableAutoMtls)."""
    if inv.mesh_config.get("enableAutoMtls") is False:
        return Effective("auto-mtls", MESH, OFF, "off from the mesh config (enableAutoMtls: false): sidecars send "
                         "plaintext unless a DestinationRule sets tls.mode ISTIO_MUTUAL", _mesh_config_ref(inv))
    return _by_default("auto-mtls", MESH, inv, "the mesh config does not turn it off")


def mtls_sent(inv: Inventory, scope: str) -> Effective:
    """Whether workloads of `scope` accept the mutual TLS the sidecars send them: PERMISSIVE or STRICT, with
    auto mTLS on. What STRICT needs before it, whatever made it so (Istio's default or a PeerAuthentication)."""
    mode = mtls_mode(inv, scope)
    if not mode.known:
        return mode
    auto = auto_mtls(inv)
    if mode.value == "DISABLE":
        return Effective("mtls", scope, OFF, f"off: {mode.why} (plaintext only)", mode.by)
    if auto.value == OFF:
        return Effective("mtls", scope, OFF, f"off: {auto.why}", auto.by)
    return Effective("mtls", scope, ON, f"on: {mode.why}, and auto mTLS sends it", mode.by, mode.page)


def mtls_strict(inv: Inventory, scope: str) -> Effective:
    """Whether only mutual TLS is accepted in `scope`."""
    mode = mtls_mode(inv, scope)
    if not mode.known:
        return mode
    return Effective("mtls", scope, ON if mode.value == "STRICT" else OFF,
                     f"{'on' if mode.value == 'STRICT' else 'off'}: {mode.why}", mode.by, mode.page)


def outbound_traffic_policy(inv: Inventory, scope: str) -> Effective:
    """ALLOW_ANY or REGISTRY_ONLY for calls from `scope`: its namespace's Sidecar, else the mesh config."""
    if scope != MESH:
        u = unknown_kind(inv, "Sidecar")
        if u is not None:
            return _unknown("outbound-traffic-policy", scope, u)
        for sc in istio_objects(inv, "Sidecar"):
            mode = (sc.spec.get("outboundTrafficPolicy") or {}).get("mode")
            if ns_of(sc) == scope and not sc.spec.get("workloadSelector") and mode:
                return Effective("outbound-traffic-policy", scope, mode, f"{mode} from {sc.ref}", sc.ref)
    mode = (inv.mesh_config.get("outboundTrafficPolicy") or {}).get("mode")
    if mode:
        by = _mesh_config_ref(inv)
        return Effective("outbound-traffic-policy", scope, mode, f"{mode} from the mesh config ({by})", by)
    return _by_default("outbound-traffic-policy", scope, inv, "the mesh config sets no outboundTrafficPolicy")


def authorization(inv: Inventory, scope: str) -> Effective:
    """Whether requests to `scope`'s workloads are checked by AuthorizationPolicies, or all allowed."""
    u = unknown_kind(inv, "AuthorizationPolicy")
    if u is not None:
        return _unknown("authorization", scope, u)
    root = inv.root_namespace
    policies = [ap for ap in inv.of_kind("AuthorizationPolicy")
                if ns_of(ap) == root or scope != MESH and ns_of(ap) == scope]
    if not policies:
        where = root if scope == MESH else f"{scope} or {root}"
        return _by_default("authorization", scope, inv, f"no AuthorizationPolicy in {where}")
    named = ", ".join(str(ap.ref) for ap in policies[:3]) + (" …" if len(policies) > 3 else "")
    return Effective("authorization", scope, "POLICIES", f"checked against {named}", policies[0].ref)


def telemetry_section(inv: Inventory, scope: str, section: str) -> tuple[KubeObject, Any] | None:
    """The selector-less Telemetry whose `section` governs `scope` (its namespace's, else the root's)."""
    root = inv.root_namespace
    for ns in ([root] if scope == MESH else [scope, root]):
        for t in istio_objects(inv, "Telemetry"):
            if ns_of(t) == ns and not t.spec.get("selector") and not t.spec.get("targetRefs") and \
                    t.spec.get(section):
                return t, t.spec[section]
    return None


def traced(inv: Inventory, scope: str) -> tuple[float, str, Ref] | None:
    """(percent of requests traced, why, the object that sets it) in `scope` as Istio resolves it: the Telemetry's
    randomSamplingPercentage (0 when it disables span reporting), else the mesh config's
    defaultConfig.tracing.sampling; None where neither sets it (Istio's default)."""
    found = telemetry_section(inv, scope, "tracing")
    if found is not None:
        t, entries = found
        live = [e for e in entries if not e.get("disableSpanReporting")]
        if not live:
            return 0.0, f"0%: {t.ref} disables span reporting", t.ref
        pct = next((float(e["randomSamplingPercentage"]) for e in live if "randomSamplingPercentage" in e), None)
        if pct is not None:
            return pct, f"{pct:g}% from {t.ref}", t.ref
    sampling = ((inv.mesh_config.get("defaultConfig") or {}).get("tracing") or {}).get("sampling")
    if sampling is not None:
        return float(sampling), f"{float(sampling):g}% from the mesh config (defaultConfig.tracing.sampling)", \
            _mesh_config_ref(inv)
    return None


def tracing(inv: Inventory, scope: str) -> Effective:
    """The share of requests traced in `scope` (`traced`), else Istio's default."""
    u = unknown_kind(inv, "Telemetry")
    if u is not None:
        return _unknown("tracing", scope, u)
    found = traced(inv, scope)
    if found is None:
        return _by_default("tracing", scope, inv, "no Telemetry or mesh config sets a sampling rate")
    pct, why, by = found
    return Effective("tracing", scope, f"{pct:g}%", why, by)


def access_logging(inv: Inventory, scope: str) -> Effective:
    """Whether the proxies of `scope` write access logs: a Telemetry's accessLogging, else meshConfig.accessLogFile."""
    u = unknown_kind(inv, "Telemetry")
    if u is not None:
        return _unknown("access-logging", scope, u)
    found = telemetry_section(inv, scope, "accessLogging")
    if found is not None:
        t, entries = found
        value = OFF if all(e.get("disabled") for e in entries) else ON
        return Effective("access-logging", scope, value, f"{value} from {t.ref}", t.ref)
    if inv.mesh_config.get("accessLogFile"):
        by = _mesh_config_ref(inv)
        return Effective("access-logging", scope, ON, f"on from the mesh config (accessLogFile: "
                         f"{inv.mesh_config['accessLogFile']})", by)
    return _by_default("access-logging", scope, inv, "no Telemetry or mesh accessLogFile turns it on")


def ambient_l7(inv: Inventory, namespace: str) -> Effective | None:
    """For an ambient namespace, whether L7 (routes, L7 policy) is processed: only at a waypoint. None for a
    namespace that is not ambient."""
    ns = inv.namespaces.get(namespace)
    if ns is None or ns.injection != "ambient":
        return None
    u = unknown_kind(inv, "Gateway", GATEWAY_API_GROUP)
    if u is not None:
        return _unknown("ambient-l7", namespace, u)
    wp = waypoint_for(inv, namespace)
    if wp is not None:
        return Effective("ambient-l7", namespace, ON, f"on at waypoint {wp.ref}", wp.ref)
    return _by_default("ambient-l7", namespace, inv, "ztunnel only (L4): no waypoint serves the namespace")


def effective(inv: Inventory, scope: str) -> list[Effective]:
    """Every behaviour of the table in one scope, as Istio resolves it there."""
    rows = [mtls_mode(inv, scope), auto_mtls(inv), outbound_traffic_policy(inv, scope), authorization(inv, scope),
            tracing(inv, scope), access_logging(inv, scope)]
    l7 = ambient_l7(inv, scope) if scope != MESH else None
    return rows + ([l7] if l7 else [])


def resolved(inv: Inventory, namespaces: list[str]) -> list[Effective]:
    """The mesh's behaviours, then those of each of `namespaces` that differ from the mesh's (in value or in
    what sets it): what `status` and the app show."""
    mesh = effective(inv, MESH)
    by = {e.behaviour: e for e in mesh}
    return mesh + [e for n in namespaces for e in effective(inv, n)
                   if e.behaviour not in by or (e.value, e.by) != (by[e.behaviour].value, by[e.behaviour].by)]
