"""The routes that carry a Service's traffic, in either API, as the routing features change them.

Istio: the mesh VirtualService of the service, with the DestinationRule whose subsets name its versions.
Gateway API: the HTTPRoutes that carry it — those attached to a Gateway that send to it (north–south: the traffic a
canary is for) and the one attached to the Service itself (east–west, GAMMA) where something in the mesh calls it
or no Gateway route exists — with a Service per version (the Gateway API has no subsets).

request-routing, traffic-shifting and timeouts-retries change rules through `ServiceRoutes`, so that what differs
between the two APIs (field names, how a destination names a version, how a header is matched) is written once."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from analysis.ambient import is_waypoint
from analysis.callers import calls
from cluster.inventory import Inventory
from cluster.model import GATEWAY_API_GROUP, Service
from features._gateway_api import (
    GATEWAY_API,
    backend,
    backends,
    grants_for,
    mesh_route,
    parent_services,
    rules_to,
    service_ref,
    version_services,
)
from features._istio import (
    _copy,
    destination,
    destination_rule,
    matches_host,
    routes_to,
    serves_http,
    virtual_service,
    with_subsets,
)
from features.base import http_port, services_in

# What a request is selected by besides its path: a rule that matches none of these is everyone's traffic.
_SELECTIVE = ("headers", "queryParams", "method")


def gateway_parents(route: Any) -> list[str]:
    """The Gateways (namespace/name, not waypoints) an HTTPRoute of the inventory is attached to."""
    return [f"{p.get('namespace', route.namespace)}/{p['name']}" for p in route.spec.get("parentRefs") or ()
            if p.get("kind", "Gateway") == "Gateway" and p.get("group", GATEWAY_API_GROUP) == GATEWAY_API_GROUP]


def ingress_routes(inv: Inventory) -> list[Any]:
    """HTTPRoutes attached to a Gateway that is not a waypoint: north–south routing done with the Gateway API."""
    waypoints = {f"{g.namespace}/{g.name}" for g in inv.of_kind("Gateway") if is_waypoint(g)}
    return [r for r in inv.of_kind("HTTPRoute") if set(gateway_parents(r)) - waypoints]


def routed_namespaces(inv: Inventory, route: Any) -> list[str]:
    """The namespaces whose Services an ingress route sends to (its own, or one that grants it the reference)."""
    return sorted({ns for ns, _ in backends(inv, route)})


def http_services(scope: str, inv: Inventory, name: str) -> list[Service]:
    """The services of the scope (only `name`, when given) that serve HTTP: only those get HTTP routes."""
    return [s for s in services_in(scope, inv) if (not name or s.name == name) and serves_http(s)]


def called_in_mesh(inv: Inventory, svc: Service) -> bool:
    """Whether meshstep has evidence of a call to `svc` from a workload in the mesh (east–west traffic)."""
    return any(c.service == svc and c.meshed and not c.end_user for c in calls(inv))


@dataclass
class ServiceRoutes:
    """The routes (copies) that carry one Service's traffic in one API, and what names its versions there."""

    svc: Service
    api: str
    routes: list[dict[str, Any]]
    support: list[dict[str, Any]] = field(default_factory=list)  # the DestinationRule, or new version Services
    names: dict[str, str] = field(default_factory=dict)  # version → subset, or the version's Service
    host: str = ""  # how the VirtualService names the service (its first host): destinations name it so too

    @property
    def objects(self) -> list[dict[str, Any]]:
        """What to apply: subsets and version Services before the routes that name them (503 NR otherwise)."""
        return [*self.support, *self.routes]

    @property
    def _rules_key(self) -> str:
        return "rules" if self.api == GATEWAY_API else "http"

    def rules(self, route: dict[str, Any]) -> list[dict[str, Any]]:
        """The rules of `route` that send to the service (or to one of its versions)."""
        if self.api == GATEWAY_API:
            return rules_to(route, {self.svc.name, *self.names.values()})
        return routes_to(route, self.svc)

    def catch_alls(self, route: dict[str, Any]) -> list[dict[str, Any]]:
        """The rules everyone's requests take (a release changes where they send), one made when there is none.
        In a VirtualService the first route without a match (the routes after it never match); in an HTTPRoute
        each rule that selects requests by path only, as a Gateway route's rules for an application's paths do."""
        if self.api == GATEWAY_API:
            found = [r for r in self.rules(route)
                     if not any(k in m for m in r.get("matches") or () for k in _SELECTIVE)]
        else:
            found = [r for r in self.rules(route) if not r.get("match")][:1]
        if not found:
            found = [{"backendRefs": []} if self.api == GATEWAY_API else {"route": []}]
            route["spec"].setdefault(self._rules_key, []).extend(found)
        return found

    def _dests(self, rule: dict[str, Any]) -> list[dict[str, Any]]:
        return rule.setdefault("backendRefs" if self.api == GATEWAY_API else "route", [])

    def _namespace(self, rule: dict[str, Any]) -> str | None:
        """The namespace the rule's backendRefs to the service name (a route beside its Gateway names it so)."""
        return next((b["namespace"] for b in self._dests(rule) if service_ref(b) and b.get("namespace")), None)

    def _port(self, rule: dict[str, Any]) -> Any:
        """The port the rule names today, if it names one: it stays named."""
        if self.api == GATEWAY_API:
            return next((b["port"] for b in self._dests(rule) if service_ref(b) and b.get("port")),
                        http_port(self.svc))
        return next((d["destination"]["port"] for d in self._dests(rule) if d.get("destination", {}).get("port")),
                    None)

    def to(self, rule: dict[str, Any], version: str, weight: int | None = None) -> dict[str, Any]:
        """A destination of `rule` sending to one version of the service."""
        port = self._port(rule)
        if self.api == GATEWAY_API:
            return backend(self.names[version], port, weight, self._namespace(rule))
        dest = destination(self.svc, self.names[version], weight, self.host or self.svc.name)
        if port:
            dest["destination"]["port"] = port
        return dest

    def send(self, rule: dict[str, Any], split: list[tuple[str, int | None]]) -> None:
        """`rule` sends to these versions (with these weights) of the service."""
        dests = [self.to(rule, v, w) for v, w in split]
        self._dests(rule)[:] = dests

    def pin(self, rule: dict[str, Any], version: str) -> None:
        """Each destination of `rule` to the service itself (no version yet) goes to `version`."""
        for d in self._dests(rule):
            if self.api == GATEWAY_API:
                if service_ref(d) and d.get("name") == self.svc.name:
                    d["name"] = self.names[version]
            elif matches_host(d["destination"].get("host", ""), self.svc):
                d["destination"].setdefault("subset", self.names[version])

    def with_header(self, rule: dict[str, Any], header: str, value: str) -> list[dict[str, Any]]:
        """The matches of `rule`, each also requiring the header (a match ANDs its conditions; the list ORs)."""
        key = "matches" if self.api == GATEWAY_API else "match"
        out = []
        for m in copy.deepcopy(rule.get(key)) or [{}]:
            if self.api == GATEWAY_API:
                m["headers"] = [h for h in m.get("headers") or () if h.get("name") != header] + [
                    {"name": header, "value": value}]
            else:
                m["headers"] = (m.get("headers") or {}) | {header: {"exact": value}}
            out.append(m)
        return out

    def tester(self, route: dict[str, Any], rule: dict[str, Any], header: str, value: str,
               dests: list[dict[str, Any]] | None) -> None:
        """Put before `rule` a rule for the requests with the header, with `rule`'s settings (timeouts, filters…)
        and sending to `dests` (none: no tester rule); the one an earlier rendering put there is replaced."""
        key, match = ("backendRefs", "matches") if self.api == GATEWAY_API else ("route", "match")
        matches = self.with_header(rule, header, value)
        rules = route["spec"][self._rules_key]
        rules[:] = [r for r in rules if r.get(match) != matches]
        if dests is not None:
            kept = {k: v for k, v in rule.items() if k not in (key, match, "name")}
            rules.insert(rules.index(rule), {match: matches} | copy.deepcopy(kept) | {key: dests})

def service_routes(inv: Inventory, svc: Service, api: str, versions: list[str] | None, feature: str,
                   ingress: bool = True) -> ServiceRoutes:
    """The routes carrying `svc`'s traffic in `api`, with its `versions` named (subsets or Services added; None:
    the routes only). Without `ingress`, the mesh's route only: a Gateway's routes are left as they are."""
    if api != GATEWAY_API:
        vs = virtual_service(inv, svc)
        support = [with_subsets(destination_rule(inv, svc), versions)] if versions is not None else []
        return ServiceRoutes(svc, api, [vs], support, {v: v for v in versions or ()}, vs["spec"]["hosts"][0])
    services, names = version_services(inv, svc, versions or [], feature)
    ours = {svc.name, *names.values()}
    through = [r for r in ingress_routes(inv) if ingress and any(
        ns == svc.namespace and name in ours for ns, name in backends(inv, r))]
    carrying = [_copy(r) for r in through]
    services += [g for r in through for g in grants_for(inv, r, svc, list(names.values()))]
    has_mesh_route = any(r.namespace == svc.namespace and svc.name in parent_services(r)
                         for r in inv.of_kind("HTTPRoute"))
    if not carrying or has_mesh_route or called_in_mesh(inv, svc):
        carrying.append(mesh_route(inv, svc))
    return ServiceRoutes(svc, api, carrying, services, names)
