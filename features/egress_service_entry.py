from __future__ import annotations

import re
from typing import Any

from cluster.errors import MeshstepError
from features._istio import free_name
from features.base import (
    DURATION,
    MESH,
    ROLLBACK,
    Feature,
    Observation,
    Param,
    clean,
    obj,
    scope_of,
    target_namespace,
)

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
        serving = _serving(inv, ns, host, p["port"], self.id)
        objs = [] if serving is not None else [obj(inv, "networking.istio.io", "ServiceEntry", ns, name, {
            "hosts": [host], "location": "MESH_EXTERNAL", "resolution": "NONE" if host.startswith("*.") else "DNS",
            "ports": [{"number": p["port"], "name": f"{p['protocol'].lower()}-{p['port']}",
                       "protocol": p["protocol"]}]})]
        if p["protocol"] == "HTTP":
            # the timeout is the scope's: exported to its own namespace, it does not reach every namespace's calls
            export = {"exportTo": ["."]} if scope != MESH else {}
            objs.append(obj(inv, "networking.istio.io", "VirtualService", ns,
                            free_name(inv, "VirtualService", ns, name, feature=self.id), {
                "hosts": [host], **export,
                "http": [{"timeout": p["timeout"], "route": [{"destination": {"host": host}}]}]}))
        return objs or [clean(serving.raw)]  # registered already: the entry that does it, left as it is

    def detect(self, inv):
        return [Observation(self.id, scope_of(se, inv), [str(se.ref)], {"host": (se.spec.get("hosts") or [""])[0]})
                for se in inv.of_kind("ServiceEntry") if se.spec.get("location", "MESH_EXTERNAL") == "MESH_EXTERNAL"]


def _serving(inv: Any, namespace: str, host: str, port: int, feature: str) -> Any:
    """A ServiceEntry (not this feature's own) that already registers host:port for the namespace's proxies."""
    for se in inv.of_kind("ServiceEntry"):
        export = se.spec.get("exportTo") or ["*"]
        visible = "*" in export or namespace in export or se.namespace == namespace and "." in export
        if visible and host in (se.spec.get("hosts") or ()) and ROLLBACK + feature not in se.annotations and any(
                pt.get("number") == port for pt in se.spec.get("ports") or ()):
            return se
    return None


FEATURE = EgressServiceEntry()
