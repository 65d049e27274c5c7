from __future__ import annotations

import re

from cluster.errors import MeshstepError
from features._istio import free_name
from features.base import DURATION, Feature, Observation, Param, obj, scope_of, target_namespace

_HOST = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")


class EgressServiceEntry(Feature):
    id = "egress-service-entry"
    title = "External services made visible"
    category = "traffic"
    params = (
        Param("host", str, "", "the external host the workloads call, e.g. api.stripe.com"),
        Param("port", int, 443, "its port", minimum=1, maximum=65535),
        Param("protocol", str, "TLS", "TLS for HTTPS the app encrypts itself; HTTP lets Istio time and retry",
              choices=("TLS", "HTTP", "HTTPS", "TCP")),
        Param("timeout", str, "10s", "request timeout for HTTP hosts (a duration)", pattern=DURATION),
    )
    problem = "Which external APIs do our workloads call, and how long do those calls take when they fail?"
    pitfalls = (
        "Without a ServiceEntry, calls out show up as PassthroughCluster: no per-host metrics.",
        "With protocol TLS Istio sees the SNI only: no HTTP metrics, timeouts or retries.",
        "exportTo limits who sees the entry: '.' keeps it to its namespace.",
    )
    docs = "https://istio.io/latest/docs/tasks/traffic-management/egress/egress-control/"

    def build(self, p, scope, inv):
        host = p["host"].lower()
        if not host:
            raise MeshstepError("egress-service-entry needs --set host=NAME (the external API the workloads call)")
        if not _HOST.match(host):
            raise MeshstepError(f"egress-service-entry: {host!r} is not a DNS host name")
        ns = target_namespace(scope, inv)
        name = host.replace("*.", "wildcard-").replace(".", "-")
        name = free_name(inv, "ServiceEntry", ns, name, feature=self.id)
        objs = [obj(inv, "networking.istio.io", "ServiceEntry", ns, name, {
            "hosts": [host], "location": "MESH_EXTERNAL", "resolution": "NONE" if host.startswith("*.") else "DNS",
            "ports": [{"number": p["port"], "name": f"{p['protocol'].lower()}-{p['port']}",
                       "protocol": p["protocol"]}]})]
        if p["protocol"] == "HTTP":
            objs.append(obj(inv, "networking.istio.io", "VirtualService", ns,
                            free_name(inv, "VirtualService", ns, name, feature=self.id), {
                "hosts": [host], "http": [{"timeout": p["timeout"], "route": [{"destination": {"host": host}}]}]}))
        return objs

    def detect(self, inv):
        return [Observation(self.id, scope_of(se, inv), [str(se.ref)], {"host": (se.spec.get("hosts") or [""])[0]})
                for se in inv.of_kind("ServiceEntry") if se.spec.get("location", "MESH_EXTERNAL") == "MESH_EXTERNAL"]


FEATURE = EgressServiceEntry()
