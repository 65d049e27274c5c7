from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect, text
from sqlmodel import SQLModel

from cluster.errors import MeshstepError
from state import audit
from state.models import AuditEvent
from state.store import Store, create_db_engine, migrate

AT = datetime(2026, 1, 5, 9, 30, 0, 123456, tzinfo=UTC)


def _write_first_revision_data(engine) -> None:
    """What a database of revision 0001 holds — a cluster, a flag, a plan with a stage, a valid audit chain —
    written through that revision's own tables (reflected), so the test stays true as the models move on."""
    tables = MetaData()
    tables.reflect(engine)
    t = tables.tables
    with engine.begin() as c:
        c.execute(t["clusters"].insert(), {"name": "demo", "created_at": AT})
        c.execute(t["flags"].insert(), {
            "cluster": "demo", "feature": "mtls-strict", "scope": "mesh", "params": {"mode": "STRICT", "ratio": 0.25},
            "state": "on", "version": 1, "changed_by": "alice", "changed_at": AT, "reason": "encrypt"})
        plan_id = c.execute(t["plans"].insert(), {
            "name": "adopt", "cluster": "demo", "template": "routing-first", "status": "active", "version": 1,
            "created_by": "alice", "created_at": AT}).inserted_primary_key[0]
        stage_id = c.execute(t["stages"].insert(), {
            "plan_id": plan_id, "order": 1, "title": "Inject sidecars into shop", "goal": "", "status": "planned",
            "features": [{"feature": "sidecar-injection", "scope": "shop", "params": {}}], "version": 1,
            "updated_by": "alice", "updated_at": AT}).inserted_primary_key[0]
        prev = "0" * 64
        # What meshstep recorded then: each row as the change left it (verify replays them against the tables).
        flag = {"state": "on", "params": {"mode": "STRICT", "ratio": 0.25}, "version": 1}
        plan = {"status": "active", "version": 1, "stages": [{"id": stage_id, "status": "planned", "version": 1}]}
        for seq, (action, target, after) in enumerate([("flag.set", "flag:demo/mtls-strict/mesh", flag),
                                                       ("plan.create", f"plan:{plan_id}", plan)], 1):
            ev = AuditEvent(seq=seq, actor="alice", at=AT, action=action, target=target, after=after,
                            reason="setup", prev_hash=prev, hash="")
            ev.hash = prev = audit.chain_hash(ev)
            c.execute(t["audit_events"].insert(), ev.model_dump())


def test_upgrade_from_the_first_revision_keeps_everything(db_url):
    engine = create_db_engine(db_url)
    migrate(engine, "0001")
    assert not inspect(engine).has_table("audit_head")
    _write_first_revision_data(engine)
    engine.dispose()

    store = Store.open(db_url)
    try:
        (flag,) = store.list_flags("demo")
        assert (flag.params, flag.version, flag.changed_at) == ({"mode": "STRICT", "ratio": 0.25}, 1, AT)
        (plan,) = store.list_plans("demo")
        assert [s.title for s in plan.stages] == ["Inject sidecars into shop"]
        assert plan.stages[0].features[0]["feature"] == "sidecar-injection"
        old = store.audit_events()
        assert [e.seq for e in old] == [1, 2] and audit.verify(store) is None

        # New changes chain onto the old trail, from the backfilled head.
        store.set_flag("demo", "mtls-strict", "mesh", {"mode": "PERMISSIVE"}, "on", "bob", "after upgrade", 1)
        store.record_inventory({"cluster": "demo", "source": "demo", "pods_in_mesh": 2, "pods_total": 3}, "bob")
        events = store.audit_events()
        assert events[2].prev_hash == old[1].hash and audit.verify(store) is None
    finally:
        store.close()


def test_migrated_schema_is_the_models_schema(store):
    with store.engine.connect() as c:
        assert compare_metadata(MigrationContext.configure(c), SQLModel.metadata) == []


def test_a_database_from_a_newer_meshstep_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    store = Store.open(url)
    with store.engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    store.close()
    with pytest.raises(MeshstepError, match="0099.*written by a newer meshstep; upgrade meshstep"):
        Store.open(url)


def test_schema_head_is_alembic_s_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from state.store import MIGRATIONS, schema_head

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(cfg)
    assert schema_head() == scripts.get_current_head()
    assert all(s.path.rpartition("/")[2].startswith(f"{s.revision}_") for s in scripts.walk_revisions())


def test_opening_a_database_at_the_newest_schema_does_not_import_alembic(tmp_path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'state.db'}"
    Store.open(url).close()  # made, at the newest schema
    opened = subprocess.run([sys.executable, "-c", "import sys; from state.store import Store; Store.open(sys.argv[1]);"
                             "print(sorted(m for m in sys.modules if m.startswith('alembic')))", url],
                            capture_output=True, text=True, check=True)
    assert opened.stdout.strip() == "[]"
