"""Key rotation: the server's key (MESHSTEP_AUDIT_KEY, from its Secret) is replaced and the old one kept as retired
with the time it was retired (MESHSTEP_AUDIT_RETIRED_KEYS=KEY@WHEN): every earlier event still verifies, `audit
--verify` says which generation signed which events, and the retired key cannot sign an event past the rotation
(a database writer without any key cannot sign one at all: tests/state/test_tamper.py)."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import select

from app.cli import main
from state import audit
from state.models import AuditEvent, AuditHead
from state.store import Store
from tests.state.test_tamper import _rehash

OLD, NEW = "the key of 2025 (retired)", "the key of 2026 (current)"


def _rotate(monkeypatch) -> None:
    """The Secret's key replaced now; the old one kept, retired as of now."""
    monkeypatch.setenv("MESHSTEP_AUDIT_KEY", NEW)
    monkeypatch.setenv("MESHSTEP_AUDIT_RETIRED_KEYS", f"{OLD}@{datetime.now(UTC).isoformat()}")


def _write(db_url: str, actor: str) -> None:
    store = Store.open(db_url)
    try:
        store.set_flag("demo", "tracing", "mesh", {}, "on" if actor != "bob" else "off", actor, "because")
    finally:
        store.close()


def test_a_rotated_key_leaves_every_earlier_event_verifiable(db_url, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MESHSTEP_AUDIT_KEY", OLD)
    _write(db_url, "alice")  # cluster.add and flag.set: events 1-2
    _rotate(monkeypatch)
    _write(db_url, "bob")  # event 3, under the new key
    assert main(["audit", "--verify", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert (f"signed: events 1-2 by key generation 1 of 2 ({audit.fingerprint(OLD.encode())}), events 3-3 by key "
            f"generation 2 of 2 ({audit.fingerprint(NEW.encode())})") in out
    # Without the retired key the old events cannot be vouched for.
    monkeypatch.delenv("MESHSTEP_AUDIT_RETIRED_KEYS")
    assert main(["audit", "--verify", "--db", db_url]) == 1
    assert "audit chain broken: event 1 was altered" in capsys.readouterr().err


def test_the_retired_key_cannot_sign_past_the_rotation(db_url, monkeypatch) -> None:
    monkeypatch.setenv("MESHSTEP_AUDIT_KEY", OLD)
    _write(db_url, "alice")
    _rotate(monkeypatch)
    _write(db_url, "bob")
    store = Store.open(db_url)
    try:
        assert audit.verify(store) is None
        # Whoever kept the retired key re-signs the event after the rotation with it (and the head to match).
        _rehash(store, audit.AuditKey(OLD.encode(), "leaked"), edit=lambda ev: setattr(ev, "reason", "forged"),
                start=3)
        assert audit.check_chain(*_chain(store), store.audit_key) == audit.Break(3, "event 3 was altered")
    finally:
        store.close()


@pytest.mark.parametrize("retired", ["", OLD])
def test_new_events_are_signed_with_the_current_key_only(db_url, monkeypatch, retired: str) -> None:
    monkeypatch.setenv("MESHSTEP_AUDIT_KEY", NEW)
    monkeypatch.setenv("MESHSTEP_AUDIT_RETIRED_KEYS", retired)
    _write(db_url, "alice")
    store = Store.open(db_url)
    try:
        assert audit.key_spans(store) == [(1, 2, 2 if retired else 1)]
    finally:
        store.close()


def _chain(store: Store) -> tuple:
    """The head and the events, as verify reads them (without the checkpoint, which sees the rewrite too)."""
    with store.reader() as s:
        return s.get(AuditHead, 1), list(s.exec(select(AuditEvent).order_by(AuditEvent.seq)))
