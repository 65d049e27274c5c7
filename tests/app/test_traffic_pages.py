"""Telemetry in the app: chosen on the Settings page (refused with the reason when it cannot be read), shown as the
observed traffic of the component or pod the Components page explains."""
from __future__ import annotations

from benchmarks.istio_metrics import free_port
from tests.app.conftest import open_page


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
