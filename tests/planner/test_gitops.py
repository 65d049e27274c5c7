"""GitOps mode (`meshstep plan advance --gitops`, `plan run --gitops`, `plan rollback --gitops`) against tests/kube.py's
WritableEmulator serving the demo over HTTP: a thread playing Argo CD server-side applies the exported files after a
delay, meshstep waits until the stage's objects are on the cluster as the stage renders them, then waits for Istio
and bakes exactly as `--apply` does; a regression is said with the rollback file to commit, never undone by meshstep.
And the bake's wait for the touched proxies: istiod's /debug/syncz read through the API server's service proxy."""
from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import yaml

from planner import operate
from state.models import StageStatus
from state.store import Store
from tests.kube import Cluster, pilot
from tests.planner import test_operate
from tests.planner.test_operate import BAKE, SOURCE, _custom_plan, _stage, live_objects, patches
from tests.rehearsal import runner

env, demo = test_operate.env, test_operate.demo  # the served demo cluster and its state database, as fixtures

ARGO = "argocd-controller"


def _send(served: Cluster, obj: dict, delete: bool) -> None:
    """One object of a file as Argo CD syncs it over the API (its ServerSideApply=true sync option: a server-side
    apply as field manager argocd-controller), or deleted (pruned)."""
    api = obj["apiVersion"]
    group, _, version = api.rpartition("/")
    plural = next(r.plural for r, info in served.emulator.resources.items()
                  if r.group == group and r.version == version and info.kind == obj["kind"])
    meta = obj["metadata"]
    where = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    url = f"{served.url}{'/apis' if group else '/api'}/{api}{where}/{plural}/{meta['name']}"
    request = (urllib.request.Request(url, method="DELETE") if delete else
               urllib.request.Request(f"{url}?fieldManager={ARGO}", data=json.dumps(obj).encode(), method="PATCH",
                                      headers={"Content-Type": "application/apply-patch+yaml"}))
    urllib.request.urlopen(request, timeout=10).read()


REVIEWS = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/reviews"


def argo_cd(served: Cluster, files: Iterable[Path], after: float, looked_at: str | None = REVIEWS
            ) -> threading.Thread:
    """Argo CD syncing the team's commit of `files` in another thread, `after` seconds once meshstep has begun to
    look for an object (a GET of `looked_at` from now on; None: from now)."""
    files, seen = list(files), len(list(served.emulator))

    def sync() -> None:
        while looked_at and not any(r.method == "GET" and r.url.path == looked_at
                                    for r in list(served.emulator)[seen:]):
            time.sleep(0.1)
        time.sleep(after)
        for path in files:
            for obj in yaml.safe_load_all(path.read_text()):
                if obj:
                    _send(served, obj, path.name.endswith(".delete.yaml"))
    thread = threading.Thread(target=sync, daemon=True)
    thread.start()
    return thread


def _ready_and_exported(run, db: str, repo: Path) -> tuple[Path, list[Path]]:
    """The custom plan's stage past its gate (ready), and the export's stage file and rollback files: the objects it
    changed as they were, and a `.delete.yaml` of the three VirtualServices it creates."""
    _custom_plan(run, db)
    rc, out, err = run("plan", "advance", "--source", SOURCE, "--db", db)
    assert rc == 0 and ": ready" in out, err
    assert run("plan", "export", str(repo), "--source", SOURCE, "--db", db)[0] == 0
    rollback = sorted(repo.glob("*.rollback*.yaml"))
    assert [p.name.split(".", 1)[1] for p in rollback] == ["rollback.delete.yaml", "rollback.yaml"]
    stage = rollback[1].with_name(rollback[1].name.replace(".rollback", ""))
    assert stage.exists(), sorted(p.name for p in repo.iterdir())
    return stage, rollback


def _meshstep_writes(served: Cluster) -> list:
    return [w for w in patches(served) if w.params.get("fieldManager") == "meshstep"]


def _spec(served: Cluster, name: str) -> dict:
    return live_objects(served)[("virtualservices", "shop", name)]["spec"]


def test_gitops_waits_for_argo_cd_then_bakes_the_stage_to_done(demo, capsys, tmp_path: Path) -> None:
    served, db = demo
    run = runner(capsys)
    stage_file, _rollback = _ready_and_exported(run, db, tmp_path / "repo")
    sync = argo_cd(served, [stage_file], after=2)
    started = time.monotonic()
    rc, _out, err = run("plan", "run", "--gitops", "--source", SOURCE, "--db", db)
    sync.join()
    assert rc == 0, err
    assert time.monotonic() - started >= 2  # it waited for Argo CD
    assert "waiting for GitOps (Argo CD, Flux) to apply stage" in err and "VirtualService shop/reviews" in err
    assert "seen on the cluster as the stage renders them" in err
    assert not _meshstep_writes(served)  # meshstep applied nothing itself
    assert "retries" in str(_spec(served, "reviews"))
    stage, trail = _stage(db)
    assert stage.status == StageStatus.DONE and stage.record.gitops
    assert any(r.startswith("config applied (by GitOps") and "VirtualService shop/reviews" in r for r in trail)


def test_gitops_that_does_not_come_ends_in_a_coded_message_and_records_nothing(demo, capsys, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHSTEP_GITOPS_TIMEOUT", "2")
    served, db = demo
    run = runner(capsys)
    stage_file, _rollback = _ready_and_exported(run, db, tmp_path / "repo")
    _before, trail_before = _stage(db)
    rc, _out, err = run("plan", "advance", "--gitops", "--source", SOURCE, "--db", db)
    assert rc == 1
    assert "MST1010: GitOps did not bring stage" in err and "within 2s (MESHSTEP_GITOPS_TIMEOUT)" in err, err
    assert "VirtualService shop/reviews" in err and stage_file.name in err
    stage, trail = _stage(db)
    assert stage.status == StageStatus.READY and trail == trail_before and not stage.record.applied


def test_a_regression_under_gitops_stops_names_the_rollback_and_records_it_once_seen(
        demo, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.live_traffic import Workload, live_prometheus

    monkeypatch.setenv("MESHSTEP_BAKE_LOOK", "3")
    served, db = demo
    run = runner(capsys)
    before = _spec(served, "reviews")
    stage_file, rollback_files = _ready_and_exported(run, db, tmp_path / "repo")
    # Half of reviews' requests fail once its VirtualService has the stage's retries.
    reviews = Workload("shop", "reviews", 40, failing=lambda: 0.5 if "retries" in str(_spec(served, "reviews"))
                       else 0.0)
    with live_prometheus(tmp_path, [reviews]) as url:
        argo_cd(served, [stage_file], after=1, looked_at=None).join()
        rc, _out, err = run("plan", "run", "--gitops", "--source", SOURCE, "--db", db, "--prometheus", url, *BAKE,
                            "--verify", "window=60s")
    assert rc == 1
    assert "MST1011: the bake saw a regression" in err and "success rate fell" in err, err
    assert "meshstep does not undo a stage GitOps applied" in err
    assert all(f.name in err for f in rollback_files)
    assert "retries" in str(_spec(served, "reviews")) and not _meshstep_writes(served)
    stage, trail = _stage(db)
    assert stage.status == StageStatus.APPLIED and stage.record.verification["status"] == "regressed"
    assert trail[-1].startswith("MST1011")
    rc, _out, err = run("plan", "advance", "--gitops", "--source", SOURCE, "--db", db)
    assert rc == 1 and "MST1008: plan custom is stopped" in err and "awaited its rollback through GitOps" in err
    assert "MST1011" in err and rollback_files[1].name in err  # not baked again: the rollback is awaited
    sync = argo_cd(served, rollback_files, after=1)
    rc, _out, err = run("plan", "rollback", "--gitops", "--reason", "reviews failed", "--source", SOURCE, "--db", db)
    sync.join()
    assert rc == 0, err
    assert "waiting for GitOps (Argo CD, Flux) to apply the rollback of stage" in err
    assert _spec(served, "reviews") == before and not _meshstep_writes(served)
    created = {"frontend-mesh", "orders", "ratings"}  # by the stage, deleted by the rollback's .delete.yaml
    assert not created & {k[2] for k in live_objects(served) if k[0] == "virtualservices"}
    stage, trail = _stage(db)
    assert stage.status == StageStatus.ROLLED_BACK and not stage.record.applied
    assert "rollback seen on the cluster" in trail[-1]
    with closing(Store.open(db)) as store:
        assert store.list_plans(SOURCE)[0].stopped["code"] == "MST1011"  # until someone resumes it, with a reason


def _syncz_requests(served: Cluster) -> list:
    return [r for r in served.emulator if r.method == "GET" and r.url.path.endswith(":15014/proxy/debug/syncz")]


def test_the_bake_waits_until_the_touched_proxies_have_the_config(demo, capsys) -> None:
    """istiod pushes 6 s after a config write (longer than reading the cluster before the bake takes) and the
    proxies acknowledge it 0.5 s later: the first answers of /debug/syncz show shop's seven proxies stale, then
    synced; proxies of other namespaces are not waited for."""
    served, db = demo
    pilots(served, push_after=6)
    run = runner(capsys)
    _custom_plan(run, db)
    rc, _out, err = run("plan", "run", "--apply", "--source", SOURCE, "--db", db)
    assert rc == 0, err
    assert "waiting for the proxies to get the config: 0 of 7 proxies in shop" in err, err
    assert "the config reached the 7 proxies in shop (istiod's /debug/syncz: sent after the apply and acknowledged)" \
        in err
    assert len(_syncz_requests(served)) >= 2


def pilots(served: Cluster, **how: Any) -> list[str]:
    """Each istiod pod of the served cluster (the demo runs two replicas) answering /debug/syncz for its share of
    the proxies: every proxy is connected to one replica."""
    pods = sorted(k[2] for k, o in served.emulator.objects.items() if k[0].plural == "pods" and not o.deleted
                  and (o.raw["metadata"].get("labels") or {}).get("app") == "istiod")
    for i, pod in enumerate(pods):
        pilot(served.emulator, "istio-system", pod, replica=(i, len(pods)), **how)
    return pods


def test_every_istiod_replica_is_asked_for_the_proxies_connected_to_it(demo, capsys) -> None:
    """The demo's two istiod replicas each list the proxies connected to them: the wait asks each pod through the
    API server's pod proxy (a Service would reach one and leave the other's proxies unseen) and counts shop's seven
    proxies across both."""
    served, db = demo
    pods = pilots(served, push_after=0.2)
    assert len(pods) == 2
    run = runner(capsys)
    _custom_plan(run, db)
    rc, _out, err = run("plan", "run", "--apply", "--source", SOURCE, "--db", db)
    assert rc == 0, err
    assert "the config reached the 7 proxies in shop" in err, err
    assert {r.url.path.split("/")[6] for r in _syncz_requests(served)} == {f"{pod}:15014" for pod in pods}


def test_proxies_that_never_acknowledge_roll_the_stage_back(demo, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHSTEP_PROXY_SYNC_TIMEOUT", "2")
    served, db = demo
    pilots(served, push_after=0.2, nack=True)
    before = live_objects(served)
    run = runner(capsys)
    _custom_plan(run, db)
    rc, _out, err = run("plan", "run", "--apply", "--source", SOURCE, "--db", db)
    assert rc == 1
    assert "MST1009: 7 proxies in shop did not acknowledge the stage's config within 2s" in err, err
    assert "rolled back by itself" in err and live_objects(served) == before
    assert _stage(db)[0].status == StageStatus.ROLLED_BACK
    with closing(Store.open(db)) as store:
        assert store.list_plans(SOURCE)[0].stopped["code"] == "MST1009"


def test_istio_s_refusal_carries_its_code() -> None:
    """The plan's stop keeps the refusal's code (MST1007 or MST1009) as the refusal carries it, not as read back
    from its text, which quotes what istiod says; the text starts with the code all the same."""
    invalid = operate.NotAccepted("Istio reports the stage's config invalid: IST0101 Referenced host not found")
    stale = operate.ProxiesNotSynced("3 proxies in shop did not acknowledge the stage's config within 2s")
    assert (invalid.code, str(invalid)) == (
        "MST1007", "MST1007: Istio reports the stage's config invalid: IST0101 Referenced host not found")
    assert (stale.code, str(stale)) == (
        "MST1009", "MST1009: 3 proxies in shop did not acknowledge the stage's config within 2s")


@pytest.mark.parametrize("unreadable", ["forbidden", "not served"])
def test_unreadable_syncz_is_said_and_the_settle_time_used(demo, capsys, unreadable: str) -> None:
    served, db = demo
    if unreadable == "forbidden":
        served.emulator.forbidden_writes.add(("get", "pods/proxy"))
    run = runner(capsys)
    _custom_plan(run, db)
    rc, _out, err = run("plan", "run", "--apply", "--source", SOURCE, "--db", db)
    assert rc == 0, err
    said = {"forbidden": 'cannot get resource "pods/proxy"',
            "not served": "error trying to reach service: dial tcp 10.244.0.12:15014: connect: connection refused"
            }[unreadable]
    assert "cannot read istiod's /debug/syncz through the API server" in err and said in err, err
    assert "proxies' sync not checked: settled 0s (MESHSTEP_SETTLE) instead" in err


def _reached(served: Cluster, said: list[str]) -> str:
    """Operator.reached for shop's proxies, asking each istiod pod of the served cluster, with no settle time."""
    pods = sorted(k[2] for k, o in served.emulator.objects.items() if k[0].plural == "pods" and not o.deleted
                  and (o.raw["metadata"].get("labels") or {}).get("app") == "istiod")
    operator = operate.operator_for(SOURCE, said.append)
    return operator.reached(operate.Touched(tuple(("istio-system", p) for p in pods), frozenset({"shop"})), None)


@pytest.mark.parametrize("bug", [TypeError, AttributeError])
def test_a_bug_in_reading_syncz_is_not_taken_for_settled(demo, monkeypatch: pytest.MonkeyPatch, bug: type) -> None:
    """A bug in meshstep's own read (the pod proxy's GET raising TypeError) is no cluster that cannot be read: it
    propagates, instead of being said as an unreadable syncz and the proxies taken as settled."""
    from cluster.kubeapi import ApiServer

    served, _db = demo
    pilots(served)

    def broken(self: ApiServer, path: str, what: str) -> bytes:
        raise bug("a bug in the reader")
    monkeypatch.setattr(ApiServer, "get_once", broken)
    said: list[str] = []
    with pytest.raises(bug, match="a bug in the reader"):
        _reached(served, said)
    assert said == []


@pytest.mark.parametrize("answer", [{"proxy": "productpage-v1-7c9d.shop"}, ["productpage-v1-7c9d.shop"],
                                    [{"proxy": "productpage-v1-7c9d.shop", "cluster_sent": 7}]])
def test_an_answer_that_is_no_syncz_is_said_and_the_settle_time_used(demo, answer: Any) -> None:
    """What istiod's port answers is the cluster's to get wrong: an answer that is not its list of SyncStatus is
    said, and the settle time used, as for a syncz the API server cannot reach."""
    served, _db = demo
    for pod in pilots(served):
        served.emulator.proxied[("istio-system", pod, "15014")] = lambda _path: (200, answer)
    said: list[str] = []
    assert _reached(served, said) == "proxies' sync not checked: settled 0s (MESHSTEP_SETTLE) instead"
    assert len(said) == 1 and said[0].startswith("cannot read istiod's /debug/syncz through the API server ("), said


def test_an_api_server_that_refuses_the_pod_proxy_is_said_and_the_settle_time_used(demo) -> None:
    served, _db = demo
    pilots(served)
    served.emulator.forbidden_writes.add(("get", "pods/proxy"))
    said: list[str] = []
    assert _reached(served, said) == "proxies' sync not checked: settled 0s (MESHSTEP_SETTLE) instead"
    assert 'cannot get resource "pods/proxy"' in said[0], said
