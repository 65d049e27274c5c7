"""The staged plan, walked from the command line on the demo cluster; the cluster is the test's in-memory
inventory, to which each stage's YAML is applied as `kubectl apply` would."""
from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

import app.commands.plan as plan_cmd
import planner.plan
from cluster import revisions
from cluster.errors import MeshstepError
from cluster.inventory import build_inventory
from cluster.model import Ref
from cluster.sources import load_snapshot
from features.base import registry
from state.store import Store
from tests.rehearsal import runner


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

    def opt_out(self, namespace: str, workload: str, env: dict[str, str] | None = None) -> None:
        """The workload's pods say sidecar.istio.io/inject: "false" (its template changed, its pods restarted); with
        `env`, its Deployment's first container is given these variables too (what it calls, as config shows it)."""
        if env:
            deployment = copy.deepcopy(self.inv.get("Deployment", namespace, workload).raw)
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            container["env"] = [*(container.get("env") or ()), *({"name": k, "value": v} for k, v in env.items())]
            self.inv = self.inv.with_changes(apply=[deployment])
        self.inv = self.inv.with_changes(pods=[
            revisions.manifest(p, p.labels | {"sidecar.istio.io/inject": "false"}, dict(p.annotations))
            for p in self.inv.pods_by_namespace[namespace] if p.workload_name == workload])


@pytest.fixture
def cli(demo, tmp_path, monkeypatch, capsys):
    cluster = Cluster(demo)
    monkeypatch.setattr(plan_cmd, "load_inventory", lambda source: cluster.inv)
    monkeypatch.setenv("MESHSTEP_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("MESHSTEP_ACTOR", "alice")

    run = runner(capsys)
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

    # STRICT is blocked: legacy-billing, outside the mesh, calls orders.shop; under STRICT its plaintext is refused.
    rc, out, err = cli("plan", "advance")
    assert rc == 1 and "blocked" in err and "MST0402" in err and "legacy-billing" in err
    assert json.loads(cli("plan", "show", "--format", "json")[1])["stages"][titles.index("mTLS STRICT in shop")][
        "status"] == "blocked"
    # catalog's pod predates injection and has no sidecar, but calls nothing config shows: STRICT leaves it
    # receiving plaintext (no proxy enforces it) and refuses only its calls to STRICT servers; a warning, not an error
    assert "MST0401" not in err
    cluster.apply(registry()["sidecar-injection"].render({}, "legacy", cluster.inv).yaml)
    cluster.restart_with_sidecars("legacy")
    stage = _walk_stage(cli, cluster)
    assert "mode: STRICT" in stage["apply_yaml"]
    assert {(m["code"], m["level"], m["name"]) for m in stage["gate"]["messages"]} >= \
        {("MST0406", "warning", "catalog")}, stage["gate"]
    assert ("mtls-strict", "shop") in planner.plan.observed_steps(cluster.inv)

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
    stages = planner.plan.new_plan(template, demo, ["shop", "legacy"]).stages
    first = {}
    for i, stage in enumerate(stages):
        for step in stage.steps:
            first.setdefault(step.feature, i)
    assert first["sidecar-injection"] < first["request-routing"]
    assert first["mtls-permissive"] < first["mtls-strict"] < first["authorization-policy"]


DISABLE = {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
           "metadata": {"name": "default", "namespace": "legacy"}, "spec": {"mtls": {"mode": "DISABLE"}}}


@pytest.mark.parametrize("bad, good, message", [
    (["request-routing", "sidecar-injection"], ["sidecar-injection", "request-routing"],
     "depends on sidecar-injection"),
    (["mtls-strict", "mtls-permissive"], ["mtls-permissive", "mtls-strict"], "depends on mtls-permissive"),
    (["mtls-permissive", "authorization-policy", "mtls-strict"], ["mtls-permissive", "mtls-strict",
                                                                  "authorization-policy"], "depends on mtls-strict"),
])
def test_a_stage_cannot_come_before_what_it_depends_on(demo, bad, good, message):
    # Without Istio config and injection, only the plan's own stages can satisfy a dependency; legacy is DISABLE,
    # so that not even Istio's default (PERMISSIVE) stands in for the PERMISSIVE stage.
    inv = demo.with_changes(delete=[o.ref for o in demo.istio_config()], apply=[DISABLE])

    def stages(order):
        return [planner.plan.StageSpec(f, "", (planner.plan.Step(f, "legacy"),)) for f in order]

    with pytest.raises(MeshstepError, match=message):
        planner.plan.check_order(stages(bad), inv)
    planner.plan.check_order(stages(good), inv)


def test_strict_needs_no_permissive_stage_where_istio_is_permissive_by_default(demo):
    """With no PeerAuthentication Istio is PERMISSIVE already (istio.io's mTLS migration task goes straight to
    STRICT): the dependency is met by the behaviour, not by an object."""
    inv = demo.with_changes(delete=[o.ref for o in demo.istio_config()])
    planner.plan.check_order([planner.plan.StageSpec("strict", "", (planner.plan.Step("mtls-strict", "legacy"),))],
                             inv)
    with pytest.raises(MeshstepError, match="depends on mtls-permissive"):
        planner.plan.check_order([planner.plan.StageSpec("strict", "", (planner.plan.Step("mtls-strict", "legacy"),))],
                                 inv.with_changes(apply=[DISABLE]))


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
    assert "09-mtls-strict-in-shop.yaml" in files
    strict = list(yaml.safe_load_all((tmp_path / "gitops" / "09-mtls-strict-in-shop.yaml").read_text()))
    assert [(o["kind"], o["metadata"]["namespace"], o["spec"]["mtls"]["mode"]) for o in strict if o] == [
        ("PeerAuthentication", "shop", "STRICT")]
    # The stage created that PeerAuthentication: its rollback deletes it, as a file `kubectl delete -f` takes (a
    # rollback.yaml of comments alone is not written: it would announce objects kubectl never reads).
    assert "09-mtls-strict-in-shop.rollback.yaml" not in files
    undo = list(yaml.safe_load_all((tmp_path / "gitops" / "09-mtls-strict-in-shop.rollback.delete.yaml").read_text()))
    assert undo == [{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                     "metadata": {"name": "default", "namespace": "shop"}}]
    # The demo's shop already routes through its own Gateway: that stage has no file (it would conflict), and the
    # export says why.
    assert not [f for f in files if f.startswith("03-")]
    rc, _, err = cli("plan", "export", str(tmp_path / "again"))
    assert rc == 0 and "stage 3 (Enter through the ingress gateway): already on" in err
    for p in (tmp_path / "gitops").glob("*.yaml"):
        list(yaml.safe_load_all(p.read_text()))  # every file is valid YAML


def test_every_feature_in_a_template_is_in_the_catalog():
    feats = registry()
    for blueprints in planner.plan.TEMPLATES.values():
        for bp in (b for item in blueprints for b in (item if isinstance(item, tuple) else (item,))):
            assert set(bp.features) <= set(feats)


def test_steps_sharing_an_object_extend_it_instead_of_overwriting_it(demo):
    # metrics, tracing and access logs all live in the namespace's selector-less Telemetry
    stage = planner.plan.StageSpec("See payments' traffic", "", tuple(
        planner.plan.Step(f, "payments") for f in ("metrics", "tracing", "access-logging")))
    cfg = planner.plan.config(stage, demo)
    docs = [d for d in yaml.safe_load_all(cfg.apply_yaml) if d]
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [("Telemetry", "namespace-default")]
    assert set(docs[0]["spec"]) == {"metrics", "tracing", "accessLogging"}
    assert cfg.rollback_yaml.count("kubectl delete telemetry namespace-default") == 1
    after = Cluster(demo)
    after.apply(cfg.apply_yaml)
    assert planner.plan.exit_check(stage, after.inv, planner.plan.error_keys(demo)).passed


# ---------------------------------------------------------------- safe changes: the plan on its overlay (issue 12)


def _objects_and_headers(text: str) -> tuple[int, int]:
    """How many objects a YAML reader finds in a file, and how many `# meshstep:` headers announce one."""
    return (len([d for d in yaml.safe_load_all(text) if d]),
            len([line for line in text.splitlines() if line.startswith("# meshstep:")]))


def _export_round_trips(cli, directory, kubectl_dry_run) -> list[str]:
    assert cli("plan", "export", str(directory))[0] == 0
    files = sorted(directory.glob("*.yaml"))
    assert files
    for f in files:
        text = f.read_text()
        found, announced = _objects_and_headers(text)
        assert found == announced, f"{f.name}: {found} objects for {announced} headers"
        if found:
            rc, out = kubectl_dry_run(f)
            assert rc == 0, f"{f.name}: {out}"
            assert out.count("(dry run)") == found, out
    return [f.name for f in files]


@pytest.fixture
def dry_run(tmp_path):
    from tests.kubectl import kubectl

    with kubectl(tmp_path) as run:
        yield run


def test_a_stage_of_several_steps_is_one_yaml_document_per_object(demo, tmp_path, dry_run):
    # Two steps, two objects each: the renderings were joined with no `---` between them, so YAML readers kept one
    # object per step and kubectl refused the file (mapping key "apiVersion" already defined).
    stage = planner.plan.StageSpec("Ingress", "", (planner.plan.Step("ingress-gateway", "legacy"),
                                              planner.plan.Step("ingress-gateway", "payments")))
    for text in (planner.plan.config(stage, demo).apply_yaml, planner.plan.config(stage, demo).rollback_yaml):
        path = tmp_path / "stage.yaml"
        path.write_text(text)
        assert _objects_and_headers(text)[0] == _objects_and_headers(text)[1]
        if _objects_and_headers(text)[0]:
            assert dry_run(path)[0] == 0, dry_run(path)[1]
    assert _objects_and_headers(planner.plan.config(stage, demo).apply_yaml) == (4, 4)


def test_a_deletion_is_a_comment_not_an_object_header_and_old_plans_still_read() -> None:
    """`# meshstep:` announces an object; a deletion was headed so until 2026-11-30, and stored plans keep that."""
    from features.base import deletions_of

    now = "# delete Gateway legacy/legacy-ingress (meshstep: rollback of ingress-gateway, scope legacy)\n"
    before = "# meshstep: rollback of ingress-gateway, scope legacy: delete Gateway legacy/legacy-ingress\n"
    cluster_wide = "# delete Namespace legacy (meshstep: rollback of x, scope mesh)\n"
    assert deletions_of(now) == deletions_of(before) == [Ref("Gateway", "legacy", "legacy-ingress")]
    assert deletions_of(cluster_wide) == [Ref("Namespace", None, "legacy")]


def test_export_of_the_demo_is_multi_document_yaml_that_kubectl_accepts(cli, tmp_path, dry_run):
    # Every application namespace: stage 5 brings the ingress to legacy and payments, and finds it on in shop.
    assert cli("plan", "new")[0] == 0
    names = _export_round_trips(cli, tmp_path / "gitops", dry_run)
    # the resilience stage renders two features in three namespaces: one document per object
    resilience = next(n for n in names if "resilience" in n and "rollback" not in n)
    assert _objects_and_headers((tmp_path / "gitops" / resilience).read_text())[0] >= 2
    assert any(n.startswith("05-enter-through-the-ingress-gateway") for n in names)
    # what stages 5, 6 and 8 created, their rollbacks delete: as objects kubectl reads, one per header
    for stage, deleted in (("05-enter-through-the-ingress-gateway", 4), ("06-route-requests-by-version", 2),
                           ("08-see-the-traffic-metrics-traces-access-logs", 1)):
        text = (tmp_path / "gitops" / f"{stage}.rollback.delete.yaml").read_text()
        assert _objects_and_headers(text) == (deleted, deleted), stage


def test_each_stage_is_rendered_on_the_overlay_of_the_stages_before_it(cli, demo, tmp_path):
    from planner import export, stages

    assert cli("plan", "new")[0] == 0
    assert cli("plan", "export", str(tmp_path / "gitops"))[0] == 0
    store = Store.open(None)
    try:
        (plan,) = store.list_plans("demo")
    finally:
        store.close()
    # Applied in order, the files give the cluster each next stage is rendered on: re-rendering a stage there
    # gives its file back (with the plan, stage and sync wave the export annotates), and once applied the stage is
    # on. (That no stage undoes an earlier one is the feature merges' invariant, checked after every rendering.)
    now = demo
    for stage in plan.stages:
        path = next((p for p in tmp_path.glob(f"gitops/{stage.order:02d}-*.yaml")
                     if not p.name.endswith((".rollback.yaml", ".delete.yaml"))), None)
        if path is None:
            continue
        spec = stages.stage_spec(stage)
        assert export.waved(planner.plan.config(spec, now).apply_yaml, plan, stage) == path.read_text(), stage.title
        now = now.with_changes(apply=planner.plan.objects_of(path.read_text()))
        assert planner.plan.pending_steps(spec, now) == [], f"{stage.title}: not on once its file is applied"


def test_a_feature_already_on_in_a_stage_is_recognised_not_refused(demo):
    # The demo's shop already has its ingress (shop-gateway): rendering it again was refused (IST0145).
    steps = tuple(planner.plan.Step("ingress-gateway", ns) for ns in ("shop", "payments"))
    stage = planner.plan.StageSpec("Ingress", "", steps)
    cfg = planner.plan.config(stage, demo)
    assert cfg.skipped == (planner.plan.Step("ingress-gateway", "shop"),)
    assert {o["metadata"]["namespace"] for o in cfg.objects} == {"payments"}
    assert planner.plan.pending_steps(stage, demo) == [planner.plan.Step("ingress-gateway", "payments")]


def test_rollback_of_a_fresh_plan_does_not_undo_what_was_on_before_it(cli):
    assert cli("plan", "new", "--namespaces", "shop")[0] == 0
    rc, out, err = cli("plan", "rollback", "--reason", "changed my mind")
    assert rc != 0 and out == ""
    assert "were already on in the cluster when the plan was made" in err and "does not roll them back" in err
    # the install check is done, but changed nothing: still nothing of the plan's own to roll back
    assert cli("plan", "advance")[1].startswith("stage 1 (Verify the Istio install): done")
    assert cli("plan", "rollback", "--reason", "changed my mind")[0] != 0
    # a stage past its gate whose YAML was never applied: rolled back, with no no-op "undo" printed
    assert cli("plan", "advance")[0] == 0
    rc, out, err = cli("plan", "rollback", "--reason", "not now")
    assert rc == 0 and out == "" and "nothing to undo" in err


def test_a_cluster_without_a_service_entry_gets_a_plan_that_says_what_it_left_out(cli, monkeypatch):
    without = cli.cluster.inv.with_changes(delete=[o.ref for o in cli.cluster.inv.of_kind("ServiceEntry")])
    cli.cluster.inv = without
    rc, out, err = cli("plan", "new")
    assert rc == 0, err
    assert "LEFT OUT" in out
    assert re.search(r"Lock down egress: egress-registry-only in mesh: it depends on egress-service-entry", out)
    shown = json.loads(cli("plan", "show", "--format", "json")[1])
    assert not any(f["feature"] == "egress-registry-only" for s in shown["stages"] for f in s["features"])
    assert {(x["feature"], x["scope"]) for x in shown["left_out"]} >= {("egress-registry-only", "mesh"),
                                                                       ("egress-service-entry", "shop")}


def test_plan_next_names_the_checks_it_ran_and_a_stage_with_nothing_to_apply_takes_one_advance(cli):
    rc, out, _ = cli("plan", "new", "--namespaces", "shop")
    assert out.startswith("plan routing-first for cluster demo:")  # not "routing-first (routing-first)"
    out = cli("plan", "next")[1]
    assert "GATE — passes: 2 check(s) ran" in out and "MST0002 each istiod revision has a ready pod" in out
    rc, out, _ = cli("plan", "advance")
    assert rc == 0 and out.splitlines()[0] == "stage 1 (Verify the Istio install): done"
    shown = json.loads(cli("plan", "next", "--format", "json")[1])
    assert shown["title"] == "Release with canaries and blue/green"
    assert any("traffic-shifting" in c for c in shown["gate"]["ran"])
    # the canary changes the VirtualService the demo routes reviews with; the DestinationRule it needs exists
    actions = {(c["kind"], c["name"]): c["action"] for c in shown["changes"]}
    assert actions[("VirtualService", "reviews")] == "modify" and actions[("DestinationRule", "reviews")] != "create"
    text = cli("plan", "next")[1]
    assert "CHANGES (against the cluster as the earlier stages leave it):" in text and "+++ merged/" in text


@pytest.mark.parametrize("template", ["routing-first", "security-first"])
def test_the_demo_plans_are_rehearsed_to_done_on_the_overlay(cli, template):
    """`plan rehearse` walks the plan to done with no override: what the injection stages ask for (label,
    restart) is carried out on the overlay, so shop/catalog, whose pod predates shop's injection label, comes back
    with a sidecar, legacy-billing gets one, and STRICT in shop and mesh-wide pass their gates."""
    flags_before = cli("flags", "list", "--format", "json")[1]
    assert cli("plan", "new", "--template", template, "--name", template)[0] == 0
    rc, out, err = cli("plan", "rehearse", "--name", template)
    assert rc == 0, err
    assert out.rstrip().endswith(f"plan {template} is complete: every stage is done"), out
    shown = json.loads(cli("plan", "show", "--name", template, "--format", "json")[1])
    assert shown["complete"] and shown["mode"] == "rehearsal" and shown["status"] == "done"
    assert {s["status"] for s in shown["stages"]} == {"done"}
    # the rehearsal moved no flag (those recorded at plan creation aside) and is in the audit trail as such
    created = {(f["feature"], f["scope"]) for s in shown["stages"] if s["found_on"] for f in s["features"]}
    flags = {(f["feature"], f["scope"]) for f in json.loads(cli("flags", "list", "--format", "json")[1])}
    assert flags == created | {(f["feature"], f["scope"]) for f in json.loads(flags_before)}
    events = json.loads(cli("audit", "--export", "json")[1])
    stage_events = [e for e in events if e["target"].startswith("stage:")]
    assert stage_events and {e["action"] for e in stage_events} == {"stage.rehearsal"}
    assert all(e["reason"].startswith("rehearsal: ") for e in stage_events if e["action"] == "stage.rehearsal")
    assert not [e for e in stage_events if "overridden" in e["reason"]]
    assert not [e for e in events if e["action"] == "flag.set" and e["reason"].startswith("rehearsal")]
    assert cli("audit", "--verify")[0] == 0
    # a rehearsal and a real walk never mix in one plan
    assert cli("plan", "new", "--name", "mixed")[0] == 0
    assert cli("plan", "advance", "--rehearse", "--name", "mixed")[0] == 0
    rc, _, err = cli("plan", "advance", "--name", "mixed")
    assert rc != 0 and "is a rehearsal" in err


def test_plan_rehearse_stops_at_the_first_failure_with_its_findings(cli):
    """`--to` stops after a stage; a gate that fails stops the walk there, its findings printed, exit 1."""
    assert cli("plan", "new", "--name", "rf")[0] == 0
    rc, out, _ = cli("plan", "rehearse", "--name", "rf", "--to", "2")
    assert rc == 0 and out.rstrip().endswith("stage 2 (Inject sidecars into legacy): done (rehearsal)"), out
    shown = json.loads(cli("plan", "show", "--name", "rf", "--format", "json")[1])
    assert [s["status"] for s in shown["stages"][:3]] == ["done", "done", "done"]
    assert shown["stages"][4]["status"] == "planned"
    # catalog opts out on its pod template now, and calls orders: STRICT in shop would refuse its plaintext (orders'
    # sidecar enforces it), and the rehearsal says so
    cli.cluster.opt_out("shop", "catalog", env={"ORDERS_ADDR": "orders.shop:8080"})
    rc, out, err = cli("plan", "rehearse", "--name", "rf")
    assert rc == 1 and "stage 14 (mTLS STRICT in shop) is blocked" in err and "MST0401" in err, (out, err)
    assert "calls shop/orders (named in env ORDERS_ADDR of container catalog), STRICT after this stage" in err
    assert json.loads(cli("plan", "show", "--name", "rf", "--format", "json")[1])["stages"][13]["status"] == "blocked"


def test_plan_list_and_delete(cli):
    assert cli("plan", "new", "--name", "one")[0] == 0
    rows = json.loads(cli("plan", "list", "--format", "json")[1])
    assert [(r["name"], r["mode"], r["complete"]) for r in rows] == [("one", "-", False)]
    assert cli("plan", "delete", "one")[0] != 0  # a reason is needed
    assert cli("plan", "delete", "one", "--reason", "started over")[0] == 0
    assert json.loads(cli("plan", "list", "--format", "json")[1]) == []
    assert "plan.delete" in [e["action"] for e in json.loads(cli("audit", "--export", "json")[1])]


def test_export_of_bookinfo_round_trips(cli, tmp_path, dry_run):
    from cluster.files import read_paths
    from tests.conftest import REFERENCE

    bookinfo = REFERENCE / "samples" / "bookinfo"
    objs = [{"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": "bookinfo", "labels": {"istio-injection": "enabled"}}}]
    for path in (bookinfo / "bookinfo.yaml", bookinfo / "networking" / "bookinfo-gateway.yaml",
                 bookinfo / "networking" / "destination-rule-all.yaml"):
        for o in read_paths([path]):
            o.setdefault("metadata", {})["namespace"] = "bookinfo"
            objs.append(o)
    cli.cluster.inv = cli.cluster.inv.with_changes(apply=objs)
    assert cli("plan", "new", "--namespaces", "bookinfo")[0] == 0
    names = _export_round_trips(cli, tmp_path / "gitops", dry_run)
    assert names


def test_exported_objects_name_their_plan_and_stage_and_sync_in_stage_order(cli, tmp_path):
    cli("plan", "new", "--namespaces", "shop")
    assert cli("plan", "export", str(tmp_path / "gitops"))[0] == 0
    waves = {}
    for path in sorted((tmp_path / "gitops").glob("*.yaml")):
        if ".rollback" in path.name:
            continue
        for obj in (o for o in yaml.safe_load_all(path.read_text()) if o):
            notes = obj["metadata"]["annotations"]
            assert notes["meshstep.io/plan"] == "routing-first"
            assert notes["argocd.argoproj.io/sync-wave"] == notes["meshstep.io/stage"] == str(int(path.name[:2]))
            waves[path.name] = int(notes["argocd.argoproj.io/sync-wave"])
    assert len(waves) >= 3 and list(waves.values()) == sorted(waves.values())


def test_plan_next_ends_with_the_command_that_comes_next(cli):
    """`plan next` says what to run next, for the stage's status and the plan's mode: before the first advance
    both ways (on the cluster, or rehearsed); in a rehearsal the --rehearse step; a blocked gate what to fix first."""
    cli("plan", "new", "--namespaces", "shop")
    out = cli("plan", "next")[1]
    nxt = out.split("\nNEXT\n")[1]
    assert "meshstep plan advance --name routing-first  " in nxt and "--rehearse" in nxt
    cli("plan", "advance", "--rehearse")
    nxt = cli("plan", "next")[1].split("\nNEXT\n")[1]
    assert nxt.strip().startswith("meshstep plan advance --name routing-first --rehearse")
    assert "Rehearse: apply the YAML to the overlay" not in nxt  # the stage is planned: its gate comes first
    cli("plan", "advance", "--rehearse")  # the gate passes: ready
    nxt = cli("plan", "next")[1].split("\nNEXT\n")[1]
    assert "Rehearse: apply the YAML to the overlay" in nxt
