"""Readiness checks: table-driven over the clusters in tests/fixtures/readiness (each `<name>.yaml` with the messages
every stage step's gate gives beside it in `<name>.expected.yaml`), against Istio's own injected pod shapes, and
the MST catalog kept one with the checks and docs/checks.md."""
from __future__ import annotations

import copy
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from analysis import catalog
from analysis.base import Context, Message, gate_checks, registry, run
from analysis.callers import calls
from analysis.catalog import CATALOG, Filled
from analysis.common import analyze
from app.cli import PACKAGES
from cluster.inventory import build_inventory
from cluster.snapshot import Snapshot
from cluster.sources import files_snapshot, load_snapshot
from features import invariants
from features.base import registry as feature_registry
from features.base import validate_params
from telemetry.edges import Edge, Peer, Traffic

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "readiness"
REFERENCE = ROOT / ".." / "shared" / "istio-reference"
FEATURES = ("sidecar-injection", "ambient-mode", "ingress-gateway", "request-routing", "traffic-shifting",
            "timeouts-retries", "circuit-breaking", "fault-injection", "egress-service-entry", "egress-registry-only",
            "tracing", "metrics", "access-logging", "mtls-permissive", "mtls-strict", "authorization-policy",
            "request-authentication", "local-rate-limit", "sidecar-scope")


def gate(inv, feature: str, scope: str, params: dict | None = None, traffic=None) -> list[Message]:
    """The readiness checks of a feature's gate, on the context its gate gives them (the cluster as the stage's
    rendering leaves it among it), its dependencies left out."""
    f = feature_registry()[feature]
    return run(gate_checks(feature), Context(inv, scope, params or {}, traffic, after=lambda: inv.with_changes(
        apply=f.build(validate_params(f, params or {}), scope, inv))))


def cases() -> list:
    out = []
    for expected in sorted(FIXTURES.glob("*.expected.yaml")):
        cluster = expected.with_name(expected.name.replace(".expected", ""))
        for i, case in enumerate(yaml.safe_load(expected.read_text())):
            out.append(pytest.param(cluster, case, id=f"{cluster.stem}-{i}-{case['feature']}@{case['scope']}"))
    return out


_INVENTORIES: dict[Path, object] = {}


def inventory(path: Path):
    if path not in _INVENTORIES:
        _INVENTORIES[path] = build_inventory(files_snapshot([path]))
    return _INVENTORIES[path]


@pytest.mark.parametrize("cluster,case", cases())
def test_gate_messages(cluster, case):
    msgs = gate(inventory(cluster), case["feature"], case["scope"], case.get("params"))
    assert Counter(f"{m.code} {m.ref}" for m in msgs) == Counter(case["messages"])


@pytest.mark.parametrize("cluster,case", cases())
def test_hints_name_the_resources(cluster, case):
    """Every hint is filled in: no `<field>` of the catalog's template is left for the reader to guess."""
    for m in gate(inventory(cluster), case["feature"], case["scope"], case.get("params")):
        entry = CATALOG.get(m.code)
        if entry is None:
            continue  # an istioctl finding: its hint is istioctl's
        left = [f for f in entry.fields() if f"<{f}>" in m.hint]
        assert not left and "{" not in m.hint.replace("{name:", "").replace("{service:", ""), m.hint
        # The resource is shown once, beside the code: the message does not name it again.
        assert str(m.ref) not in m.message and not m.message.startswith(m.ref.name), m.message


def test_namespace_scope_stays_in_its_namespace():
    inv = inventory(FIXTURES / "shop.yaml")
    for feature in FEATURES:
        for m in gate(inv, feature, "edge"):
            assert "shop" not in (m.ref.namespace, m.ref.name), (feature, m)


def test_gate_checks_stay_out_of_analyze():
    inv = inventory(FIXTURES / "shop.yaml")
    assert not [m for m in analyze(inv) if m.code.startswith("MST")]


# ---------------------------------------------------------------- catalog, checks and docs are one


def test_checks_take_their_identity_from_the_catalog():
    mst = [c for c in registry() if c.code.startswith("MST")]
    assert mst
    for c in mst:
        e = CATALOG[c.code]
        assert (c.name, c.level, c.gates, c.hint) == (e.name, e.level, e.gates, e.generic_hint)
        assert set(c.gates) <= set(feature_registry()), c.code
    registered = {c.code for c in mst}
    # every code is registered by a check, but those the plan and the features raise themselves
    assert {e.code for e in CATALOG.values() if not e.raised_by} == registered


def test_every_mst_code_in_the_source_is_catalogued():
    used = set()
    for folder in PACKAGES:
        for path in (ROOT / folder).rglob("*.py"):
            used |= set(re.findall(r"\bMST\d{4}\b", path.read_text()))
    assert used and used <= set(CATALOG), sorted(used - set(CATALOG))


def test_docs_page_is_generated_from_the_catalog():
    text = (ROOT / "docs" / "checks.md").read_text()
    assert text == catalog.markdown(), "run: python -m analysis.catalog > docs/checks.md"
    for code in CATALOG:
        m = Message(code, "info", None, "")  # type: ignore[arg-type]
        anchor = m.url.rsplit("#", 1)[1]
        assert f'<a id="{anchor}"></a>\n## {code} ' in text


# ---------------------------------------------------------------- Istio's own injected pod shapes


def _template(rel: str) -> dict:
    doc = next(d for d in yaml.safe_load_all((REFERENCE / "inject" / rel).read_text()) if d)
    return doc["spec"]["template"]


def _pod(template: dict, name: str, *, init_containers: list | None = None) -> dict:
    meta = copy.deepcopy(template.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), "pod-template-hash": "5f6d7"}
    meta.update(name=f"{name}-5f6d7-abcde", namespace="hello",
                ownerReferences=[{"kind": "ReplicaSet", "name": f"{name}-5f6d7", "controller": True}])
    spec = copy.deepcopy(template["spec"])
    spec["initContainers"] = (spec.get("initContainers") or []) + (init_containers or [])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
            "status": {"phase": "Running", "podIP": "10.2.0.9"}}


def _hello_cluster(*pods: dict, istiod_ready: bool | None = True):
    """Namespace hello, injected, with these pods; istiod ready, not ready, or (None) absent."""
    objects = [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": "hello", "labels": {"istio-injection": "enabled"}}},
        *pods,
    ]
    if istiod_ready is not None:
        objects.append(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "istiod-0", "namespace": "istio-system"},
             "spec": {"containers": [{"name": "discovery", "image": "docker.io/istio/pilot:1.27.3",
                                      "args": ["discovery"]}]},
             "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": str(istiod_ready)}]}})
    return build_inventory(Snapshot("test", lambda _v: iter(copy.deepcopy(objects))))


# What the STRICT gate says of a pod of its scope without a sidecar, by what it calls.
WITHOUT_SIDECAR = ("MST0401", "MST0406", "MST0407")
INJECTED = ("hello.yaml.injected", "hello-old-version.yaml.injected", "hello.yaml.cni.injected",
            "auth.yaml.injected")


@pytest.mark.parametrize("rel", INJECTED)
def test_injected_pods_are_in_the_mesh(rel):
    """Istio's injected shapes (native, classic, under CNI): nothing to restart, no plaintext, and Istio's own init
    containers and proxy arguments are neither network-needing init containers nor calls."""
    inv = _hello_cluster(_pod(_template(rel), "hello"))
    for feature, scope in (("sidecar-injection", "hello"), ("mtls-strict", "hello"), ("mtls-strict", "mesh"),
                           ("egress-registry-only", "mesh"), ("sidecar-scope", "hello")):
        codes = {m.code for m in gate(inv, feature, scope)}
        assert not codes & {"MST0101", "MST0103", "MST0401", "MST0402", "MST0406", "MST0407", "MST0601", "MST0704"}, \
            (feature, codes)


def test_pod_from_the_uninjected_template_is_reported():
    inv = _hello_cluster(_pod(_template("hello.yaml"), "hello"))
    assert [f"{m.code} {m.ref}" for m in gate(inv, "mtls-strict", "hello") if m.code in WITHOUT_SIDECAR] == \
        ["MST0406 Deployment hello/hello"]  # it calls nothing its config names
    assert "MST0101" in {m.code for m in gate(inv, "sidecar-injection", "hello")}


_WAIT_FOR_API = {"name": "wait-for-api", "image": "curlimages/curl:8.10.1",
                 "command": ["sh", "-c", "until curl -sf http://api.hello:8080/healthz; do sleep 2; done"]}


@pytest.mark.parametrize("rel,breaks", [("hello-old-version.yaml.injected", True), ("hello.yaml.injected", False)])
def test_init_container_needing_network_depends_on_the_sidecar_shape(rel, breaks):
    """The shape of the sidecars already injected tells which one a new pod gets: classic captures the init
    containers' traffic before Envoy runs, native starts Envoy first."""
    waiting = _pod(_template("hello.yaml"), "worker", init_containers=[_WAIT_FOR_API])
    inv = _hello_cluster(_pod(_template(rel), "hello"), waiting)
    found = [f"{m.code} {m.ref}" for m in gate(inv, "sidecar-injection", "hello") if m.code == "MST0103"]
    assert found == (["MST0103 Deployment hello/worker"] if breaks else [])


@pytest.mark.parametrize("istiod_ready,reported", [(True, False), (False, True), (None, True)])
def test_injection_needs_a_running_istiod(istiod_ready, reported):
    inv = _hello_cluster(_pod(_template("hello.yaml"), "hello"), istiod_ready=istiod_ready)
    found = [f"{m.code} {m.ref}" for m in gate(inv, "sidecar-injection", "hello") if m.code == "MST0106"]
    assert found == (["MST0106 Namespace hello"] if reported else [])


# ---------------------------------------------------------------- the bundled demo cluster

# What the demo is built to show (shop injected with revision 1-27 and one pod predating injection,
# orders and ratings sharing shop-backend, catalog's unnamed port 7070, legacy calling orders.shop, mesh-wide
# PERMISSIVE): each stage's gate must say it.
DEMO_FINDINGS = {
    ("sidecar-injection", "shop"): {"MST0101 Deployment shop/catalog", "MST0104 Service shop/catalog"},
    # catalog (no sidecar yet) calls only its own database on localhost: STRICT leaves it working, and says it
    # cannot see more; legacy-billing's plaintext to orders is what STRICT would refuse
    ("mtls-strict", "shop"): {"MST0402 Deployment legacy/legacy-billing", "MST0406 Deployment shop/catalog"},
    ("authorization-policy", "shop"): {"MST0501 Namespace shop", "MST0502 ServiceAccount shop/shop-backend"},
}


@pytest.fixture(scope="module")
def demo():
    return build_inventory(load_snapshot("demo"))


@pytest.mark.parametrize("step", sorted(DEMO_FINDINGS))
def test_demo_gates_say_what_the_demo_shows(demo, step):
    msgs = gate(demo, *step)
    assert DEMO_FINDINGS[step] <= {f"{m.code} {m.ref}" for m in msgs}


def test_demo_legacy_caller_blocks_strict(demo):
    callers = [m for m in gate(demo, "mtls-strict", "shop") if m.code == "MST0402"]
    assert callers and all(m.ref.namespace == "legacy" and "orders.shop" in m.message for m in callers)
    assert all(m.code != "MST0405" for m in gate(demo, "mtls-strict", "shop"))  # PERMISSIVE is in place


# ---------------------------------------------------------------- pods without a sidecar under STRICT

# app's opted-out callers in strict.yaml
_BARE = ("idle", "poller", "indexer", "auditor", "fetcher", "launcher", "namer")


def _strict_cluster(*keep: str):
    """strict.yaml with, of app's opted-out callers, only those in `keep` (its servers all kept)."""
    docs = [d for d in yaml.safe_load_all((FIXTURES / "strict.yaml").read_text())
            if d and d["metadata"]["name"].split("-")[0] not in set(_BARE) - set(keep)]
    return build_inventory(Snapshot("strict", lambda _v: iter(copy.deepcopy(docs))))


def _strict_gate(inv, traffic=None) -> dict[str, Message]:
    """The STRICT stage's gate in app as a plan runs it (its dependencies included), by the resource blamed."""
    return {f"{m.code} {m.ref}": m for m in feature_registry()["mtls-strict"].checks(inv, "app", {}, traffic)}


def test_strict_lets_a_pod_without_sidecar_that_calls_nothing_known_through_with_a_warning():
    """STRICT is enforced by the server's proxy: a pod without one keeps receiving plaintext from its callers (auto
    mTLS), and breaks only where it calls a STRICT server. One whose calls are unknown is a warning, not a refusal."""
    found = _strict_gate(_strict_cluster("idle"))
    assert not [m for m in found.values() if m.level == "error"], found
    idle = found["MST0406 Deployment app/idle"]
    assert idle.level == "warning" and "meshstep cannot see what it calls" in idle.message
    assert "source_workload unknown" in idle.hint and "--prometheus" in idle.hint  # how to look


def test_strict_refuses_a_pod_without_sidecar_that_names_a_server_going_strict():
    found = _strict_gate(_strict_cluster("poller"))
    assert [k for k, m in found.items() if m.level == "error"] == ["MST0401 Deployment app/poller"]
    poller = found["MST0401 Deployment app/poller"]
    assert "calls app/api (named in env API_URL of container poller), STRICT after this stage" in poller.message
    assert "app/api" in poller.hint


def test_strict_judges_the_servers_a_pod_without_sidecar_calls_as_istio_does():
    """A server STRICT already refuses today; one kept PERMISSIVE by its own PeerAuthentication, one in a namespace
    that stays PERMISSIVE, and one without a sidecar (nothing enforces STRICT there) accept its plaintext."""
    found = _strict_gate(_strict_cluster("auditor", "indexer"))
    assert "STRICT already today (from PeerAuthentication secure/default)" in \
        found["MST0401 Deployment app/auditor"].message
    indexer = found["MST0406 Deployment app/indexer"].message
    assert "other/search (PERMISSIVE from PeerAuthentication istio-system/default)" in indexer
    assert "app/old-api (PERMISSIVE from PeerAuthentication app/old-api)" in indexer
    assert "app/cache (no sidecar there to enforce mTLS)" in indexer and "what else it calls" in indexer
    # the invariant over the calls config shows (MST0812) judges the server without a sidecar alike
    inv = _strict_cluster("indexer")
    after = inv.with_changes(apply=feature_registry()["mtls-strict"].build({}, "mesh", inv))
    refused = [m.message for m in invariants.callers_refused(inv, after)]
    assert any("app/indexer → other/search" in m for m in refused) and not any("cache" in m for m in refused)


def _keeping_open(inv, service: str, port: int):
    """`inv` with a workload PeerAuthentication that keeps `port` of the pods of Service app/`service` PERMISSIVE."""
    svc = inv.service("app", service)
    ports = {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
             "metadata": {"name": f"{service}-plaintext-port", "namespace": "app"},
             "spec": {"selector": {"matchLabels": dict(svc.selector)},
                      "portLevelMtls": {str(port): {"mode": "PERMISSIVE"}}}}
    return inv.with_changes(apply=[ports])


def test_a_server_keeping_the_port_a_call_uses_open_to_plaintext_does_not_refuse_it():
    """MST0401's own hint: keep the port it calls PERMISSIVE with portLevelMtls. Istio applies a workload
    PeerAuthentication's portLevelMtls over the namespace's STRICT: poller calls api.app:8080, the port kept open,
    so its call is no refusal at all; it is warned of only as any pod without a sidecar is (what else it calls)."""
    found = _strict_gate(_keeping_open(_strict_cluster("poller"), "api", 8080))
    assert not [k for k, m in found.items() if m.level == "error"], found
    poller = found["MST0406 Deployment app/poller"].message
    assert "app/api (STRICT from PeerAuthentication app/default, but port 8080 it calls reaches the pods' port 8080 " \
        "PERMISSIVE (portLevelMtls of PeerAuthentication app/api-plaintext-port))" in poller
    assert "which port" not in poller and "what else it calls" in poller


def test_a_server_keeping_another_port_open_to_plaintext_refuses_the_call():
    """portLevelMtls keeps port 9090 of api's pods open; poller calls port 8080, which STRICT covers: refused."""
    found = _strict_gate(_keeping_open(_strict_cluster("poller"), "api", 9090))
    assert [k for k, m in found.items() if m.level == "error"] == ["MST0401 Deployment app/poller"]
    assert "port 8080 it calls reaches the pods' port 8080, not port 9090 PERMISSIVE (portLevelMtls of " \
        "PeerAuthentication app/api-plaintext-port)" in found["MST0401 Deployment app/poller"].message


def test_a_call_whose_port_is_unknown_to_a_server_keeping_a_port_open_is_a_warning():
    """`api.app` with no scheme and no port: the call may use the port kept open, or another, so it is no certain
    refusal: a warning that says which port is open and that the port of the call is unknown."""
    inv = _strict_cluster("poller")
    docs = [copy.deepcopy(o.raw) for o in inv.of_kind("Deployment") if o.name == "poller"]
    docs[0]["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "API_HOST", "value": "api.app"}]
    found = _strict_gate(_keeping_open(inv.with_changes(apply=docs), "api", 8080))
    assert not [k for k, m in found.items() if m.level == "error"], found
    assert "but port 8080 PERMISSIVE (portLevelMtls of PeerAuthentication app/api-plaintext-port), and meshstep " \
        "does not know which port it calls" in found["MST0406 Deployment app/poller"].message


def test_ports_yaml_calls_are_judged_by_the_pods_port_they_reach():
    """ports.yaml: the reasons its gate gives, and the invariant over the calls config shows (MST0812) judging the
    same calls alike: a call on a port kept open, or on a port unknown, is not newly refused."""
    inv = inventory(FIXTURES / "ports.yaml")
    found = {f"{m.code} {m.ref}": m for m in gate(inv, "mtls-strict", "app")}
    assert "port 80 it calls reaches the pods' port 8080 PERMISSIVE (portLevelMtls of PeerAuthentication " \
        "app/web-plaintext)" in found["MST0406 Deployment app/opener"].message
    assert "port 9000 it calls reaches the pods' port 9901, not port 8080 PERMISSIVE" in \
        found["MST0401 Deployment app/admin"].message
    assert "port 80 it calls reaches the pods' port 8080, not port 80 DISABLE (portLevelMtls of " \
        "PeerAuthentication app/api-plaintext)" in found["MST0401 Deployment app/caller"].message
    assert "unless the port it calls is port 8080 PERMISSIVE (portLevelMtls of PeerAuthentication " \
        "app/web-plaintext)" in found["MST0402 Deployment outside/prober"].message
    assert "unless" not in found["MST0402 Deployment outside/scraper"].message
    after = inv.with_changes(apply=feature_registry()["mtls-strict"].build({}, "app", inv))
    refused = sorted(str(m.ref) for m in invariants.callers_refused(inv, after))
    assert refused == ["Deployment app/admin", "Deployment app/caller", "Deployment outside/scraper"]



def test_peerauth_yaml_judges_each_server_by_its_own_policy_and_the_port_it_is_called_on():
    """peerauth.yaml: a workload PeerAuthentication's PERMISSIVE wins over app's STRICT (open takes plaintext from
    outside callers too), and its portLevelMtls STRICT wins over its PERMISSIVE for the pods' port it names (admin's
    9901): a plaintext call on that port is refused, today and after the stage; one whose port is unknown is a
    warning (MST0402: an error) naming the STRICT port."""
    inv = inventory(FIXTURES / "peerauth.yaml")
    found = {f"{m.code} {m.ref}": m for m in gate(inv, "mtls-strict", "app")}
    assert "calls app/admin (named in args of container poller), STRICT already today (PERMISSIVE from " \
        "PeerAuthentication app/admin-ports, but port 9000 it calls reaches the pods' port 9901 STRICT " \
        "(portLevelMtls of PeerAuthentication app/admin-ports))" in found["MST0401 Deployment app/poller"].message
    assert "app/admin (PERMISSIVE from PeerAuthentication app/admin-ports, but port 9901 STRICT (portLevelMtls of " \
        "PeerAuthentication app/admin-ports), and meshstep does not know which port it calls)" in \
        found["MST0406 Deployment app/guesser"].message
    assert "app/admin (PERMISSIVE from PeerAuthentication app/admin-ports; port 80 it calls reaches the pods' port " \
        "8080, not port 9901 STRICT" in found["MST0406 Deployment app/browser"].message
    assert "if the port it calls is port 9901 STRICT (portLevelMtls of PeerAuthentication app/admin-ports)" in \
        found["MST0402 Deployment outside/prober"].message
    assert "if the port" not in found["MST0402 Deployment outside/scraper"].message


def test_nosidecar_yaml_counts_no_caller_of_a_server_without_a_sidecar():
    """nosidecar.yaml: STRICT in app refuses the plaintext of outside/fetcher to api (a sidecar enforces it), not that
    of outside/reader to legacy, nor that of the Ingress, the ExternalName alias and the Endpoints that reach legacy:
    a server without a proxy applies no PeerAuthentication and takes whatever comes, today and after the stage."""
    inv = inventory(FIXTURES / "nosidecar.yaml")
    refused = [str(m.ref) for m in gate(inv, "mtls-strict", "app") if m.code == "MST0402"]
    assert refused == ["Deployment outside/fetcher"]
    after = inv.with_changes(apply=feature_registry()["mtls-strict"].build({}, "app", inv))
    assert [str(m.ref) for m in invariants.callers_refused(inv, after)] == ["Deployment outside/fetcher"]


def test_a_port_made_strict_refuses_the_plaintext_calls_on_it_newly():
    """MST0812 reads the same verdicts: admin's policy gaining portLevelMtls STRICT for its pods' 9901 newly refuses
    the calls on admin's port 9000 (poller's, scraper's, and the nginx Ingresses' that name it by number or by name),
    not those on port 80 nor those whose port is unknown; the STRICT stage in app refuses none (open and admin keep
    their own PERMISSIVE)."""
    inv = inventory(FIXTURES / "peerauth.yaml")
    pa = copy.deepcopy(inv.get("PeerAuthentication", "app", "admin-ports").raw)
    del pa["spec"]["portLevelMtls"]
    before = inv.with_changes(apply=[pa])
    assert sorted(str(m.ref) for m in invariants.callers_refused(before, inv)) == \
        ["Deployment app/poller", "Deployment outside/scraper", "Ingress app/legacy-metrics", "Ingress app/metrics"]
    after = inv.with_changes(apply=feature_registry()["mtls-strict"].build({}, "app", inv))
    assert not list(invariants.callers_refused(inv, after))

def test_a_refusal_names_the_policy_that_refuses_the_plaintext():
    """MST0812 says what refuses a call as refuses_plaintext says it: app stays PERMISSIVE in peerauth.yaml, and it
    is admin's own portLevelMtls, STRICT for the pods' port 9901 its port 9000 reaches, that refuses poller's call
    there; a workload PeerAuthentication STRICT under other's PERMISSIVE, its own policy."""
    inv = inventory(FIXTURES / "peerauth.yaml")
    pa = copy.deepcopy(inv.get("PeerAuthentication", "app", "admin-ports").raw)
    del pa["spec"]["portLevelMtls"]
    poller = next(m.message for m in invariants.callers_refused(inv.with_changes(apply=[pa]), inv)
                  if str(m.ref) == "Deployment app/poller")
    assert "mTLS refuses its plaintext (PERMISSIVE from PeerAuthentication app/admin-ports, but port 9000 it calls " \
        "reaches the pods' port 9901 STRICT (portLevelMtls of PeerAuthentication app/admin-ports))" in poller, poller
    before = _strict_cluster("indexer")
    after = before.with_changes(apply=[{
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "search", "namespace": "other"},
        "spec": {"selector": {"matchLabels": {"app": "search"}}, "mtls": {"mode": "STRICT"}}}])
    (indexer,) = [m.message for m in invariants.callers_refused(before, after)]
    assert "app/indexer → other/search" in indexer and "STRICT in other" not in indexer
    assert "mTLS refuses its plaintext (STRICT from PeerAuthentication other/search)" in indexer, indexer


def test_a_server_without_a_sidecar_applies_no_authorization_policy():
    """A proxy enforces an AuthorizationPolicy as it enforces a PeerAuthentication: a DENY selecting cache's pods,
    which run without a sidecar, refuses nothing (the servers its policies select are refuses_plaintext's)."""
    before = _strict_cluster("indexer")
    after = before.with_changes(apply=[{
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "deny-all", "namespace": "app"},
        "spec": {"selector": {"matchLabels": {"app": "cache"}}, "action": "DENY", "rules": [{}]}}])
    assert not [m.message for m in invariants.callers_refused(before, after) if "app/cache" in m.message]


def test_strict_refuses_a_pod_without_sidecar_that_calls_a_server_going_strict_by_its_short_name():
    """Kubernetes DNS resolves a short name in the caller's own namespace (its resolv.conf searches
    `<namespace>.svc.cluster.local` first, https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/):
    `http://api:8080` from a pod of app is api.app, which STRICT in app makes refuse the pod's plaintext."""
    found = _strict_gate(_strict_cluster("fetcher"))
    assert [k for k, m in found.items() if m.level == "error"] == ["MST0401 Deployment app/fetcher"]
    assert "calls app/api (named in env API_URL of container fetcher), STRICT after this stage" in \
        found["MST0401 Deployment app/fetcher"].message


@pytest.mark.parametrize("caller", ["launcher", "namer"])
def test_a_short_name_out_of_a_host_position_is_no_call(caller):
    """`redis:7` (an image tag: Service redis serves 6379, not 7) and the bare word `api` name no call: STRICT
    warns that what the pod calls is unseen, and refuses nothing."""
    found = _strict_gate(_strict_cluster(caller))
    assert not [m for m in found.values() if m.level == "error"], found
    assert "its config names no Service of the cluster" in found[f"MST0406 Deployment app/{caller}"].message


def _naming(value: str):
    """strict.yaml with idle's env naming `value`, and two more Services in app: web (port 80 to the pods' 8080)
    and db, headless (clusterIP None: its name resolves to the pods' own addresses) with port 5432 to 15432."""
    docs = [d for d in yaml.safe_load_all((FIXTURES / "strict.yaml").read_text())
            if d and d["metadata"]["name"].split("-")[0] not in set(_BARE) - {"idle"}]
    idle = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "idle")
    idle["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "TARGET", "value": value})
    for name, spec in (("web", {"ports": [{"port": 80, "targetPort": 8080}]}),
                       ("db", {"clusterIP": "None", "ports": [{"port": 5432, "targetPort": 15432}]})):
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "app"},
                     "spec": {"selector": {"app": name}, **spec}})
    return build_inventory(Snapshot("strict", lambda _v: iter(copy.deepcopy(docs))))


@pytest.mark.parametrize("value,target", [
    ("http://api:8080/jobs", "app/api"),
    ("grpc://api", "app/api"),  # a URL's host: the scheme says it is one, whatever port the client takes
    ("postgres://reader:secret@api:8080/db", "app/api"),
    ("--upstream=api:8080", "app/api"),
    ("redis:6379", "app/redis"),
    ("http://web", "app/web"),
    ("web:80", "app/web"),
    ("web:8080", None),  # the pods' port: the Service's cluster IP forwards only its own port, 80
    ("db:5432", "app/db"),
    ("db:15432", "app/db"),  # headless: the name resolves to the pods, reached on their port
    ("http://api:9090/jobs", None),  # a port api does not serve: the call does not reach it
    ("api", None),  # a bare word
    ("redis:7", None),  # an image tag
    ("search:9200", None),  # other's search: a short name resolves in the caller's own namespace only
    ("http://api-v2:8080", None),  # no such Service
    ("localhost:8080", None),
    ("10.0.1.1:8080", None),
    ("http://api.app:8080", "app/api"),  # `service.namespace` as before
])
def test_a_short_name_is_a_call_of_the_own_namespace_service_in_a_host_position(value, target):
    found = [c.target for c in calls(_naming(value)) if c.caller.name == "idle" and c.service is not None]
    assert found == ([target] if target else [])


@pytest.mark.parametrize("value,target,port", [
    ("http://api:8080/jobs", "app/api", 8080),
    ("http://web", "app/web", 80),  # http's default port
    ("https://web", None, None),  # 443, which web does not serve
    ("http://api/jobs", None, None),  # 80: api serves 8080 only
    ("grpc://api", "app/api", None),  # grpc:// defines no default port: which one it uses is unknown
    ("tcp://api", "app/api", None),
    ("postgres://reader@db/orders", "app/db", 5432),  # postgres' default port
    ("redis://redis", "app/redis", 6379),
    ("db:15432", "app/db", 5432),  # headless: the pods' port, by the Service port that sends to it
    ("web:80", "app/web", 80),
    ("api.app", "app/api", None),  # no scheme, no port: unknown, as before a call
    ("api.app.svc.cluster.local", "app/api", None),
    ("api.app:8080", "app/api", 8080),
    ("web.app.svc:80", "app/web", 80),
    ("http://web.app", "app/web", 80),
    ("http://api.app/jobs", None, None),  # one rule for every form: 80 is no port of api
    ("api.app:9090", None, None),
    ("mysql://user:pw@web.app.svc.cluster.local:8080/db", None, None),  # 8080 is web's pods' port, not its own
])
def test_a_call_carries_the_service_port_it_uses(value, target, port):
    """A port written, else the default port of the URL's scheme, must be one the Service serves, and the call
    carries it; with neither (no scheme, or one that defines no default port) the port is unknown (None)."""
    found = [(c.target, c.port) for c in calls(_naming(value)) if c.caller.name == "idle" and c.service is not None]
    assert found == ([(target, port)] if target else [])


def test_ingress_and_route_calls_carry_the_service_port_they_name():
    """An Ingress backend names its Service's port by number or by name (`servicePort` in the legacy form), a route
    destination by number, or by none where the Service has one port only (Istio routes to it): the call carries
    the Service port, so that its servers are judged on the pods' port it reaches."""
    inv = inventory(FIXTURES / "peerauth.yaml")
    assert sorted((c.caller.name, c.target, c.port) for c in calls(inv) if c.caller.kind == "Ingress") == [
        ("legacy-metrics", "app/admin", 9000), ("metrics", "app/admin", 9000), ("public", "app/admin", 80),
        ("public", "app/open", 80)]
    edge = inventory(FIXTURES / "edges.yaml")
    routes = edge.with_changes(apply=[
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api-admin", "namespace": "app"},
         "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                                                         {"name": "http-admin", "port": 9090}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "api", "namespace": "app"},
         "spec": {"hosts": ["api.example.com"], "gateways": ["istio-system/public"], "http": [
             {"match": [{"uri": {"prefix": "/admin"}}],
              "route": [{"destination": {"host": "api-admin", "port": {"number": 9090}}}]},
             {"route": [{"destination": {"host": "api-admin"}}]},  # several ports: which one is unknown
             {"route": [{"destination": {"host": "api.app.svc.cluster.local"}}]}]}}])
    assert sorted(((c.target, c.port) for c in calls(routes) if c.evidence == "VirtualService app/api"), key=str) == \
        [("app/api", 8080), ("app/api-admin", 9090), ("app/api-admin", None)]


def _plaintext(namespace: str, workload: str) -> Edge:
    """Plaintext from a caller without a sidecar, as the destination's sidecar reports it: no source."""
    return Edge(Peer(None, None), Peer(namespace, workload), f"{workload}.{namespace}.svc.cluster.local", "http",
                "none", "destination", 1200.0)


_MTLS = Edge(Peer("other", "search"), Peer("app", "api"), "api.app.svc.cluster.local", "http", "mutual_tls",
             "destination", 5000.0)


@pytest.mark.parametrize("edges,code", [
    ((_MTLS,), "MST0407"),  # no plaintext reached a server going STRICT: its calls keep working
    ((_MTLS, _plaintext("other", "search")), "MST0407"),  # plaintext, to a server that stays PERMISSIVE
    ((_MTLS, _plaintext("app", "api")), "MST0406"),  # plaintext into api, going STRICT: it may be the caller
])
def test_telemetry_tells_what_a_pod_without_sidecar_calls_as_far_as_it_can(edges, code):
    """Istio's telemetry cannot name a caller without a sidecar (it sends no metadata), but it shows whether any such
    caller reached a server that will be STRICT in its window."""
    traffic = Traffic("test", 3600, 1_700_000_000.0, edges)
    found = _strict_gate(_strict_cluster("idle"), traffic)
    idle = found[f"{code} Deployment app/idle"]
    assert idle.level == CATALOG[code].level and "in the 1h to " in idle.message
    assert ("MST0821 Deployment app/api" in found) is (code == "MST0406")  # the plaintext is MST0821's error
    assert not [m for m in found.values() if m.level == "error" and m.code != "MST0821"], found


def _strict_port(inv, namespace: str, app: str, port: int):
    """`inv` with a workload PeerAuthentication that leaves the pods of `app` in `namespace` in their namespace's
    mode but for their `port`, STRICT (portLevelMtls)."""
    return inv.with_changes(apply=[{
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": f"{app}-strict-port", "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"app": app}}, "portLevelMtls": {str(port): {"mode": "STRICT"}}}}])


@pytest.mark.parametrize("change,destination,code,why", [
    # cache has no sidecar: nothing enforces app's STRICT there (old-api: its own PERMISSIVE wins over it)
    (None, ("app", "cache"), "MST0407", None),
    (None, ("app", "old-api"), "MST0407", None),
    # api keeps its pods' 8080 open under STRICT, search makes 9200 STRICT under PERMISSIVE: the port an edge
    # reached is not in Istio's metrics, so either may be refused
    (lambda inv: _keeping_open(inv, "api", 8080), ("app", "api"), "MST0406",
     "app/api (STRICT from PeerAuthentication app/default, but port 8080 PERMISSIVE (portLevelMtls of "
     "PeerAuthentication app/api-plaintext-port), and meshstep does not know which port it calls)"),
    (lambda inv: _strict_port(inv, "other", "search", 9200), ("other", "search"), "MST0406",
     "other/search (PERMISSIVE from PeerAuthentication istio-system/default, but port 9200 STRICT (portLevelMtls of "
     "PeerAuthentication other/search-strict-port), and meshstep does not know which port it calls)"),
])
def test_telemetry_judges_the_servers_plaintext_reached_as_a_call_is(change, destination, code, why):
    """The destination of plaintext seen in telemetry is judged by the rule a call is (refuses_plaintext): its pods'
    own PeerAuthentication, whether a proxy is there to enforce one, and portLevelMtls, on a port unknown (Istio's
    standard metrics carry no destination port)."""
    inv = _strict_cluster("idle")
    traffic = Traffic("test", 3600, 1_700_000_000.0, (_MTLS, _plaintext(*destination)))
    found = _strict_gate(change(inv) if change else inv, traffic)
    idle = found[f"{code} Deployment app/idle"]
    assert why is None or why in idle.message, idle.message


def test_config_evidence_of_a_strict_call_wins_over_quiet_telemetry():
    found = _strict_gate(_strict_cluster("poller"), Traffic("test", 3600, 1_700_000_000.0, (_MTLS,)))
    assert found["MST0401 Deployment app/poller"].level == "error"


def test_a_cluster_gated_before_is_judged_as_a_fresh_one():
    """MST0401, MST0406 and MST0407 judge the pods without a sidecar once per gate evaluation and keep it with the
    cluster they judge on: the next window of traffic, scope or stage on the same cluster finds what a fresh one
    finds."""
    # plaintext into a server that stays PERMISSIVE, one STRICT today (secure), one going STRICT (app)
    windows = [None, *(Traffic("test", 3600, 1_700_000_000.0, (_MTLS, _plaintext(*to)))
                       for to in [("other", "search"), ("secure", "vault"), ("app", "api"), ("other", "search")])]

    def staged(inv, scope, traffic):  # the gate as a plan runs it, on the cluster its stage leaves
        return feature_registry()["mtls-strict"].checks(inv, scope, {}, traffic)

    def unstaged(inv, scope, traffic):  # no stage rendered: judged on the cluster as it is
        return run(gate_checks("mtls-strict"), Context(inv, scope, {}, traffic))

    inv = _strict_cluster("idle", "poller")
    seen = set()
    for traffic in windows:
        for judge in (staged, unstaged):
            for scope in ("app", "other"):
                def found(i):
                    return sorted((m.code, str(m.ref), m.message) for m in judge(i, scope, traffic)  # noqa: B023
                                  if m.code in WITHOUT_SIDECAR)
                assert found(inv) == (fresh := found(_strict_cluster("idle", "poller")))
                seen.add(tuple(fresh))
    assert len(seen) > 2  # the windows, scopes and stages are judged differently


def _deployment(rel: str, name: str, **metadata) -> dict:
    """The Deployment of an Istio reference manifest, renamed, in namespace hello unless `metadata` says otherwise."""
    doc = copy.deepcopy(next(d for d in yaml.safe_load_all((REFERENCE / "inject" / rel).read_text()) if d))
    doc["metadata"] = {"name": name, "namespace": "hello", **metadata}
    return doc


def test_deployment_owned_by_a_custom_resource_is_gated():
    """An operator's Deployment (its controller a custom kind, not a workload kind) is the unit: it must not drop
    out of the gates as a Deployment's ReplicaSet does."""
    owner = {"apiVersion": "apps.example.com/v1", "kind": "HelloApp", "name": "hello", "uid": "1",
             "controller": True}
    inv = _hello_cluster(_deployment("hello.yaml", "hello", ownerReferences=[owner]),
                         _pod(_template("hello.yaml"), "hello"))
    assert [f"{m.code} {m.ref}" for m in gate(inv, "mtls-strict", "hello") if m.code in WITHOUT_SIDECAR] == \
        ["MST0406 Deployment hello/hello"]  # it calls nothing its config names


@pytest.mark.parametrize("label,annotation,out", [("true", "false", False), ("false", "true", True)])
def test_the_inject_label_wins_over_the_annotation(label, annotation, out):
    """A pod template whose sidecar.istio.io/inject label and annotation disagree: the label decides (MST0107 and
    whether a namespace without injection labels leaves it out), as the injector decides."""
    deployment = _deployment("hello.yaml", "hello", namespace="plain")
    meta = deployment["spec"]["template"]["metadata"]
    meta["labels"]["sidecar.istio.io/inject"] = label
    meta["annotations"] = {"sidecar.istio.io/inject": annotation}
    inv = _hello_cluster(deployment, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "plain"}})
    assert bool([m for m in gate(inv, "sidecar-injection", "plain") if m.code == "MST0107"]) is out
    assert bool([m for m in gate(inv, "mtls-strict", "plain") if m.code in WITHOUT_SIDECAR]) is out


@pytest.mark.parametrize("namespace", ["default", None])
def test_env_of_a_deployment_without_namespace_is_read(namespace):
    """A Deployment whose YAML names no namespace is in `default`: its env is read as with `namespace: default`."""
    deployment = _deployment("hello.yaml", "client", **({"namespace": namespace} if namespace else {}))
    if namespace is None:
        del deployment["metadata"]["namespace"]
    deployment["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "API_URL", "value": "https://api.example.com/v1"}]
    inv = _hello_cluster(deployment, {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": "default", "labels": {"istio-injection": "enabled"}}})
    found = [m for m in gate(inv, "egress-registry-only", "default") if m.code == "MST0601"]
    assert [f"{m.code} {m.ref.name}" for m in found] == ["MST0601 client"]
    assert "api.example.com" in found[0].message


@pytest.mark.parametrize("image", ["bitnami/kubectl:1.30", "docker.io/bitnami/kubectl@sha256:" + "0" * 64])
def test_init_container_running_a_network_tool_image_is_found_by_its_image_name(image):
    """A network tool known by its image alone (no command), tagged or pinned by digest."""
    init = {"name": "wait-for-crd", "image": image, "args": ["wait", "--for=condition=established", "crd/x"]}
    waiting = _pod(_template("hello.yaml"), "worker", init_containers=[init])
    inv = _hello_cluster(_pod(_template("hello-old-version.yaml.injected"), "hello"), waiting)
    found = [f"{m.code} {m.ref}" for m in gate(inv, "sidecar-injection", "hello") if m.code == "MST0103"]
    assert found == ["MST0103 Deployment hello/worker"]


def test_a_hint_that_injects_a_namespace_labels_it_as_sidecar_injection_would(demo_inventory):
    """The demo's injector answers `istio.io/rev=default` (a default tag over a named revision): a hint that says
    `istio-injection=enabled` would not be what the plan's own injection stage writes."""
    rendered = feature_registry()["sidecar-injection"].render({}, "legacy", demo_inventory)
    (ns,) = rendered.objects
    wanted = {k: v for k, v in ns["metadata"]["labels"].items() if k in ("istio.io/rev", "istio-injection")}
    label = " ".join(f"{k}={v}" for k, v in wanted.items())
    gate = feature_registry()["mtls-strict"].checks(demo_inventory, "shop", {})
    hints = [m.hint for m in gate if m.code == "MST0402"]
    assert hints and all(f"kubectl label namespace legacy {label}" in h for h in hints), hints
    assert not [h for h in hints if "istio-injection=enabled" in h] or label == "istio-injection=enabled"


@pytest.mark.parametrize("cluster,case", cases())
def test_messages_quote_the_cluster_as_values(cluster, case):
    """A gate's message that quotes the cluster is filled from its template (analysis.catalog.Filled): the
    namespaces it names (the blamed resource's, another's) are values, cut and escaped alone, never the template's
    text."""
    inv = inventory(cluster)
    for m in gate(inv, case["feature"], case["scope"], case.get("params")):
        # a namespace quoted as one: `ns/name` or `name.ns`
        names = {n for n in inv.namespace_names()
                 if re.search(rf"(?<![\w-]){re.escape(n)}/|\.{re.escape(n)}(?![\w.-])", m.message)}
        names |= {n for n in (m.ref.namespace, m.ref.name if m.ref.kind == "Namespace" else None) if n}
        names = {n for n in names if n in m.message}
        if not names:
            continue
        assert isinstance(m.message, Filled), f"{m.code}: {m.message}"
        template = "".join(t for t, value in m.message.parts if not value)
        assert not {n for n in names if n in template}, f"{m.code}: {m.message.parts}"
