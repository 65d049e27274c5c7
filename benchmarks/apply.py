"""`meshstep plan run --apply` over the whole demo routing-first plan against the emulated API server (tests/kube.py:
kmock's emulator taught server-side apply, on loopback): the time each stage takes outside its bake (the reads of
the cluster its gate and verification need, the dry runs, the applies, the moves recorded in SQLite), and the CPU
count. No telemetry and no settle time: the bake is left out of the figure (and measured apart, ~0 here).

    python -m benchmarks.apply
"""
from __future__ import annotations

import os
import tempfile
import time
from contextlib import closing
from pathlib import Path

from benchmarks.kubeapi import write_kubeconfig
from cluster.apply import Cluster as Writer
from cluster.files import read_paths
from cluster.inventory import build_inventory
from cluster.sources import DEMO_DIR, load_snapshot
from planner import moves, stages
from planner.operate import Operator
from state.store import Store
from telemetry.evidence import Evidence
from tests.kube import rollout_restart, serve

SOURCE = "context:bench"


class Timed(Operator):
    """An Operator that keeps the time spent waiting for Istio and baking, to leave it out."""

    baking = 0.0

    def accepted(self, applied):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return super().accepted(applied)
        finally:
            self.baking += time.perf_counter() - t

    def bake(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return super().bake(*args, **kwargs)
        finally:
            self.baking += time.perf_counter() - t


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="meshstep-bench-apply-"))
    os.environ["MESHSTEP_SETTLE"] = "0"
    with serve(list(read_paths(sorted(DEMO_DIR.glob("*.yaml")))), writes=True) as served:
        os.environ["KUBECONFIG"] = str(write_kubeconfig(work / "kubeconfig", {"bench": served.url}, "bench"))
        read = lambda: build_inventory(load_snapshot(SOURCE))  # noqa: E731
        operator = Timed(Writer.connect("bench"))
        no_traffic = Evidence(None, "no telemetry given (benchmark)")
        with closing(Store.open(f"sqlite:///{work / 'state.db'}")) as store:
            plan = stages.create(store, SOURCE, read(), "routing-first", None, None, "bench")
            rows = []
            while (stage := stages.current_stage(plan)) is not None:
                operator.baking, t = 0.0, time.perf_counter()
                done = moves.run(store, plan, read, "bench", operator, lambda _inv: no_traffic, stages=1)
                if done.refusal is not None:
                    raise SystemExit(f"stage {stage.order}: {done.refusal}")
                total = time.perf_counter() - t
                plan = store.get_plan(plan.id)
                objects = len(plan.stages[stage.order - 1].record.applied)
                rows.append((stage.order, stage.title, objects, total - operator.baking, operator.baking))
                if stage.order == 2:  # the team's `kubectl rollout restart` after injection (the stage's notes)
                    for namespace in ("legacy", "payments", "shop"):
                        rollout_restart(served.emulator, SOURCE, namespace)
        writes = [r for r in served.emulator if r.method == "PATCH"]
    print(f"cpus: {os.cpu_count()}")
    print(f"{'stage':>5}  {'objects':>7}  {'outside bake':>12}  {'bake':>6}  title")
    for order, title, objects, outside, baking in rows:
        print(f"{order:>5}  {objects:>7}  {outside:>10.2f} s  {baking:>4.2f} s  {title}")
    applied = [r for r in rows if r[2]]
    print(f"stages applied: {len(applied)}, objects: {sum(r[2] for r in applied)}, PATCH requests: {len(writes)} "
          f"({sum('dryRun' in r.params for r in writes)} dry runs)")
    print(f"time per applied stage outside the bake: mean {sum(r[3] for r in applied) / len(applied):.2f} s, "
          f"max {max(r[3] for r in applied):.2f} s; whole plan {sum(r[3] for r in rows):.2f} s")


if __name__ == "__main__":
    main()
