"""The Overview of a snapshot meshstep has read before: shown from the reading kept beside the snapshot's cache entry
(planner.fleet.reading), without decoding its inventory, and never from a stale one."""
from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from benchmarks.synthetic import synthetic_cluster, write
from cluster import cache, revisions
from cluster.sources import load_snapshot
from planner import fleet
from tests.app.conftest import APP


def _overview() -> dict[str, str]:
    """The Overview's metrics, as a freshly started server shows them (nothing in Streamlit's caches)."""
    st.cache_resource.clear()
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    return {m.label: m.value for m in at.metric}


def _expected(snapshot: Path) -> dict[str, str]:
    inv = cache.build_inventory(load_snapshot(str(snapshot)))
    mesh, up = inv.mesh_summary, revisions.upgrade(inv)
    return {"Istio version": f"{up.from_version} → {up.to_version}" if up else inv.istio_version,
            "Namespaces in the mesh":
            f"{mesh['namespaces_in_mesh']} / {mesh['namespaces_total']}",
            "Pods in the mesh": f"{mesh['pods_in_mesh']} / {mesh['pods_total']}",
            "Features observed": str(len(fleet.reading_of(inv).observed))}


def test_the_overview_of_a_snapshot_read_before_is_shown_without_decoding_it(tmp_path: Path, db_url: str,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = tmp_path / "cluster.json"
    objects = synthetic_cluster(700, 300, 60, seed=1)
    write(objects, snapshot)
    monkeypatch.setenv("MESHSTEP_SOURCE", str(snapshot))
    first = _overview()
    assert first == _expected(snapshot)
    with monkeypatch.context() as m:  # read before: neither the snapshot nor its cache entry is decoded
        m.setattr(cache, "_read", lambda *_: pytest.fail("the inventory's cache entry was decoded"))
        m.setattr(cache, "build_inventory", lambda *_: pytest.fail("the snapshot was read"))
        assert _overview() == first
    # The snapshot changed: the kept reading is stale, and the Overview shows the new one.
    write([o for o in objects if not (o["kind"] == "Pod" and o["metadata"]["namespace"].endswith("-001"))], snapshot)
    changed = _overview()
    assert changed == _expected(snapshot) and changed["Pods in the mesh"] != first["Pods in the mesh"]
