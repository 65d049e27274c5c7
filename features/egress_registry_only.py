from __future__ import annotations

import copy

import yaml

from cluster.errors import MeshstepError
from features.base import MESH, Feature, Observation, clean, scope_of


class EgressRegistryOnly(Feature):
    id = "egress-registry-only"
    title = "Egress lock-down (REGISTRY_ONLY)"
    category = "security"
    depends_on = ("egress-service-entry",)
    scopes = (MESH,)
    problem = "Should workloads reach only the external hosts we registered, and nothing else?"
    pitfalls = (
        "Every external host not covered by a ServiceEntry starts failing (502/BlackHoleCluster): register first.",
        "Changing the mesh ConfigMap by hand is undone by the next `istioctl install`: set "
        "meshConfig.outboundTrafficPolicy.mode in the install too.",
        "Workloads outside the mesh are not restricted at all.",
    )
    docs = "https://istio.io/latest/docs/tasks/traffic-management/egress/egress-control/"
    owns = ("data.mesh",)  # its outboundTrafficPolicy; the rest of the mesh config is parsed and kept

    def build(self, p, scope, inv):
        cm = inv.mesh_config_map  # the one detection (and istiod's default revision) reads
        if cm is None:
            raise MeshstepError(f"egress-registry-only: no mesh config ConfigMap (istio or istio-<rev>) in "
                                f"{inv.root_namespace}; set meshConfig.outboundTrafficPolicy.mode=REGISTRY_ONLY in "
                                "the install instead")
        raw = copy.deepcopy(clean(cm.raw))
        mesh = yaml.safe_load(raw["data"]["mesh"]) or {}
        mesh["outboundTrafficPolicy"] = {"mode": "REGISTRY_ONLY"}
        raw["data"] = {**raw["data"], "mesh": yaml.safe_dump(mesh, sort_keys=True)}
        return [raw]

    def notes(self, p, scope, inv, rollback):
        mode = "ALLOW_ANY" if rollback else "REGISTRY_ONLY"
        return [f"# also set meshConfig.outboundTrafficPolicy.mode={mode} in your install's values (IstioOperator or "
                "Helm), so that an upgrade keeps it"]

    def detect(self, inv):
        out = []
        if (inv.mesh_config.get("outboundTrafficPolicy") or {}).get("mode") == "REGISTRY_ONLY":
            cm = inv.mesh_config_map
            out.append(Observation(self.id, MESH, [str(cm.ref) if cm else "mesh config"]))
        for sc in inv.of_kind("Sidecar"):
            if (sc.spec.get("outboundTrafficPolicy") or {}).get("mode") == "REGISTRY_ONLY":
                out.append(Observation(self.id, scope_of(sc, inv), [str(sc.ref)]))
        return out


FEATURE = EgressRegistryOnly()
