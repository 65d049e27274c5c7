"""Sources: snapshot files in every shape kubectl writes them, and the live path against a Kubernetes API on
loopback (tests/kube.py) — pages, 403s, missing Istio, unreachable servers, contexts, Secrets."""
from __future__ import annotations

import json
import os
import socket
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from benchmarks.kubeapi import write_kubeconfig
from cluster import kubeapi, live
from cluster.errors import SourceError
from cluster.inventory import build_inventory
from cluster.live import RawPage, live_snapshot
from cluster.snapshot import POD_KIND
from cluster.sources import files_snapshot, load_snapshot
from tests.kube import serve

FIXTURE = Path(__file__).parents[1] / "fixtures" / "inventory" / "cluster.yaml"


def _keys(objects) -> set[tuple[str, str | None, str]]:
    return {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects}


def _fixture_objects() -> list[dict]:
    return [d for d in yaml.safe_load_all(FIXTURE.read_text()) if d]


def _pod(name: str, ns: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "app", "image": "example.com/app:1"}]}}


# ---------------------------------------------------------------- snapshot files


def test_json_list_items_take_the_lists_kind(tmp_path: Path) -> None:
    # `kubectl get --raw /api/v1/pods` writes a PodList whose items carry no kind of their own.
    raw = {"apiVersion": "v1", "kind": "PodList", "items": [{k: v for k, v in _pod(n).items() if k != "kind"}
                                                           for n in ("a", "b")]}
    path = tmp_path / "pods.json"
    path.write_text(json.dumps(raw))
    objects = list(load_snapshot(str(path)).objects())
    assert [(o["kind"], o["apiVersion"], o["metadata"]["name"]) for o in objects] == [("Pod", "v1", "a"),
                                                                                     ("Pod", "v1", "b")]


def test_yaml_list_of_mixed_kinds(tmp_path: Path) -> None:
    # `kubectl get pods,svc -o yaml` writes a `List` whose items name their own kinds.
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"}}
    path = tmp_path / "dump.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [_pod("a"), svc]}))
    assert _keys(load_snapshot(str(path)).objects()) == {("Pod", "default", "a"), ("Service", "default", "web")}


def test_multi_document_yaml_with_empty_documents(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text("---\n" + "\n---\n".join(yaml.safe_dump(_pod(n)) for n in ("a", "b", "c")) + "\n---\n")
    assert [o["metadata"]["name"] for o in load_snapshot(str(path)).objects()] == ["a", "b", "c"]


def test_directory_recursive_and_tar_gz(tmp_path: Path) -> None:
    root = tmp_path / "dump"
    (root / "ns" / "shop").mkdir(parents=True)
    (root / "pods.yaml").write_text(yaml.safe_dump(_pod("a")))
    (root / "ns" / "shop" / "pods.json").write_text(json.dumps(_pod("b", "shop")))
    (root / "README.md").write_text("# not a manifest: ignored\n")
    expected = {("Pod", "default", "a"), ("Pod", "shop", "b")}
    assert _keys(load_snapshot(str(root)).objects()) == expected

    archive = tmp_path / "dump.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="dump")
    assert _keys(load_snapshot(str(archive)).objects()) == expected


def test_the_fixture_cluster_reads_whole() -> None:
    assert _keys(load_snapshot(str(FIXTURE)).objects()) == _keys(_fixture_objects())


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    good = yaml.safe_dump(_pod("a"))
    # The second document breaks on its third line: a mapping value where a sequence entry was.
    bad = "apiVersion: v1\nkind: Pod\nmetadata: {name: b\n  namespace: x\n"
    path.write_text(good + "---\n" + bad)
    bad_start = good.count("\n") + 2  # the line after the separator
    with pytest.raises(SourceError) as e:
        list(load_snapshot(str(path)).objects())
    message = str(e.value)
    assert message.startswith(f"{path}:")
    line = int(message.split(":")[1])
    assert bad_start + 2 <= line <= bad_start + 4, message
    assert "malformed YAML" in message


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "apiVersion": "v1",\n  "kind": "Pod",\n  "metadata": {"name": "a",}\n}\n')
    with pytest.raises(SourceError, match=rf"^{path}:4: malformed JSON"):
        list(load_snapshot(str(path)).objects())


@pytest.mark.parametrize("text, what", [
    ("just a string\n", "str"),
    ("- 1\n- 2\n", "int"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {}\n", "metadata.name"),
])
def test_a_document_that_is_not_an_object(tmp_path: Path, text: str, what: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(yaml.safe_dump(_pod("a")) + "---\n" + text)
    with pytest.raises(SourceError, match=rf"^{path}:\d+: .*{what}") as e:
        list(load_snapshot(str(path)).objects())
    assert int(str(e.value).split(":")[1]) == yaml.safe_dump(_pod("a")).count("\n") + 1


def test_missing_path_and_unreadable_archive(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file or directory.*demo, live, context:NAME"):
        load_snapshot(str(tmp_path / "nope.yaml"))
    with pytest.raises(SourceError, match=r"nope\.yaml: no such file"):
        files_snapshot([tmp_path / "nope.yaml"])
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(SourceError, match=rf"^{broken}: not a readable \.tar\.gz"):
        list(load_snapshot(str(broken)).objects())


def test_secret_values_are_never_kept_from_files() -> None:
    secret = next(o for o in load_snapshot(str(FIXTURE)).objects() if o["kind"] == "Secret")
    assert secret["metadata"]["name"] == "cacerts"
    assert "data" not in secret and "stringData" not in secret


# ---------------------------------------------------------------- live cluster


@pytest.fixture
def kubeconfig_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point KUBECONFIG at a file in tmp_path; returns a function writing the servers' contexts there."""
    path = tmp_path / "kubeconfig"
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return lambda servers, current: write_kubeconfig(path, servers, current)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_live_pages_through_every_kind(kubeconfig_env) -> None:
    objects = _fixture_objects() + [_pod(f"p{i:02}", "shop") for i in range(11)]
    with serve(objects) as cluster:
        kubeconfig_env({"test": cluster.url}, "test")
        got = list(live_snapshot("test", page_size=3).objects())
        pod_lists = cluster.list_requests("/api/v1/pods")
    # Every object meshshtep reads arrived, once (no CRDs served: Istio kinds are not listed at all).
    istio = {k for k in _keys(objects) if k[0] == "PeerAuthentication"}
    assert sorted(_keys(got)) == sorted(_keys(objects) - istio)
    assert len(got) == len(objects) - len(istio)
    # 13 pods in pages of 3: five requests, four of them continuing the list.
    assert len(pod_lists) == 5
    assert all(r.params["limit"] == "3" for r in pod_lists)
    assert sorted(r.params.get("continue", "") for r in pod_lists) == ["", "12", "3", "6", "9"]


def test_managed_fields_are_kept_for_the_kinds_meshstep_changes_from_a_live_cluster_or_a_snapshot(
        kubeconfig_env, tmp_path: Path) -> None:
    """The API server's field-ownership record is kept (without its times) for the kinds a feature changes, whose
    owners a stage's gate names; never for the others (Secrets, ReplicaSets …): kilobytes an object, never read."""
    owned = [{"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
              "time": "2026-01-05T10:00:00Z", "fieldsType": "FieldsV1",
              "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:team": {}}}}},
             {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "subresource": "status",
              "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:phase": {}}}}]
    objects = _fixture_objects()
    for o in objects:
        o["metadata"]["managedFields"] = owned
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    with serve(objects) as cluster:
        kubeconfig_env({"test": cluster.url}, "test")
        inventories = [build_inventory(live_snapshot("test")), build_inventory(load_snapshot(str(snap)))]
    for inv in inventories:
        kept = {o.kind: o.raw["metadata"].get("managedFields") for kind in inv.objects for o in inv.objects[kind]}
        assert {"Service", "Namespace", "Secret"} <= kept.keys()
        # the owned fields kept as compact JSON text (a tenth of the memory of nested maps)
        assert kept["Namespace"] == kept["Service"] == [
            {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
             "fieldsV1": '{"f:metadata":{"f:labels":{".":{},"f:team":{}}}}'}]
        assert kept["Secret"] is None


def test_live_forbidden_kind_is_noted_and_the_rest_is_read(kubeconfig_env) -> None:
    objects = _fixture_objects()
    with serve(objects, forbidden={"secrets"}) as cluster:
        kubeconfig_env({"test": cluster.url}, "test")
        snapshot = live_snapshot("test")
        got = list(snapshot.objects())
    assert snapshot.visibility.forbidden == ["secrets"]
    kinds = {k for k, _, _ in _keys(got)}
    assert "Secret" not in kinds
    assert {"Namespace", "Pod", "Service", "ConfigMap", "MutatingWebhookConfiguration"} <= kinds


def test_live_without_istio_crds_says_istio_is_not_installed(kubeconfig_env, reference: Path) -> None:
    objects = _fixture_objects()
    with serve(objects) as cluster:
        kubeconfig_env({"test": cluster.url}, "test")
        bare = build_inventory(live_snapshot("test"))
    assert bare.visibility.not_installed == ["gateway-api", "istio"]

    crds = [d for d in yaml.safe_load_all((reference / "crds" / "crd-all.gen.yaml").read_text()) if d]
    with serve(objects + crds) as cluster:
        kubeconfig_env({"test": cluster.url}, "test")
        installed = build_inventory(live_snapshot("test"))
        listed = {r.url.path for r in cluster.emulator}
    assert installed.visibility.not_installed == ["gateway-api"]
    assert installed.get("PeerAuthentication", "istio-system", "default") is not None
    # Each Istio kind is listed at the version Kubernetes prefers: Telemetry is stored as v1alpha1, served as v1.
    assert "/apis/networking.istio.io/v1/virtualservices" in listed
    assert "/apis/telemetry.istio.io/v1/telemetries" in listed
    assert "/apis/telemetry.istio.io/v1alpha1/telemetries" not in listed
    assert "/apis/extensions.istio.io/v1alpha1/wasmplugins" in listed  # served as v1alpha1 only


def test_live_crds_are_paged_through_and_every_istio_kind_listed(kubeconfig_env, reference: Path) -> None:
    crds = [d for d in yaml.safe_load_all((reference / "crds" / "crd-all.gen.yaml").read_text()) if d]
    with serve(_fixture_objects() + crds) as cluster:
        kubeconfig_env({"test": cluster.url}, "test")
        inv = build_inventory(live_snapshot("test", page_size=4))
        crd_lists = cluster.list_requests(live.CRD_KIND.path)
        listed = {r.url.path for r in cluster.emulator}
    pages = -(-len(crds) // 4)
    assert len(crd_lists) == pages and sum("continue" in r.params for r in crd_lists) == pages - 1
    assert len(inv.crds) == len(crds)
    for c in inv.crds.values():  # the kinds of the CRDs of every page are listed
        assert any(p.startswith(f"/apis/{c.group}/") and p.endswith(f"/{c.plural}") for p in listed), c.name


@pytest.mark.parametrize("aggregated", [True, False])
def test_live_forbidden_crds_still_read_every_istio_kind(kubeconfig_env, reference: Path, aggregated: bool) -> None:
    """Discovery, not the CRD list, says which Istio kinds are served: a role that may not list CRDs (403) reads
    every one of them all the same, and discovery also says what is not installed. Both forms of discovery: the
    aggregated document, and /apis with one resource list per group version."""
    crds = [d for d in yaml.safe_load_all((reference / "crds" / "crd-all.gen.yaml").read_text()) if d]
    with serve(_fixture_objects() + crds) as cluster:
        cluster.emulator.aggregated_discovery = aggregated
        kubeconfig_env({"test": cluster.url}, "test")
        clean = build_inventory(live_snapshot("test"))
        cluster.emulator.forbidden.add("customresourcedefinitions")
        inv = build_inventory(live_snapshot("test"))
        listed = {r.url.path for r in cluster.emulator}
    assert inv.visibility.forbidden == ["customresourcedefinitions"]
    assert [n.kind for n in inv.visibility.not_visible] == ["CustomResourceDefinition"]
    assert inv.visibility.not_installed == clean.visibility.not_installed == ["gateway-api"]
    assert inv.get("PeerAuthentication", "istio-system", "default") is not None
    istio = {k for k in clean.objects if clean.objects[k] and clean.objects[k][0].group.endswith("istio.io")}
    assert istio and {k: len(inv.objects[k]) for k in istio} == {k: len(clean.objects[k]) for k in istio}
    for c in clean.crds.values():  # every Istio kind is listed, at the version Kubernetes prefers
        assert any(p.startswith(f"/apis/{c.group}/") and p.endswith(f"/{c.plural}") for p in listed), c.name
    assert "/apis/telemetry.istio.io/v1/telemetries" in listed
    # Without the CRDs, discovery still knows Istio is not installed.
    with serve(_fixture_objects(), forbidden={"customresourcedefinitions"}) as cluster:
        kubeconfig_env({"test": cluster.url}, "test")
        bare = build_inventory(live_snapshot("test"))
    assert bare.visibility.not_installed == ["gateway-api", "istio"]


def test_manifests_claim_nothing_about_installation() -> None:
    # A set of manifests without CRDs is not a cluster without Istio.
    assert build_inventory(load_snapshot(str(FIXTURE))).visibility.not_installed == []


def test_live_unreachable_server_fails_fast_naming_server_and_context(kubeconfig_env) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    kubeconfig_env({"gone": url}, "gone")
    started = time.monotonic()
    with pytest.raises(SourceError) as e:
        list(load_snapshot("context:gone").objects())
    assert time.monotonic() - started < kubeapi.CONNECT_TIMEOUT.value + 2
    assert url in str(e.value) and "'gone'" in str(e.value)


def test_live_context_is_chosen_from_kubeconfig(kubeconfig_env) -> None:
    with serve(_fixture_objects()) as cluster:
        # The current context points nowhere; `context:staging` must be used instead.
        kubeconfig_env({"broken": f"http://127.0.0.1:{_closed_port()}", "staging": cluster.url}, "broken")
        snapshot = load_snapshot("context:staging")
        got = list(snapshot.objects())
    assert snapshot.label == "context:staging"
    assert ("Namespace", None, "shop") in _keys(got)
    with pytest.raises(SourceError, match="'nowhere'"):
        load_snapshot("context:nowhere")


@pytest.mark.parametrize("server_honours_accept", [True, False])
def test_live_secrets_are_read_as_metadata_only(kubeconfig_env, server_honours_accept: bool) -> None:
    with serve(_fixture_objects()) as cluster:
        cluster.emulator.honour_metadata_only = server_honours_accept
        kubeconfig_env({"test": cluster.url}, "test")
        got = list(live_snapshot("test").objects())
        secret_lists = cluster.list_requests("/api/v1/secrets")
    assert secret_lists and all("as=PartialObjectMetadataList" in r.headers["Accept"] for r in secret_lists)
    secret = next(o for o in got if o["kind"] == "Secret")
    assert secret["metadata"]["name"] == "cacerts"
    # Whatever the server sends, no value is kept.
    assert "data" not in secret and "stringData" not in secret


def test_live_configmaps_only_istios_own(kubeconfig_env) -> None:
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-settings", "namespace": "shop"},
             "data": {"password": "x"}}
    with serve(_fixture_objects() + [other]) as cluster:
        kubeconfig_env({"test": cluster.url}, "test")
        got = list(live_snapshot("test").objects())
    assert [o["metadata"]["name"] for o in got if o["kind"] == "ConfigMap"] == ["istio-1-27"]


def test_live_kinds_are_listed_concurrently(kubeconfig_env) -> None:
    with serve(_fixture_objects()) as cluster:
        cluster.emulator.delay = 0.2
        kubeconfig_env({"test": cluster.url}, "test")
        started = time.monotonic()
        list(live_snapshot("test").objects())
        elapsed = time.monotonic() - started
        lists = sum(1 for r in cluster.emulator if r.params.get("limit"))
    assert cluster.emulator.most_in_flight >= 4
    # 12 lists of 0.2 s each: one after the other would take 2.4 s.
    assert lists == 12 and elapsed < lists * 0.2 / 2


# ---------------------------------------------------------------- hostile and broken files: bounded, refused cleanly


def _alias_bomb(levels: int = 9, in_args: bool = True) -> str:
    """A few hundred bytes whose aliases expand to 9**levels strings, in a container's args (else only in fields
    of the document no one reads)."""
    anchors = ["x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    anchors += [f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    pod = ("apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: shop}\n"
           f"spec:\n  containers:\n  - {{name: app, image: app, args: {f'*a{levels - 1}' if in_args else '[a]'}}}\n")
    return "\n".join(anchors) + "\n" + pod


def test_a_yaml_alias_bomb_is_refused_naming_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())
    with pytest.raises(SourceError, match=rf"^{path}:1: its YAML aliases expand it by [\d,]+ nodes, more than the "
                                          r"100,000 nodes .*MESHSTEP_MAX_ALIAS_NODES"):
        list(load_snapshot(str(path)).objects())


def test_aliases_within_the_limit_are_read_and_the_limit_can_be_raised(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text(_alias_bomb(levels=6, in_args=False))  # 9**6 = 531,441 strings
    with pytest.raises(SourceError, match="MESHSTEP_MAX_ALIAS_NODES"):
        list(load_snapshot(str(path)).objects())
    monkeypatch.setenv("MESHSTEP_MAX_ALIAS_NODES", "2000000")
    (pod,) = [o for o in load_snapshot(str(path)).objects() if o.get("kind") == "Pod"]
    assert pod["metadata"]["name"] == "x"


def test_a_self_referencing_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cycle.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: &d {self: *d}\n")
    with pytest.raises(SourceError, match=rf"^{path}:1: a YAML alias refers to a node that contains it"):
        list(load_snapshot(str(path)).objects())


def test_a_file_over_the_size_limit_is_refused_without_reading_it_all(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MESHSTEP_MAX_FILE_MB", "1")
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * (2 << 20) + "\n")
    with pytest.raises(SourceError, match=rf"^{path}: larger than that, more than the 1 MiB a snapshot file .*"
                                          "MESHSTEP_MAX_FILE_MB"):
        list(load_snapshot(str(path)).objects())


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    import io

    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_an_archive_expanding_past_the_limits_is_refused_before_it_is_expanded(tmp_path: Path, monkeypatch) -> None:
    # 64 MiB of spaces compress to ~64 KiB: the member's declared size is refused before a byte is expanded.
    monkeypatch.setenv("MESHSTEP_MAX_FILE_MB", "16")
    bomb = _tar(tmp_path / "bomb.tar.gz", {"spaces.yaml": b" " * (64 << 20)})
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(SourceError, match=rf"^{bomb}:spaces.yaml: 64 MiB expanded, more than the 16 MiB"):
        list(load_snapshot(str(bomb)).objects())
    # Many members each under the per-file limit: the whole source's limit holds.
    monkeypatch.setenv("MESHSTEP_MAX_SOURCE_MB", "20")
    many = _tar(tmp_path / "many.tar.gz", {f"m{i}.yaml": b"#" * (8 << 20) for i in range(3)})
    with pytest.raises(SourceError, match=r"more than 20 MiB.*MESHSTEP_MAX_SOURCE_MB"):
        list(load_snapshot(str(many)).objects())


def test_an_archive_with_too_many_members_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MESHSTEP_MAX_FILES", "50")
    many = _tar(tmp_path / "many.tar.gz", {f"m{i}.txt": b"" for i in range(51)})
    with pytest.raises(SourceError, match=r"more than 50 files.*MESHSTEP_MAX_FILES"):
        list(load_snapshot(str(many)).objects())


def test_a_non_utf8_archive_member_names_the_member(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "snap.tar.gz", {"ok.yaml": yaml.safe_dump(_pod("a")).encode(),
                                             "bad.yaml": b"kind: Pod\nname: \xff\xfe\n"})
    with pytest.raises(SourceError, match=rf"^{archive}:bad.yaml:2: not UTF-8 text"):
        list(load_snapshot(str(archive)).objects())


def test_a_json_list_is_read_from_its_bytes_and_must_be_utf8_even_where_meshstep_skips(tmp_path: Path) -> None:
    pod = _pod("café")  # UTF-8 beyond ASCII: read as written
    pod["metadata"]["annotations"] = {"owner": "Zoë"}
    good = tmp_path / "good.json"
    good.write_bytes(json.dumps({"apiVersion": "v1", "kind": "List", "items": [pod]}, ensure_ascii=False).encode())
    [read] = build_inventory(load_snapshot(str(good))).pods
    assert (read.name, read.annotations) == ("café", {"owner": "Zoë"})
    # Bytes that are not UTF-8 in a field no decoder builds (a pod's volumes) are found all the same.
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"apiVersion": "v1", "kind": "List", "items": [\n{"apiVersion": "v1", "kind": "Pod", '
                    b'"metadata": {"name": "a", "namespace": "x"}, "spec": {"volumes": [{"name": "\xff\xfe"}]}}]}')
    with pytest.raises(SourceError, match=rf"^{bad}:2: not UTF-8 text"):
        build_inventory(load_snapshot(str(bad)))


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "/proc", "/proc/self/environ", "/", "/sys"])
def test_system_paths_are_refused(path: str) -> None:
    with pytest.raises(SourceError, match=rf"^{path}: .*not a snapshot"):
        list(load_snapshot(path).objects())


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "snap.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(SourceError, match=rf"^{fifo}: a named pipe \(FIFO\), not a snapshot"):
        list(load_snapshot(str(fifo)).objects())
    # In a directory too (and a symlink to a device).
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    with pytest.raises(SourceError, match="not a snapshot"):
        list(load_snapshot(str(tmp_path)).objects())
    assert time.monotonic() - started < 5


def test_an_empty_file_and_an_empty_directory_are_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("\n  \n")
    with pytest.raises(SourceError, match=rf"^{empty}: empty"):
        list(load_snapshot(str(empty)).objects())
    (tmp_path / "d").mkdir()
    with pytest.raises(SourceError, match="no snapshot files in this directory"):
        list(load_snapshot(str(tmp_path / "d")).objects())


def test_an_unreadable_subdirectory_is_an_error() -> None:
    import shutil
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="meshstep-unreadable-"))  # not under root's private pytest directory
    tmp_path.chmod(0o755)
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(_pod("a")))
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "b.yaml").write_text(yaml.safe_dump(_pod("b")))
    hidden.chmod(0)
    # Root reads every directory: the reading then runs in a child process that has become nobody.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        message = "read without error"
        try:
            if os.geteuid() == 0:
                os.setuid(65534)
            list(load_snapshot(str(tmp_path)).objects())
        except SourceError as e:
            message = str(e)
        except BaseException as e:
            message = repr(e)
        finally:
            os.write(write, message.encode())
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        message = f.read()
    hidden.chmod(0o755)
    shutil.rmtree(tmp_path)
    assert message.startswith(f"{hidden}: cannot read this directory"), message


# ---------------------------------------------------------------- wrong types: checked at the edge


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p["metadata"].update(labels=["a", "b"]), "Pod shop/x: metadata.labels is a list, not a map"),
    (lambda p: p["spec"].update(containers="app"), "Pod shop/x: spec.containers is a string, not a list"),
    (lambda p: p["spec"]["containers"][0].update(args=[["deep"]]),
     r"Pod shop/x: spec.containers\[0\].args\[0\] is a list, not a string"),
    (lambda p: p["spec"]["containers"][0].update(ports=[{"containerPort": "80"}]),
     r"spec.containers\[0\].ports\[0\].containerPort is a string, not an integer"),
    (lambda p: p["metadata"].update(ownerReferences=[True]), r"metadata.ownerReferences\[0\] is a boolean"),
    (lambda p: p.update(kind=7), "kind is an integer, not a string"),
])
def test_a_field_of_the_wrong_type_names_file_line_object_and_field(tmp_path: Path, change, message: str) -> None:
    pod = _pod("x", "shop")
    change(pod)
    path = tmp_path / "snap.yaml"
    path.write_text("---\n" + yaml.safe_dump(_pod("ok")) + "---\n" + yaml.safe_dump(pod))
    with pytest.raises(SourceError, match=rf"^{path}:\d+: .*{message}"):
        list(load_snapshot(str(path)).objects())


def test_istio_kinds_are_checked_against_the_typed_models_shapes(tmp_path: Path) -> None:
    gw = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": "shop"},
          "spec": {"servers": [{"port": {"number": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}}
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(gw))
    with pytest.raises(SourceError, match=r"Gateway shop/gw: spec.servers\[0\].port.number is a string, not an "
                                          "integer"):
        list(load_snapshot(str(path)).objects())
    gw["spec"]["servers"][0]["port"]["number"] = 80
    gw["spec"]["servers"][0]["tls"] = None  # dropped, as the API server drops a null
    path.write_text(yaml.safe_dump(gw))
    (read,) = load_snapshot(str(path)).objects()
    assert "tls" not in read["spec"]["servers"][0]


def test_the_istio_shapes_are_generated_from_the_installed_models() -> None:
    from cluster import shapes

    assert json.loads(shapes.ISTIO_SHAPES.read_text()) == shapes.generate(), \
        "stale: python -m cluster.shapes > cluster/istio_shapes.json"


def test_live_items_of_the_wrong_type_name_the_server_and_object() -> None:
    from cluster.live import CORE_KINDS

    pods = next(k for k in CORE_KINDS if k.kind == "Pod")
    bad = _pod("x", "shop") | {"metadata": {"name": "x", "namespace": "shop", "annotations": {"a": 1}}}
    page = RawPage(pods, json.dumps({"items": [bad]}).encode(), "https://k8s (ctx)")
    with pytest.raises(SourceError, match=r"^listing pods on https://k8s \(ctx\): Pod shop/x: metadata.annotations.a "
                                          "is an integer, not a string"):
        page.parse()


# ---------------------------------------------------------------- a live read has one deadline


@contextmanager
def _dripping_server(drip: float = 0.05) -> Iterator[str]:
    """A real HTTP server on loopback that answers /version at once and every list a byte at a time, each byte
    well within any per-read timeout: only an overall deadline ends such a read."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    stop = threading.Event()

    class Drip(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            body = json.dumps({"major": "1", "minor": "31"} if self.path == "/version" else
                              {"kind": "List", "metadata": {}, "items": []}).encode() + b" " * 100_000
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path == "/version":
                self.wfile.write(body)
                return
            for i in range(len(body)):
                if stop.wait(drip):
                    return
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def test_a_dripping_server_is_cut_off_at_the_read_deadline_with_progress_shown(kubeconfig_env, monkeypatch) -> None:
    monkeypatch.setenv("MESHSTEP_READ_TIMEOUT", "3")
    monkeypatch.setattr(live, "PROGRESS_AFTER", 1.0)
    lines: list[str] = []
    with _dripping_server() as url:
        kubeconfig_env({"drip": url}, "drip")
        started = time.monotonic()
        with pytest.raises(SourceError, match=rf"^reading the cluster at {url} \(kubeconfig context 'drip'\) took "
                                              r"longer than 3 s .*MESHSTEP_READ_TIMEOUT=SECONDS"):
            list(live_snapshot("drip", progress=lines.append).objects())
        took = time.monotonic() - started
    assert 3 <= took < 8, took
    assert lines and lines[0].startswith(f"reading {url} (kubeconfig context 'drip'): ") and lines[-1] == ""
    assert "of at most 3 s" in lines[0]


# ---------------------------------------------------------------- pods decoded typed (JSON snapshots, live pages)


def _deep_pod() -> dict:
    pod = _pod("x", "shop")
    pod["spec"]["containers"].append({"name": "sidecar", "image": "s:1",
                                      "readinessProbe": {"httpGet": {"port": [15021], "path": "/ready"}}})
    return pod


def _json_list(tmp_path: Path, items: list[dict]) -> Path:
    path = tmp_path / "snap.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2))
    return path


def test_a_wrong_type_deep_in_a_json_snapshots_pod_names_file_line_object_and_field(tmp_path: Path) -> None:
    path = _json_list(tmp_path, [_pod("ok", "shop"), _deep_pod()])
    line = path.read_text().splitlines().index("    {", 5) + 1  # where the second item starts
    with pytest.raises(SourceError, match=rf"^{path}:{line}: Pod shop/x: spec.containers\[1\].readinessProbe.httpGet"
                                          r".port is a list, not a port number or name"):
        build_inventory(load_snapshot(str(path)))
    with pytest.raises(SourceError, match=rf"^{path}:{line}: Pod shop/x: spec.containers\[1\]"):
        list(load_snapshot(str(path)).objects())  # read as dicts: the same error


def test_a_wrong_type_deep_in_a_live_pod_names_the_server_and_object() -> None:
    page = RawPage(POD_KIND, json.dumps({"items": [_pod("ok", "shop"), _deep_pod()]}).encode(),
                   "https://k8s (ctx)")
    with pytest.raises(SourceError, match=r"^listing pods on https://k8s \(ctx\): Pod shop/x: spec.containers\[1\]"
                                          r".readinessProbe.httpGet.port is a list, not a port number or name"):
        page.pods()


def test_a_pod_without_its_required_name_is_refused(tmp_path: Path) -> None:
    nameless = _pod("x", "shop")
    del nameless["metadata"]["name"]
    path = _json_list(tmp_path, [_pod("ok", "shop"), nameless])
    with pytest.raises(SourceError, match=rf"^{path}:\d+: .*metadata.name are required"):
        build_inventory(load_snapshot(str(path)))
    page = RawPage(POD_KIND, json.dumps({"items": [nameless]}).encode(), "https://k8s (ctx)")
    with pytest.raises(SourceError, match=r"^listing pods on https://k8s \(ctx\): Pod shop/None: metadata.name is "
                                          "required"):
        page.pods()


def test_fields_meshstep_does_not_read_are_skipped_whatever_their_type(tmp_path: Path) -> None:
    """Unknown fields, and fields meshstep does not decode (of any type), are ignored; the typed read of a JSON
    snapshot gives the same inventory as the dict read of the same objects as YAML."""
    pods = [_pod(f"p{i}", "shop") for i in range(3)]
    for p in pods:
        p["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
        p["spec"]["volumes"] = "not even a list"
        p["spec"]["containers"][0]["resources"] = 7
        p["spec"]["futureField"] = {"x": [1, 2]}
        p["status"] = {"phase": "Running", "podIP": "10.0.0.1", "containerStatuses": {"odd": True},
                       "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": None}]}
    pods[1]["metadata"]["labels"] = {"app": "a"}
    pods[1]["spec"]["containers"][0]["readinessProbe"] = {"tcpSocket": {"port": "http"}, "periodSeconds": 5}
    objects = _fixture_objects() + pods
    typed = build_inventory(load_snapshot(str(_json_list(tmp_path, objects))))
    (tmp_path / "snap.yaml").write_text(yaml.safe_dump_all(objects))
    plain = build_inventory(load_snapshot(str(tmp_path / "snap.yaml")))
    assert typed.pods == plain.pods and len(typed.pods) == len(plain.pods) >= 3
    p1 = next(p for p in typed.pods if p.name == "p1")
    assert p1.ready and p1.ip == "10.0.0.1" and p1.labels == {"app": "a"}
    assert p1.spec.containers[0].probes[0].handler == "tcpSocket" and p1.spec.containers[0].probes[0].port == "http"
