"""Every page of the app on the demo cluster, through streamlit's AppTest (the script runs in this process; no
browser): what each page shows is checked against the inventory and the store, and every change it makes is
checked in the store and in the audit trail."""
from __future__ import annotations

import json
import re

import pytest

from app.rows import feature_summary
from cluster.inventory import Inventory
from features.base import registry
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
    observed = {(o.feature, o.scope) for f in registry().values() if not f.operation for o in f.detect(demo_inventory)}
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


def _graph(app) -> str:
    """The Components page's graph: the SVG its script puts in the page."""
    (html,) = [h.proto.body for h in app.get("html") if 'id="meshgraph"' in h.proto.body]
    return json.loads(re.search(r'insertAdjacentHTML\("beforeend", (".*?")\);', html)[1])


def test_components_explains_istiod_and_a_pod(app, demo_inventory: Inventory):
    open_page(app, "components")
    assert not _errors(app)
    graph = _graph(app)
    assert all(band in graph for band in ("CONTROL PLANE", "DATA PLANE", "ADDONS", "OUTSIDE ISTIO"))
    assert "http" not in graph.replace("http://www.w3.org/2000/svg", "")  # nothing fetched
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
    app.button(key="advance").click().run()
    assert not app.exception and not _errors(app), _errors(app)
    assert f"Stage {first.order} is now **done**. Plan **routing-first** is now real for good." in [
        s.value for s in app.success]  # its first step made the plan real, and says so
    stages = {s.order: s for s in store.list_plans("demo")[0].stages}
    assert stages[first.order].status == "done" and stages[first.order].updated_by == "alice"
    moves = [e for e in store.audit_events() if e.action == "stage.status"]
    assert [e.after["status"] for e in moves] == ["done"]
    assert {e.actor for e in moves} == {"alice"}
    assert app.header[0].value != f"Stage {first.order}: {first.title}"  # the next stage is current
    # The next stage has YAML: it is shown as a diff against the cluster, created objects told from modified ones.
    assert any("0 created, 1 modified" in c.value for c in app.caption), [c.value for c in app.caption]


def test_rehearse_to_done_walks_the_plan_and_stops_at_the_first_failing_check(app, store: Store):
    """A plan for shop alone: its stages rehearse, then STRICT in shop is refused, since legacy/legacy-billing
    (outside the plan, without a sidecar) calls orders.shop in plaintext; the page says where and why."""
    sign_in(app)
    open_page(app, "plan")
    app.multiselect[0].set_value(["shop"])
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    app.toggle[0].set_value(True).run()
    next(b for b in app.button if b.label == "Rehearse to done").click().run()
    assert not app.exception
    plan = store.list_plans("demo")[0]
    blocked = next(s for s in plan.stages if s.status == "blocked")
    assert blocked.title == "mTLS STRICT in shop" and plan.mode == "rehearsal"
    assert all(s.status == "done" for s in plan.stages if s.order < blocked.order)
    moves = [e for e in store.audit_events() if e.action == "stage.rehearsal"]
    [error] = [e for e in _errors(app) if e.startswith("The rehearsal stopped")]
    assert error.startswith(f"The rehearsal stopped after {len(moves) - 1} move(s): stage {blocked.order} "
                            "(mTLS STRICT in shop) is blocked") and "MST0402 Deployment legacy/legacy-billing" in error
    assert {e.actor for e in moves} == {"alice"} and not [e for e in moves if "overridden" in e.reason]


def test_a_plan_keeps_the_verification_thresholds_given_on_the_plan_page(app, store: Store):
    sign_in(app)
    open_page(app, "plan")
    box = next(t for t in app.text_input if t.label == "Verification thresholds")
    box.input("speed=3")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    assert any("the verification threshold 'speed=3': expected key=value" in e.value for e in app.error)
    assert not store.list_plans("demo")
    box = next(t for t in app.text_input if t.label == "Verification thresholds")
    box.input("max_success_drop=0.5, window=15m")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    assert not app.exception and not _errors(app), _errors(app)
    assert store.list_plans("demo")[0].verify == {"max_success_drop": 0.5, "window": 900}
    assert any("Verification thresholds of this plan: window=15m, max_success_drop=0.5" in c.value
               for c in app.caption)


def test_a_stage_is_rehearsed_on_the_overlay(app, store: Store):
    sign_in(app)
    open_page(app, "plan")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    app.toggle[0].set_value(True).run()
    for expected in ("done", "ready", "applied", "verified", "done"):  # the install check, then legacy's injection
        app.button(key="advance").click().run()
        assert not app.exception and not _errors(app), _errors(app)
        assert any(f"is now **{expected}** (rehearsal)." in s.value for s in app.success)
    plan = store.list_plans("demo")[0]
    assert plan.mode == "rehearsal" and app.toggle[0].disabled
    assert [s.status for s in plan.stages[:2]] == ["done", "done"]
    moves = [e for e in store.audit_events() if e.target.startswith("stage:")]
    assert {e.action for e in moves} == {"stage.rehearsal"} and all(e.reason.startswith("rehearsal: ") for e in moves)
    # a rehearsal moves no flag: legacy's injection is recorded nowhere
    assert ("sidecar-injection", "legacy") not in {(f.feature, f.scope) for f in store.list_flags("demo")}


def test_a_plan_is_promoted_from_the_plan_page(app, store: Store):
    sign_in(app)
    open_page(app, "plan")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    field = {t.label: t for t in app.text_input}
    field["Target cluster"].input("prod")
    field["Target source"].input("demo")
    field["After"].input("3d")
    app.button(key="FormSubmitter:promote_plan-Promote").click().run()
    assert not app.exception and not _errors(app), _errors(app)
    assert any("promoted to **prod**" in s.value for s in app.success)
    (source,) = store.list_plans("demo")
    (promoted,) = store.list_plans("prod")
    assert promoted.promoted_from == {"plan_id": source.id, "cluster": "demo", "name": source.name}
    assert promoted.promotion_after == 3 * 86400 and promoted.created_by == "alice"
    assert [s.title for s in promoted.stages] == [s.title for s in source.stages]


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
    effective = app.dataframe[1].value.set_index("behaviour")  # what Istio does, and why
    assert effective.loc["mtls", "why"] == "PERMISSIVE from PeerAuthentication istio-system/default"
    assert effective.loc["authorization", "why"] == "ALLOW by default: no AuthorizationPolicy in istio-system"


def test_flag_changed_by_someone_else_after_the_form_was_drawn_is_a_conflict(app, store: Store):
    sign_in(app, "bob")
    open_page(app, "features")
    app.selectbox[0].set_value("access-logging").run()
    app.selectbox[1].set_value("shop").run()
    # Meanwhile, someone else records the flag (the form says "nothing yet": bob expects it not to exist).
    store.set_flag("demo", "access-logging", "shop", {}, "off", "alice", "not yet")
    next(t for t in app.text_input if t.label == "Reason").input("we want to see failed calls")
    app.button(key="FormSubmitter:flag-Set flag").click().run()
    assert not app.exception
    (error,) = _errors(app)
    assert error.startswith("The flag was not changed: flag:demo/access-logging/shop was changed by alice")
    assert "you expected absent, it is now version 1" in error
    (flag,) = store.list_flags("demo")
    assert (flag.state, flag.changed_by) == ("off", "alice")


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
    app.selectbox[1].set_value("shop").run()  # legacy-billing calls orders without a sidecar: STRICT would cut it off
    app.button(key="FormSubmitter:flag-Render YAML").click().run()
    assert not app.exception
    errors = _errors(app)
    assert any(e.startswith("REFUSED") for e in errors) and any("MST0402" in e for e in errors)
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
def test_settings_keeps_the_old_source_when_the_new_one_cannot_be_read(app, tmp_path, bad, monkeypatch):
    monkeypatch.setenv("MESHSTEP_ALLOW_PATHS", str(tmp_path))
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


def test_settings_switches_to_a_readable_snapshot(app, tmp_path, demo_inventory, monkeypatch):
    monkeypatch.setenv("MESHSTEP_ALLOW_PATHS", str(tmp_path))
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


def _read_path(app, path: str) -> list[str]:
    open_page(app, "settings")
    app.radio[0].set_value("A snapshot file").run()
    _text_input(app, "…or a file or directory on the machine running meshstep ui").input(path).run()
    next(b for b in app.button if b.label == "Read this path").click().run()
    assert not app.exception
    return _errors(app)


def test_server_paths_are_off_unless_the_operator_allows_a_directory(app, tmp_path):
    (tmp_path / "shop.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")
    (error,) = _read_path(app, str(tmp_path / "shop.yaml"))
    assert "reading files of the server is off: whoever runs this server allows a directory of it" in error
    assert app.session_state["source"] == "demo"


def test_server_paths_outside_the_allowed_directories_reveal_nothing(app, tmp_path, monkeypatch):
    allowed = tmp_path / "snapshots"
    allowed.mkdir()
    monkeypatch.setenv("MESHSTEP_ALLOW_PATHS", str(allowed))
    (tmp_path / "secret.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
    said = {}
    for path in (tmp_path / "secret.yaml", tmp_path / "missing.yaml", "/dev/zero", "/root", allowed / ".." / "x"):
        (error,) = _read_path(app, str(path))
        said[str(path)] = error.replace(str(path), "PATH")
    # The same words whether the path exists or not: nothing outside can be probed.
    assert len(set(said.values())) == 1, said
    assert f"is not under a directory this server allows ({allowed})" in next(iter(said.values()))
    # A symlink inside an allowed directory does not lead out of it.
    (allowed / "link.yaml").symlink_to(tmp_path / "secret.yaml")
    (error,) = _read_path(app, str(allowed))
    assert "leads outside the directories this server allows" in error
    assert app.session_state["source"] == "demo"


def test_an_upload_is_recorded_under_its_name_and_leaves_no_file(app, tmp_path, monkeypatch):
    import tempfile

    from app import ui

    tmp_path = tmp_path / "tmp"
    tmp_path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the upload's temporary copy goes
    good = (b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {istio-injection: enabled}\n"
            )
    src = ui.upload_source("shop-snapshot.yaml", good)
    inv = ui._inventory(src)
    assert inv.source == "shop-snapshot.yaml" and list(inv.namespaces) == ["shop"]
    bad = ui.upload_source("broken.yaml", b"kind: [unclosed\n")
    with pytest.raises(Exception, match=r"^broken.yaml:\d+: malformed YAML"):
        ui._inventory(bad)
    assert list(tmp_path.iterdir()) == []  # both temporary copies removed, read or refused


def test_ui_allow_path_must_be_a_directory(tmp_path, capsys):
    from app.cli import main

    assert main(["ui", "--allow-path", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"error: --allow-path {tmp_path / 'nope'}: not a directory\n"


def test_components_graph_filters_by_plane_and_namespace(app, demo_inventory: Inventory):
    open_page(app, "components")
    everything = _graph(app)
    assert 'data-id="prometheus"' in everything and 'data-ends="sidecar istiod"' in everything
    app.pills[0].set_value(["control"]).run()  # istiod and whom it talks to outside Istio
    control = _graph(app)
    assert 'data-id="prometheus"' not in control and 'data-id="sidecar"' not in control
    assert 'data-ends="istiod kube-apiserver"' in control and 'data-ends="sidecar istiod"' not in control

    app.pills[0].set_value(["control", "data", "addon"]).run()
    app.multiselect[0].set_value(["payments"]).run()  # only the sidecars run there: their connections
    payments = _graph(app)
    assert 'data-ends="sidecar istiod"' in payments and 'data-ends="prometheus sidecar"' in payments
    assert 'data-ends="kiali grafana"' not in payments and 'data-ends="istiod kube-apiserver"' not in payments
    dot = next(b for b in app.get("download_button") if b.proto.label == "DOT")
    assert dot  # the DOT export is kept (its content is explain_render.to_dot's, tested in tests/planner)


def test_inventory_says_what_istio_s_own_pods_are(app, demo_inventory: Inventory):
    open_page(app, "inventory")
    namespaces = _tab(app, "Namespaces")
    assert set(namespaces.set_index("namespace").loc[["legacy", "default"], "revision"]) == {"-"}  # as the CLI
    pods = _tab(app, "Pods").set_index("pod")
    own = {i.name for i in demo_inventory.components if i.component in ("istiod", "ingress-gateway")}
    assert len(own) == 4
    for name in own:
        assert pods.loc[name, "mode"] == "istio" and "opted out" not in pods.loc[name, "why"]
        assert pods.loc[name, "why"].startswith("Istio itself")
    addon = next(i.name for i in demo_inventory.components if i.component == "prometheus")
    assert pods.loc[addon, "why"].startswith("opted out")  # an addon is a workload: its label is an opt-out
    assert (pods["proxy"] == "-").sum() == sum(p.sidecar is None for p in demo_inventory.pods)
    app.radio[0].set_value("Istio's own").run()
    assert set(app.dataframe[0].value["pod"]) == {i.name for i in demo_inventory.components
                                                  if i.plane != "addon" and i.component != "sidecar"}
    app.radio[0].set_value("outside").run()
    assert not set(app.dataframe[0].value["pod"]) & set(own)


def test_overview_says_each_feature_once_and_each_scope_on_demand(app, demo_inventory: Inventory):
    observed: dict[str, set[str]] = {}
    for f in registry().values():
        for o in () if f.operation else f.detect(demo_inventory):
            observed.setdefault(o.feature, set()).add(o.scope)
    [summary] = [m.value for m in app.markdown if m.value.startswith("| feature | observed |")]
    lines = summary.splitlines()[2:]
    said = {cells[0]: cells[1] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)}
    assert said.keys() == observed.keys()  # nothing recorded yet: each feature observed, once
    for feature, scopes in observed.items():
        namespaces = scopes - {"mesh"}
        words = (["mesh-wide"] if "mesh" in scopes else []) + (
            [f"{len(namespaces)} namespaces"] if len(namespaces) > 1 else sorted(namespaces))
        assert said[feature] == ", ".join(words), feature
    assert not app.dataframe  # the table of each scope is drawn when asked for
    app.toggle(key="overview-feature-scopes").set_value(True).run()
    assert [d.value.columns.tolist()[:5] for d in app.dataframe] == [
        ["feature", "scope", "observed", "recorded", "drift"]]
    assert len(app.dataframe[0].value) == sum(map(len, observed.values()))
    assert len(app.get("vega_lite_chart")) == 1  # one reading is a point, not a caption


def test_a_feature_s_summary_says_where_each_recorded_state_and_each_drift_is():
    observed = [("mtls-strict", "mesh"), ("mtls-strict", "shop"), ("mtls-strict", "orders")]
    recorded = {("mtls-strict", "mesh"): "on", ("mtls-strict", "shop"): "on", ("mtls-strict", "payments"): "on",
                ("tracing", "legacy"): "off"}
    drift = {("mtls-strict", "orders"): "observed, not recorded",
             ("mtls-strict", "payments"): "recorded on, not observed"}
    assert feature_summary(observed, recorded, drift) == [
        ("mtls-strict", "mesh-wide, 2 namespaces", "on: mesh-wide, 2 namespaces",
         "observed, not recorded: orders; recorded on, not observed: payments"),
        ("tracing", "—", "off: legacy", "—")]


def test_the_name_given_is_kept_in_the_address(app, store: Store):
    sign_in(app, "dana")
    assert app.query_params["as"] == "dana"  # what a reload of this address brings back
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import APP

    reloaded = AppTest.from_file(str(APP), default_timeout=60)
    reloaded.query_params["as"] = "dana"
    reloaded.run()
    assert reloaded.session_state["actor"] == "dana"
    assert any("Changes are recorded as **dana**" in m.value for m in reloaded.sidebar.markdown)
    reloaded.sidebar.button[1].click().run()  # Not you?
    assert "as" not in reloaded.query_params and reloaded.session_state["actor"] is None


def test_render_says_which_of_the_label_command_and_the_yaml_to_use(app):
    open_page(app, "features")
    app.selectbox[0].set_value("sidecar-injection").run()
    app.selectbox[1].set_value("legacy").run()
    app.button(key="FormSubmitter:flag-Render YAML").click().run()
    assert not app.exception and not _errors(app)
    command = next(c.value for c in app.code if c.language == "sh")
    assert "kubectl label namespace legacy istio.io/rev=" in command
    assert any("kind: Namespace" in c.value for c in app.code if c.language == "yaml")
    assert any("use one" in i.value and "kubectl label namespace legacy" in i.value for i in app.info)


def test_render_without_a_label_command_says_nothing_of_it(app):
    open_page(app, "features")
    app.selectbox[0].set_value("mtls-strict").run()
    app.selectbox[1].set_value("payments").run()
    app.button(key="FormSubmitter:flag-Render YAML").click().run()
    assert not any("use one" in i.value for i in app.info)


def test_the_features_page_shows_what_the_source_cannot_show_as_unknown(db_url, monkeypatch, tmp_path):
    """A snapshot without CRDs: PeerAuthentication is not in it, so the mTLS mode is unknown, not PERMISSIVE."""
    import yaml
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import APP
    from tests.tasks.conftest import objects

    path = tmp_path / "no-crds.yaml"
    path.write_text(yaml.safe_dump_all([o for o in objects("mtls-migration")
                                        if o["kind"] != "CustomResourceDefinition"]))
    monkeypatch.setenv("MESHSTEP_SOURCE", str(path))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    open_page(at, "features")
    effective = at.dataframe[1].value.set_index("behaviour")
    assert effective.loc["mtls", "value"] == "unknown"
    assert effective.loc["mtls", "why"].startswith("unknown: PeerAuthentication not in the snapshot")
    assert "kubectl get crd peerauthentications.security.istio.io" in effective.loc["mtls", "why"]
