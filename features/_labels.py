"""Namespace label features (sidecar injection, ambient): the change is a label, rendered as the Namespace to
apply and the kubectl command, with the reminder that only new pods are affected."""
from __future__ import annotations

from typing import Any

from features.base import clean
from planner.inventory import Inventory


def namespace_with(inv: Inventory, name: str, set_: dict[str, str], drop: tuple[str, ...]) -> dict[str, Any]:
    ns = inv.get("Namespace", None, name)
    raw = clean(ns.raw) if ns else {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    labels = {k: v for k, v in (raw["metadata"].get("labels") or {}).items() if k not in drop} | set_
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {**raw["metadata"], "labels": labels}}


def label_command(name: str, set_: dict[str, str], drop: tuple[str, ...]) -> str:
    parts = [f"{k}={v}" for k, v in set_.items()] + [f"{k}-" for k in drop]
    return f"kubectl label namespace {name} {' '.join(parts)} --overwrite"
