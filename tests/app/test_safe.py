"""app/safe.py: how each surface shows text from a cluster or a user. The Markdown is rendered by a CommonMark
renderer with raw HTML on (stricter than Streamlit's, which drops it): no element comes of a value."""
from __future__ import annotations

import re

from markdown_it import MarkdownIt

from app import safe

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


def test_a_code_span_holds_the_whole_value() -> None:
    for value in ["a`b", "``x``", "`", "plain"]:
        html = MD.render(f"see {safe.code(value)} here")
        assert html.count("<code>") == 1 and value in html.replace("&lt;", "<"), html


def test_html_escapes_text_and_attributes() -> None:
    assert safe.html('<b a="1">\u202e') == "&lt;b a=&quot;1&quot;&gt;\\u202e"
