"""Clean up a namespace's sidecar-only config once it is in ambient mode (istio.io's migration guide, enable ambient
mode, step 5 "remove old sidecar policies"): the selector-bound policies the waypoint copies replaced, the
DestinationRule subsets only the converted VirtualServices named (the HTTPRoutes send to version Services), and the
Sidecar resources no proxy reads any more. What is deleted is kept in a backup ConfigMap (the guide's rollback
applies its backup), from which the rollback re-creates each object as it was."""
from __future__ import annotations

import copy
import json
from typing import Any

from analysis.ambient import copied, services_of_hosts, stood_for
from cluster.changes import clean
from cluster.inventory import Inventory
from cluster.model import KubeObject, Ref
from cluster.queries import istio_objects, ns_of
from features.base import Feature, Observation

BACKUP = "meshstep-sidecar-config-backup"


def _subsets_named(vs: dict[str, Any] | KubeObject) -> set[tuple[str, str, str]]:
    """(namespace, Service name, subset) of each destination a VirtualService's routes (and mirrors) name with a
    subset, its hosts read as Kubernetes resolves short names: in the VirtualService's own namespace."""
    spec = vs.spec if isinstance(vs, KubeObject) else vs.get("spec") or {}
    namespace = (vs.namespace if isinstance(vs, KubeObject) else vs["metadata"].get("namespace")) or ""
    out = set()
    for proto in ("http", "tcp", "tls"):
        for route in spec.get(proto) or ():
            mirror = [route["mirror"]] if route.get("mirror") else []
            for dest in [*((d.get("destination") or {}) for d in route.get("route") or ()), *mirror]:
                name, _, rest = dest.get("host", "").partition(".")
                if dest.get("subset"):
                    out.add((rest.split(".")[0] or namespace, name, dest["subset"]))
    return out


def replaced_subsets(inv: Inventory, scope: str) -> dict[str, list[str]]:
    """DestinationRule name → its subsets no VirtualService left in the mesh (an ingress gateway's included) names,
    for each DestinationRule some of whose subsets a VirtualService now converted to an HTTPRoute named: a subset
    serves VirtualServices only, and the HTTPRoute sends to version Services instead."""
    converted = set().union(*(_subsets_named(original) for route in inv.of_kind("HTTPRoute")
                              if route.namespace == scope and (original := stood_for(route)) is not None
                              and original.get("kind") == "VirtualService"))
    used = set().union(*(_subsets_named(vs) for vs in istio_objects(inv, "VirtualService")))
    out = {}
    for dr in istio_objects(inv, "DestinationRule"):
        host = services_of_hosts(inv, [dr.spec.get("host", "")], scope) if ns_of(dr) == scope else []
        names = [(scope, host[0].name, s.get("name")) for s in dr.spec.get("subsets") or ()] if host else []
        gone = [key[2] for key in names if key not in used] if set(names) & converted else []
        if gone:
            out[dr.name] = gone
    return out


def leftovers(inv: Inventory, scope: str) -> tuple[list[KubeObject], list[dict[str, Any]]]:
    """What only sidecars read in an ambient namespace once its pods have restarted without them: (objects to
    delete, DestinationRules with their replaced subsets dropped). Nothing before the namespace switches."""
    if scope not in inv.namespaces or inv.namespaces[scope].injection != "ambient":
        return [], []
    gone = [o for (kind, name) in copied(inv, scope) if (o := inv.get(kind, scope, name)) is not None]
    gone += [o for o in istio_objects(inv, "Sidecar") if ns_of(o) == scope]
    kept = []
    for name, subsets in replaced_subsets(inv, scope).items():
        dr = inv.get("DestinationRule", scope, name)
        rest = [s for s in dr.spec.get("subsets") or () if s.get("name") not in subsets]
        if rest or set(dr.spec) - {"host", "subsets"}:
            new = copy.deepcopy(clean(dr.raw))
            new["spec"] = {k: v for k, v in new["spec"].items() if k != "subsets"} | ({"subsets": rest} if rest else {})
            kept.append(new)
        else:
            gone.append(dr)  # nothing but the replaced subsets: the guide deletes it
    return gone, kept


def _key(o: KubeObject) -> str:
    return f"{o.kind}.{o.name}"


class AmbientCleanup(Feature):
    id = "ambient-cleanup"
    title = "Clean up sidecar-only config (sidecar to ambient)"
    category = "install"
    scopes = ("namespace",)
    depends_on = ("ambient-mode",)
    # a step of the migration, done once: not a feature that stays on
    operation = True
    problem = ("Once a namespace's pods run without sidecars, which of its config did only the sidecars read, and "
               "can it go without any request being decided or routed otherwise?")
    pitfalls = (
        "The selector-bound policies the waypoint copies replaced apply to pods with a sidecar only "
        "(ambient-policies narrowed them): they go once no pod of the namespace has one, never before.",
        "Only the DestinationRule subsets the converted VirtualServices named go; a traffic policy stays "
        "(waypoints apply it), and so does a subset an ingress gateway's VirtualService still names.",
        "EnvoyFilters never reach the clean-up: waypoints and ztunnel ignore them, so they block the switch "
        "(MST0720) until handled by hand.",
        "Deployments that set sidecar.istio.io/inject in their pod template keep it: changing a template restarts "
        "the pods, which is the switch's business, not the clean-up's.",
    )
    docs = "https://istio.io/latest/docs/ambient/migrate/enable-ambient-mode/"
    keeps_decisions = True
    owns = ("subsets/*",)

    def build(self, p, scope, inv):
        # before the switch, nothing (its gate says the switch is not done, MST0003); pods not restarted since, MST0723
        gone, kept = leftovers(inv, scope)
        if not gone:
            return kept
        backup = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": BACKUP, "namespace": scope,
                               "labels": {"app.kubernetes.io/managed-by": "meshstep"}},
                  "data": {_key(o): json.dumps(clean(o.raw), sort_keys=True) for o in gone}}
        return [backup, *kept]

    def removes(self, p, scope, inv) -> list[Ref]:
        return [o.ref for o in leftovers(inv, scope)[0]]

    def restores(self, p, scope, inv) -> list[dict[str, Any]]:
        backup = inv.get("ConfigMap", scope, BACKUP)
        return [json.loads(v) for v in (backup.raw.get("data") or {}).values()] if backup is not None else []

    def notes(self, p, scope, inv, rollback):
        if rollback:
            return [f"# {scope}'s sidecar-only config comes back from the backup ConfigMap {BACKUP}, as it was"]
        gone = leftovers(inv, scope)[0]
        return ([f"# deleted, kept in ConfigMap {scope}/{BACKUP}: {', '.join(str(o.ref) for o in gone)}"] if gone
                else []) + [f"# kubectl get authorizationpolicy,destinationrule,sidecar -n {scope}"]

    def detect(self, inv: Inventory) -> list[Observation]:
        """Done where a namespace runs in ambient mode with no pod left with a sidecar and nothing only sidecars
        read."""
        out = []
        for name, ns in sorted(inv.namespaces.items()):
            if ns.injection == "ambient" and not any(p.sidecar for p in inv.pods_by_namespace.get(name, ())) \
                    and leftovers(inv, name) == ([], []):
                out.append(Observation(self.id, name, [f"Namespace {name}"]))
        return out


FEATURE = AmbientCleanup()
