"""Whole plans over the corpus (tests/features/corpus.py), not just the demo: on every application cluster a
routing-first plan exports as files a YAML reader and kubectl read object for object, and is rehearsed on its
overlay from start to done."""
from __future__ import annotations

import re

import pytest
import yaml

from planner import moves, stages
from planner.export import stage_files
from state.store import Store
from tests.features import corpus

CLUSTERS = [c for c in corpus.corpus() if not c.name.startswith("analyzer/")]


@pytest.fixture
def dry_run(tmp_path):
    from tests.kubectl import kubectl

    with kubectl(tmp_path) as run:
        yield run


@pytest.mark.parametrize("cluster", CLUSTERS, ids=lambda c: c.name)
def test_a_plan_exports_and_is_rehearsed_to_done(cluster: corpus.Cluster, tmp_path, dry_run) -> None:
    inv = cluster.load()
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        plan = stages.create(store, cluster.name, inv, "routing-first", None, "p", "alice")
        # the files `plan export` writes: one object per `# meshstep:` header, and kubectl takes each
        export = stage_files(plan, inv)
        for name, text in export.files.items():
            objects = [d for d in yaml.safe_load_all(text) if d]
            headers = re.findall(r"^# meshstep:.*$", text, re.MULTILINE)
            assert len(objects) == len(headers), f"{cluster.name} {name}: {len(objects)} objects, {len(headers)} " \
                                                 "headers"
            if objects:
                path = tmp_path / name
                path.write_text(text)
                rc, out = dry_run(path)
                assert rc == 0 and out.count("(dry run)") == len(objects), f"{cluster.name} {name}: {out}"
        # walked on its overlay to done; a gate that blocks is overridden with a reason, as a team rehearsing
        # notes what it must fix first, but an exit check must pass: the overlay has the stage applied
        for _ in range(100):
            plan = store.get_plan(plan.id)
            if stages.current_stage(plan) is None:
                break
            try:
                moves.advance(store, plan, inv, "alice", rehearse=True)
            except moves.GateBlocked:  # recorded as blocked: the stage moved on, read it again
                moves.advance(store, store.get_plan(plan.id), inv, "alice", override_reason="rehearsal: noted",
                                 rehearse=True)
        plan = store.get_plan(plan.id)
        assert stages.current_stage(plan) is None and {s.status for s in plan.stages} == {"done"}, \
            [(s.order, s.title, s.status) for s in plan.stages]
    finally:
        store.close()
