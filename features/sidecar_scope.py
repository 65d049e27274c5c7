from __future__ import annotations

from cluster.errors import MeshstepError
from features._istio import sidecar
from features.base import Feature, Observation, Param, scope_of


class SidecarScope(Feature):
    id = "sidecar-scope"
    title = "Sidecar scope (config each proxy receives)"
    category = "traffic"
    depends_on = ("sidecar-injection",)
    params = (Param("hosts", str, "", "extra egress hosts, comma-separated `namespace/host` (default: this "
                                      "namespace and the root namespace only)"),)
    problem = ("Does every proxy need to know every service of the cluster? On big meshes, limiting it cuts "
               "istiod's pushes and each proxy's memory.")
    pitfalls = (
        "A workload calling a service outside its egress hosts gets 502/BlackHoleCluster: list every namespace "
        "it calls.",
        "Only one selector-less Sidecar per namespace is allowed.",
    )
    docs = "https://istio.io/latest/docs/reference/config/networking/sidecar/"
    owns = ("spec.egress",)

    def build(self, p, scope, inv):
        hosts = ["./*", f"{inv.root_namespace}/*"]
        for h in (x.strip() for x in p["hosts"].split(",") if x.strip()):
            if "/" not in h:
                raise MeshstepError(f"sidecar-scope: host {h!r} must be written namespace/host (e.g. payments/*)")
            hosts.append(h)
        sc = sidecar(inv, scope)  # the namespace's own, if it has one: a second selector-less Sidecar is IST0111
        sc["spec"]["egress"] = [{"hosts": sorted(set(hosts), key=hosts.index)}]
        return [sc]

    def detect(self, inv):
        return [Observation(self.id, scope_of(sc, inv), [str(sc.ref)]) for sc in inv.of_kind("Sidecar")
                if not sc.spec.get("workloadSelector") and sc.spec.get("egress")]


FEATURE = SidecarScope()
