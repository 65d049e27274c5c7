"""Telemetry in the app: chosen on the Settings page (refused with the reason when it cannot be read), shown as the
observed traffic of the component or pod the Components page explains."""
from __future__ import annotations

import json

import msgspec
import pandas as pd
import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from app import safe
from benchmarks.istio_metrics import Flow, free_port, openmetrics
from state.store import Store
from telemetry.edges import mtls_share_over_time
from telemetry.evidence import evidence
from telemetry.metrics_file import MetricsFile
from telemetry.prometheus import HTTPTransport, Prometheus
from telemetry.series import DEMO_METRICS
from telemetry.verification import Thresholds, verify
from tests.app.conftest import APP, open_page, sign_in
from tests.telemetry.conftest import now_minute, prometheus  # noqa: F401 (the fixture: a real Prometheus)


def _use(app, value: str) -> None:
    next(t for t in app.text_input if t.label == "Prometheus URL or metrics file").input(value).run()
    next(b for b in app.button if b.label == "Use this telemetry").click().run()


def test_settings_refuses_a_prometheus_that_is_down_and_keeps_none(app, monkeypatch):
    monkeypatch.delenv("MESHSTEP_PROMETHEUS_URL", raising=False)
    open_page(app, "settings")
    _use(app, f"http://127.0.0.1:{free_port()}")
    assert not app.exception
    [error] = [e.value for e in app.error]
    assert "cannot be reached" in error
    assert app.session_state["telemetry"] is None


def test_components_shows_the_observed_edges_of_the_pod_it_explains(app, demo_inventory):
    open_page(app, "settings")
    _use(app, "demo")
    assert not app.exception and not app.error and app.session_state["telemetry"] == "demo"
    open_page(app, "components")
    pod = next(p for p in demo_inventory.pods if p.namespace == "shop" and p.workload_name == "orders")
    app.selectbox[0].set_value(f"{pod.namespace}/{pod.name}").run()
    assert not app.exception and not app.error
    assert any(m.value.startswith("#### Observed traffic") for m in app.markdown)
    # (the graph's connections come first, as a table of their own)
    edges = next(d.value for d in app.dataframe if "security" in d.value.columns)
    plain = edges[edges["security"] == "PLAINTEXT"]
    assert list(plain["source"]) == ["unknown (outside the mesh)"]
    assert "shop/frontend" in set(edges[edges["security"] == "mTLS"]["source"])


def _charts(app) -> list[tuple[dict, pd.DataFrame]]:
    """Each vega-lite chart on the page: its spec and the data it draws."""
    return [(json.loads(c.proto.spec), convert_arrow_bytes_to_pandas_df(c.proto.data.data))
            for c in app.get("vega_lite_chart")]


@pytest.fixture
def no_telemetry(monkeypatch):
    monkeypatch.delenv("MESHSTEP_PROMETHEUS_URL", raising=False)
    monkeypatch.delenv("MESHSTEP_TELEMETRY", raising=False)


def test_overview_says_plainly_that_no_telemetry_is_set(no_telemetry, app):
    assert any(c.value.startswith("No telemetry set") and "Settings page" in c.value for c in app.caption)
    assert not any(m.label == "Requests in mutual TLS" for m in app.metric)


def test_overview_draws_the_mtls_share_of_the_demo_telemetry_step_by_step(app):
    open_page(app, "settings")
    _use(app, "demo")
    open_page(app, "overview")
    assert not app.error
    tel = MetricsFile(DEMO_METRICS)
    expected = mtls_share_over_time(tel)
    assert len(expected) == 5  # the demo file: six samples ten minutes apart, so five steps
    [(spec, frame)] = [(s, f) for s, f in _charts(app) if "mTLS share" in f.columns]
    assert spec["encoding"]["y"]["field"] == "mTLS share"
    assert list(frame["mTLS share"]) == pytest.approx([p.share / 100 for p in expected])
    assert [t.timestamp() for t in frame["at"].dt.tz_localize("UTC")] == [p.at for p in expected]
    # legacy-billing calls orders in plaintext, everything else is mutual TLS: neither all nor nothing
    assert 0.9 < frame["mTLS share"].iloc[-1] < 1


def test_the_telemetry_meshstep_ui_was_given_is_each_session_s_first(monkeypatch, db_url):
    monkeypatch.setenv("MESHSTEP_TELEMETRY", "demo")  # `meshstep ui --telemetry demo`
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception and not at.error
    assert at.session_state["telemetry"] == "demo"
    assert any("in mutual TLS in the step to 2026-02-20 12:00 UTC" in c.value for c in at.caption)


def _stage_with(store: Store, verification: dict) -> int:
    """The demo's plan, its second stage recorded as verified with this verification (as moves.advance keeps
    it): the page shows what the store holds."""
    plan = store.list_plans("demo")[0]
    stage = plan.stages[1]
    store.transition_stage(stage.id, "verified", "alice", "exit check passed", stage.version,
                           record=msgspec.structs.replace(stage.record, verification=verification))
    return stage.order


def test_plan_page_charts_a_stage_before_and_after_from_its_verification(app, store):
    sign_in(app)
    open_page(app, "plan")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    assert any(c.value.startswith("No stage compared yet") for c in app.caption)
    # Applied 30 minutes before the demo file's last sample: 20-minute windows before and after fit in it.
    tel = MetricsFile(DEMO_METRICS)
    v = verify(tel, ["shop"], tel.now() - 1800, thresholds=Thresholds(window=1200))
    assert v.status == "passed" and v.before.requests > 0
    order = _stage_with(store, v.to_json())
    open_page(app, "plan")
    assert not app.error, [e.value for e in app.error]
    assert any(m.value.startswith(f"**Stage {order}:") and "no regression" in m.value for m in app.markdown)
    charts = {spec["title"]["text"]: frame for spec, frame in _charts(app) if "title" in spec}
    assert set(charts) == {"Success rate", "p99 latency", "mTLS share"}
    for title, figure in (("Success rate", "success_rate"), ("p99 latency", "p99_ms"), ("mTLS share", "mtls_share")):
        frame = charts[title]
        assert list(frame["window"]) == ["before", "after"]
        assert list(frame[title]) == pytest.approx([getattr(v.before, figure), getattr(v.after, figure)])
    assert charts["mTLS share"]["mTLS share"].iloc[0] < 100  # the demo's plaintext caller of orders


def test_plan_page_says_when_traffic_was_not_compared(app, store):
    sign_in(app)
    open_page(app, "plan")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    # A stage applied now, judged against the demo file (which ends in February): nothing to compare.
    from datetime import UTC, datetime

    v = evidence(None, "demo", None).verify([("mtls-strict", "shop")], datetime.now(UTC))
    assert v.status == "unavailable"
    order = _stage_with(store, v.to_json())
    open_page(app, "plan")
    assert any(m.value.startswith(f"**Stage {order}:") and "not compared" in m.value for m in app.markdown)
    [info] = [i.value for i in app.info if i.value.startswith("Traffic not compared")]
    assert "metrics file" in info and "ends at" in info
    assert not [s for s, _ in _charts(app) if "title" in s]


def test_plan_page_says_when_there_was_too_little_traffic(app, store):
    sign_in(app)
    open_page(app, "plan")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    tel = MetricsFile(DEMO_METRICS)
    v = verify(tel, ["shop"], tel.now() - 1800, thresholds=Thresholds(window=1200, min_requests=10**9))
    assert v.status == "insufficient"
    order = _stage_with(store, v.to_json())
    open_page(app, "plan")
    assert any(m.value.startswith(f"**Stage {order}:") and "too little traffic" in m.value for m in app.markdown)
    assert any("too little traffic to judge" in w.value for w in app.warning)
    assert len([s for s, _ in _charts(app) if "title" in s]) == 3  # the figures are still shown, not judged


def test_plan_page_lists_each_threshold_a_regressed_stage_crossed(app, store):
    sign_in(app)
    open_page(app, "plan")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    # STRICT in shop, and the demo's plaintext caller of orders still there: 99.0% in mutual TLS, 99.5% expected.
    tel = MetricsFile(DEMO_METRICS)
    v = verify(tel, ["shop"], tel.now() - 1800, "STRICT", Thresholds(window=1200, min_mtls_share=99.5))
    assert v.status == "regressed" and len(v.problems) == 1
    order = _stage_with(store, v.to_json())
    open_page(app, "plan")
    assert any(m.value.startswith(f"**Stage {order}:") and "regressed" in m.value for m in app.markdown)
    # the verdict's own list of what it found, not its text read back
    assert [e.value for e in app.error] == [f"- {v.problems[0]}"]
    assert v.problems[0].startswith("only 99.0% of requests were mutual TLS after STRICT")


ORDERS = "orders.shop.svc.cluster.local"


def _mesh_then_plaintext(since: float) -> list[Flow]:
    """frontend → orders in mutual TLS throughout; a caller without a sidecar joins in plaintext at `since`, at a
    quarter of the requests."""
    return [Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 3),
            Flow(None, ("shop", "orders"), ORDERS, 1, security="none", reporters=("destination",), start=since)]


def test_the_mtls_share_over_time_from_a_real_prometheus(prometheus, no_telemetry, app):  # noqa: F811
    since = now_minute() - 60 - 3600  # an hour before the last sample
    url = prometheus(_mesh_then_plaintext(since))
    shares = mtls_share_over_time(Prometheus(HTTPTransport(url)))
    assert len(shares) >= 12  # three hours of samples, ten-minute steps, six hours asked for
    before = [p.share for p in shares if p.at <= since]
    after = [p.share for p in shares if p.at >= since + 600]
    assert before and after
    assert before == pytest.approx([100.0] * len(before))
    assert after == pytest.approx([75.0] * len(after), abs=1.0)
    # The Overview, given that Prometheus on the Settings page, draws those points.
    open_page(app, "settings")
    _use(app, url)
    open_page(app, "overview")
    [frame] = [f for _, f in _charts(app) if "mTLS share" in f.columns]
    shown = list(frame["mTLS share"])
    assert len(shown) == len(shares)
    assert shown == pytest.approx([p.share / 100 for p in mtls_share_over_time(Prometheus(HTTPTransport(url)))],
                                  abs=0.01)


def test_one_reading_is_a_figure_not_a_line(tmp_path, no_telemetry, app):
    end = now_minute()
    one = tmp_path / "one.om"  # one sample per series: a single scrape
    one.write_text("\n".join(line for line in openmetrics(_mesh_then_plaintext(0), end - 60, end)
                             if not line.startswith("istio_request_duration")) + "\n")
    shares = mtls_share_over_time(MetricsFile(one))
    assert [round(p.share) for p in shares] == [75]
    open_page(app, "settings")
    _use(app, str(one))
    open_page(app, "overview")
    assert [m.value for m in app.metric if m.label == "Requests in mutual TLS"] == ["75.0%"]
    assert any(c.value.startswith("One reading only") for c in app.caption)
    assert not [f for _, f in _charts(app) if "mTLS share" in f.columns]


def test_plan_page_charts_the_hbone_share_of_an_ambient_switch_and_names_the_pods_left_on_sidecars(app, store,
                                                                                                 tmp_path):
    from telemetry.ambient import AmbientStage
    from tests.telemetry.conftest import write_metrics
    from tests.telemetry.test_hbone import ORDERS_POD, _sidecars, _ztunnel

    sign_in(app)
    open_page(app, "plan")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    applied = now_minute() - 1200
    flows = [*_sidecars(applied, orders_until=float("inf")), *_ztunnel(applied, orders=False)]
    tel = MetricsFile(write_metrics(tmp_path / "m.om", flows, applied - 3600, now_minute()))
    v = verify(tel, ["shop"], applied, ambient=AmbientStage(("shop",), switched=True))
    assert v.status == "insufficient"
    order = _stage_with(store, v.to_json())
    open_page(app, "plan")
    assert not app.error, [e.value for e in app.error]
    assert any(m.value.startswith(f"**Stage {order}:") and "pods still on sidecars" in m.value for m in app.markdown)
    charts = {spec["title"]["text"]: frame for spec, frame in _charts(app) if "title" in spec}
    assert set(charts) == {"Success rate", "p99 latency", "mTLS share", "HBONE share"}
    # before the switch ztunnel carried nothing (no share to draw); after, all it accepted was HBONE
    assert list(charts["HBONE share"]["window"]) == ["after"]
    assert list(charts["HBONE share"]["HBONE share"]) == [100.0]
    # (the page's other warnings are the demo's analysis findings)
    [waiting] = [w.value for w in app.warning if "still served by sidecars" in w.value]
    assert ORDERS_POD in waiting and "shop/orders" in waiting


def test_plan_page_lists_the_calls_a_verification_could_not_compare_and_why(app, store, prometheus):  # noqa: F811
    """A namespace switched to ambient: callers outside the mesh were counted by frontend's sidecar before and by
    ztunnel alone after, and report nothing themselves; the page names each such call with its counts, its names
    (as telemetry gave them) shown literally."""
    from telemetry.ambient import AmbientStage
    from tests.telemetry.test_hbone import FRONTEND, FRONTEND_POD, _sidecars, _ztunnel

    sign_in(app)
    open_page(app, "plan")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    applied = now_minute() - 1200
    outside = [flow for caller in (("batch", "nightly"), ("batch", "**all**_[x](y)")) for flow in (
        Flow(caller, ("shop", "frontend"), FRONTEND, 1, pod=FRONTEND_POD, reporters=("destination",), stop=applied),
        Flow(caller, ("shop", "frontend"), FRONTEND, 0.5, protocol="tcp", proxy="ztunnel",
             reporters=("destination",), start=applied))]
    tel = Prometheus(HTTPTransport(prometheus([*_sidecars(applied), *_ztunnel(applied), *outside])))
    v = verify(tel, ["shop"], applied, ambient=AmbientStage(("shop",), switched=True))
    assert len(v.not_compared) == 3, v.not_compared  # the two outside callers, and frontend's calls to orders
    order = _stage_with(store, v.to_json())
    open_page(app, "plan")
    assert any(m.value.startswith(f"**Stage {order}:") for m in app.markdown)
    [info] = [i.value for i in app.info if i.value.startswith("Not compared")]
    assert "ztunnel alone" in info
    for call in v.not_compared:
        assert f"- {safe.md(call)}" in info.splitlines(), info
    assert f"batch/nightly → {FRONTEND} (" in info and "connections after)" in info
    assert "**all**" not in info and "[x](y)" not in info  # the hostile name shown literally, not as Markdown
