"""`meshstep features`, `meshstep render` and `meshstep status` through the real entry point (app.cli.main)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from features.base import MESH, registry
from state.drift import OBSERVED_NOT_RECORDED, PARAMS_DIFFER, RECORDED_NOT_OBSERVED


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'x.db'}"


def objects(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


# ---------------------------------------------------------------- features


def test_features_json_is_the_catalog(run):
    code, out, err = run("features", "--format", "json")
    assert (code, err) == (0, "")
    feats = json.loads(out)
    assert [f["id"] for f in feats] == list(registry())
    for f in feats:
        assert {"id", "title", "category", "depends_on", "params"} <= set(f)
        assert f["category"] in ("install", "traffic", "observability", "security")
        assert all(d in registry() for d in f["depends_on"])
        assert all({"name", "type", "default", "help"} <= set(p) for p in f["params"])
    shifting = next(f for f in feats if f["id"] == "traffic-shifting")
    assert shifting["depends_on"] == ["request-routing"]
    weight = next(p for p in shifting["params"] if p["name"] == "weight")
    assert (weight["type"], weight["default"]) == ("int", 10)


def test_features_table_lists_every_feature_with_its_dependencies(run):
    code, out, _ = run("features")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "TITLE", "CATEGORY"]
    row = next(line for line in lines if line.startswith("authorization-policy "))
    assert "mtls-strict" in row and "allow_namespaces" in row
    assert len(lines) == 1 + len(registry())


# ---------------------------------------------------------------- render


def test_render_prints_the_objects_as_yaml(run):
    code, out, err = run("render", "traffic-shifting", "--scope", "shop", "--set", "weight=25", "--source", "demo")
    assert code == 0, err
    docs = objects(out)
    assert sorted((d["kind"], d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs) == [
        ("DestinationRule", "shop", "reviews"), ("VirtualService", "shop", "reviews")]
    vs = next(d for d in docs if d["kind"] == "VirtualService")
    assert [(r["destination"]["subset"], r["weight"]) for r in vs["spec"]["http"][0]["route"]] == [("v1", 75),
                                                                                                    ("v2", 25)]
    assert "# meshstep: traffic-shifting, scope shop" in out and "weight=25" in out


def test_render_label_change_has_its_kubectl_command_as_comments(run):
    code, out, _ = run("render", "sidecar-injection", "--scope", "legacy", "--source", "demo")
    assert code == 0
    (ns,) = objects(out)
    assert (ns["kind"], ns["metadata"]["name"], ns["metadata"]["labels"]["istio.io/rev"]) == (
        "Namespace", "legacy", "default")
    assert "# kubectl label namespace legacy istio.io/rev=default --overwrite" in out.splitlines()
    assert "# existing pods in legacy keep their current data plane until restarted" in out
    assert "# kubectl rollout restart deployment,statefulset -n legacy" in out.splitlines()


def test_notes_are_shell_lines_a_person_can_paste(demo_inventory):
    """The Run block (plan next, the app's Plan page) holds commands, and reminders only as shell comments."""
    for fid, scope in (("sidecar-injection", "legacy"), ("ambient-mode", "legacy"), ("egress-registry-only", MESH)):
        for rollback in (False, True):
            notes = registry()[fid].notes(registry()[fid].defaults(), scope, demo_inventory, rollback)
            assert notes
            assert all(n.startswith(("kubectl ", "# ")) for n in notes), notes


def test_render_rollback_deletes_what_render_creates_and_restores_what_it_changes(run, demo_inventory):
    code, out, _ = run("render", "mtls-strict", "--scope", "shop", "--source", "demo", "--rollback")
    assert code == 0
    assert objects(out) == []
    assert "# kubectl delete peerauthentication default -n shop" in out
    code, out, _ = run("render", "traffic-shifting", "--scope", "shop", "--source", "demo", "--rollback")
    assert code == 0
    vs = next(d for d in objects(out) if d["kind"] == "VirtualService")
    # the reviews VirtualService as the demo has it (cluster/demo/config.yaml): every request to v1
    assert vs["spec"] == demo_inventory.get("VirtualService", "shop", "reviews").raw["spec"]
    assert vs["spec"]["http"] == [{"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 100}]}]
    assert "rollback of traffic-shifting" in out


def test_render_prints_gate_warnings_on_stderr_not_in_the_yaml(run):
    code, out, err = run("render", "sidecar-injection", "--scope", "legacy", "--source", "demo")
    assert code == 0
    assert "MST0101" in err and "MST0101" not in out


@pytest.mark.parametrize("argv, says", [
    (["render", "trafic-shifting", "--scope", "shop"],
     "unknown feature 'trafic-shifting': did you mean traffic-shifting"),
    (["render", "nothing-like-it", "--scope", "shop"], "unknown feature 'nothing-like-it': see `meshstep features`"),
    (["render", "traffic-shifting", "--scope", "shop", "--set", "wieght=5"],
     "traffic-shifting: unknown parameter(s) wieght; it takes: service, strategy, stable, canary, weight"),
    (["render", "traffic-shifting", "--scope", "shop", "--set", "weight=abc"],
     "traffic-shifting: weight='abc' is not a valid int"),
    (["render", "traffic-shifting", "--scope", "shop", "--set", "weight=150"],
     "traffic-shifting: weight=150 must be between 0 and 100"),
    (["render", "traffic-shifting", "--scope", "shop", "--set", "strategy=big-bang"],
     "traffic-shifting: strategy='big-bang': choose one of canary, blue-green, header"),
    (["render", "traffic-shifting", "--scope", "shop", "--set", "weight"], "--set 'weight': write it as key=value"),
    (["render", "traffic-shifting", "--scope", "nope"], "traffic-shifting: namespace 'nope' is not in the cluster"),
    (["render", "traffic-shifting"], "traffic-shifting is turned on per namespace: pass --scope NAMESPACE"),
    (["render", "egress-service-entry", "--scope", "shop"], "egress-service-entry needs --set host=NAME"),
])
def test_render_refusals_are_one_clear_line_and_exit_2(run, argv, says):
    code, out, err = run(*argv, "--source", "demo")
    assert code == 2
    assert out == ""
    assert err.startswith(f"error: {says}"), err
    assert err.count("\n") == 1


@pytest.mark.parametrize("argv, says, also", [
    (["render", "traffic-shifting", "--scope", "payments"],
     ("traffic-shifting cannot be turned on in payments: 1 error, 0 warnings, 0 infos; no service in payments has "
      "pods with two `version` labels"),
     ["× error   MST0003 Namespace payments\n    traffic-shifting depends on request-routing, which is not on in "
      "payments\n    hint: Turn on request-routing in payments first"]),
    (["render", "authorization-policy", "--scope", "shop"],
     "authorization-policy cannot be turned on in shop: 3 errors, 0 warnings, 0 infos\n",
     ["× error   MST0003 Namespace shop\n    authorization-policy depends on mtls-strict",
      "× error   MST0501 Namespace shop\n    mTLS is not STRICT in namespace shop"]),
])
def test_a_gate_refusal_lists_every_finding_and_exits_2(run, argv, says, also):
    """Why on the first line; then each finding as `analyze` and `plan next` show them: level, code, resource, then
    the message (which does not name the resource again) and the hint."""
    code, out, err = run(*argv, "--source", "demo")
    assert (code, out) == (2, "")
    assert err.startswith(f"error: {says}"), err
    for block in also:
        assert block in err, err


def test_a_refused_rendering_shows_its_yaml_marked_refused_on_stderr(run):
    """Refused, but shown: the findings, then the YAML it would apply under a REFUSED banner, never on stdout (a
    pipe into kubectl apply gets nothing)."""
    code, out, err = run("render", "mtls-strict", "--scope", "shop", "--source", "demo")
    assert (code, out) == (2, "")
    findings, banner_and_yaml = err.split("\n# REFUSED: ", 1)
    head, *listed = findings.splitlines()
    assert head.startswith("error: mtls-strict cannot be turned on in shop: ")
    # the invariant, on the resource it is about, with the call it would break
    assert "× error   MST0812 Deployment legacy/legacy-billing\n    Deployment legacy/legacy-billing → shop/orders" \
        in findings
    assert banner_and_yaml.startswith("mtls-strict in shop — the YAML it would apply, NOT to be applied")
    docs = objects(banner_and_yaml)
    assert [(d["kind"], d["spec"]) for d in docs] == [("PeerAuthentication", {"mtls": {"mode": "STRICT"}})]
    code, out, _ = run("render", "mtls-strict", "--scope", "shop", "--source", "demo", "--format", "json")
    report = json.loads(out)
    assert code == 2 and report["refused"] and "MST0812" in {f["code"] for f in report["findings"]}
    # every finding the JSON has is listed, each under its own head line (mark, level, code, resource)
    heads = [line for line in listed if not line.startswith("    ")]
    assert heads == [f"× {f['level']:<7} {f['code']} {f['kind']} {f['namespace'] + '/' if f['namespace'] else ''}"
                     f"{f['name']}" for f in report["findings"]]
    assert [c["action"] for c in report["changes"]] == ["create"]


def test_render_diff_tells_created_and_modified_apart(run):
    code, out, err = run("render", "request-routing", "--scope", "shop", "--source", "demo", "--format", "diff")
    assert code == 0
    assert "changes: 5 created (DestinationRule shop/frontend, VirtualService shop/frontend-mesh" in err
    assert "1 modified (DestinationRule shop/ratings)" in err
    assert "--- /dev/null\n+++ merged/VirtualService.shop.frontend-mesh" in out  # created
    assert "--- live/DestinationRule.shop.ratings\n+++ merged/DestinationRule.shop.ratings" in out  # modified
    assert "+  - name: v1" in out or "+  - labels:" in out
    assert "VirtualService.shop.frontend\n" not in out  # the ingress VirtualService is not touched
    code, out, _ = run("render", "request-routing", "--scope", "shop", "--source", "demo", "--format", "json")
    changes = json.loads(out)["changes"]
    assert {(c["action"], c["kind"], c["name"]) for c in changes} >= {
        ("create", "VirtualService", "frontend-mesh"), ("modify", "DestinationRule", "ratings"),
        ("unchanged", "VirtualService", "reviews")}


# ---------------------------------------------------------------- status


def test_status_json_shape(run, db, demo_inventory):
    code, out, err = run("status", "--source", "demo", "--db", db, "--format", "json")
    assert (code, err) == (0, "")
    status = json.loads(out)
    assert {"observed", "recorded", "drift"} <= set(status)
    assert status["recorded"] == []
    for o in status["observed"]:
        assert set(o) == {"feature", "scope", "evidence"} and o["feature"] in registry()
        assert o["evidence"] and all(isinstance(e, str) for e in o["evidence"])
    want = [{"feature": o.feature, "scope": o.scope, "evidence": o.evidence}
            for f in registry().values() if not f.operation for o in f.detect(demo_inventory)]
    assert status["observed"] == want
    assert {"feature": "sidecar-injection", "scope": "shop", "evidence": ["Namespace shop"]} in status["observed"]
    # nothing recorded yet: everything observed is drift of one kind
    assert {(d["feature"], d["scope"]) for d in status["drift"]} == {(o["feature"], o["scope"])
                                                                    for o in status["observed"]}
    assert {d["kind"] for d in status["drift"]} == {OBSERVED_NOT_RECORDED}


def test_status_after_flags_set_shows_recorded_and_drift(run, db):
    assert run("flags", "set", "mtls-strict", "--scope", "shop", "--reason", "encrypt", "--db", db)[0] == 0
    assert run("flags", "set", "sidecar-injection", "--scope", "shop", "--reason", "mesh it", "--db", db)[0] == 0
    assert run("flags", "set", "egress-service-entry", "--scope", "payments", "--set", "host=api.paypal.com",
               "--reason", "switch provider", "--db", db)[0] == 0

    code, out, _ = run("status", "--source", "demo", "--db", db, "--format", "json")
    assert code == 0
    status = json.loads(out)
    assert status["cluster"] == "demo"  # what `meshstep flags` records under by default
    assert sorted((f["feature"], f["scope"], f["state"]) for f in status["recorded"]) == [
        ("egress-service-entry", "payments", "on"), ("mtls-strict", "shop", "on"),
        ("sidecar-injection", "shop", "on")]
    drift = {(d["feature"], d["scope"]): d for d in status["drift"]}
    assert drift[("mtls-strict", "shop")]["kind"] == RECORDED_NOT_OBSERVED
    assert drift[("egress-service-entry", "payments")]["kind"] == PARAMS_DIFFER
    assert ("recorded 'api.paypal.com', observed 'api.stripe.com'"
            in drift[("egress-service-entry", "payments")]["detail"])
    assert ("sidecar-injection", "shop") not in drift  # recorded and observed: no drift
    assert drift[("sidecar-injection", "payments")]["kind"] == OBSERVED_NOT_RECORDED


def test_status_cluster_option_reads_another_clusters_records(run, db):
    assert run("flags", "set", "mtls-strict", "--scope", "shop", "--reason", "x", "--cluster", "prod",
               "--db", db)[0] == 0
    _, out, _ = run("status", "--source", "demo", "--db", db, "--format", "json")
    assert json.loads(out)["recorded"] == []
    _, out, _ = run("status", "--source", "demo", "--db", db, "--cluster", "prod", "--format", "json")
    assert [(f["feature"], f["scope"]) for f in json.loads(out)["recorded"]] == [("mtls-strict", "shop")]


def test_status_table(run, db):
    assert run("flags", "set", "mtls-strict", "--scope", "shop", "--reason", "x", "--db", db)[0] == 0
    code, out, _ = run("status", "--source", "demo", "--db", db)
    assert code == 0
    sections = out.split("\n\n")
    assert [s.splitlines()[0].split(" (")[0] for s in sections[1:]] == ["MTLS", "IN EFFECT", "OBSERVED", "RECORDED",
                                                                        "DRIFT"]
    assert "mtls-strict" in sections[4] and RECORDED_NOT_OBSERVED in sections[5]
    assert re.search(r"^mtls +mesh +PERMISSIVE +PERMISSIVE from PeerAuthentication istio-system/default$",
                     sections[2], re.M)
    # the demo's mesh-wide PeerAuthentication sets shop's mode
    assert re.search(r"^shop +PERMISSIVE +yes +PeerAuthentication istio-system/default$", sections[1], re.M)


def test_status_and_flags_default_to_the_same_cluster(run, db):
    """Neither --source nor --cluster: both fall back to the default source (demo without a kubeconfig)."""
    assert run("flags", "set", "mtls-strict", "--scope", "shop", "--reason", "x", "--db", db)[1].endswith(
        "on demo: on (version 1)\n")
    _, out, _ = run("status", "--db", db, "--format", "json")
    assert json.loads(out)["cluster"] == "demo"
    assert [(f["feature"], f["scope"]) for f in json.loads(out)["recorded"]] == [("mtls-strict", "shop")]


def test_audit_report_shows_the_drift_of_the_sources_cluster(run, db):
    run("flags", "set", "mtls-strict", "--scope", "shop", "--reason", "encrypt shop", "--actor", "alice", "--db", db)
    code, out, err = run("audit", "--export", "markdown", "--db", db)
    assert code == 0 and err == ""
    drift = out.split("## Drift in demo\n", 1)[1].split("\n## ", 1)[0]
    rows = {tuple(cell.strip() for cell in line.split("|")[1:4])
            for line in drift.splitlines() if line.startswith("| ")}
    assert ("recorded on, not observed", "mtls-strict", "shop") in rows
    assert ("observed, not recorded", "mtls-permissive", "mesh") in rows


def test_audit_report_without_a_readable_source_still_prints_and_says_why(run, db, tmp_path):
    run("flags", "set", "tracing", "--scope", "mesh", "--reason", "see calls", "--actor", "bob", "--db", db)
    code, out, err = run("audit", "--export", "markdown", "--source", str(tmp_path / "gone.yaml"), "--db", db)
    assert code == 0 and "## Features on" in out and "## Drift" not in out
    assert err.startswith("warning: the report has no drift section:") and "gone.yaml" in err


def test_status_finds_the_records_of_a_snapshot_written_with_a_trailing_slash(run, db, tmp_path):
    snap = tmp_path / "snap"
    snap.mkdir()
    for f in (Path(__file__).parents[2] / "cluster" / "demo").glob("*.yaml"):
        (snap / f.name).write_text(f.read_text())
    assert run("plan", "new", "--namespaces", "shop", "--source", f"{snap}/", "--db", db)[0] == 0
    code, out, _ = run("status", "--source", f"{snap}/", "--db", db, "--format", "json")
    status = json.loads(out)
    assert code == 0 and status["cluster"] == str(snap)  # the key plan new recorded under
    assert ("sidecar-injection", "shop") in {(f["feature"], f["scope"]) for f in status["recorded"]}


def test_plan_show_finds_the_plan_of_a_snapshot_written_with_a_trailing_slash(run, db, tmp_path):
    snap = tmp_path / "snap"
    snap.mkdir()
    for f in (Path(__file__).parents[2] / "cluster" / "demo").glob("*.yaml"):
        (snap / f.name).write_text(f.read_text())
    assert run("plan", "new", "--namespaces", "shop", "--source", str(snap), "--db", db)[0] == 0
    code, out, err = run("plan", "show", "--source", f"{snap}/", "--db", db, "--format", "json")
    assert code == 0 and json.loads(out)["cluster"] == str(snap), err
