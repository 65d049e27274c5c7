"""The Plan page's *Apply with meshstep* on a plan read from a live cluster (tests/kube.py's WritableEmulator serving
the demo over HTTP): what will happen is said before the click, and the click applies the stage as the CLI does."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from app import operate_panel
from benchmarks.kubeapi import write_kubeconfig
from cluster.inventory import build_inventory
from cluster.sources import load_snapshot
from planner import stages
from state.store import Store
from tests.app.conftest import APP, open_page, sign_in
from tests.kube import serve
from tests.planner.test_operate import demo_objects, live_objects

SOURCE = "context:prod"


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """The demo served over HTTP as the live cluster the app reads (context prod), and the app's database URL."""
    db = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("MESHSTEP_SETTLE", "0")
    monkeypatch.setenv("MESHSTEP_SOURCE", SOURCE)
    monkeypatch.setenv("MESHSTEP_DATABASE_URL", db)
    with serve(demo_objects(), writes=True) as served:
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": served.url}, "prod")))
        yield served, db


def plan_page() -> AppTest:
    """The app, signed in, on its Plan page."""
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    sign_in(at)
    open_page(at, "plan")
    return at


def test_the_plan_page_says_what_will_happen_then_applies_the_stage(live) -> None:
    served, db = live
    with closing(Store.open(db)) as store:
        stages.create(store, SOURCE, build_inventory(load_snapshot(SOURCE)), "routing-first", None, None, "bob")
    at = plan_page()
    said = " ".join(m.value for m in at.markdown)
    assert "server-side dry run" in said and "field manager meshstep, never forced" in said
    assert "rolls the stage back by itself" in said
    for _ in range(2):  # the install check (nothing to apply), then injection in legacy
        next(b for b in at.button if b.label == "Apply and bake this stage").click().run()
        assert not at.exception, [e.value for e in at.exception]
    applied = [r for r in served.emulator if r.method == "PATCH"]
    labels = live_objects(served)[("namespaces", None, "legacy")]["metadata"]["labels"]
    assert [r.params.get("dryRun") for r in applied] == ["All", None]
    assert labels["istio.io/rev"] == "default"
    with closing(Store.open(db)) as store:
        plan = store.list_plans(SOURCE)[0]
    assert [s.status for s in plan.stages[:2]] == ["done", "done"] and plan.stages[1].updated_by == "alice"


def test_a_stopped_plan_is_shown_with_its_reason_refused_and_resumed_with_a_reason(live) -> None:
    """The Plan page says why the plan is stopped; Apply with meshstep refuses (MST1008, its buttons disabled, nothing
    written) until the plan is resumed there with a reason, audited with who resumed it."""
    served, db = live
    with closing(Store.open(db)) as store:
        plan = stages.create(store, SOURCE, build_inventory(load_snapshot(SOURCE)), "routing-first", None, None,
                             "bob")
        store.stop_plan(plan.id, {"code": "MST1006", "stage": 2, "title": "Inject sidecars into legacy",
                                  "reason": "MST1006: the bake saw a regression; success rate fell 9.00 points"},
                        "meshstep", "the bake saw a regression")
    at = plan_page()
    said = " ".join(e.value for e in at.error)
    assert "**Stopped** after stage 2" in said and "success rate fell 9.00 points" in said, said
    assert "MST1008: plan routing-first is stopped" in said and "meshstep plan resume" in said
    applying = [b for b in at.button if b.label in ("Apply and bake this stage", "Run the plan to done")]
    assert len(applying) == 2 and all(b.disabled for b in applying)
    next(t for t in at.text_input if t.label == "Why resume").input("legacy's bad rollout reverted")
    next(b for b in at.button if b.label == "Resume the plan").click().run()
    assert not at.exception, [e.value for e in at.exception]
    writes = [r for r in served.emulator if r.method in ("PATCH", "PUT", "DELETE")]
    assert not writes
    with closing(Store.open(db)) as store:
        resumed = store.audit_events()[-1]
        assert store.list_plans(SOURCE)[0].stopped is None
    assert (resumed.action, resumed.actor, resumed.reason) == ("plan.resume", "alice", "legacy's bad rollout reverted")


def test_what_will_happen_names_what_the_stage_deletes(tmp_path: Path) -> None:
    """Said before the click: sidecar-to-ambient's policy migration in bank deletes VirtualService bank/accounts, as a
    dry-run DELETE first, under the resourceVersion its gate read, once every dry run passed."""
    from planner import moves
    from planner.plan import Step
    from tests.features.corpus import migration

    inv = migration()
    with closing(Store.open(f"sqlite:///{tmp_path / 'state.db'}")) as store:
        plan = stages.create(store, "bank-cluster", inv, "custom", None, None, "bob")
        stages.add_stage(store, plan, inv, "Migrate bank's policies", "", [Step("ambient-policies", "bank")], "bob")
        plan = store.get_plan(plan.id)
    said = " ".join(operate_panel.what_happens(plan, moves.next_view(plan, inv)))
    assert ("then deleted: VirtualService bank/accounts — each first a dry-run DELETE (dryRun=All) under the "
            "resourceVersion the gate read, deleted only once every dry run passed") in said, said


def test_the_plan_page_waits_for_gitops_then_bakes(live, tmp_path: Path) -> None:
    """With *GitOps applies it*, the page says that meshstep waits for Argo CD or Flux to apply the export's file and
    names the rollback to commit; *Wait for GitOps and bake* records the stage applied once Argo CD (a thread here)
    has applied it, and meshstep writes nothing."""
    from planner import export
    from tests.planner.test_gitops import argo_cd

    served, db = live
    inv = build_inventory(load_snapshot(SOURCE))
    with closing(Store.open(db)) as store:
        plan = stages.create(store, SOURCE, inv, "routing-first", None, None, "bob")
        files = export.stage_files(plan, inv).files
    at = plan_page()
    next(t for t in at.toggle if t.label == "GitOps applies it (Argo CD, Flux)").set_value(True).run()
    said = " ".join(m.value for m in at.markdown)
    assert "for Argo CD or Flux to apply" in said and "meshstep writes nothing" in said
    assert "meshstep does not undo what GitOps applied" in said
    next(b for b in at.button if b.label == "Wait for GitOps and bake").click().run()  # the install check
    (name,) = [n for n in files if n.startswith("02-") and n.endswith(".yaml") and ".rollback" not in n]
    assert name in " ".join(m.value for m in at.markdown)  # the injection stage's file, named before the click
    (tmp_path / name).write_text(files[name])
    sync = argo_cd(served, [tmp_path / name], after=1, looked_at="/api/v1/namespaces/legacy")
    next(b for b in at.button if b.label == "Wait for GitOps and bake").click().run()
    sync.join()
    assert not at.exception, [e.value for e in at.exception]
    labels = live_objects(served)[("namespaces", None, "legacy")]["metadata"]["labels"]
    assert not [r for r in served.emulator if r.method == "PATCH" and r.params.get("fieldManager") == "meshstep"]
    assert labels["istio.io/rev"] == "default"
    with closing(Store.open(db)) as store:
        plan = store.list_plans(SOURCE)[0]
    assert [s.status for s in plan.stages[:2]] == ["done", "done"] and plan.stages[1].record.gitops == "applied"


def test_roll_back_on_the_page_puts_back_what_meshstep_applied(live) -> None:
    """A stage meshstep applied on the live cluster: the page's "Roll back" puts its objects back on the cluster as
    `plan rollback --apply` does (the legacy namespace's injection label taken off again), not a YAML to apply."""
    served, db = live
    before = live_objects(served)[("namespaces", None, "legacy")]["metadata"].get("labels", {})
    with closing(Store.open(db)) as store:
        stages.create(store, SOURCE, build_inventory(load_snapshot(SOURCE)), "routing-first", None, None, "bob")
    at = plan_page()
    for _ in range(2):  # the install check, then injection in legacy: applied by meshstep
        next(b for b in at.button if b.label == "Apply and bake this stage").click().run()
    assert live_objects(served)[("namespaces", None, "legacy")]["metadata"]["labels"]["istio.io/rev"] == "default"
    assert any("meshstep applied it: meshstep puts each object back as it was" in c.value for c in at.caption)
    next(t for t in at.text_input if t.label == "Rollback reason").input("legacy's batch job broke")
    next(b for b in at.button if b.label == "Roll back").click().run()
    assert not at.exception, [e.value for e in at.exception]
    after = live_objects(served)[("namespaces", None, "legacy")]["metadata"].get("labels", {})
    said = " ".join(str(w.value) for w in at.warning)
    puts = [r for r in served.emulator if r.method == "PUT"]
    assert after == before
    assert "put back on the cluster as before it: Namespace legacy" in said, said
    assert [r.url.path for r in puts] == ["/api/v1/namespaces/legacy"]


def test_roll_back_on_the_page_waits_for_gitops_to_apply_the_rollback(live, tmp_path: Path) -> None:
    """A stage GitOps applied: the page's "Roll back" says that the rollback is committed, not put back by
    meshstep; on the click meshstep waits until Argo CD (a thread here) has applied the export's rollback file, writes
    nothing to the cluster itself, and records the stage rolled back with what it saw, its flags as before it."""
    from planner import export
    from state import audit
    from tests.planner.test_gitops import argo_cd

    def flags() -> dict[tuple[str, str], str]:
        with closing(Store.open(db)) as store:
            return {(f.feature, f.scope): f.state for f in store.list_flags(SOURCE)}

    served, db = live
    inv = build_inventory(load_snapshot(SOURCE))
    before = live_objects(served)[("namespaces", None, "legacy")]["metadata"].get("labels", {})
    with closing(Store.open(db)) as store:
        plan = stages.create(store, SOURCE, inv, "routing-first", None, None, "bob")
        files = export.stage_files(plan, inv).files
    (name,) = [n for n in files if n.startswith("02-") and n.endswith(".yaml") and ".rollback" not in n]
    rollback = sorted(n for n in files if n.startswith("02-") and ".rollback" in n)
    assert rollback, sorted(files)
    for n in (name, *rollback):
        (tmp_path / n).write_text(files[n])
    at = plan_page()
    next(t for t in at.toggle if t.label == "GitOps applies it (Argo CD, Flux)").set_value(True).run()
    next(b for b in at.button if b.label == "Wait for GitOps and bake").click().run()  # the install check
    flags_before = flags()
    sync = argo_cd(served, [tmp_path / name], after=1, looked_at="/api/v1/namespaces/legacy")
    next(b for b in at.button if b.label == "Wait for GitOps and bake").click().run()
    sync.join()
    assert flags() != flags_before
    assert live_objects(served)[("namespaces", None, "legacy")]["metadata"]["labels"]["istio.io/rev"] == "default"
    assert any("GitOps applied it: commit its rollback, and meshstep waits until the cluster holds it" in c.value
               for c in at.caption), [c.value for c in at.caption]

    looked = len(list(served.emulator))
    next(t for t in at.text_input if t.label == "Rollback reason").input("legacy's batch job broke")
    sync = argo_cd(served, [tmp_path / n for n in rollback], after=1, looked_at="/api/v1/namespaces/legacy")
    next(b for b in at.button if b.label == "Roll back").click().run()
    sync.join(60)  # it syncs once meshstep looks for the namespace: a page that never looks fails below
    assert not at.exception and not [e.value for e in at.error], [e.value for e in (*at.exception, *at.error)]
    labels = live_objects(served)[("namespaces", None, "legacy")]["metadata"].get("labels", {})
    # The injection label off again: the rollback file sets it to null (tests/kube.py keeps the null as its value).
    assert "istio.io/rev" not in before and labels.get("istio.io/rev") is None
    assert {k: v for k, v in labels.items() if k != "istio.io/rev"} == before
    # meshstep wrote nothing: every write since the click is Argo CD's sync of the rollback file.
    writes = [r for r in list(served.emulator)[looked:] if r.method in ("PUT", "PATCH", "POST", "DELETE")]
    assert writes and {r.params.get("fieldManager") for r in writes} == {"argocd-controller"}, writes
    said = " ".join(str(w.value) for w in at.warning)
    assert "rollback seen on the cluster (applied by GitOps): Namespace legacy" in said, said
    assert not any(h.value == "Apply this to undo the stage" for h in at.subheader)  # no YAML left to the team
    with closing(Store.open(db)) as store:
        stage = store.list_plans(SOURCE)[0].stages[1]
        assert audit.verify(store) is None
        event = [e for e in store.audit_events() if e.target == f"stage:{stage.id}"][-1]
    assert stage.status == "rolled_back" and not stage.record.applied and not stage.record.gitops
    assert (event.actor, event.action, event.after["status"]) == ("alice", "stage.status", "rolled_back"), event
    assert event.reason.startswith("legacy's batch job broke; stage 2 (Inject sidecars into legacy) rolled back; "
                                   "rollback seen on the cluster (applied by GitOps)"), event.reason
    assert flags() == flags_before
