"""One finding, three media: `analyze`'s terminal text, its JSON and the app's boxes show the same fields of each
finding (level, code, resource, message, hint, reference page), from the one structured form, analysis.findings."""
from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from analysis.base import Message
from analysis.common import analyze
from analysis.findings import SYMBOLS, fields
from app.cli import main
from cluster.model import Ref

# What a gate shows for a check it skipped: a resource without a namespace.
_SKIPPED = Message("MST0004", "warning", Ref("APIResource", None, "pods"),
                   "listing it was refused (403 Forbidden): 1 check skipped: MST0401 (callers)",
                   "Grant the identity meshstep reads with list on pods (kubectl auth can-i list pods -A).")


def _blocks(text: str) -> list[list[str]]:
    """The terminal's findings, each as its lines (a head line starts with a level's mark)."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if line[:1] in SYMBOLS.values():
            blocks.append([line])
        elif blocks and line.startswith("    "):
            blocks[-1].append(line)
    return blocks


def _boxes(messages: list[Message]) -> dict[str, list[str]]:
    """The text of each box the app draws for `messages`, by the box's level."""
    def page(messages: list) -> None:
        from app import findings

        findings.show(messages)

    at = AppTest.from_function(page, args=(messages,), default_timeout=30).run()
    assert not at.exception, at.exception
    return {level: [el.value for el in getattr(at, level)] for level in ("error", "warning", "info")}


def test_the_same_finding_reads_the_same_in_the_terminal_json_and_the_app(capsys, demo_inventory):
    assert main(["analyze", "--source", "demo", "--format", "json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert main(["analyze", "--source", "demo"]) == 0
    text = capsys.readouterr().out
    messages = analyze(demo_inventory)
    assert len(as_json) == len(_blocks(text)) == len(messages) > 3
    for m, j, block in zip(messages, as_json, _blocks(text)):
        f = fields(m)
        assert {k: j[k] for k in ("level", "code", "message", "hint", "url")} == \
            {k: f[k] for k in ("level", "code", "message", "hint", "url")}
        assert str(Ref(j["kind"], j["namespace"], j["name"])) == f["resource"]
        assert block == [f"{SYMBOLS[f['level']]} {f['level']:<7} {f['code']} {f['resource']}", f"    {f['message']}",
                         f"    hint: {f['hint']}", f"    see {f['url']}"]


def test_the_app_shows_each_finding_in_its_levels_box_with_the_same_fields():
    messages = [_SKIPPED, Message("IST0102", "info", Ref("Namespace", None, "legacy"), "not enabled", "label it")]
    boxes = _boxes(messages)
    assert sum(map(len, boxes.values())) == len(messages)
    for m in messages:
        f = fields(m)
        assert boxes[f["level"]] == [f"**{f['level']}** [{f['code']}]({f['url']}) {f['resource']}: {f['message']}"
                                     f"\n\n→ {f['hint']}"]
