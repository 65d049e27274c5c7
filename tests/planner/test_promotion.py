"""Promotion: a plan proven on staging (the demo) made again for a production cluster whose namespaces and services
differ — re-rendered for production's own objects, with what cannot be there left out and why, a stage held back
until it was done on staging long enough ago, and the audit trail linking the two plans."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, select

from cluster.sources import load_snapshot
from state.models import Stage
from state.store import Store
from tests.rehearsal import rehearse_to_done, runner


def _prod_snapshot(path: Path) -> Path:
    """Production as a snapshot file: the demo's objects with the payments namespace called billing, shop's
    ratings service gone, and a checkout service added to shop."""
    objects = []
    for o in load_snapshot("demo").objects():
        meta = o.setdefault("metadata", {})
        if o["kind"] == "Service" and meta.get("namespace") == "shop" and meta["name"] == "ratings":
            continue
        if o["kind"] == "Namespace" and meta["name"] == "payments":
            meta["name"] = "billing"
        if meta.get("namespace") == "payments":
            meta["namespace"] = "billing"
        objects.append(o)
    frontend = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "frontend")
    checkout = json.loads(json.dumps(frontend))
    checkout["metadata"] = {"name": "checkout", "namespace": "shop", "labels": {"app": "checkout"}}
    checkout["spec"].pop("clusterIP", None)
    checkout["spec"].pop("clusterIPs", None)
    objects.append(checkout)
    path.write_text(yaml.safe_dump_all(objects))
    return path


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """`meshstep ARGS` → (exit status, stdout, stderr): staging is the demo (no kubeconfig), production a file."""
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("MESHSTEP_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("MESHSTEP_ACTOR", "alice")

    run = runner(capsys)
    run.prod = str(_prod_snapshot(tmp_path / "prod.yaml"))
    return run


def _rehearse(cli, name: str) -> None:
    assert cli("plan", "new", "--name", name)[0] == 0
    rehearse_to_done(cli, name, override="noted")


def _set_done_at(name: str, order: int, at: datetime) -> None:
    """The clock of the promotion rule: when the staging stage was done."""
    store = Store.open(None)
    with Session(store.engine) as s:
        stage = next(st for st in s.exec(select(Stage)) if st.plan.name == name and st.plan.cluster == "demo"
                     and st.order == order)
        assert stage.status == "done"
        stage.updated_at = at
        s.add(stage)
        s.commit()
    store.close()


def test_a_rehearsed_staging_plan_is_promoted_to_production(cli):
    _rehearse(cli, "adopt")
    staging = json.loads(cli("plan", "show", "--name", "adopt", "--format", "json")[1])
    assert staging["mode"] == "rehearsal" and staging["complete"]
    rc, out, err = cli("plan", "promote", "adopt", "--to", "prod", "--source", cli.prod, "--after", "7d")
    assert rc == 0, err
    assert "promoted from plan adopt on cluster demo: a stage starts here 7d after" in out
    prod = json.loads(cli("plan", "show", "--name", "adopt", "--cluster", "prod", "--format", "json")[1])
    assert prod["promoted_from"]["cluster"] == "demo" and prod["promotion_after"] == 7 * 86400
    # the same stages and parameters, less what production cannot have — each left out with its reason
    staged = {(f["feature"], f["scope"], json.dumps(f["params"], sort_keys=True))
              for s in staging["stages"] for f in s["features"]}
    promoted = {(f["feature"], f["scope"], json.dumps(f["params"], sort_keys=True))
                for s in prod["stages"] for f in s["features"]}
    assert promoted < staged
    left = {(x["feature"], x["scope"]): x["reason"] for x in prod["left_out"]}
    assert left[("sidecar-injection", "payments")] == "namespace payments is not in cluster prod"
    assert "Inject sidecars into payments" not in [s["title"] for s in prod["stages"]]
    assert not any(f["scope"] == "payments" for s in prod["stages"] for f in s["features"])

    # re-rendered for production's objects: its services (checkout, not ratings), never the namespace it lacks
    def rendered(out: Path, *where: str) -> dict[str, list[tuple[str, str | None, str]]]:
        assert cli("plan", "export", str(out), "--name", "adopt", *where)[0] == 0
        return {f.name: [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
                         for o in yaml.safe_load_all(f.read_text()) if o]
                for f in sorted(out.glob("*.yaml")) if ".rollback." not in f.name}

    on_staging = rendered(Path(cli.prod).parent / "staging")
    on_prod = rendered(Path(cli.prod).parent / "prod", "--cluster", "prod", "--source", cli.prod)
    resilience = next(v for k, v in on_prod.items() if "resilience" in k)
    assert ("VirtualService", "shop", "checkout") in resilience
    assert not any(name == "ratings" for _, _, name in resilience)
    assert ("VirtualService", "shop", "ratings") in next(v for k, v in on_staging.items() if "resilience" in k)
    assert not any(ns == "payments" for objs in on_prod.values() for _, ns, _ in objs)
    assert any(ns == "payments" for objs in on_staging.values() for _, ns, _ in objs)

    # a rehearsal on staging proves the plan, not the cluster: it does not count as done
    rc, _, err = cli("plan", "advance", "--name", "adopt", "--cluster", "prod", "--source", cli.prod)
    assert rc == 1 and "was only rehearsed, and a rehearsal does not count as done" in err, err
    assert "Traceback" not in err


def test_the_after_rule_waits_for_the_staging_stage_and_the_audit_links_both(cli):
    # staging, for real: the install check has nothing to apply, so it is done in one advance
    assert cli("plan", "new", "--name", "adopt", "--verify", "max_success_drop=0.5")[0] == 0
    assert cli("plan", "advance", "--name", "adopt")[1].startswith("stage 1 (Verify the Istio install): done")
    assert cli("plan", "promote", "adopt", "--to", "prod", "--source", cli.prod, "--after", "7d")[0] == 0
    prod = ("--name", "adopt", "--cluster", "prod", "--source", cli.prod)
    # what staging proved, production is held to: the plan's thresholds go with it
    assert json.loads(cli("plan", "show", *prod, "--format", "json")[1])["verify"]["max_success_drop"] == 0.5

    done = datetime.now(UTC) - timedelta(days=2)
    _set_done_at("adopt", 1, done)
    rc, _, err = cli("plan", "advance", *prod)
    allowed = done + timedelta(days=7)
    assert rc == 1 and f"may start from {allowed:%Y-%m-%d %H:%M} UTC" in err, err
    assert f"was done at {done:%Y-%m-%d %H:%M} UTC" in err

    _set_done_at("adopt", 1, datetime.now(UTC) - timedelta(days=8))
    rc, out, err = cli("plan", "advance", *prod)
    assert rc == 0 and out.startswith("stage 1 (Verify the Istio install): done"), err
    # the next production stage waits for its staging stage, which is not done at all
    rc, _, err = cli("plan", "advance", *prod)
    assert rc == 1 and "of plan 'adopt' on cluster demo is planned, not done" in err, err


    # the audit trail links the two plans, on both sides, and the chain verifies
    events = json.loads(cli("audit", "--export", "json")[1])
    created = [e for e in events if e["action"] == "plan.create" and e["after"]["cluster"] == "prod"]
    assert created and created[0]["after"]["promoted_from"]["cluster"] == "demo"
    staging = next(e for e in events if e["action"] == "plan.create" and e["after"]["cluster"] == "demo")
    assert created[0]["after"]["promoted_from"] == {"plan_id": staging["after"]["id"], "cluster": "demo",
                                                    "name": "adopt"}
    (promote,) = [e for e in events if e["action"] == "plan.promote"]
    assert promote["target"] == f"plan:{staging['after']['id']}"
    assert promote["after"]["promoted_to"] == {"plan_id": created[0]["after"]["id"], "cluster": "prod",
                                               "name": "adopt"}
    rc, out, err = cli("audit", "--verify")
    assert rc == 0, (out, err)
