from __future__ import annotations

from types import SimpleNamespace

from state.drift import OBSERVED_NOT_RECORDED, PARAMS_DIFFER, RECORDED_NOT_OBSERVED, compute_drift, recorded_and_drift
from state.models import Flag


def _flag(feature: str, scope: str = "mesh", state: str = "on", **params) -> Flag:
    return Flag(cluster="demo", feature=feature, scope=scope, params=params, state=state, changed_by="alice")


def _seen(feature: str, scope: str = "mesh", **params) -> SimpleNamespace:
    return SimpleNamespace(feature=feature, scope=scope, params=params, evidence=[f"{feature} evidence"])


def test_the_three_kinds_of_drift():
    flags = [
        _flag("mtls-strict", mode="STRICT"),  # observed PERMISSIVE
        _flag("tracing", sampling=1.0),  # not observed
        _flag("metrics"),  # observed, nothing to compare
        _flag("sidecar-injection", "shop"),  # observed in another namespace only
        _flag("egress-registry-only", state="off"),  # recorded off, yet observed
        _flag("authorization-policy", "shop", state="enabling"),  # mid-change: no drift either way
        _flag("timeouts-retries", "shop", state="disabling"),
    ]
    observed = [
        _seen("mtls-strict", mode="PERMISSIVE", port=8080),
        _seen("metrics", provider="prometheus"),
        _seen("sidecar-injection", "cart"),
        _seen("egress-registry-only"),
        _seen("timeouts-retries", "shop"),
    ]
    drift = {(d.feature, d.scope): d for d in compute_drift(flags, observed)}
    assert {k: d.kind for k, d in drift.items()} == {
        ("egress-registry-only", "mesh"): OBSERVED_NOT_RECORDED,
        ("mtls-strict", "mesh"): PARAMS_DIFFER,
        ("sidecar-injection", "cart"): OBSERVED_NOT_RECORDED,
        ("sidecar-injection", "shop"): RECORDED_NOT_OBSERVED,
        ("tracing", "mesh"): RECORDED_NOT_OBSERVED,
    }
    # Only the parameter both sides know is compared (port is not recorded: its default is the feature's).
    assert drift["mtls-strict", "mesh"].detail == "mode: recorded 'STRICT', observed 'PERMISSIVE'"
    assert drift["egress-registry-only", "mesh"].detail == "on in the cluster, but recorded off"
    assert drift["sidecar-injection", "cart"].to_json()["evidence"] == ["sidecar-injection evidence"]


def test_no_drift_when_recorded_matches_observed():
    assert compute_drift([_flag("mtls-strict", mode="STRICT")], [_seen("mtls-strict", mode="STRICT")]) == []


def test_a_recorded_empty_value_lets_the_feature_choose():
    # sidecar-injection recorded with its default revision '' (the default tag's): any observed revision matches
    flags = [_flag("sidecar-injection", "shop", revision=""), _flag("sidecar-injection", "cart", revision="1-26")]
    observed = [_seen("sidecar-injection", "shop", revision="1-27"),
                _seen("sidecar-injection", "cart", revision="1-27")]
    assert [(d.scope, d.detail) for d in compute_drift(flags, observed)] == [
        ("cart", "revision: recorded '1-26', observed '1-27'")]


def test_recorded_and_drift_for_status(store):
    store.set_flag("demo", "tracing", "mesh", {"sampling": 1.0}, "on", "alice", "see calls")
    store.set_flag("prod", "metrics", "mesh", {}, "on", "alice", "other cluster")
    out = recorded_and_drift(store, "demo", [_seen("metrics")])
    assert [(r["feature"], r["state"], r["params"]) for r in out["recorded"]] == [("tracing", "on", {"sampling": 1.0})]
    assert [(d["kind"], d["feature"]) for d in out["drift"]] == [
        (OBSERVED_NOT_RECORDED, "metrics"), (RECORDED_NOT_OBSERVED, "tracing")]
