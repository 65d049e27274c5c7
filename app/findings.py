"""Findings in the app: one coloured box per finding (the level's), with its Markdown rendering (what the cluster
says in it escaped: app/safe.py)."""
from __future__ import annotations

from collections.abc import Iterable

import streamlit as st

from analysis.base import Message
from analysis.findings import markdown
from app import safe

BOXES = {"error": st.error, "warning": st.warning, "info": st.info}


def show(messages: Iterable[Message], none: str | None = None) -> None:
    """Each finding in its level's box; `none`, when given, as a success box if there are none."""
    shown = False
    for m in messages:
        BOXES[m.level](markdown(m, safe.md_message))
        shown = True
    if not shown and none:
        st.success(none)
