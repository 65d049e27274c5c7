"""The two telemetry sources answer alike, and a Prometheus that is slow, down or erroring is named in time."""
from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.request import urlopen

import pytest

from analysis.catalog import reads_traffic
from benchmarks.istio_metrics import Flow, free_port
from telemetry.edges import read_traffic
from telemetry.metrics_file import MetricsFile
from telemetry.prometheus import HTTPTransport, KubeProxyTransport, Prometheus
from telemetry.series import DURATION_BUCKET, TelemetryError, window_seconds
from telemetry.verification import Thresholds, p99
from tests.telemetry.conftest import now_minute, write_metrics

ORDERS = "orders.shop.svc.cluster.local"
FLOWS = [
    Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 4, latency_ms=40),
    Flow(("shop", "frontend"), ("shop", "orders"), ORDERS, 0.5, code="503", latency_ms=300),
    Flow(None, ("shop", "orders"), ORDERS, 0.25, security="none", reporters=("destination",)),
    Flow(("payments", "payments-api"), None, "api.stripe.com", 0.1, protocol="tcp", security="unknown",
         reporters=("source",)),
    Flow(("shop", "frontend"), None, "api.rates.example", 0.2, service_name="PassthroughCluster",
         reporters=("source",)),
]


def _edges(traffic):
    return {(str(e.source), e.service, e.protocol, e.security, e.reporter, e.egress): (e.count, e.server_errors)
            for e in traffic.edges}


def test_prometheus_and_the_file_of_the_same_series_agree(prometheus, tmp_path):
    url = prometheus(FLOWS)
    end = now_minute() - 60  # the last sample both hold
    served = read_traffic(Prometheus(HTTPTransport(url)), 3600, end)
    # The same series, written again (the fixture wrote them to its own directory), read by prometheus_client.
    filed = read_traffic(MetricsFile(write_metrics(tmp_path / "same.om", FLOWS, end - 3 * 3600, end)), 3600, end)
    a, b = _edges(served), _edges(filed)
    assert a.keys() == b.keys()
    for key in a:  # increase() extrapolates at the window's edges: within a sample interval of the exact count
        assert a[key][0] == pytest.approx(b[key][0], rel=0.02), key
        assert a[key][1] == pytest.approx(b[key][1], rel=0.02), key
    # Each call is counted once: the destination's report where there is one, the caller's for hosts outside.
    assert set(a) == {
        ("shop/frontend", ORDERS, "http", "mutual_tls", "destination", ""),
        ("unknown", ORDERS, "http", "none", "destination", ""),
        ("payments/payments-api", "api.stripe.com", "tcp", "unknown", "source", "ServiceEntry"),
        ("shop/frontend", "api.rates.example", "http", "unknown", "source", "PassthroughCluster"),
    }
    assert b[("shop/frontend", ORDERS, "http", "mutual_tls", "destination", "")] == (4.5 * 3600, 0.5 * 3600)


def test_p99_is_what_prometheus_histogram_quantile_says(prometheus):
    url = prometheus(FLOWS)
    prom = Prometheus(HTTPTransport(url))
    end = now_minute() - 60
    ours = p99(prom.increase(DURATION_BUCKET, ("le",), end - 600, end, {"reporter": "destination"}))
    theirs = prom.query('histogram_quantile(0.99, sum by (le) (increase(istio_request_duration_milliseconds_bucket'
                        '{reporter="destination"}[10m])))', end)
    assert ours == pytest.approx(float(theirs[0]["value"][1]), rel=1e-6)
    assert 250 < ours <= 500  # a tenth of the requests take 300 ms: the 99th percentile is in that bucket


def test_a_query_prometheus_refuses_is_its_own_error_message(prometheus):
    prom = Prometheus(HTTPTransport(prometheus(FLOWS)))
    with pytest.raises(TelemetryError, match=r"answered HTTP 400: .*parse error"):
        prom.query("sum(", time.time())


def test_a_silent_prometheus_is_named_within_the_timeout():
    with socket.socket() as listener:  # accepts the connection and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(TelemetryError, match=r"did not answer within 1 s"):
            read_traffic(Prometheus(HTTPTransport(url, timeout=1)), 3600)
        assert time.monotonic() - started < 5


def test_a_prometheus_that_is_down_or_not_prometheus():
    with pytest.raises(TelemetryError, match="cannot be reached"):
        Prometheus(HTTPTransport(f"http://127.0.0.1:{free_port()}", timeout=2)).query("up", time.time())
    with pytest.raises(TelemetryError, match="give Prometheus's URL"):
        HTTPTransport("prometheus:9090")


def test_through_the_kubernetes_api_service_proxy(prometheus):
    """A live cluster's addon is reached as kubectl would: /api/v1/namespaces/NS/services/NAME:PORT/proxy/…, with
    the kubernetes client's credentials; here a loopback API server that proxies as the real one does."""
    from kubernetes import client

    url = prometheus(FLOWS)
    seen: list[str] = []

    class APIServer(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            seen.append(self.headers.get("Authorization", ""))
            prefix = "/api/v1/namespaces/istio-system/services/prometheus:9090/proxy"
            if not self.path.startswith(prefix):
                self.send_error(404)
                return
            with urlopen(url + self.path[len(prefix):]) as r:
                body = r.read()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), APIServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = client.Configuration(host=f"http://127.0.0.1:{server.server_port}",
                                   api_key={"authorization": "test-token"}, api_key_prefix={"authorization": "Bearer"})
        tel = Prometheus(KubeProxyTransport(client.ApiClient(cfg), "istio-system", "prometheus", 9090))
        traffic = read_traffic(tel, 3600)
        assert any(e.service == "api.stripe.com" for e in traffic.edges)
        assert seen and seen[0] == "Bearer test-token"
        assert "through the Kubernetes API's service proxy" in traffic.window_text
    finally:
        server.shutdown()


def test_a_file_that_is_not_metrics_names_itself(tmp_path):
    bad = tmp_path / "bad.om"
    bad.write_text("istio_requests_total{reporter=destination} one\n")
    with pytest.raises(TelemetryError, match=f"--telemetry {bad}: not OpenMetrics"):
        MetricsFile(bad)
    with pytest.raises(TelemetryError, match="No such file"):
        MetricsFile(tmp_path / "missing.om")


def test_windows_and_thresholds_are_parsed_or_refused_with_the_fix():
    assert window_seconds("90s") == 90 and window_seconds("7d") == 7 * 86400
    with pytest.raises(Exception, match="e.g. 10m, 1h or 7d"):
        window_seconds("1 hour")
    values = Thresholds.values(["max_success_drop=0.5", "window=5m", "min-requests=10"])
    assert values == {"max_success_drop": 0.5, "window": 300, "min_requests": 10}
    t = Thresholds.from_json(values)
    assert (t.max_success_drop, t.window, t.min_requests, t.settle) == (0.5, 300, 10, Thresholds().settle)
    assert t.text(values) == "window=5m, min_requests=10, max_success_drop=0.5"
    with pytest.raises(Exception, match="key one of window, settle"):
        Thresholds.values(["speed=1"])


def test_a_scrape_without_timestamps_is_read_as_counts_since_each_proxy_started(tmp_path):
    """`curl pod:15020/stats/prometheus` output: Prometheus text, no timestamps, no window to speak of."""
    scrape = tmp_path / "scrape.prom"
    scrape.write_text('# TYPE istio_requests_total counter\n'
                      'istio_requests_total{reporter="destination",source_workload="unknown",'
                      'source_workload_namespace="unknown",destination_workload="orders",'
                      'destination_workload_namespace="shop",destination_service="orders.shop.svc.cluster.local",'
                      'destination_service_name="orders",connection_security_policy="none",response_code="200"} 42\n')
    traffic = read_traffic(MetricsFile(scrape), 3600)
    [edge] = traffic.edges
    assert (str(edge.source), edge.security, edge.count) == ("unknown", "none", 42)
    assert "counts since each proxy started" in traffic.window_text


def test_a_live_clusters_prometheus_addon_is_found_and_a_failing_one_is_said_not_fatal(demo_inventory):
    from telemetry.evidence import Evidence, prometheus_addon

    assert prometheus_addon(demo_inventory) == ("istio-system", "prometheus", 9090)
    # Found in the cluster (not named on the command line) and down: the command goes on, saying why.
    found = Evidence(Prometheus(HTTPTransport(f"http://127.0.0.1:{free_port()}", timeout=2)), explicit=False)
    assert found.traffic(reads_traffic(["mtls-strict"])) is None and "cannot be reached" in found.missing
    named = Evidence(Prometheus(HTTPTransport(f"http://127.0.0.1:{free_port()}", timeout=2)))
    with pytest.raises(TelemetryError, match="cannot be reached"):
        named.traffic(reads_traffic(["mtls-strict"]))
    # no gate of that stage reads traffic: nothing asked
    assert named.traffic(reads_traffic(["request-routing"])) is None
