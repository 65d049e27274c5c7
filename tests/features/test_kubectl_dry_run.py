"""Every feature's rendered YAML, and its rollback, through `kubectl apply --dry-run=client -f` (Debian's
kubernetes-client; tests/kubectl.py serves the discovery kubectl needs): the files a person applies parse as kubectl
parses them, one object per `---` document, every kind known to an Istio 1.27 cluster."""
from __future__ import annotations

import re

from cluster.inventory import Inventory, build_inventory
from cluster.sources import load_snapshot
from features.base import apply, registry
from planner import plan
from tests.cluster.test_revisions import FIXTURE, _applied
from tests.features.corpus import ambient
from tests.features.test_lifecycle import case, cluster_for, with_dependencies
from tests.kubectl import kubectl


def test_every_rendering_and_rollback_passes_kubectl_dry_run(demo_inventory: Inventory, tmp_path):
    files = []
    for feature in (f for f in registry().values() if not f.operation):
        scope, params = case(feature)
        before = with_dependencies(feature, cluster_for(feature, demo_inventory), scope)
        rendered = feature.render(params, scope, before)
        undo = feature.rollback(params, scope, apply(rendered, before))
        for what, r in (("render", rendered), ("rollback", undo)):
            if r.objects:
                path = tmp_path / f"{feature.id}-{what}.yaml"
                path.write_text(r.yaml)
                files.append((path, len(r.objects)))
    # the traffic features' Gateway API renderings (Gateway, HTTPRoute, a version's Service), on the ambient fixture
    # where ledger has its waypoint
    cluster = ambient()
    for fid, params in (("ingress-gateway", {}), ("request-routing", {}), ("traffic-shifting", {}),
                        ("timeouts-retries", {})):
        rendered = registry()[fid].render(params | {"api": "gateway-api"}, "ledger", cluster)
        path = tmp_path / f"{fid}.gateway-api-apply.yaml"
        path.write_text(rendered.yaml)
        files.append((path, len(rendered.objects)))
        cluster = apply(rendered, cluster)
    # the canary upgrade's steps, stage by stage: on a cluster in the middle of one, and on the demo's one revision
    # upgraded to a release (`plan new --template upgrade --to 1.28.0`), from the install of its new revision
    for name, upgrading, to in (("mid", build_inventory(load_snapshot(str(FIXTURE))), None),
                                ("to", demo_inventory, "1.28.0")):
        for stage in (s for s in plan.new_plan("upgrade", upgrading, to=to).stages if not s.done):
            for step in stage.steps:
                feature = registry()[step.feature]
                rendered = feature.render(step.params, step.scope, upgrading)
                undo = feature.rollback(step.params, step.scope, upgrading)  # as rendered before the stage
                for what, r in (("render", rendered), ("rollback", undo)):
                    if r.objects:
                        path = tmp_path / f"{feature.id}.{step.scope}.{name}-{what}.yaml"
                        path.write_text(r.yaml)
                        files.append((path, len(r.objects)))
            upgrading = _applied(stage, upgrading)
    # the migration's clean-up (an operation), on the corpus cluster once bank has switched to ambient
    from tests.features.corpus import migration
    from tests.features.test_ambient_migration import walk

    switched = walk(migration(), ["bank"])[-2][1]
    cleanup = registry()["ambient-cleanup"]
    rendered = cleanup.render({}, "bank", switched)
    for what, r in (("render", rendered), ("rollback", cleanup.rollback({}, "bank", apply(rendered, switched)))):
        path = tmp_path / f"ambient-cleanup.bank-{what}.yaml"
        path.write_text(r.yaml)
        files.append((path, len(r.objects)))
    # every rendering; a rollback that only deletes what the rendering created has no object to apply
    # (the install and removal of a revision, the ambient data plane's install: commands and deletions, no object)
    rendered = {p.name.removesuffix("-render.yaml").split(".")[0] for p, _ in files if p.name.endswith("-render.yaml")}
    assert rendered == set(registry()) - {"revision-install", "single-revision", "ambient-install", "gateway-api-crds"}
    with kubectl(tmp_path) as dry_run:
        for path, count in files:
            code, output = dry_run(path)
            assert code == 0, f"{path.name}: {output}"
            assert len(re.findall(r" (?:created|configured|unchanged) \(dry run\)", output)) == count, output
