"""A namespace switched to ambient mode is verified by who carries its traffic after the switch: ztunnel over HBONE
(mutual TLS), not the sidecars of pods never restarted, and no caller newly denied — on a real Prometheus holding
the series ztunnel, waypoints and sidecars export (promtool-backfilled, before and after the switch)."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from benchmarks.istio_metrics import Flow
from state.models import Stage
from state.store import Store
from telemetry.ambient import AmbientStage
from telemetry.evidence import Evidence
from telemetry.metrics_file import MetricsFile
from telemetry.prometheus import HTTPTransport, Prometheus
from telemetry.verification import Thresholds, verify
from tests.planner.test_plan import cli  # noqa: F401 (the fixture: the CLI on the cluster `demo` gives, a state db)
from tests.telemetry.conftest import now_minute, write_metrics
from tests.telemetry.test_verification import applied_then

FRONTEND, ORDERS = "frontend.shop.svc.cluster.local", "orders.shop.svc.cluster.local"
GATEWAY = ("istio-system", "istio-ingressgateway")
FRONTEND_POD, ORDERS_POD = "frontend-7d4b9c-x2x4q", "orders-5c8f6d-k9l2m"


def _sidecars(applied: float, orders_until: float | None = None) -> list[Flow]:
    """The namespace on sidecars until the switch (orders' pod until `orders_until`: never restarted)."""
    return [Flow(GATEWAY, ("shop", "frontend"), FRONTEND, 10, latency_ms=40, pod=FRONTEND_POD, stop=applied),
            Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 5, latency_ms=60, pod=ORDERS_POD,
                 stop=orders_until or applied)]


def _ztunnel(applied: float, orders: bool = True) -> list[Flow]:
    """After the switch, ztunnel carries the namespace's connections over HBONE (and the gateway still counts the
    requests it sends, as a source)."""
    flows = [Flow(GATEWAY, ("shop", "frontend"), FRONTEND, 10, latency_ms=40, reporters=("source",), start=applied),
             Flow(GATEWAY, ("shop", "frontend"), FRONTEND, 1, protocol="tcp", proxy="ztunnel",
                  reporters=("destination",), start=applied)]
    if orders:
        flows.append(Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 0.5, protocol="tcp", proxy="ztunnel",
                          start=applied))
    return flows


def _verified(url: str, applied: float, *steps: tuple[str, str], **verify_values):
    ev = Evidence(Prometheus(HTTPTransport(url)), verify_values=verify_values)
    return ev.verify(steps or [("ambient-mode", "shop")], datetime.fromtimestamp(applied, UTC))


def test_a_switch_that_moves_all_traffic_to_hbone_passes_with_the_share_shown(prometheus):
    applied = now_minute() - 1200
    result = _verified(prometheus([*_sidecars(applied), *_ztunnel(applied)]), applied)
    assert result.status == "passed", result.lines
    after = next(line for line in result.lines if line.strip().startswith("after:") and "HBONE" in line)
    assert "HBONE 100.0% of 900 connections ztunnel accepted" in after
    assert any("no pod of shop still served by a sidecar" in line for line in result.lines)
    # ztunnel counts connections, not requests: the ingress gateway's requests to frontend are compared on its own
    # count (reporter=source) in both windows; frontend's to orders, whose sender lost its sidecar too, are named.
    assert not any("success rate and p99 not compared" in line for line in result.lines), result.lines
    assert result.before.requests == pytest.approx(6000, rel=0.02) == result.after.caller_requests
    assert result.after.mtls_share is None  # a caller's count says nothing of mTLS: HBONE's share does
    assert any("compared on their caller's own count" in line and f"istio-system/istio-ingressgateway → {FRONTEND}"
               in line for line in result.lines), result.lines
    [left] = result.to_json()["not_compared"]
    assert left.startswith(f"shop/frontend → {ORDERS} (") and "connections after" in left, left
    shown = result.to_json()
    assert shown["after"]["hbone_share"] == 100.0 and shown["before"]["hbone_share"] is None


def test_plaintext_ztunnel_carries_after_the_switch_is_a_regression_below_the_threshold(prometheus):
    """Callers outside the mesh get through in plaintext (PERMISSIVE): fewer mTLS than before is a regression."""
    applied = now_minute() - 1200
    outside = Flow(None, ("shop", "frontend"), FRONTEND, 0.25, protocol="tcp", proxy="ztunnel", security="unknown",
                   reporters=("destination",), start=applied)
    url = prometheus([*_sidecars(applied), *_ztunnel(applied), outside])
    result = _verified(url, applied)
    assert result.status == "regressed", result.lines
    assert any("only 85.7% of the connections ztunnel accepted in shop were HBONE (mutual TLS)" in p
               for p in result.problems), result.problems
    # A team that knows of the plaintext callers says how much it accepts, as for the other thresholds.
    assert _verified(url, applied, min_hbone_share=80.0).status == "passed"


def test_pods_still_on_sidecars_after_the_switch_are_named_and_not_passed(prometheus):
    applied = now_minute() - 1200
    # frontend's pods were restarted into ambient; orders' were not: its sidecar still serves its requests.
    result = _verified(prometheus([*_sidecars(applied, orders_until=float("inf")), *_ztunnel(applied, False)]),
                       applied)
    assert result.status == "insufficient", result.lines
    assert result.blocks(None)
    said = "\n".join(result.lines)
    assert f"shop/orders (pod {ORDERS_POD}" in said and FRONTEND_POD not in said
    assert "kubectl rollout restart deployment -n shop" in said
    # Nothing broke (the sidecar still serves): not a regression, so a bake does not roll the switch back.
    assert result.status != "regressed" and not result.problems


def test_pods_restarted_after_the_first_window_are_judged_on_the_latest_one(prometheus):
    """orders' pod restarted 5 minutes after the switch (as the unfinished switch's lines ask), verified again 20
    minutes after it: the window right after the switch still has its sidecar, the latest window has ztunnel only.
    Judged on the first window alone, the switch would stay unfinished for good, however often it is verified."""
    applied = now_minute() - 1200
    restarted = applied + 300
    flows = [*_sidecars(applied, orders_until=restarted), *_ztunnel(applied, orders=False),
             Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 0.5, protocol="tcp", proxy="ztunnel",
                  start=restarted)]
    result = _verified(prometheus(flows), applied)
    assert result.status == "passed", result.lines
    assert any("the latest window" in line and "still served by sidecars in the first" in line
               for line in result.lines), result.lines
    assert ORDERS_POD not in "\n".join(result.lines)


def test_a_caller_ztunnel_denies_after_the_switch_is_a_regression(prometheus):
    applied = now_minute() - 1200
    flows = [*_sidecars(applied), *_ztunnel(applied),
             # legacy's billing job was allowed by orders' sidecar before; ztunnel denies it after.
             Flow(("legacy", "billing"), ("shop", "orders"), ORDERS, 0.5, pod=ORDERS_POD, stop=applied),
             Flow(("legacy", "billing"), ("shop", "orders"), ORDERS, 0.05, protocol="tcp", proxy="ztunnel",
                  flags="DENY", reporters=("destination",), start=applied),
             # a probe denied before (a 403 from the sidecar) and after (by ztunnel): no new denial.
             Flow(("test", "probe"), ("shop", "orders"), ORDERS, 0.1, code="403", pod=ORDERS_POD, stop=applied),
             Flow(("test", "probe"), ("shop", "orders"), ORDERS, 0.1, protocol="tcp", proxy="ztunnel",
                  flags="DENY", reporters=("destination",), start=applied)]
    result = _verified(prometheus(flows), applied)
    assert result.status == "regressed", result.lines
    [problem] = result.problems
    assert "legacy/billing → shop/orders" in problem and "30 connection(s) denied by ztunnel" in problem
    assert "test/probe" not in problem
    assert any("denied before and after: test/probe → shop/orders" in line for line in result.lines)


def test_too_quiet_a_namespace_is_not_passed_without_a_reason(prometheus):
    applied = now_minute() - 1200
    quiet = [Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 0.01, protocol="tcp", proxy="ztunnel",
                  start=applied)]
    result = _verified(prometheus([*_sidecars(applied), *quiet]), applied)
    assert result.status == "insufficient", result.lines
    assert any("too little traffic to judge" in line and "the after window has 6 connections" in line
               for line in result.lines), result.lines
    assert result.blocks(None) and not result.blocks("checked by hand: shop is idle at night")


def test_a_waypoint_stage_counts_the_requests_the_waypoint_reports(prometheus):
    """A namespace behind a waypoint: its requests are reported by the waypoint (reporter=waypoint), so the success
    rate is compared again, and a waypoint's 403s to a caller allowed before are a new denial."""
    applied = now_minute() - 1200
    via = [Flow(GATEWAY, ("shop", "frontend"), FRONTEND, 10, latency_ms=40, reporters=("waypoint",), start=applied),
           Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 4.5, latency_ms=60, reporters=("waypoint",),
                start=applied),
           Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 0.5, code="403", reporters=("waypoint",),
                start=applied)]
    result = _verified(prometheus([*_sidecars(applied), *_ztunnel(applied), *via]), applied,
                       ("waypoint", "shop"), ("ambient-mode", "shop"))
    assert result.status == "regressed", result.lines
    assert result.after.requests == pytest.approx(9000, rel=0.02)
    assert any("shop/frontend → shop/orders" in p and "403" in p for p in result.problems), result.problems


def _behind_waypoint(applied: float, failing: float = 0.0, waypoint: bool = True) -> list[Flow]:
    """After a waypoint-only stage: the pods keep their sidecars, which still count each request that reaches them;
    the waypoint (reporter=waypoint) counts every request sent to shop's services, `failing` of them failed by it
    with 503 before any reached a pod."""
    out = []
    for src, dst, host, rate in ((GATEWAY, ("shop", "frontend"), FRONTEND, 10),
                                 (("shop", "frontend"), ("shop", "orders"), ORDERS, 5)):
        pod = FRONTEND_POD if dst[1] == "frontend" else ORDERS_POD
        out.append(Flow(src, dst, host, rate * (1 - failing), latency_ms=40, pod=pod, start=applied))
        if waypoint:
            out += [Flow(src, dst, host, rate * (1 - failing), latency_ms=45, reporters=("waypoint",), start=applied),
                    Flow(src, dst, host, rate * failing, code="503", reporters=("waypoint",), start=applied)]
    return out


def test_a_waypoint_only_stage_is_judged_on_the_requests_the_waypoint_reports(prometheus):
    """The waypoint fails 1.5% of shop's requests: a fall of 1.5 points, past the 1-point threshold. The sidecars,
    still there, count only the requests that reached them: added to the waypoint's, they would halve the fall
    (0.76 points) and let it pass. No HBONE share is asked of a stage that switches nothing (ztunnel carries shop
    only after its switch)."""
    applied = now_minute() - 1200
    url = prometheus([*_sidecars(applied), *_behind_waypoint(applied, failing=0.015)])
    result = _verified(url, applied, ("waypoint", "shop"))
    assert result.status == "regressed", result.lines
    [problem] = result.problems
    assert "success rate fell 1.50 points (100.00% → 98.50%" in problem, problem
    assert result.after.requests == pytest.approx(9000, rel=0.02)  # each request once: the waypoint's count
    assert any("after:" in line and "reported by the waypoint" in line for line in result.lines), result.lines
    assert not any("HBONE (mutual TLS) after the switch" in p for p in result.problems)
    healthy = _verified(prometheus([*_sidecars(applied), *_behind_waypoint(applied)]), applied, ("waypoint", "shop"))
    assert healthy.status == "passed", healthy.lines


def test_a_waypoint_that_reports_no_request_is_not_passed(prometheus):
    """istio.io/use-waypoint applied, yet shop's sidecars serve every request and no waypoint reports one: the
    waypoint is not in the path (not programmed, or its Gateway not ready), so the stage is not done."""
    applied = now_minute() - 1200
    result = _verified(prometheus([*_sidecars(applied), *_behind_waypoint(applied, waypoint=False)]), applied,
                       ("waypoint", "shop"))
    assert result.status == "insufficient", result.lines
    assert any("no request reported by a waypoint in shop after the stage" in line for line in result.lines), \
        result.lines
    # ambient-policies deploys the waypoint without putting it in the path (the waypoint stage does): not asked.
    assert _verified(prometheus([*_sidecars(applied), *_behind_waypoint(applied, waypoint=False)]), applied,
                     ("ambient-policies", "shop")).status == "passed"


def test_calls_ztunnel_alone_counts_after_are_compared_on_their_caller_s_count_or_named(prometheus):
    """frontend's pod restarted into ambient (ztunnel counts its connections: L4, no requests, no response codes);
    orders' not yet: its sidecar still counts its requests, 5% of them 503 before and after alike. The ingress
    gateway counts the requests it sends to frontend itself (reporter=source), in both windows: compared on that
    count, like with like. A caller outside the mesh counted by frontend's sidecar before and by ztunnel alone after
    has no count of its own: named as not compared, with why, instead of read as a change in success."""
    applied = now_minute() - 1200
    failing = Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 0.25, code="503", pod=ORDERS_POD)
    outside = [Flow(None, ("shop", "frontend"), FRONTEND, 1, pod=FRONTEND_POD, reporters=("destination",),
                    stop=applied),
               Flow(None, ("shop", "frontend"), FRONTEND, 0.5, protocol="tcp", proxy="ztunnel",
                    reporters=("destination",), start=applied)]
    flows = [*_sidecars(applied, orders_until=float("inf")), *_ztunnel(applied, orders=False), failing, *outside]
    result = _verified(prometheus(flows), applied)
    assert not result.problems, result.problems
    assert result.status == "insufficient", result.lines  # orders' pod still on its sidecar: the switch not done
    # orders' calls as its sidecar counted them, the gateway's as it counted them, in both windows
    assert result.before.requests == pytest.approx(15.25 * 600, rel=0.02)
    assert result.after.requests == pytest.approx(15.25 * 600, rel=0.02)
    assert result.after.caller_requests == pytest.approx(10 * 600, rel=0.02)
    assert result.before.success_rate == pytest.approx(result.after.success_rate, abs=0.1)
    assert any("compared on their caller's own count" in line and f"istio-system/istio-ingressgateway → {FRONTEND}"
               in line for line in result.lines), result.lines
    [left] = result.to_json()["not_compared"]
    assert left.startswith(f"unknown/unknown → {FRONTEND} (") and "requests before, only" in left, left
    assert left in result.not_compared


def test_calls_a_waypoint_does_not_carry_are_compared_as_their_sidecar_counted_them(prometheus):
    """A waypoint in shop's path after the stage; the ingress gateway sends to frontend directly, not through it
    (Istio's default without istio.io/ingress-use-waypoint), so frontend's sidecar still counts those requests while
    the waypoint counts frontend's calls to orders, 2% of them 503 before and after. Taking the waypoint's requests
    alone as the after window read 99.3% → 98.0%, a regression; each call counted once, by the proxy that counted it
    at L7 in that window, nothing changed."""
    applied = now_minute() - 1200
    orders = (("shop", "frontend"), ("shop", "orders"), ORDERS)
    flows = [Flow(GATEWAY, ("shop", "frontend"), FRONTEND, 10, latency_ms=40, pod=FRONTEND_POD),
             Flow(*orders, 4.9, latency_ms=60, pod=ORDERS_POD), Flow(*orders, 0.1, code="503", pod=ORDERS_POD),
             Flow(*orders, 4.9, latency_ms=65, reporters=("waypoint",), start=applied),
             Flow(*orders, 0.1, code="503", reporters=("waypoint",), start=applied)]
    result = _verified(prometheus(flows), applied, ("waypoint", "shop"))
    assert result.status == "passed", result.lines
    assert result.after.requests == pytest.approx(15 * 600, rel=0.02)  # each request once
    assert result.after.waypoint_requests == pytest.approx(5 * 600, rel=0.02)  # frontend → orders, not frontend's
    after = next(line for line in result.lines if line.strip().startswith("after:"))
    assert "of them reported by the waypoint" in after, after


def test_connections_ztunnel_fails_to_open_after_the_switch_are_a_regression(prometheus):
    """ztunnel closes a connection with response_flags CONNECT when it could not reach the destination (istio/
    ztunnel src/proxy/metrics.rs: ResponseFlags::ConnectionFailure): orders unreachable over HBONE after the switch
    is a fall in ztunnel's connection success rate."""
    applied = now_minute() - 1200
    failing = Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 0.1, protocol="tcp", proxy="ztunnel",
                   flags="CONNECT", start=applied)
    result = _verified(prometheus([*_sidecars(applied), *_ztunnel(applied), failing]), applied)
    assert result.status == "regressed", result.lines
    [problem] = result.problems
    assert "ztunnel could not connect" in problem and "shop/frontend → shop/orders" in problem, problem
    assert "response_flags=CONNECT" in problem


def test_connections_that_never_reach_the_destination_count_against_the_share(prometheus):
    """A connection the caller's ztunnel could not open (reporter=source, CONNECT) never reached the destination's
    ztunnel, so it is in none of the connections that one accepted: the share failed is of every attempt. Here
    frontend's ztunnel fails 0.4/s to orders while the destination accepts 1.5/s (frontend's and orders'): 21% failed,
    where counting only the accepted ones read 27%, and a rate of failures above the accepted one read over 100%."""
    applied = now_minute() - 1200
    failing = Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 0.4, protocol="tcp", proxy="ztunnel",
                   flags="CONNECT", reporters=("source",), start=applied)
    result = _verified(prometheus([*_sidecars(applied), *_ztunnel(applied), failing]), applied)
    assert result.status == "regressed", result.lines
    [problem] = result.problems
    assert "could not connect 21." in problem, problem
    # Sidecars carried orders' connections before: no share of ztunnel's then, and none claimed (not 0.00%).
    assert "none measured before: ztunnel carried none of them" in problem, problem


def test_a_namespace_ztunnel_carried_before_is_judged_on_the_rise_of_its_own_share(prometheus):
    """shop already in ambient mode, a waypoint stage after: ztunnel counted both windows, so its share failed
    before is measured and compared (0.1/s of 2.1/s failing throughout: no rise; 0.2/s more after: 4.76% → 13.04%)."""
    applied = now_minute() - 1200
    ztunnel = {"protocol": "tcp", "proxy": "ztunnel", "reporters": ("destination",)}
    flows = [Flow(GATEWAY, ("shop", "frontend"), FRONTEND, 1, **ztunnel),
             Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 1, **ztunnel),
             Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 0.1, flags="CONNECT", **ztunnel)]
    assert _verified(prometheus(flows), applied, ("waypoint", "shop")).status == "passed"
    rising = Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 0.2, flags="CONNECT", start=applied, **ztunnel)
    result = _verified(prometheus([*flows, rising]), applied, ("waypoint", "shop"))
    assert result.status == "regressed", result.lines
    [problem] = result.problems
    assert "could not connect 8.28% more" in problem and "(4.76% → 13.04%" in problem, problem


def test_min_hbone_share_is_set_as_the_other_thresholds_are():
    assert Thresholds.values(["min-hbone-share=95"]) == {"min_hbone_share": 95.0}
    assert "min_hbone_share=99.0" in Thresholds().text()


def test_a_metrics_file_keeps_ztunnel_s_denials_too(tmp_path):
    """`--telemetry FILE` answers as Prometheus does: the connections ztunnel closed DENY are read from it."""
    applied = now_minute() - 1200
    flows = [*_sidecars(applied), *_ztunnel(applied),
             Flow(("legacy", "billing"), ("shop", "orders"), ORDERS, 0.05, protocol="tcp", proxy="ztunnel",
                  flags="DENY", reporters=("destination",), start=applied)]
    tel = MetricsFile(write_metrics(tmp_path / "m.om", flows, applied - 3600, now_minute()))
    result = verify(tel, ["shop"], applied, ambient=AmbientStage(("shop",), switched=True))
    assert result.status == "regressed" and "legacy/billing → shop/orders" in result.problems[0], result.lines


@pytest.fixture
def demo():
    """The cluster the CLI sees (tests.planner.test_plan's `cli`): the ambient fixture, whose `orders` namespace
    runs two sidecar pods (orders-v1, orders-v2) on a control plane under the ambient profile."""
    from tests.features.corpus import ambient

    return ambient()


def _status() -> str:
    """The status of the plan's stage, as the state database keeps it (MESHSTEP_DATABASE_URL, as the CLI opens it)."""
    store = Store.open(None)
    with Session(store.engine) as s:
        [status] = s.exec(select(Stage.status)).all()
    store.close()
    return status


def _switched(cli, applied: float) -> None:  # noqa: F811
    """`orders` switched to ambient by a plan's stage, applied (as the team applied its YAML) at `applied`."""
    assert cli("plan", "new", "--template", "custom")[0] == 0
    assert cli("plan", "add", "ambient-mode", "--scope", "orders")[0] == 0
    stage = json.loads(cli("plan", "next", "--format", "json")[1])
    # Its gate names orders' VirtualService and DestinationRule no waypoint serves (MST0706): gone past, audited.
    assert cli("plan", "advance", "--override-reason", "orders' routes move to a waypoint next")[0] == 0
    cli.cluster.apply(stage["apply_yaml"])
    assert cli("plan", "advance")[1].strip().endswith("applied")
    applied_then(applied)


def test_plan_advance_names_the_pods_left_on_sidecars_and_goes_past_too_little_traffic_only_with_a_reason(
        cli, prometheus):  # noqa: F811
    applied = now_minute() - 1200
    host = "orders.orders.svc.cluster.local"
    v1, v2 = "orders-v1-7a8b9c-zabcd", "orders-v2-0d1e2f-efghi"
    before = [Flow(GATEWAY, ("orders", "orders-v1"), host, 5, pod=v1, stop=applied),
              Flow(GATEWAY, ("orders", "orders-v2"), host, 5, pod=v2, stop=applied)]
    # orders-v1's pod came back without its sidecar, carried by ztunnel; orders-v2's was never restarted.
    half = [Flow(GATEWAY, ("orders", "orders-v1"), host, 1, protocol="tcp", proxy="ztunnel",
                 reporters=("destination",), start=applied),
            Flow(GATEWAY, ("orders", "orders-v2"), host, 5, pod=v2, start=applied)]
    quiet = [Flow(GATEWAY, ("orders", "orders-v1"), host, 0.01, protocol="tcp", proxy="ztunnel",
                  reporters=("destination",), start=applied)]
    halfway, silent = prometheus([*before, *half]), prometheus([*before, *quiet])
    _switched(cli, applied)
    rc, _out, err = cli("plan", "advance", "--prometheus", halfway)
    assert rc == 1 and "is not verified yet" in err
    assert f"orders/orders-v2 (pod {v2}" in err and v1 not in err and "kubectl rollout restart" in err
    assert "HBONE 100.0% of 600 connections ztunnel accepted" in err
    assert _status() == "applied"  # waiting for the restart, not rolled back
    rc, _out, err = cli("plan", "advance", "--prometheus", silent)
    assert rc == 1 and "too little traffic to judge" in err and "the after window has 6 connections" in err
    rc, out, err = cli("plan", "advance", "--prometheus", silent, "--override-reason", "orders is idle at night")
    assert rc == 0 and out.strip().endswith("verified"), (out, err)
    trail = cli("audit", "--export", "json")
    assert "orders is idle at night" in trail[1], trail
    assert cli("audit", "--verify")[0] == 0
