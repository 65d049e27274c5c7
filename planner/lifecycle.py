"""A plan stage's lifecycle as data: its statuses, the step each status moves on by (what it runs, where it goes,
the button that takes it and what it does), and the other moves allowed. `state.models`, `planner.plan`,
`planner.engine.advance` and the Plan page all read this table; none spells the lifecycle out on its own."""
from __future__ import annotations

from dataclasses import dataclass

from state.models import PLAN_MODES, STAGE_STATUSES

STATUSES = STAGE_STATUSES
# A stage past its gate and not yet done: the one a plan is working on.
IN_FLIGHT = ("ready", "applied", "verified")
# The happy path, as the Plan page draws it.
PATH = ("planned", "ready", "applied", "verified", "done")
# What a plan's advances do: walk the real cluster, or rehearse on the plan's overlay (fixed by the first advance).
MODES = PLAN_MODES


@dataclass(frozen=True)
class Move:
    """How a stage moves on from one status: what `advance` runs, the status it reaches, its button and help."""

    runs: str  # gate (entry checks) | apply (record the YAML applied) | exit (the exit check) | close
    to: str
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
ADVANCE: dict[str, Move] = {
    "planned": Move("gate", "ready", "Check the gate", _GATE_HELP),
    "blocked": Move("gate", "ready", "Check the gate again",
                    "Runs the gate's checks again, once you have fixed what they found."),
    "rolled_back": Move("gate", "ready", "Check the gate", "Runs the gate's checks again before the stage is retried."),
    "ready": Move("apply", "applied", "I applied it: mark applied",
                  "Apply the YAML (and run the commands) above on the cluster, then record it here: the stage's flags "
                  "become 'enabling'.",
                  "Rehearse: apply the YAML to the overlay",
                  "Applies the stage's YAML to the plan's copy of the cluster (its overlay); the cluster and the "
                  "flags are not touched."),
    "applied": Move("exit", "verified", "Verify on the cluster",
                    "Reads the cluster again and checks that every feature of the stage is on and that no new "
                    "analysis error appeared.",
                    "Verify on the overlay",
                    "Checks on the plan's overlay that every feature of the stage is on and that no new analysis "
                    "error appeared."),
    "verified": Move("close", "done", "Mark done", "Closes the stage; the next one becomes current."),
}

# Moves besides ADVANCE's: a failing gate blocks; a gate that passes on a stage with nothing to apply, whose exit
# check passes too, closes it at once; a stage in flight or done can be rolled back.
OTHER_MOVES = ({(s, "blocked") for s, m in ADVANCE.items() if m.runs == "gate" and s != "blocked"}
               | {(s, "done") for s, m in ADVANCE.items() if m.runs == "gate"}
               | {(s, "rolled_back") for s in (*IN_FLIGHT, "done")})
ALLOWED = frozenset({(s, m.to) for s, m in ADVANCE.items()} | OTHER_MOVES)


def allowed(source: str, to: str) -> bool:
    return (source, to) in ALLOWED
