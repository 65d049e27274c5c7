from __future__ import annotations

from typing import Any

from cluster.errors import MeshstepError
from features._gateway_api import (
    API,
    GATEWAY_API,
    backend,
    chosen_api,
    mesh_route,
    rules_to,
    service_ref,
    version_services,
)
from features._istio import destination, destination_rule, routes_to, virtual_service, with_subsets
from features.base import Feature, Observation, Param, http_port, scope_of, versioned_service


class TrafficShifting(Feature):
    id = "traffic-shifting"
    title = "Canary, blue/green and tester routing"
    category = "traffic"
    depends_on = ("request-routing",)
    scopes = ("namespace",)
    params = (
        Param("service", str, "", "the service to release (default: the first one running two versions)"),
        Param("strategy", str, "canary", "canary: a weight to the new version; blue-green: switch all traffic; "
                                         "header: only requests with the header (testers) reach the new version",
              choices=("canary", "blue-green", "header")),
        Param("stable", str, "", "the version serving users now (default: the oldest)"),
        Param("canary", str, "", "the new version (default: the newest)"),
        Param("weight", int, 10, "percent of requests to the new version (canary)", minimum=0, maximum=100),
        Param("header", str, "x-canary", "request header that marks testers (header)"),
        Param("header_value", str, "true", "its value (header)"),
        API,
    )
    problem = ("Deploy is not release: who should see the new version first — testers, a small share of users, or "
               "everyone at once with an instant switch back?")
    pitfalls = (
        "Weights only apply to callers in the mesh; traffic from outside must come through the gateway.",
        "Sticky sessions and weights fight: consistent-hash load balancing ignores the split.",
        "Watch the new version's error rate and latency before raising the weight.",
    )
    docs = "https://istio.io/latest/docs/tasks/traffic-management/traffic-shifting/"
    owns = ("rules[*].backendRefs",)

    def build(self, p, scope, inv):
        svc, versions = versioned_service(scope, inv, p["service"] or None)
        stable, canary = p["stable"] or versions[0], p["canary"] or versions[-1]
        for v in (stable, canary):
            if v not in versions:
                raise MeshstepError(f"traffic-shifting: {svc.name} has no pods labelled version={v} "
                                    f"(versions: {', '.join(versions)})")
        if stable == canary:
            raise MeshstepError("traffic-shifting: stable and canary are the same version")
        if chosen_api(self.id, p, scope, inv) == GATEWAY_API:
            return self._http_route(p, svc, stable, canary, inv)
        dr = with_subsets(destination_rule(inv, svc), [stable, canary])
        vs = virtual_service(inv, svc)
        host = vs["spec"]["hosts"][0]

        # The release changes where the service's catch-all route sends requests, and nothing else: its timeout,
        # retries, fault, mirror and headers stay, as do the routes with matches and those to other hosts.
        http = vs["spec"].setdefault("http", [])
        header = [{"headers": {p["header"]: {"exact": p["header_value"]}}}]
        http[:] = [r for r in http if r.get("match") != header]  # a tester route of an earlier render
        ours = routes_to(vs, svc)
        default = next((r for r in ours if not r.get("match")), None)
        if default is None:
            default = {"route": []}
            http.append(default)
        # the port the route names today, if it names one, stays named
        port = next((d["destination"]["port"] for d in default["route"] if d.get("destination", {}).get("port")),
                    None)

        def to(subset, weight=None):
            dest = destination(svc, subset, weight, host)
            if port:
                dest["destination"]["port"] = port
            return dest
        if p["strategy"] == "canary":
            default["route"] = [to(stable, 100 - p["weight"]), to(canary, p["weight"])]
        elif p["strategy"] == "blue-green":
            default["route"] = [to(canary, 100), to(stable, 0)]
        else:
            default["route"] = [to(stable)]
            kept = {k: v for k, v in default.items() if k not in ("route", "name")}  # its timeout, retries…
            http.insert(http.index(default), {"match": header} | kept | {"route": [to(canary)]})
        return [dr, vs]

    def _http_route(self, p: dict[str, Any], svc: Any, stable: str, canary: str, inv: Any) -> list[dict[str, Any]]:
        """The same release as weighted backendRefs: each version a Service of its own (Gateway API has no
        subsets). The service's catch-all rule changes; its timeouts, filters and other rules stay."""
        services, names = version_services(inv, svc, [stable, canary], self.id)
        route = mesh_route(inv, svc)
        rules = route["spec"].setdefault("rules", [])
        header = [{"headers": [{"name": p["header"], "value": p["header_value"]}]}]
        rules[:] = [r for r in rules if r.get("matches") != header]  # a tester rule of an earlier render
        default = next((r for r in rules_to(route, {svc.name, *names.values()}) if not r.get("matches")), None)
        if default is None:
            default = {"backendRefs": []}
            rules.append(default)
        port = next((b["port"] for b in default["backendRefs"] if service_ref(b) and b.get("port")), http_port(svc))
        if p["strategy"] == "canary":
            default["backendRefs"] = [backend(names[stable], port, 100 - p["weight"]),
                                      backend(names[canary], port, p["weight"])]
        elif p["strategy"] == "blue-green":
            default["backendRefs"] = [backend(names[canary], port, 100), backend(names[stable], port, 0)]
        else:
            default["backendRefs"] = [backend(names[stable], port)]
            kept = {k: v for k, v in default.items() if k not in ("backendRefs", "name")}
            tester = {"matches": header} | kept | {"backendRefs": [backend(names[canary], port)]}
            rules.insert(rules.index(default), tester)
        return [*services, route]

    def detect(self, inv):
        out = []
        for vs in inv.of_kind("VirtualService"):
            http = vs.spec.get("http") or []
            # the subsets everyone else gets: a header route to those same subsets (a fault injected for one
            # user, say) sends no one to another version
            default = {d.get("destination", {}).get("subset") for r in http if not r.get("match")
                       for d in r.get("route") or []}
            for r in http:
                dests = [d for d in r.get("route") or [] if d.get("destination", {}).get("subset")]
                split = len(dests) > 1 and all("weight" in d for d in dests)
                header = any("headers" in m for m in r.get("match") or []) and any(
                    d["destination"]["subset"] not in default for d in dests)
                if split or header:
                    params = {"strategy": "header"} if header else {
                        "weight": dests[-1].get("weight", 0), "canary": dests[-1]["destination"]["subset"]}
                    out.append(Observation(self.id, scope_of(vs, inv), [str(vs.ref)], params))
                    break
        for route in inv.of_kind("HTTPRoute"):
            rules = route.spec.get("rules") or []
            default = {b.get("name") for r in rules if not r.get("matches") for b in r.get("backendRefs") or ()}
            for r in rules:
                refs = r.get("backendRefs") or []
                split = len(refs) > 1 and all("weight" in b for b in refs)
                header = any(m.get("headers") for m in r.get("matches") or ()) and any(
                    b.get("name") not in default for b in refs)
                if split or header:
                    params = {"strategy": "header"} if header else {"weight": refs[-1]["weight"]}
                    out.append(Observation(self.id, scope_of(route, inv), [str(route.ref)], params))
                    break
        return out


FEATURE = TrafficShifting()
