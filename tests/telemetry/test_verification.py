"""`plan advance` to verified compares the stage's traffic before and after it was applied, on a real Prometheus.

The stage is marked applied twenty minutes ago (as if the team applied it then): the test moves the recorded time,
because a Prometheus filled from files cannot hold samples from after the test started."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from benchmarks.istio_metrics import Flow
from state.models import Plan, Stage
from state.store import Store
from telemetry.metrics_file import MetricsFile
from telemetry.verification import verify
from tests.planner.test_plan import (
    cli,  # noqa: F401 (the fixture: the demo cluster the CLI sees, a state db)
    demo,  # noqa: F401
)
from tests.telemetry.conftest import now_minute, write_metrics

ORDERS = "orders.shop.svc.cluster.local"


def _healthy(**kw) -> list[Flow]:
    return [Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 10, latency_ms=40, **kw),
            Flow(("istio-system", "istio-ingressgateway"), ("shop", "frontend"), "frontend.shop.svc.cluster.local",
                 10, latency_ms=60, **kw)]


def _to_applied(cli, applied_at: float, *new: str) -> dict:  # noqa: F811
    """Make a plan (`plan new` with `new` too), pass the gate of the first stage with something to apply, apply its
    YAML, mark it applied at `applied_at` (a stage with nothing to apply is done in one advance)."""
    assert cli("plan", "new", "--namespaces", "shop", *new)[0] == 0
    for _ in range(20):
        stage = json.loads(cli("plan", "next", "--format", "json")[1])
        rc, out, _err = cli("plan", "advance")
        assert rc == 0
        if out.strip().endswith("ready"):
            break
    cli.cluster.apply(stage["apply_yaml"])
    assert cli("plan", "advance")[1].strip().endswith("applied")
    applied_then(applied_at)
    return stage


def applied_then(applied_at: float) -> None:
    """The applied stage recorded as applied at `applied_at` (a Prometheus filled from files holds no sample from
    after the test started)."""
    store = Store.open(None)  # MESHSTEP_DATABASE_URL, as the CLI opens it
    with Session(store.engine) as s:
        row = s.exec(select(Stage).where(Stage.status == "applied")).one()
        row.updated_at = datetime.fromtimestamp(applied_at, UTC)
        s.add(row)
        s.commit()
    store.close()


def test_a_5xx_jump_after_the_stage_fails_verification_with_before_and_after(cli, prometheus):  # noqa: F811
    applied = now_minute() - 1200
    url = prometheus([*_healthy(), Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 1.5, code="503",
                                        latency_ms=40, start=applied + 30)])
    stage = _to_applied(cli, applied)
    rc, out, err = cli("plan", "advance", "--prometheus", url)
    assert rc == 1, (out, err)
    assert f"stage {stage['order']} ({stage['title']}) is not verified yet" in err
    before = next(line for line in err.splitlines() if "before:" in line)
    after = next(line for line in err.splitlines() if "after:" in line)
    assert "success 100.00%" in before and "success 100.00%" not in after
    assert "✗ success rate fell" in err and "5xx after, 0 before" in err and "at most 1 allowed" in err
    assert "meshstep plan rollback" in err
    assert json.loads(cli("plan", "show", "--format", "json")[1])["stages"][stage["order"] - 1]["status"] == "applied"
    # A team that accepts 10 points of errors says so for this advance: then it is verified, figures shown.
    rc, out, err = cli("plan", "advance", "--prometheus", url, "--verify", "max_success_drop=10")
    assert rc == 0 and out.strip().endswith("verified") and "✓ no regression" in err and "before:" in err


def test_the_plan_s_own_thresholds_judge_each_verification_and_a_command_s_go_over_them(cli, prometheus):  # noqa: F811
    applied = now_minute() - 1200
    url = prometheus([*_healthy(), Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 1.5, code="503",
                                        latency_ms=40, start=applied + 30)])
    _to_applied(cli, applied, "--verify", "max_success_drop=10", "--verify", "window=5m")
    shown = cli("plan", "show")[1]
    assert "verification thresholds: window=5m, max_success_drop=10.0" in shown
    assert json.loads(cli("plan", "show", "--format", "json")[1])["verify"]["max_success_drop"] == 10.0
    # This advance asks for more than the plan: the 5xx jump fails it.
    rc, _out, err = cli("plan", "advance", "--prometheus", url, "--verify", "max_success_drop=1")
    assert rc == 1 and "✗ success rate fell" in err and "at most 1 allowed" in err
    # The plan's own thresholds, with nothing given: 10 points of errors are accepted, over a 5-minute window.
    rc, out, err = cli("plan", "advance", "--prometheus", url)
    assert rc == 0 and out.strip().endswith("verified") and "✓ no regression" in err, err
    before = next(line for line in err.splitlines() if "before:" in line)
    h1, m1, h2, m2 = map(int, re.search(r"(\d\d):(\d\d) UTC–(\d\d):(\d\d) UTC", before).groups())
    assert (h2 * 60 + m2 - h1 * 60 - m1) % 1440 == 5  # the plan's window, not the default 10 minutes
    assert cli("audit", "--verify")[0] == 0


def test_a_plan_s_thresholds_changed_outside_meshstep_break_the_audit(cli):  # noqa: F811
    assert cli("plan", "new", "--namespaces", "shop", "--verify", "min_mtls_share=99.9")[0] == 0
    store = Store.open(None)
    with Session(store.engine) as s:
        [plan] = s.exec(select(Plan)).all()
        plan.verify = {"min_mtls_share": 50.0}  # loosened, with no event to say so
        s.add(plan)
        s.commit()
    store.close()
    rc, out, err = cli("audit", "--verify")
    assert rc == 1 and "disagrees with the trail" in out + err and "verify" in out + err


def test_too_little_traffic_is_said_not_passed(cli, prometheus):  # noqa: F811
    applied = now_minute() - 1200
    url = prometheus([Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 0.05)])
    _to_applied(cli, applied)
    rc, _, err = cli("plan", "advance", "--prometheus", url)
    assert rc == 1 and "too little traffic to judge" in err and "at least 100 needed" in err
    rc, out, err = cli("plan", "advance", "--prometheus", url, "--override-reason", "quiet service, checked by hand")
    assert rc == 0 and out.strip().endswith("verified")


def test_a_healthy_stage_verifies_and_a_window_not_over_waits(cli, prometheus):  # noqa: F811
    url = prometheus(_healthy())
    _to_applied(cli, now_minute() - 300)  # the after-window (1m to settle, then 10m) is not over yet
    rc, _, err = cli("plan", "advance", "--prometheus", url)
    assert rc == 1 and "the window after the stage ends at" in err and "verify again after it" in err
    rc, out, err = cli("plan", "advance", "--prometheus", url, "--verify", "window=2m", "--verify", "settle=0s")
    assert rc == 0 and out.strip().endswith("verified") and "✓ no regression" in err


@pytest.mark.parametrize(("mode", "plain_after", "expected"), [
    ("STRICT", 0.0, "passed"),
    ("STRICT", 1.0, "regressed"),
])
def test_strict_stages_check_the_mutual_tls_share(tmp_path, mode, plain_after, expected):
    """After STRICT no plaintext should be served: the share of mutual TLS is part of the verification."""
    applied = now_minute() - 3600
    flows = [*_healthy(), Flow(None, ("shop", "orders"), ORDERS, 1.0, security="none", reporters=("destination",),
                               stop=applied)]
    if plain_after:
        flows.append(Flow(None, ("shop", "orders"), ORDERS, plain_after, security="none", code="201",
                          reporters=("destination",), start=applied))
    tel = MetricsFile(write_metrics(tmp_path / "m.om", flows, applied - 3600, now_minute()))
    result = verify(tel, ["shop"], applied, mode)
    assert result.status == expected, result.lines
    assert result.before.mtls_share < 100
    if expected == "regressed":
        assert any("were mutual TLS after STRICT" in line for line in result.lines)


def test_a_metrics_file_older_than_the_stage_says_it_cannot_compare(tmp_path):
    tel = MetricsFile(write_metrics(tmp_path / "m.om", _healthy(), now_minute() - 7200, now_minute() - 3600))
    result = verify(tel, ["shop"], now_minute() - 600)
    assert result.status == "unavailable" and "traffic not compared" in result.lines[0]
