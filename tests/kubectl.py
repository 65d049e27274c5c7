"""`kubectl apply --dry-run=client -f FILE` for tests. kubectl maps each document's apiVersion and kind through the
API server's discovery even in a client-side dry run, so a discovery-only API is served here on loopback: Kubernetes'
built-in kinds and every served version of Istio's and the Gateway API's CRDs from the reference data. Object
schemas are not served (kubectl runs with --validate=false): meshstep checks them against the same CRDs itself."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from benchmarks.kubeapi import write_kubeconfig
from cluster.kubectl_apply import merge_patch
from tests.conftest import REFERENCE

GATEWAY_API = REFERENCE.parent / "gateway-api-reference" / "crds"
# group/version → [(plural, kind, namespaced)]
BUILTIN = {
    "v1": [("namespaces", "Namespace", False), ("pods", "Pod", True), ("services", "Service", True),
           ("configmaps", "ConfigMap", True), ("secrets", "Secret", True),
           ("serviceaccounts", "ServiceAccount", True), ("resourcequotas", "ResourceQuota", True)],
    "apps/v1": [("deployments", "Deployment", True), ("statefulsets", "StatefulSet", True),
                ("daemonsets", "DaemonSet", True)],
    "admissionregistration.k8s.io/v1": [("mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False),
                                        ("validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False)],
}


def _resources() -> dict[str, list[tuple[str, str, bool]]]:
    out = {gv: list(rs) for gv, rs in BUILTIN.items()}
    files = [REFERENCE / "crds" / "crd-all.gen.yaml", *sorted(GATEWAY_API.glob("**/*.yaml"))]
    for f in files:
        for crd in yaml.safe_load_all(f.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for v in spec["versions"]:
                if v.get("served"):
                    out.setdefault(f"{spec['group']}/{v['name']}", []).append(
                        (spec["names"]["plural"], spec["names"]["kind"], spec["scope"] == "Namespaced"))
    return out


def _handler(resources: dict[str, list[tuple[str, str, bool]]]) -> type[BaseHTTPRequestHandler]:
    groups: dict[str, list[str]] = {}
    for gv in resources:
        if "/" in gv:
            group, version = gv.split("/")
            groups.setdefault(group, []).append(version)

    def body(path: str) -> dict | None:
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                 "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}} for g, vs in groups.items()]}
        gv = path.removeprefix("/api/").removeprefix("/apis/")
        if gv in resources:
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
                {"name": plural, "singularName": kind.lower(), "kind": kind, "namespaced": namespaced,
                 "verbs": ["get", "list", "create", "update", "patch", "delete"]}
                for plural, kind, namespaced in resources[gv]]}
        return None

    class Discovery(BaseHTTPRequestHandler):
        live: dict[str, dict] = {}  # object path → the object as the server holds it (see `live_kubectl`)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?")[0]
            found = body(path) if path not in self.live else self.live[path]
            self.answer(found)

        def do_PATCH(self) -> None:  # noqa: N802
            """A merge patch, as the API server merges kubectl's patch of a map (null deletes a key)."""
            path = self.path.split("?")[0]
            patch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if path in self.live:
                self.live[path] = merge_patch(self.live[path], patch)
            self.answer(self.live.get(path))

        def answer(self, found: dict | None) -> None:
            data = json.dumps(found if found is not None else {"kind": "Status", "code": 404}).encode()
            self.send_response(200 if found is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return Discovery


@contextmanager
def _server(tmp: Path, live: dict[str, dict]) -> Iterator[Callable[..., tuple[int, str]]]:
    """A function that runs kubectl with the given arguments against the loopback API and returns (exit code,
    output). Skips locally without kubectl; fails under CI."""
    if shutil.which("kubectl") is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl not found: .ci/run installs Debian's kubernetes-client")
        pytest.skip("kubectl not installed (apt-get install kubernetes-client)")
    handler = _handler(_resources())
    handler.live = live
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = write_kubeconfig(tmp / "kubeconfig", {"test": f"http://127.0.0.1:{server.server_port}"}, "test")
    env = {**os.environ, "KUBECONFIG": str(config), "HOME": str(tmp)}

    def run(*args: str) -> tuple[int, str]:
        r = subprocess.run(["kubectl", *args], env=env, capture_output=True, text=True, timeout=120)
        return r.returncode, r.stdout + r.stderr

    try:
        yield run
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def kubectl(tmp: Path) -> Iterator[Callable[[Path], tuple[int, str]]]:
    """A function that runs `kubectl apply --dry-run=client -f FILE` against a discovery API on loopback and
    returns (exit code, output)."""
    with _server(tmp, {}) as run:
        yield lambda path: run("apply", "--dry-run=client", "--validate=false", "-f", str(path))


def object_path(o: dict) -> str:
    """The API path of a built-in object (`/api/v1/namespaces/shop`, `/apis/apps/v1/namespaces/x/deployments/y`)."""
    api = o["apiVersion"]
    base = f"/api/{api}" if "/" not in api else f"/apis/{api}"
    plural = next(p for p, kind, _ in BUILTIN[api] if kind == o["kind"])
    meta = o["metadata"]
    return base + (f"/namespaces/{meta['namespace']}" if meta.get("namespace") else "") + f"/{plural}/{meta['name']}"


@contextmanager
def live_kubectl(tmp: Path, objects: list[dict]) -> Iterator[tuple[Callable[..., tuple[int, str]], dict[str, dict]]]:
    """kubectl against an API that holds `objects` (built-in kinds) and takes kubectl's PATCH of them: what
    `kubectl apply` or `kubectl label` really sends, merged as the server merges it. Yields the runner (any kubectl
    arguments) and the objects by API path as the server holds them."""
    live = {object_path(o): o for o in objects}
    with _server(tmp, live) as run:
        yield run, live
