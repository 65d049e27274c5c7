"""The live half of the decoded-inventory cache (cluster.live_cache), against tests/kube.py's WritableEmulator on
loopback (a history of changes that watches replay, compaction, 403, CRDs deleted): a warm read (the kept kinds
watched from where the last read ended) gives the inventory a fresh list gives, whatever changed in between; a
kind whose watch fails is listed afresh and nothing kept of it is served."""
from __future__ import annotations

import json
import logging
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from benchmarks.kubeapi import write_kubeconfig
from cluster import cache, cachedir, kubeapi, live, live_cache
from cluster.errors import SourceError
from cluster.inventory import Inventory, build_inventory
from cluster.live import live_snapshot
from cluster.snapshot import FILE_LIMIT, Limit
from tests.cluster.test_cache import _same
from tests.cluster.test_live_faults import _demo_objects
from tests.kube import Cluster, serve

CONTEXT = "prod"
PODS = "/api/v1/pods"
VIRTUAL_SERVICES = "/apis/networking.istio.io/v1/virtualservices"


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The demo cluster on a WritableEmulator, KUBECONFIG pointing at it; every kind kept however small (the demo
    is far below KEPT_FROM), in pages of 3 so that lists continue."""
    monkeypatch.setenv(live_cache.KEPT_FROM.env, "0")
    monkeypatch.setattr(live, "PAGE_SIZE", 3)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with serve(_demo_objects(), writes=True) as running:
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", {CONTEXT: running.url},
                                                              CONTEXT)))
        yield running


def _read() -> Inventory:
    return build_inventory(live_snapshot(CONTEXT))


def _fresh(monkeypatch: pytest.MonkeyPatch) -> Inventory:
    """The cluster as a read without the cache sees it."""
    with monkeypatch.context() as m:
        m.setenv(cachedir.SWITCH_ENV, "off")
        return _read()


def _send(cluster: Cluster, method: str, path: str, body: Any = None,
          content_type: str = "application/merge-patch+json", query: str = "fieldManager=kubectl") -> None:
    request = urllib.request.Request(f"{cluster.url}{path}?{query}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": content_type})
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 200


def _entries() -> list[Path]:
    return sorted(cachedir.directory().glob("*.live.msgpack")) if cachedir.directory().is_dir() else []


def _changes(cluster: Cluster, inv: Inventory) -> None:
    """Pods and Istio config created, changed and deleted, as kubectl would."""
    pod = next(o for o in _demo_objects() if o["kind"] == "Pod")
    ns = pod["metadata"]["namespace"]
    pod["metadata"]["name"] = "added-by-kubectl"
    _send(cluster, "POST", f"/api/v1/namespaces/{ns}/pods", pod, "application/json")
    first, second = sorted((p.namespace, p.name) for p in inv.pods)[:2]
    _send(cluster, "PATCH", f"/api/v1/namespaces/{first[0]}/pods/{first[1]}", {"metadata": {"labels": {"x": "y"}}})
    _send(cluster, "DELETE", f"/api/v1/namespaces/{second[0]}/pods/{second[1]}")
    vs = inv.of_kind("VirtualService")[0]
    _send(cluster, "PATCH", f"/apis/networking.istio.io/v1/namespaces/{vs.namespace}/virtualservices/{vs.name}",
          {"metadata": {"annotations": {"changed": "yes"}}})
    dr = inv.of_kind("DestinationRule")[0]
    _send(cluster, "DELETE", f"/apis/networking.istio.io/v1/namespaces/{dr.namespace}/destinationrules/{dr.name}")
    _send(cluster, "PATCH", f"/apis/networking.istio.io/v1/namespaces/{vs.namespace}/virtualservices/new-route",
          {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": "new-route", "namespace": vs.namespace},
           "spec": {"hosts": ["new-route"], "http": [{"route": [{"destination": {"host": "new-route"}}]}]}},
          "application/apply-patch+yaml")


def test_a_warm_read_watches_the_kept_kinds_and_equals_a_fresh_list(cluster: Cluster, monkeypatch) -> None:
    cold = cache.inventory(f"context:{CONTEXT}")  # as commands and the app's first page read it
    _same(cold, _fresh(monkeypatch))
    assert len(_entries()) == 1
    listed = len(cluster.list_requests(PODS))
    _changes(cluster, cold)
    warm = cache.inventory(f"context:{CONTEXT}")
    # Pods and VirtualServices were watched from where the cold read ended, not listed again.
    assert len(cluster.list_requests(PODS)) == listed and len(cluster.watch_requests(PODS)) == 1
    assert len(cluster.watch_requests(VIRTUAL_SERVICES)) == 1
    fresh = _fresh(monkeypatch)
    _same(warm, fresh)  # the decoded inventory, not counts
    names = {p.name for p in warm.pods}
    assert "added-by-kubectl" in names and len(names) == len(cold.pods)  # one added, one deleted
    assert warm.get("VirtualService", cold.of_kind("VirtualService")[0].namespace, "new-route") is not None
    assert len(warm.of_kind("DestinationRule")) == len(cold.of_kind("DestinationRule")) - 1
    # And again, from where the warm read ended: nothing changed, nothing replayed twice.
    _same(_read(), fresh)


def test_a_compacted_history_is_listed_afresh(cluster: Cluster, monkeypatch) -> None:
    cold = _read()
    _changes(cluster, cold)
    cluster.emulator.compact()  # the changes since the cold read are no longer in the history: 410 Expired
    listed = len(cluster.list_requests(PODS))
    warm = _read()
    assert len(cluster.watch_requests(PODS)) == 1 and len(cluster.list_requests(PODS)) > listed
    _same(warm, _fresh(monkeypatch))
    assert "added-by-kubectl" in {p.name for p in warm.pods}


def test_a_watch_with_more_changes_than_an_answer_may_hold_is_listed_instead(cluster: Cluster, monkeypatch,
                                                                             caplog) -> None:
    cold = _read()
    for pod in cold.pods:  # each change an event of the whole pod: more than the answer may hold, in all
        _send(cluster, "PATCH", f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}",
              {"metadata": {"labels": {"rolled": "out"}}})
    # An answer may hold 100 kB here (every list page of 3 objects is less): the watch's is more, a list's is not.
    monkeypatch.setattr(kubeapi, "FILE_LIMIT", Limit(FILE_LIMIT.env, 100_000, FILE_LIMIT.what, unit="bytes"))
    listed = len(cluster.list_requests(PODS))
    with caplog.at_level(logging.INFO, kubeapi.log.name):
        warm = _read()
    (watch,) = cluster.watch_requests(PODS)
    assert len(cluster.list_requests(PODS)) > listed
    _same(warm, _fresh(monkeypatch))
    # What was read and why it is listed instead, as the log says it: the watch, not a list or a file.
    said = [r.getMessage() for r in caplog.records if FILE_LIMIT.env in r.getMessage()]
    assert said == [f"watching pods from resourceVersion {watch.params['resourceVersion']} on {cluster.url} "
                    f"(kubeconfig context '{CONTEXT}'): the answer is larger than the 100,000 bytes one answer may "
                    f"be (raise it with {FILE_LIMIT.env}=N); listing it afresh"]


@pytest.mark.parametrize("path", [PODS, VIRTUAL_SERVICES])
def test_an_object_of_the_wrong_type_a_watch_brings_is_refused_as_a_list_refuses_it(cluster: Cluster, monkeypatch,
                                                                                    path: str) -> None:
    cold = _read()
    if path == PODS:  # typed as it is decoded
        pod = cold.pods[0]
        _send(cluster, "PATCH", f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}",
              {"spec": {"containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": "80"}]}]}})
    else:  # parsed, then checked against the shapes
        vs = cold.of_kind("VirtualService")[0]
        _send(cluster, "PATCH", f"{path.replace('/virtualservices', '')}/namespaces/{vs.namespace}/virtualservices/"
                                f"{vs.name}", {"spec": {"http": "not a list"}})
    with pytest.raises(SourceError) as warm:
        _read()
    assert len(cluster.watch_requests(path)) == 1
    with pytest.raises(SourceError) as fresh:
        _fresh(monkeypatch)
    for reading in threading.enumerate():  # the other kinds a failed read had under way, ended before the server
        if reading.name == "meshstep-live-read":
            reading.join(60)
    assert str(warm.value) == str(fresh.value) and "is a string, not " in str(warm.value), str(warm.value)


def test_a_kind_refused_since_it_was_kept_is_not_visible_and_nothing_kept_is_served(cluster: Cluster,
                                                                                     monkeypatch) -> None:
    assert _read().pods
    cluster.emulator.forbidden.add("pods")  # the user's role no longer lets them read pods
    warm = _read()
    assert len(cluster.watch_requests(PODS)) == 1  # refused: listed afresh, and refused again
    assert not warm.pods and "pods" in warm.visibility.forbidden
    _same(warm, _fresh(monkeypatch))
    # Nor later: the entry no longer keeps them, so once allowed again they are listed, not watched.
    cluster.emulator.forbidden.discard("pods")
    watched = len(cluster.watch_requests(PODS))
    _same(_read(), _fresh(monkeypatch))
    assert len(cluster.watch_requests(PODS)) == watched


def test_a_kind_whose_crd_was_deleted_is_gone(cluster: Cluster, monkeypatch) -> None:
    assert _read().of_kind("VirtualService")
    _send(cluster, "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                             "virtualservices.networking.istio.io")
    warm = _read()
    assert not warm.of_kind("VirtualService") and cluster.watch_requests(VIRTUAL_SERVICES) == []
    assert len(cluster.watch_requests(PODS)) == 1  # the kinds still served were watched
    _same(warm, _fresh(monkeypatch))


@pytest.mark.parametrize("damage", [b"", b"\xc1 not msgpack", "truncated", "other key"])
def test_an_entry_that_cannot_be_trusted_is_read_afresh_without_an_error(cluster: Cluster, monkeypatch,
                                                                         damage) -> None:
    cold = _read()
    (entry,) = _entries()
    data = entry.read_bytes()
    if damage == "truncated":
        entry.write_bytes(data[:len(data) // 2])
    elif damage == "other key":
        monkeypatch.setenv("MESHSTEP_MAX_FILE_MB", "255")  # other limits: another key
    else:
        entry.write_bytes(damage)
    _changes(cluster, cold)
    listed = len(cluster.list_requests(PODS))
    warm = _read()
    assert cluster.watch_requests(PODS) == [] and len(cluster.list_requests(PODS)) > listed
    _same(warm, _fresh(monkeypatch))


def test_what_is_not_kept(cluster: Cluster, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(cachedir.SWITCH_ENV, "off")
    _read()
    assert _entries() == []
    monkeypatch.delenv(cachedir.SWITCH_ENV)
    # Another user (other credentials) does not read what one kept.
    _read()
    other = write_kubeconfig(tmp_path / "other", {CONTEXT: cluster.url}, CONTEXT)
    other.write_text(other.read_text().replace("test-token", "another-token"))
    monkeypatch.setenv("KUBECONFIG", str(other))
    _read()
    assert cluster.watch_requests(PODS) == [] and len(_entries()) == 2
    # Kinds smaller than KEPT_FROM (as the demo's are) are listed each time, never watched.
    monkeypatch.delenv(live_cache.KEPT_FROM.env)
    for entry in _entries():
        entry.unlink()
    _read()
    _read()
    assert _entries() == [] and cluster.watch_requests(PODS) == []
