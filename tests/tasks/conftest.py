"""The istio.io task corpus: scenario clusters written from istio.io's task pages (tests/fixtures/tasks), on the
demo's control plane, and a `step` fixture that counts the (task, step) pairs asserted, printed at the end of the
run (tests/conftest.py) so that CI output shows how much of each page the suite follows."""
from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.files import read_paths
from cluster.inventory import Inventory
from tests.features.conftest import run  # noqa: F401  (the CLI, as the feature tests run it)
from tests.features.corpus import GATEWAY_API_CRDS, _inventory, control_plane, running

TASKS = Path(__file__).parent.parent / "fixtures" / "tasks"


@functools.cache
def objects(task: str, gateway_api: bool = False) -> tuple[dict[str, Any], ...]:
    """The task's cluster as objects: the demo's control plane (with the Gateway API v1.3.0 CRDs from ../shared
    if asked), the task's YAML, and the pods its Deployments run (with sidecars where the namespace injects)."""
    crds = list(read_paths(sorted(GATEWAY_API_CRDS.glob("*.yaml")))) if gateway_api else []
    return tuple([*control_plane(), *crds, *running(list(read_paths([TASKS / f"{task}.yaml"])))])


def task_cluster(task: str, gateway_api: bool = False) -> Inventory:
    return _inventory(task, list(objects(task, gateway_api)))


def snapshot_file(task: str, where: Path, *more: dict[str, Any]) -> str:
    """The task's cluster (and `more` objects) as a snapshot file for `--source`."""
    path = where / f"{task}.yaml"
    path.write_text(yaml.safe_dump_all([*objects(task), *more], sort_keys=False))
    return str(path)


@pytest.fixture
def step(record_property) -> Callable[[str, str], None]:
    """step(task, name): one step of an istio.io task whose outcome the test asserts next."""
    def record(task: str, name: str) -> None:
        record_property("task_step", f"{task}: {name}")
    return record
