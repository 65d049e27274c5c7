"""Ownership before the dry run: on the emulated cluster serving the demo, whose objects Argo CD syncs by
server-side apply, `plan next` names the manager and the fields a stage would change (MST0008) without a write;
applying the stage still meets the API server's own refusal (MST1001, from the dry run), nothing applied."""
from __future__ import annotations

import yaml

from cluster.owners import owners
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


REVIEWS = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/reviews"


def _argo_applies(served, spec_fields: tuple[str, ...]) -> None:
    """Argo CD syncs shop/reviews by server-side apply (its own intent: the label and the spec fields its repository
    holds, as they are live), over HTTP as its controller does."""
    live = served.emulator.objects[_reviews_key()].raw
    config = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
              "metadata": {"name": "reviews", "namespace": "shop", "labels": live["metadata"]["labels"]},
              "spec": {k: live["spec"][k] for k in spec_fields}}
    served.apply_as("argocd-controller", REVIEWS, config)


def _reviews_key():
    from kmock import resource

    return resource(group="networking.istio.io", version="v1", plural="virtualservices"), "shop", "reviews"


def _owned(served) -> dict[str, set[str]]:
    """shop/reviews' field managers (manager/operation) and the fields each owns, as the API server names them."""
    return {f"{o.manager}/{o.operation}": {str(p) for p in o.paths}
            for o in owners(served.emulator.objects[_reviews_key()].raw)}


def test_meshstep_applies_only_what_the_stage_changes_and_a_rollback_leaves_argo_as_it_was(demo, capsys) -> None:  # noqa: F811
    """Argo CD owns the hosts and the label of shop/reviews; the stage changes .spec.http only. meshstep's apply
    names .spec.http and its annotations, never Argo's fields (which Argo keeps alone), and the rollback leaves
    Argo's managedFields entry as it was."""
    served, db = demo
    _argo_applies(served, ("hosts",))
    argo = _owned(served)
    assert argo == {"argocd-controller/Apply": {".metadata.labels.app.kubernetes.io/part-of", ".spec.hosts"}}
    before = live_objects(served)
    run = runner(capsys)
    _custom_plan(run, db)
    for _ in range(3):  # planned → ready → applied (and on, without telemetry)
        rc, out, err = run("plan", "advance", "--apply", "--source", SOURCE, "--db", db)
        assert rc == 0, err
    applies = [w for w in patches(served) if w.url.path == REVIEWS and "dryRun" not in w.params
               and w.params["fieldManager"] == "meshstep"]
    assert len(applies) == 1
    sent = yaml.safe_load(applies[0].body)
    assert set(sent["spec"]) == {"http"} and "labels" not in sent["metadata"]
    owned = _owned(served)
    assert owned["argocd-controller/Apply"] == argo["argocd-controller/Apply"]
    notes = {p for p in owned["meshstep/Apply"] if p.startswith(".metadata.annotations.")}
    assert owned["meshstep/Apply"] - notes == {".spec.http"}  # and the annotations the stage sets
    assert {".metadata.annotations.meshstep.io/plan", ".metadata.annotations.meshstep.io/stage"} <= notes
    assert "timeout" in str(live_objects(served)[("virtualservices", "shop", "reviews")]["spec"]["http"])
    rc, _out, err = run("plan", "rollback", "--apply", "--reason", "argo's owners asked", "--source", SOURCE,
                        "--db", db)
    assert rc == 0, err
    assert live_objects(served) == before
    # Argo's entry as it was; meshstep owns, by its Update (the PUT that restored it), the .spec.http it put back.
    assert _owned(served) == {**argo, "meshstep/Update": {".spec.http"}}


def test_a_stage_changing_what_argo_applied_is_refused_with_the_manager_named(demo, capsys) -> None:  # noqa: F811
    """Argo CD's own apply holds .spec.http too: the stage that changes it meets a conflict (MST1001) at its dry run,
    nothing applied, Argo still the owner."""
    served, db = demo
    _argo_applies(served, ("hosts", "http"))
    argo = _owned(served)
    before = live_objects(served)
    run = runner(capsys)
    _custom_plan(run, db)
    rc, _out, err = run("plan", "run", "--apply", "--source", SOURCE, "--db", db)
    assert rc == 1
    assert 'MST1001' in err and 'conflict with "argocd-controller" using networking.istio.io/v1: .spec.http' in err
    assert live_objects(served) == before and _owned(served) == argo
    assert not [w for w in patches(served) if "dryRun" not in w.params and w.params["fieldManager"] == "meshstep"]
