"""A plan's mode and the stage lifecycle table: a plan is real or a rehearsal, fixed by its first move, and the
two never mix; every status the table names is one the store accepts."""
from __future__ import annotations

import pytest

from cluster.errors import MeshstepError
from planner import lifecycle
from state.models import STAGE_STATUSES
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
    assert set(STAGE_STATUSES) == set(lifecycle.STATUSES)
    for source, move in lifecycle.ADVANCE.items():
        assert source in lifecycle.STATUSES and move.to in lifecycle.STATUSES
        assert lifecycle.allowed(source, move.to)
        assert move.says(True)[0] and move.says(False)[0]
    assert {s for s, _ in lifecycle.ALLOWED} | {t for _, t in lifecycle.ALLOWED} <= set(lifecycle.STATUSES)
    assert not lifecycle.allowed("planned", "applied")  # applying comes after the gate
