"""Operating a plan on a cluster (`meshstep plan run --apply`, `plan advance --apply`) against tests/kube.py's
WritableEmulator serving the demo cluster over real HTTP: each stage's objects dry-run then server-side applied as
field manager meshstep, never forced; refusals coded with nothing half-applied; the audit chain verifies."""
from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import closing
from functools import cache
from pathlib import Path

import pytest
import yaml

from benchmarks.kubeapi import write_kubeconfig
from cluster import kubeapi
from cluster.apply import normalised
from cluster.files import read_paths
from cluster.sources import DEMO_DIR
from state import audit
from state.models import StageStatus
from state.store import Store
from tests.kube import Cluster, Target, rollout_restart, serve
from tests.rehearsal import runner

CONTEXT = "prod"
SOURCE = f"context:{CONTEXT}"


@cache
def _demo() -> tuple[dict, ...]:
    return tuple(read_paths(sorted(DEMO_DIR.glob("*.yaml"))))


def demo_objects() -> list[dict]:
    return copy.deepcopy(list(_demo()))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A state database, no settle time (the emulator's objects report no status), and `point(url)` that makes
    context `prod` the served cluster."""
    monkeypatch.setattr(kubeapi, "BACKOFF_INITIAL", 0.01)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("MESHSTEP_SETTLE", "0")

    def point(url: str) -> str:
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", {CONTEXT: url}, CONTEXT)))
        return f"sqlite:///{tmp_path / 'state.db'}"
    return point


@pytest.fixture
def demo(env) -> Iterator[tuple[Cluster, str]]:
    with serve(demo_objects(), writes=True) as served:
        yield served, env(served.url)


def live_objects(served: Cluster) -> dict[tuple, dict]:
    return {(k[0].plural, k[1], k[2]): normalised(o.raw) for k, o in served.emulator.objects.items() if not o.deleted}


def patches(served: Cluster) -> list:
    return [r for r in served.emulator if r.method in ("PATCH", "PUT", "DELETE")]


def restart(served: Cluster, namespace: str) -> None:
    rollout_restart(served.emulator, SOURCE, namespace)


def test_the_operator_reaches_the_cluster_a_live_source_names_and_no_other(demo) -> None:
    """One builder for `--apply`/`--gitops` and the Plan page: context:NAME is the kubeconfig's cluster, its progress
    goes where it is told; a source that is no cluster, or shadow under GitOps, is refused with the fix."""
    from cluster.errors import MeshstepError
    from planner.operate import operator_for

    said: list[str] = []
    operator = operator_for(SOURCE, said.append, gitops=True)
    assert (operator.gitops, operator.shadow) == (True, False)
    assert operator.cluster.read(("v1", "Namespace", None, "legacy"))["metadata"]["name"] == "legacy"
    operator.progress("waiting")
    assert said == ["waiting"]
    assert operator_for(SOURCE, said.append, shadow=True).shadow
    with pytest.raises(MeshstepError, match="--apply writes to a cluster, and --source demo is not one"):
        operator_for("demo", said.append)
    with pytest.raises(MeshstepError, match="--shadow-authz is for --apply"):
        operator_for(SOURCE, said.append, shadow=True, gitops=True)


def test_routing_first_runs_to_done_with_a_dry_run_before_each_apply(demo, capsys) -> None:
    served, db = demo
    run = runner(capsys)
    assert run("plan", "new", "--template", "routing-first", "--source", SOURCE, "--db", db)[0] == 0
    rc, _out, err = run("plan", "run", "--apply", "--until", "2", "--source", SOURCE, "--db", db)
    assert rc == 0 and "stage 2 (Inject sidecars into legacy): done" in err, err
    for namespace in ("legacy", "payments", "shop"):  # as the gates' hints (MST0402) and the stages' notes say
        restart(served, namespace)
    rc, out, err2 = run("plan", "run", "--apply", "--source", SOURCE, "--db", db)
    err += err2
    assert rc == 0, err
    assert "plan routing-first is complete: every stage is done" in out
    writes = patches(served)
    assert writes and all(w.method == "PATCH" for w in writes)
    for w in writes:
        assert w.params["fieldManager"] == "meshstep" and "force" not in w.params
        assert w.headers["Content-Type"] == "application/apply-patch+yaml"
    real = [(i, w) for i, w in enumerate(writes) if "dryRun" not in w.params]
    for i, w in real:  # the same object was dry-run first, in this stage, before any real apply of it
        assert any(d.url.path == w.url.path and d.params.get("dryRun") == "All" for d in writes[:i])
    with closing(Store.open(db)) as store:
        plan = store.list_plans(SOURCE)[0]
        assert all(s.status == StageStatus.DONE for s in plan.stages)
        assert audit.verify(store) is None
    applied = [s for s in plan.stages if s.record.applied]
    assert len(real) == sum(len(s.record.applied) for s in applied) >= 8
    # The cluster holds every stage's objects, each naming its plan and stage.
    vs = live_objects(served)[("virtualservices", "payments", "payments-api")]
    assert vs["metadata"]["annotations"]["meshstep.io/plan"] == "routing-first"
    assert "stage 6 (Route requests by version)" in err and "dry run: VirtualService payments/payments-api" in err


def _routed(served: Cluster) -> bool:
    """Whether the cluster holds the VirtualService that stage 6 (request routing in payments) creates."""
    from kmock import resource

    key = (resource(group="networking.istio.io", version="v1", plural="virtualservices"), "payments", "payments-api")
    return key in served.emulator.objects and not served.emulator.objects[key].deleted


BAKE = ("--verify", "window=6s", "--verify", "settle=1s", "--verify", "min_requests=20")


def test_a_regression_in_the_bake_rolls_the_stage_back_and_stops_the_plan_until_resumed(
        demo, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bake looks at the traffic every 3 s (MESHSTEP_BAKE_LOOK): the regression is rolled back well before its
    60 s window is over. The plan is stopped with it: `plan run --apply` is refused (MST1008, nothing written) and
    `plan show`/`plan next` say why, until `plan resume --reason` (audited), after which the run goes on."""
    from tests.live_traffic import Workload, live_prometheus

    monkeypatch.setenv("MESHSTEP_BAKE_LOOK", "3")
    served, db = demo
    run = runner(capsys)
    assert run("plan", "new", "--template", "routing-first", "--source", SOURCE, "--db", db)[0] == 0
    assert run("plan", "run", "--apply", "--until", "5", "--source", SOURCE, "--db", db)[0] == 0
    before = live_objects(served)
    # Half of payments-api's requests fail once its requests are routed by version (stage 6).
    payments = Workload("payments", "payments-api", 40, failing=lambda: 0.5 if _routed(served) else 0.0)
    with live_prometheus(tmp_path, [payments]) as url:
        rc, _out, err = run("plan", "run", "--apply", "--source", SOURCE, "--db", db, "--prometheus", url, *BAKE,
                            "--verify", "window=60s")
    assert rc == 1
    assert "MST1006: the bake saw a regression: stage 6 (Route requests by version) rolled back by itself" in err
    assert "success rate fell" in err and "into the window: not waiting for the rest" in err
    assert live_objects(served) == before  # the cluster as it was before the stage
    with closing(Store.open(db)) as store:
        stage = store.list_plans(SOURCE)[0].stages[5]
        assert stage.status == StageStatus.ROLLED_BACK and stage.record.verification["status"] == "regressed"
        assert stage.record.verification["thresholds"]["window"] < 60  # judged early, on the traffic so far
        assert audit.verify(store) is None
        trail = [e.reason for e in store.audit_events() if e.target == f"stage:{stage.id}"]
    assert any("server-side applied, field manager meshstep" in r for r in trail)
    assert "rolled back by itself" in trail[-1]
    _stopped_until_resumed(served, db, run)


def _stopped_until_resumed(served: Cluster, db: str, run) -> None:
    """After the regression of stage 6: stopped, refused, shown; resumed with a reason; walked on."""
    with closing(Store.open(db)) as store:
        plan = store.list_plans(SOURCE)[0]
        stop = next(e for e in reversed(store.audit_events()) if e.target == f"plan:{plan.id}")
    assert plan.stopped["code"] == "MST1006" and plan.stopped["stage"] == 6
    assert "success rate fell" in plan.stopped["reason"]
    assert stop.action == "plan.stop" and stop.target == f"plan:{plan.id}" and "MST1006" in stop.reason
    writes = len(patches(served))
    for apply in (("run", "--apply"), ("advance", "--apply")):
        rc, _out, err = run("plan", *apply, "--source", SOURCE, "--db", db)
        assert rc == 1 and "MST1008: plan routing-first is stopped" in err, err
        assert "stage 6 (Route requests by version)" in err and "success rate fell" in err
        assert 'meshstep plan resume --name routing-first --reason "…"' in err
    assert len(patches(served)) == writes  # nothing was written
    rc, out, _err = run("plan", "show", "--source", SOURCE, "--db", db)
    assert "STOPPED after stage 6 (Route requests by version): MST1006" in out and "success rate fell" in out
    rc, out, _err = run("plan", "next", "--source", SOURCE, "--db", db)
    next_section = out.split("\nNEXT\n", 1)[1]
    assert next_section.lstrip().startswith("the plan is stopped (MST1006") and "plan resume --name routing-first" \
        in next_section, next_section
    rc, _out, err = run("plan", "resume", "--source", SOURCE, "--db", db)
    assert rc != 0 and "a resume needs a reason" in err
    rc, out, err = run("plan", "resume", "--reason", "payments-api's failing pod replaced", "--actor", "carol",
                       "--source", SOURCE, "--db", db)
    assert rc == 0 and "plan routing-first resumed" in out, err
    rc, out, err = run("plan", "run", "--apply", "--until", "6", "--source", SOURCE, "--db", db)
    assert rc == 0 and "stage 6 (Route requests by version): done" in err, err
    with closing(Store.open(db)) as store:
        plan = store.list_plans(SOURCE)[0]
        resumed = next(e for e in store.audit_events() if e.action == "plan.resume")
        assert audit.verify(store) is None
    assert plan.stopped is None and plan.stages[5].status == StageStatus.DONE
    assert (resumed.actor, resumed.reason) == ("carol", "payments-api's failing pod replaced")


def test_a_healthy_bake_passes_and_a_quiet_one_stops_without_passing(demo, capsys, tmp_path: Path) -> None:
    from tests.live_traffic import Workload, live_prometheus

    served, db = demo
    run = runner(capsys)
    assert run("plan", "new", "--template", "routing-first", "--source", SOURCE, "--db", db)[0] == 0
    assert run("plan", "run", "--apply", "--until", "5", "--source", SOURCE, "--db", db)[0] == 0
    busy, quiet = Workload("payments", "payments-api", 40), Workload("shop", "reviews", 0.2)
    with live_prometheus(tmp_path, [busy, quiet]) as url:
        rc, _out, err = run("plan", "run", "--apply", "--until", "7", "--source", SOURCE, "--db", db,
                            "--prometheus", url, *BAKE)
    assert rc == 1 and "too little traffic to judge" in err, err
    with closing(Store.open(db)) as store:
        stages = store.list_plans(SOURCE)[0].stages
    assert stages[5].status == StageStatus.DONE and stages[5].record.verification["status"] == "passed"
    assert stages[6].status == StageStatus.APPLIED  # applied, not verified: insufficient traffic is no pass
    assert _routed(served)


def _custom_plan(run, db: str) -> None:
    """A plan of one stage: timeouts and retries in shop, which changes shop's existing VirtualServices."""
    assert run("plan", "new", "--template", "custom", "--source", SOURCE, "--db", db)[0] == 0
    rc, _out, err = run("plan", "add", "timeouts-retries", "--scope", "shop", "--source", SOURCE, "--db", db)
    assert rc == 0, err


def _stage(db: str):
    with closing(Store.open(db)) as store:
        plan = store.list_plans(SOURCE)[0]
        assert audit.verify(store) is None
        return plan.stages[-1], [e.reason for e in store.audit_events() if e.target == f"stage:{plan.stages[-1].id}"]


@pytest.mark.parametrize("refusal", ["conflict", "rbac", "webhook"])
def test_a_refused_stage_says_why_with_its_code_and_applies_nothing(demo, capsys, refusal: str) -> None:
    from tests.kube import claim

    served, db = demo
    run = runner(capsys)
    _custom_plan(run, db)
    if refusal == "conflict":
        claim(served.emulator, "argocd-controller")
    elif refusal == "rbac":
        served.emulator.forbidden_writes.add(("patch", "virtualservices"))
    else:
        served.emulator.denials["reviews"] = ("configuration is invalid: retries.perTryTimeout must be less than "
                                              "the route timeout")
    before = live_objects(served)
    rc, _out, err = run("plan", "run", "--apply", "--source", SOURCE, "--db", db)
    assert rc == 1
    said = {"conflict": ('MST1001', 'conflict with "argocd-controller" using networking.istio.io/v1: .spec.http',
                         "argocd-controller owns .spec.http"),
            "rbac": ("MST1003", 'User "system:serviceaccount:ops:meshstep" cannot patch resource "virtualservices" in '
                                'API group "networking.istio.io" in the namespace "shop"', "give meshstep's identity"),
            "webhook": ("MST1004", 'admission webhook "validation.istio.io" denied the request: configuration is '
                                   'invalid: retries.perTryTimeout', "the webhook's message")}[refusal]
    assert all(s in err for s in said), err
    assert "nothing was applied" in err
    assert live_objects(served) == before
    assert not [w for w in patches(served) if "dryRun" not in w.params]
    stage, trail = _stage(db)
    assert stage.status == StageStatus.BLOCKED and trail[-1].startswith(f"apply refused: {said[0]}")


def test_an_object_changed_during_the_apply_puts_back_the_others_and_the_gate_runs_again(demo, capsys) -> None:
    """kubectl edits the last VirtualService (reviews) between its dry run and its apply: the three the stage
    created before it are deleted, the stage goes back to its gate; run again, the gate passes on the cluster as it
    is now and the stage is applied."""
    served, db = demo
    run = runner(capsys)
    _custom_plan(run, db)
    emulator = served.emulator
    before = live_objects(served)
    writes: list[str] = []

    def kubectl_edits(target, dry_run: bool) -> None:
        writes.append(target.name) if not dry_run else None
        if target.name == "reviews" and not dry_run and emulator.before_write is not None:
            emulator.before_write = None
            emulator.write("PATCH", target, b'{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", '
                           b'"metadata": {"name": "%s", "namespace": "shop", "labels": {"edited": "by-hand"}}}'
                           % target.name.encode(), {"fieldManager": "kubectl-edit"}, "application/apply-patch+yaml")
    emulator.before_write = kubectl_edits
    rc, out, err = run("plan", "advance", "--source", SOURCE, "--db", db)
    assert rc == 0 and ": ready" in out, err  # its gate passed
    rc, _out, err = run("plan", "advance", "--apply", "--source", SOURCE, "--db", db)
    assert rc == 1 and "MST1002: applying VirtualService shop/reviews was refused" in err, err
    assert "the object has been modified" in err
    assert "put back as before the stage: " in err
    edited = writes[-1]
    assert writes == ["frontend-mesh", "orders", "ratings", "reviews"]
    after = live_objects(served)
    assert {k: v for k, v in after.items() if k[2] != edited} == {k: v for k, v in before.items() if k[2] != edited}
    assert after[("virtualservices", "shop", edited)]["metadata"]["labels"]["edited"] == "by-hand"
    stage, trail = _stage(db)
    assert stage.status == StageStatus.PLANNED and trail[-1].startswith("apply refused: MST1002")
    rc, _out, err = run("plan", "run", "--apply", "--source", SOURCE, "--db", db)
    assert rc == 0, err
    assert live_objects(served)[("virtualservices", "shop", edited)]["metadata"]["labels"]["edited"] == "by-hand"
    assert _stage(db)[0].status == StageStatus.DONE


def test_config_istio_refuses_that_cannot_all_be_put_back_leaves_the_stage_applied_and_the_plan_stopped(
        demo, capsys) -> None:
    """istiod reports shop/reviews invalid (its status' validation message, MST1007): the stage is put back by
    itself, last object first; kubectl edits shop/ratings meanwhile, so it is not put back (that would undo the edit).
    The stage stays applied, half back, and the plan is stopped all the same: nothing more is applied."""
    from kmock import resource

    served, db = demo
    run = runner(capsys)
    _custom_plan(run, db)
    emulator = served.emulator
    key = (resource(group="networking.istio.io", version="v1", plural="virtualservices"), "shop", "reviews")
    emulator.objects[key] = {**emulator.objects[key].raw, "status": {"validationMessages": [
        {"level": "ERROR", "type": {"code": "IST0101"}, "message": "Referenced host not found: \"reviews-v9\""}]}}
    real: list[str] = []

    def kubectl_edits(target, dry_run: bool) -> None:
        real.append(target.name) if not dry_run else None
        if len(real) == 5 and emulator.before_write is not None:  # the put-back's first write: ratings is edited
            emulator.before_write = None
            ratings = Target(target.resource, "shop", "ratings")
            emulator.write("PATCH", ratings, b'{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", '
                           b'"metadata": {"name": "ratings", "namespace": "shop", "labels": {"edited": "by-hand"}}}',
                           {"fieldManager": "kubectl-edit"}, "application/apply-patch+yaml")
    emulator.before_write = kubectl_edits
    rc, _out, err = run("plan", "run", "--apply", "--source", SOURCE, "--db", db)
    assert rc == 1 and "MST1007: Istio reports the stage's config invalid" in err, err
    assert "could not be put back by itself" in err and "VirtualService shop/ratings changed since meshstep" in err
    stage, trail = _stage(db)
    assert stage.status == StageStatus.APPLIED and stage.record.applied  # half back: what it applied is kept
    with closing(Store.open(db)) as store:
        stopped = store.list_plans(SOURCE)[0].stopped
    assert stopped["code"] == "MST1007" and "could not be put back" in stopped["reason"]
    rc, _out, err = run("plan", "advance", "--apply", "--source", SOURCE, "--db", db)
    assert rc == 1 and "MST1008: plan custom is stopped" in err, err


def _policies(served: Cluster) -> dict[str, dict]:
    return {k[2]: v for k, v in live_objects(served).items() if k[0] == "authorizationpolicies" and k[1] == "shop"}


@pytest.mark.parametrize("would_deny", [False, True])
def test_authorization_is_baked_in_shadow_then_enforced(demo, capsys, tmp_path: Path, would_deny: bool) -> None:
    """`--shadow-authz`: shop's authorization policies are applied with istio.io/dry-run, baked on what the proxies
    say they would deny, and enforced (the annotation removed) only when they would deny nothing; a policy that
    would deny a caller is rolled back by itself, never enforced."""
    from tests.live_traffic import Workload, live_prometheus

    served, db = demo
    run = runner(capsys)
    # The team brought legacy into the mesh by hand (its billing calls shop: STRICT in shop needs it, MST0402) and
    # restarted the namespaces.
    from kmock import resource

    served.emulator.write("PATCH", Target(resource(group="", version="v1", plural="namespaces"), None, "legacy"),
                          b'{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "legacy", "labels": '
                          b'{"istio-injection": "enabled"}}}', {"fieldManager": "kubectl"},
                          "application/apply-patch+yaml")
    for namespace in ("legacy", "payments", "shop"):
        restart(served, namespace)
    assert run("plan", "new", "--template", "custom", "--source", SOURCE, "--db", db)[0] == 0
    for feature in ("mtls-strict", "authorization-policy"):
        assert run("plan", "add", feature, "--scope", "shop", "--source", SOURCE, "--db", db)[0] == 0
    shadowed = []

    def denied() -> float:
        policies = _policies(served)
        if policies and all(p["metadata"]["annotations"].get("istio.io/dry-run") == "true" for p in policies.values()):
            shadowed.append(True)
            return 0.2 if would_deny else 0.0
        return 0.0
    shop = Workload("shop", "reviews", 40, denied=denied)
    with live_prometheus(tmp_path, [shop]) as url:
        rc, _out, err = run("plan", "run", "--apply", "--shadow-authz", "--source", SOURCE, "--db", db,
                            "--prometheus", url, *BAKE)
    assert shadowed, err
    stage, trail = _stage(db)
    assert "authorization in shadow (istio.io/dry-run" in next(r for r in trail if "server-side applied" in r)
    if would_deny:
        assert rc == 1 and "would have been denied once enforced" in err, err
        assert stage.status == StageStatus.ROLLED_BACK and _policies(served) == {}
        assert "rolled back by itself" in trail[-1]
        return
    assert rc == 0, err
    assert stage.status == StageStatus.DONE
    policies = _policies(served)
    assert policies and all("istio.io/dry-run" not in p["metadata"]["annotations"] for p in policies.values())
    assert any(r.startswith("shadow bake passed") and "enforced: istio.io/dry-run removed" in r for r in trail)


def test_plan_rollback_apply_puts_the_stage_back_on_the_cluster(demo, capsys) -> None:
    served, db = demo
    run = runner(capsys)
    assert run("plan", "new", "--template", "routing-first", "--source", SOURCE, "--db", db)[0] == 0
    assert run("plan", "run", "--apply", "--until", "5", "--source", SOURCE, "--db", db)[0] == 0
    before = live_objects(served)
    assert run("plan", "run", "--apply", "--stages", "1", "--source", SOURCE, "--db", db)[0] == 0
    assert _routed(served)
    rc, _out, err = run("plan", "rollback", "--apply", "--reason", "canary owners asked", "--source", SOURCE,
                        "--db", db)
    assert rc == 0, err
    assert ("stage 6 (Route requests by version) rolled back; put back on the cluster as before it: VirtualService "
            "payments/payments-api, DestinationRule payments/payments-api") in err
    assert live_objects(served) == before
    with closing(Store.open(db)) as store:
        stage = store.list_plans(SOURCE)[0].stages[5]
        assert stage.status == StageStatus.ROLLED_BACK and not stage.record.applied
        assert audit.verify(store) is None


def migration_objects() -> list[dict]:
    """tests/fixtures/ambient/migration.yaml's sidecar namespaces on the demo's control plane, with the Gateway API
    CRDs (the cluster the sidecar-to-ambient template migrates: tests/features/corpus.migration)."""
    from tests.features.corpus import GATEWAY_API_CRDS, MIGRATION, control_plane, running

    return [*control_plane(), *read_paths(sorted(GATEWAY_API_CRDS.glob("*.yaml"))),
            *running(list(read_paths([MIGRATION])))]


def test_a_stage_that_deletes_is_applied_dry_run_first_and_rolled_back_by_creating_again(env, capsys) -> None:
    """sidecar-to-ambient's policy migration in bank (ambient-policies) converts bank's VirtualService to HTTPRoutes
    and deletes it in the same stage: with --apply, every apply and the DELETE are dry-run first, the DELETE under
    the resourceVersion the gate read; `plan rollback --apply` creates the VirtualService again as it was and takes
    the stage's objects away: the cluster equals the one before the stage."""
    with serve(migration_objects(), writes=True) as served:
        db = env(served.url)
        run = runner(capsys)
        assert run("plan", "new", "--template", "custom", "--source", SOURCE, "--db", db)[0] == 0
        rc, _out, err = run("plan", "add", "ambient-policies", "--scope", "bank", "--source", SOURCE, "--db", db)
        assert rc == 0, err
        rc, out, err = run("plan", "next", "--source", SOURCE, "--db", db)
        assert "# delete VirtualService bank/accounts" in out, out
        before = live_objects(served)
        version = next(o.raw["metadata"]["resourceVersion"] for k, o in served.emulator.objects.items()
                       if (k[0].plural, k[1], k[2]) == ("virtualservices", "bank", "accounts"))
        rc, _out, ran = run("plan", "run", "--apply", "--source", SOURCE, "--db", db)
        assert rc == 0, ran
        applied = live_objects(served)
        writes = patches(served)
        rc, _out, err = run("plan", "rollback", "--apply", "--name", "custom", "--reason", "bank's team asked to wait",
                            "--source", SOURCE, "--db", db)
        assert rc == 0, err
        after = live_objects(served)
        created = [r for r in served.emulator if r.method == "POST"]
    deletes = [w for w in writes if w.method == "DELETE"]
    assert [(d.url.path.rsplit("/", 1)[1], d.params.get("dryRun")) for d in deletes] == [("accounts", "All"),
                                                                                          ("accounts", None)]
    assert all(yaml.safe_load(d.body)["preconditions"] == {"resourceVersion": version} for d in deletes)
    first_real = next(i for i, w in enumerate(writes) if "dryRun" not in w.params)
    assert all("dryRun" in w.params for w in writes[:first_real]) and len(writes[:first_real]) == len(writes) // 2
    assert ("virtualservices", "bank", "accounts") not in applied and ("httproutes", "bank", "accounts") in applied
    assert "deleted: VirtualService bank/accounts" in ran and "-  name: accounts" in ran  # its deletion's diff
    assert [(c.url.path, c.params.get("fieldManager")) for c in created] == [
        ("/apis/networking.istio.io/v1/namespaces/bank/virtualservices", "meshstep")]
    assert after == before
    stage, trail = _stage(db)
    assert stage.status == StageStatus.ROLLED_BACK
    assert any("deleted: VirtualService bank/accounts" in r for r in trail)
    assert "VirtualService bank/accounts" in trail[-1]
