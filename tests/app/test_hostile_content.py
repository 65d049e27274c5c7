"""Cluster content is data: the hostile corpus (tests/hostile.py — script tags, <img>, Markdown images and links,
bold, formulas, ANSI escapes, bidi overrides, 100 KB strings, in every field meshstep shows) through every CLI
command, on pseudo-terminals, and every app page in Chromium.

The CLI: no control or bidi character reaches the terminal (stdout and stderr are both terminals: the case where
escapes act), long values are cut with their length, Markdown output makes no element of a payload, and the YAML
`render` writes parses back to the cluster's values exactly. The app: no element made from payload text (no img, a,
strong, script, formula), no request to any host but the app's own. Each (payload, field, surface) case is counted
where the surface showed that field's value, and the count printed."""
from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
import tty
import unicodedata
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from markdown_it import MarkdownIt

from tests.app.browser import app_server, chromium, settled
from tests.hostile import EVIL, FIELDS, PAYLOADS, SEPARATOR, namespace, pod_name, tag, value, write_snapshots

ROOT = Path(__file__).resolve().parents[2]
SHOWN = {}  # surface → the (payload, field) cases it showed: printed as the count at the end


def _hidden(text: str) -> list[str]:
    """The characters of `text` a terminal or a page would act on instead of showing: controls (but newline and
    tab), format characters (bidi overrides, isolates, zero-width) and line/paragraph separators."""
    return sorted({f"U+{ord(ch):04X}" for ch in text
                   if ch not in "\n\t" and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path], str]:
    """The whole corpus, a snapshot per class, and the state database the commands fill."""
    tmp = tmp_path_factory.mktemp("hostile")
    return *write_snapshots(tmp), f"sqlite:///{tmp / 'state.db'}"


def _commands(snap: Path, per_class: dict[str, Path], db: str) -> list[tuple[str, list[str]]]:
    """(surface, argv) of every command that shows what a source or a user says: the commands that show one
    namespace read its class's snapshot (flags are recorded under the whole corpus's name, which the app reads)."""
    s = str(snap)
    cmds = [("features", ["features"]), ("inventory", ["inventory", "-s", s]), ("analyze", ["analyze", "-s", s]),
            ("explain", ["explain", "-s", s])]
    for cls, one in per_class.items():
        ns, one = namespace(cls), str(one)
        pod = f"{ns}/{pod_name(cls)}"
        cmds += [("explain POD", ["explain", pod, "-s", one]),
                 ("explain POD -o markdown", ["explain", pod, "-s", one, "-o", "markdown"]),
                 ("render --scope", ["render", "sidecar-injection", "--scope", ns, "-s", one]),
                 # another revision: the namespace's revision label changes, and the gate names its owner (MST0008)
                 ("render --set revision", ["render", "sidecar-injection", "--scope", ns, "-s", one, "--set",
                                            "revision=1-27"])]
    cmds += [("plan new", ["plan", "new", "-s", s, "--db", db, "--actor", "corpus"]),
             ("plan show", ["plan", "show", "-s", s, "--db", db]),
             ("plan next", ["plan", "next", "-s", s, "--db", db])]
    # After the plan, which records what it found on as flag events of its own: the Audit page lists these last
    # events first, and the browser walk selects them.
    cmds += [("flags set", ["flags", "set", "sidecar-injection", "--scope", namespace(cls), "-s", str(one),
                            "--cluster", s, "--db", db, "--actor", value(cls, "actor"), "--reason",
                            value(cls, "reason")]) for cls, one in per_class.items()]
    cmds += [("flags list", ["flags", "list", "--db", db, "--cluster", s]),
             ("status", ["status", "-s", s, "--db", db]),
             ("fleet", ["fleet", "--sources", f"corpus={s}", "--remember", "--db", db]),
             ("audit", ["audit", "--db", db]),
             ("audit --export markdown", ["audit", "--db", db, "--export", "markdown"])]
    return cmds


def _read(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other end is closed
            return
        if not chunk:
            return
        into += chunk


def _on_terminals(commands: list[list[str]], tmp: Path) -> list[tuple[int, str, str]]:
    """Run the commands in one process whose stdout and stderr are pseudo-terminals (raw: what is written is what
    arrives); (exit status, stdout, stderr) of each."""
    (tmp / "commands.json").write_text(json.dumps(commands))  # 100 KB arguments: more than one argv may hold
    masters, slaves, outs = [], [], [bytearray(), bytearray()]
    for _ in outs:
        master, slave = pty.openpty()
        tty.setraw(slave)
        masters.append(master)
        slaves.append(slave)
    env = os.environ | {"KUBECONFIG": "/nonexistent", "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.hostile", str(tmp / "commands.json")], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=slaves[0], stderr=slaves[1])
    for slave in slaves:
        os.close(slave)
    readers = [threading.Thread(target=_read, args=(m, o)) for m, o in zip(masters, outs)]
    for r in readers:
        r.start()
    proc.wait(timeout=600)
    for r in readers:
        r.join(timeout=60)
    for m in masters:
        os.close(m)
    parts = [re.split(re.escape(SEPARATOR).replace(r"\{\}", r"(-?\d+)"), o.decode()) for o in outs]
    out, err = parts
    assert len(out) == 2 * len(commands) + 1, f"the runner stopped early:\n{err[-1][-3000:]}"
    return [(int(out[2 * i + 1]), out[2 * i], err[2 * i]) for i in range(len(commands))]


def _own_lines(text: str) -> list[str]:
    """Lines of `text` that a value's newline started (the newline class's `-own-line`)."""
    return re.findall(r"(?m)^.{0,3}newline\.[a-z-]+-own-line.*$", text)


def _tags_in(text: str) -> set[tuple[str, str]]:
    return {(c, f) for c in PAYLOADS for f in FIELDS if tag(c, f) in text}


MD = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough", "linkify"])


def _markdown_elements(text: str) -> list[str]:
    """The elements a Markdown renderer (raw HTML allowed) makes of `text` that carry a payload's tag."""
    html = MD.render(text)
    return [m.group() for m in re.finditer(r"<(img|a|strong|em|script)\b[^>]*>[^<]*", html)
            if any(tag(c, f) in m.group() for c in PAYLOADS for f in FIELDS)]


@pytest.fixture(scope="module")
def cli_runs(corpus: tuple[Path, str]) -> list[tuple[str, list[str], int, str, str]]:
    commands = _commands(*corpus)
    results = _on_terminals([argv for _, argv in commands], corpus[0].parent)
    return [(surface, argv, *result) for (surface, argv), result in zip(commands, results)]


def test_every_command_shows_hostile_values_as_text(cli_runs) -> None:
    for surface, argv, code, out, err in cli_runs:
        what = " ".join(a if len(a) < 60 else a[:60] + "…" for a in argv)
        assert "Traceback" not in err, f"{what}:\n{err[-3000:]}"
        assert code in (0, 1) or surface == "render --scope" and code == 2, f"{what} exited {code}:\n{err[-2000:]}"
        for stream, text in (("stdout", out), ("stderr", err)):
            assert not _hidden(text), f"{what}: {stream} carries {_hidden(text)}"
            # The 100 KB value is cut (what is shown of it, then its length); not in the YAML, which is the
            # cluster's objects (and the label command in its notes must set the value there is).
            if not (surface.startswith("render --") and stream == "stdout"):
                assert "A" * 1000 not in text, f"{what}: {stream} shows a long value whole"
                assert not _own_lines(text), f"{what}: a value's newline starts a line: {_own_lines(text)[:3]}"
        shown = _tags_in(out + err)
        cut = err if surface.startswith("render --") else out + err  # the YAML keeps it whole (below)
        if "long" in {c for c, _ in _tags_in(cut)}:
            assert re.search(r"A… \(1\d\d,\d{3} characters\)", cut), f"{what}: a long value is not cut"
        if surface in ("plan new", "plan show"):  # a left-out step's reason quotes IST0101's message
            # filled from its template: the long host is cut alone, and the message's closing quote stays
            assert re.search(r'long\.vs-dest-A+… \(100,0\d\d characters\)"$', out, re.M), f"{what}: {out[-2000:]}"
        if surface == "analyze":  # findings filled from their templates: the long value cut alone, the rest kept
            for tail in (" defined in the DestinationRule does not match any services in the mesh.",
                         ", which has no istiod here"):
                assert re.search(r"long\.[a-z-]+-A+… \(100,0\d\d characters\)" + re.escape(tail), out), tail
        if surface.endswith("markdown"):
            assert not _markdown_elements(out), f"{what}: {_markdown_elements(out)[:3]}"
        SHOWN.setdefault(f"cli: {surface}", set()).update(shown)
    seen = set().union(*(SHOWN[s] for s in SHOWN if s.startswith("cli:")))
    # Every class is shown somewhere, from the snapshot and from what people type.
    assert {c for c, _ in seen} == set(PAYLOADS)
    assert {f for _, f in seen} >= {"ns-rev", "status-rev", "vs-dest", "dr-host", "manager", "actor", "reason"}


def test_rendered_yaml_keeps_every_value_exactly(cli_runs) -> None:
    """The YAML is the cluster's objects: its values parse back exactly (YAML's own quoting, not the terminal's)."""
    rendered = [out for surface, _, code, out, _ in cli_runs if surface == "render --scope"]
    assert len(rendered) == len(PAYLOADS)
    for cls, out in zip(PAYLOADS, rendered):
        docs = [d for d in yaml.safe_load_all(out) if d]
        ns = next(d for d in docs if d["kind"] == "Namespace" and d["metadata"]["name"] == namespace(cls))
        assert ns["metadata"]["annotations"]["owner"] == value(cls, "ns-annotation")
        assert ns["metadata"]["labels"]["istio.io/rev"] == value(cls, "ns-rev")


# ---------------------------------------------------------------- the app, in Chromium

# In the page: the elements a payload would have made (an image, a link, emphasis, a script, a formula). An element
# whose whole text is a tag (`bold.env-bold`) came from a payload's markup; one the app wraps around a value holds
# the value's markup as text. An image or link to the evil host, a script that sets window.pwned, any formula.
_MADE = """() => {
  const out = [], tagOnly = /^\\s*[a-z-]+\\.[a-z-]+(-[a-z]+)?\\s*$/;
  for (const e of document.querySelectorAll('img, iframe, a, source, video, audio'))
    if (/EVIL|javascript:/i.test((e.getAttribute('src') || '') + (e.getAttribute('href') || ''))) out.push(e.outerHTML);
  for (const e of document.querySelectorAll('a, strong, b, em, del'))
    if (tagOnly.test(e.textContent)) out.push(e.outerHTML);
  for (const e of document.querySelectorAll('script')) if (/pwned/.test(e.textContent)) out.push(e.outerHTML);
  for (const e of document.querySelectorAll('.katex, math')) out.push(e.outerHTML);
  if (window.pwned !== undefined) out.push('window.pwned = ' + window.pwned);
  return out.map(html => html.slice(0, 200));
}""".replace("EVIL", EVIL.replace(".", "\\."))


def _check_page(pg, surface: str, context, part=None) -> None:
    """What the page shows now: no element made of a payload, no request to another host, no hidden character
    in its text; the cases it showed (in `part`, a locator, if given) are counted."""
    settled(pg)
    made = pg.evaluate(_MADE)
    assert not made, f"{surface}: elements made of payloads: {made[:5]}"
    assert not context.foreign, f"{surface}: requests to other hosts: {context.foreign}"
    text = pg.evaluate("() => document.body.innerText")
    assert not _hidden(text), f"{surface}: the page's text carries {_hidden(text)}"
    assert not _own_lines(text), f"{surface}: a value's newline starts a line: {_own_lines(text)[:3]}"
    # The tables are canvas grids whose cells are in the page for assistive technology: textContent has them.
    shown = part.text_content() if part else pg.evaluate("() => document.body.textContent")
    SHOWN.setdefault(f"app: {surface}", set()).update(_tags_in(shown))


def _download(pg, button: str) -> str:
    """The file a download button gives. A click that lands while the page reruns is lost (no download event comes):
    the button is then clicked again, at most three times in all. The report is built when clicked (it verifies the
    whole chain again): on a machine running the suite's other worker, that took over 20 s once."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(3):
        try:
            with pg.expect_download(timeout=60_000) as download:
                pg.get_by_role("button", name=button).click()
            return Path(download.value.path()).read_text()
        except PlaywrightTimeout:
            settled(pg)
    raise AssertionError(f"{button}: no download after three clicks")


def _go(pg, title: str) -> None:
    pg.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    settled(pg)


def _select(pg, label: str, option: str) -> None:
    """Choose `option` in the select box labelled `label`, by typing it."""
    box = pg.get_by_role("combobox", name=label)
    box.click()
    box.fill(option)
    box.press("Enter")


@pytest.mark.browser
def test_every_page_shows_hostile_values_as_text(corpus, cli_runs) -> None:
    """One server and one browser for the whole corpus: each page visited once, with every class in place (the
    pages that show one object at a time are asked for each class's in turn)."""
    from playwright.sync_api import expect


    snap, _, db = corpus
    with app_server(snap.parent, str(snap), db) as url, chromium() as context:
        pg = context.new_page()
        # A name given in the address (?as=…) is what a link someone sent says.
        pg.goto(f"{url}/?as={quote(value('md-image', 'actor'))}")
        _check_page(pg, "overview", context)

        _go(pg, "Inventory")
        pg.get_by_role("tab", name="Pods").click()
        for cls in PAYLOADS:
            search = pg.get_by_role("textbox", name="Name contains")
            search.fill(f"plain-{cls}")  # the pod out of the mesh: why names its istio.io/rev
            search.press("Enter")
            _check_page(pg, "inventory", context)
            info = pg.get_by_test_id("stAlert").filter(has_text="The Components page explains it")
            if not info.count():  # the first row stays selected when the search changes
                grid = pg.get_by_test_id("stDataFrame").first.bounding_box()
                pg.mouse.click(grid["x"] + 14, grid["y"] + 35 + 17)  # the first row's selection cell
            expect(info).to_be_visible()
            _check_page(pg, "inventory › pod selected", context, info)

        _go(pg, "Fleet")
        _check_page(pg, "fleet", context)

        _go(pg, "Plan")
        _check_page(pg, "plan", context)  # the expander closed: an image in it would be fetched all the same
        left_out = pg.get_by_test_id("stExpander").filter(has_text=re.compile("step\\(s\\) of the template left out"))
        left_out.get_by_text(re.compile("step\\(s\\) of the template left out")).click()
        _check_page(pg, "plan › left out", context, left_out)

        _go(pg, "Features")
        _select(pg, "Feature", "request-routing")
        for cls in PAYLOADS:
            _select(pg, "Scope", namespace(cls))
            pg.get_by_role("button", name="Render YAML").click()
            _check_page(pg, "features › render", context)

        _go(pg, "Components")
        for cls in PAYLOADS:
            _select(pg, "A component, or any pod", f"{namespace(cls)}/{pod_name(cls)}")
            _check_page(pg, "components › explain a pod", context)

        _go(pg, "Audit")
        _check_page(pg, "audit", context)
        actions = pg.get_by_role("combobox", name="Actions")
        actions.click()
        actions.fill("flag.set")
        actions.press("Enter")
        actions.press("Escape")
        _check_page(pg, "audit", context)
        for row in range(len(PAYLOADS)):  # each class's flag, set with its actor and reason
            grid = pg.get_by_test_id("stDataFrame").first.bounding_box()
            pg.mouse.click(grid["x"] + 14, grid["y"] + 35 + 35 * row + 17)
            event = pg.get_by_test_id("stMarkdown").filter(has_text=re.compile(r"^#\d+ flag\.set on"))
            expect(event).to_be_visible()
            _check_page(pg, "audit › event selected", context, event)

        report = _download(pg, "Markdown report")  # the report to hand over, opened where Markdown is rendered
        assert not _markdown_elements(report), f"audit › markdown report: {_markdown_elements(report)[:3]}"
        assert not _own_lines(report), f"audit › markdown report: {_own_lines(report)[:3]}"
        SHOWN.setdefault("app: audit › markdown report", set()).update(_tags_in(report))

        _go(pg, "Settings")
        _check_page(pg, "settings", context)
    app = {s for s in SHOWN if s.startswith("app:")}
    assert {c for s in app for c, _ in SHOWN[s]} == set(PAYLOADS)
    # Where the issue found cluster text rendered as Markdown, every class is shown, as text.
    for surface, field in (("components › explain a pod", "status-rev"), ("inventory › pod selected", "ns-rev"),
                           ("plan › left out", "vs-dest"), ("audit › event selected", "actor"),
                           ("audit › event selected", "reason"), ("audit › markdown report", "reason")):
        assert {c for c, f in SHOWN[f"app: {surface}"] if f == field} == set(PAYLOADS), surface


def test_count(cli_runs, record_property) -> None:
    """Printed, for the issue: how many (payload, field, surface) cases the corpus checked, and where (the CI run
    prints it in pytest's summary, tests/conftest.py)."""
    total = sum(len(s) for s in SHOWN.values())
    lines = [f"hostile corpus: {total} (payload, field, surface) cases over {len(SHOWN)} surfaces "
             f"({len(PAYLOADS)} payloads × {len(FIELDS)} fields placed)"]
    lines += [f"  {len(shown):4}  {surface}: {', '.join(sorted({f for _, f in shown}))}"
              for surface, shown in sorted(SHOWN.items())]
    print("\n" + "\n".join(lines))
    record_property("summary", "\n".join(lines))
    assert total
