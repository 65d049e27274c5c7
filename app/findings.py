"""Findings in the app: one coloured box per finding (the level's), its text from `markdown`, the one place the
app turns a finding into text."""
from __future__ import annotations

from collections.abc import Iterable

import streamlit as st

from analysis.base import Message
from analysis.findings import fields

BOXES = {"error": st.error, "warning": st.warning, "info": st.info}


def markdown(m: Message) -> str:
    """One finding in Markdown, from the fields the terminal and JSON show: level, code (linked to its page),
    resource and message; the hint below."""
    f = fields(m)
    text = f"**{f['level']}** [{f['code']}]({f['url']}) {f['resource']}: {f['message']}"
    return text + (f"\n\n→ {f['hint']}" if f["hint"] else "")


def show(messages: Iterable[Message], none: str | None = None) -> None:
    """Each finding in its level's box; `none`, when given, as a success box if there are none."""
    shown = False
    for m in messages:
        BOXES[m.level](markdown(m))
        shown = True
    if not shown and none:
        st.success(none)
