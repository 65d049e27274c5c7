"""The audit trail against someone who can write the database (but holds neither the audit key nor this machine's
checkpoints): each way of hiding a change is seen by `audit --verify`, on SQLite and PostgreSQL alike."""
from __future__ import annotations

import json
import os
import stat

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from app.cli import main
from cluster.errors import MeshstepError
from state import audit
from state.models import AuditEvent, AuditHead
from state.store import Store


@pytest.fixture
def trail(store):
    """cluster.add, flag.set ×2, a plan with one stage, a stage transition."""
    store.set_flag("demo", "mtls-strict", "mesh", {"mode": "STRICT"}, "on", "alice", "encrypt everything")
    store.set_flag("demo", "tracing", "mesh", {"sampling": 1.0}, "on", "carol", "see calls")
    plan = store.create_plan("demo", "adopt", "custom", [{"title": "Inject shop", "features": []}], "alice")
    store.transition_stage(plan.stages[0].id, "ready", "alice", "gate passes", 1)
    assert audit.verify(store) is None
    return store


def _sql(store: Store, statement: str, **params) -> None:
    with store.engine.begin() as c:
        c.execute(text(statement), params)


def _rehash(store: Store, key: audit.AuditKey | None = None, edit=lambda ev: None, start: int = 1) -> None:
    """Rewrite the chain from event `start` on as a database writer can: each event edited by `edit`, then
    re-hashed (with `key`, else the plain sha256) onto the one before, and the head moved to the new last hash."""
    with Session(store.engine) as s:
        prev = "0" * 64
        for ev in s.exec(select(AuditEvent).order_by(AuditEvent.seq)):
            if ev.seq < start:
                prev = ev.hash
                continue
            edit(ev)
            ev.prev_hash = prev
            ev.hash = prev = audit.chain_hash(ev, key)
            s.add(ev)
        head = s.get(AuditHead, 1)
        head.hash = prev
        s.add(head)
        s.commit()


def test_an_event_edited_and_rehashed_without_the_key_is_seen(trail):
    # The writer recomputes the chain from the edit on, with the plain hash (all they can compute).
    _rehash(trail, edit=lambda ev: setattr(ev, "reason", "approved by the CISO") if ev.seq == 2 else None, start=2)
    assert str(audit.verify(trail)) == "event 2 was altered"


def test_a_whole_chain_rehashed_without_the_key_is_seen_by_the_checkpoint(trail):
    # Re-hashed from the first event, the trail looks like one written before keys existed: the checkpoint of the
    # head, kept outside the database, is what tells.
    _rehash(trail, edit=lambda ev: setattr(ev, "reason", "approved by the CISO") if ev.seq == 2 else None)
    last = trail.audit_events()[-1].seq
    assert str(audit.verify(trail)).startswith(f"event {last} is not the one the checkpoint in "
                                               f"{audit.checkpoint_path()}")


def test_the_last_event_deleted_and_the_head_rewound_is_seen(trail):
    last = trail.audit_events()[-1]
    before = trail.audit_events()[-2]
    _sql(trail, "DELETE FROM audit_events WHERE seq = :seq", seq=last.seq)
    _sql(trail, "UPDATE audit_head SET seq = :seq, hash = :hash", seq=before.seq, hash=before.hash)
    # Undo the stage transition too, so that the tables agree with the shortened trail.
    _sql(trail, "UPDATE stages SET status = 'planned', version = 1")
    broken = audit.verify(trail)
    assert broken.seq == last.seq
    assert str(broken).startswith(f"the trail was cut back to {before.seq} events: the checkpoint in "
                                  f"{audit.checkpoint_path()}")


def test_a_flag_edited_in_its_table_is_seen(trail):
    _sql(trail, "UPDATE flags SET state = 'off' WHERE feature = 'mtls-strict'")
    assert str(audit.verify(trail)) == ("flag:demo/mtls-strict/mesh disagrees with the trail: the flags table says "
                                        "state 'off', event 2 says state 'on': it was changed outside meshstep")


def test_a_flag_added_or_removed_in_its_table_is_seen(trail):
    _sql(trail, "DELETE FROM flags WHERE feature = 'tracing'")
    assert "flag:demo/tracing/mesh is in the trail (event 3) but not in the flags table" in str(audit.verify(trail))
    _sql(trail, "INSERT INTO flags (cluster, feature, scope, params, state, version, changed_by, changed_at, reason) "
                "VALUES ('demo', 'tracing', 'mesh', '{}', 'on', 1, 'mallory', '2026-01-01', '')")
    assert "flag:demo/tracing/mesh disagrees with the trail" in str(audit.verify(trail))


def test_a_stage_edited_in_its_table_is_seen(trail):
    _sql(trail, "UPDATE stages SET status = 'done'")
    assert "disagrees with the trail: the stages table says status 'done'" in str(audit.verify(trail))


def test_everything_deleted_is_seen(trail):
    for table in ("audit_events", "stages", "plans", "flags"):
        _sql(trail, f"DELETE FROM {table}")
    _sql(trail, "UPDATE audit_head SET seq = 0, hash = :h", h="0" * 64)
    assert str(audit.verify(trail)).startswith("the trail was cut back to 0 events")


def test_the_trail_cannot_be_rewritten_with_a_key_of_ones_own(trail):
    # The writer re-signs the whole trail with a key they made: it is not this machine's key.
    _rehash(trail, audit.AuditKey(b"mallory's key", "mallory"), edit=lambda ev: setattr(ev, "reason", "forged"))
    assert str(audit.verify(trail)) == "event 1 was altered"


def test_the_key_is_made_once_private_and_shown_by_its_fingerprint(db_url, capsys):
    key = audit.audit_key()
    path = key.origin
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert audit.audit_key() == key and len(key.fingerprint) == 19
    store = Store.open(db_url)
    store.set_flag("demo", "tracing", "mesh", {}, "on", "alice", "see calls")
    store.close()
    assert main(["audit", "--verify", "--db", db_url]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("audit chain verified: 2 events, hash keys ")
    assert key.fingerprint in out.out and path in out.out
    # Another key (another machine without the team's key) cannot vouch for the trail, and says which key it used.
    os.environ["MESHSTEP_AUDIT_KEY"] = "someone else's key"
    try:
        assert main(["audit", "--verify", "--db", db_url]) == 1
    finally:
        del os.environ["MESHSTEP_AUDIT_KEY"]
    err = capsys.readouterr().err
    assert "audit chain broken: event 1 was altered" in err and "$MESHSTEP_AUDIT_KEY" in err


def test_a_database_of_plain_hashes_verifies_and_goes_on_keyed(store):
    # Events written before keys (plain sha256) verify up to the first keyed one.
    store.set_flag("demo", "tracing", "mesh", {}, "on", "alice", "see calls")
    _rehash(store)
    audit.checkpoints().update(dict.clear)  # the checkpoint of the keyed trail this test replaced
    assert audit.verify(store) is None
    store.set_flag("demo", "tracing", "mesh", {}, "off", "alice", "quiet")
    assert audit.verify(store) is None


def test_verify_of_a_database_that_does_not_exist_does_not_make_it(tmp_path, capsys):
    path = tmp_path / "nope.db"
    assert main(["audit", "--verify", "--db", f"sqlite:///{path}"]) == 2
    assert capsys.readouterr().err == f"error: no state database at {path} (check --db / MESHSTEP_DATABASE_URL)\n"
    assert not path.exists()
    with pytest.raises(MeshstepError, match="no state database"):
        Store.open(f"sqlite:///{path}", create=False)


def test_checkpoints_file_is_json_by_database(trail):
    points = json.loads(audit.checkpoint_path().read_text())
    assert points[trail.identity]["seq"] == trail.audit_events()[-1].seq
