"""Istio's sidecar injector as an overlay plays it: the pods `kubectl rollout restart` re-creates, with the sidecar
the injector of their revision gives them (native or classic, as the install does it) or without one once they are
no longer injected. An overlay runs neither Kubernetes' controllers nor the injector's webhook, so a rehearsal
applies these pods in place of the restarts a stage's notes ask for."""
from __future__ import annotations

import json
from typing import Any

from cluster.components import PROXY_CONTAINER
from cluster.inventory import Inventory
from cluster.model import Pod
from cluster.queries import injector_takes, per_inventory, proxy_container
from cluster.revisions import manifest, raw_container, resolve, revision

_NATIVE = "sidecar.istio.io/nativeSidecar"  # the pod's own word on the shape, over istiod's
_INJECTED = ("istio-proxy", "istio-init", "istio-validation")  # the containers the injector adds


def injector_shape(inv: Inventory, pod: Pod, rev: str | None) -> str:
    """The sidecar shape (native | classic) the injector of revision `rev` gives `pod`: the pod's
    sidecar.istio.io/nativeSidecar annotation, else its istiod's ENABLE_NATIVE_SIDECARS, else what that revision
    injected into pods that did not choose (any revision's, if it injected none), else native: the injector's
    default, as its own testdata (hello.yaml.injected) has it."""
    asked = pod.annotations.get(_NATIVE)
    if asked in ("true", "false"):
        return "native" if asked == "true" else "classic"
    return per_inventory(inv, f"injector-shape {rev}", lambda i: _revision_shape(i, rev))


def _revision_shape(inv: Inventory, rev: str | None) -> str:
    """The shape revision `rev` injects into a pod that does not choose: injector_shape past the pod's own word
    (the same for every such pod: found once per inventory and revision)."""
    for d in inv.of_kind("Deployment"):
        if d.labels.get("app") == "istiod" and resolve(inv, d.labels.get("istio.io/rev")) == rev:
            env = {e.get("name"): e.get("value") for c in (d.raw.get("spec") or {}).get("template", {}).get(
                "spec", {}).get("containers") or () for e in c.get("env") or ()}
            if env.get("ENABLE_NATIVE_SIDECARS") in ("true", "false"):
                return "native" if env["ENABLE_NATIVE_SIDECARS"] == "true" else "classic"
    chose = [p.sidecar for p in inv.pods if p.sidecar is not None and _NATIVE not in p.annotations]
    seen = {s.shape for s in chose if s.revision == rev} or {s.shape for s in chose}
    return "classic" if seen == {"classic"} else "native"


def _sidecar_containers(inv: Inventory, rev: str | None, shape: str) -> tuple[list[dict], list[dict]]:
    """(init containers, containers) the injector of `rev` adds in this shape: as it added them to a pod it already
    injected in this shape (that revision's first, else any's), else as Istio's injected pod shapes have them —
    the capture (istio-init, or istio-validation under istio-cni), then istio-proxy: an init container with
    restartPolicy Always when native, the last container when classic."""
    injected = [p for p in inv.pods if p.sidecar is not None and p.sidecar.shape == shape]
    donor = next((p for p in injected if p.sidecar and p.sidecar.revision == rev), None) or next(iter(injected), None)
    if donor is not None:
        return ([raw_container(c) for c in donor.spec.init_containers if c.name in _INJECTED],
                [raw_container(c) for c in donor.spec.containers if c.name in _INJECTED])
    same = next((p.sidecar for p in inv.pods if p.sidecar is not None and p.sidecar.revision == rev), None)
    known = revision(inv, rev) if rev else None
    image = same.image if same else f"docker.io/istio/proxyv2:{(known and known.version) or inv.istio_version}"
    cni = any(c.component == "istio-cni" for c in inv.components)
    capture = {"name": "istio-validation" if cni else "istio-init", "image": image,
               "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT"]
               + (["--run-validation", "--skip-rule-apply"] if cni else []),
               "securityContext": {"runAsUser": 1337 if cni else 0}}
    proxy: dict[str, Any] = {"name": PROXY_CONTAINER, "image": image, "args": ["proxy", "sidecar"],
                             "securityContext": {"runAsUser": 1337}}
    if shape == "native":
        return [capture, proxy | {"restartPolicy": "Always"}], []
    return [capture], [proxy]


def reinjected(inv: Inventory, namespace: str) -> list[dict[str, Any]]:
    """The namespace's pods re-created by `kubectl rollout restart`, as Kubernetes and Istio's injector make them
    (an overlay runs neither): a pod the injector takes now (its namespace's labels, its own word) and that has no
    proxy comes back with the sidecar its revision's injector gives (injector_shape, _sidecar_containers); a pod
    with a sidecar that the injector no longer takes comes back without it."""
    ns = inv.namespaces.get(namespace)
    rev = resolve(inv, ns.revision) if ns is not None and ns.revision else None
    out = []
    for pod in inv.pods_by_namespace.get(namespace, ()):
        if pod.sidecar is None and proxy_container(pod.spec) is not None:
            continue  # a gateway's or waypoint's own proxy: no sidecar is injected beside it
        wanted = not pod.spec.host_network and injector_takes(inv, namespace, pod.spec)
        if (pod.sidecar is not None) == wanted:
            continue
        labels = {k: v for k, v in pod.labels.items() if k != "security.istio.io/tlsMode"}
        annotations = {k: v for k, v in pod.annotations.items() if k != "sidecar.istio.io/status"}
        raw = manifest(pod, labels, annotations)
        spec = raw["spec"]
        for key in ("initContainers", "containers"):
            spec[key] = [c for c in spec[key] if c["name"] not in _INJECTED]
        if wanted:
            shape = injector_shape(inv, pod, rev)
            # the same for every pod of the revision and shape: found once per inventory (a wave restarts thousands)
            inits, containers = per_inventory(inv, f"sidecar-containers {rev} {shape}",
                                              lambda i, s=shape: _sidecar_containers(i, rev, s))
            spec["initContainers"] = inits + spec["initContainers"]
            spec["containers"] += containers
            raw["metadata"]["labels"]["security.istio.io/tlsMode"] = "istio"
            raw["metadata"]["annotations"]["sidecar.istio.io/status"] = json.dumps(
                {"initContainers": [c["name"] for c in inits], "containers": [c["name"] for c in containers] or None,
                 "revision": rev or "default"}, separators=(",", ":"))
        out.append(raw)
    return out
