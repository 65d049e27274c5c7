"""Findings as people read them: one rendering per medium (the terminal here, Markdown for the app and reports;
the app's boxes in app/findings.py), each giving every finding's level, code, resource, message and hint, in
that order. A message never names its resource again: the resource is shown once, beside the code.

The resource, message and hint hold what the cluster says: each rendering takes the surface's `escape` for them
(app/safe.py), so that the rendering's own structure (the mark, the bold level, the link) is the only structure."""
from __future__ import annotations

from collections.abc import Callable, Iterable

from analysis.base import LEVELS, Message

# One mark per level, as `linkerd check` marks its results.
SYMBOLS = {"error": "×", "warning": "‼", "info": "ℹ"}


def _as_is(text: str) -> str:
    return text


def terminal(messages: Iterable[Message], indent: str = "", escape: Callable[[str], str] = _as_is) -> str:
    """Each finding as a head line (mark, level, code, resource), then its message, hint and reference page."""
    blocks = []
    for m in messages:
        lines = [f"{SYMBOLS[m.level]} {m.level:<7} {m.code} {escape(str(m.ref))}", f"    {escape(m.message)}"]
        if m.hint:
            lines.append(f"    hint: {escape(m.hint)}")
        lines.append(f"    see {m.url}")
        blocks.append("\n".join(indent + line for line in lines))
    return "\n".join(blocks)


def counts(messages: Iterable[Message]) -> str:
    """`1 error, 0 warnings, 2 infos`."""
    levels = [m.level for m in messages]
    return ", ".join(f"{n} {lv}{'s' if n != 1 else ''}" for lv in LEVELS for n in [levels.count(lv)])


def markdown(m: Message, escape: Callable[[str], str] = _as_is) -> str:
    """One finding in Markdown: level, code (linked to its page), resource and message; the hint below."""
    text = f"**{m.level}** [{m.code}]({m.url}) {escape(str(m.ref))}: {escape(m.message)}"
    return text + (f"\n\n→ {escape(m.hint)}" if m.hint else "")
