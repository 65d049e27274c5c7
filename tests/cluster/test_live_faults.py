"""A live read survives what real API servers do (tests/kube.py's FaultyEmulator, on loopback): a fault that passes
gives the same `meshstep status --format json` as a clean read; one that persists fails within the read's deadline,
naming the context, the resource and the server's own message; a kind the API refuses is not visible, said so in the
table, the JSON and the app, and no feature whose evidence it holds is reported off."""
from __future__ import annotations

import copy
import json
import time
from functools import cache
from pathlib import Path

import pytest
import yaml
from kmock import ResourceInfo, resource

from app.cli import main
from benchmarks.kubeapi import write_kubeconfig
from cluster import kubeapi, live
from cluster.errors import SourceError
from cluster.files import YAML_LOADER
from cluster.live import live_snapshot
from state.store import Store
from tests.kube import Fault, expired, internal_error, serve, too_many_requests, unavailable

DEMO = Path(__file__).resolve().parents[2] / "cluster" / "demo"
CONTEXT = "prod"


@cache
def _demo_parsed() -> tuple[dict, ...]:
    return tuple(d for f in sorted(DEMO.glob("*.yaml")) for d in yaml.load_all(f.read_text(), YAML_LOADER) if d)


def _demo_objects() -> list[dict]:
    """The demo cluster's objects (parsed once; each server gets its own copy)."""
    return copy.deepcopy(list(_demo_parsed()))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Backoff in milliseconds (the waits' lengths are not what is tested), pages of 3 (so lists continue), a
    state database, and a function that points KUBECONFIG at a server."""
    monkeypatch.setattr(kubeapi, "BACKOFF_INITIAL", 0.01)
    monkeypatch.setattr(live, "PAGE_SIZE", 3)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    db = f"sqlite:///{tmp_path / 'state.db'}"

    def point(url: str) -> str:
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", {CONTEXT: url}, CONTEXT)))
        return db
    return point


def _status(capsys, db: str, *extra: str, format: str = "json") -> tuple[int, str, str]:
    code = main([*extra, "status", "--source", f"context:{CONTEXT}", "--format", format, "--db", db])
    out, err = capsys.readouterr()
    return code, out, err


_CLEAN: dict[str, str] = {}


def _clean_status(env, capsys) -> str:
    if "json" not in _CLEAN:
        with serve(_demo_objects()) as cluster:
            code, out, _err = _status(capsys, env(cluster.url))
        assert code == 0
        _CLEAN["json"] = out
    return _CLEAN["json"]


def _aggregated_api_down(cluster) -> list[Fault]:
    """metrics.k8s.io served by an aggregated API whose service is down: Stale in discovery, 503 on every request."""
    cluster.emulator.resources[resource(group="metrics.k8s.io", version="v1beta1", plural="pods")] = ResourceInfo(
        kind="PodMetrics", verbs={"get", "list"})
    cluster.emulator.stale.add("metrics.k8s.io/v1beta1")
    return [unavailable("/apis/metrics.k8s.io/v1beta1", times=1000),
            unavailable("/apis/metrics.k8s.io/v1beta1/pods", times=1000)]


FAULTS = {
    "500 once": lambda c: [internal_error("/api/v1/pods")],
    "429 with Retry-After": lambda c: [too_many_requests("/api/v1/services", retry_after=1)],
    "connection reset": lambda c: [Fault("/api/v1/namespaces", how="reset")],
    "body cut short": lambda c: [Fault("/api/v1/pods", how="cut")],
    "410 on a continue token": lambda c: [expired("/api/v1/pods")],
    "503 from an aggregated API": _aggregated_api_down,
    "503 once on an Istio group's discovery": lambda c: [unavailable("/apis/networking.istio.io/v1")],
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_that_passes_gives_the_same_status_as_a_clean_read(env, capsys, fault: str) -> None:
    clean = _clean_status(env, capsys)
    with serve(_demo_objects(), faults=[Fault("/never")]) as cluster:
        faults = FAULTS[fault](cluster)
        cluster.emulator.faults[:] = faults
        if fault == "503 once on an Istio group's discovery":
            cluster.emulator.aggregated_discovery = False  # the group version's own document is asked
        started = time.monotonic()
        code, out, err = _status(capsys, env(cluster.url), "--verbose")
        took = time.monotonic() - started
    assert (code, err.count("Traceback")) == (0, 0), err
    assert json.loads(out) == json.loads(clean)
    if fault == "503 from an aggregated API":
        # Discovery showed it Stale, and it was never asked: meshstep reads only the groups it needs (where
        # kubectl's full discovery stops at "unable to retrieve the complete list of server APIs").
        assert "/apis" in {r.url.path for r in cluster.emulator} and not any(f.hits for f in faults)
        return
    assert all(f.hits for f in faults), [(f.path, f.hits) for f in faults]  # each fault was met
    assert "try 2 of" in err or "listing it again from the start" in err, err  # --verbose says each retry
    if fault == "429 with Retry-After":
        assert took >= 1.0  # the server's Retry-After was honoured, not the millisecond backoff
        assert "HTTP 429 Too Many Requests: Too many requests, please try again later." in err
    if fault == "410 on a continue token":
        assert "HTTP 410 Gone" in err and "listing it again from the start (1 of 3)" in err


@pytest.mark.parametrize("fault, said", [
    (internal_error("/api/v1/pods", times=10_000), "HTTP 500 Internal Server Error: etcdserver: request timed out"),
    (Fault("/api/v1/pods", how="cut", times=10_000), "the answer was cut short"),
    (Fault("/api/v1/pods", how="reset", times=10_000), "the connection was reset"),
    (expired("/api/v1/pods", times=10_000), "HTTP 410 Gone: The provided continue parameter is too old"),
])
def test_a_fault_that_persists_fails_in_time_naming_context_resource_and_message(env, capsys, monkeypatch,
                                                                                 fault: Fault, said: str) -> None:
    monkeypatch.setenv("MESHSTEP_READ_TIMEOUT", "4")
    with serve(_demo_objects(), faults=[fault]) as cluster:
        env(cluster.url)
        started = time.monotonic()
        with pytest.raises(SourceError) as e:
            list(live_snapshot(CONTEXT).objects())
        took = time.monotonic() - started
    assert took < 4 + 3, took
    assert str(e.value).startswith(f"listing pods on {cluster.url} (kubeconfig context '{CONTEXT}'): {said}"), e.value
    for library in ("HTTPConnectionPool", "urllib3", "IncompleteRead(", "ProtocolError", "('"):
        assert library not in str(e.value)


def test_the_cli_says_a_persistent_fault_in_one_line(env, capsys) -> None:
    with serve(_demo_objects(), faults=[internal_error("/api/v1/pods", times=10_000)]) as cluster:
        code, out, err = _status(capsys, env(cluster.url))
    assert code == 2 and not out
    assert err == (f"error: listing pods on {cluster.url} (kubeconfig context '{CONTEXT}'): HTTP 500 Internal Server "
                   "Error: etcdserver: request timed out; still failing after 8 tries (raise MESHSTEP_READ_ATTEMPTS "
                   "to try longer)\n")


def test_a_429_asking_for_longer_than_the_deadline_leaves_fails_at_once(env, monkeypatch) -> None:
    monkeypatch.setenv("MESHSTEP_READ_TIMEOUT", "3")
    with serve(_demo_objects(), faults=[too_many_requests("/api/v1/pods", retry_after=60)]) as cluster:
        env(cluster.url)
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"HTTP 429 Too Many Requests.*MESHSTEP_READ_TIMEOUT"):
            list(live_snapshot(CONTEXT).objects())
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_answers_that_will_not_change_are_never_retried(env, status: int) -> None:
    fault = Fault("/apis/apps/v1/deployments", status=status, reason="Unauthorized" if status == 401 else "Bad",
                  message="Unauthorized" if status == 401 else "no", times=10_000)
    with serve(_demo_objects(), faults=[fault]) as cluster:
        env(cluster.url)
        if status == 404:  # not served: nothing to list
            assert list(live_snapshot(CONTEXT).objects())
        else:
            with pytest.raises(SourceError) as e:
                list(live_snapshot(CONTEXT).objects())
    assert fault.hits == 1
    if status == 401:
        assert f"credentials of kubeconfig user '{CONTEXT}-user' have expired or are invalid" in str(e.value)


def test_a_forbidden_kind_is_not_visible_in_table_json_and_app_and_nothing_it_evidences_is_off(env, capsys):
    """virtualservices refused: status lists it as not visible (table, JSON), exits 1 as kubectl does for a
    partial answer, and the features whose detection reads VirtualService are unknown in DRIFT, never
    "recorded on, not observed"."""
    with serve(_demo_objects()) as cluster:
        db = env(cluster.url)
        code, clean, _ = _status(capsys, db)
        on = [(o["feature"], o["scope"]) for o in json.loads(clean)["observed"]]
        reads_vs = {"request-routing", "traffic-shifting", "fault-injection", "timeouts-retries",
                    "ingress-gateway"}
        store = Store.open(db)
        for feature, scope in on:  # the team recorded on what the cluster shows
            store.set_flag(f"context:{CONTEXT}", feature, scope, {}, "on", "t", "as observed")
        store.close()
        cluster.emulator.forbidden.add("virtualservices")
        code, out, err = _status(capsys, db)
        assert code == 1 and "error: could not read virtualservices.networking.istio.io" in err
        report = json.loads(out)
        (nv,) = report["not_visible"]
        assert (nv["kind"], nv["resource"]) == ("VirtualService", "virtualservices.networking.istio.io")
        assert nv["reason"].startswith("HTTP 403 Forbidden: virtualservices is forbidden")
        drift = {(d["feature"], d["scope"]): d for d in report["drift"]}
        gone = [k for k in on if k not in {(o["feature"], o["scope"]) for o in report["observed"]}]
        assert gone and {f for f, _ in gone} <= reads_vs
        for key in gone:
            assert drift[key]["kind"] == "unknown", drift[key]
            assert drift[key]["detail"].startswith("unknown: VirtualService not readable (HTTP 403 Forbidden")
        assert not [d for d in report["drift"] if d["kind"] == "recorded on, not observed"]
        code, table, _ = _status(capsys, db, format="table")
        assert code == 1
        assert "NOT VISIBLE" in table and "VirtualService  virtualservices.networking.istio.io  HTTP 403" in table
        assert "unknown: VirtualService not readable" in table
        assert main(["inventory", "--source", f"context:{CONTEXT}"]) == 0
        assert "virtualservices.networking.istio.io  HTTP 403 Forbidden" in capsys.readouterr().out
        assert main(["explain", "istiod", "--source", f"context:{CONTEXT}", "--format", "json"]) == 0
        out, err = capsys.readouterr()
        assert [n["kind"] for n in json.loads(out)["not_visible"]] == ["VirtualService"]
        assert err.startswith("warning: could not read virtualservices.networking.istio.io (HTTP 403 Forbidden")


def test_the_app_names_what_could_not_be_read(env, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import APP

    with serve(_demo_objects(), forbidden={"virtualservices"}) as cluster:
        monkeypatch.setenv("MESHSTEP_DATABASE_URL", env(cluster.url))
        monkeypatch.setenv("MESHSTEP_SOURCE", f"context:{CONTEXT}")
        at = AppTest.from_file(str(APP), default_timeout=120)
        at.run()
        assert not at.exception, at.exception
        for page in ("overview", "features"):
            at.switch_page(f"views/{page}.py").run()
            (line,) = [w.value for w in at.warning if w.value.startswith("Not visible:")]
            assert "virtualservices.networking.istio.io (HTTP 403 Forbidden" in line and "unknown, not off" in line
