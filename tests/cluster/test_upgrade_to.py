"""An upgrade planned from a cluster running one istiod revision (the demo: revision 1-27, Istio 1.27.3), as a team
starts Istio's canary upgrade (https://istio.io/latest/docs/setup/upgrade/canary/): `plan new --template upgrade
--to 1.28.0` installs revision 1-28 beside 1-27, moves every namespace labelled for it, the gateways and the default
tag to 1-28, then removes 1-27. Without `--to` there is nothing to move to, and the error says so."""
from __future__ import annotations

import copy
import json

import pytest
import yaml

from analysis.base import Context, analyze_checks, gate_checks, run
from cluster import control_plane, revisions
from cluster.errors import MeshstepError
from cluster.inventory import Inventory, build_inventory
from cluster.istio_releases import UPGRADE_SOURCE
from cluster.sources import load_snapshot
from features.base import registry, validate_params
from planner import plan
from tests.cluster.test_revisions import FIXTURE, _applied
from tests.kubectl import kubectl
from tests.rehearsal import rehearse_to_done, runner


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MESHSTEP_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("MESHSTEP_ACTOR", "alice")
    return runner(capsys)


def _to(version: str = "1.28.0", inv: Inventory | None = None) -> list[plan.StageSpec]:
    return plan.new_plan("upgrade", inv or build_inventory(load_snapshot("demo")), to=version).stages


# ---------------------------------------------------------------- without --to: what is missing, said plainly


def test_an_upgrade_plan_on_one_revision_without_a_release_names_the_revision_and_asks_for_one(cli):
    """It was `stage 1 (Remove the old revision) turns on single-revision in mesh, which depends on default-tag`,
    an order error about a plan nobody asked for."""
    rc, out, err = cli("plan", "new", "--source", "demo", "--template", "upgrade")
    assert rc == 2 and not out
    assert err.startswith("error: the cluster runs one istiod revision, 1-27 (Istio 1.27.3): there is no new revision "
                          "to move to"), err
    assert "--to VERSION (e.g. 1.28.0)" in err and "stage" not in err


# ---------------------------------------------------------------- with --to: the whole canary upgrade


def test_the_upgrade_to_a_release_makes_every_stage_of_the_canary_upgrade(cli):
    rc, out, err = cli("plan", "new", "--source", "demo", "--template", "upgrade", "--to", "1.28.0", "--format",
                       "json")
    assert rc == 0, err
    made = json.loads(out)
    assert [(s["title"], s["status"], [(f["feature"], f["scope"], f["params"]) for f in s["features"]])
            for s in made["stages"]] == [
        ("Install the new revision", "planned", [("revision-install", "mesh", {"revision": "1-28",
                                                                              "version": "1.28.0"})]),
        ("Move payments to the new revision", "planned", [("revision-label", "payments", {"revision": "1-28"})]),
        ("Move shop to the new revision", "planned", [("revision-label", "shop", {"revision": "1-28"})]),
        ("Move the gateways to the new revision", "planned", [("gateway-revision", "mesh", {"revision": "1-28"})]),
        ("Point the default tag at the new revision", "planned", [("default-tag", "mesh", {"revision": "1-28"})]),
        ("Remove the old revision", "planned", [("single-revision", "mesh", {"revision": "1-27"})])]
    # one revision serves the mesh today, and the removal stage is not found on: the install turns it off
    assert [(x["stage"], x["feature"]) for x in made["left_out"]] == [
        ("Move legacy to the new revision", "revision-label")]  # legacy is not labelled for sidecars


def test_the_install_stage_gives_the_install_commands_of_the_release(cli):
    assert cli("plan", "new", "--source", "demo", "--template", "upgrade", "--to", "1.28.0")[0] == 0
    rc, out, err = cli("plan", "next", "--source", "demo")
    assert rc == 0, err
    assert "--set revision=1-28" in out and "istioctl 1.28.0" in out
    assert "kubectl rollout status deployment/istiod-1-28 -n istio-system" in out


def test_the_upgrade_to_a_release_is_rehearsed_to_done_with_every_proxy_on_the_new_revision(cli, tmp_path):
    """Walked from the CLI on the plan's overlay: every gate passes without an override (the new istiod is ready
    once the install's commands ran; each namespace's pods restart onto 1-28 as its notes ask), and the overlay ends
    with revision 1-28 alone, every proxy on it at 1.28.0, and no upgrade finding."""
    from planner import overlay, stages
    from state.store import Store

    assert cli("plan", "new", "--source", "demo", "--template", "upgrade", "--to", "1.28.0", "--name", "up")[0] == 0
    assert rehearse_to_done(cli, "up", "--source", "demo") == []
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        done = stages.find_plan(store, "demo", "up")
        assert {s.status for s in done.stages} == {"done"}
        end = overlay.overlay_at(done, build_inventory(load_snapshot("demo")), done.stages[-1],
                                 including=True).inventory
    finally:
        store.close()
    assert [(r.revision, r.version, r.tags) for r in end.revisions] == [("1-28", "1.28.0", ("default",))]
    assert {(p.revision, p.version) for p in revisions.proxies(end)} == {("1-28", "1.28.0")}
    assert not revisions.stale_pods(end)
    assert {n: ns.labels.get("istio.io/rev") for n, ns in end.namespaces.items() if n in ("shop", "payments")} == {
        "shop": "1-28", "payments": "1-28"}
    assert not [m for m in run(analyze_checks(), Context(end)) if m.code.startswith("MST09")]


def test_each_stage_gates_and_renders_on_the_cluster_the_stages_before_it_leave(demo_inventory):
    now = demo_inventory
    baseline = plan.error_keys(demo_inventory)
    for stage in _to():
        gate = plan.gate(stage, now)
        assert gate.passed, (stage.title, [f"{m.code} {m.message}" for m in gate.messages])
        plan.config(stage, now)
        now = _applied(stage, now)
        assert plan.exit_check(stage, now, baseline).passed, stage.title
    assert [r.revision for r in now.revisions] == ["1-28"]


# ---------------------------------------------------------------- what the install leaves, for the overlay


def test_the_install_leaves_the_new_revision_as_the_chart_renders_it_beside_the_old(demo_inventory, tmp_path):
    """revision-install's commands run outside meshstep; the overlay gets what they leave: 1-27's control plane
    rendered for revision 1-28 at 1.28.0 — names, selectors, webhooks, mesh config — whose objects kubectl takes."""
    feature = registry()["revision-install"]
    p = validate_params(feature, {"revision": "1-28", "version": "1.28.0"})
    made = feature.commanded(p, "mesh", demo_inventory)
    by = {(o["kind"], o["metadata"]["name"]): o for o in made}
    assert set(by) >= {("Deployment", "istiod-1-28"), ("Service", "istiod-1-28"), ("ConfigMap", "istio-1-28"),
                       ("ConfigMap", "istio-sidecar-injector-1-28"),
                       ("MutatingWebhookConfiguration", "istio-sidecar-injector-1-28"),
                       ("ValidatingWebhookConfiguration", "istio-validator-1-28-istio-system"),
                       ("ServiceAccount", "istiod-1-28")}
    assert not [o for o in made if "1-27" in json.dumps(o) or "1.27.3" in json.dumps(o)]
    istiod = by["Deployment", "istiod-1-28"]["spec"]["template"]["spec"]
    assert istiod["containers"][0]["image"] == "docker.io/istio/pilot:1.28.0"
    assert {"name": "REVISION", "value": "1-28"} in istiod["containers"][0]["env"]
    hooks = by["MutatingWebhookConfiguration", "istio-sidecar-injector-1-28"]["webhooks"]
    assert {h["clientConfig"]["service"]["name"] for h in hooks} == {"istiod-1-28"}
    after = demo_inventory.with_changes(apply=made)
    new = revisions.revision(after, "1-28")
    assert (new.version, new.ready_pods, new.tags) == ("1.28.0", 2, ())
    assert control_plane.discovery_address(after, new) == "istiod-1-28.istio-system.svc:15012"
    assert revisions.tags(after) == {"default": "1-27"}  # the tag moves in its own stage
    assert feature.commanded(p, "mesh", after) == []  # installed: nothing more to make
    path = tmp_path / "installed.yaml"
    path.write_text(yaml.safe_dump_all([o for o in made if o["kind"] != "Pod"], sort_keys=False))
    with kubectl(tmp_path) as dry_run:
        code, output = dry_run(path)
    assert code == 0, output


def test_a_helm_install_is_upgraded_by_helm_and_leaves_the_release_its_command_names(demo_inventory):
    d = revisions.copy_of(demo_inventory.get("Deployment", "istio-system", "istiod-1-27"))
    d["metadata"]["annotations"] = {"meta.helm.sh/release-name": "istiod-1-27",
                                    "meta.helm.sh/release-namespace": "istio-system"}
    helm = demo_inventory.with_changes(apply=[d])
    install = _to("1.28.0", helm)[0]
    notes = plan.config(install, helm).notes
    assert ("helm install istiod-1-28 istio/istiod -n istio-system --version 1.28.0 --set revision=1-28 -f <the "
            "values of release istiod-1-27>") in notes
    after = _applied(install, helm)
    new = after.get("Deployment", "istio-system", "istiod-1-28")
    assert new.annotations["meta.helm.sh/release-name"] == "istiod-1-28"


# ---------------------------------------------------------------- the release, checked


@pytest.mark.parametrize(("to", "said"), [
    ("1.28", "'1.28' is not an Istio release version (x.y.z, e.g. 1.28.0)"),
    ("v1.28.0", "'v1.28.0' is not an Istio release version (x.y.z, e.g. 1.28.0)"),
    ("1.27.3", "Istio 1.27.3 is the version installed already"),
    ("1.26.4", "1.26.4 is older than the installed 1.27.3: that is a downgrade, not an upgrade"),
    ("2.0.0", "2.0.0 is another major version than the installed 1.27.3"),
    ("1.29.0", "1.29.0 is 2 minor versions ahead of the installed 1.27.3: Istio supports upgrading by at most 1 "
               f"minor version at a time ({UPGRADE_SOURCE}); upgrade to the latest 1.28.x first"),
])
def test_a_release_istio_cannot_upgrade_to_is_refused_with_the_reason(demo_inventory, to, said):
    with pytest.raises(MeshstepError) as e:
        plan.new_plan("upgrade", demo_inventory, to=to)
    assert str(e.value) == f"cannot upgrade revision 1-27 (Istio 1.27.3) to {to}: {said}"


def test_a_patch_release_is_a_revision_of_its_own(demo_inventory):
    install = _to("1.27.4", demo_inventory)[0].steps[0]
    assert install.params == {"revision": "1-27-4", "version": "1.27.4"}


def test_a_release_goes_with_the_upgrade_template_only(cli):
    rc, _, err = cli("plan", "new", "--source", "demo", "--to", "1.28.0")
    assert rc == 2 and "the release to upgrade to (--to) goes with the upgrade template, not routing-first" in err


def test_with_two_revisions_installed_the_plan_moves_to_the_new_one_and_another_release_is_refused():
    upgrading = build_inventory(load_snapshot(str(FIXTURE)))  # 1-26 (1.26.4) → 1-27 (1.27.3), under way
    titles = [s.title for s in plan.new_plan("upgrade", upgrading).stages]
    assert [s.title for s in plan.new_plan("upgrade", upgrading, to="1.27.3").stages] == titles
    with pytest.raises(MeshstepError) as e:
        plan.new_plan("upgrade", upgrading, to="1.28.0")
    assert str(e.value) == (
        "an upgrade is under way: revisions 1-26 (Istio 1.26.4), 1-27 (Istio 1.27.3) are installed, and the upgrade "
        "template moves to 1-27: finish that upgrade (a plan of the upgrade template without --to) before upgrading "
        "to 1.28.0")


# ---------------------------------------------------------------- the release, against the nodes' Kubernetes
# istio.io's supported releases page lists the Kubernetes versions each Istio minor release supports; the demo's nodes
# run Kubernetes v1.33.5, which Istio 1.28 supports (1.29 to 1.34).


def _nodes_at(inv: Inventory, kubelet: str | None) -> Inventory:
    """The demo's nodes as they are, each reporting the kubelet version `kubelet` (None: reporting none)."""
    nodes = []
    for n in inv.of_kind("Node"):
        node = copy.deepcopy(n.raw)  # with its status, where the kubelet reports its version
        if kubelet is None:
            del node["status"]["nodeInfo"]["kubeletVersion"]
        else:
            node["status"]["nodeInfo"]["kubeletVersion"] = kubelet
        nodes.append(node)
    return inv.with_changes(apply=nodes)


def _install_gate(inv: Inventory) -> plan.GateResult:
    return plan.gate(_to("1.28.0", inv)[0], inv)


def test_the_install_gate_checks_the_release_supports_the_nodes_kubernetes(demo_inventory):
    """It was "Gate: passes (0 checks)": the new istiod was installed without a look at the nodes it runs on."""
    gate = _install_gate(demo_inventory)
    assert gate.passed and not gate.messages
    assert [r for r in gate.ran if r.startswith("MST09")] == [
        "MST0909 KubernetesUnsupportedByRelease (revision-install in mesh)",
        "MST0910 KubernetesSupportUnknown (revision-install in mesh)"]


def test_nodes_on_a_kubernetes_the_release_does_not_support_block_the_install(demo_inventory):
    gate = _install_gate(_nodes_at(demo_inventory, "v1.27.16"))
    assert not gate.passed
    [m] = gate.messages
    assert (m.code, m.level, m.ref.kind) == ("MST0909", "error", "Node")
    assert m.message == ("nodes node-a, node-b, node-c run Kubernetes v1.27.16; Istio 1.28.0 "
                         "supports Kubernetes 1.29 to 1.34 (https://istio.io/latest/docs/releases/supported-releases/"
                         "#support-status-of-istio-releases)")


def test_nodes_whose_kubernetes_is_unknown_are_said_so_not_passed_silently(demo_inventory):
    gate = _install_gate(_nodes_at(demo_inventory, None))
    assert gate.passed
    [m] = gate.messages
    assert (m.code, m.level, m.ref.kind) == ("MST0910", "warning", "Node")
    assert m.message == ("nodes node-a, node-b, node-c report no kubelet version: whether Istio 1.28.0 supports "
                         "their Kubernetes is unknown")


@pytest.mark.parametrize(("version", "side"), [("1.40.0", "newer"), ("1.9.0", "older")])
def test_a_release_meshstep_has_no_kubernetes_versions_for_is_a_warning_not_a_pass(demo_inventory, version, side):
    ctx = Context(demo_inventory, "mesh", {"revision": "x", "version": version})
    found = run(gate_checks("revision-install"), ctx)
    assert [(m.code, m.level, m.message) for m in found] == [
        ("MST0910", "warning", f"Istio {version} is {side} than the releases whose supported Kubernetes versions "
                               "meshstep knows (1.20 to 1.29): whether it supports the nodes' Kubernetes (v1.33.5) "
                               "is unknown")]
