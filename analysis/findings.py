"""Findings as people read them. One structured form, `fields`: level, code, resource, message, hint and reference
page, which every medium lays out and none re-derives: the terminal (`terminal`, `line`), Markdown (`markdown`, for
the app and reports), JSON (`Message.to_json`, the same fields with the resource as kind, namespace and name) and
the app's boxes (app/findings.py). A message never names its resource again: the resource is shown once, beside
the code.

The resource, message and hint hold what the cluster says: each rendering takes the surface's `escape` for them
(app/safe.py), so that the rendering's own structure (the mark, the bold level, the link) is the only structure."""
from __future__ import annotations

from collections.abc import Callable, Iterable

from analysis.base import LEVELS, Message

# One mark per level, as `linkerd check` marks its results.
SYMBOLS = {"error": "×", "warning": "‼", "info": "ℹ"}


def _as_is(text: str) -> str:
    return text


def fields(m: Message) -> dict[str, str]:
    """The finding as every medium shows it, in the order it shows it; the app's table row."""
    return {"level": m.level, "code": m.code, "resource": str(m.ref), "message": m.message, "hint": m.hint,
            "url": m.url}


def terminal(messages: Iterable[Message], indent: str = "", escape: Callable[[str], str] = _as_is) -> str:
    """Each finding as a head line (mark, level, code, resource), then its message, hint and reference page."""
    blocks = []
    for f in map(fields, messages):
        lines = [f"{SYMBOLS[f['level']]} {f['level']:<7} {f['code']} {escape(f['resource'])}",
                 f"    {escape(f['message'])}"]
        if f["hint"]:
            lines.append(f"    hint: {escape(f['hint'])}")
        lines.append(f"    see {f['url']}")
        blocks.append("\n".join(indent + line for line in lines))
    return "\n".join(blocks)


def line(m: Message, escape: Callable[[str], str] = _as_is) -> str:
    """One finding on one line, for an error message that carries it: code, resource, message, then the hint."""
    f = fields(m)
    return (f"{f['code']} {escape(f['resource'])}: {escape(f['message'])}"
            + (f" — {escape(f['hint'])}" if f["hint"] else ""))


def counts(messages: Iterable[Message]) -> str:
    """`1 error, 0 warnings, 2 infos`."""
    levels = [m.level for m in messages]
    return ", ".join(f"{n} {lv}{'s' if n != 1 else ''}" for lv in LEVELS for n in [levels.count(lv)])


def markdown(m: Message, escape: Callable[[str], str] = _as_is) -> str:
    """One finding in Markdown: level, code (linked to its page), resource and message; the hint below."""
    f = fields(m)
    text = f"**{f['level']}** [{f['code']}]({f['url']}) {escape(f['resource'])}: {escape(f['message'])}"
    return text + (f"\n\n→ {escape(f['hint'])}" if f["hint"] else "")
