"""Text from a cluster, a snapshot, telemetry or a user is data: how each surface shows it so that it can never
become structure there — no markup, no fetch, no terminal escape.

Whoever can create an object in one namespace writes its annotations, labels, container args, VirtualService hosts
and headers, and meshstep shows them to platform engineers and auditors. In the app such text goes through md()
(Streamlit renders every label, box, caption and expander title as Markdown, which would turn `![x](http://…)` into
an image fetched on page load) or html(); on the terminal through shown() (a value) or terminal() (whole lines):
control characters and bidi overrides are written as escapes (`\\x1b`, `\\u202e`) whatever stdout is, and a long
value is cut with an ellipsis and its length. A message filled from a template (analysis.catalog.Filled: the
catalog's IST and MST texts, a plan's reasons) is shown part by part: each value as a value (cut alone, so the rest
of the message stays), the template's text as it is; the template keeps its structure and the value none."""
from __future__ import annotations

import html as _html
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from analysis.catalog import Filled
from app import controls

# Characters that change what a terminal or a page shows rather than being shown: C0 and C1 controls (ESC starts
# terminal escapes; CR and BS overwrite), bidi embeddings, overrides, isolates and marks (they reorder the text
# after them), zero-width characters and the line and paragraph separators.
_FORMAT = "\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\u2028\u2029"
_HIDDEN = re.compile(f"[\x00-\x1f\x7f-\x9f{_FORMAT}]")
_HIDDEN_IN_LINES = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_FORMAT}]")  # keeps \n (and \t) of a multi-line text
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# What Markdown (CommonMark and GitHub's), HTML and Streamlit make structure of, each made literal by a backslash
# (CommonMark's escape for any ASCII punctuation): emphasis, code, links and images, raw HTML and entities, math,
# strikethrough, tables, headings; a colon that could start Streamlit's `:red[…]`, `:material/…:` or an emoji
# shortcode; underscores but those inside a word (snake_case), which never make emphasis. The rest (a dash, a
# slash, a colon before a space) stays as it is, so Markdown stays readable.
_MARKUP = re.compile(r"[\\`*\[\]<>&!$~|#]|:(?=[\w/-]+[:\[])|(?<!_)_+")
# What GitHub's Markdown links by itself, escaped or not (it finds them in the text once parsed): a bare URL, www.…
# and an e-mail address. Shown as code, which it leaves alone.
_BARE_LINK = re.compile(r"(?i)(?:[a-z][a-z0-9+.-]*://|www\.)\S+|[-.\w+]+@[-\w]+(?:\.[-\w]+)+")

LIMIT = 300  # characters of one value shown; the JSON output keeps it whole
MESSAGE = 1000  # of a finding's message or hint, which quotes values in the catalog's text


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    return _NAMED.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def visible(text: str, lines: bool = False) -> str:
    """`text` with every control and bidi character written as an escape; `lines`: newlines and tabs kept (a
    multi-line text whose lines are the template's, such as a command's whole output)."""
    return (_HIDDEN_IN_LINES if lines else _HIDDEN).sub(_escape, text)


def cut(text: str, limit: int = LIMIT) -> str:
    """`text`, or its first `limit` characters, an ellipsis and how long it is."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def shown(value: Any, limit: int = LIMIT) -> str:
    """One value as a terminal (or a table cell, or a plain-text widget) shows it: cut, every hidden character
    escaped (a newline too: a value never starts a line of its own)."""
    return visible(cut(str(value), limit))


def terminal(text: str) -> str:
    """Whole lines for a terminal, what they quote escaped: lines longer than a screen are left whole, but no
    control or bidi character reaches the terminal."""
    return visible(text, lines=True)


def md(value: Any, limit: int = LIMIT) -> str:
    """One value for a Streamlit text that renders Markdown (st.markdown, st.error, captions, expander titles,
    toasts, widget labels): shown(), then every Markdown, HTML and Streamlit mark made literal, and what would
    be linked by itself (a bare URL, an e-mail address) shown as code."""
    text, out, at = shown(value, limit), [], 0
    for m in _BARE_LINK.finditer(text):
        out += [_MARKUP.sub(_backslash, text[at:m.start()]), _code_span(m.group())]
        at = m.end()
    return "".join([*out, _MARKUP.sub(_backslash, text[at:])])


def _backslash(m: re.Match[str]) -> str:
    mark, text = m.group(), m.string
    if mark[0] == "_" and text[m.start() - 1:m.start()].isalnum() and text[m.end():m.end() + 1].isalnum():
        return mark  # inside a word
    return "".join("\\" + ch for ch in mark)


def code(value: Any) -> str:
    """One value as a Markdown code span, fenced by more backticks than any run of them in it (so none closes it
    early); inside a code span Markdown is literal."""
    return _code_span(shown(value))


def _code_span(text: str) -> str:
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], right: Collection[int] = ()) -> str:
    """A Markdown table (GitHub's) of values, each header and cell as md() shows a value: a `|` in one is escaped
    there, so a value never opens a cell; the columns numbered in `right` are aligned right (numbers)."""
    rule = ["--:" if i in right else "---" for i in range(len(header))]
    return "\n".join("| " + " | ".join(line) + " |"
                     for line in [[md(h) for h in header], rule, *([md(v) for v in row] for row in rows)])


def cells(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Table rows with every text cell (and column name) as shown() shows a value: the grid draws text as it is,
    and a bidi override in a cell would reorder it; numbers, flags and dates stay what they are, to sort by."""
    return [{shown(k): shown(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows]


def message(text: str) -> str:
    """A finding's message or hint (the catalog's text with values in it) for a terminal: each value the template
    was filled with (analysis.catalog.Filled) shown as a value, the template's text as it is; a text without its
    parts, escaped and cut whole."""
    if isinstance(text, Filled):
        return "".join(shown(t) if value else visible(t) for t, value in text.parts)
    return shown(text, MESSAGE)


def md_message(text: str | BaseException) -> str:
    """A finding's message or hint (or an error) for Markdown: meshstep's own words for the command line said with
    the app's controls (app/controls.py), then escaped; of a Filled text, only the template's words are said
    anew, each value stays what it was and is made literal Markdown alone. The message's own line breaks (the
    template's, or an error's: the exception itself, whose lines the CLI prints as they are, app/cli.py) are line
    breaks, each line made unable to start a block; a value's newline stays an escape, and so does every newline
    of a text whose parts are unknown (stored or typed), so that no line of theirs passes for the message's."""
    if isinstance(text, BaseException):
        return _lines(md(line, MESSAGE) for line in controls.for_app(str(text)).split("\n"))
    if not isinstance(text, Filled):
        return md(controls.for_app(str(text)), MESSAGE)
    values = [t for t, value in text.parts if value]
    marked, n = [], 0
    for t, value in text.parts:  # each value as a mark the rules read as a word, and carry where they move it
        marked.append(f"\ue000{n}\ue001" if value else t)
        n += value
    pieces = _VALUE_MARK.split(controls.for_app("".join(marked)))
    return _lines("".join(md(values[int(p)]) if i % 2 else "\n".join(md(line, len(line)) for line in p.split("\n"))
                          for i, p in enumerate(pieces)).split("\n"))


def _lines(lines: Iterable[str]) -> str:
    """Markdown lines (each escaped already) as one paragraph's: joined by hard line breaks (a backslash at the end
    of a line), each line's indent kept as no-break spaces, and what would make its start a block (a list item, a
    setext heading's underline or a rule; the rest md() escaped) made literal."""
    return "\\\n".join(_BLOCK_START.sub(_inert, line, count=1) for line in lines)


def _inert(m: re.Match[str]) -> str:
    indent, mark, number, delimiter = m.groups()
    return "\xa0" * len(indent) + (f"\\{mark}" if mark else f"{number}\\{delimiter}" if number else "")


_VALUE_MARK = re.compile("\ue000(\\d+)\ue001")
# What starts a block in the middle of a paragraph once md() has escaped the rest: a bullet (`-`, `+`), an ordered
# item (`1.`, `2)`), a setext underline or rule (`---`, `===`); and the indent before it, which Markdown strips.
_BLOCK_START = re.compile(r"^( *)(?:([-+=])|(\d{1,9})([.)]))?")


def html(value: Any) -> str:
    """One value in HTML or SVG the app writes itself (the components graph): escaped for text and attributes."""
    return _html.escape(visible(str(value)), quote=True)


def data(value: Any) -> Any:
    """A JSON value for st.json (its viewer draws strings as text, but a bidi override in one reorders what follows
    and a 100 KB one fills the page): every string in it, keys too, as shown() shows a value; numbers, flags and
    null stay what they are."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, Mapping):
        return {shown(k): data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [data(v) for v in value]
    return value
