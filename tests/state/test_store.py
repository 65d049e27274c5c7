from __future__ import annotations

import multiprocessing
import threading
from datetime import timedelta

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlmodel import select

from cluster.errors import ConflictError, MeshstepError
from state import audit
from state.models import Flag, FlagBefore, StageRecord
from state.store import MIGRATIONS, FlagChange, Store, _Change


def _set(store: Store, version: int | None = None, **kw):
    args = {"cluster": "demo", "feature": "mtls-strict", "scope": "mesh", "params": {"mode": "STRICT"},
            "state": "on", "actor": "alice", "reason": "encrypt", "expected_version": version} | kw
    return store.set_flag(**args)


def _dump(store: Store) -> tuple[list, list]:
    return ([f.model_dump() for f in store.list_flags()], [e.model_dump() for e in store.audit_events()])


def test_set_update_unset_flag_with_versions_and_audit(store):
    first = _set(store, 0)
    assert (first.version, first.state, first.params, first.changed_by) == (1, "on", {"mode": "STRICT"}, "alice")
    second = _set(store, 1, params={"mode": "PERMISSIVE"}, actor="bob", reason="legacy callers")
    assert second.version == 2
    assert [(f.feature, f.params) for f in store.list_flags("demo")] == [("mtls-strict", {"mode": "PERMISSIVE"})]
    assert store.list_flags("other") == []

    removed = store.unset_flag("demo", "mtls-strict", "mesh", "carol", "rolled back", expected_version=2)
    assert removed.version == 2 and store.list_flags() == []

    events = store.audit_events()
    assert [(e.action, e.actor) for e in events] == [
        ("cluster.add", "alice"), ("flag.set", "alice"), ("flag.set", "bob"), ("flag.unset", "carol")]
    assert events[2].before["params"] == {"mode": "STRICT"} and events[2].after["params"] == {"mode": "PERMISSIVE"}
    assert events[3].before["version"] == 2 and events[3].after is None
    assert audit.verify(store) is None


def test_stale_version_is_a_conflict_naming_who_changed_it(store):
    _set(store)
    _set(store, 1, actor="bob", reason="tighten")
    with pytest.raises(ConflictError) as err:
        _set(store, 1, actor="carol")
    message = str(err.value)
    assert "flag:demo/mtls-strict/mesh was changed by bob at" in message and "tighten" in message
    assert "you expected version 1, it is now version 2" in message
    with pytest.raises(ConflictError, match="you expected absent, it is now version 2"):
        _set(store, 0)
    with pytest.raises(ConflictError, match="you expected version 2, it is now absent"):
        store.unset_flag("demo", "ingress-gateway", "mesh", "bob", "gone", expected_version=2)


def test_user_errors(store):
    with pytest.raises(MeshstepError, match="unknown flag state 'maybe'"):
        _set(store, state="maybe")
    with pytest.raises(MeshstepError, match="neither 'mesh' nor a namespace"):
        _set(store, scope="Not_A_Namespace")
    with pytest.raises(MeshstepError, match="no flag mtls-strict in mesh is recorded"):
        store.unset_flag("demo", "mtls-strict", "mesh", "bob", "why")
    with pytest.raises(MeshstepError, match="needs an actor"):
        _set(store, actor="")
    with pytest.raises(MeshstepError, match="no stage with id 99"):
        store.transition_stage(99, "ready", "bob", "gate passed")
    assert store.audit_events() == []


@pytest.mark.parametrize("new_cluster", [False, True])
def test_a_write_failing_midway_changes_nothing(store, monkeypatch, new_cluster):
    _set(store)
    before = _dump(store)
    cluster = "prod" if new_cluster else "demo"
    record = _Change.record

    def record_then_crash(self, action, *args):
        record(self, action, *args)
        if action == "flag.set":
            self.session.flush()
            # The flag and its event are written inside the transaction; the crash comes before the commit.
            assert self.session.exec(select(Flag).where(Flag.cluster == cluster)).one().params["mode"] == "PERMISSIVE"
            raise RuntimeError("crash before commit")

    monkeypatch.setattr(_Change, "record", record_then_crash)
    with pytest.raises(RuntimeError, match="crash before commit"):
        _set(store, cluster=cluster, params={"mode": "PERMISSIVE"})
    monkeypatch.undo()

    assert _dump(store) == before
    assert [c.name for c in store.list_clusters()] == ["demo"]
    assert _set(store, params={"mode": "PERMISSIVE"}).version == 2  # the chain head did not move either
    assert audit.verify(store) is None


def test_threads_racing_on_one_flag_one_wins(store):
    _set(store)
    n = 8
    barrier, results = threading.Barrier(n), []

    def contender(i: int) -> None:
        barrier.wait()
        try:
            _set(store, 1, actor=f"user{i}", params={"mode": f"M{i}"})
            results.append(("won", i))
        except ConflictError as e:
            results.append(("conflict", str(e)))

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for kind, i in results if kind == "won"]
    assert len(results) == n and len(winners) == 1
    assert all(f"changed by user{winners[0]}" in m for kind, m in results if kind == "conflict")
    (flag,) = store.list_flags()
    assert (flag.version, flag.changed_by) == (2, f"user{winners[0]}")
    assert len(store.audit_events()) == 3 and audit.verify(store) is None


def _contend_in_process(url: str, actor: str, barrier, results) -> None:
    store = Store.open(url)
    try:
        barrier.wait()
        _set(store, 1, actor=actor, params={"mode": actor})
        results.put((actor, "won"))
    except ConflictError as e:
        results.put((actor, f"conflict: {e}"))
    finally:
        store.close()


def test_processes_racing_on_one_flag_one_wins(store, db_url):
    _set(store)
    ctx = multiprocessing.get_context("spawn")
    n = 4
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_contend_in_process, args=(db_url, f"proc{i}", barrier, results)) for i in range(n)]
    for p in procs:
        p.start()
    outcome = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    winners = [a for a, r in outcome.items() if r == "won"]
    assert len(outcome) == n and len(winners) == 1, outcome
    assert all(f"changed by {winners[0]}" in r for r in outcome.values() if r != "won")
    assert store.list_flags()[0].changed_by == winners[0] and audit.verify(store) is None


def test_concurrent_first_opens_migrate_once(db_url):
    stores, errors = [], []

    def open_store() -> None:
        try:
            stores.append(Store.open(db_url))
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(stores) == 4
    with stores[0].engine.connect() as c:
        head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head]
    for s in stores:
        s.close()


def test_plans_and_stage_transitions(store):
    steps = [{"feature": "sidecar-injection", "scope": "shop", "params": {}}]
    plan = store.create_plan("demo", "adopt", "routing-first", [
        {"title": "Verify the Istio install", "goal": "healthy control plane", "status": "done"},
        {"title": "Inject sidecars into shop", "goal": "shop in the mesh", "features": steps},
    ], actor="alice", reason="kick-off")
    assert [(s.order, s.status) for s in plan.stages] == [(1, "done"), (2, "planned")]
    with pytest.raises(MeshstepError, match="already exists"):
        store.create_plan("demo", "adopt", "security-first", [], actor="bob")

    stage = plan.stages[1]
    moved = store.transition_stage(stage.id, "ready", "bob", "gate passed", expected_version=1)
    assert (moved.status, moved.version, moved.updated_by) == ("ready", 2, "bob")
    with pytest.raises(ConflictError, match="stage:.* was changed by bob"):
        store.transition_stage(stage.id, "applied", "carol", "applied the YAML", expected_version=1)
    forced = store.transition_stage(stage.id, "applied", "carol", "applied", override_reason="IST0103 known")
    assert forced.override_reason == "IST0103 known"
    with pytest.raises(MeshstepError, match="unknown stage status 'shipped'"):
        store.transition_stage(stage.id, "shipped", "carol", "")

    loaded = store.get_plan(plan.id)
    assert [s.status for s in loaded.stages] == ["done", "applied"] and loaded.stages[1].features == steps
    assert store.set_plan_status(plan.id, "done", "alice", "all stages done", expected_version=1).version == 2
    assert [p.name for p in store.list_plans("demo")] == ["adopt"]

    store.delete_plan(plan.id, "alice", "start over")
    assert store.list_plans() == []
    with pytest.raises(MeshstepError, match=f"no plan with id {plan.id}"):
        store.get_plan(plan.id)
    actions = [e.action for e in store.audit_events()]
    assert actions == ["cluster.add", "plan.create", "stage.status", "stage.status", "plan.status", "plan.delete"]
    assert len(store.audit_events()[-1].before["stages"]) == 2
    assert audit.verify(store) is None


def test_clusters_and_inventory_history(store):
    store.set_cluster("prod", "context:prod-eu", "alice", "registered")
    assert [(c.name, c.source) for c in store.list_clusters()] == [("prod", "context:prod-eu")]
    for pods in (3, 7):
        store.record_inventory({"cluster": "prod", "source": "context:prod-eu", "namespaces_in_mesh": 1,
                                "namespaces_total": 4, "pods_in_mesh": pods, "pods_total": 10,
                                "features_observed": [{"feature": "sidecar-injection", "scope": "shop"}]},
                               actor="alice")
    history = store.inventory_history("prod")
    assert [h.pods_in_mesh for h in history] == [3, 7]
    assert history[0].features_observed == [{"feature": "sidecar-injection", "scope": "shop"}]
    assert store.audit_events()[-1].action == "inventory.record" and audit.verify(store) is None


def test_default_database_is_a_wal_sqlite_file_in_the_user_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("MESHSTEP_DATABASE_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    store = Store.open()
    try:
        assert store.url == f"sqlite:///{tmp_path / 'meshstep' / 'meshstep.db'}"
        with store.engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        store.close()


def test_database_url_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHSTEP_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    store = Store.open()
    store.close()
    assert (tmp_path / "env.db").exists()


def test_an_unreachable_database_is_a_user_error():
    with pytest.raises(MeshstepError, match="cannot open the state database postgresql.*nobody:\\*\\*\\*@"):
        Store.open("postgresql+psycopg://nobody:secret@127.0.0.1:1/x")


def test_a_stage_transition_moves_its_flags_in_the_same_transaction(store, monkeypatch):
    store.set_flag("demo", "mtls-permissive", "mesh", {}, "on", "alice", "step one")
    plan = store.create_plan("demo", "adopt", "custom", [], actor="alice")
    stage = store.add_stage(plan.id, {"title": "mTLS STRICT in shop", "goal": "only mTLS into shop",
                                      "features": [{"feature": "mtls-strict", "scope": "shop", "params": {}}]},
                            "alice", "stage added")
    assert (stage.order, stage.status, stage.record) == (1, "planned", StageRecord())
    assert store.add_stage(plan.id, {"title": "Authorization in shop"}, "alice", "").order == 2

    moved = store.transition_stage(stage.id, "applied", "bob", "config applied", 1, record=StageRecord(gate=()),
                                   flags=[FlagChange("mtls-strict", "shop", {"mode": "STRICT"}, "enabling"),
                                          FlagChange("mtls-permissive", "mesh", None, None)])
    assert (moved.status, moved.version, moved.data) == ("applied", 2, {"gate": []})
    assert store.get_plan(plan.id).stages[0].record == StageRecord(gate=())
    assert [(f.feature, f.scope, f.state) for f in store.list_flags("demo")] == [("mtls-strict", "shop", "enabling")]
    assert [e.action for e in store.audit_events()][-3:] == ["stage.status", "flag.set", "flag.unset"]

    before = _dump(store)
    with pytest.raises(MeshstepError, match="unknown flag state 'half'"):  # the second flag fails: nothing moves
        store.transition_stage(stage.id, "verified", "bob", "exit check passed", 2,
                               flags=[FlagChange("mtls-strict", "shop", {}, "on"), FlagChange("x", "shop", {}, "half")])
    assert _dump(store) == before and store.get_plan(plan.id).stages[0].status == "applied"
    assert audit.verify(store) is None


def test_a_transition_keeps_the_flags_it_replaces_and_moves_the_plan_in_the_same_change(store):
    plan = store.create_plan("demo", "p", "custom", [{"title": "STRICT in shop",
                                                      "features": [{"feature": "mtls-strict", "scope": "shop"}]}],
                             "alice", "")
    stage = plan.stages[0]
    store.set_flag("demo", "mtls-strict", "shop", {"mode": "PERMISSIVE"}, "off", "carol", "not yet")
    moved = store.transition_stage(stage.id, "applied", "bob", "config applied", 1,
                                   flags=[FlagChange("mtls-strict", "shop", {}, "enabling")], keep_flags_before=True)
    assert moved.data["flags_before"] == [{"feature": "mtls-strict", "scope": "shop",
                                           "params": {"mode": "PERMISSIVE"}, "state": "off"}]
    assert moved.record.flags_before == (FlagBefore("mtls-strict", "shop", {"mode": "PERMISSIVE"}, "off"),)
    before = _dump(store)
    with pytest.raises(MeshstepError, match="unknown plan status"):  # the plan cannot move: neither does the stage
        store.transition_stage(stage.id, "done", "bob", "stage done", 2, plan_status="finished")
    assert _dump(store) == before
    store.transition_stage(stage.id, "done", "bob", "stage done", 2, plan_status="done")
    assert store.get_plan(plan.id).status == "done"
    assert [e.action for e in store.audit_events()][-2:] == ["stage.status", "plan.status"]


def test_an_unchanged_inventory_is_kept_at_most_once_within_the_interval(store):
    summary = {"cluster": "demo", "source": "demo", "pods_in_mesh": 2, "pods_total": 3}
    hour = timedelta(hours=1)
    assert store.record_inventory(summary, "bob", unless_same_within=hour) is not None
    assert store.record_inventory(summary, "bob", unless_same_within=hour) is None  # the same, just now
    assert store.record_inventory(summary | {"pods_in_mesh": 3}, "bob", unless_same_within=hour) is not None
    assert store.record_inventory(summary | {"pods_in_mesh": 3}, "bob", unless_same_within=timedelta(0)) is not None
    assert [s.pods_in_mesh for s in store.inventory_history("demo")] == [2, 3, 3]


def test_stage_data_reads_as_its_record_and_data_no_meshstep_wrote_is_named(store):
    plan = store.create_plan("demo", "p", "custom", [{"title": "a"}, {"title": "b"}], "alice")
    kept, damaged = plan.stages
    with store.engine.begin() as c:  # as an older meshstep wrote it: the keys it had, lists where the record has tuples
        c.execute(text("UPDATE stages SET data = :d WHERE id = :id"),
                  {"id": kept.id, "d": '{"gate": [], "apply_yaml": "", "notes": ["kubectl label ns a x=y"], '
                                       '"promoted_from_stage": 7}'})
        c.execute(text("UPDATE stages SET data = :d WHERE id = :id"), {"id": damaged.id, "d": '{"notes": 5}'})
    kept, damaged = store.get_plan(plan.id).stages
    assert kept.record == StageRecord(gate=(), apply_yaml="", notes=("kubectl label ns a x=y",),
                                      promoted_from_stage=7)
    assert kept.record.to_json() == kept.data
    with pytest.raises(MeshstepError, match=r"stage \d+ \(b\): its stored data does not read .*\$\.notes"):
        damaged.record  # noqa: B018


def test_a_plan_stopped_with_its_stage_moves_in_one_change_and_is_resumed_with_a_reason(store):
    """The stop a stage rolled back by itself sets is kept on the plan in the same change as the stage's move, both
    audited; it is cleared only by a resume that says who and why, and an edit of it outside meshstep is seen."""
    plan = store.create_plan("demo", "p", "custom", [{"title": "a"}], "alice")
    stage = plan.stages[0]
    store.transition_stage(stage.id, "applied", "bob", "config applied", 1)
    before = _dump(store)
    with pytest.raises(MeshstepError, match="unknown plan status"):  # nothing moves, the stop neither
        store.transition_stage(stage.id, "rolled_back", "meshstep", "bake regressed", 2, plan_status="finished",
                               stop={"code": "MST1006", "reason": "success rate fell", "stage": 1, "title": "a"})
    assert _dump(store) == before
    store.transition_stage(stage.id, "rolled_back", "meshstep", "bake regressed", 2,
                           stop={"code": "MST1006", "reason": "success rate fell", "stage": 1, "title": "a"})
    stopped = store.get_plan(plan.id).stopped
    assert {k: stopped[k] for k in ("code", "reason", "stage", "by")} == {
        "code": "MST1006", "reason": "success rate fell", "stage": 1, "by": "meshstep"}
    assert [e.action for e in store.audit_events()][-2:] == ["stage.status", "plan.stop"]
    assert audit.verify(store) is None
    with pytest.raises(MeshstepError, match="a resume needs a reason"):
        store.resume_plan(plan.id, "carol", "")
    store.resume_plan(plan.id, "carol", "bad pod replaced")
    resumed = store.audit_events()[-1]
    assert (resumed.action, resumed.actor, resumed.reason) == ("plan.resume", "carol", "bad pod replaced")
    assert resumed.before["stopped"]["code"] == "MST1006" and resumed.after["stopped"] is None
    assert store.get_plan(plan.id).stopped is None and audit.verify(store) is None
    with pytest.raises(MeshstepError, match="plan 'p' is not stopped"):
        store.resume_plan(plan.id, "carol", "again")
    with store.engine.begin() as c:  # stopped again by hand, outside meshstep
        c.execute(text("UPDATE plans SET stopped = :s WHERE id = :id"), {"id": plan.id, "s": '{"code": "x"}'})
    assert "disagrees with the trail" in audit.verify(store).message
