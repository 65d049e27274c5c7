"""Migrate a namespace's policies before it leaves sidecars (istio.io's migration guide, migrate policies): its
waypoint deployed (not yet activated), its VirtualServices as HTTPRoutes, its selector-bound L7 policies,
RequestAuthentications and WasmPlugins copied onto what the waypoint serves (targetRefs)."""
from __future__ import annotations

from typing import Any

from analysis.ambient import (
    ALLOWS_WAYPOINT,
    MIGRATED_FROM,
    POLICY_KINDS,
    client_identity,
    copied,
    mesh_http_routes,
    needs_waypoint_binding,
    stood_for,
    ztunnel_enforced,
)
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from cluster.model import KubeObject, Ref
from cluster.queries import istio_objects
from features._ambient import WAYPOINT, http_routes, sidecars_only, waypoint_allowed, waypoint_copy, waypoint_gateway
from features._gateway_api import installed
from features.base import Feature, Observation, Param


def routed(inv: Inventory, scope: str) -> list[KubeObject]:
    """The namespace's VirtualServices that route its Services' mesh traffic at L7: to be HTTPRoutes."""
    return [vs for vs in istio_objects(inv, "VirtualService") if vs.namespace == scope and mesh_http_routes(inv, vs)]


def _selected(inv: Inventory, policy: KubeObject) -> set[str]:
    """The names of the pods a workload-bound policy of the namespace selects (all of them without a selector)."""
    labels = (policy.spec.get("selector") or {}).get("matchLabels") or {}
    ns = policy.namespace or ""
    return {p.name for p in (inv.pods_matching(ns, labels) if labels else inv.pods_by_namespace.get(ns, ()))}


def _hidden_by_waypoint(o: KubeObject) -> list[str]:
    """The client identity checks of a workload-bound AuthorizationPolicy, which behind a waypoint would judge the
    waypoint's identity (not one the migration added to allow the waypoint)."""
    if o.kind != "AuthorizationPolicy" or not ztunnel_enforced(o) or ALLOWS_WAYPOINT in o.annotations:
        return []
    return client_identity(o.spec)


def to_bind(inv: Inventory, scope: str) -> list[KubeObject]:
    """The namespace's policies bound to workloads that only a waypoint can enforce, or that check the client's
    identity (behind the waypoint ztunnel sees the waypoint's), not copied yet; and the L4 ALLOW policies of the
    same workloads: a proxy evaluates the ALLOW policies it is given as one union, so left at ztunnel while the
    others move, they would deny what the waypoint allows."""
    done = copied(inv, scope)
    first = [o for kind in POLICY_KINDS for o in inv.of_kind(kind) if o.namespace == scope
             and (needs_waypoint_binding(o) or _hidden_by_waypoint(o))]
    moving = set().union(*(_selected(inv, o) for o in first if o.kind == "AuthorizationPolicy"
                           and o.spec.get("action", "ALLOW") == "ALLOW"))
    allows = [o for o in istio_objects(inv, "AuthorizationPolicy") if o.namespace == scope and o not in first
              and o.spec.get("action", "ALLOW") == "ALLOW" and ztunnel_enforced(o)
              and ALLOWS_WAYPOINT not in o.annotations and _selected(inv, o) & moving]
    return [o for o in first + allows if (o.kind, o.name) not in done]


class AmbientPolicies(Feature):
    id = "ambient-policies"
    title = "Migrate policies to a waypoint (sidecar to ambient)"
    category = "traffic"
    scopes = ("namespace",)
    params = (Param("waypoint", str, WAYPOINT, "the waypoint's name (a Gateway of class istio-waypoint)",
                    pattern=r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"),)
    problem = ("Which of a sidecar namespace's routes and policies need a waypoint in ambient mode, and in what form "
               "does the waypoint read them?")
    pitfalls = (
        "VirtualService support at waypoints is Alpha and mixing a VirtualService and an HTTPRoute for one "
        "workload is undefined: each converted VirtualService is deleted in the same stage (sidecars read the "
        "HTTPRoute, attached to its Service, until the waypoint does).",
        "The Gateway API has no subsets: each subset a route names becomes a Service of its own.",
        "Retries, fault injection, CORS and redirects have no standard-channel HTTPRoute field: such a "
        "VirtualService is refused (MST0722), never converted with them dropped.",
        "EnvoyFilters and Sidecar resources do not carry over to ambient (MST0720, MST0721): handle them first.",
        "Behind a waypoint the destination's ztunnel sees the waypoint's identity, not the client's: L4 policies "
        "that check principals or namespaces are copied onto the waypoint too, and an ALLOW of the waypoint's "
        "service account takes their place at ztunnel. A mesh-wide policy of the root namespace cannot move to one "
        "namespace's waypoint: where it would stop deciding, the switch is refused (MST0816).",
        "The selector-bound originals stay for the sidecars, narrowed to pods with a sidecar "
        "(security.istio.io/tlsMode=istio): each pod leaves them as it restarts without its sidecar, and the "
        "clean-up (ambient-cleanup) deletes them once none is left.",
    )
    docs = "https://istio.io/latest/docs/ambient/migrate/migrate-policies/"
    keeps_decisions = True

    def build(self, p, scope, inv):
        if installed(inv) is False:
            raise MeshstepError("ambient-policies: the waypoint and HTTPRoutes are Gateway API objects, and the "
                                "cluster does not serve the Gateway API CRDs: install them first (gateway-api-crds)")
        routes, policies = routed(inv, scope), to_bind(inv, scope)
        if not routes and not policies:
            raise MeshstepError(f"ambient-policies: nothing in {scope} needs a waypoint (no VirtualService routing "
                                "its mesh traffic at L7, no L7, CUSTOM or AUDIT AuthorizationPolicy, "
                                "RequestAuthentication or WasmPlugin bound to its workloads, no AuthorizationPolicy "
                                "checking its callers' identity)")
        objects: list[dict[str, Any]] = [waypoint_gateway(inv, scope, p["waypoint"])]
        routed_by: dict[str, str] = {}
        for vs in routes:
            for svc in mesh_http_routes(inv, vs):
                if routed_by.setdefault(svc.name, vs.name) != vs.name:
                    raise MeshstepError(f"ambient-policies: VirtualServices {routed_by[svc.name]} and {vs.name} both "
                                        f"route {scope}/{svc.name}: which one sidecars apply is undefined, so no "
                                        "HTTPRoute can say it; merge them into one first")
            objects += http_routes(inv, vs)
        # the version Services are addressable too: a copy is bound to every Service that reaches the pods
        ahead = inv.with_changes(apply=[o for o in objects if o["kind"] == "Service"])
        # the originals stay for the sidecars, narrowed to them; where an ALLOW let only some clients reach the
        # pods, ztunnel lets the waypoint (which checks them now) and no one else
        allows = [o for o in policies if o.kind == "AuthorizationPolicy" and o.spec.get("action", "ALLOW") == "ALLOW"
                  and _hidden_by_waypoint(o)]
        return objects + [waypoint_copy(ahead, o, p["waypoint"]) for o in policies] + [
            sidecars_only(o) for o in policies] + [waypoint_allowed(inv, o, p["waypoint"]) for o in allows]

    def removes(self, p, scope, inv) -> list[Ref]:
        return [vs.ref for vs in routed(inv, scope)]

    def restores(self, p, scope, inv) -> list[dict[str, Any]]:
        return [original for route in inv.of_kind("HTTPRoute") if route.namespace == scope
                and (original := stood_for(route)) is not None and original.get("kind") == "VirtualService"]

    def notes(self, p, scope, inv, rollback):
        if rollback:
            return [f"# {scope}'s VirtualServices come back and its HTTPRoutes, version Services and waypoint "
                    "copies go: the sidecars route and enforce as before"]
        return [f"# the waypoint {scope}/{p['waypoint']} is deployed, not yet activated (no istio.io/use-waypoint "
                "label): sidecars keep routing (they read the HTTPRoutes) and enforcing the selector-bound policies",
                f"# kubectl get gateway {p['waypoint']} -n {scope}   (PROGRAMMED True)"]

    def detect(self, inv: Inventory) -> list[Observation]:
        """On where a namespace's migrated objects stand (MIGRATED_FROM) and nothing is left to migrate."""
        out = []
        for ns in sorted({o.namespace for kind in ("HTTPRoute", *POLICY_KINDS) for o in inv.of_kind(kind)
                          if o.namespace and MIGRATED_FROM in o.annotations}):
            if not routed(inv, ns) and not to_bind(inv, ns):
                evidence = [str(o.ref) for kind in ("HTTPRoute", *POLICY_KINDS) for o in inv.of_kind(kind)
                            if o.namespace == ns and MIGRATED_FROM in o.annotations]
                out.append(Observation(self.id, ns, evidence))
        return out


FEATURE = AmbientPolicies()
