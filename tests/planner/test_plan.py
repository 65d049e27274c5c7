"""The staged plan, walked from the command line on the demo cluster; the cluster is the test's in-memory
inventory, to which each stage's YAML is applied as `kubectl apply` would."""
from __future__ import annotations

import copy
import json

import pytest
import yaml

import app.commands.plan as plan_cmd
from app.cli import main
from features.base import registry
from planner import plan as planner
from planner.errors import MeshstepError
from planner.inventory import build_inventory
from planner.sources import load_snapshot
from state.store import Store


@pytest.fixture(scope="module")
def demo():
    return build_inventory(load_snapshot("demo"))


class Cluster:
    """The cluster the CLI sees: an inventory the test changes as a team would change the real one."""

    def __init__(self, inv):
        self.inv = inv

    def apply(self, text: str) -> None:
        self.inv = self.inv.with_changes(apply=[d for d in yaml.safe_load_all(text) if d])

    def restart_with_sidecars(self, namespace: str) -> None:
        """What `kubectl rollout restart` does in an injected namespace: each pod comes back with a sidecar."""
        donor = next(p for p in self.inv.pods if p.sidecar and p.sidecar.shape == "native")
        sidecar = next(c for c in donor.spec.init_containers if c.name == "istio-proxy")
        pods = []
        for p in self.inv.pods_by_namespace[namespace]:
            if p.sidecar is None:
                pods.append({"apiVersion": "v1", "kind": "Pod",
                             "metadata": {"name": p.name, "namespace": p.namespace,
                                          "labels": p.labels | {"security.istio.io/tlsMode": "istio"},
                                          "annotations": p.annotations | {"sidecar.istio.io/status": json.dumps(
                                              {"revision": donor.sidecar.revision})},
                                          "ownerReferences": [{"kind": "ReplicaSet", "controller": True,
                                                               "name": f"{p.workload_name}-"
                                                                       f"{p.labels.get('pod-template-hash', 'x')}"}]},
                             "spec": {"serviceAccountName": p.spec.service_account,
                                      "containers": [{"name": c.name, "image": c.image} for c in p.spec.containers],
                                      "initContainers": [{"name": sidecar.name, "image": sidecar.image,
                                                          "args": list(sidecar.args), "restartPolicy": "Always"}]},
                             "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
        self.inv = self.inv.with_changes(pods=pods)


@pytest.fixture
def cli(demo, tmp_path, monkeypatch, capsys):
    cluster = Cluster(demo)
    monkeypatch.setattr(plan_cmd, "load_inventory", lambda source: cluster.inv)
    monkeypatch.setenv("MESHSTEP_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("MESHSTEP_ACTOR", "alice")

    def run(*args: str) -> tuple[int, str, str]:
        rc = main(list(args))
        out, err = capsys.readouterr()
        return rc, out, err

    run.cluster = cluster
    return run


def _walk_stage(run, cluster) -> dict:
    """Gate → ready → apply the YAML → applied → verified → done (a stage with nothing to apply is done at its
    gate); returns the stage as `plan next` showed it."""
    rc, out, _ = run("plan", "next", "--format", "json")
    stage = json.loads(out)
    assert rc == 0 and stage["gate"]["passed"], stage["gate"]
    rc, out, _ = run("plan", "advance")
    assert rc == 0
    if not stage["apply_yaml"] and not stage["notes"]:
        assert out.splitlines()[0].endswith("done"), out
        return stage
    cluster.apply(stage["apply_yaml"])
    for expected in ("applied", "verified", "done"):
        rc, out, err = run("plan", "advance")
        assert rc == 0 and out.strip().endswith(expected), (out, err)
    return stage


def test_full_walk_up_to_strict_mtls(cli):
    cluster = cli.cluster
    rc, out, _ = cli("plan", "new", "--template", "routing-first", "--namespaces", "shop", "--format", "json")
    assert rc == 0
    shown = json.loads(out)
    titles = [s["title"] for s in shown["stages"]]
    # What the demo already has is recognised as done: shop is injected, routed by version, PERMISSIVE mesh-wide.
    status = {s["title"]: s["status"] for s in shown["stages"]}
    assert status["Inject sidecars into shop"] == "done" and status["mTLS PERMISSIVE mesh-wide"] == "done"
    assert status["mTLS STRICT in shop"] == "planned"

    walked = []
    while True:
        rc, out, _ = cli("plan", "next", "--format", "json")
        stage = json.loads(out)
        if stage["title"] == "mTLS STRICT in shop":
            break
        walked.append(_walk_stage(cli, cluster)["title"])
    assert walked == [t for t in titles[: titles.index("mTLS STRICT in shop")] if status[t] != "done"]
    assert "Release with canaries and blue/green" in walked

    # STRICT is blocked: catalog's pod predates injection and has no sidecar.
    rc, out, err = cli("plan", "advance")
    assert rc == 1 and "blocked" in err and "catalog" in err
    assert json.loads(cli("plan", "show", "--format", "json")[1])["stages"][titles.index("mTLS STRICT in shop")][
        "status"] == "blocked"
    cluster.restart_with_sidecars("shop")  # the fix the hint asks for
    # Still blocked: legacy-billing, outside the mesh, calls orders.shop; under STRICT its plaintext is refused.
    rc, out, err = cli("plan", "advance")
    assert rc == 1 and "MST0402" in err and "legacy-billing" in err and "catalog" not in err
    cluster.apply(registry()["sidecar-injection"].render({}, "legacy", cluster.inv).yaml)
    cluster.restart_with_sidecars("legacy")
    stage = _walk_stage(cli, cluster)
    assert "mode: STRICT" in stage["apply_yaml"]
    assert ("mtls-strict", "shop") in planner.observed_steps(cluster.inv)

    flags = {(f["feature"], f["scope"]): f["state"]
             for f in json.loads(cli("flags", "list", "--format", "json")[1])}
    assert flags[("mtls-strict", "shop")] == "on" and flags[("traffic-shifting", "shop")] == "on"
    assert cli("audit", "--verify")[0] == 0


def test_stages_done_from_the_start_record_their_flags_once(cli):
    # The team had recorded PERMISSIVE mesh-wide as off (say, meaning to remove it): that record stands.
    assert cli("flags", "set", "mtls-permissive", "--scope", "mesh", "--state", "off", "--reason", "to remove")[0] == 0
    rc, out, _ = cli("plan", "new", "--namespaces", "shop", "--format", "json")
    done = {(f["feature"], f["scope"]) for s in json.loads(out)["stages"] if s["status"] == "done"
            for f in s["features"]}
    assert ("sidecar-injection", "shop") in done and ("mtls-permissive", "mesh") in done
    flags = {(f["feature"], f["scope"]): f for f in json.loads(cli("flags", "list", "--format", "json")[1])}
    assert set(flags) == done
    assert flags["sidecar-injection", "shop"]["state"] == "on" and flags["sidecar-injection", "shop"]["version"] == 1
    assert flags["sidecar-injection", "shop"]["reason"] == (
        "template routing-first; features already on in the cluster recorded on")
    assert (flags["mtls-permissive", "mesh"]["state"], flags["mtls-permissive", "mesh"]["version"]) == ("off", 1)
    # One transaction: the plan and its flags are audited together, at one time.
    events = json.loads(cli("audit", "--export", "json")[1])
    created = events[[e["action"] for e in events].index("plan.create"):]
    assert [e["action"] for e in created] == ["plan.create"] + ["flag.set"] * (len(done) - 1)
    assert len({e["at"] for e in created}) == 1
    assert cli("audit", "--verify")[0] == 0


def test_gate_override_is_recorded(cli):
    cli("plan", "new", "--namespaces", "shop")
    for _ in range(40):  # walk to the STRICT stage
        stage = json.loads(cli("plan", "next", "--format", "json")[1])
        if stage["title"] == "mTLS STRICT in shop":
            break
        _walk_stage(cli, cli.cluster)
    rc, out, _ = cli("plan", "advance", "--override-reason", "catalog is being retired this week")
    assert rc == 0 and out.strip().endswith("ready")
    store = Store.open(None)
    try:
        ev = [e for e in store.audit_events() if e.action == "stage.status"][-1]
        assert (ev.reason == "entry gate overridden"
                and ev.after["override_reason"] == "catalog is being retired this week")
    finally:
        store.close()


def test_not_verified_until_applied_then_rollback_restores_flags(cli):
    cli("plan", "new", "--namespaces", "shop")
    _walk_stage(cli, cli.cluster)  # verify install
    stage = json.loads(cli("plan", "next", "--format", "json")[1])
    assert stage["title"] == "Release with canaries and blue/green"
    before = copy.deepcopy(cli.cluster.inv)
    assert cli("plan", "advance")[0] == 0  # ready
    assert cli("plan", "advance")[0] == 0  # marked applied, but nothing was applied
    rc, _, err = cli("plan", "advance")
    assert rc == 1 and "traffic-shifting is not observed on in shop" in err
    cli.cluster.apply(stage["apply_yaml"])
    # Once applied, `plan next` shows the rollback taken before (re-rendered now, it would restore the canary).
    shown = json.loads(cli("plan", "next", "--format", "json")[1])
    assert shown["rollback_yaml"] == stage["rollback_yaml"] and "weight: 10\n" not in shown["rollback_yaml"]
    assert cli("plan", "advance")[1].strip().endswith("verified")

    rc, out, err = cli("plan", "rollback", "--reason", "v2 error rate too high")
    assert rc == 0 and "rolled back" in err
    # The rollback puts back the VirtualService the cluster had before the stage: all traffic to v1.
    restored = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "VirtualService"]
    original = before.get("VirtualService", "shop", "reviews").spec
    assert [r["route"] for r in restored[0]["spec"]["http"]] == [r["route"] for r in original["http"]]
    flags = {(f["feature"], f["scope"]) for f in json.loads(cli("flags", "list", "--format", "json")[1])}
    assert ("traffic-shifting", "shop") not in flags
    store = Store.open(None)
    try:
        actions = [(e.action, e.reason) for e in store.audit_events()]
        assert ("stage.status", "v2 error rate too high") in actions
        assert ("flag.unset", "v2 error rate too high") in actions
    finally:
        store.close()


@pytest.mark.parametrize("template", ["routing-first", "security-first"])
def test_templates_respect_the_order_rules(demo, template):
    stages = planner.new_plan(template, demo, ["shop", "legacy"]).stages
    first = {}
    for i, stage in enumerate(stages):
        for step in stage.steps:
            first.setdefault(step.feature, i)
    assert first["sidecar-injection"] < first["request-routing"]
    assert first["mtls-permissive"] < first["mtls-strict"] < first["authorization-policy"]


@pytest.mark.parametrize("bad, good, message", [
    (["request-routing", "sidecar-injection"], ["sidecar-injection", "request-routing"],
     "depends on sidecar-injection"),
    (["mtls-strict", "mtls-permissive"], ["mtls-permissive", "mtls-strict"], "depends on mtls-permissive"),
    (["mtls-permissive", "authorization-policy", "mtls-strict"], ["mtls-permissive", "mtls-strict",
                                                                  "authorization-policy"], "depends on mtls-strict"),
])
def test_a_stage_cannot_come_before_what_it_depends_on(demo, bad, good, message):
    # Without Istio config and injection, only the plan's own stages can satisfy a dependency.
    inv = demo.with_changes(delete=[o.ref for o in demo.istio_config()])

    def stages(order):
        return [planner.StageSpec(f, "", (planner.Step(f, "legacy"),)) for f in order]

    with pytest.raises(MeshstepError, match=message):
        planner.check_order(stages(bad), inv)
    planner.check_order(stages(good), inv)


def test_custom_plan_grows_stage_by_stage_and_refuses_bad_order(cli):
    assert cli("plan", "new", "--template", "custom", "--name", "mine")[0] == 0
    rc, _, err = cli("plan", "add", "authorization-policy", "--scope", "legacy", "--name", "mine")
    assert rc == 2 and "depends on mtls-strict" in err
    assert cli("plan", "add", "mtls-strict", "--scope", "shop", "--name", "mine")[0] == 0
    rc, _, err = cli("plan", "add", "traffic-shifting", "--scope", "shop", "--set", "weight=200", "--name", "mine")
    assert rc == 2 and "weight" in err
    shown = json.loads(cli("plan", "show", "--name", "mine", "--format", "json")[1])
    assert [s["features"][0]["feature"] for s in shown["stages"]] == ["mtls-strict"]


def test_export_writes_every_stage_and_its_rollback(cli, tmp_path):
    cli("plan", "new", "--namespaces", "shop")
    assert cli("plan", "export", str(tmp_path / "gitops"))[0] == 0
    files = sorted(p.name for p in (tmp_path / "gitops").iterdir())
    assert "09-mtls-strict-in-shop.yaml" in files and "09-mtls-strict-in-shop.rollback.yaml" in files
    strict = list(yaml.safe_load_all((tmp_path / "gitops" / "09-mtls-strict-in-shop.yaml").read_text()))
    assert [(o["kind"], o["metadata"]["namespace"], o["spec"]["mtls"]["mode"]) for o in strict if o] == [
        ("PeerAuthentication", "shop", "STRICT")]
    # The demo's shop already routes through its own Gateway: that stage has no file (it would conflict), and the
    # export says why.
    assert not [f for f in files if f.startswith("03-")]
    rc, _, err = cli("plan", "export", str(tmp_path / "again"))
    assert rc == 0 and "stage 3 (Enter through the ingress gateway): already on" in err
    for p in (tmp_path / "gitops").glob("*.yaml"):
        list(yaml.safe_load_all(p.read_text()))  # every file is valid YAML


def test_every_feature_in_a_template_is_in_the_catalog():
    feats = registry()
    for blueprints in planner.TEMPLATES.values():
        for bp in blueprints:
            assert set(bp.features) <= set(feats)


def test_steps_sharing_an_object_extend_it_instead_of_overwriting_it(demo):
    # metrics, tracing and access logs all live in the namespace's selector-less Telemetry
    stage = planner.StageSpec("See payments' traffic", "", tuple(
        planner.Step(f, "payments") for f in ("metrics", "tracing", "access-logging")))
    cfg = planner.config(stage, demo)
    docs = [d for d in yaml.safe_load_all(cfg.apply_yaml) if d]
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [("Telemetry", "namespace-default")]
    assert set(docs[0]["spec"]) == {"metrics", "tracing", "accessLogging"}
    assert cfg.rollback_yaml.count("kubectl delete telemetry namespace-default") == 1
    after = Cluster(demo)
    after.apply(cfg.apply_yaml)
    assert planner.exit_check(stage, after.inv, planner.error_keys(demo)).passed
