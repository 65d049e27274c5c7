"""The plan engine against its store protocol: each test runs on the real Store (SQLite) and on an in-memory store
(tests/planner/memory.py) with the same assertions, so the engine is shown to need no more than the protocol. The
cluster is the demo's inventory; a real plan's cluster changes only as the test applies a stage's YAML to it."""
from __future__ import annotations

import json
from collections.abc import Iterator

import msgspec
import pytest
from sqlalchemy import text

import planner.plan
from cluster.apply import identity
from cluster.errors import MeshstepError
from cluster.inventory import Inventory, build_inventory
from cluster.sources import load_snapshot
from planner import moves, stages
from planner.storage import PlanStore
from state.models import FlagBefore, PlanMode, StageRecord, StageStatus
from state.store import Store
from tests.planner.memory import MemoryStore


@pytest.fixture(scope="module")
def demo() -> Inventory:
    return build_inventory(load_snapshot("demo"))


@pytest.fixture(params=["sqlite", "memory"])
def plan_store(request: pytest.FixtureRequest, tmp_path) -> Iterator[PlanStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.close()


def _plan(store: PlanStore, demo: Inventory, *steps: tuple[str, str]):
    """A custom plan of one stage per step (none: the install check), read back from the store."""
    plan = stages.create(store, "demo", demo, "custom", None, "p", "alice")
    for feature, scope in steps or ((None, None),):
        step = [planner.plan.Step(feature, scope)] if feature else []
        stages.add_stage(store, store.get_plan(plan.id), demo, feature or "install", "", step, "alice")
    return store.get_plan(plan.id)


def _flags(store: PlanStore) -> list[tuple[str, str, str]]:
    return [(f.feature, f.scope, f.state) for f in store.list_flags("demo")]


def _step(store: PlanStore, plan, inventory: Inventory, **kw):
    moved = moves.advance(store, store.get_plan(plan.id), inventory, "alice", **kw)
    return moved, store.get_plan(plan.id)


def store_stage(store: PlanStore, plan):
    return store.get_plan(plan.id).stages[0]


def test_a_stage_walks_the_table_with_its_flags_and_rolls_back(plan_store, demo):
    plan = _plan(plan_store, demo, ("metrics", "payments"))
    stage, plan = _step(plan_store, plan, demo)
    assert (stage.status, plan.mode, _flags(plan_store)) == (StageStatus.READY, PlanMode.REAL, [])
    record = stage.record
    assert record.apply_yaml and record.gate == () and not record.found_on
    stage, plan = _step(plan_store, plan, demo)
    assert (stage.status, _flags(plan_store)) == (StageStatus.APPLIED, [("metrics", "payments", "enabling")])
    with pytest.raises(moves.NotVerified, match="metrics is not observed on in payments"):
        _step(plan_store, plan, demo)  # the team has not applied it: the cluster is as it was
    assert store_stage(plan_store, plan).version == stage.version
    applied = demo.with_changes(apply=planner.plan.objects_of(record.apply_yaml))
    stage, plan = _step(plan_store, plan, applied)
    assert (stage.status, _flags(plan_store)) == (StageStatus.VERIFIED, [("metrics", "payments", "on")])
    stage, plan = _step(plan_store, plan, applied)
    assert (stage.status, plan.status, stages.current_stage(plan)) == (StageStatus.DONE, "done", None)
    assert stages.rollback_target(plan).id == stage.id
    rolled = moves.rollback(plan_store, plan, applied, "alice", "metrics cost too much")
    assert rolled.stage.status == StageStatus.ROLLED_BACK and rolled.undo_yaml and "apply this" in rolled.said
    assert (plan_store.get_plan(plan.id).status, _flags(plan_store)) == ("active", [])  # none was recorded before


def test_a_failing_gate_blocks_once_and_an_override_goes_on(plan_store, demo):
    plan = _plan(plan_store, demo, ("mtls-strict", "shop"))
    with pytest.raises(moves.GateBlocked, match="is blocked by"):
        _step(plan_store, plan, demo)
    blocked = store_stage(plan_store, plan)
    assert blocked.status == StageStatus.BLOCKED and blocked.record.apply_yaml is None
    assert any(m["level"] == "error" for m in blocked.record.gate)
    with pytest.raises(moves.GateBlocked):  # blocked again: nothing to record
        _step(plan_store, plan, demo)
    assert store_stage(plan_store, plan).version == blocked.version
    stage, _ = _step(plan_store, plan, demo, override_reason="plaintext callers are gone")
    assert (stage.status, stage.override_reason) == (StageStatus.READY, "plaintext callers are gone")
    assert stage.record.apply_yaml


def test_a_rehearsal_walks_to_done_on_the_overlay_and_leaves_the_flags(plan_store, demo):
    plan = _plan(plan_store, demo, ("metrics", "payments"))
    seen = []
    while (stage := stages.current_stage(plan)) is not None:
        moved, plan = _step(plan_store, plan, demo, rehearse=True)
        seen.append(moved.status)
        assert moved.id == stage.id
    assert seen == [StageStatus.READY, StageStatus.APPLIED, StageStatus.VERIFIED, StageStatus.DONE]
    assert (plan.mode, plan.status, _flags(plan_store)) == (PlanMode.REHEARSAL, "done", [])
    rolled = moves.rollback(plan_store, plan, demo, "alice", "try again")
    assert "leave the plan's overlay" in rolled.said and _flags(plan_store) == []
    assert rolled.undo_yaml == ""  # the cluster never had it: nothing for the team to apply
    with pytest.raises(MeshstepError, match="pass --rehearse"):
        _step(plan_store, plan, demo)


@pytest.mark.parametrize(("applied_by", "reachable", "by"), [
    ("the team", True, moves.RollbackBy.TEAM), ("the team", False, moves.RollbackBy.TEAM),
    ("meshstep", True, moves.RollbackBy.MESHSTEP), ("meshstep", False, moves.RollbackBy.TEAM),
    ("gitops", True, moves.RollbackBy.GITOPS), ("gitops", False, moves.RollbackBy.TEAM),
    ("rehearsal", True, moves.RollbackBy.OVERLAY), ("rehearsal", False, moves.RollbackBy.OVERLAY),
])
def test_who_rolls_a_stage_back_follows_who_applied_it(plan_store, demo, applied_by, reachable, by):
    """A stage applied by meshstep (its objects recorded before and after) or by GitOps is rolled back the same way
    when meshstep reaches the cluster, else by the team with the YAML; a rehearsed one leaves the overlay."""
    plan = _plan(plan_store, demo, ("metrics", "payments"))
    for _ in range(2):  # ready, then applied
        stage, plan = _step(plan_store, plan, demo, rehearse=applied_by == "rehearsal")
    assert stage.status == StageStatus.APPLIED
    objects = planner.plan.objects_of(stage.record.apply_yaml)
    record = {"meshstep": msgspec.structs.replace(stage.record, applied=tuple(
                  {"key": list(identity(o)), "before": None, "after": o} for o in objects)),
              "gitops": msgspec.structs.replace(stage.record, gitops="applied")}.get(applied_by)
    if record is not None:
        plan_store.transition_stage(stage.id, StageStatus.APPLIED, "alice", f"applied by {applied_by}",
                                    stage.version, record=record)
        plan = plan_store.get_plan(plan.id)
    assert moves.rollback_by(plan, stages.rollback_target(plan), reachable) == by


def test_a_stage_with_nothing_to_apply_is_done_at_once_and_not_rolled_back(plan_store, demo):
    plan = _plan(plan_store, demo)  # the install check
    stage, plan = _step(plan_store, plan, demo)
    assert (stage.status, stage.record.apply_yaml, plan.status) == (StageStatus.DONE, "", "done")
    assert stages.rollback_target(plan) is None
    with pytest.raises(MeshstepError, match="no stage of its own"):
        moves.rollback(plan_store, plan, demo, "alice", "why not")


def test_a_plan_stored_by_an_older_meshstep_reads_and_rolls_back(tmp_path, demo):
    """Stage data as meshstep wrote it before the typed record: a found-on stage without the marker (done, no YAML),
    and an applied stage whose flags_before the rollback restores."""
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        plan = _plan(store, demo, ("metrics", "mesh"), ("metrics", "payments"))
        old, applied = plan.stages
        cfg = planner.plan.config(stages.stage_spec(applied), demo)
        data = {"gate": [], "apply_yaml": cfg.apply_yaml, "rollback_yaml": cfg.rollback_yaml, "notes": [],
                "baseline_errors": ["IST0101 Pod shop/x"],
                "flags_before": [{"feature": "metrics", "scope": "payments", "params": {"x": 1}, "state": "off"}]}
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE stages SET status = 'done', data = '{}' WHERE id = :id"), {"id": old.id})
            conn.execute(text("UPDATE stages SET status = 'applied', data = :data WHERE id = :id"),
                         {"id": applied.id, "data": json.dumps(data)})
        plan = store.get_plan(plan.id)
        old, applied = plan.stages
        assert stages.found_on(old) and not stages.found_on(applied)
        assert applied.record == StageRecord(gate=(), apply_yaml=cfg.apply_yaml, rollback_yaml=cfg.rollback_yaml,
                                             baseline_errors=("IST0101 Pod shop/x",),
                                             flags_before=(FlagBefore("metrics", "payments", {"x": 1}, "off"),))
        moves.rollback(store, plan, demo, "alice", "back to before")
        assert _flags(store) == [("metrics", "payments", "off")]
    finally:
        store.close()


def test_the_overlay_is_built_once_and_walked_on_from(plan_store, demo):
    """A walk starts from the cluster as the same earlier stages left it (kept with the source's inventory) and is
    the overlay a walk from the source builds; a stage that changes (rolled back) is walked afresh."""
    from planner.overlay import overlay_at

    plan = stages.create(plan_store, "demo", demo, "routing-first", ["shop"], "p", "alice")
    done = moves.rehearse(plan_store, plan, demo, "alice", to=6)
    assert done.refusal is None
    plan = plan_store.get_plan(plan.id)
    target = plan.stages[6]  # after stages 5 and 6, which the rehearsal turned on
    kept = overlay_at(plan, demo, target).inventory
    assert overlay_at(plan, demo, target).inventory is kept  # walked on from what the last walk kept
    fresh = overlay_at(plan, build_inventory(load_snapshot("demo")), target).inventory  # another source: afresh
    assert fresh is not kept
    assert (fresh.objects, fresh.pods, fresh.workloads) == (kept.objects, kept.pods, kept.workloads)
    moves.rollback(plan_store, plan, demo, "alice", "try again")
    plan = plan_store.get_plan(plan.id)
    again = overlay_at(plan, demo, target).inventory
    assert again is not kept
