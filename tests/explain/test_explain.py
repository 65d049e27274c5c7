"""Explanations of a cluster's components, mesh status reasons, istiod's dependents, the graph, the CLI."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from app.cli import main
from app.rows import inventory_rows
from cluster.components import CATALOG, PEERS, XDS_CLIENTS
from cluster.inventory import build_inventory
from cluster.sources import files_snapshot, load_snapshot
from explain import render as explain_render
from explain import report as ex

HERE = Path(__file__).resolve().parent
CLUSTER = HERE.parent / "fixtures" / "components" / "cluster.yaml"
REFERENCE = HERE.parents[1] / ".." / "shared" / "istio-reference"
REFERENCE_INSTALL = [REFERENCE / "install" / "all_on.golden.yaml",
                     *sorted((REFERENCE / "samples" / "addons").glob("*.yaml")),
                     REFERENCE / "samples" / "bookinfo" / "bookinfo.yaml"]


@pytest.fixture(scope="module")
def inv():
    return build_inventory(files_snapshot([CLUSTER]))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------- in the mesh, or why not

MESH = [
    # (pod, in mesh, mode, what the reason must say)
    ("productpage-v1-6b746f74dc-9rlmh", True, "sidecar", "native sidecar"),
    ("reviews-v1-5b5d6494f4-7xkqz", True, "sidecar", "classic sidecar"),
    ("billing-8f9e7d6c5-b4c5d", True, "sidecar", "native sidecar"),
    ("cart-6c5d4e3f2-g6h7i", True, "ambient", "ztunnel"),
    ("ratings-v1-77f8c5b7d9-2wz5n", False, "none", "predates injection"),
    ("nightly-report-29384756-kq8x2", False, "none", "sidecar.istio.io/inject=false"),
    ("inventory-api-7b6a5c4d3-j8k9l", False, "none", "namespace plain is not labelled"),
    ("search-6d5c4b3a2-e4f5g", False, "none", "predates injection: the pod is labelled sidecar.istio.io/inject=true"),
    ("node-exporter-p2q3r", False, "none", "host network"),
    ("ledger-5a4b3c2d1-h1i2j", False, "none", "namespace frozen has injection disabled"),
    ("archive-4b3c2d1e0-k3l4m", False, "none", "no istiod of that revision is in this cluster"),
    ("batch-3c2d1e0f9-n5o6p", False, "none", "opted out of ambient"),
    ("exporter-2d1e0f9a8-q7r8s", False, "none", "namespace observability is not in this source"),
    ("coredns-5d78c9869d-fx2lp", False, "none", "never injects pods in kube-system"),
]


@pytest.mark.parametrize("name, in_mesh, mode, reason", MESH, ids=[m[0] for m in MESH])
def test_mesh_status_says_why(inv, name, in_mesh, mode, reason):
    (e,) = ex.explain(inv, name).subjects
    assert (e.mesh.in_mesh, e.mesh.mode) == (in_mesh, mode)
    assert reason in e.mesh.reason


def test_predates_injection_says_how_to_fix_it(inv):
    (e,) = ex.explain(inv, "ratings-v1-77f8c5b7d9-2wz5n").subjects
    assert "kubectl rollout restart deployment/ratings-v1 -n bookinfo" in e.mesh.reason


def test_ordinary_pods_are_said_not_to_be_components(inv, capsys):
    (e,) = ex.explain(inv, "inventory-api-7b6a5c4d3-j8k9l").subjects
    assert e.component is None and e.commands == ()
    code, out, _ = run(capsys, "explain", "inventory-api-7b6a5c4d3-j8k9l", "--source", str(CLUSTER))
    assert code == 0 and "not an Istio component" in out and "IN THE MESH?" in out


def test_ambient_pods_name_their_ztunnel_and_waypoint(inv):
    (e,) = ex.explain(inv, "cart-6c5d4e3f2-g6h7i").subjects
    assert "its traffic goes through ztunnel istio-system/ztunnel-4kx7p on node node-a" in e.facts
    # no Service selects cart: the namespace's label names the waypoint, found by its pods (no Gateway in this source)
    assert ("L7 traffic to it goes through waypoint shop/waypoint (istio.io/use-waypoint=waypoint, HBONE port "
            "15008)") in e.facts


def test_ambient_label_without_redirection_points_at_the_node_agents(inv):
    cart = inv.pod("shop", "cart-6c5d4e3f2-g6h7i")
    spec = type(cart.spec)(cart.spec.labels, {}, cart.spec.containers, (), "default", False)
    status = ex.mesh_status(inv, spec, "shop", cart)
    assert not status.in_mesh and "node node-a" in status.reason and "istio-cni" in status.reason


# ---------------------------------------------------------------- istiod


def test_istiod_names_its_dependents_for_its_revision(inv):
    (e,) = ex.explain(inv, "istiod-7d4f9c6b8-x2k9p").subjects
    assert e.component.id == "istiod"
    assert {r.name for r in e.dependents} == {
        "productpage-v1-6b746f74dc-9rlmh", "reviews-v1-5b5d6494f4-7xkqz", "public-edge-7f6d5c4b3-m9n8b",
        "istio-ingressgateway-5c8d9f7b6-h8j2k", "istio-egressgateway-6d7c8b9a5-p3q4r",
        "cross-network-istio-8b7a6c5d4-w1x2y", "waypoint-5f4e3d2c1-z9y8x", "ztunnel-4kx7p", "ztunnel-9qw3e"}
    (canary,) = ex.explain(inv, "istiod-canary-6b9f8d7c5-t5r2w").subjects
    assert [r.name for r in canary.dependents] == ["billing-8f9e7d6c5-b4c5d"]
    assert any(f == "injects new pods of namespaces: legacy" for f in canary.facts)
    xds = next(li for li in canary.links if li.peer == "sidecar")
    assert xds.peer_instances == ("legacy/billing-8f9e7d6c5-b4c5d",) and xds.port == 15012


def test_explain_istiod_pod_reads_for_a_new_engineer(capsys):
    code, out, _ = run(capsys, "explain", "istiod-7d4f9c6b8-x2k9p", "--source", str(CLUSTER))
    assert code == 0
    for part in ("xDS config server", "certificate authority", "sidecar injector webhook", "config validation webhook"):
        assert part in out
    assert "PODS THAT DEPEND ON IT (9)" in out
    assert "revision default, version 1.27.3: 2/2 istiod pods ready in istio-system" in out
    assert "injects new pods of namespaces: bookinfo" in out
    assert "kubectl logs istiod-7d4f9c6b8-x2k9p -n istio-system -c discovery" in out
    assert "kubectl get pod istiod-7d4f9c6b8-x2k9p -n istio-system -o wide" in out
    assert "WHEN IT IS DOWN" in out and "certificates" in out


def test_sidecar_facts_flag_version_skew_and_its_istiod(inv):
    (e,) = ex.explain(inv, "reviews-v1-5b5d6494f4-7xkqz").subjects
    assert "sidecar: classic, version 1.26.4" in e.facts
    assert any("version 1.26.4 but istiod is 1.27.3" in f for f in e.facts)
    (billing,) = ex.explain(inv, "billing-8f9e7d6c5-b4c5d").subjects
    assert "gets config from istiod revision canary: istio-system/istiod-canary-6b9f8d7c5-t5r2w" in billing.facts


def test_sidecar_facts_name_the_services_selecting_it_by_name(inv):
    def service(name: str, namespace: str, selector: dict[str, str]) -> dict:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
                "spec": {"selector": selector, "ports": [{"name": "http", "port": 9080}]}}

    changed = inv.with_changes(apply=[
        service("zz-reviews", "bookinfo", {"version": "v1"}),
        service("aa-reviews", "bookinfo", {"app": "reviews", "version": "v1"}),
        service("reviews-v2", "bookinfo", {"app": "reviews", "version": "v2"}),  # another version's
        service("reviews", "other", {"app": "reviews"}),  # another namespace's
        service("headless", "bookinfo", {}),  # selects nothing
    ])
    (e,) = ex.explain(changed, "reviews-v1-5b5d6494f4-7xkqz").subjects
    assert [f for f in e.facts if f.startswith("exposed by")] == [
        "exposed by Service aa-reviews (ClusterIP): 9080/http", "exposed by Service zz-reviews (ClusterIP): 9080/http"]


def test_debug_commands_carry_the_real_pod_and_the_right_init_container(inv):
    (e,) = ex.explain(inv, "billing-8f9e7d6c5-b4c5d").subjects
    commands = [c.command for c in e.commands]
    assert "istioctl proxy-config cluster billing-8f9e7d6c5-b4c5d -n legacy" in commands
    assert "kubectl exec billing-8f9e7d6c5-b4c5d -n legacy -c istio-proxy -- iptables -t nat -L -n -v" in commands
    assert "kubectl logs billing-8f9e7d6c5-b4c5d -n legacy -c istio-validation" in commands
    assert not any("-c istio-init" in c for c in commands)


def test_gateway_facts_name_the_config_it_serves(inv):
    (e,) = ex.explain(inv, "istio-ingressgateway-5c8d9f7b6-h8j2k").subjects
    # A Gateway's selector matches gateway pods of any namespace (unless scoped by PILOT_SCOPE_GATEWAY_TO_NAMESPACE).
    assert "serves: Gateway bookinfo/bookinfo-gateway" in e.facts
    assert any("exposed by Service istio-ingressgateway (LoadBalancer)" in f for f in e.facts)
    (edge,) = ex.explain(inv, "public-edge-7f6d5c4b3-m9n8b").subjects
    assert "no Gateway resource selects it" in edge.facts


# ---------------------------------------------------------------- names


def test_workload_and_component_names(inv):
    (w,) = ex.explain(inv, "istio-system/istiod").subjects
    assert str(w.ref) == "Deployment istio-system/istiod" and w.component.id == "istiod"
    assert w.facts[0] == "pods: istiod-7d4f9c6b8-q7m4z, istiod-7d4f9c6b8-x2k9p"
    report = ex.explain(inv, "ztunnel-4kx7p")
    assert report.subjects[0].component.id == "ztunnel"
    (summary,) = ex.explain(inv, "sidecar").summaries
    assert [i.name for i in summary.instances] == [
        "productpage-v1-6b746f74dc-9rlmh", "reviews-v1-5b5d6494f4-7xkqz", "billing-8f9e7d6c5-b4c5d"]


def test_unknown_name_lists_close_matches_and_exits_2(inv, capsys):
    with pytest.raises(ex.NameNotFound, match="did you mean: .*istiod-7d4f9c6b8-x2k9p"):
        ex.explain(inv, "istiod-7d4f9c6b8-x2k9")
    code, out, err = run(capsys, "explain", "productpage", "--source", str(CLUSTER))
    assert code == 2 and out == ""
    assert "'productpage' is not a pod, workload or Istio component id" in err and "productpage-v1" in err


def test_component_id_absent_from_the_cluster_is_an_error():
    inv = build_inventory(files_snapshot(REFERENCE_INSTALL))
    with pytest.raises(ex.NameNotFound, match="no waypoint in"):
        ex.explain(inv, "waypoint")


# ---------------------------------------------------------------- every component explained


def _assert_all_explained(inv):
    report = ex.explain(inv)
    present = {c.component for c in inv.components}
    assert present, "no component found"
    assert {s.component.id for s in report.summaries} == present
    assert sum(len(s.instances) for s in report.summaries) == len(inv.components)
    for s in report.summaries:
        assert s.commands, f"{s.component.id}: no debug command"
        first = s.instances[0]
        target = first.name if first.kind == "Pod" else f"{first.kind.lower()}/{first.name}"
        assert any(target in c.command for c in s.commands), s.component.id
    for c in inv.components:
        (e,) = ex.explain(inv, f"{c.namespace}/{c.name}").subjects
        assert e.component is not None and e.component.id == c.component
    return report


def test_every_component_of_the_fixture_cluster_is_explained(inv):
    report = _assert_all_explained(inv)
    assert {s.component.id for s in report.summaries} == set(CATALOG)


def test_istios_own_install_is_explained_from_workloads_alone():
    inv = build_inventory(files_snapshot(REFERENCE_INSTALL))
    _assert_all_explained(inv)
    (e,) = ex.explain(inv, "istio-system/istiod").subjects
    commands = [c.command for c in e.commands]
    assert "kubectl logs deployment/istiod -n istio-system -c discovery" in commands
    assert not any("exec" in c or "get pod" in c for c in commands), "no pod to exec into"
    assert {r.name for r in e.dependents} == {"istio-ingressgateway", "istio-egressgateway"}


def test_the_demo_cluster_is_explained_and_drawn(capsys):
    inv = build_inventory(load_snapshot("demo"))
    _assert_all_explained(inv)
    _assert_dot(explain_render.to_dot(ex.graph(inv)), {c.component for c in inv.components})
    code, out, _ = run(capsys, "explain", "--source", "demo", "--format", "markdown")
    assert code == 0 and "```dot" in out


def test_explain_istiod_of_the_demo_names_its_dependents_and_real_pod(capsys):
    inv = build_inventory(load_snapshot("demo"))
    istiod = next(c for c in inv.components if c.component == "istiod" and c.kind == "Pod")
    (e,) = ex.explain(inv, istiod.name).subjects
    kinds = {c.ref: c.component for c in inv.components}
    assert e.dependents and {kinds[r] for r in e.dependents} <= set(XDS_CLIENTS)
    code, out, _ = run(capsys, "explain", istiod.name, "--source", "demo")
    assert code == 0
    assert f"PODS THAT DEPEND ON IT ({len(e.dependents)})" in out
    assert f"kubectl logs {istiod.name} -n {istiod.namespace} -c discovery" in out


# ---------------------------------------------------------------- the graph

_NODE = re.compile(r'^\s*"([^"]+)" \[label="([^"]*)"', re.M)
_EDGE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)" \[label="([^"]*)"\];$', re.M)


def _assert_dot(dot: str, present: set[str]) -> dict[tuple[str, str], list[str]]:
    """Structural check of the DOT text; renders it too when Graphviz is installed."""
    assert dot.startswith("digraph mesh {") and dot.rstrip().endswith("}")
    assert dot.count("{") == dot.count("}")
    nodes = dict(_NODE.findall(dot))
    assert set(nodes) - set(PEERS) == present, "nodes are exactly the components present"
    edges: dict[tuple[str, str], list[str]] = {}
    for src, dst, label in _EDGE.findall(dot):
        assert src in nodes and dst in nodes, (src, dst)
        assert re.match(r"(\d+ )?\S", label), label
        edges.setdefault((src, dst), []).append(label)
    assert edges, "no edge"
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg", "-o", "/dev/null"], input=dot, text=True, check=True)
    return edges


def test_dot_graph_of_the_fixture_cluster(inv, capsys):
    code, dot, _ = run(capsys, "explain", "--source", str(CLUSTER), "--format", "dot")
    assert code == 0
    edges = _assert_dot(dot, {c.component for c in inv.components})
    assert edges[("sidecar", "istiod")][0].startswith("15012 gRPC/mTLS\\nxDS")
    assert edges[("kube-apiserver", "istiod")][0].startswith("15017 HTTPS")
    assert edges[("prometheus", "sidecar")][0].startswith("15020 HTTP")
    assert edges[("sidecar", "zipkin")][0].startswith("9411 HTTP")
    assert edges[("istio-cni", "ztunnel")][0].startswith("Unix socket")
    assert "istio-cni\\n2 pods in istio-system, on 2 nodes" in dict(_NODE.findall(dot)).values()


def test_graph_has_only_what_is_present():
    inv = build_inventory(files_snapshot(REFERENCE_INSTALL))
    g = ex.graph(inv)
    present = {c.component for c in inv.components}
    assert {n.id for n in g.nodes} - set(PEERS) == present
    assert "ztunnel" not in present and "sidecar" not in present
    assert all((e.source in present or e.source in PEERS) and (e.target in present or e.target in PEERS)
               for e in g.edges)
    _assert_dot(explain_render.to_dot(g), present)


def test_waypoint_says_what_uses_it(inv):
    (e,) = ex.explain(inv, "waypoint-5f4e3d2c1-z9y8x").subjects
    assert "used by: namespace shop" in e.facts
    assert "serves: Gateway shop/waypoint (Gateway API)" in e.facts
    unused = inv.with_changes(apply=[{"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": "shop", "labels": {"istio.io/dataplane-mode": "ambient"}}}])
    (e,) = ex.explain(unused, "waypoint-5f4e3d2c1-z9y8x").subjects
    assert "nothing is labelled istio.io/use-waypoint=waypoint: no traffic goes through it" in e.facts


def test_focused_graph_keeps_the_subjects_edges(inv):
    g = ex.explain(inv, "waypoint-5f4e3d2c1-z9y8x").graph
    assert g.edges and all("waypoint" in (e.source, e.target) for e in g.edges)


# ---------------------------------------------------------------- formats


def test_markdown_and_json(capsys):
    code, md, _ = run(capsys, "explain", "istiod-canary-6b9f8d7c5-t5r2w", "--source", str(CLUSTER), "-o", "markdown")
    assert code == 0
    assert md.startswith("# Istio components")
    assert "## Pod istio-system/istiod-canary-6b9f8d7c5-t5r2w: istiod" in md
    assert "```sh\n# " in md and "kubectl logs istiod-canary-6b9f8d7c5-t5r2w -n istio-system -c discovery" in md
    assert "```dot\ndigraph mesh {" in md
    code, out, _ = run(capsys, "explain", "istiod-canary-6b9f8d7c5-t5r2w", "--source", str(CLUSTER), "-o", "json")
    data = json.loads(out)
    (subject,) = data["subjects"]
    assert subject["component"] == "istiod" and subject["dependents"] == ["Pod legacy/billing-8f9e7d6c5-b4c5d"]
    assert {"from": "sidecar", "to": "istiod", "port": 15012, "protocol": "gRPC/mTLS",
            "purpose": "xDS config + certificate signing"} in data["graph"]["edges"]


def test_overview_table_lists_every_instance(inv, capsys):
    code, out, _ = run(capsys, "explain", "--source", str(CLUSTER))
    assert code == 0
    rows = [line.split() for line in out.splitlines()[1:len(inv.components) + 1]]
    assert sorted((r[0], r[4]) for r in rows) == sorted((c.component, c.name) for c in inv.components)


def test_long_dependent_lists_are_capped_in_text_but_complete_in_json(capsys, tmp_path):
    import yaml

    docs = [d for d in yaml.safe_load_all(CLUSTER.read_text()) if d]
    productpage = next(d for d in docs if d["metadata"]["name"] == "productpage-v1-6b746f74dc-9rlmh")
    for i in range(200):
        replica = json.loads(json.dumps(productpage))
        replica["metadata"]["name"] = f"productpage-v1-6b746f74dc-r{i:03d}"
        docs.append(replica)
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump_all(docs))
    code, out, _ = run(capsys, "explain", "istiod-7d4f9c6b8-x2k9p", "--source", str(big))
    assert code == 0 and "PODS THAT DEPEND ON IT (209)" in out
    assert "… and 159 more (--format json lists them all)" in out
    code, out, _ = run(capsys, "explain", "istiod-7d4f9c6b8-x2k9p", "--source", str(big), "-o", "json")
    assert len(json.loads(out)["subjects"][0]["dependents"]) == 209


def test_the_inject_label_wins_over_the_annotation_as_for_the_injector(demo_inventory):
    from cluster.model import PodSpecSummary

    def template(labels, annotations):
        return PodSpecSummary(labels, annotations, (), (), "default", False)

    both = ex.mesh_status(demo_inventory, template({"sidecar.istio.io/inject": "true"},
                                                        {"sidecar.istio.io/inject": "false"}), "shop")
    assert both.in_mesh and "opted out" not in both.reason
    only_annotation = ex.mesh_status(demo_inventory, template({}, {"sidecar.istio.io/inject": "false"}), "shop")
    assert not only_annotation.in_mesh and "annotation sidecar.istio.io/inject=false" in only_annotation.reason


def test_inventory_rows_say_what_of_each_thing_is_in_the_mesh(demo_inventory):
    rows = inventory_rows(demo_inventory)
    assert sum(r["in mesh"] for r in rows["Pods"]) == demo_inventory.report()["counts"]["pods_in_mesh"]
    shop = next(r for r in rows["Namespaces"] if r["namespace"] == "shop")
    assert shop["pods in mesh"] == sum(r["in mesh"] for r in rows["Pods"] if r["namespace"] == "shop") > 0
    catalog = next(r for r in rows["Pods"] if r["pod"].startswith("catalog-"))
    assert not catalog["in mesh"] and catalog["why"].startswith("predates injection")
    reviews = next(r for r in rows["Services"] if (r["namespace"], r["service"]) == ("shop", "reviews"))
    assert reviews["pods in mesh"] == reviews["pods"] > 0
