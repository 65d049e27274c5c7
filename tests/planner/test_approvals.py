"""Approvals and change windows (planner.approvals): windows in a time zone, the policy's text and checks, and a
stage's standing — approvals bound to the hash of its YAML, one per person, never the requester's when the policy
says so, a rejection holding it — and the apply guard of the lifecycle refusing, or an override going past."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import msgspec
import pytest

import planner.plan
from cluster.errors import MeshstepError
from cluster.inventory import Inventory, build_inventory
from cluster.sources import load_snapshot
from planner import approvals, moves, stages
from planner.approvals import APPROVED, DAYS, REJECTED, ApprovalNeeded, OutsideWindow, Policy, Window
from state import audit
from state.actors import Actor
from state.models import StageStatus
from state.store import Store

# Monday 2026-12-07.
MONDAY_NOON_UTC = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_windows_parse_and_open_in_their_time_zone() -> None:
    berlin = Policy.make(0, True, ["mon-fri 09:00-17:00"], "Europe/Berlin")
    assert berlin.window_open(MONDAY_NOON_UTC)  # 13:00 in Berlin
    assert not berlin.window_open(datetime(2026, 12, 7, 16, 30, tzinfo=UTC))  # 17:30 in Berlin: closed
    assert not berlin.window_open(datetime(2026, 12, 12, 12, 0, tzinfo=UTC))  # a Saturday
    assert berlin.next_opening(datetime(2026, 12, 7, 16, 30, tzinfo=UTC)) == datetime(
        2026, 12, 8, 9, 0, tzinfo=berlin.next_opening(MONDAY_NOON_UTC).tzinfo)
    weekend = Window.parse("fri-mon 22:00-24:00")  # wraps past Sunday
    assert weekend.days == {4, 5, 6, 0}
    assert Policy().window_open(MONDAY_NOON_UTC)  # no windows: always open


@pytest.mark.parametrize("text", ["weekdays 09:00-17:00", "mon-fri 9-17", "mon 17:00-09:00", "mon 25:00-26:00"])
def test_a_bad_window_says_how_to_write_one(text: str) -> None:
    with pytest.raises(MeshstepError, match="change window"):
        Window.parse(text)


def test_policy_checks_and_round_trips() -> None:
    with pytest.raises(MeshstepError, match="time zone 'Mars/Olympus'"):
        Policy.make(1, True, [], "Mars/Olympus")
    with pytest.raises(MeshstepError, match="below 0"):
        Policy.make(-1, True, [], "UTC")
    prod = Policy.make(2, False, ["mon-thu 10:00-16:00"], "UTC")
    assert Policy.from_json(prod.to_json()) == prod
    assert prod.text() == "2 approver(s), not the requester; applies only mon-thu 10:00-16:00 (UTC)"
    assert Policy.from_json({}).text() == "no approval; applies at any time"


# ---------------------------------------------------------------- the engine's apply guard, on the real store

ISSUER = "https://idp.example.com"
BOB = Actor("bob@example.com", issuer=ISSUER, subject="bob", email="bob@example.com")  # the operator
CAROL = Actor("carol@example.com", issuer=ISSUER, subject="carol", email="carol@example.com")
DAVE = Actor("dave@example.com", issuer=ISSUER, subject="dave", email="dave@example.com")


@pytest.fixture(scope="module")
def demo() -> Inventory:
    return build_inventory(load_snapshot("demo"))


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


def _ready(store: Store, demo: Inventory, policy: Policy):
    """A production plan of one stage (metrics in payments) moved to ready by bob, under `policy`."""
    approvals.set_policy(store, "prod", policy, "ada", "production needs two more eyes")
    plan = stages.create(store, "prod", demo, "custom", None, "p", "alice")
    stages.add_stage(store, store.get_plan(plan.id), demo, "metrics", "", [planner.plan.Step("metrics", "payments")],
                     "alice")
    stage = moves.advance(store, store.get_plan(plan.id), demo, BOB)
    assert stage.status == StageStatus.READY
    return store.get_plan(plan.id)


def _apply(store: Store, plan, demo: Inventory, actor=BOB, **kw):
    return moves.advance(store, store.get_plan(plan.id), demo, actor, **kw)


def _decide(store: Store, plan, decision: str, actor, reason: str = "") -> None:
    plan = store.get_plan(plan.id)
    approvals.decide(store, plan.cluster, stages.current_stage(plan), decision, actor, reason)


def test_two_approvers_not_the_requester_before_the_apply(store, demo) -> None:
    plan = _ready(store, demo, Policy.make(2, False, [], "UTC"))
    with pytest.raises(ApprovalNeeded, match=r"0 of 2 approvals \(none yet\); 2 more needed, not bob@example.com"):
        _apply(store, plan, demo)
    with pytest.raises(MeshstepError, match="bob@example.com asked for stage 1 .*needs someone else"):
        _decide(store, plan, APPROVED, BOB)
    _decide(store, plan, APPROVED, CAROL, "looks right")
    _decide(store, plan, APPROVED, CAROL, "again")  # one person counts once
    with pytest.raises(ApprovalNeeded, match=r"1 of 2 approvals \(carol@example.com\); 1 more needed"):
        _apply(store, plan, demo)
    _decide(store, plan, APPROVED, DAVE)
    assert _apply(store, plan, demo).status == StageStatus.APPLIED
    trail = [(e.action, e.actor, e.identity.get("subject")) for e in store.audit_events() if e.target.startswith(
        ("stage:", "cluster:prod")) and e.action != "cluster.add"]
    assert trail == [("policy.set", "ada", None), ("stage.add", "alice", None), ("stage.status", BOB, "bob"),
                     ("stage.approve", CAROL, "carol"), ("stage.approve", CAROL, "carol"),
                     ("stage.approve", DAVE, "dave"), ("stage.status", BOB, "bob")]
    assert audit.verify(store) is None


def test_an_approval_is_bound_to_the_yaml_and_a_rejection_holds_it(store, demo) -> None:
    plan = _ready(store, demo, Policy.make(1, True, [], "UTC"))
    _decide(store, plan, APPROVED, CAROL)
    stage = stages.current_stage(store.get_plan(plan.id))
    # The gate runs again on a cluster that changed: the stage keeps its decisions, but its YAML is another.
    changed = msgspec.structs.replace(stage.record, apply_yaml=stage.record.apply_yaml + "# one more line\n")
    store.transition_stage(stage.id, StageStatus.READY, BOB, "entry gate passed", stage.version, record=changed)
    standing = approvals.stage_standing(store, "prod", stages.current_stage(store.get_plan(plan.id)))
    assert (standing.approvals, standing.stale, standing.allows) == ((), 1, False)
    with pytest.raises(ApprovalNeeded, match="0 of 1 approvals"):
        _apply(store, plan, demo)
    _decide(store, plan, APPROVED, CAROL)
    _decide(store, plan, REJECTED, DAVE, "not before the audit")
    with pytest.raises(ApprovalNeeded, match="rejected by dave@example.com: not before the audit"):
        _apply(store, plan, demo)
    with pytest.raises(MeshstepError, match="a rejection needs a reason"):
        _decide(store, plan, REJECTED, DAVE)


def test_outside_the_change_window_an_apply_waits_unless_overridden(store, demo) -> None:
    now = datetime.now(UTC)
    closed = Window.parse(f"{DAYS[(now.weekday() + 3) % 7]} 00:00-24:00")  # a day that is not today
    plan = _ready(store, demo, Policy.make(0, True, [closed.text], "UTC"))
    with pytest.raises(OutsideWindow, match="outside this cluster's change windows"):
        _apply(store, plan, demo)
    moved = _apply(store, plan, demo, override_reason="sev1: the outage needs it now")
    assert moved.status == StageStatus.APPLIED and moved.override_reason == "sev1: the outage needs it now"
    last = store.audit_events()[-1]
    assert last.reason.startswith("config applied; policy overridden (stage 1 (metrics) cannot be applied now")
