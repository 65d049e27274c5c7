"""`meshstep fleet` over three clusters served by kmock's emulator on loopback (tests/kube.py), one of them
unreachable; and over snapshots, as the fleet works offline."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from app.cli import main
from cluster import revisions
from cluster.files import read_paths
from cluster.inventory import build_inventory
from cluster.snapshot import Snapshot
from cluster.sources import DEMO_DIR, load_snapshot
from features.base import observe
from planner import fleet, stages
from state.store import Store
from tests.app.browser import free_port
from tests.cluster.test_sources import kubeconfig_env  # noqa: F401  (the fixture)
from tests.kube import serve


def _demo_objects(drop_pods: int = 0) -> list[dict]:
    """The bundled demo cluster, less its first `drop_pods` pods (a second cluster that differs)."""
    objects = list(read_paths(sorted(DEMO_DIR.glob("*.yaml"))))
    dropped = [id(o) for o in objects if o["kind"] == "Pod"][:drop_pods]
    return [o for o in objects if id(o) not in dropped]


def _inventory(objects: list[dict]):
    return build_inventory(Snapshot("expected", lambda _v: iter(objects)))


@pytest.fixture
def kubeconfig(kubeconfig_env):  # noqa: F811
    """Write a kubeconfig of these contexts (name → server URL), the first one current."""
    return lambda servers: kubeconfig_env(servers, next(iter(servers)))


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


def test_fleet_of_three_clusters_one_unreachable(kubeconfig, db: str, capsys: pytest.CaptureFixture) -> None:
    staging_objects, prod_objects = _demo_objects(), _demo_objects(drop_pods=3)
    # The team's records: prod has a plan under way and a flag recorded on that the cluster does not show.
    prod_inv = _inventory(prod_objects)
    with closing(Store.open(db)) as store:
        plan = stages.create(store, "context:prod", prod_inv, "routing-first", None, "adopt", "alice")
        store.set_flag("context:prod", "mtls-strict", "mesh", {}, "on", "bob", reason="wanted")
    expected_stage = stages.current_stage(plan)
    with serve(staging_objects) as staging, serve(prod_objects) as prod:
        kubeconfig({"staging": staging.url, "prod": prod.url, "east": f"http://127.0.0.1:{free_port()}"})
        started = time.monotonic()
        assert main(["fleet", "--all-contexts", "--format", "json", "--db", db, "--deadline", "20"]) == 1
        elapsed = time.monotonic() - started
        rows = {r["cluster"]: r for r in json.loads(capsys.readouterr().out)}
        assert main(["fleet", "--contexts", "staging,east,prod", "--db", db]) == 1
        table = capsys.readouterr().out

    assert list(rows) == ["context:staging", "context:prod", "context:east"]  # the kubeconfig's order
    east = rows["context:east"]
    assert not east["ok"] and "cannot reach the Kubernetes API server" in east["error"] and "'east'" in east["error"]
    assert elapsed < 20  # the unreachable cluster failed fast; it did not wait for the deadline
    for name, objects in (("context:staging", staging_objects), ("context:prod", prod_objects)):
        inv, row = _inventory(objects), rows[name]
        assert row["ok"] and row["error"] is None
        assert row["istio_version"] == inv.istio_version and row["istio_version"]
        assert row["versions"] == [r.version for r in revisions.installed(inv)]
        assert {k: row[k] for k in inv.mesh_summary} == inv.mesh_summary
        assert sorted((o["feature"], o["scope"]) for o in row["observed"]) == sorted(
            (o.feature, o.scope) for o in observe(inv))
    assert rows["context:staging"]["pods_total"] > rows["context:prod"]["pods_total"]
    assert rows["context:staging"]["plan"] is None and rows["context:staging"]["recorded"] == []
    prod_row = rows["context:prod"]
    assert prod_row["plan"] == "adopt" and prod_row["stage"].startswith(f"{expected_stage.order}/")
    assert "mtls-strict@mesh" in prod_row["recorded"]
    assert {"feature": "mtls-strict", "scope": "mesh", "kind": "recorded on, not observed"}.items() <= next(
        d for d in prod_row["drift"] if d["feature"] == "mtls-strict").items()

    lines = table.splitlines()
    assert lines[0].split()[:3] == ["CLUSTER", "STATUS", "ISTIO"]
    by_cluster = {line.split()[0]: line.split() for line in lines[1:4]}
    assert [line.split()[0] for line in lines[1:4]] == ["context:staging", "context:east", "context:prod"]
    assert by_cluster["context:east"][1] == "failed" and by_cluster["context:prod"][1] == "ok"
    assert "context:east: failed after" in table and "cannot reach" in table


def test_a_cluster_past_its_deadline_is_failed_and_the_others_shown(kubeconfig, db: str) -> None:
    with serve(_demo_objects()) as fast, serve(_demo_objects()) as slow:
        slow.emulator.delay = 3.0  # each list answer waits: the whole read takes far longer than the deadline
        kubeconfig({"fast": fast.url, "slow": slow.url})
        started = time.monotonic()
        with closing(Store.open(db)) as store:
            rows = fleet.read_fleet(fleet.members(["fast", "slow"]), store, deadline=1.5)
        assert time.monotonic() - started < 3.0
    assert rows[0].ok and rows[0].reading.mesh["pods_total"] > 0
    assert not rows[1].ok and "deadline of 1.5 s" in rows[1].error


def test_fleet_ends_at_the_deadline_not_when_a_slow_cluster_answers(kubeconfig, tmp_path: Path) -> None:
    with serve(_demo_objects()) as fast, serve(_demo_objects()) as slow:
        slow.emulator.delay = 30.0
        kubeconfig({"fast": fast.url, "slow": slow.url})
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "app.cli", "fleet", "--all-contexts", "--deadline", "2", "--db",
                               f"sqlite:///{tmp_path / 'state.db'}"], capture_output=True, text=True, timeout=120)
        elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert "context:slow: failed after 2.0 s: no answer within the deadline of 2 s" in done.stdout
    assert re.search(r"^context:fast +ok ", done.stdout, re.M)
    assert elapsed < 25  # the slow cluster's first list alone answers after 30 s


_EVERYTHING = ["namespaces", "pods", "services", "nodes", "configmaps", "secrets", "deployments", "statefulsets",
               "daemonsets", "mutatingwebhookconfigurations", "validatingwebhookconfigurations",
               "customresourcedefinitions"]


def test_a_cluster_refusing_every_list_is_failed(kubeconfig, db: str) -> None:
    with serve(_demo_objects(), forbidden=_EVERYTHING) as locked:
        kubeconfig({"locked": locked.url})
        with closing(Store.open(db)) as store:
            [row] = fleet.read_fleet(fleet.members(["locked"]), store)
    assert not row.ok and "every list was refused" in row.error and "pods" in row.error


def test_the_overview_of_a_cluster_refusing_every_list_says_so(kubeconfig, db: str, monkeypatch) -> None:
    """As the fleet says it: not an empty cluster with nothing in the mesh."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import APP

    with serve(_demo_objects(), forbidden=_EVERYTHING) as locked:
        kubeconfig({"locked": locked.url})
        monkeypatch.setenv("MESHSTEP_SOURCE", "context:locked")
        monkeypatch.setenv("MESHSTEP_DATABASE_URL", db)
        st.cache_resource.clear()
        at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception and not at.metric
    [error] = at.error
    assert "every list was refused" in error.value and "pods" in error.value


def test_fleet_of_snapshots_works_offline(tmp_path: Path, db: str, capsys: pytest.CaptureFixture) -> None:
    snap = tmp_path / "prod.json"
    snap.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": _demo_objects(drop_pods=3)}))
    assert main(["fleet", "--sources", f"staging=demo,prod={snap}", "--format", "json", "--db", db]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["cluster"], r["source"], r["ok"]) for r in rows] == [("staging", "demo", True),
                                                                     ("prod", str(snap), True)]
    # Remembered, the fleet is the team's: `meshstep fleet` alone reads it.
    assert main(["fleet", "--sources", f"staging=demo,prod={snap}", "--remember", "--actor", "alice", "--db", db]) == 0
    capsys.readouterr()
    assert main(["fleet", "--format", "json", "--db", db]) == 0
    assert [(r["cluster"], r["ok"]) for r in json.loads(capsys.readouterr().out)] == [("prod", True),
                                                                                      ("staging", True)]
    with closing(Store.open(db)) as store:
        assert {(e.actor, e.target) for e in store.audit_events() if e.action == "cluster.set"} == {
            ("alice", "cluster:staging"), ("alice", "cluster:prod")}
    assert main(["fleet", "--sources", "a=demo,a=demo", "--db", db]) == 2  # a usage error, not a failed cluster
    assert "named twice" in capsys.readouterr().err
    assert main(["fleet", "--db", f"sqlite:///{tmp_path / 'empty.db'}"]) == 2
    assert "no clusters" in capsys.readouterr().err


def test_fleet_page_shows_the_team_s_clusters_and_the_one_that_failed(tmp_path: Path, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import APP

    db = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("MESHSTEP_SOURCE", "demo")
    monkeypatch.setenv("MESHSTEP_DATABASE_URL", db)
    snap = Path(__file__).resolve().parents[1] / "fixtures" / "upgrade" / "cluster.yaml"  # mid-upgrade: two versions
    with closing(Store.open(db)) as store:
        store.set_cluster("staging", "demo", "alice")
        store.set_cluster("prod", str(snap), "alice")
        store.set_cluster("gone", str(tmp_path / "missing"), "alice")
        store.set_flag("prod", "mtls-strict", "mesh", {}, "on", "bob", reason="wanted")
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page("views/fleet.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value.set_index("cluster")
    assert list(table.index) == ["gone", "prod", "staging"]  # as the database lists them
    assert table.loc["gone", "status"] == "failed" and table.loc["prod", "status"] == "ok"
    demo = _inventory(_demo_objects())
    assert table.loc["staging", "pods"] == f"{demo.mesh_summary['pods_in_mesh']}/{demo.mesh_summary['pods_total']}"
    assert table.loc["prod", "recorded"] == "1" and table.loc["staging", "recorded"] == "0"
    # A cluster that could not be read shows "-", as `meshstep fleet` prints it, not None.
    assert set(table.loc["gone"].drop("status")) == {"-"} and table.loc["staging", "plan"] == "-"
    assert any("gone" in e.value and "no such file" in e.value for e in at.error)
    assert at.metric[0].value == "2 / 3"
    upgrading = build_inventory(load_snapshot(str(snap)))
    versions = {r.version for inv in (demo, upgrading) for r in revisions.installed(inv)}
    assert len(versions) == 2 and at.metric[2].value == ", ".join(sorted(versions))

    at.text_area[0].input("staging=demo")
    at.button(key="FormSubmitter:fleet-Read the fleet").click().run()
    assert list(at.dataframe[0].value["cluster"]) == ["staging"] and not at.error
    # A path a visitor types is read only under the directories `meshstep ui --allow-path` allows (none here); the
    # file recorded in the team's database was read above.
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_bytes(snap.read_bytes())
    at.text_area[0].input(f"elsewhere={elsewhere}")
    at.button(key="FormSubmitter:fleet-Read the fleet").click().run()
    assert list(at.dataframe[0].value["status"]) == ["failed"]
    assert any("outside the directories this server allows" in e.value for e in at.error)
