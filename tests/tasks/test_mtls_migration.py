"""istio.io's Mutual TLS Migration task, step by step, on the task's own cluster (tests/fixtures/tasks/
mtls-migration.yaml: foo and bar with sidecars, legacy without).

Page: https://istio.io/latest/docs/tasks/security/authentication/mtls-migration/
It states: with no PeerAuthentication, Istio configures the destination workloads in PERMISSIVE mode and the
sidecars send mutual TLS to each other (all calls succeed, legacy's plaintext too); STRICT in foo refuses legacy's
calls to httpbin.foo and nothing else; STRICT mesh-wide (the root namespace) refuses its calls to httpbin.bar too;
removing the policies returns to the start."""
from __future__ import annotations

import json

import pytest
import yaml

from analysis.callers import Call, refusal
from analysis.effective import mtls_mode
from benchmarks.istio_metrics import Flow
from cluster.model import Ref
from features.base import apply, registry
from tests.tasks.conftest import snapshot_file, task_cluster
from tests.telemetry.conftest import now_minute, write_metrics

TASK = "mtls-migration"
PAGE = "https://istio.io/latest/docs/tasks/security/authentication/mtls-migration/"
HTTPBIN_FOO = "httpbin.foo.svc.cluster.local"


@pytest.fixture(scope="module")
def start():
    return task_cluster(TASK)


def legacy_call(inv, namespace: str) -> Call:
    """`kubectl exec -n legacy curl -- curl http://httpbin.<namespace>:8000/ip`: the task's plaintext caller."""
    return Call(Ref("Deployment", "legacy", "curl"), "legacy", False, "curl", "the task's curl",
                service=inv.service(namespace, "httpbin"))


def strict(scope, inv):
    feature = registry()["mtls-strict"]
    return apply(feature.render(feature.defaults(), scope, inv), inv)


def test_the_start_is_permissive_by_default_and_every_call_succeeds(start, step, run, tmp_path):
    step(TASK, "set up the cluster: no PeerAuthentication, PERMISSIVE, all requests 200")
    assert not start.of_kind("PeerAuthentication")
    for scope in ("mesh", "foo", "bar"):
        mode = mtls_mode(start, scope)
        assert (mode.value, mode.why) == ("PERMISSIVE", "PERMISSIVE by default: no PeerAuthentication"), PAGE
    assert refusal(start, legacy_call(start, "foo")) is None and refusal(start, legacy_call(start, "bar")) is None
    rc, out, err = run("status", "--source", snapshot_file(TASK, tmp_path), "--format", "json")
    assert rc == 0, err
    rows = {m["scope"]: m for m in json.loads(out)["mtls"]}
    assert rows["foo"]["mode"] == "PERMISSIVE" and rows["foo"]["why"] == "PERMISSIVE by default: no PeerAuthentication"


@pytest.mark.parametrize("scope", ["foo", "mesh"])
def test_strict_passes_the_gate_and_names_the_namespace_outside_the_mesh(scope, step, run, tmp_path):
    step(TASK, f"lock down to mutual TLS {'by namespace' if scope == 'foo' else 'for the entire mesh'}: allowed")
    rc, out, err = run("render", "mtls-strict", "--scope", scope, "--source", snapshot_file(TASK, tmp_path))
    assert rc == 0, err  # never MST0003: PERMISSIVE is in effect, by Istio's default
    assert "MST0003" not in err
    policy = next(yaml.safe_load_all(out))
    assert policy["kind"] == "PeerAuthentication" and policy["spec"] == {"mtls": {"mode": "STRICT"}}
    assert policy["metadata"]["namespace"] == ("foo" if scope == "foo" else "istio-system")
    assert "MST0801" in err and "legacy" in err  # the namespace whose pods run outside the mesh, named


def test_strict_is_refused_naming_the_caller_when_telemetry_shows_its_plaintext(step, run, tmp_path):
    step(TASK, "lock down to mutual TLS by namespace: legacy's plaintext calls observed, refused")
    end = now_minute() - 60
    metrics = write_metrics(tmp_path / "metrics.om", [
        Flow(("bar", "curl"), ("foo", "httpbin"), HTTPBIN_FOO, 1),
        Flow(None, ("foo", "httpbin"), HTTPBIN_FOO, 0.5, security="none", reporters=("destination",))],
        end - 3600, end)
    rc, out, err = run("render", "mtls-strict", "--scope", "foo", "--source", snapshot_file(TASK, tmp_path),
                       "--telemetry", str(metrics))
    assert rc == 2 and out == "", err
    assert "MST0003" not in err and "MST0821" in err
    assert "legacy/curl" in err  # the caller: the one workload without a sidecar
    assert "bar/curl" not in err.split("# REFUSED")[0]  # its mutual TLS is not blamed


def test_strict_by_namespace_then_mesh_wide_refuses_legacy_step_by_step(start, step):
    step(TASK, "lock down to mutual TLS by namespace: curl.legacy to httpbin.foo fails, to httpbin.bar succeeds")
    foo = strict("foo", start)
    assert mtls_mode(foo, "foo").why == "STRICT from PeerAuthentication foo/default"
    assert mtls_mode(foo, "bar").why == "PERMISSIVE by default: no PeerAuthentication in bar or istio-system"
    assert refusal(foo, legacy_call(foo, "foo")) == \
        "mTLS refuses its plaintext (STRICT from PeerAuthentication foo/default)"
    assert refusal(foo, legacy_call(foo, "bar")) is None

    step(TASK, "lock down mutual TLS for the entire mesh: curl.legacy to httpbin.bar fails too")
    mesh = strict("mesh", foo)
    assert mtls_mode(mesh, "mesh").why == "STRICT from PeerAuthentication istio-system/default"
    assert mtls_mode(mesh, "bar").why == "STRICT from PeerAuthentication istio-system/default"
    assert refusal(mesh, legacy_call(mesh, "bar")) == \
        "mTLS refuses its plaintext (STRICT from PeerAuthentication istio-system/default)"

    step(TASK, "clean up: the policies removed, PERMISSIVE by default again")
    feature = registry()["mtls-strict"]
    back = apply(feature.rollback(feature.defaults(), "foo", mesh), mesh)
    back = apply(feature.rollback(feature.defaults(), "mesh", back), back)
    assert not back.of_kind("PeerAuthentication")
    assert mtls_mode(back, "foo").why == "PERMISSIVE by default: no PeerAuthentication"


def test_a_plan_on_the_task_cluster_finds_permissive_in_effect_and_starts_at_strict(start, step):
    step(TASK, "set up the cluster: a plan finds PERMISSIVE already in effect (Istio's default), STRICT still to do")
    import planner.plan

    draft = planner.plan.new_plan("security-first", start, ["foo", "bar"])
    by_title = {s.title: s for s in draft.stages}
    assert by_title["mTLS PERMISSIVE mesh-wide"].done, PAGE  # in effect, though no object says so
    assert not by_title["mTLS STRICT in foo"].done and not by_title["mTLS STRICT mesh-wide"].done
    assert not [x for x in draft.left_out if x.feature.startswith("mtls")]
    # applying STRICT in foo verifies by what is in effect; foo's STRICT step is then already on
    foo = strict("foo", start)
    assert planner.plan.pending_steps(by_title["mTLS STRICT in foo"], foo) == []
