"""DestinationRule checks (istioctl's destinationrule analyzers): TLS origination without server verification,
hosts that match no service, subsets that select no pod."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from analysis.base import Context, check
from analysis.catalog import text
from cluster.model import Pod, Ref
from cluster.queries import fqdn, host_matches, istio_objects, labels_match, ns_of, service_index

_VERIFYING_MODES = ("SIMPLE", "MUTUAL")
# Subset labels under these prefixes describe the node a pod runs on (locality), not the pod.
_TOPOLOGY_PREFIXES = ("topology.kubernetes.io/", "topology.istio.io/")


def _unverified(tls: dict[str, Any] | None, has_selector: bool) -> str | None:
    """The TLS mode when it originates TLS without CA certificates to check the server against, else None.
    A credentialName on a rule bound to a workload (a gateway) brings its own CA, so that is verified."""
    if not tls or tls.get("mode") not in _VERIFYING_MODES or tls.get("caCertificates"):
        return None
    if tls.get("credentialName") and has_selector:
        return None
    return tls["mode"]


@check("IST0128", "Set caCertificates (or a credentialName holding ca.crt) in the DestinationRule's trafficPolicy.tls "
       "so the proxy verifies the server's certificate.",
       reads=("DestinationRule",))
def no_verification_destination(ctx: Context) -> Iterator[tuple[Ref, str]]:
    for dr in istio_objects(ctx.inventory, "DestinationRule"):
        s = dr.spec
        mode = _unverified((s.get("trafficPolicy") or {}).get("tls"), bool(s.get("workloadSelector")))
        if mode:
            yield dr.ref, (f"DestinationRule {dr.name} in namespace {ns_of(dr)} has TLS mode set to {mode} but no "
                           f"caCertificates are set to validate server identity for host: {s.get('host')}")


@check("IST0129", "Set caCertificates in the portLevelSettings' tls so the proxy verifies the server's certificate.",
       reads=("DestinationRule",))
def no_verification_port(ctx: Context) -> Iterator[tuple[Ref, str]]:
    for dr in istio_objects(ctx.inventory, "DestinationRule"):
        s = dr.spec
        for pls in (s.get("trafficPolicy") or {}).get("portLevelSettings") or ():
            mode = _unverified(pls.get("tls"), bool(s.get("workloadSelector")))
            if mode:
                port = (pls.get("port") or {}).get("number")
                yield dr.ref, (f"DestinationRule {dr.name} in namespace {ns_of(dr)} has TLS mode set to {mode} but "
                               f"no caCertificates are set to validate server identity for host: {s.get('host')} "
                               f"at port {port}")


@check("IST0174", "Fix the host (a Service's name, name.namespace.svc.cluster.local, or a ServiceEntry host), or "
       "delete the DestinationRule if the service is gone.",
       reads=("DestinationRule", "Service", "ServiceEntry"))
def unknown_host(ctx: Context) -> Iterator[tuple[Ref, str]]:
    index = service_index(ctx.inventory)
    for dr in istio_objects(ctx.inventory, "DestinationRule"):
        host = dr.spec.get("host")
        if not host:
            continue
        full = fqdn(host, ns_of(dr))
        if full.startswith("*"):
            if any(host_matches(h, full) for h in index.kube) or any(host_matches(h, full) for h in index.entries):
                continue
        elif index.known(full, ns_of(dr)):
            continue
        yield dr.ref, text("IST0174", host)


@check("IST0173", "Fix the subset's labels to match the pods' labels (kubectl get pods --show-labels), or deploy the "
       "version the subset names; requests routed to it fail with 503 NoHealthyUpstream.",
       reads=("DestinationRule", "Service", "Pod", "Node"))
def subset_selects_no_pods(ctx: Context) -> Iterator[tuple[Ref, str]]:
    inv = ctx.inventory
    nodes = {n.name: n.labels for n in inv.of_kind("Node")}
    for dr in istio_objects(inv, "DestinationRule"):
        s = dr.spec
        svc = service_index(inv).kube.get(fqdn(s.get("host") or "", ns_of(dr)))
        if svc is None:
            continue  # subsets of ServiceEntries and unknown hosts select workloads this check cannot see
        pods = inv.pods_of_service(svc)
        for subset in s.get("subsets") or ():
            if not any(_subset_selects(subset.get("labels") or {}, p, nodes) for p in pods):
                yield dr.ref, (f"The Subset {subset.get('name')} defined in the DestinationRule does not select any "
                               f"pods. Which may lead to 503 UH (NoHealthyUpstream).")


def _subset_selects(labels: dict[str, str], pod: Pod, nodes: dict[str, dict[str, str]]) -> bool:
    pod_labels = {k: v for k, v in labels.items() if not k.startswith(_TOPOLOGY_PREFIXES)}
    topology = {k: v for k, v in labels.items() if k.startswith(_TOPOLOGY_PREFIXES)}
    if not labels_match(pod_labels, pod.labels):
        return False
    if not topology:
        return True
    node = nodes.get(pod.node or "", {})
    # An empty locality value is no locality: it never matches, even a node labelled with an empty value.
    return all(v and node.get(k) == v for k, v in topology.items())
