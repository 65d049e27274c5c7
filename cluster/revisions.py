"""Revisions and upgrades: which istiod revision each namespace injects from (through revision tags), which one
each proxy is connected to and at which version, and — when two revisions run side by side — how far the canary
upgrade from the older to the newer one has gone.

Istio's canary upgrade (https://istio.io/latest/docs/setup/upgrade/canary/): install the new revision beside the
old one, relabel namespaces to it and restart their pods, move the gateways, point the `default` tag at it, and
uninstall the old revision once nothing uses it."""
from __future__ import annotations

import copy
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cluster import control_plane
from cluster.changes import clean
from cluster.components import PROXY_CONTAINER
from cluster.decode import injected_revision, version_of
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from cluster.model import Container, KubeObject, Pod, Revision
from cluster.queries import per_inventory

# Component ids of the proxies that connect to an istiod revision, and the kind of proxy each is.
PROXY_KINDS = {"sidecar": "sidecar", "ingress-gateway": "gateway", "egress-gateway": "gateway",
               "east-west-gateway": "gateway", "waypoint": "waypoint", "ztunnel": "ztunnel"}
TAG_WEBHOOK = "istio-revision-tag-{tag}"  # the MutatingWebhookConfiguration `istioctl tag set` writes


# ---------------------------------------------------------------- versions and names


def version_key(version: str) -> tuple[int, ...]:
    """A release version as a sort key: `1.27.10` after `1.27.3` (a part that is not a number counts 0)."""
    return tuple(int(x) if x.isdigit() else 0 for x in version.split("."))


def _order(r: Revision) -> tuple[Any, ...]:
    """Oldest first: by version, revisions without a known version before the others, then by name."""
    v = version_key(r.version) if r.version else ()
    return (bool(v), v, r.revision)


def revision_name(version: str) -> str:
    """The revision a release is installed as, named after its minor version as istio.io's examples name them:
    `1.28.0` → `1-28`."""
    major, minor, *_ = version.split(".")
    return f"{major}-{minor}"


def tags(inv: Inventory) -> dict[str, str]:
    """Revision tag → the istiod revision it points at, from the tag webhooks' istio.io/tag and istio.io/rev labels
    (read from the webhooks themselves: a tag left pointing at a removed revision is still a tag)."""
    return per_inventory(inv, "revisions.tags", lambda i: {
        wh.labels["istio.io/tag"]: wh.labels.get("istio.io/rev", "default")
        for wh in i.of_kind("MutatingWebhookConfiguration") if wh.labels.get("istio.io/tag")})


def resolve(inv: Inventory, name: str | None) -> str:
    """The istiod revision a revision or tag name resolves to; `default` (the legacy label, an unlabelled pod) is
    the default tag's revision when there is one. A name nothing resolves is returned as it is."""
    name = name or "default"
    if any(r.revision == name for r in inv.revisions) and name != "default":
        return name
    return tags(inv).get(name, name)


def revision(inv: Inventory, name: str) -> Revision | None:
    return next((r for r in inv.revisions if r.revision == name), None)


def installed(inv: Inventory) -> list[Revision]:
    """The istiod revisions, oldest first."""
    return sorted(inv.revisions, key=_order)


def to_install(inv: Inventory, name: str = "", version: str = "") -> tuple[str, str | None] | None:
    """The revision an install stage puts beside the running one, and its Istio version: the revision named (at the
    version given, else its own), else one named after the version given, else the newest of two or more installed;
    None when one revision runs and neither is given (there is nothing to install)."""
    if name:
        r = revision(inv, name)
        return name, version or (r.version if r else None)
    if version:
        return revision_name(version), version
    revs = installed(inv)
    return (revs[-1].revision, revs[-1].version) if len(revs) > 1 else None


# ---------------------------------------------------------------- proxies


@dataclass(frozen=True)
class Proxy:
    """A proxy pod (sidecar, gateway, waypoint or ztunnel), its version and the istiod revision it is connected to."""

    kind: str  # sidecar | gateway | waypoint | ztunnel
    component: str  # the component id (ingress-gateway, …)
    pod: Pod
    version: str | None
    revision: str  # resolved through tags

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "component": self.component, "namespace": self.pod.namespace,
                "pod": self.pod.name, "workload": f"{self.pod.workload_kind}/{self.pod.workload_name}",
                "version": self.version, "revision": self.revision}


def _proxy_container(pod: Pod) -> Container | None:
    return next((c for c in pod.spec.containers if c.name == PROXY_CONTAINER or c.image_name in ("proxyv2", "ztunnel")),
                None)


def _proxies(inv: Inventory) -> tuple[Proxy, ...]:
    resolved: dict[str | None, str] = {}  # a cluster's pods name a handful of revisions: resolve each name once
    out = []
    for c in inv.components:
        kind = PROXY_KINDS.get(c.component)
        if kind is None or c.kind != "Pod":
            continue
        pod = inv.pod(c.namespace, c.name)
        if pod is None:
            continue
        if pod.sidecar is not None:
            version, rev = pod.sidecar.version, pod.sidecar.revision
        else:  # gateways, waypoints, ztunnel: the injector's record if injected, else their istio.io/rev label
            container = _proxy_container(pod)
            version = version_of(container.image_tag) if container else None
            rev = injected_revision(pod.spec)
        if rev not in resolved:
            resolved[rev] = resolve(inv, rev)
        out.append(Proxy(kind, c.component, pod, version, resolved[rev]))
    return tuple(out)


def proxies(inv: Inventory) -> tuple[Proxy, ...]:
    """Every proxy pod of the inventory, built once per inventory."""
    return per_inventory(inv, "revisions.proxies", _proxies)


def proxy_of(inv: Inventory, pod: Pod) -> Proxy | None:
    by_pod = per_inventory(inv, "revisions.proxy_by_pod", lambda i: {(p.pod.namespace, p.pod.name): p
                                                                      for p in proxies(i)})
    return by_pod.get((pod.namespace, pod.name))


# ---------------------------------------------------------------- namespaces


@dataclass(frozen=True)
class NamespaceRevision:
    """What a namespace injects: its label as written, and the revision and version that resolves to."""

    namespace: str
    label: str | None  # `istio-injection=enabled`, `istio.io/rev=canary`; None when not labelled for sidecars
    injects: str | None  # the revision or tag the label names (`default` for istio-injection=enabled)
    revision: str | None  # the istiod revision that resolves to
    version: str | None
    proxies: dict[str, int]  # revision → sidecars and waypoints of the namespace connected to it
    stale: tuple[str, ...]  # pods whose proxy differs from what the namespace injects now (restart them)


def _label(labels: dict[str, str]) -> str | None:
    if labels.get("istio-injection") == "enabled":
        return "istio-injection=enabled"
    if labels.get("istio.io/rev") and labels.get("istio-injection") != "disabled":
        return f"istio.io/rev={labels['istio.io/rev']}"
    return None


def _namespace_revisions(inv: Inventory) -> dict[str, NamespaceRevision]:
    by_ns: dict[str, list[Proxy]] = defaultdict(list)
    for p in proxies(inv):
        if p.kind in ("sidecar", "waypoint"):
            by_ns[p.pod.namespace].append(p)
    out = {}
    for name in inv.namespace_names():
        ns = inv.namespaces.get(name)
        injects = ns.revision if ns is not None and ns.injection == "sidecar" else None
        # a label no webhook serves (istio-injection=enabled with no `default` revision or tag) injects nothing:
        # a restart would drop the pods' sidecars, not move them
        served = injects is not None and (injects in tags(inv) or revision(inv, resolve(inv, injects)) is not None)
        rev = resolve(inv, injects) if served else None
        version = (r.version if (r := revision(inv, rev)) else None) if rev else None
        mine = by_ns.get(name, [])
        if not mine and injects is None:
            continue
        stale = tuple(p.pod.name for p in mine if _differs(p, rev, version))
        out[name] = NamespaceRevision(name, _label(ns.labels) if ns else None, injects, rev, version,
                                      dict(sorted(Counter(p.revision for p in mine).items())), stale)
    return out


def _differs(p: Proxy, rev: str | None, version: str | None) -> bool:
    """A sidecar that a restart would change: on another revision, or at another version of the same one."""
    return p.kind == "sidecar" and rev is not None and (
        p.revision != rev or version is not None and p.version not in (None, version))


def namespace_revisions(inv: Inventory) -> dict[str, NamespaceRevision]:
    """Per namespace labelled for sidecars or running proxies: what it injects and what its proxies run."""
    return per_inventory(inv, "revisions.namespaces", _namespace_revisions)


def stale_pods(inv: Inventory) -> list[Proxy]:
    """Sidecars whose revision or version differs from what their namespace injects now: a restart moves them."""
    nss = namespace_revisions(inv)
    return [p for p in proxies(inv) if (ns := nss.get(p.pod.namespace)) and _differs(p, ns.revision, ns.version)]


# ---------------------------------------------------------------- the upgrade in progress


@dataclass(frozen=True)
class NamespaceProgress:
    namespace: str
    injects: str | None  # the revision the namespace's label resolves to
    target: str  # the revision the upgrade moves to
    on_new: int  # proxies connected to the new revision
    on_old: int  # proxies connected to any other

    @property
    def state(self) -> str:
        """done (injects from the new revision, every proxy on it), restart pending (relabelled, some pods still
        on an old revision) or not started (injects from an old revision)."""
        if self.injects != self.target:
            return "not started"
        return "done" if self.on_old == 0 else "restart pending"

    def to_json(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "injects": self.injects, "on_new": self.on_new, "on_old": self.on_old,
                "state": self.state}


@dataclass(frozen=True)
class Upgrade:
    """Two or more istiod revisions side by side: from the oldest to the newest."""

    from_revision: str
    from_version: str | None
    to_revision: str
    to_version: str | None
    namespaces: tuple[NamespaceProgress, ...]
    default_tag: str | None  # the revision the `default` tag points at

    @property
    def done(self) -> int:
        return sum(n.state == "done" for n in self.namespaces)

    def to_json(self) -> dict[str, Any]:
        return {"from": {"revision": self.from_revision, "version": self.from_version},
                "to": {"revision": self.to_revision, "version": self.to_version},
                "default_tag": self.default_tag, "namespaces_done": self.done,
                "namespaces_total": len(self.namespaces), "namespaces": [n.to_json() for n in self.namespaces]}


def _upgrade(inv: Inventory) -> Upgrade | None:
    revs = installed(inv)
    if len(revs) < 2:
        return None
    old, new = revs[0], revs[-1]
    progress = []
    for ns in namespace_revisions(inv).values():
        on_new = ns.proxies.get(new.revision, 0)
        progress.append(NamespaceProgress(ns.namespace, ns.revision, new.revision, on_new,
                                          sum(ns.proxies.values()) - on_new))
    return Upgrade(old.revision, old.version, new.revision, new.version, tuple(progress), tags(inv).get("default"))


def upgrade(inv: Inventory) -> Upgrade | None:
    """The upgrade in progress (more than one istiod revision installed), else None."""
    return per_inventory(inv, "revisions.upgrade", _upgrade)


def headline(inv: Inventory) -> str:
    """`Istio 1.27.3`; during an upgrade both versions: `Istio 1.26.4 → 1.27.3 (upgrading 1-26 → 1-27, …)`."""
    up = upgrade(inv)
    if up is None:
        return f"Istio {inv.istio_version or '(version unknown)'}"
    return (f"Istio {up.from_version or '?'} → {up.to_version or '?'} (upgrading revision {up.from_revision} → "
            f"{up.to_revision}: {up.done} of {len(up.namespaces)} namespaces done, default tag on "
            f"{up.default_tag or 'no revision'})")


# ---------------------------------------------------------------- the upgrade's target and its objects


def target(inv: Inventory, requested: str = "") -> Revision:
    """The revision an upgrade step moves to: the one requested (a revision or a tag), else the newest installed."""
    if requested:
        r = revision(inv, resolve(inv, requested))
        if r is None:
            raise MeshstepError(f"no istiod revision or tag {requested!r} in the cluster (revisions: "
                                f"{', '.join(r.revision for r in installed(inv)) or 'none'}; tags: "
                                f"{', '.join(tags(inv)) or 'none'})")
        return r
    revs = installed(inv)
    if not revs:
        raise MeshstepError("istiod is not installed: there is no revision to upgrade")
    return revs[-1]


def old_revisions(inv: Inventory, to: Revision) -> list[Revision]:
    return [r for r in installed(inv) if r.revision != to.revision]


def ready(r: Revision) -> bool:
    return r.ready_pods > 0


def uses(inv: Inventory, rev: str) -> list[str]:
    """What still needs a revision: namespaces injecting from it, tags pointing at it, proxies connected to it, and
    whatever else names its control plane (a workload's CA_ADDR or mesh config, a webhook, a tag's Service) other
    than the revision's own objects."""
    out = [f"namespace {n.namespace} ({n.label})" for n in namespace_revisions(inv).values() if n.revision == rev]
    out += [f"tag {t}" for t, r in sorted(tags(inv).items()) if r == rev]
    out += [f"{p.kind} {p.pod.namespace}/{p.pod.name}" for p in proxies(inv) if p.revision == rev]
    own = {o.ref for o in control_plane_objects(inv, rev)}
    out += [str(r) for r in control_plane.references(inv) if r.revision == rev and r.referrer not in own]
    return out


def control_plane_objects(inv: Inventory, rev: str) -> list[KubeObject]:
    """The objects of one istiod revision (what `istioctl uninstall --revision` removes): its Deployment, Service,
    ConfigMaps, webhooks, autoscaler and disruption budget, named after the revision. Gateways and tags labelled
    with the revision are not the control plane's."""
    suffix = "" if rev == "default" else f"-{rev}"  # an unrevisioned install names its objects without one
    names = {f"istiod{suffix}", f"istio{suffix}", f"istio-sidecar-injector{suffix}"}
    out = []
    for kind in ("Deployment", "Service", "ConfigMap", "MutatingWebhookConfiguration",
                 "ValidatingWebhookConfiguration", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceAccount"):
        for o in inv.of_kind(kind):
            if o.labels.get("istio.io/rev") == rev and "istio.io/tag" not in o.labels and (
                    o.name in names or o.name.startswith(f"istio-validator{suffix}-")):
                out.append(o)
    return out


def gateway_workloads(inv: Inventory) -> list[Proxy]:
    """The gateway proxies (ingress, egress, east-west), by pod."""
    return [p for p in proxies(inv) if p.kind == "gateway"]


# ---------------------------------------------------------------- how Istio was installed, and the commands


@dataclass(frozen=True)
class InstallMethod:
    method: str  # helm | istioctl | unknown
    evidence: str
    release: str | None = None  # the Helm release of istiod
    namespace: str = "istio-system"


def install_method(inv: Inventory) -> InstallMethod:
    """How istiod was installed, from its Deployment's marks: Helm records its release in the meta.helm.sh
    annotations; istioctl labels what it installs install.operator.istio.io/owning-resource (the charts label
    their objects app.kubernetes.io/managed-by: Helm under istioctl too, so that label alone decides nothing)."""
    deployments = [o for o in inv.of_kind("Deployment") if o.labels.get("app") == "istiod"]
    for d in deployments:
        release = d.annotations.get("meta.helm.sh/release-name")
        if release:
            return InstallMethod("helm", f"Deployment {d.namespace}/{d.name} annotation meta.helm.sh/release-name="
                                 f"{release}", release, d.annotations.get("meta.helm.sh/release-namespace")
                                 or d.namespace or "istio-system")
    for d in deployments:
        if "install.operator.istio.io/owning-resource" in d.labels:
            return InstallMethod("istioctl", f"Deployment {d.namespace}/{d.name} label "
                                 "install.operator.istio.io/owning-resource", None, d.namespace or "istio-system")
    return InstallMethod("unknown", "no istiod Deployment carries Helm's or istioctl's marks",
                         None, deployments[0].namespace if deployments else "istio-system")


def install_commands(inv: Inventory, rev: str, version: str | None) -> list[str]:
    """The commands that install revision `rev` beside the running one, for this cluster's install method."""
    how = install_method(inv)
    v = version or "<version>"
    lines = [f"# Istio was installed with {how.method} ({how.evidence})"]
    if how.method == "helm":
        lines += [f"helm upgrade istio-base istio/base -n {how.namespace} --version {v}",
                  f"helm install istiod-{rev} istio/istiod -n {how.namespace} --version {v} --set revision={rev} "
                  f"-f <the values of release {how.release}>"]
    else:
        lines += [f"istioctl x precheck  # with istioctl {v}",
                  f"istioctl install -f <the IstioOperator file you installed with> --set revision={rev} "
                  f"--set components.ingressGateways[0].enabled=false -y  # istioctl {v}: istiod only, gateways later"]
    lines.append(f"kubectl rollout status deployment/istiod-{rev} -n {how.namespace}")
    return lines


def installed_beside(inv: Inventory, old: Revision, rev: str, version: str) -> list[dict[str, Any]]:
    """What `install_commands` leave in the cluster, for an overlay (which runs no commands): revision `rev` at
    `version` beside `old`, installed as `old` was (the commands take its IstioOperator file or Helm values). Its
    control plane is `old`'s (control_plane_objects) as the same chart renders it with the other revision and
    version: every name and value the chart makes from `.Values.revision` (istiod-R, istio-R, the injector and
    validator webhooks, their selectors, REVISION, the mesh config's discoveryAddress) names `rev`, and every
    version (images, chart labels) is `version`, and a Helm release is the one the commands name; with istiod's pods
    back ready, as `kubectl rollout status` waits for them. The unnamed revision's objects are named otherwise
    (`istiod`, no istio.io/rev): not modelled."""
    if old.revision == "default":
        raise MeshstepError(f"revision-install: the running control plane is the unnamed revision (istiod, no "
                            f"istio.io/rev label): meshstep models a canary install only beside a named revision; "
                            f"install {rev} with the commands of `meshstep render revision-install --scope mesh --set "
                            f"version={version}`, then make the plan")
    swaps = [(re.compile(rf"(?<![\w.]){re.escape(old.revision)}(?!\w)"), rev)]
    if old.version:
        swaps.append((re.compile(rf"(?<![\w.]){re.escape(old.version)}(?![\w.])"), version))

    def renamed(value: Any) -> Any:
        if isinstance(value, str):
            for pattern, to in swaps:
                value = pattern.sub(to, value)
            return value
        if isinstance(value, dict):
            return {k: renamed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [renamed(v) for v in value]
        return value

    out = [renamed(copy_of(o)) for o in control_plane_objects(inv, old.revision)]
    for o in out:  # Helm's record of the release: `helm install istiod-<rev>` (install_commands) made these
        annotations = o["metadata"].get("annotations") or {}
        if "meta.helm.sh/release-name" in annotations:
            annotations["meta.helm.sh/release-name"] = f"istiod-{rev}"
    for c in inv.components_by_id.get("istiod", ()):
        pod = inv.pod(c.namespace, c.name) if c.kind == "Pod" else None
        if pod is None or resolve(inv, pod.labels.get("istio.io/rev")) != old.revision:
            continue
        raw = renamed(manifest(pod, dict(pod.labels), dict(pod.annotations)))
        raw["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}  # no IP of old's
        out.append(raw)
    return out


def uninstall_commands(inv: Inventory, rev: str) -> list[str]:
    how = install_method(inv)
    if how.method == "helm":
        return [f"helm delete istiod-{rev} -n {how.namespace}"]
    return [f"istioctl uninstall --revision {rev} -y"]


def default_tag_commands(inv: Inventory, rev: str) -> list[str]:
    how = install_method(inv)
    if how.method == "helm":  # Helm renders tags from the istiod chart's revisionTags
        return [f"helm template istiod istio/istiod -s templates/revision-tags.yaml --set revisionTags={{default}} "
                f"--set revision={rev} -n {how.namespace} | kubectl apply -f -"]
    return [f"istioctl tag set default --revision {rev} --overwrite"]


# ---------------------------------------------------------------- restarts, as an overlay sees them


def raw_container(c: Container) -> dict[str, Any]:
    out: dict[str, Any] = {"name": c.name, "image": c.image}
    if c.command:
        out["command"] = list(c.command)
    if c.args:
        out["args"] = list(c.args)
    if c.ports:
        out["ports"] = [{"name": p.name, "containerPort": p.port, "protocol": p.protocol} for p in c.ports]
    for probe in c.probes:
        handler = {"port": probe.port} | ({"path": probe.path} if probe.path else {})
        out[f"{probe.type}Probe"] = {probe.handler: handler} if probe.handler != "unknown" else {}
    if c.restart_always:
        out["restartPolicy"] = "Always"
    if c.run_as_user is not None:
        out["securityContext"] = {"runAsUser": c.run_as_user}
    return out


def with_tag(image: str, version: str) -> str:
    """`docker.io/istio/proxyv2:1.26.4-distroless` at 1.27.3 → `docker.io/istio/proxyv2:1.27.3-distroless`."""
    ref = image.rsplit("@", 1)[0]
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return f"{ref}:{version}"
    suffix = tag.split("-", 1)[1] if "-" in tag else ""
    return f"{repo}:{version}" + (f"-{suffix}" if suffix else "")


def restarted(inv: Inventory, proxy: Proxy, rev: Revision) -> dict[str, Any]:
    """The proxy's pod as it comes back from a restart connected to `rev`: the injector's (or the gateway
    template's) proxy at that revision's version, everything else as it was. For overlays, which run no
    controllers: a rehearsal of an upgrade stage applies these in place of `kubectl rollout restart`."""
    pod = proxy.pod
    labels = dict(pod.labels)
    annotations = dict(pod.annotations)
    for where in (labels, annotations):
        if "istio.io/rev" in where:
            where["istio.io/rev"] = rev.revision
    status = annotations.get("sidecar.istio.io/status")
    if status:
        try:
            parsed = json.loads(status)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            annotations["sidecar.istio.io/status"] = json.dumps(parsed | {"revision": rev.revision},
                                                                separators=(",", ":"))
    istio_images = ("proxyv2", "ztunnel")

    def moved(c: Container) -> dict[str, Any]:
        raw = raw_container(c)
        if rev.version and (c.image_name in istio_images or c.name in (PROXY_CONTAINER, "istio-init",
                                                                        "istio-validation")):
            raw["image"] = with_tag(c.image, rev.version)
        return raw

    return manifest(pod, labels, annotations, moved)


def manifest(pod: Pod, labels: dict[str, str], annotations: dict[str, str],
             container: Callable[[Container], dict[str, Any]] = raw_container) -> dict[str, Any]:
    """The pod as a manifest to put on an overlay, with these labels and annotations and each container as
    `container` writes it: how a pod comes back from a restart, or a capture, that an overlay cannot run."""
    spec = pod.spec
    owner = ({"kind": "ReplicaSet", "name": f"{pod.workload_name}-{labels['pod-template-hash']}"}
             if pod.workload_kind == "Deployment" and "pod-template-hash" in labels
             else {"kind": pod.workload_kind, "name": pod.workload_name})
    meta: dict[str, Any] = {"name": pod.name, "namespace": pod.namespace, "labels": labels,
                            "annotations": annotations}
    if pod.workload_kind != "Pod":
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "controller": True, **owner}]
    raw_spec: dict[str, Any] = {"serviceAccountName": spec.service_account,
                                "containers": [container(c) for c in spec.containers],
                                "initContainers": [container(c) for c in spec.init_containers]}
    if pod.node:
        raw_spec["nodeName"] = pod.node
    if spec.host_network:
        raw_spec["hostNetwork"] = True
    if spec.run_as_user is not None:
        raw_spec["securityContext"] = {"runAsUser": spec.run_as_user}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": raw_spec,
            "status": {"phase": pod.phase, "podIP": pod.ip,
                       "conditions": [{"type": "Ready", "status": "True" if pod.ready else "False"}]}}


def restart_namespace(inv: Inventory, namespace: str) -> list[dict[str, Any]]:
    """`kubectl rollout restart` of a namespace's injected workloads, as the overlay sees it: each sidecar pod back
    with what the namespace injects now."""
    ns = namespace_revisions(inv).get(namespace)
    rev = revision(inv, ns.revision) if ns and ns.revision else None
    if rev is None:
        return []
    return [restarted(inv, p, rev) for p in proxies(inv) if p.kind == "sidecar" and p.pod.namespace == namespace]


def restart_gateways(inv: Inventory) -> list[dict[str, Any]]:
    """The gateway pods back from their rollout, connected to the revision their Deployment's template names."""
    out = []
    for p in gateway_workloads(inv):
        w = inv.workload(p.pod.namespace, p.pod.workload_kind, p.pod.workload_name)
        named = w.template.labels.get("istio.io/rev") if w is not None and w.template is not None else None
        rev = revision(inv, resolve(inv, named)) if named else None
        if rev is not None:
            out.append(restarted(inv, p, rev))
    return out


def copy_of(o: KubeObject) -> dict[str, Any]:
    """An object as one would apply it, to be changed: a feature's patch starts from what the cluster has."""
    return copy.deepcopy(clean(o.raw))


def with_revisions(inv: Inventory, report: dict[str, Any]) -> dict[str, Any]:
    """The inventory report (`meshstep inventory --format json`) with what this module knows: per namespace its
    label as written and the revision and version it resolves to, every proxy's version and revision, the pods to
    restart, and an `upgrade` block while more than one revision runs. Proxy rows of `components` get their version
    and revision."""
    nss = namespace_revisions(inv)
    for row in report["namespaces"]:
        ns = nss.get(row["name"])
        row.update({"label": ns.label, "resolved_revision": ns.revision, "version": ns.version} if ns
                   else {"label": None, "resolved_revision": None, "version": None})
    report["proxies"] = [p.to_json() for p in proxies(inv)]
    for row in report["components"]:  # the proxy pods' version and revision, in the component list too
        proxy = proxy_of(inv, inv.pod(row["namespace"], row["name"])) if row["kind"] == "Pod" else None
        row.update(version=proxy.version if proxy else None, revision=proxy.revision if proxy else None)
    report["stale_pods"] = [p.to_json() | {"namespace_injects": nss[p.pod.namespace].revision}
                            for p in stale_pods(inv)]
    up = upgrade(inv)
    if up is not None:
        report["upgrade"] = up.to_json()
    return report


def pod_proxy_facts(inv: Inventory, pods: list[Pod]) -> tuple[str, ...]:
    """For `explain` of a workload whose pods run different proxy versions or revisions: one line per pod."""
    found = [(p, proxy_of(inv, p)) for p in pods]
    if len({(x.version, x.revision) if x else None for _, x in found}) < 2:
        return ()
    ns = namespace_revisions(inv).get(pods[0].namespace)
    now = f" (namespace {ns.namespace} injects {ns.revision}, {ns.version or 'version unknown'})" if ns and \
        ns.revision else ""
    return (f"its pods run different proxies{now}:",) + tuple(
        f"  {p.name}: " + (f"proxy {x.version or 'version unknown'}, revision {x.revision}"
                           + (" — restart it to move it" if ns and ns.revision and x.revision != ns.revision else "")
                           if x else "no proxy")
        for p, x in found)


def injection_labels(inv: Inventory, namespace: str, want: str = "",
                     feature: str = "sidecar-injection") -> dict[str, str]:
    """The label that has Istio's injector give `namespace`'s pods sidecars (of revision or tag `want`; default: what
    the namespace has, else the default tag, else the only revision): what sidecar-injection writes and what a hint
    telling people to inject a namespace says. MeshstepError when the cluster leaves the choice open."""
    revs = {r.revision: r for r in inv.revisions}
    tags = {t: r.revision for r in inv.revisions for t in r.tags}
    labels = inv.namespaces[namespace].labels if namespace in inv.namespaces else {}
    if not want and labels.get("istio.io/rev"):
        # Already on a revision (or tag): it stays there. Relabelling it `default` would move it to whatever
        # control plane the default tag points at, on its next restart.
        return {"istio.io/rev": labels["istio.io/rev"]}
    if not want and labels.get("istio-injection") == "enabled":
        return {"istio-injection": "enabled"}
    if want:
        if want not in revs and want not in tags:
            raise MeshstepError(f"{feature}: no istiod revision or tag {want!r} in the cluster "
                                f"(revisions: {', '.join(revs) or 'none'}; tags: {', '.join(tags) or 'none'})")
    elif "default" in tags:
        want = "default"
    elif len(revs) == 1:
        want = next(iter(revs))
    else:
        raise MeshstepError(f"{feature}: {len(revs)} istiod revisions and no default tag: "
                            "pass --set revision=NAME" if revs else f"{feature}: istiod is not installed")
    # The unnamed revision answers the legacy label; any named one (tags included) the revision label.
    return {"istio-injection": "enabled"} if want == "default" and "default" in revs else {"istio.io/rev": want}


def injection_label(inv: Inventory, namespace: str) -> str:
    """injection_labels as `kubectl label` takes it; where the cluster leaves it open, what a default install answers
    (no istiod seen) or `istio.io/rev=<revision>` (several revisions, no default tag)."""
    try:
        return " ".join(f"{k}={v}" for k, v in injection_labels(inv, namespace).items())
    except MeshstepError:
        return "istio.io/rev=<revision>" if inv.revisions else "istio-injection=enabled"
