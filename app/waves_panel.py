"""A plan in waves on the Plan page (planner.waves): the waves, the pilot first with why it goes first; the wave of
each stage and the namespaces it covers; where in a wave a stage's gate fails. Namespace names and the pilot's
reasons are the cluster's text: shown through app/safe.py."""
from __future__ import annotations

from collections.abc import Iterable

import streamlit as st

from app import safe
from planner.waves import DEFAULT, WAVES_ABOVE, Waves

# A stage over more namespaces than this lists them in an expander; up to it, on its line.
_LISTED = 5
HELP = (f"How many namespaces each wave of the plan turns on, comma-separated, the pilot first: a count (5), a share "
        f"of the namespaces (10%, rounded up) or rest (the last only); the last size repeats until every namespace "
        f"is in a wave. Empty: {DEFAULT} when the plan has more than {WAVES_ABOVE} namespaces, else one stage per "
        "namespace; off: one stage per namespace. The least risky namespaces go first.")


def of(plan) -> Waves | None:
    """The plan's waves, or None when it has one stage per namespace."""
    return Waves.from_json(plan.waves) if plan.waves else None


def namespaces(plan_stage) -> list[str]:
    """The namespaces a stage covers (its steps' scopes but `mesh`), sorted."""
    return sorted({f["scope"] for f in plan_stage.features} - {"mesh"})


def listed(names: Iterable[str]) -> str:
    """Namespaces for Markdown, every one of them, comma-separated (the line wraps)."""
    return ", ".join(safe.md(n) for n in names)


def wave_name(waves: Waves | None, names: list[str]) -> str:
    """The wave a stage over `names` goes in, as the stage table says it; empty for a mesh-wide stage."""
    i = waves.index(names) if waves is not None else None
    return "" if i is None else waves.name(i)


def show(plan) -> None:
    """The plan's waves: their sizes, the pilot with its reasons, and every wave's namespaces."""
    waves = of(plan)
    if waves is None:
        return
    st.markdown(f"**Waves** ({safe.md(waves.spec)}): {' → '.join(str(len(g)) for g in waves.groups)} namespaces, "
                "the least risky first; a namespace is in the same wave for every feature.")
    st.markdown(f"**Pilot:** {listed(waves.groups[0])}, chosen because it has\n"
                + "\n".join(f"- {safe.md_message(r)}" for r in waves.pilot_reasons))
    with st.expander(f"The namespaces of each of the {len(waves.groups)} waves", icon=":material/waves:"):
        st.markdown("\n".join(f"- **{waves.name(i)}** ({len(g)}): {listed(g)}" for i, g in enumerate(waves.groups)))


def stage(plan, plan_stage) -> None:
    """The current stage's wave and the namespaces it covers: on the line up to _LISTED, else in an expander."""
    names = namespaces(plan_stage)
    wave = wave_name(of(plan), names)
    if not wave:
        return
    head = f"**Wave:** {wave}, {len(names)} namespace{'s' if len(names) != 1 else ''}"
    if len(names) <= _LISTED:
        st.markdown(f"{head}: {listed(names)}")
        return
    st.markdown(head)
    with st.expander(f"The {len(names)} namespaces of this stage"):
        st.markdown(listed(names))


def failing(plan_stage, gate) -> str:
    """Where a stage over several namespaces fails its gate, for the gate's line (` in shop (1 of the stage's 10
    namespaces)`); empty for a stage over one namespace or none, or a gate that passes."""
    names = namespaces(plan_stage)
    where = [n for n in gate.failing if n in names]
    if len(names) < 2 or not where:
        return ""
    return f" in {listed(where)} ({len(where)} of the stage's {len(names)} namespaces)"
