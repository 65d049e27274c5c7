from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from app.safe import md
from cluster.errors import MeshstepError
from state import audit, reports
from state.drift import OBSERVED_NOT_RECORDED
from state.models import AuditEvent
from tests.hostile import FORMULAS


@pytest.fixture
def trail(store):
    """Five events: cluster.add, three flag.set, one flag.unset."""
    store.set_flag("demo", "mtls-strict", "mesh", {"mode": "STRICT"}, "on", "alice", "encrypt everything")
    store.set_flag("demo", "mtls-strict", "mesh", {"mode": "STRICT", "port": 8080}, "on", "bob", "exempt 8080")
    store.set_flag("demo", "tracing", "mesh", {"sampling": 1.0}, "enabling", "carol", "see calls")
    store.unset_flag("demo", "tracing", "mesh", "carol", "too noisy")
    assert len(store.audit_events()) == 5 and audit.verify(store) is None
    return store


def _sql(store, statement: str, **params) -> None:
    with store.engine.begin() as c:
        c.execute(text(statement), params)


def test_an_edited_event_is_named(trail):
    _sql(trail, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
    broken = audit.verify(trail)
    assert (broken.seq, str(broken)) == (3, "event 3 was altered")


def test_an_edited_payload_is_named(trail):
    with Session(trail.engine) as s:
        ev = s.get(AuditEvent, 2)
        ev.after = ev.after | {"state": "off"}
        s.add(ev)
        s.commit()
    assert audit.verify(trail).seq == 2


def test_an_edited_and_rehashed_event_is_named(trail):
    # Re-hashing the forged event hides it from its own hash, not from the next event's prev_hash.
    with Session(trail.engine) as s:
        ev = s.get(AuditEvent, 3)
        ev.reason = "approved by the CISO"
        ev.hash = audit.chain_hash(ev)
        s.add(ev)
        s.commit()
    assert str(audit.verify(trail)) == "event 3 was altered"


@pytest.mark.parametrize(("seq", "message"), [
    (1, "event 1 was removed"),
    (3, "event 3 was removed"),
    (5, "event 5 was removed (the trail should end at 5)"),
])
def test_a_removed_event_is_named(trail, seq, message):
    _sql(trail, "DELETE FROM audit_events WHERE seq = :seq", seq=seq)
    broken = audit.verify(trail)
    assert (broken.seq, str(broken)) == (seq, message)


def test_an_event_added_after_the_head_is_named(trail):
    with Session(trail.engine) as s:
        last = s.exec(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        forged = AuditEvent(seq=6, actor="mallory", at=last.at, action="flag.set", target="flag:demo/x/mesh",
                            reason="", prev_hash=last.hash, hash="")
        forged.hash = audit.chain_hash(forged, trail.audit_key)  # even by someone who holds the key
        s.add(forged)
        s.commit()
    assert str(audit.verify(trail)) == "event 6 was added outside meshstep (the trail ends at 5)"


def test_writes_continue_the_chain(trail):
    trail.set_flag("prod", "metrics", "mesh", {}, "on", "dave", "dashboards")
    events = trail.audit_events()
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6, 7]
    assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:]))
    assert events[0].prev_hash == "0" * 64 and audit.verify(trail) is None


def test_json_and_csv_exports(trail):
    events = trail.audit_events()
    exported = json.loads(reports.export_json(events))
    assert [e["seq"] for e in exported] == [1, 2, 3, 4, 5]
    assert exported[2]["before"]["params"] == {"mode": "STRICT"} and exported[2]["actor"] == "bob"
    rows = list(csv.DictReader(io.StringIO(reports.export_csv(events))))
    assert list(rows[0]) == list(reports.EXPORT_FIELDS)
    assert rows[4]["action"] == "flag.unset" and rows[4]["after"] == "null"
    assert json.loads(rows[3]["after"])["params"] == {"sampling": 1.0}
    assert rows[1]["hash"] == exported[1]["hash"] == events[1].hash


def test_csv_export_keeps_formulas_text(store):
    """What people typed (an actor, a reason) that a spreadsheet would run as a formula is written with a single
    quote before it (OWASP's CSV injection guidance), every other cell as it is."""
    for i, formula in enumerate(FORMULAS):
        store.set_flag("demo", "tracing", f"ns-{i}", {}, "on", formula.format(t=f"actor{i}"),
                       formula.format(t=f"reason{i}"))
    store.set_flag("demo", "tracing", "mesh", {}, "on", "alice", "a plain reason")
    events = store.audit_events()
    rows = list(csv.DictReader(io.StringIO(reports.export_csv(events), newline="")))
    triggers = ("=", "+", "-", "@", "\t", "\r")
    assert [c for r in rows for c in r.values() if c[:1] in triggers] == []
    exported = json.loads(reports.export_json(events))
    typed = [(e["actor"], e["reason"]) for e in exported]
    assert [(r["actor"], r["reason"]) for r in rows] == [
        tuple("'" + v if v[:1] in triggers else v for v in pair) for pair in typed]
    assert rows[-1]["actor"] == "alice" and rows[-1]["reason"] == "a plain reason"
    kept = ("seq", "at", "action", "target", "prev_hash", "hash")
    assert [[r[k] for k in kept] for r in rows] == [[str(e[k]) for k in kept] for e in exported]


def test_since_filters_events(trail):
    assert len(trail.audit_events(datetime.now(UTC) - timedelta(hours=1))) == 5
    assert trail.audit_events(datetime.now(UTC) + timedelta(hours=1)) == []
    assert reports.parse_since("2024-03-01") == datetime(2024, 3, 1, tzinfo=UTC)
    with pytest.raises(MeshstepError, match="not a date"):
        reports.parse_since("last tuesday")


def test_markdown_report(trail):
    trail.set_flag("demo", "mtls-strict", "mesh", {"mode": "STRICT", "port": 9090}, "on", "erin", "move port")
    trail.set_flag("demo", "egress-registry-only", "mesh", {}, "disabling", "erin", "blocks payments")
    observed = {"demo": [SimpleNamespace(feature="tracing", scope="mesh", params={"sampling": 1.0},
                                         evidence=["Telemetry istio-system/mesh-default"])]}
    report = reports.export_markdown(trail, observed=observed, escape=md)
    assert "hash chain verified" in report and "7 events" in report
    on = next(line for line in report.splitlines() if line.startswith("| demo | mtls-strict"))
    # On since the event that turned it on (alice's), not the later parameter changes.
    assert "mode=STRICT, port=9090" in on and "| alice | encrypt everything |" in on
    assert "| demo | egress-registry-only | mesh | disabling |" in report
    assert "## Drift in demo" in report and "Telemetry istio-system/mesh-default" in report
    assert f"| {OBSERVED_NOT_RECORDED} | tracing | mesh |" in report

    later = reports.export_markdown(trail, since=datetime.now(UTC) + timedelta(hours=1), escape=md)
    assert "## Events\n\n(none)" in later and "| demo | mtls-strict" in later

    _sql(trail, "UPDATE audit_events SET reason = 'x' WHERE seq = 2")
    assert "**hash chain broken: event 2 was altered**" in reports.export_markdown(trail, escape=md)


def test_a_markdown_report_makes_no_element_of_what_people_wrote(store):
    """A reason or an actor is data in the report too: no image fetched by whoever opens it, no link, no new row."""
    from markdown_it import MarkdownIt

    reason = "![x](http://evil.test/x.png) | forged | row |\n| 99 | **bold** <img src=http://evil.test/y>"
    store.set_flag("demo", "tracing", "mesh", {}, "on", "[me](javascript:alert(1))", reason)
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(reports.export_markdown(store, escape=md))
    assert not any(tag in html for tag in ("<img", "<a ", "<strong>bold")), html
    rows = [r for r in html.split("<tr>") if "forged" in r]
    assert rows and all(r.count("<td>") == 7 for r in rows) and "<td>99</td>" not in html  # each row whole
