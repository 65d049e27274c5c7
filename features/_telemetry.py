"""Telemetry API features: each one sets its own section of the scope's selector-less Telemetry."""
from __future__ import annotations

from typing import Any

from cluster.inventory import Inventory
from features._istio import telemetry, telemetry_scopes
from features.base import MESH, Feature, Observation


class TelemetrySection(Feature):
    section: str  # tracing | metrics | accessLogging
    mesh_config_key: str  # what turns it on mesh-wide in mesh config, when the Telemetry API is not used

    @property
    def owns(self) -> tuple[str, ...]:  # type: ignore[override]
        return (f"spec.{self.section}",)

    def section_value(self, p: dict[str, Any], inv: Inventory) -> Any:
        """The section's value: by default one entry naming the `provider` parameter."""
        return [{"providers": [{"name": p["provider"]}]}]

    def build(self, p, scope, inv):
        t = telemetry(inv, scope)
        t["spec"][self.section] = self.section_value(p, inv)
        return [t]

    def mesh_config_on(self, inv: Inventory) -> bool:
        return bool(inv.mesh_config.get(self.mesh_config_key))

    def detect(self, inv):
        found = telemetry_scopes(inv, self.section)
        if MESH not in found and self.mesh_config_on(inv):
            found[MESH] = [f"mesh config {self.mesh_config_key}"]
        return [Observation(self.id, scope, ev) for scope, ev in sorted(found.items())]
