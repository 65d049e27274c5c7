"""The benchmarks' synthetic cluster: deterministic, exactly the sizes asked for, and read by meshstep as the
cluster it describes (so that the benchmark input cannot silently rot)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from analysis.common import analyze
from benchmarks.synthetic import expected_counts, synthetic_cluster, write
from cluster.inventory import Inventory, build_inventory
from cluster.snapshot import Snapshot
from cluster.sources import load_snapshot

PODS, SERVICES, ISTIO_OBJECTS = 300, 60, 50


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    return synthetic_cluster(PODS, SERVICES, ISTIO_OBJECTS, seed=0)


@pytest.fixture(scope="module")
def inventory(objects: list[dict]) -> Inventory:
    return build_inventory(Snapshot("synthetic", lambda _v: iter(objects)))


def test_deterministic_and_seeded(objects: list[dict]) -> None:
    assert synthetic_cluster(PODS, SERVICES, ISTIO_OBJECTS, seed=0) == objects
    assert synthetic_cluster(PODS, SERVICES, ISTIO_OBJECTS, seed=1) != objects


def test_the_inventory_counts_what_was_generated(objects: list[dict], inventory: Inventory) -> None:
    counts = inventory.report()["counts"]
    assert expected_counts(objects) == {"pods": PODS, "pods_in_mesh": counts["pods_in_mesh"], "services": SERVICES,
                                        "istio_config": ISTIO_OBJECTS}
    assert (counts["pods"], counts["services"], sum(counts["istio_config"].values())) == (PODS, SERVICES,
                                                                                          ISTIO_OBJECTS)
    # Most pods are in the mesh, not all: some namespaces are not injected and some workloads opt out.
    assert 0.6 * PODS < counts["pods_in_mesh"] < PODS
    assert set(counts["istio_config"]) >= {"VirtualService", "DestinationRule", "PeerAuthentication",
                                           "AuthorizationPolicy", "ServiceEntry", "Gateway"}


def test_control_plane_and_both_sidecar_shapes(inventory: Inventory) -> None:
    assert [(r.revision, r.version, r.istiod_pods, r.ready_pods) for r in inventory.revisions] == [
        ("1-27", "1.27.3", 2, 2), ("default", "1.26.4", 2, 2)]
    components = Counter(c.component for c in inventory.components)
    assert components["istiod"] == 4 and components["ingress-gateway"] == 3 and components["istio-cni"] >= 3
    shapes = Counter((p.sidecar.shape, p.sidecar.revision, p.sidecar.version) for p in inventory.pods if p.sidecar)
    assert set(shapes) == {("native", "1-27", "1.27.3"), ("classic", "default", "1.26.4")}
    injected = [p for p in inventory.pods if p.sidecar]
    assert all(p.spec.container("istio-validation" if p.sidecar.shape == "native" else "istio-init")
               for p in injected)
    assert all(p.labels.get("security.istio.io/tlsMode") == "istio" for p in injected)
    assert all(p.workload_kind in ("Deployment", "StatefulSet", "DaemonSet") for p in inventory.pods)


def test_istio_config_refers_to_real_services(inventory: Inventory) -> None:
    # No IST0101 (referenced host or gateway not found) and no reference to a missing workload.
    codes = Counter(m.code for m in analyze(inventory))
    assert codes["IST0101"] == 0, codes
    services = {(s.namespace, s.name) for s in inventory.services}
    for dr in inventory.of_kind("DestinationRule"):
        assert (dr.namespace, dr.spec["host"]) in services
    for ap in inventory.of_kind("AuthorizationPolicy"):
        assert inventory.pods_matching(ap.namespace, ap.spec["selector"]["matchLabels"])


def test_written_list_reads_back(tmp_path: Path, objects: list[dict]) -> None:
    path = tmp_path / "cluster.json"
    write(objects, path)
    counts = build_inventory(load_snapshot(str(path))).report()["counts"]
    assert (counts["pods"], counts["services"]) == (PODS, SERVICES)


def test_with_managed_fields_every_object_says_who_owns_it() -> None:
    """The benchmark's managedFields read back as field owners (cluster/owners.py), the rest of the cluster unchanged;
    the inventory keeps them for the kinds features change, never for pods."""
    from cluster.owners import owners

    owned = synthetic_cluster(PODS, SERVICES, ISTIO_OBJECTS, seed=0, managed_fields=True)
    assert all(o["metadata"]["managedFields"] for o in owned)
    for o in owned:
        del o["metadata"]["managedFields"]
    assert owned == synthetic_cluster(PODS, SERVICES, ISTIO_OBJECTS, seed=0)
    deployment = next(o for o in synthetic_cluster(PODS, SERVICES, ISTIO_OBJECTS, seed=0, managed_fields=True)
                      if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]["name"]
    assert f'.spec.template.spec.containers[name="{container}"].image' in {
        str(p) for o in owners(deployment) if o.manager == "argocd-controller" for p in o.paths}
    inv = build_inventory(Snapshot("synthetic", lambda _v: iter(synthetic_cluster(PODS, SERVICES, ISTIO_OBJECTS,
                                                                                    seed=0, managed_fields=True))))
    assert inv.get("Deployment", deployment["metadata"]["namespace"], deployment["metadata"]["name"]).raw[
        "metadata"]["managedFields"]
    assert not [o for o in inv.objects.get("ReplicaSet", ()) if "managedFields" in o.raw["metadata"]]


def _opted_out(objects: list[dict]) -> list[str]:
    """The application workloads that opt out of injection (the control plane's do, as Istio's own)."""
    return [f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in objects
            if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["namespace"] != "istio-system"
            and o["spec"]["template"]["metadata"]["labels"].get("sidecar.istio.io/inject") == "false"]


def test_without_opt_outs_no_workload_opts_out_of_injection(objects: list[dict]) -> None:
    # The default cluster has workloads that opt out (they name no Service of the cluster: their STRICT stages warn
    # that what they call is unseen, MST0406); the option is the same cluster without them.
    assert _opted_out(objects)
    plain = synthetic_cluster(PODS, SERVICES, ISTIO_OBJECTS, seed=0, opt_outs=False)
    assert not _opted_out(plain)
    assert expected_counts(plain) | {"pods_in_mesh": 0} == expected_counts(objects) | {"pods_in_mesh": 0}
    assert expected_counts(plain)["pods_in_mesh"] > expected_counts(objects)["pods_in_mesh"]
