"""Ownership before the dry run: on the emulated cluster serving the demo, whose objects Argo CD syncs by
server-side apply, `plan next` names the manager and the fields a stage would change (MST0008) without a write;
applying the stage still meets the API server's own refusal (MST1001, from the dry run), nothing applied."""
from __future__ import annotations

from tests.kube import claim
from tests.planner.test_operate import SOURCE, _custom_plan, demo, env, live_objects, patches  # noqa: F401
from tests.rehearsal import runner


def test_the_gate_names_the_owner_before_any_dry_run_and_the_apply_still_conflicts(demo, capsys) -> None:  # noqa: F811
    served, db = demo
    claim(served.emulator, "argocd-controller", "Apply")
    run = runner(capsys)
    _custom_plan(run, db)
    rc, out, err = run("plan", "next", "--source", SOURCE, "--db", db)
    assert rc == 0, err
    assert "MST0008" in out and "argocd-controller (Apply) owns .spec.http" in out, out
    assert "VirtualService shop/reviews" in out
    assert not patches(served)  # named from the managedFields read, before any dry run
    before = live_objects(served)
    rc, _out, err = run("plan", "run", "--apply", "--source", SOURCE, "--db", db)
    assert rc == 1
    assert 'MST1001' in err and 'conflict with "argocd-controller" using networking.istio.io/v1: .spec.http' in err
    assert live_objects(served) == before
    assert patches(served) and all(w.params.get("dryRun") == "All" for w in patches(served))
