"""Fixtures shared by every test package: Istio's reference data and the bundled demo cluster's inventory."""
from __future__ import annotations

from pathlib import Path

import pytest

from planner.inventory import Inventory, build_inventory
from planner.sources import load_snapshot

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "istio-reference"


@pytest.fixture(scope="session")
def reference() -> Path:
    """../shared/istio-reference (read it; never copy it into the project)."""
    if not REFERENCE.is_dir():
        pytest.fail(f"Istio reference data not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def demo_inventory() -> Inventory:
    """The bundled demo cluster's inventory, built once per test session (treat it as read-only)."""
    return build_inventory(load_snapshot("demo"))
