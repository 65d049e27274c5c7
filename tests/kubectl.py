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
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from benchmarks.kubeapi import write_kubeconfig
from tests.conftest import REFERENCE

GATEWAY_API = REFERENCE.parent / "gateway-api-reference" / "crds"
# group/version → [(plural, kind, namespaced)]
BUILTIN = {
    "v1": [("namespaces", "Namespace", False), ("pods", "Pod", True), ("services", "Service", True),
           ("configmaps", "ConfigMap", True), ("secrets", "Secret", True),
           ("serviceaccounts", "ServiceAccount", True)],
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
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            found = body(self.path.split("?")[0])
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
def kubectl(tmp: Path) -> Iterator[callable]:
    """A function that runs `kubectl apply --dry-run=client -f FILE` against a discovery API on loopback and
    returns (exit code, output). Skips locally without kubectl; fails under CI."""
    if shutil.which("kubectl") is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl not found: .ci/run installs Debian's kubernetes-client")
        pytest.skip("kubectl not installed (apt-get install kubernetes-client)")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(_resources()))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = write_kubeconfig(tmp / "kubeconfig", {"test": f"http://127.0.0.1:{server.server_port}"}, "test")
    env = {**os.environ, "KUBECONFIG": str(config), "HOME": str(tmp)}

    def dry_run(path: Path) -> tuple[int, str]:
        r = subprocess.run(["kubectl", "apply", "--dry-run=client", "--validate=false", "-f", str(path)],
                           env=env, capture_output=True, text=True, timeout=120)
        return r.returncode, r.stdout + r.stderr

    try:
        yield dry_run
    finally:
        server.shutdown()
        server.server_close()
