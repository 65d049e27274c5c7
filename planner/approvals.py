"""Approvals and change windows: a cluster's policy says how many people must approve a stage before it is applied
(and whether the person who asked for it may be one of them), and when applies may happen at all.

An approval is bound to the SHA-256 of the stage's YAML as it was taken when its gate passed: if the YAML changes
(the gate runs again after a rollback, on a cluster that changed), earlier approvals no longer count. A rejection
of that YAML holds the stage until the YAML changes. The lifecycle's apply guard reads `Standing.allows` and the
window; an admin may go past either with a reason, which is audited as an override."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cluster.errors import MeshstepError
from planner.lifecycle import READY
from planner.storage import PlanStore
from state.actors import Actor
from state.models import Plan, Stage

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^(?P<days>[a-z,\-]+)\s+(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})$")
APPROVED, REJECTED = "approved", "rejected"


class ApprovalNeeded(MeshstepError):
    """The stage's YAML has not the approvals its cluster's policy asks for, or was rejected."""

    exit_code = 4


class OutsideWindow(MeshstepError):
    """The cluster's change windows are closed now."""

    exit_code = 4


def _days(text: str) -> frozenset[int]:
    if text == "daily":
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(part)
        a, b = DAYS.index(first), DAYS.index(last or first)
        days |= {d % 7 for d in range(a, b + 1 if b >= a else b + 8)}
    return frozenset(days)


@dataclass(frozen=True)
class Window:
    """Days of the week and a time of day (start inclusive, end exclusive; 24:00 is the day's end)."""

    days: frozenset[int]
    start: time
    end: time | None  # None: 24:00
    text: str

    @classmethod
    def parse(cls, text: str) -> Window:
        """`mon-fri 09:00-17:00`, `sat,sun 10:00-12:00`, `daily 00:00-24:00`."""
        m = _WINDOW.match(text.strip().lower())
        try:
            if not m:
                raise ValueError(text)
            end = None if m["end"] == "24:00" else time.fromisoformat(m["end"])
            window = cls(_days(m["days"]), time.fromisoformat(m["start"]), end, text.strip().lower())
        except ValueError:
            raise MeshstepError(f"change window {text!r}: write DAYS HH:MM-HH:MM, e.g. 'mon-fri 09:00-17:00' or "
                                "'daily 00:00-24:00' (days: mon … sun, ranges and commas)") from None
        if window.end is not None and window.end <= window.start:
            raise MeshstepError(f"change window {text!r}: it ends before it starts (one window per day span)")
        return window

    def open_at(self, local: datetime) -> bool:
        t = local.time()
        return local.weekday() in self.days and self.start <= t and (self.end is None or t < self.end)


@dataclass(frozen=True)
class Policy:
    """A cluster's rules for applying stages; the default asks for nothing."""

    approvers: int = 0
    requester_may_approve: bool = True
    windows: tuple[Window, ...] = ()
    timezone: str = "UTC"

    @classmethod
    def make(cls, approvers: int, requester_may_approve: bool, windows: list[str], timezone: str) -> Policy:
        if approvers < 0:
            raise MeshstepError(f"approvers: {approvers} is below 0")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise MeshstepError(f"time zone {timezone!r} is not known: use an IANA name such as Europe/Berlin or "
                                "UTC") from None
        return cls(approvers, requester_may_approve, tuple(Window.parse(w) for w in windows), timezone)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Policy:
        data = data or {}
        return cls.make(int(data.get("approvers", 0)), bool(data.get("requester_may_approve", True)),
                        list(data.get("windows") or ()), data.get("timezone") or "UTC")

    def to_json(self) -> dict[str, Any]:
        return {"approvers": self.approvers, "requester_may_approve": self.requester_may_approve,
                "windows": [w.text for w in self.windows], "timezone": self.timezone}

    def text(self) -> str:
        who = ("no approval" if not self.approvers else
               f"{self.approvers} approver(s)" + ("" if self.requester_may_approve else ", not the requester"))
        when = (f"applies only {' or '.join(w.text for w in self.windows)} ({self.timezone})" if self.windows
                else "applies at any time")
        return f"{who}; {when}"

    def window_open(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.timezone))
        return not self.windows or any(w.open_at(local) for w in self.windows)

    def next_opening(self, now: datetime) -> datetime | None:
        """When a window next opens (to the minute, within a week), in the policy's time zone."""
        local = now.astimezone(ZoneInfo(self.timezone)).replace(second=0, microsecond=0)
        for minutes in range(1, 7 * 24 * 60 + 1):
            at = local + timedelta(minutes=minutes)
            if self.window_open(at):
                return at
        return None


def yaml_hash(stage: Stage) -> str | None:
    """The SHA-256 of the YAML the stage applies, as taken when its gate passed; None before that."""
    taken = stage.record.apply_yaml
    return None if taken is None else hashlib.sha256(taken.encode()).hexdigest()


@dataclass(frozen=True)
class Decision:
    """One approval or rejection as the stage keeps it."""

    decision: str
    yaml_hash: str
    actor: str
    identity: dict[str, Any]
    at: str
    reason: str = ""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Decision:
        return cls(d["decision"], d["yaml_hash"], d["actor"], d.get("identity") or {}, d["at"], d.get("reason", ""))


@dataclass(frozen=True)
class Standing:
    """Where a stage stands with its policy: the approvals that count for its YAML now, a rejection of it, and
    how many decisions were made on an earlier YAML."""

    policy: Policy
    requester: str
    approvals: tuple[Decision, ...] = ()
    rejection: Decision | None = None
    stale: int = 0

    @property
    def missing(self) -> int:
        return max(0, self.policy.approvers - len(self.approvals))

    @property
    def allows(self) -> bool:
        return self.rejection is None and self.missing == 0

    def text(self) -> str:
        if self.rejection is not None:
            r = self.rejection
            return f"rejected by {r.actor}" + (f": {r.reason}" if r.reason else "")
        if not self.policy.approvers:
            return "no approval needed"
        got = ", ".join(a.actor for a in self.approvals) or "none yet"
        more = f"; {self.missing} more needed" if self.missing else ""
        self_rule = "" if self.policy.requester_may_approve else f", not {self.requester} (who asked for it)"
        return f"{len(self.approvals)} of {self.policy.approvers} approvals ({got}){more}{self_rule}"


def _person(d: Decision) -> tuple[Any, ...]:
    return ((d.identity.get("issuer"), d.identity.get("subject")) if d.identity.get("verified") else (d.actor,))


def standing(policy: Policy, stage: Stage, requester: str, requester_identity: dict[str, Any] | None) -> Standing:
    """The stage's decisions judged under `policy`: only those on its current YAML count, one per person, and the
    requester's only when the policy lets them."""
    current = yaml_hash(stage)
    decisions = [Decision.from_json(d) for d in stage.record.approvals]
    now = [d for d in decisions if d.yaml_hash == current]
    rejection = next((d for d in reversed(now) if d.decision == REJECTED), None)
    who = Actor(requester, **_identity_args(requester_identity))
    approvals: dict[tuple[Any, ...], Decision] = {}
    for d in now:
        if d.decision != APPROVED:
            continue
        if not policy.requester_may_approve and who.same_person(d.actor, d.identity):
            continue
        approvals.setdefault(_person(d), d)
    return Standing(policy, requester, tuple(approvals.values()), rejection, len(decisions) - len(now))


def _identity_args(identity: dict[str, Any] | None) -> dict[str, Any]:
    if identity and identity.get("verified"):
        return {"issuer": identity.get("issuer"), "subject": identity.get("subject"), "email": identity.get("email")}
    return {}


def check_decision(policy: Policy, stage: Stage, actor: str, requester: str,
                   requester_identity: dict[str, Any] | None) -> str:
    """The hash a decision by `actor` on `stage` is bound to; MeshstepError when they may not decide it."""
    current = yaml_hash(stage)
    if current is None:
        raise MeshstepError(f"stage {stage.order} ({stage.title}) has no YAML to approve yet: its gate has not "
                            "passed (meshstep plan advance)")
    me = actor if isinstance(actor, Actor) else Actor(actor)
    if not policy.requester_may_approve and me.same_person(requester, requester_identity):
        raise MeshstepError(f"{actor} asked for stage {stage.order} (moved it to ready): this cluster's policy "
                            "needs someone else to approve or reject it")
    return current


def apply_refusal_for(store: PlanStore, plan: Plan, stage: Stage) -> MeshstepError | None:
    """Why the plan's cluster's policy does not let `stage` be applied now, or None."""
    policy = policy_of(store, plan.cluster)
    return apply_refusal(policy, standing(policy, stage, *requester_of(store, stage)), stage)


def apply_refusal(policy: Policy, st: Standing, stage: Stage, now: datetime | None = None) -> MeshstepError | None:
    """Why the stage may not be applied now (ApprovalNeeded, OutsideWindow), or None."""
    if not st.allows:
        return ApprovalNeeded(f"stage {stage.order} ({stage.title}) cannot be applied: {st.text()} "
                              f"(policy: {policy.text()}). Approve it with `meshstep plan approve` or on the Plan "
                              "page, or go past it as an admin with --override-reason")
    now = now or datetime.now(UTC)
    if not policy.window_open(now):
        opens = policy.next_opening(now)
        when = f"; the next opens {opens:%a %Y-%m-%d %H:%M} {policy.timezone}" if opens else ""
        return OutsideWindow(f"stage {stage.order} ({stage.title}) cannot be applied now: outside this cluster's "
                             f"change windows ({', '.join(w.text for w in policy.windows)}, {policy.timezone}){when}. "
                             "Wait, or go past it as an admin with --override-reason")
    return None


# ---------------------------------------------------------------- with the store


def policy_of(store: PlanStore, cluster: str) -> Policy:
    """The cluster's recorded policy (the default, asking for nothing, when none is)."""
    row = next((c for c in store.list_clusters() if c.name == cluster), None)
    return Policy.from_json(row.policy if row is not None else None)


def set_policy(store: Any, cluster: str, policy: Policy, actor: str, reason: str) -> Policy:
    if not reason:
        raise MeshstepError("a policy change needs a reason (--reason): it is kept in the audit trail")
    store.set_policy(cluster, policy.to_json(), actor, reason)
    return policy


def requester_of(store: PlanStore, stage: Stage) -> tuple[str, dict[str, Any] | None]:
    """Who asked for the stage to be applied: whoever moved it to ready (its last move), and how they are known."""
    target = f"stage:{stage.id}"
    # Decisions do not move updated_at: the events since are the move to ready and the decisions after it.
    moved = next((e for e in reversed(store.audit_events(stage.updated_at))
                  if e.target == target and e.action == "stage.status"), None)
    return (moved.actor, moved.identity) if moved else (stage.updated_by, None)


def stage_standing(store: PlanStore, cluster: str, stage: Stage) -> Standing:
    return standing(policy_of(store, cluster), stage, *requester_of(store, stage))


def decide(store: Any, cluster: str, stage: Stage, decision: str, actor: str, reason: str) -> Stage:
    """Approve or reject the stage's YAML as it is now; refused for a stage not ready, or (by policy) its
    requester. Two deciders on one stage at once: the second is refused as a conflict and decides again."""
    if stage.status != READY:
        raise MeshstepError(f"stage {stage.order} ({stage.title}) is {stage.status}: only a ready stage (gate "
                            "passed, YAML taken) is approved or rejected")
    if decision == REJECTED and not reason:
        raise MeshstepError("a rejection needs a reason (--reason): the requester reads it")
    requester, identity = requester_of(store, stage)
    bound = check_decision(policy_of(store, cluster), stage, actor, requester, identity)
    return store.decide_stage(stage.id, decision, bound, actor, reason, stage.version)
