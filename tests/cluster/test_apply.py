"""cluster/apply.py against tests/kube.py's WritableEmulator (real HTTP on loopback): every object is first a
server-side dry run, then a server-side apply as field manager meshstep, never forced; what the API server refuses
is said with its code, and a stage applies all of its objects or none."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from benchmarks.kubeapi import write_kubeconfig
from cluster import kubeapi
from cluster.apply import ApplyRefused, Cluster, apply_stage, intent, named, normalised, roll_back
from cluster.owners import owners
from tests.kube import claim, serve

NS = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "shop"}}}
VS = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
      "metadata": {"name": "reviews", "namespace": "shop"},
      "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}}
CRD = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
       "metadata": {"name": "virtualservices.networking.istio.io"},
       "spec": {"group": "networking.istio.io", "scope": "Namespaced",
                "names": {"kind": "VirtualService", "plural": "virtualservices"},
                "versions": [{"name": "v1", "served": True, "storage": True}]}}


def _vs(name: str, subset: str) -> dict:
    vs = copy.deepcopy(VS)
    vs["metadata"]["name"] = name
    vs["spec"]["http"][0]["route"][0]["destination"]["subset"] = subset
    vs["spec"]["hosts"] = [name]
    return vs


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(kubeapi, "BACKOFF_INITIAL", 0.01)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    def connect(url: str) -> Cluster:
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", {"test": url}, "test")))
        return Cluster.connect("test")
    return connect


def _objects(served) -> dict[str, dict]:
    """Live objects by name, normalised."""
    return {o.raw["metadata"]["name"]: normalised(o.raw) for o in served.emulator.objects.values() if not o.deleted}


def _writes(served) -> list:
    return [r for r in served.emulator if r.method in ("PATCH", "PUT", "DELETE")]


def test_each_object_dry_run_then_applied_as_meshstep_never_forced(cluster) -> None:
    with serve([NS, CRD, VS], writes=True) as served:
        labelled = NS | {"metadata": {"name": "shop", "labels": {"istio.io/rev": "default"}}}
        said: list[str] = []
        done = apply_stage(cluster(served.url), [labelled, _vs("reviews", "v1")], {}, said.append)
        writes = _writes(served)
        live = _objects(served)
        stored = served.emulator.objects[next(k for k in served.emulator.objects if k[2] == "reviews")].raw
    assert [(w.method, w.params.get("dryRun")) for w in writes] == [("PATCH", "All"), ("PATCH", "All"),
                                                                   ("PATCH", None), ("PATCH", None)]
    assert all(w.params["fieldManager"] == "meshstep" and "force" not in w.params and
               w.params["fieldValidation"] == "Strict" and w.headers["Content-Type"] == "application/apply-patch+yaml"
               for w in writes)
    assert live["shop"]["metadata"]["labels"] == {"istio.io/rev": "default", "team": "shop"}
    assert live["reviews"]["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v1"
    assert [m["manager"] for m in stored["metadata"]["managedFields"]] == ["meshstep"]
    assert "+        subset: v1" in done.diffs[1] and "istio.io/rev: default" in done.diffs[0]
    # Objects no write has given owners yet: sent whole, and said.
    assert "VirtualService shop/reviews shows no managedFields: sent whole" in "\n".join(said)


def test_only_the_intent_is_applied_and_a_field_meshstep_stops_setting_is_removed(cluster) -> None:
    """meshstep created reviews (owning all of it); Argo CD applies a label and the hosts (sharing them). A second
    stage routes to v2 and drops the gateways: meshstep sends the http it changes and the fields it owns, never
    Argo's label; the gateways, which meshstep alone owned, are removed by the server; the hosts stay shared."""
    first = _vs("reviews", "v1")
    first["spec"]["gateways"] = ["mesh"]
    with serve([NS, CRD], writes=True) as served:
        c = cluster(served.url)
        apply_stage(c, [first], {})
        path = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/reviews"
        served.apply_as("argocd-controller", path, {"apiVersion": VS["apiVersion"], "kind": "VirtualService",
                                                    "metadata": {"name": "reviews", "namespace": "shop",
                                                                 "labels": {"app": "reviews"}},
                                                    "spec": {"hosts": ["reviews"]}})
        second = _vs("reviews", "v2")
        second["metadata"]["labels"] = {"app": "reviews"}  # rendered whole, merged with the live object
        apply_stage(c, [second], {})
        sent = yaml.safe_load(_writes(served)[-1].body)
        stored = served.emulator.objects[next(k for k in served.emulator.objects if k[2] == "reviews")].raw
    assert "labels" not in sent["metadata"] and set(sent["spec"]) == {"hosts", "http"}
    assert "gateways" not in stored["spec"] and stored["metadata"]["labels"] == {"app": "reviews"}
    assert stored["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v2"
    owned = {(o.manager, o.operation): {str(p) for p in o.paths} for o in owners(stored)}
    assert owned == {("argocd-controller", "Apply"): {".metadata.labels.app", ".spec.hosts"},
                     ("meshstep", "Apply"): {".spec.hosts", ".spec.http"}}


def test_a_label_the_stage_removes_is_removed_by_a_merge_patch_as_kubectl_label_does(cluster) -> None:
    """A switch to ambient takes the namespace's injection label off (rendered as `null`). Server-side apply removes
    a field only when its own manager stops sending it, and an applied null is no removal: the label, kubectl's, is
    taken off by a JSON merge patch (an update, as `kubectl label namespace shop istio.io/rev-` does), dry-run first
    and under the resourceVersion meshstep's own apply left; the rest is server-side applied."""
    labelled = NS | {"metadata": {"name": "shop", "labels": {"team": "shop", "istio.io/rev": "default"}}}
    with serve([labelled], writes=True) as served:
        claim(served.emulator, "kubectl-client-side-apply")
        switch = {**NS, "metadata": {"name": "shop", "labels": {"team": "shop", "istio.io/rev": None,
                                                                "istio.io/dataplane-mode": "ambient"}}}
        said: list[str] = []
        done = apply_stage(cluster(served.url), [switch], {}, said.append)
        writes = _writes(served)
        live = _objects(served)
    assert live["shop"]["metadata"]["labels"] == {"team": "shop", "istio.io/dataplane-mode": "ambient"}
    kinds = [(w.headers["Content-Type"], w.params.get("dryRun")) for w in writes]
    assert kinds == [("application/apply-patch+yaml", "All"), ("application/merge-patch+json", "All"),
                     ("application/apply-patch+yaml", None), ("application/merge-patch+json", None)]
    applied, removed = (yaml.safe_load(w.body) for w in writes[2:])
    assert "istio.io/rev" not in applied["metadata"]["labels"]
    assert removed["metadata"]["labels"] == {"istio.io/rev": None} and removed["metadata"]["resourceVersion"]
    assert "-    istio.io/rev: default" in done.diffs[0] and "+    istio.io/dataplane-mode: ambient" in done.diffs[0]


def test_a_conflict_names_the_other_manager_and_field_and_applies_nothing(cluster) -> None:
    with serve([NS, CRD, VS], writes=True) as served:
        claim(served.emulator, "argocd-controller")
        before = _objects(served)
        with pytest.raises(ApplyRefused) as e:
            apply_stage(cluster(served.url), [_vs("reviews", "v2")], {})
        after = _objects(served)
        writes = _writes(served)
    assert e.value.code == "MST1001" and e.value.managers == ("argocd-controller",)
    assert e.value.fields == (".spec.http",)
    assert 'conflict with "argocd-controller" using networking.istio.io/v1: .spec.http' in str(e.value)
    assert "nothing was applied" in str(e.value)
    assert after == before and [w.params.get("dryRun") for w in writes] == ["All"]


def kubectl_edits_reviews(emulator) -> None:
    """Another client (kubectl edit) labels shop/reviews just before meshstep's first real write of it."""
    def edit(target, dry_run: bool) -> None:
        if target.name == "reviews" and not dry_run and emulator.before_write is not None:
            emulator.before_write = None
            emulator.write("PATCH", target, b'{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",'
                           b' "metadata": {"name": "reviews", "namespace": "shop", "labels": {"x": "y"}}}',
                           {"fieldManager": "kubectl-edit"}, "application/apply-patch+yaml")
    emulator.before_write = edit


def test_object_k_refused_puts_back_objects_before_it(cluster) -> None:
    """Another client changes the second object between the dry run and the apply: the first one, already
    applied, is put back as it was (and the one the stage created is deleted)."""
    with serve([NS, CRD, VS], writes=True) as served:
        emulator = served.emulator
        before = _objects(served)
        kubectl_edits_reviews(emulator)
        shop = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "shop",
                                                                                                "istio.io/rev": "x"}}}
        with pytest.raises(ApplyRefused) as e:
            apply_stage(cluster(served.url), [shop, _vs("ratings", "v1"), _vs("reviews", "v1")],
                        {"VirtualService shop/reviews": before_version(emulator, "reviews")})
        after = _objects(served)
    assert e.value.code == "MST1002" and not e.value.dry_run
    assert e.value.rolled_back == ["VirtualService shop/ratings", "Namespace shop"]
    assert after["shop"] == before["shop"] and "ratings" not in after
    assert after["reviews"]["metadata"]["labels"] == {"x": "y"}  # kubectl's change stays


def before_version(emulator, name: str) -> str:
    return next(o.raw["metadata"]["resourceVersion"] for k, o in emulator.objects.items() if k[2] == name)


def test_changed_since_the_gate_is_caught_by_the_dry_run(cluster) -> None:
    with serve([NS, CRD, VS], writes=True) as served:
        with pytest.raises(ApplyRefused) as e:
            apply_stage(cluster(served.url), [_vs("reviews", "v1")], {"VirtualService shop/reviews": "1"})
        writes = _writes(served)
    assert e.value.code == "MST1002" and e.value.dry_run and len(writes) == 1
    assert "the object has been modified" in str(e.value) and "gate" in str(e.value)


def test_rbac_and_webhook_refusals_are_said_as_the_server_said_them(cluster) -> None:
    with serve([NS, CRD, VS], writes=True) as served:
        served.emulator.forbidden_writes.add(("patch", "virtualservices"))
        with pytest.raises(ApplyRefused) as rbac:
            apply_stage(cluster(served.url), [_vs("reviews", "v1")], {})
        served.emulator.forbidden_writes.clear()
        served.emulator.denials["reviews"] = "configuration is invalid: subset v9 not found"
        with pytest.raises(ApplyRefused) as webhook:
            apply_stage(cluster(served.url), [_vs("ratings", "v1"), _vs("reviews", "v9")], {})
        live = _objects(served)
    assert rbac.value.code == "MST1003" and rbac.value.status == 403
    assert ('virtualservices.networking.istio.io "reviews" is forbidden: User "system:serviceaccount:ops:meshstep" '
            'cannot patch resource "virtualservices" in API group "networking.istio.io" in the namespace "shop"'
            in str(rbac.value))
    assert webhook.value.code == "MST1004"
    assert ('admission webhook "validation.istio.io" denied the request: configuration is invalid: subset v9 not '
            'found' in str(webhook.value))
    assert "ratings" not in live  # refused in the dry run: nothing applied


def test_a_write_that_may_pass_is_retried(cluster) -> None:
    from tests.kube import internal_error
    with serve([NS, CRD, VS], writes=True,
               faults=[internal_error("/apis/networking.istio.io/v1/namespaces/shop/virtualservices/reviews")]
               ) as served:
        apply_stage(cluster(served.url), [_vs("reviews", "v3")], {})
        live = _objects(served)
    assert live["reviews"]["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v3"
    assert named(("v1", "Namespace", None, "x")) == "Namespace x"


def test_an_object_created_since_the_gate_is_not_taken_over(cluster) -> None:
    with serve([NS, CRD, VS], writes=True) as served:
        claim(served.emulator, "flagger")
        with pytest.raises(ApplyRefused) as e:
            apply_stage(cluster(served.url), [_vs("reviews", "v1")], {"VirtualService shop/reviews": ""})
        writes = _writes(served)
    assert e.value.code == "MST1002" and e.value.dry_run and not writes
    assert "it was created since the gate read the cluster (field managers: flagger)" in str(e.value)


def _key(name: str) -> tuple[str, str, str, str]:
    return ("networking.istio.io/v1", "VirtualService", "shop", name)


def test_a_deletion_is_dry_run_under_the_gates_version_then_made_and_rolled_back_as_it_was(cluster) -> None:
    """Every apply and delete is first a dry run; the DELETE carries preconditions.resourceVersion (the version the
    gate read); rolled back, the deleted object is created again as it was, without what the server set."""
    with serve([NS, CRD, VS, _vs("ratings", "v1")], writes=True) as served:
        claim(served.emulator, "kubectl-client-side-apply")
        before = _objects(served)
        c = cluster(served.url)
        version = before_version(served.emulator, "ratings")
        done = apply_stage(c, [_vs("details", "v1")], {"VirtualService shop/ratings": version},
                           deletes=[_key("ratings")])
        applied = _objects(served)
        writes = _writes(served)
        back = roll_back(c, done.before, done.after)
        after = _objects(served)
        created = [r for r in served.emulator if r.method == "POST"]
        recreated = next(o.raw for k, o in served.emulator.objects.items() if k[2] == "ratings" and not o.deleted)
    assert [(w.method, w.url.path.rsplit("/", 1)[1], w.params.get("dryRun")) for w in writes] == [
        ("PATCH", "details", "All"), ("DELETE", "ratings", "All"), ("PATCH", "details", None),
        ("DELETE", "ratings", None)]
    for delete in writes[1::2]:
        assert yaml.safe_load(delete.body)["preconditions"] == {"resourceVersion": version}
    assert "ratings" not in applied and "details" in applied
    assert done.after[-1] is None and "-  name: ratings" in done.diffs[-1]  # the deletion shown as a diff
    assert back == ["VirtualService shop/ratings", "VirtualService shop/details"]
    assert after == before  # created again as it was; the stage's object gone
    assert [r.params.get("fieldManager") for r in created] == ["meshstep"]
    assert recreated["metadata"]["resourceVersion"] != version and "uid" in recreated["metadata"]


def test_a_deletion_changed_or_gone_since_the_gate_is_refused_by_its_dry_run(cluster) -> None:
    with serve([NS, CRD, VS], writes=True) as served:
        c = cluster(served.url)
        with pytest.raises(ApplyRefused) as changed:
            apply_stage(c, [_vs("details", "v1")], {"VirtualService shop/reviews": "1"}, deletes=[_key("reviews")])
        with pytest.raises(ApplyRefused) as gone:
            apply_stage(c, [], {"VirtualService shop/ratings": "1003"}, deletes=[_key("ratings")])
        writes = _writes(served)
        live = _objects(served)
    assert changed.value.code == "MST1002" and changed.value.dry_run and changed.value.status == 409
    assert "the dry run of deleting VirtualService shop/reviews was refused: Operation cannot be fulfilled" in str(
        changed.value)
    assert gone.value.code == "MST1002" and "deleted since the gate read the cluster" in str(gone.value)
    assert all(w.params.get("dryRun") == "All" for w in writes) and "details" not in live and "reviews" in live


def test_a_delete_refused_puts_back_what_the_stage_applied_and_deleted(cluster) -> None:
    """kubectl edits the second object to delete between its dry run and its delete: the first one, deleted, is
    created again as it was, the object the stage created is deleted, kubectl's edit stays."""
    with serve([NS, CRD, VS, _vs("ratings", "v1")], writes=True) as served:
        emulator = served.emulator
        before = _objects(served)
        kubectl_edits_reviews(emulator)
        versions = {f"VirtualService shop/{n}": before_version(emulator, n) for n in ("ratings", "reviews")}
        with pytest.raises(ApplyRefused) as e:
            apply_stage(cluster(served.url), [_vs("details", "v1")], versions,
                        deletes=[_key("ratings"), _key("reviews")])
        after = _objects(served)
    assert e.value.code == "MST1002" and not e.value.dry_run and "deleting VirtualService shop/reviews" in str(e.value)
    assert e.value.rolled_back == ["VirtualService shop/ratings", "VirtualService shop/details"]
    assert after["ratings"] == before["ratings"] and "details" not in after
    assert after["reviews"]["metadata"]["labels"] == {"x": "y"}


def _owned_by(entries: list[tuple[str, str, dict]]) -> list[dict]:
    return [{"manager": m, "operation": op, "apiVersion": "networking.istio.io/v1", "fieldsType": "FieldsV1",
             "fieldsV1": tree} for m, op, tree in entries]


LIVE_VS = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": "reviews", "namespace": "shop", "resourceVersion": "7",
                        "labels": {"app": "reviews", "team": "shop"},
                        "annotations": {"meshstep.io/stage": "2", "note": "argo"},
                        "managedFields": _owned_by([
                            ("argocd-controller", "Apply", {"f:metadata": {"f:labels": {"f:app": {}, "f:team": {}}},
                                                            "f:spec": {"f:hosts": {}}}),
                            ("meshstep", "Apply", {"f:metadata": {"f:annotations": {"f:meshstep.io/stage": {}}},
                                                   "f:spec": {"f:gateways": {}, "f:tcp": {"k:{\"port\":1}": {
                                                       ".": {}, "f:port": {}}}}}),
                            ("meshstep", "Update", {"f:spec": {"f:exportTo": {}}})])},
           "spec": {"hosts": ["reviews"], "gateways": ["mesh"], "exportTo": ["."], "tcp": [{"port": 1}],
                    "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]},
                             {"route": [{"destination": {"host": "reviews", "subset": "v2"}}]}]},
           "status": {"conditions": []}}


def test_the_intent_is_what_changes_and_what_meshstep_applied_before_never_others_fields() -> None:
    new = normalised(LIVE_VS)
    new["metadata"]["labels"]["meshstep.io/routed"] = "true"  # a map: granular, the one key sent
    new["metadata"]["annotations"]["meshstep.io/plan"] = "p"
    new["spec"]["http"][1]["route"][0]["destination"]["subset"] = "v3"  # an atomic list: sent whole
    del new["spec"]["gateways"]  # meshstep's own field, left out: the server removes it
    sent = intent(new, LIVE_VS)
    assert sent == {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                    "metadata": {"name": "reviews", "namespace": "shop", "labels": {"meshstep.io/routed": "true"},
                                 "annotations": {"meshstep.io/plan": "p", "meshstep.io/stage": "2"}},
                    # tcp: meshstep's Apply owns an item of it, so the list is sent; exportTo (its Update's) is not
                    "spec": {"http": new["spec"]["http"], "tcp": [{"port": 1}]}}
    assert intent(new, None) == new  # a new object is sent whole
    bare = copy.deepcopy(LIVE_VS)
    del bare["metadata"]["managedFields"]
    assert intent(new, bare) is None  # no owners shown: the caller sends it whole and says so
