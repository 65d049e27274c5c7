"""Fixtures shared by every test package: Istio's reference data and the bundled demo cluster's inventory."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cluster.inventory import Inventory, build_inventory
from cluster.sources import load_snapshot

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


@pytest.fixture(autouse=True)
def _private_audit_key_and_checkpoints(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """Each test's audit key and checkpoints (state.audit) and inventory cache (cluster.cache) in a directory of its
    own, never the user's."""
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.delenv("MESHSTEP_CACHE_DIR", raising=False)
    monkeypatch.delenv("MESHSTEP_CACHE", raising=False)
    monkeypatch.delenv("MESHSTEP_AUDIT_KEY", raising=False)
    monkeypatch.delenv("MESHSTEP_AUDIT_CHECKPOINTS", raising=False)
    monkeypatch.delenv("MESHSTEP_WEBHOOKS", raising=False)  # a developer's webhooks are never told of a test


# ---------------------------------------------------------------- the property test's count of cases

def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Tests that run many cases (tests/features/test_property.py) record their outcomes as the user property
    `property_cases`; they are summed here, in the process that reports (the controller under xdist)."""
    if report.when == "call":
        for name, value in report.user_properties:
            if name == "property_cases":
                for outcome, n in value.items():
                    _CASES[outcome] = _CASES.get(outcome, 0) + n
            if name == "summary":  # a corpus's count of cases (tests/app/test_hostile_content.py)
                _SUMMARIES.append(value)
            if name == "task_step":  # tests/tasks: one (task, step) of an istio.io page, asserted
                _TASK_STEPS.setdefault(value, report.outcome)
                if report.outcome != "passed":
                    _TASK_STEPS[value] = report.outcome


_CASES: dict[str, int] = {}
_TASK_STEPS: dict[str, str] = {}
_SUMMARIES: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for text in _SUMMARIES:
        for line in text.splitlines():
            terminalreporter.write_line(line)
    if _TASK_STEPS:
        passed = sum(o == "passed" for o in _TASK_STEPS.values())
        tasks = {step.split(":")[0] for step in _TASK_STEPS}
        terminalreporter.write_line(f"istio.io task steps (task, step) asserted: {passed} of {len(_TASK_STEPS)} "
                                    f"across {len(tasks)} tasks ({len(_TASK_STEPS) - passed} not passing)")
    if _CASES:
        parts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(_CASES.items()))
        terminalreporter.write_line(f"property cases (cluster, feature, scope): {sum(_CASES.values())} — {parts}")
