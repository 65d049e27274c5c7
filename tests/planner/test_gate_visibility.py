"""A gate on a snapshot that lacks a kind (its visibility says the source could not list pods): the gate checks
that read it are skipped, and the gate says so — the kind, why, how to check — instead of passing on what it
could not see, or refusing as if the pods were not there."""
from __future__ import annotations

import pytest

import planner.plan
from cluster.inventory import Inventory, build_inventory
from cluster.snapshot import NotVisible, Snapshot, Visibility
from cluster.sources import load_snapshot
from features._gate import render_gated
from features.base import get


@pytest.fixture(scope="module")
def without_pods() -> Inventory:
    demo = load_snapshot("demo")
    return build_inventory(Snapshot("demo-without-pods",
                                    lambda v: (o for o in demo.produce(v) if o.get("kind") != "Pod"),
                                    Visibility([NotVisible("Pod", "pods", "403 Forbidden", forbidden=True)])))


def test_a_gate_shows_the_checks_it_skipped_with_the_reason_and_how_to_check(without_pods):
    stage = planner.plan.StageSpec("Strict", "", (planner.plan.Step("mtls-strict", "shop"),))
    result = planner.plan.gate(stage, without_pods)
    skipped = [m for m in result.messages if m.code == "MST0004"]
    assert len(skipped) == 1, result.messages
    m = skipped[0]
    assert m.level == "warning" and str(m.ref) == "APIResource pods"
    assert "403 Forbidden" in m.message and "MST0401" in m.message
    assert "kubectl auth can-i list pods -A" in m.hint
    # What was skipped is not listed as having run, and it is listed as skipped, named.
    assert not any(r.startswith(("MST0401", "MST0406", "MST0407")) for r in result.ran)
    for name in ("MST0401 PodWithoutSidecarCallsStrict", "MST0406 PodWithoutSidecarCallsUnseen",
                 "MST0407 PodWithoutSidecarCallsNoStrictServer"):
        assert any(s.startswith(f"{name} (mtls-strict in shop)") and "pods" in s for s in result.skipped), \
            result.skipped


def test_a_rendering_behind_its_gate_says_what_it_could_not_check(without_pods):
    _, msgs = render_gated(get("sidecar-injection"), {}, "legacy", without_pods)
    skipped = [m for m in msgs if m.code == "MST0004"]
    assert {str(m.ref) for m in skipped} == {"APIResource pods"}
    # the gate's checks, and the invariant that compares callers before and after
    gate, invariants = sorted(skipped, key=lambda m: "invariant" in m.message)
    assert "MST0101 (readiness)" in gate.message and "invariant not checked: MST0812" in invariants.message
    # Without pods, MST0101 would find no pod to restart: it must not run, so it cannot say so.
    assert not [m for m in msgs if m.code == "MST0101"]


def test_the_install_gate_does_not_call_istiod_ready_when_it_could_not_see_its_pods(without_pods):
    result = planner.plan.gate(planner.plan.StageSpec("Install", "", ()), without_pods)
    assert [(m.code, m.level, str(m.ref)) for m in result.messages] == [("MST0004", "warning", "APIResource pods")]
    assert "MST0002 (install)" in result.messages[0].message
    assert result.ran == ("MST0001 Istio's CRDs and istiod are installed",)
    assert result.skipped == ("MST0002 each istiod revision has a ready pod: listing pods was refused (403 Forbidden)",)
    assert not planner.plan.exit_check(planner.plan.StageSpec("Install", "", ()), without_pods, ()).passed
