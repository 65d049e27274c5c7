"""`meshstep plan run --apply` on the sidecar-to-ambient plan, against tests/kube.py's WritableEmulator serving the
ambient fixture (tests/fixtures/ambient, the ambient profile installed) over real HTTP, baked on a real Prometheus
scraping a live exporter whose series follow the emulated namespace's labels: a waypoint reports web's requests
once istio.io/use-waypoint is on it, ztunnel carries its connections over HBONE once it is labelled ambient.
`web` runs without sidecars, so its switch changes one label and restarts nothing (istio-cni captures its pods in
place, https://istio.io/latest/docs/ambient/usage/add-workloads/)."""
from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from state import audit
from state.models import StageStatus
from state.store import Store
from tests.features.corpus import ambient_objects
from tests.kube import Cluster, serve
from tests.planner.test_operate import BAKE, SOURCE, env, live_objects, patches  # noqa: F401 (env: a fixture)
from tests.rehearsal import runner


def _labels(served: Cluster, namespace: str) -> dict[str, str]:
    return next(o.raw["metadata"].get("labels") or {} for k, o in served.emulator.objects.items()
                if k[0].plural == "namespaces" and k[2] == namespace and not o.deleted)


def _web(served: Cluster, refused: float = 0.0):
    """web's shop, as the proxies in its path report it now; `refused`: connections a second from legacy's billing
    job ztunnel denies once web is ambient (allowed before: web had no policy enforcement point)."""
    from tests.live_traffic import Workload

    ambient = lambda: _labels(served, "web").get("istio.io/dataplane-mode") == "ambient"  # noqa: E731
    return Workload("web", "shop", 40, sidecar=lambda: False,
                    waypoint=lambda: "istio.io/use-waypoint" in _labels(served, "web"), ztunnel=ambient,
                    refused=lambda: refused if ambient() else 0.0)


def _stages(run, db: str, namespace: str = "web") -> dict[str, int]:
    """The plan's stages for the namespace by feature: their order."""
    with closing(Store.open(db)) as store:
        plan = store.list_plans(SOURCE)[0]
    return {s.features[0]["feature"]: s.order for s in plan.stages
            if s.features and s.features[0]["scope"] == namespace}


def _to_the_switch(served: Cluster, db: str, run) -> int:
    """The plan made for web, walked with --apply up to its switch: its waypoint activated (no telemetry: web had
    no proxy to report its traffic before); the switch's order."""
    assert run("plan", "new", "--template", "sidecar-to-ambient", "--namespaces", "web", "--source", SOURCE,
               "--db", db)[0] == 0
    stages = _stages(run, db)
    assert {"waypoint", "ambient-mode"} <= stages.keys(), stages
    rc, _out, err = run("plan", "run", "--apply", "--until", str(stages["waypoint"]), "--source", SOURCE, "--db", db)
    assert rc == 0, err
    assert _labels(served, "web").get("istio.io/use-waypoint") == "waypoint"
    return stages["ambient-mode"]


@pytest.mark.parametrize("refused", [0.0, 2.0])
def test_a_switch_to_ambient_is_baked_on_hbone_and_a_new_denial_rolls_it_back(env, capsys, tmp_path: Path,  # noqa: F811
                                                                              refused: float) -> None:
    from tests.live_traffic import live_prometheus

    with serve(ambient_objects(), writes=True) as served:
        db = env(served.url)
        run = runner(capsys)
        switch = _to_the_switch(served, db, run)
        before = live_objects(served)
        with live_prometheus(tmp_path, [_web(served, refused)]) as url:
            rc, _out, err = run("plan", "run", "--apply", "--until", str(switch), "--source", SOURCE, "--db", db,
                                "--prometheus", url, *BAKE)
        after = live_objects(served)
        writes = len(patches(served))
        again = run("plan", "run", "--apply", "--source", SOURCE, "--db", db)
        assert len(patches(served)) == writes or not refused  # stopped: nothing more written
    with closing(Store.open(db)) as store:
        plan = store.list_plans(SOURCE)[0]
        stage = next(s for s in plan.stages if s.order == switch)
        assert audit.verify(store) is None
        trail = [e.reason for e in store.audit_events() if e.target == f"stage:{stage.id}"]
    assert "HBONE 100.0% of" in err and "reported by the waypoint" in err, err
    if not refused:
        assert rc == 0, err
        assert stage.status == StageStatus.DONE and stage.record.verification["status"] == "passed"
        assert stage.record.verification["after"]["hbone_share"] == pytest.approx(100.0)
        assert after[("namespaces", None, "web")]["metadata"]["labels"]["istio.io/dataplane-mode"] == "ambient"
        return
    assert rc == 1
    assert f"MST1006: the bake saw a regression: stage {switch} (Switch web to ambient mode) rolled back by " \
           "itself" in err, err
    assert "new denial after the stage: legacy/billing → web/shop" in err and "denied by ztunnel" in err
    assert after == before  # the namespace's labels, and all else, as before the stage
    assert stage.status == StageStatus.ROLLED_BACK and stage.record.verification["status"] == "regressed"
    assert plan.stopped["code"] == "MST1006" and "legacy/billing" in plan.stopped["reason"]
    assert any("server-side applied, field manager meshstep" in r for r in trail)
    assert "rolled back by itself" in trail[-1]
    assert again[0] == 1 and "MST1008: plan sidecar-to-ambient is stopped" in again[2], again


def _orders_run_through(run: Any, db: str, feature: str) -> dict[str, int]:
    """A sidecar-to-ambient plan for orders, run by meshstep (no telemetry) through its `feature` stage: its stages'
    orders by feature."""
    assert run("plan", "new", "--template", "sidecar-to-ambient", "--namespaces", "orders", "--source", SOURCE,
               "--db", db)[0] == 0
    order = _stages(run, db, "orders")
    rc, _out, err = run("plan", "run", "--apply", "--until", str(order[feature]), "--source", SOURCE, "--db", db)
    assert rc == 0, err
    return order


def test_a_waypoint_stage_failing_requests_is_rolled_back_on_the_waypoint_s_count(env, capsys,  # noqa: F811
                                                                                 tmp_path: Path) -> None:
    """orders' waypoint put in its path (istio.io/use-waypoint) fails 1.5% of its requests: the waypoint stage's
    bake, judged on the requests the waypoint reports (the sidecars still behind it count only those that reach
    them: added in, the fall would read 0.76 points, under the 1-point threshold), sees the success rate fall
    1.5 points, and the stage is rolled back by itself: the namespace's label and the waypoint as they were."""
    from tests.live_traffic import Workload, live_prometheus

    with serve(ambient_objects(), writes=True) as served:
        db = env(served.url)
        run = runner(capsys)
        order = _orders_run_through(run, db, "ambient-policies")
        before = live_objects(served)
        behind = lambda: "istio.io/use-waypoint" in _labels(served, "orders")  # noqa: E731
        orders = Workload("orders", "orders-v1", 40, waypoint=behind, failing=lambda: 0.015 if behind() else 0.0)
        with live_prometheus(tmp_path, [orders]) as url:
            rc, _out, err = run("plan", "run", "--apply", "--until", str(order["waypoint"]), "--source", SOURCE,
                                "--db", db, "--prometheus", url, *BAKE)
        after = live_objects(served)
    assert rc == 1, err
    assert f"MST1006: the bake saw a regression: stage {order['waypoint']} (Activate a waypoint for orders before it " \
           "leaves sidecars) rolled back by itself" in err, err
    assert "reported by the waypoint" in err and "success rate fell" in err
    assert after == before
    with closing(Store.open(db)) as store:
        plan = store.list_plans(SOURCE)[0]
        assert audit.verify(store) is None
    assert plan.stopped["code"] == "MST1006"


def test_pods_left_on_sidecars_after_a_switch_leave_it_applied_with_the_restart_named(env, capsys,  # noqa: F811
                                                                                      tmp_path: Path) -> None:
    """orders' pods keep their sidecars until restarted (the emulator runs no controller; nobody restarts them): the
    switch's bake sees them still serving, so the switch is not done, and not rolled back either (nothing broke)."""
    from tests.live_traffic import Workload, live_prometheus

    with serve(ambient_objects(), writes=True) as served:
        db = env(served.url)
        run = runner(capsys)
        stages = _orders_run_through(run, db, "waypoint")
        orders = Workload("orders", "orders-v1", 40, waypoint=lambda: True)
        with live_prometheus(tmp_path, [orders]) as url:
            rc, _out, err = run("plan", "run", "--apply", "--until", str(stages["ambient-mode"]), "--source", SOURCE,
                                "--db", db, "--prometheus", url, *BAKE)
        labels = _labels(served, "orders")
    assert rc == 1, err
    assert "still served by sidecars after the switch" in err and "kubectl rollout restart deployment -n orders" \
        in err, err
    assert labels.get("istio.io/dataplane-mode") == "ambient" and "istio.io/rev" not in labels, labels
    with closing(Store.open(db)) as store:
        plan = store.list_plans(SOURCE)[0]
        assert audit.verify(store) is None
    stage = next(s for s in plan.stages if s.order == stages["ambient-mode"])
    assert stage.status == StageStatus.APPLIED and plan.stopped is None
