"""Approvals and rejections in the store, on SQLite and PostgreSQL: each is one audited change of the stage that
moves its version, so two people deciding one stage at once are refused cleanly (one wins, the other is told who
changed it), and an apply decided before an approval or rejection arrived is refused as a conflict too."""
from __future__ import annotations

import threading

import pytest

from cluster.errors import ConflictError
from state import audit
from state.actors import Actor


@pytest.fixture
def stage(store):
    plan = store.create_plan("prod", "adopt", "custom", [{"title": "mTLS", "goal": "encrypt", "features": []}],
                             actor="alice")
    return plan.stages[0]


def test_threads_deciding_one_stage_at_once_one_wins(store, stage) -> None:
    n = 6
    barrier, results = threading.Barrier(n), []

    def decider(i: int) -> None:
        barrier.wait()
        try:
            store.decide_stage(stage.id, "approved", "h" * 64, Actor(f"approver{i}", issuer="https://idp",
                                                                     subject=f"s{i}"), "looks right", stage.version)
            results.append(("won", i))
        except ConflictError as e:
            results.append(("conflict", str(e)))

    threads = [threading.Thread(target=decider, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for kind, i in results if kind == "won"]
    assert len(results) == n and len(winners) == 1
    assert all(f"changed by approver{winners[0]}" in m for kind, m in results if kind == "conflict")
    [decided] = store.get_plan(stage.plan_id).stages
    assert decided.version == stage.version + 1
    [made] = decided.data["approvals"]
    assert made["identity"] == {"verified": True, "issuer": "https://idp", "subject": f"s{winners[0]}",
                                "email": None}
    assert store.audit_events()[-1].action == "stage.approve" and audit.verify(store) is None


def test_an_apply_decided_before_a_rejection_is_refused(store, stage) -> None:
    seen = stage.version  # what the operator's page showed
    store.decide_stage(stage.id, "rejected", "h" * 64, "carol", "not during the freeze", seen)
    with pytest.raises(ConflictError, match=r"changed by carol .*stage.reject: not during the freeze"):
        store.transition_stage(stage.id, "applied", "bob", "config applied", seen)
