"""Findings in the app: one coloured box per finding (the level's), its text from `markdown` (what the cluster says
in it escaped: app/safe.py), the one place the app turns a finding into text."""
from __future__ import annotations

from collections.abc import Iterable

import streamlit as st

from analysis import findings
from analysis.base import Message
from app import safe

BOXES = {"error": st.error, "warning": st.warning, "info": st.info}


def markdown(m: Message) -> str:
    """One finding in the app's Markdown, cluster text escaped."""
    return findings.markdown(m, safe.md_message)


def show(messages: Iterable[Message], none: str | None = None) -> None:
    """Each finding in its level's box; `none`, when given, as a success box if there are none."""
    shown = False
    for m in messages:
        BOXES[m.level](markdown(m))
        shown = True
    if not shown and none:
        st.success(none)
