"""Every page of the app on the demo cluster, through streamlit's AppTest (the script runs in this process; no
browser): what each page shows is checked against the inventory and the store, and every change it makes is
checked in the store and in the audit trail."""
from __future__ import annotations

import pytest

from features.base import registry
from planner.inventory import Inventory
from state import audit
from state.store import Store
from tests.app.conftest import open_page, sign_in


def _errors(at) -> list[str]:
    return [e.value for e in at.error]


def test_overview_metrics_are_the_inventory_s(app, demo_inventory: Inventory):
    report = demo_inventory.report()
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Istio version"] == report["istio"]["version"]
    assert metrics["Pods in the mesh"] == f"{report['counts']['pods_in_mesh']} / {report['counts']['pods']}"
    meshed = sum(r["pods_with_sidecar"] > 0 for r in report["namespaces"])  # the demo has no ambient pods
    assert metrics["Namespaces in the mesh"] == f"{meshed} / {len(report['namespaces'])}"
    observed = [o for f in registry().values() for o in f.detect(demo_inventory)]
    assert metrics["Features observed"] == str(len(observed))
    assert app.title[0].value == f"Cluster {report['source']}"
    assert not _errors(app)


def test_overview_records_one_reading_not_one_per_visit(app, store: Store, demo_inventory: Inventory):
    for _ in range(3):
        open_page(app, "overview")
    history = store.inventory_history("demo")
    assert len(history) == 1 and history[0].pods_total == len(demo_inventory.pods)
    assert [e.action for e in store.audit_events()].count("inventory.record") == 1


def _tab(at, title: str):
    """Open a tab of the Inventory (only the open one is drawn) and return its table."""
    at.session_state["inventory_tab"] = title
    at.run()
    assert not at.exception and len(at.dataframe) == 1
    return at.dataframe[0].value


def test_inventory_tables(app, demo_inventory: Inventory):
    open_page(app, "inventory")
    assert not _errors(app)
    assert [t.label for t in app.tabs] == ["Namespaces", "Workloads", "Pods", "Services"]
    assert sorted(_tab(app, "Namespaces")["namespace"]) == demo_inventory.namespace_names()
    assert len(_tab(app, "Workloads")) == len(demo_inventory.workloads)
    assert len(_tab(app, "Services")) == len(demo_inventory.services)
    pods = _tab(app, "Pods")
    assert len(pods) == len(demo_inventory.pods)
    assert int(pods["in mesh"].sum()) == demo_inventory.report()["counts"]["pods_in_mesh"]

    app.radio[0].set_value("in the mesh").run()
    pods = app.dataframe[0].value
    assert pods["in mesh"].all() and len(pods) == demo_inventory.report()["counts"]["pods_in_mesh"]
    app.multiselect[0].set_value(["shop"]).run()
    assert set(app.dataframe[0].value["namespace"]) == {"shop"}


def test_components_explains_istiod_and_a_pod(app, demo_inventory: Inventory):
    open_page(app, "components")
    assert not _errors(app)
    assert app.get("graphviz_chart")
    text = "\n".join(m.value for m in app.markdown)
    assert "istiod" in text and "How to debug it" in text
    pod = next(p for p in demo_inventory.pods if p.namespace == "legacy")
    app.selectbox[0].set_value(f"{pod.namespace}/{pod.name}").run()
    assert not app.exception and not _errors(app)
    assert pod.name in "\n".join(m.value for m in app.markdown)


def test_plan_is_created_and_a_stage_walked(app, store: Store):
    sign_in(app)
    open_page(app, "plan")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    assert not app.exception and not _errors(app)
    plan = store.list_plans("demo")[0]
    assert plan.created_by == "alice" and plan.template == "routing-first"
    first = next(s for s in plan.stages if s.status != "done")
    assert app.header[0].value == f"Stage {first.order}: {first.title}"

    # The first stage verifies the install: nothing to apply, and the demo's install is healthy, so its gate and
    # its exit check pass on the cluster as it is: one click, not four.
    app.button(key="FormSubmitter:advance-" + app.button[0].label).click().run()
    assert not app.exception and not _errors(app), _errors(app)
    assert f"Stage {first.order} is now **done**." in [s.value for s in app.success]
    stages = {s.order: s for s in store.list_plans("demo")[0].stages}
    assert stages[first.order].status == "done" and stages[first.order].updated_by == "alice"
    moves = [e for e in store.audit_events() if e.action == "stage.status"]
    assert [e.after["status"] for e in moves] == ["done"]
    assert {e.actor for e in moves} == {"alice"}
    assert app.header[0].value != f"Stage {first.order}: {first.title}"  # the next stage is current
    # The next stage has YAML: it is shown as a diff against the cluster, created objects told from modified ones.
    assert any("0 created, 1 modified" in c.value for c in app.caption), [c.value for c in app.caption]


def test_a_stage_is_rehearsed_on_the_overlay(app, store: Store):
    sign_in(app)
    open_page(app, "plan")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    app.toggle[0].set_value(True).run()
    for expected in ("done", "ready", "applied", "verified", "done"):  # the install check, then legacy's injection
        app.button(key="FormSubmitter:advance-" + app.button[0].label).click().run()
        assert not app.exception and not _errors(app), _errors(app)
        assert any(f"is now **{expected}** (rehearsal)." in s.value for s in app.success)
    plan = store.list_plans("demo")[0]
    assert plan.mode == "rehearsal" and app.toggle[0].disabled
    assert [s.status for s in plan.stages[:2]] == ["done", "done"]
    moves = [e for e in store.audit_events() if e.target.startswith("stage:")]
    assert {e.action for e in moves} == {"stage.rehearsal"} and all(e.reason.startswith("rehearsal: ") for e in moves)
    # a rehearsal moves no flag: legacy's injection is recorded nowhere
    assert ("sidecar-injection", "legacy") not in {(f.feature, f.scope) for f in store.list_flags("demo")}


def test_changes_need_a_name(app, store: Store):
    open_page(app, "plan")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    assert any("Enter your name in the sidebar" in w.value for w in app.warning)
    assert store.list_plans("demo") == []


def test_flag_set_on_the_features_page_is_stored_and_audited(app, store: Store):
    sign_in(app, "bob")
    open_page(app, "features")
    feature = app.selectbox[0]
    feature.set_value("access-logging").run()
    app.selectbox[1].set_value("shop").run()  # scope
    # Widgets in a form take their value when the form is submitted: fill it in and submit in one run.
    next(t for t in app.text_input if t.label == "Reason").input("we want to see failed calls")
    app.button(key="FormSubmitter:flag-Set flag").click().run()
    assert not app.exception and not _errors(app), _errors(app)
    assert any("access-logging in shop" in s.value for s in app.success)

    flag = next(f for f in store.list_flags("demo") if f.feature == "access-logging")
    assert (flag.scope, flag.state, flag.changed_by, flag.reason) == ("shop", "on", "bob",
                                                                       "we want to see failed calls")
    event = store.audit_events()[-1]
    assert (event.action, event.actor, event.target) == ("flag.set", "bob", "flag:demo/access-logging/shop")
    matrix = app.dataframe[0].value
    assert "recorded on" in matrix.set_index("feature").loc["access-logging", "shop"]


def test_flag_without_a_reason_is_refused(app, store: Store):
    sign_in(app)
    open_page(app, "features")
    app.button(key="FormSubmitter:flag-Set flag").click().run()
    assert any("Give a reason" in e for e in _errors(app))
    assert store.list_flags("demo") == []


def test_render_yaml(app):
    open_page(app, "features")
    app.selectbox[0].set_value("mtls-strict").run()
    app.selectbox[1].set_value("payments").run()  # every pod there has its sidecar: the gate passes
    app.button(key="FormSubmitter:flag-Render YAML").click().run()
    assert not app.exception
    assert any("kind: PeerAuthentication" in c.value and "STRICT" in c.value for c in app.code)


def test_render_yaml_is_refused_behind_a_failing_gate_as_on_the_command_line(app):
    open_page(app, "features")
    app.selectbox[0].set_value("mtls-strict").run()
    app.selectbox[1].set_value("shop").run()  # catalog's pod predates injection: STRICT would cut it off
    app.button(key="FormSubmitter:flag-Render YAML").click().run()
    assert not app.exception
    errors = _errors(app)
    assert any(e.startswith("REFUSED") for e in errors) and any("MST0401" in e for e in errors)
    # the YAML it would apply is shown, under the REFUSED heading, with no download button
    assert any("kind: PeerAuthentication" in c.value for c in app.code)
    assert any("REFUSED" in h.value for h in app.subheader)
    assert not app.get("download_button")


def test_audit_page_verifies_the_chain(app, store: Store):
    store.set_flag("demo", "metrics", "mesh", {}, "on", "carol", "seen on in the cluster")
    open_page(app, "audit")
    assert not _errors(app)
    trail = app.dataframe[0].value
    assert list(trail["seq"]) == sorted((e.seq for e in store.audit_events()), reverse=True)
    assert "carol" in set(trail["actor"])
    app.button[0].click().run()  # Verify the chain
    assert audit.verify(store) is None
    assert any(s.value.startswith("The audit chain is intact") for s in app.success)


def test_audit_page_reports_a_broken_chain(app, store: Store):
    store.set_flag("demo", "metrics", "mesh", {}, "on", "carol", "seen")
    with store.engine.begin() as conn:  # someone edits the trail behind meshstep's back
        conn.exec_driver_sql("UPDATE audit_events SET actor = 'mallory' WHERE seq = 1")
    open_page(app, "audit")
    app.button[0].click().run()
    assert any("The audit chain is broken" in e for e in _errors(app))


def _text_input(app, label: str):
    return next(t for t in app.text_input if t.label == label)


@pytest.mark.parametrize("bad", ["file", "context"])
def test_settings_keeps_the_old_source_when_the_new_one_cannot_be_read(app, tmp_path, bad):
    open_page(app, "settings")
    if bad == "file":
        path = tmp_path / "snapshot.yaml"
        path.write_text("kind: [unclosed\n")
        app.radio[0].set_value("A snapshot file").run()
        _text_input(app, "…or a file or directory on the machine running meshstep ui").input(str(path)).run()
        next(b for b in app.button if b.label == "Read this path").click().run()
        expected = "malformed YAML"
    else:
        app.radio[0].set_value("A kube context").run()
        _text_input(app, "Context name").input("no-such-context").run()
        next(b for b in app.button if b.label == "Read this cluster").click().run()
        expected = "no-such-context"
    assert not app.exception
    errors = _errors(app)
    assert len(errors) == 1 and expected in errors[0] and "Still reading **demo**" in errors[0]
    assert app.session_state["source"] == "demo"
    open_page(app, "overview")
    assert app.title[0].value == "Cluster demo"


def test_settings_switches_to_a_readable_snapshot(app, tmp_path, demo_inventory):
    path = tmp_path / "shop.yaml"
    path.write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n"
                    "    istio-injection: enabled\n")
    open_page(app, "settings")
    app.radio[0].set_value("A snapshot file").run()
    _text_input(app, "…or a file or directory on the machine running meshstep ui").input(str(path)).run()
    next(b for b in app.button if b.label == "Read this path").click().run()
    assert not app.exception and not _errors(app)
    assert app.session_state["source"] == str(path)
    open_page(app, "inventory")
    assert list(app.dataframe[0].value["namespace"]) == ["shop"]


def test_an_unreadable_source_shows_what_to_do(db_url, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import APP

    monkeypatch.setenv("MESHSTEP_SOURCE", "/nonexistent/cluster.yaml")
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception
    assert any("Choose another source on the Settings page" in e for e in _errors(at))
