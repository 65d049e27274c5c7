"""deploy/: every overlay renders with `kubectl kustomize`, every object validates against the Kubernetes schemas
(kubernetes-validate), and the roles are proved against the code: the read-only ClusterRole is what the live source
lists (run against a Kubernetes API on loopback that grants exactly that role), never Secrets, never a write; the
apply overlay grants what the features render and roll back."""
from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cluster.errors import MeshstepError
from cluster.files import read_paths
from cluster.inventory import Inventory, build_inventory
from cluster.live import live_snapshot
from cluster.sources import load_snapshot
from features.base import registry, validate_params
from tests.conftest import REFERENCE
from tests.features import corpus
from tests.features.test_property import params, scopes
from tests.kube import _BUILTIN as BUILTIN
from tests.kube import serve

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OVERLAYS = ("read-only", "apply")
KUBERNETES_VERSION = "1.33.0"
READ_VERBS = {"get", "list", "watch"}
INVENTORY = Path(__file__).parents[1] / "fixtures" / "inventory" / "cluster.yaml"


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    """The objects `kubectl kustomize deploy/<overlay>` prints. Skips locally without kubectl; fails under CI."""
    if shutil.which("kubectl") is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl not found: .ci/run installs Debian's kubernetes-client")
        pytest.skip("kubectl not installed (apt-get install kubernetes-client)")
    r = subprocess.run(["kubectl", "kustomize", str(DEPLOY / "overlays" / overlay)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return tuple(d for d in yaml.safe_load_all(r.stdout) if d)


def one(overlay: str, kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in rendered(overlay) if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def grants(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) → verbs, from a role's rules."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_every_overlay_validates(overlay: str) -> None:
    objects = rendered(overlay)
    assert {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service",
            "NetworkPolicy"} <= {o["kind"] for o in objects}
    for o in objects:
        try:
            kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{overlay}: {o['kind']} {o['metadata']['name']}: {e.message} at {list(e.path)}")
    # The Secrets the Deployment refers to are the operator's to create (README, "Deploy"), never in the repository.
    assert "Secret" not in {o["kind"] for o in objects}


def test_the_deployment_runs_locked_down() -> None:
    deployment = one("read-only", "Deployment", "meshstep")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"] and "add" not in security["capabilities"]
    assert container["resources"]["requests"].keys() == {"cpu", "memory"}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/_stcore/health"
    assert container["args"][:1] == ["ui"] and "live" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MESHSTEP_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "meshstep-database"
    assert pod["serviceAccountName"] == "meshstep"
    # The Service and the NetworkPolicy select the pods the Deployment makes.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert one("read-only", "Service", "meshstep")["spec"]["selector"].items() <= labels.items()
    assert one("read-only", "NetworkPolicy", "meshstep")["spec"]["podSelector"]["matchLabels"].items() <= labels.items()


def _listed(path: str) -> tuple[str, str]:
    """(apiGroup, resource) of a collection URL: /api/v1/pods, /apis/apps/v1/deployments."""
    parts = path.strip("/").split("/")
    return ("", parts[2]) if parts[0] == "api" else (parts[1], parts[3])


def test_the_read_role_is_exactly_what_the_live_source_lists(monkeypatch, tmp_path: Path) -> None:
    """The live reader runs against an API server that grants exactly meshstep-read: it is refused nothing but
    Secrets (which the role never grants), and every resource the role grants is one it listed."""
    role = grants(one("read-only", "ClusterRole", "meshstep-read"))
    assert all(verbs == {"list"} for verbs in role.values()), role
    assert not [k for k in role if k[1] in ("secrets", "*") or k[0] == "*"]

    istio = read_paths([REFERENCE / "crds" / "crd-all.gen.yaml"])
    gateway_api = read_paths(sorted(corpus.GATEWAY_API_CRDS.glob("*.yaml")))
    objects = [*yaml.safe_load_all(INVENTORY.read_text()), *istio, *gateway_api]
    with serve([o for o in objects if o]) as cluster:
        served = {(r.group, r.plural) for r in cluster.emulator.resources}
        cluster.emulator.forbidden.update(plural for group, plural in served - role.keys())
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path / "kubeconfig")))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        snapshot = live_snapshot("test")
        assert list(snapshot.objects())
        # /version and discovery (/apis, /apis/GROUP/VERSION) are every authenticated user's (system:discovery)
        listed = {_listed(r.url.path) for r in cluster.emulator if r.method == "GET" and r.url.path != "/version"
                  and len(r.url.path.strip("/").split("/")) > (2 if r.url.path.startswith("/api/") else 3)}
    assert snapshot.visibility.forbidden == ["secrets"]
    assert listed == role.keys() | {("", "secrets")}
    assert not [r for r in cluster.emulator if r.method != "GET"]


def _resources(inv: Inventory, kind: str, api_version: str | None = None) -> set[tuple[str, str]]:
    """The (apiGroup, resource) a kind is served as: a deletion names only the kind (Gateway is both Istio's and
    the Gateway API's)."""
    group = api_version.rpartition("/")[0] if api_version else None
    found = {(c.group, c.plural) for c in inv.crds.values() if c.kind == kind and group in (None, c.group)}
    found |= {(api.rpartition("/")[0], plural) for api, plural, k in BUILTIN if k == kind}
    assert found, f"{kind}: not a kind the cluster serves"
    return found


def _written(inv: Inventory) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) → what applying every feature's rendering or rollback on `inv` does to it ("patch
    NAMESPACE" for an object applied, "delete NAMESPACE" for one removed)."""
    out: dict[tuple[str, str], set[str]] = {}
    for feature in registry().values():
        p = validate_params(feature, params(feature))
        for scope in scopes(feature, inv):
            try:
                done = (feature.render(p, scope, inv), feature.rollback(p, scope, inv))
            except MeshstepError:
                continue
            for r in done:
                for o in r.objects:
                    for key in _resources(inv, o["kind"], o["apiVersion"]):
                        out.setdefault(key, set()).add(f"patch {o['metadata'].get('namespace') or ''}")
                for ref in r.delete:
                    for key in _resources(inv, ref.kind):
                        out.setdefault(key, set()).add(f"delete {ref.namespace or ''}")
    return out


def test_the_apply_overlay_lets_the_bake_read_istiods_sync_status_and_nothing_else() -> None:
    """Operator.reached reads /debug/syncz of each istiod pod through the pod proxy: `get` on pods/proxy in the
    control plane's namespace."""
    debug = one("apply", "Role", "meshstep-istiod-debug")
    assert debug["metadata"]["namespace"] == "istio-system"
    assert grants(debug) == {("", "pods/proxy"): {"get"}}


def test_the_apply_overlay_grants_what_features_write_and_no_more() -> None:
    cluster_role = grants(one("apply", "ClusterRole", "meshstep-apply"))
    mesh_config = one("apply", "Role", "meshstep-mesh-config")
    written: dict[tuple[str, str], set[str]] = {}
    for inv in (build_inventory(load_snapshot("demo")), corpus.ambient()):
        for key, actions in _written(inv).items():
            written.setdefault(key, set()).update(actions)

    # Removing a control plane (single-revision's webhook configurations and pods) stays a cluster admin's.
    admin_only = {("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
                  ("admissionregistration.k8s.io", "validatingwebhookconfigurations"), ("", "pods")}
    for (group, resource), actions in written.items():
        if (group, resource) in admin_only:
            assert not (cluster_role.get((group, resource))), resource
            continue
        if resource == "configmaps":  # the mesh config, in the control plane's namespace only
            assert {a.split()[1] for a in actions} == {mesh_config["metadata"]["namespace"]}
            assert grants(mesh_config) == {("", "configmaps"): {"get", "patch", "update"}}
            continue
        verbs = cluster_role.get((group, resource), set())
        # Server-side apply creates what is missing and patches what is there; the current object is read first.
        # A rollback (by hand or after a bake regressed) restores an object whole under its resourceVersion: a PUT,
        # Kubernetes' `update` verb (cluster.apply.Cluster.restore); an object a stage deleted comes back by POST.
        needed = {"get", "patch", "update"} | ({"create"} if resource != "namespaces" else set())
        needed |= {"delete"} if any(a.startswith("delete") for a in actions) else set()
        assert needed <= verbs, f"{group}/{resource}: {sorted(needed - verbs)} not granted"
    # Nothing granted that no feature writes; Namespaces are labelled, never created or deleted; never a Secret.
    assert cluster_role.keys() - written.keys() == set(), sorted(cluster_role.keys() - written.keys())
    assert cluster_role[("", "namespaces")] == {"get", "patch", "update"}
    assert not [k for k in cluster_role if k[1] in ("secrets", "*")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_checkpoints_are_the_app_s_alone(overlay: str) -> None:
    """The audit chain's checkpoints go to a ConfigMap the app's service account may get and update by name, and
    nothing more (not create, not delete, no other ConfigMap); the container is pointed at it."""
    cm = one(overlay, "ConfigMap", "meshstep-audit-checkpoints")
    role = one(overlay, "Role", "meshstep-audit-checkpoints")
    assert role["metadata"]["namespace"] == cm["metadata"]["namespace"] == "meshstep"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"],
                              "resourceNames": ["meshstep-audit-checkpoints"], "verbs": ["get", "update"]}]
    binding = one(overlay, "RoleBinding", "meshstep-audit-checkpoints")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "meshstep", "namespace": "meshstep"}]
    [container] = one(overlay, "Deployment", "meshstep")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MESHSTEP_AUDIT_CHECKPOINTS"]["value"] == "configmap:$(POD_NAMESPACE)/meshstep-audit-checkpoints"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    names = [e["name"] for e in container["env"]]
    assert names.index("POD_NAMESPACE") < names.index("MESHSTEP_AUDIT_CHECKPOINTS")  # $(VAR) needs it first
