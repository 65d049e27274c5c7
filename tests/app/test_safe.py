"""app/safe.py: how each surface shows text from a cluster or a user. The Markdown is rendered by a CommonMark
renderer with raw HTML on (stricter than Streamlit's, which drops it): no element comes of a value."""
from __future__ import annotations

import json
import re

from markdown_it import MarkdownIt

from analysis.catalog import fill, text
from app import safe
from cluster.errors import MeshstepError
from planner.plan import LeftOut

HOSTILE = ["<script>alert(1)</script>", "<img src=http://evil.test/x.png>", "![x](http://evil.test/x.png)",
           "[t](javascript:alert(1))", "<http://evil.test/a>", "**bold** __under__ *it*", "$$x^2$$ $y$",
           "~~gone~~", "`code`", "# heading", "> quote", "| a | b |", "&#x202e;&lt;", ":red[x] :material/home:",
           "a\\*b", "line\nbreak", "\x1b[31mred\x1b[0m", "\u202eevil\u202c", "tab\there", "see http://evil.test/x",
           "www.evil.test", "me@evil.test", "javascript:alert(1)"]
# What GitHub's Markdown (Streamlit's) links by itself, wherever it is in the text: shown as code instead.
BARE = re.compile(r"(?i)https?://|www\.|@")
MD = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def test_hidden_characters_are_written_as_escapes() -> None:
    assert safe.visible("a\x1b[31mb\u202ec\u2066d\x07\x9b") == "a\\x1b[31mb\\u202ec\\u2066d\\x07\\x9b"
    assert safe.visible("one\ntwo\r") == "one\\ntwo\\r"
    assert safe.terminal("one\ntwo\x1b]0;title\x07\n") == "one\ntwo\\x1b]0;title\\x07\n"
    assert safe.visible("Istio ✓ → ünïcode") == "Istio ✓ → ünïcode"


def test_a_long_value_is_cut_with_its_length() -> None:
    assert safe.shown("x" * 100_000) == "x" * safe.LIMIT + "… (100,000 characters)"
    assert safe.shown("short") == "short"
    assert len(safe.message("y" * 5000)) < safe.MESSAGE + 30


def test_markdown_makes_no_element_of_a_value() -> None:
    for value in HOSTILE:
        html = MD.render(f"before {safe.md(value)} after")
        codes = re.findall(r"<code>([^<]*)</code>", html)
        assert all(BARE.search(c) for c in codes), (value, html)
        assert not BARE.search(re.sub(r"<code>[^<]*</code>", "", html)), (value, html)
        assert re.fullmatch(r"<p>[^<]*</p>\n", re.sub(r"</?code>", "", html)), (value, html)
        # and it reads as the value (every hidden character written as its escape)
        text = re.sub(r"</?code>", "", html).removeprefix("<p>").removesuffix("</p>\n")
        unescaped = text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
        assert unescaped == f"before {safe.visible(value)} after", value


def test_a_table_keeps_each_value_in_its_cell_and_makes_no_element_of_it() -> None:
    table = safe.md_table(("value", "n"), [(value, i) for i, value in enumerate(HOSTILE)], right={1})
    html = MD.render(table)
    assert html.count("<table>") == 1 and html.count("<tr>") == len(HOSTILE) + 1
    cells = re.findall(r"<td[^>]*>(.*?)</td>", html)
    assert len(cells) == 2 * len(HOSTILE)
    for value, shown in zip(HOSTILE, cells[::2], strict=True):
        assert re.fullmatch("[^<]*", re.sub(r"</?code>", "", shown)), (value, shown)  # no element but code
        text = re.sub(r"</?code>", "", shown).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
        assert text.replace("&amp;", "&").strip() == safe.visible(value), value
    assert cells[1::2] == [str(i) for i in range(len(HOSTILE))]
    assert '<td style="text-align:right">' in html


def test_a_code_span_holds_the_whole_value() -> None:
    for value in ["a`b", "``x``", "`", "plain"]:
        html = MD.render(f"see {safe.code(value)} here")
        assert html.count("<code>") == 1 and value in html.replace("&lt;", "<"), html


def test_html_escapes_text_and_attributes() -> None:
    assert safe.html('<b a="1">\u202e') == "&lt;b a=&quot;1&quot;&gt;\\u202e"


def test_a_json_view_shows_every_string_as_a_value() -> None:
    before = {"reason": "\u202eevil\u202c", "params": {"x\x1b[2K": ["a" * 100_000, 3, None, True]}}
    assert safe.data(before) == {"reason": "\\u202eevil\\u202c",
                                 "params": {"x\\x1b[2K": [safe.shown("a" * 100_000), 3, None, True]}}


def test_a_message_shows_each_value_it_was_filled_with_as_a_value() -> None:
    """A long value is cut alone: the template's text after it stays; markup in a value stays text, the
    template's own text is not cut."""
    long = fill("VirtualService {name} routes to {host}, which no Service or ServiceEntry defines", name="shop/x",
                host="A" * 100_000)
    assert safe.message(long) == ("VirtualService shop/x routes to " + safe.shown("A" * 100_000)
                                  + ", which no Service or ServiceEntry defines")
    istio = text("IST0101", "host", "![x](http://evil.test/x.png)\u202e")
    assert safe.message(istio) == 'Referenced host not found: "![x](http://evil.test/x.png)\\u202e"'
    html = MD.render(safe.md_message(istio))
    assert "<img" not in html and "<a" not in html and html.startswith("<p>Referenced host not found: &quot;")
    # A message quoted in another keeps its values (a plan's reason quoting a finding)
    outer = fill("analysis would flag {ref}: {message}", ref="VirtualService a/b", message=long)
    assert safe.message(outer).endswith(", which no Service or ServiceEntry defines")
    # Text without its parts (an exception's, a stored message) is escaped and cut whole, as before
    assert safe.message(str(long)) == safe.shown(str(long), safe.MESSAGE)


def test_a_plan_keeps_a_reason_with_its_values_apart() -> None:
    reason = fill("analysis would flag {ref}: {message}", ref="VirtualService a/b", message="x" * 5000)
    kept = LeftOut("Resilience", "timeouts-retries", "a", reason).to_json()
    assert json.loads(json.dumps(kept)) == kept  # what the plans table stores
    again = LeftOut.reason_of(kept)
    assert again == reason and again.parts == reason.parts
    # A reason edited in the database no longer matches its parts: shown whole, as any text
    assert type(LeftOut.reason_of(kept | {"reason": "edited"})) is str


def test_an_error_s_own_lines_are_lines_and_none_of_them_is_markup() -> None:
    """An error is meshstep's message, written in lines (a gate's findings under its head line): each is a line
    in the app too, as on the terminal (app/cli.py), whatever the text it quotes makes a line start with — no
    heading, list, quote, rule, code block, image or link, and no literal `\\n`."""
    lines = ["stage 3 (Enforce STRICT) is blocked by 1 failing check(s):", "  × error   MST0401 Namespace shop",
             "", "- not a list", "+ nor this", "1. nor this", "2) nor this", "# not a heading", "> not a quote",
             "---", "===", "    not code", "![x](http://evil.test/x.png)", "<img src=http://evil.test/y.png>"]
    html = MD.render(safe.md_message(MeshstepError("\n".join(lines))))
    assert "\\n" not in html and html.count("<br />") == len(lines) - 1, html
    assert re.fullmatch(r"<p>[^<]*(?:<br />\n[^<]*|<code>[^<]*</code>[^<]*)*</p>\n", html), html
    shown = [re.sub(r"</?code>", "", line) for line in html.removeprefix("<p>").removesuffix("</p>\n")
             .split("<br />\n")]
    assert [line.replace("\xa0", " ").replace("&lt;", "<").replace("&gt;", ">") for line in shown] == lines


def test_a_value_s_line_break_starts_no_line() -> None:
    """A value the message was filled with is data: its newline stays the escape `\\n`, so that the line after it
    cannot pass for the message's own; text whose parts are unknown (stored, typed) stays on one line too."""
    filled = fill("host {host} not found\nsee the VirtualService", host="a\n# heading\n![x](http://evil.test/x.png)")
    html = MD.render(safe.md_message(filled))
    assert html == ("<p>host a\\n# heading\\n![x](<code>http://evil.test/x.png)</code> not found<br />\n"
                    "see the VirtualService</p>\n"), html
    assert "<br />" not in MD.render(safe.md_message("typed\n# reason"))
