"""What names an istiod revision, and how to name another one instead: the addresses and ConfigMaps through which
proxies, webhooks and Services reach a revision's control plane. A proxy follows the istiod its CA_ADDR and its
discovery address name, whatever its istio.io/rev label says; a canary upgrade moves them all, and an old revision
goes only once nothing names it (https://istio.io/latest/docs/setup/upgrade/canary/).

Revision `R` of namespace `N` is served at `istiod-R.N.svc:15012` (`istiod` for the unnamed revision, and as the
default tag's stable address) and keeps its mesh config in ConfigMap `istio-R` (`istio`): the gateway charts write
the address into CA_ADDR and mount the ConfigMap, whose defaultConfig.discoveryAddress the injector also writes into
each proxy's PROXY_CONFIG."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from cluster.inventory import Inventory
from cluster.model import Ref, Revision
from cluster.queries import per_inventory

XDS_PORT = 15012  # istiod's port for certificates and config over mTLS
WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet")
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"


def service_name(rev: str) -> str:
    return "istiod" if rev == "default" else f"istiod-{rev}"


def mesh_config_name(rev: str) -> str:
    return "istio" if rev == "default" else f"istio-{rev}"


def ca_address(rev: Revision) -> str:
    return f"{service_name(rev.revision)}.{rev.namespace}.svc:{XDS_PORT}"


def discovery_address(inv: Inventory, rev: Revision) -> str:
    """Where the revision's proxies get their config: its mesh config's defaultConfig.discoveryAddress, else its
    istiod Service (Istio's default)."""
    default = (inv.mesh_configs.get(rev.revision) or {}).get("defaultConfig") or {}
    return default.get("discoveryAddress") or ca_address(rev)


# ---------------------------------------------------------------- which revision a name reaches


def _service_revision(inv: Inventory, namespace: str | None, name: str) -> str | None:
    """The revision whose istiod pods a Service selects; when the cluster does not have it, the revision its name
    says (`istiod` the unnamed one's)."""
    svc = inv.get("Service", namespace, name)
    if svc is not None:
        selector = (svc.raw.get("spec") or {}).get("selector") or {}
        return (selector.get("istio.io/rev") or "default") if selector.get("app") == "istiod" else None
    if name == "istiod":
        return "default"
    return name.removeprefix("istiod-") if name.startswith("istiod-") else None


def _address_revision(inv: Inventory, address: str) -> str | None:
    """`istiod-1-26.istio-system.svc:15012` (or `….svc.cluster.local`) → 1-26; None for another host."""
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 else address
    parts = host.split(".")
    if len(parts) < 3 or parts[2] != "svc":
        return None
    return _service_revision(inv, parts[1], parts[0])


def _config_map_revision(inv: Inventory, name: str) -> str | None:
    """The revision whose mesh config a ConfigMap name is: `istio` the unnamed revision's (absent or not: the charts
    mount it optional), `istio-1-26` an installed revision's or one the cluster has the mesh config of."""
    if name == "istio":
        return "default"
    revs = {r.revision for r in inv.revisions} | set(inv.mesh_configs)
    return next((r for r in revs if mesh_config_name(r) == name), None)


# ---------------------------------------------------------------- the places a pod template names a revision


@dataclass
class _Slot:
    """One place of a pod template that names a control plane: what it is, its value, and how to change it."""

    role: str  # ca | discovery | mesh-config
    what: str  # `env CA_ADDR`, `volume config-volume`
    value: str
    set: Callable[[str], None]


def _set_key(where: dict[str, Any], key: str) -> Callable[[str], None]:
    return lambda value: where.__setitem__(key, value)


def _proxy_config(owner: dict[str, Any], key: str, what: str, dump: Callable[[Any], str]) -> Iterator[_Slot]:
    """The discoveryAddress of a proxy config written as YAML or JSON in owner[key]."""
    try:
        parsed = yaml.safe_load(owner.get(key) or "")
    except yaml.YAMLError:
        return  # not a proxy config istio-agent would read either
    if isinstance(parsed, dict) and isinstance(parsed.get("discoveryAddress"), str):
        def set_address(value: str) -> None:
            parsed["discoveryAddress"] = value
            owner[key] = dump(parsed)
        yield _Slot("discovery", f"{what} discoveryAddress", parsed["discoveryAddress"], set_address)


def _slots(template: dict[str, Any]) -> Iterator[_Slot]:
    spec = template.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for env in c.get("env") or ():
            if env.get("name") == "CA_ADDR" and isinstance(env.get("value"), str):
                yield _Slot("ca", "env CA_ADDR", env["value"], _set_key(env, "value"))
            elif env.get("name") == "PROXY_CONFIG":  # the injector writes JSON
                yield from _proxy_config(env, "value", "env PROXY_CONFIG",
                                         lambda p: json.dumps(p, separators=(",", ":")))
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    if PROXY_CONFIG_ANNOTATION in annotations:
        yield from _proxy_config(annotations, PROXY_CONFIG_ANNOTATION, f"annotation {PROXY_CONFIG_ANNOTATION}",
                                 lambda p: yaml.safe_dump(p, sort_keys=False))
    for volume in spec.get("volumes") or ():
        cm = volume.get("configMap") or {}
        if cm.get("name"):
            yield _Slot("mesh-config", f"volume {volume.get('name')}", cm["name"], _set_key(cm, "name"))


def _slot_revision(inv: Inventory, slot: _Slot) -> str | None:
    return _config_map_revision(inv, slot.value) if slot.role == "mesh-config" else _address_revision(inv, slot.value)


def repoint(template: dict[str, Any], inv: Inventory, to: Revision) -> dict[str, Any]:
    """The pod template with every name of another revision's control plane replaced by `to`'s, as the charts and
    the injector render them for `to`: CA_ADDR, the discovery address, the mesh config volume. Names of something
    else (an external CA, the root certificate every revision writes) stay."""
    for slot in _slots(template):
        rev = _slot_revision(inv, slot)
        if rev is None or rev == to.revision:
            continue
        slot.set({"ca": ca_address(to), "discovery": discovery_address(inv, to),
                  "mesh-config": mesh_config_name(to.revision)}[slot.role])
    return template


# ---------------------------------------------------------------- everything that names a revision


@dataclass(frozen=True)
class Reference:
    referrer: Ref
    what: str  # `env CA_ADDR istiod-1-26.istio-system.svc:15012`, `selects istiod of revision 1-26`
    revision: str

    def __str__(self) -> str:
        return f"{self.referrer}: {self.what}"


def _references(inv: Inventory) -> tuple[Reference, ...]:
    out = []
    for kind in WORKLOAD_KINDS:
        for w in inv.of_kind(kind):
            for slot in _slots(((w.raw.get("spec") or {}).get("template")) or {}):
                rev = _slot_revision(inv, slot)
                if rev is not None:
                    shown = f"(ConfigMap {slot.value})" if slot.role == "mesh-config" else slot.value
                    out.append(Reference(w.ref, f"{slot.what} {shown}", rev))
    for kind in WEBHOOK_KINDS:
        for hook in inv.of_kind(kind):
            for h in hook.raw.get("webhooks") or ():
                svc = (h.get("clientConfig") or {}).get("service") or {}
                rev = _service_revision(inv, svc.get("namespace"), svc["name"]) if svc.get("name") else None
                if rev is not None:
                    out.append(Reference(hook.ref, f"calls Service {svc.get('namespace')}/{svc['name']}", rev))
    for svc in inv.of_kind("Service"):
        rev = _service_revision(inv, svc.namespace, svc.name)
        if rev is not None:
            out.append(Reference(svc.ref, f"selects istiod of revision {rev}", rev))
    return tuple(dict.fromkeys(out))


def references(inv: Inventory) -> tuple[Reference, ...]:
    """Every workload template, webhook and Service that names an istiod revision, and the revision it names."""
    return per_inventory(inv, "control_plane.references", _references)


def tag_objects(inv: Inventory, tag: str) -> list[Any]:
    """The objects that make a revision tag: its webhooks and Services (labelled istio.io/tag), and for the default
    tag the `istiod` Service, the stable address that istiod.istio-system.svc names, unless it is the unnamed
    revision's own."""
    out = [o for kind in (*WEBHOOK_KINDS, "Service") for o in inv.of_kind(kind) if o.labels.get("istio.io/tag") == tag]
    if tag == "default" and not any(r.revision == "default" for r in inv.revisions):
        out += [o for o in inv.of_kind("Service") if o.name == "istiod" and o not in out
                and _service_revision(inv, o.namespace, o.name) is not None]
    return out
