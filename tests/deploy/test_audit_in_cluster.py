"""The deployed app's audit chain, end to end: the container's environment as `kubectl kustomize
deploy/overlays/read-only` renders it, resolved as the kubelet resolves it (each secretKeyRef read from its Secret,
fieldRef, `$(VAR)`), against a Kubernetes API on loopback (tests/kube.py) that holds the operator's Secrets and the
checkpoint ConfigMap, and the PostgreSQL server. The chain verifies with the key from the Secret and no one's own
copy; a rotated key (the Secret updated, the pod restarted) leaves every earlier event verifiable; a database
writer without the key who rewinds or re-hashes the trail is caught by the checkpoint in the ConfigMap — after the
pod's own files are gone (a restart empties its emptyDir) — and so is a checkpoint written without the key."""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from state.store import Store
from tests.deploy.test_deploy import one, rendered
from tests.kube import serve
from tests.state.conftest import pg_url  # noqa: F401 (the fixture)
from tests.state.test_tamper import _rehash, _sql

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "meshstep"
CHECKPOINTS = "meshstep-audit-checkpoints"
pytestmark = pytest.mark.postgres


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NAMESPACE},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def kubelet_env(container: dict[str, Any], pod: dict[str, Any], api: client.CoreV1Api) -> dict[str, str]:
    """The container's environment as the kubelet makes it: `value` with `$(VAR)` of the variables before it
    expanded (https://kubernetes.io/docs/tasks/inject-data-application/define-interdependent-environment-variables/),
    a secretKeyRef read from its Secret (an optional one missing is left out:
    https://kubernetes.io/docs/concepts/configuration/secret/#using-secrets-as-environment-variables), a fieldRef of
    the pod's metadata (https://kubernetes.io/docs/concepts/workloads/pods/downward-api/)."""
    env: dict[str, str] = {}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group()), e["value"])
        elif ref := e["valueFrom"].get("secretKeyRef"):
            try:
                data = api.read_namespaced_secret(ref["name"], pod["namespace"]).data or {}
            except client.ApiException as x:
                if x.status == 404 and ref.get("optional"):
                    continue
                raise
            if ref["key"] in data:
                env[e["name"]] = base64.b64decode(data[ref["key"]]).decode()
            elif not ref.get("optional"):
                raise AssertionError(f"{ref['name']} has no key {ref['key']}: the pod would not start")
        else:
            path = e["valueFrom"]["fieldRef"]["fieldPath"]
            env[e["name"]] = pod[path.removeprefix("metadata.")]
    return env


class Pod:
    """The container's process as the Deployment runs it: its environment from the cluster, its writable /tmp an
    emptyDir (a directory here, new at each start), the cluster's API through a kubeconfig (where a pod has its
    service account's token)."""

    def __init__(self, cluster, tmp: Path) -> None:
        self.cluster, self.tmp, self.starts = cluster, tmp, 0
        self.kubeconfig = cluster.kubeconfig(tmp / "kubeconfig")
        self.start()

    def start(self) -> None:
        """(Re)start: the environment read again from the Secrets, an empty /tmp."""
        self.starts += 1
        self.scratch = self.tmp / f"emptydir-{self.starts}"
        self.scratch.mkdir()
        [container] = one("read-only", "Deployment", "meshstep")["spec"]["template"]["spec"]["containers"]
        api = client.CoreV1Api(config.new_client_from_config(str(self.kubeconfig)))
        env = kubelet_env(container, {"namespace": NAMESPACE}, api)
        self.env = {k: str(self.scratch) + v.removeprefix("/tmp") if v.startswith("/tmp") else v
                    for k, v in env.items()}
        self.env |= {"KUBECONFIG": str(self.kubeconfig), "PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}

    def meshstep(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "app.cli", *argv], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=120)


def _set_key(pod: Pod, data: dict[str, str]) -> None:
    """The operator's rotation: the Secret replaced through the API."""
    api = client.CoreV1Api(config.new_client_from_config(str(pod.kubeconfig)))
    secret = api.read_namespaced_secret("meshstep-audit", NAMESPACE)
    secret.data = _secret("meshstep-audit", data)["data"]
    api.replace_namespaced_secret("meshstep-audit", NAMESPACE, secret)


def _checkpoint(cluster) -> dict[str, Any]:
    [value] = cluster.emulator.objects[_configmaps(cluster), NAMESPACE, CHECKPOINTS]["data"].values()
    return json.loads(value)


def _configmaps(cluster):
    return next(r for r in cluster.emulator.resources if r.plural == "configmaps" and r.group == "")


def test_the_deployed_chain_verifies_with_the_secret_and_catches_a_database_writer(pg_url, tmp_path) -> None:  # noqa: F811
    key1, key2 = "k1-" + "a" * 61, "k2-" + "b" * 61
    manifests = [o for o in rendered("read-only") if o["kind"] in ("Namespace", "ConfigMap")]
    secrets = [_secret("meshstep-database", {"url": pg_url}), _secret("meshstep-audit", {"key": key1})]
    with serve([*manifests, *secrets], writes=True) as cluster:
        pod = Pod(cluster, tmp_path)
        assert pod.env["MESHSTEP_AUDIT_CHECKPOINTS"] == f"configmap:{NAMESPACE}/{CHECKPOINTS}"
        assert pod.env["MESHSTEP_AUDIT_KEY"] == key1 and pod.env["MESHSTEP_DATABASE_URL"] == pg_url
        for feature in ("tracing", "metrics", "access-logging"):
            r = pod.meshstep("flags", "set", feature, "--scope", "mesh", "-s", "demo", "--actor", "alice",
                             "--reason", "observe")
            assert r.returncode == 0, r.stderr
        verified = pod.meshstep("audit", "--verify")
        assert verified.returncode == 0, verified.stderr
        n = int(re.match(r"audit chain verified: (\d+) events", verified.stdout).group(1))  # with the cluster's
        assert f"checkpoint at event {n} (ConfigMap {NAMESPACE}/{CHECKPOINTS})" in verified.stdout
        assert _checkpoint(cluster)["seq"] == n >= 3
        # The key came from the Secret only: no one's copy was made, and a user's own key cannot vouch for the trail.
        assert not list(tmp_path.rglob("audit.key"))
        user = pod.env | {"MESHSTEP_AUDIT_KEY": ""}
        mine = subprocess.run([sys.executable, "-m", "app.cli", "audit", "--verify"], cwd=ROOT, env=user,
                              capture_output=True, text=True, timeout=120)
        assert mine.returncode == 1 and "event 1 was altered" in mine.stderr

        # Rotation: the operator puts the new key in the Secret and the old one in `retired`; the pod restarts.
        _set_key(pod, {"key": key2, "retired": f"{key1}@{datetime.now(UTC).isoformat(timespec='seconds')}"})
        pod.start()
        assert pod.meshstep("flags", "set", "tracing", "--scope", "mesh", "-s", "demo", "--state", "off",
                            "--actor", "alice", "--reason", "quiet").returncode == 0
        verified = pod.meshstep("audit", "--verify")
        assert verified.returncode == 0, verified.stderr
        assert re.search(rf"events 1-{n} by key generation 1 of 2 \([0-9a-f:]+\), events {n + 1}-{n + 1} by key "
                         "generation 2 of 2", verified.stdout), verified.stdout

        # A database writer (the URL, not the key) re-hashes the whole trail with the plain hash, which reads as a
        # trail from before keys; the pod restarts meanwhile, so nothing of its own files is left.
        writer = Store.open(pg_url)
        try:
            _rehash(writer, edit=lambda ev: setattr(ev, "reason", "approved by the CISO") if ev.seq == 2 else None)
            pod.start()
            caught = pod.meshstep("audit", "--verify")
            assert caught.returncode == 1 and f"event {n + 1} is not the one the checkpoint in ConfigMap {NAMESPACE}/" \
                                              f"{CHECKPOINTS}" in caught.stderr, caught.stderr

            # Or cuts the last event and rewinds the head (the tables made to agree).
            last, before = writer.audit_events()[-1], writer.audit_events()[-2]
            _sql(writer, "DELETE FROM audit_events WHERE seq = :seq", seq=last.seq)
            _sql(writer, "UPDATE audit_head SET seq = :seq, hash = :hash", seq=before.seq, hash=before.hash)
        finally:
            writer.close()
        caught = pod.meshstep("audit", "--verify")
        assert caught.returncode == 1 and f"the trail was cut back to {n} events" in caught.stderr, caught.stderr

        # A checkpoint rewritten to match, by someone who may edit the ConfigMap but holds no key, is not believed.
        api = client.CoreV1Api(config.new_client_from_config(str(pod.kubeconfig)))
        cm = api.read_namespaced_config_map(CHECKPOINTS, NAMESPACE)
        cm.data = {k: json.dumps(json.loads(v) | {"seq": before.seq, "hash": before.hash}) for k, v in cm.data.items()}
        api.replace_namespaced_config_map(CHECKPOINTS, NAMESPACE, cm)
        caught = pod.meshstep("audit", "--verify")
        assert caught.returncode == 1 and "is not signed with the audit key" in caught.stderr, caught.stderr
