from __future__ import annotations

from cluster.errors import MeshstepError
from features._gateway_api import API, chosen_api
from features._routes import service_routes
from features.base import Feature, Observation, Param, scope_of, versioned_service


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
        routes = service_routes(inv, svc, chosen_api(self.id, p, scope, inv), [stable, canary], self.id)
        # The release changes where the catch-all rules send requests, and nothing else: their timeouts, retries,
        # faults, filters and matches stay, as do the rules that select requests by header and those to other hosts.
        for route in routes.routes:
            for rule in routes.catch_alls(route):
                tester = None
                if p["strategy"] == "canary":
                    routes.send(rule, [(stable, 100 - p["weight"]), (canary, p["weight"])])
                elif p["strategy"] == "blue-green":
                    routes.send(rule, [(canary, 100), (stable, 0)])
                else:
                    routes.send(rule, [(stable, None)])
                    tester = [routes.to(rule, canary)]
                routes.tester(route, rule, p["header"], p["header_value"], tester)
        return routes.objects

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
