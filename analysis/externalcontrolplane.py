"""Webhooks of a cluster whose istiod runs elsewhere (istioctl's externalcontrolplane analyzer): Istio's validating
and injector webhooks must reach the external control plane through a URL (or an in-cluster Service); one with
neither, or an unparseable URL, breaks injection and validation, and a bare IP address is brittle.

istioctl also resolves each URL's hostname through DNS; meshstep makes no network calls from its checks, so it
leaves that part to `nslookup`."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from urllib.parse import urlsplit

from analysis.base import Context, check
from cluster.inventory import Inventory
from cluster.model import KubeObject, Ref

_VALIDATOR_PREFIX = "istio-validator"
_DEFAULT_VALIDATOR = "istiod-default-validator"
_INJECTOR_PREFIX = "istio-sidecar-injector"


def _istio_webhooks(inv: Inventory) -> Iterator[tuple[KubeObject, str, dict]]:
    """(configuration, webhook name, clientConfig) of Istio's validating and injector webhook configurations."""
    for cfg in inv.of_kind("ValidatingWebhookConfiguration"):
        if cfg.name == _DEFAULT_VALIDATOR or cfg.name.startswith(_VALIDATOR_PREFIX):
            for hook in cfg.raw.get("webhooks") or ():
                yield cfg, str(hook.get("name") or ""), hook.get("clientConfig") or {}
    for cfg in inv.of_kind("MutatingWebhookConfiguration"):
        if cfg.name.startswith(_INJECTOR_PREFIX):
            for hook in cfg.raw.get("webhooks") or ():
                yield cfg, str(hook.get("name") or ""), hook.get("clientConfig") or {}


def _host(url: str) -> str | None:
    """The URL's host; None when it cannot be parsed."""
    try:
        parts = urlsplit(url)
        return parts.hostname or ""
    except ValueError:
        return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@check("IST0163", "Set the webhook's clientConfig.url to the external control plane's ingress address (https://<istiod "
       "hostname>:15017/…), as the external-istiod install renders it, or point it at a Service.",
       reads=("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"))
def invalid_external_control_plane(ctx: Context) -> Iterator[tuple[Ref, str]]:
    for cfg, hook, client in _istio_webhooks(ctx.inventory):
        url = client.get("url")
        if url is None and client.get("service") is None:
            problem, shown = "is blank", ""
        elif url is not None and _host(str(url)) is None:
            problem, shown = "was provided in an invalid format", str(url)
        else:
            continue
        yield cfg.ref, (f"The hostname ({shown}) that was provided for the webhook ({hook}) to reach the ingress "
                        f"gateway on the external control plane cluster {problem}. Traffic may not flow properly.")


@check("IST0164", "Give the external control plane's ingress gateway a DNS name and use it in the webhook URL: an IP "
       "address changes when the load balancer is recreated, and its certificate must then carry an IP SAN.",
       reads=("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"))
def external_control_plane_ip(ctx: Context) -> Iterator[tuple[Ref, str]]:
    for cfg, hook, client in _istio_webhooks(ctx.inventory):
        url = client.get("url")
        host = _host(str(url)) if url is not None else None
        if host and _is_ip(host):
            yield cfg.ref, (f"The address ({url}) that was provided for the webhook ({hook}) to reach the ingress "
                            f"gateway on the external control plane cluster is an IP address. This is not "
                            f"recommended for a production environment.")
