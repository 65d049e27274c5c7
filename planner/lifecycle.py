"""A plan stage's lifecycle as data: the transition table (status, event → status, guard) and the advance each status
offers (its event, its button). `advance` and `rollback` (planner.moves), the rehearsal overlay and the Plan page all
read it; no other module spells the lifecycle out, and nothing outside planner moves a stage."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from state.models import StageStatus

PLANNED, BLOCKED, READY = StageStatus.PLANNED, StageStatus.BLOCKED, StageStatus.READY
APPLIED, VERIFIED, DONE, ROLLED_BACK = (StageStatus.APPLIED, StageStatus.VERIFIED, StageStatus.DONE,
                                        StageStatus.ROLLED_BACK)

# A stage past its gate and not yet done: the one a plan is working on.
IN_FLIGHT = (READY, APPLIED, VERIFIED)
# The stage's YAML is on the cluster (or, in a rehearsal, on the plan's overlay).
APPLIED_OR_LATER = (APPLIED, VERIFIED, DONE)
# The happy path, as the Plan page draws it.
PATH = (PLANNED, READY, APPLIED, VERIFIED, DONE)


class Event(StrEnum):
    """What happens to a stage: the step an advance runs, or a rollback."""

    GATE = "gate"  # the entry gate's checks run on the cluster as the earlier stages leave it
    APPLY = "apply"  # the team applied the stage's YAML (a rehearsal applies it to the plan's overlay)
    VERIFY = "verify"  # the exit check runs
    CLOSE = "close"  # the team closes a verified stage
    ROLLBACK = "rollback"
    ENFORCE = "enforce"  # a stage applied in shadow (istio.io/dry-run) is enforced once its shadow bake passed


@dataclass(frozen=True)
class Facts:
    """What the step run for an event found, as the guards read it."""

    passed: bool = True  # its checks passed, or someone overrode them with a reason
    nothing_to_apply: bool = False  # the stage has nothing to apply and its exit check passes at once
    undoable: bool = True  # the stage's config is the plan's own (not found on, not the install check)
    # the cluster's policy lets it be applied now (approvals of its YAML, change windows; planner.approvals), or an
    # admin went past it with a reason
    approved: bool = True
    # meshstep applied it itself (--apply), and the API server refused an object (every object put back): a
    # conflict, RBAC, a webhook's denial …; or an object changed since the gate read it (the gate runs again)
    refused: bool = False
    stale: bool = False
    # its bake saw a regression (or Istio refused its config), and meshstep put its objects back by itself
    rolled_back: bool = False
    # GitOps applied it and its bake failed: meshstep cannot put it back (GitOps would sync it again); it stays applied
    # until its rollback, committed by the team, is seen on the cluster
    awaits_rollback: bool = False


Guard = Callable[[Facts], bool]


def always(_: Facts) -> bool:
    return True


def passes(facts: Facts) -> bool:
    return facts.passed


def fails(facts: Facts) -> bool:
    return not facts.passed


def passes_with_nothing_to_apply(facts: Facts) -> bool:
    return facts.passed and facts.nothing_to_apply


def undoable(facts: Facts) -> bool:
    return facts.undoable


def approved(facts: Facts) -> bool:
    return facts.approved and not facts.refused and not facts.stale


def refused(facts: Facts) -> bool:
    return facts.refused


def stale(facts: Facts) -> bool:
    return facts.stale


def rolled_back(facts: Facts) -> bool:
    return facts.rolled_back


def awaits_rollback(facts: Facts) -> bool:
    return facts.awaits_rollback


@dataclass(frozen=True)
class Transition:
    source: StageStatus
    event: Event
    to: StageStatus
    guard: Guard = always


# In order: for one status and event, the first transition whose guard holds is taken; none means the stage stays
# (a gate failing again on a blocked stage, an exit check that fails) and the step's refusal is raised.
TABLE: tuple[Transition, ...] = (
    *(t for source in (PLANNED, BLOCKED, ROLLED_BACK) for t in (
        Transition(source, Event.GATE, DONE, passes_with_nothing_to_apply),
        Transition(source, Event.GATE, READY, passes))),
    Transition(PLANNED, Event.GATE, BLOCKED, fails),
    Transition(ROLLED_BACK, Event.GATE, BLOCKED, fails),
    Transition(READY, Event.APPLY, PLANNED, stale),
    Transition(READY, Event.APPLY, BLOCKED, refused),
    Transition(READY, Event.APPLY, APPLIED, approved),
    *(Transition(APPLIED, event, ROLLED_BACK, rolled_back) for event in (Event.ENFORCE, Event.VERIFY)),
    Transition(APPLIED, Event.VERIFY, APPLIED, awaits_rollback),
    Transition(APPLIED, Event.ENFORCE, APPLIED, passes),
    Transition(APPLIED, Event.VERIFY, VERIFIED, passes),
    Transition(VERIFIED, Event.CLOSE, DONE),
    *(Transition(source, Event.ROLLBACK, ROLLED_BACK) for source in IN_FLIGHT),
    Transition(DONE, Event.ROLLBACK, ROLLED_BACK, undoable),
)


def next_status(status: StageStatus, event: Event, facts: Facts) -> StageStatus | None:
    """Where `event` takes a stage in `status`, given what its step found; None: it stays."""
    return next((t.to for t in TABLE if t.source == status and t.event == event and t.guard(facts)), None)


@dataclass(frozen=True)
class Move:
    """The advance a status offers: the event it runs, and its button's label and help."""

    source: StageStatus
    event: Event
    label: str
    help: str
    # A rehearsal does the same step on the plan's overlay instead of the cluster; None: said as above.
    rehearsal_label: str | None = None
    rehearsal_help: str | None = None

    def says(self, rehearsal: bool) -> tuple[str, str]:
        """The button label and help for this step in a real or a rehearsed plan."""
        if rehearsal:
            return self.rehearsal_label or self.label, self.rehearsal_help or self.help
        return self.label, self.help


_GATE_HELP = ("Runs the gate's checks on the cluster as the earlier stages leave it; when they pass the stage "
              "becomes ready (a stage with nothing to apply is verified at once and becomes done).")
ADVANCE: dict[StageStatus, Move] = {m.source: m for m in (
    Move(PLANNED, Event.GATE, "Check the gate", _GATE_HELP),
    Move(BLOCKED, Event.GATE, "Check the gate again", "Runs the gate's checks again, once you have fixed what they "
                                                       "found."),
    Move(ROLLED_BACK, Event.GATE, "Check the gate", "Runs the gate's checks again before the stage is retried."),
    Move(READY, Event.APPLY, "I applied it: mark applied",
         "Apply the YAML (and run the commands) above on the cluster, then record it here: the stage's flags "
         "become 'enabling'.",
         "Rehearse: apply the YAML to the overlay",
         "Applies the stage's YAML to the plan's copy of the cluster (its overlay); the cluster and the flags are "
         "not touched."),
    Move(APPLIED, Event.VERIFY, "Verify on the cluster",
         "Reads the cluster again and checks that every feature of the stage is on and that no new analysis error "
         "appeared.",
         "Verify on the overlay",
         "Checks on the plan's overlay that every feature of the stage is on and that no new analysis error "
         "appeared."),
    Move(VERIFIED, Event.CLOSE, "Mark done", "Closes the stage; the next one becomes current."),
)}
