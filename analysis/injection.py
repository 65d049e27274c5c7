"""Sidecar injection checks (istioctl's injection analyzers): namespaces not labelled or labelled twice, pods
that should have a sidecar and do not, sidecars older than the injector's image, and `image: auto` that no
injector webhook will replace."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import yaml

from analysis.base import Context, check
from analysis.catalog import text
from cluster.inventory import Inventory
from cluster.model import Namespace, Pod, PodSpecSummary, Ref
from cluster.queries import (
    application_namespace,
    injector_webhooks,
    istio_objects,
    ns_of,
    opted_out,
    proxy_container,
    webhook_selects,
)

INJECTOR_CONFIGMAP = "istio-sidecar-injector"
_PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"
_PROXY_IMAGE_ANNOTATION = "sidecar.istio.io/proxyImage"


def _checked_namespaces(inv: Inventory) -> Iterator[Namespace]:
    return (ns for ns in inv.namespaces.values() if application_namespace(inv, ns.name))


def _injector_values(inv: Inventory) -> dict[str, dict[str, Any]]:
    """The injector's Helm values by revision, from `istio-sidecar-injector[-<rev>]` ConfigMaps (data.values)."""
    out = {}
    for cm in inv.of_kind("ConfigMap"):
        if cm.name != INJECTOR_CONFIGMAP and not cm.name.startswith(INJECTOR_CONFIGMAP + "-"):
            continue
        raw = (cm.raw.get("data") or {}).get("values")
        try:
            values = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            continue  # a hand-edited injector config this check cannot read; other checks still run
        rev = values.get("revision") or cm.name[len(INJECTOR_CONFIGMAP) + 1:] or "default"
        out[rev] = values
    return out


def _labels_requesting(ns: Namespace) -> list[str]:
    """The injection labels of a namespace that each ask for a data plane (disabled asks for none)."""
    found = []
    if ns.labels.get("istio-injection") == "enabled":
        found.append("istio-injection")
    if "istio.io/rev" in ns.labels:
        found.append("istio.io/rev")
    if ns.labels.get("istio.io/dataplane-mode") == "ambient":
        found.append("istio.io/dataplane-mode")
    return found


@check("IST0102", "Label the namespace: istio-injection=enabled (or istio.io/rev=<revision>) to add sidecars, "
       "istio.io/dataplane-mode=ambient for ambient, or istio-injection=disabled to say it stays out.",
       reads=("Namespace", "ConfigMap"))
def namespace_not_injected(ctx: Context) -> Iterator[tuple[Ref, str]]:
    if _enabled_by_default(ctx.inventory):
        return
    for ns in _checked_namespaces(ctx.inventory):
        if not _has_injection_label(ns):
            yield Ref("Namespace", None, ns.name), (
                f"The namespace is not enabled for Istio injection. Run 'kubectl label namespace {ns.name} "
                f"istio-injection=enabled' to enable it, or 'kubectl label namespace {ns.name} "
                f"istio-injection=disabled' to explicitly mark it as not needing injection.")


@check("IST0148", "Nothing to do if intended: the injector injects every unlabelled namespace "
       "(enableNamespacesByDefault). Label namespaces istio-injection=disabled to keep them out.",
       reads=("Namespace", "ConfigMap"))
def namespace_injected_by_default(ctx: Context) -> Iterator[tuple[Ref, str]]:
    if not _enabled_by_default(ctx.inventory):
        return
    for ns in _checked_namespaces(ctx.inventory):
        if not _has_injection_label(ns):
            yield Ref("Namespace", None, ns.name), ("is enabled for Istio injection, as Istio is installed with "
                                                    "enableNamespacesByDefault as true.")


def _has_injection_label(ns: Namespace) -> bool:
    return any(k in ns.labels for k in ("istio-injection", "istio.io/rev", "istio.io/dataplane-mode"))


def _enabled_by_default(inv: Inventory) -> bool:
    values = _injector_values(inv).get("default") or {}
    return bool((values.get("sidecarInjectorWebhook") or {}).get("enableNamespacesByDefault"))


@check("IST0123", "Keep one injection label on the namespace: istio-injection=enabled, istio.io/rev=<revision> or "
       "istio.io/dataplane-mode=ambient.",
       reads=("Namespace",))
def multiple_injection_labels(ctx: Context) -> Iterator[tuple[Ref, str]]:
    for ns in _checked_namespaces(ctx.inventory):
        if ns.labels.get("istio-injection") == "disabled":
            continue
        found = _labels_requesting(ns)
        if len(found) > 1:
            yield Ref("Namespace", None, ns.name), (f"The namespace has more than one type of injection labels "
                                                    f"{found}, which may lead to undefined behavior. Make sure only "
                                                    f"one injection label exists.")


@check("IST0103", "Restart the workload (kubectl rollout restart) so the injector adds the sidecar; if it still has "
       "none, check the injector webhook (kubectl get mutatingwebhookconfigurations) and istiod's logs.",
       reads=("Namespace", "Pod"))
def pod_missing_proxy(ctx: Context) -> Iterator[tuple[Ref, str]]:
    inv = ctx.inventory
    for ns in _checked_namespaces(inv):
        if ns.injection != "sidecar" or "istio.io/dataplane-mode" in _labels_requesting(ns):
            continue
        for pod in inv.pods_by_namespace.get(ns.name, ()):
            if proxy_container(pod.spec) is None and not pod.spec.host_network and not opted_out(pod.spec):
                yield pod.ref, text("IST0103", pod.name)


# ---------------------------------------------------------------- proxy image


def _expected_image(values: dict[str, Any]) -> str | None:
    g = values.get("global") or {}
    image = (g.get("proxy") or {}).get("image")
    if not image:
        return None
    if "/" in image:  # an absolute image overrides hub and tag
        return image
    return f"{g.get('hub')}/{image}:{g.get('tag')}"


def _image_type(inv: Inventory, pod: Pod, proxy_configs: dict[str, str]) -> str | None:
    """The proxy image variant (distroless, debug) a pod asks for: its proxy.istio.io/config annotation, else the
    ProxyConfig of its namespace or the root namespace, else the mesh config's defaultConfig."""
    raw = pod.annotations.get(_PROXY_CONFIG_ANNOTATION)
    if raw:
        try:
            t = ((yaml.safe_load(raw) or {}).get("image") or {}).get("imageType")
            if t:
                return t
        except (yaml.YAMLError, AttributeError):
            pass  # istiod ignores an unreadable annotation too
    t = proxy_configs.get(pod.namespace) or proxy_configs.get(inv.root_namespace)
    return t or ((inv.mesh_config.get("defaultConfig") or {}).get("image") or {}).get("imageType")


@check("IST0158", "Restart the namespace's workloads (kubectl rollout restart deployment -n <namespace>) so their "
       "sidecars are re-injected with the injector's current proxy image.",
       reads=("Namespace", "Pod", "ProxyConfig", "ConfigMap"))
def proxy_image_mismatch(ctx: Context) -> Iterator[tuple[Ref, str]]:
    inv = ctx.inventory
    injectors = _injector_values(inv)
    proxy_configs = {pc.namespace or "default": ((pc.spec.get("image") or {}).get("imageType") or "")
                     for pc in istio_objects(inv, "ProxyConfig")}
    for ns in _checked_namespaces(inv):
        if ns.injection != "sidecar":
            continue
        values = injectors.get(ns.revision or "default")
        expected = _expected_image(values) if values else None
        if not expected:
            continue
        stale = []
        for pod in inv.pods_by_namespace.get(ns.name, ()):
            proxy = proxy_container(pod.spec)
            if proxy is None or _PROXY_IMAGE_ANNOTATION in pod.annotations:
                continue
            variant = _image_type(inv, pod, proxy_configs)
            accepted = {expected} | ({f"{expected}-{variant}"} if variant and variant != "default" else set())
            if proxy.image not in accepted:
                stale.append(pod.name)
        if stale:
            yield Ref("Namespace", None, ns.name), (
                f"The Istio proxy images of the pods running in the namespace do not match the image defined in the "
                f"injection configuration (pod names: {stale}). This often happens after upgrading the Istio "
                f"control-plane and can be fixed by redeploying the pods.")


# ---------------------------------------------------------------- image: auto


def _auto_without_injector(inv: Inventory, namespace: str, template: PodSpecSummary,
                           webhooks: list[dict[str, Any]]) -> bool:
    if not any(c.image == "auto" for c in template.containers + template.init_containers):
        return False
    ns = inv.namespaces.get(namespace)
    ns_labels = ns.labels if ns else {}
    return not any(webhook_selects(wh, ns_labels, template.labels) for wh in webhooks)


_AUTO_HINT = ("Label the namespace (istio-injection=enabled or istio.io/rev) or the pod template "
              "(sidecar.istio.io/inject=true) so the injector replaces `image: auto` with the proxy image.")


@check("IST0146", _AUTO_HINT,
       reads=("Deployment", "Namespace", "MutatingWebhookConfiguration"))
def image_auto_deployment(ctx: Context) -> Iterator[tuple[Ref, str]]:
    inv = ctx.inventory
    webhooks = [wh for _, wh in injector_webhooks(inv)]
    deployments = {(w.namespace, w.name): w for w in inv.workloads if w.kind == "Deployment"}
    for d in inv.of_kind("Deployment"):
        w = deployments.get((ns_of(d), d.name))
        if w and w.template and _auto_without_injector(inv, w.namespace, w.template, webhooks):
            yield Ref("Deployment", d.namespace, d.name), text("IST0146", "Deployment", d.name)


@check("IST0147", _AUTO_HINT,
       reads=("Pod", "Namespace", "MutatingWebhookConfiguration"))
def image_auto_pod(ctx: Context) -> Iterator[tuple[Ref, str]]:
    inv = ctx.inventory
    webhooks = [wh for _, wh in injector_webhooks(inv)]
    for pod in inv.pods:
        if _auto_without_injector(inv, pod.namespace, pod.spec, webhooks):
            yield pod.ref, text("IST0147", "Pod", pod.name)
