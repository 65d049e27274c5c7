"""A plan's mode and the stage lifecycle table: a plan is real or a rehearsal, fixed by its first move, and the
two never mix; every status the table names is one the store accepts."""
from __future__ import annotations

import pytest

from cluster.errors import MeshstepError
from planner import lifecycle
from planner.lifecycle import Facts
from state.models import StageStatus
from state.store import Store


def test_the_first_move_fixes_the_mode_and_the_other_is_refused(store: Store):
    plan = store.create_plan("demo", "p", "custom", [{"title": "a", "features": []}, {"title": "b"}], "alice")
    first, second = plan.stages
    assert plan.mode is None
    store.transition_stage(first.id, "ready", "alice", "rehearsal: entry gate passed", plan_mode="rehearsal")
    with pytest.raises(MeshstepError, match="is a rehearsal plan"):
        store.transition_stage(second.id, "ready", "alice", "entry gate passed", plan_mode="real")
    (plan,) = store.list_plans("demo")
    assert plan.mode == "rehearsal" and [s.status for s in plan.stages] == ["ready", "planned"]
    actions = [e.action for e in store.audit_events()]
    assert actions[-2:] == ["plan.mode", "stage.rehearsal"] and "stage.status" not in actions


def test_the_lifecycle_table_is_closed():
    """Every status but done offers an advance whose passing step leads on; every stored status is reached from
    planned; nothing skips the gate; only the table's moves exist."""
    every = [Facts(passed, nothing, undoable) for passed in (True, False) for nothing in (True, False)
             for undoable in (True, False)]
    assert set(lifecycle.ADVANCE) == set(StageStatus) - {StageStatus.DONE}
    for source, move in lifecycle.ADVANCE.items():
        assert lifecycle.next_status(source, move.event, Facts()) is not None
        assert move.says(True)[0] and move.says(False)[0]
    reached, frontier = {StageStatus.PLANNED}, [StageStatus.PLANNED]
    while frontier:
        source = frontier.pop()
        for to in {lifecycle.next_status(source, e, f) for e in lifecycle.Event for f in every} - {None} - reached:
            reached.add(to)
            frontier.append(to)
    assert reached == set(StageStatus)
    assert all(lifecycle.next_status(StageStatus.PLANNED, e, f) != StageStatus.APPLIED  # applying comes after the gate
               for e in lifecycle.Event for f in every)
    assert lifecycle.next_status(StageStatus.BLOCKED, lifecycle.Event.GATE, Facts(passed=False)) is None
    assert lifecycle.next_status(StageStatus.DONE, lifecycle.Event.ROLLBACK, Facts(undoable=False)) is None
