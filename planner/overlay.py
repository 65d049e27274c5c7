"""The overlay: the cluster as a plan's stages leave it, each stage's YAML applied in turn. A real plan's stages are
rendered and gated on it (so that `plan export` files applied in order give that state); a rehearsal walks it as
the cluster itself."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import planner.plan
from cluster import cache
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from cluster.queries import per_inventory
from features.base import registry, validate_params
from planner import lifecycle
from planner.stages import found_on, stage_spec
from state.models import Plan, PlanMode, Stage, StageStatus


class Overlay:
    """The cluster as the stages walked so far leave it: the source with each stage's YAML applied in turn.
    Objects are applied when the inventory is next read, so that walking stages whose YAML is kept costs one
    rebuild of the inventory, not one per stage."""

    def __init__(self, inventory: Inventory | Callable[[bool], Inventory], rehearsal: bool) -> None:
        self._inventory = inventory  # or how to make it (kept in the cache, or not), the first time it is read
        self.rehearsal = rehearsal
        self._pending: list[dict[str, Any]] = []
        self._configs: dict[int, planner.plan.StageConfig] = {}

    @property
    def inventory(self) -> Inventory:
        return self.made(keep=True)

    def made(self, keep: bool) -> Inventory:
        """The inventory; made now if it was not yet, and kept in the inventory cache if `keep` (the overlay a
        command asks for, not those it is made from)."""
        if callable(self._inventory):
            self._inventory = self._inventory(keep)
        if self._pending:
            self._inventory = self._inventory.with_changes(apply=self._pending)
            self._pending = []
        return self._inventory

    def config(self, stage: Stage) -> planner.plan.StageConfig:
        """The stage's YAML and rollback: as taken when its gate passed, else rendered on the overlay now."""
        if stage.id not in self._configs:
            record = stage.record
            self._configs[stage.id] = (
                planner.plan.StageConfig(record.apply_yaml, record.rollback_yaml, record.notes)
                if record.apply_yaml is not None else planner.plan.config(stage_spec(stage), self.inventory))
        return self._configs[stage.id]

    def add(self, stage: Stage) -> None:
        """Apply the stage's YAML, unless the stage was found on (its objects are the cluster's already) or was
        rolled back; and the objects its install commands make (Feature.commanded: the CRDs of a manifest applied by
        URL, what a Helm install runs), which an overlay does not run, so that the stages after it render on a
        cluster that has them. A rehearsal also runs the stage's restarts, found on or not: each step's pods come
        back as its notes' `kubectl rollout restart` brings them, since an overlay runs neither Kubernetes'
        controllers nor Istio's injector. (A stage found on still needs them where pods predate its label: a
        namespace labelled for injection has its pods in the mesh only once they restart. A real plan's pods are
        the cluster's own, as the team restarted them or not.)"""
        if stage.status == StageStatus.ROLLED_BACK:
            return
        if not found_on(stage):
            cfg = self.config(stage)
            if cfg.deletions:  # in order: what the earlier stages applied, then what this one deletes
                self._inventory = self.inventory.with_changes(delete=cfg.deletions)
            self._pending += cfg.objects
        feats = registry()
        for step in stage_spec(stage).steps:
            f = feats[step.feature]
            p = validate_params(f, step.params)
            made = f.commanded(p, step.scope, self.inventory)
            if made:
                self._inventory = self._inventory.with_changes(apply=made)
            pods = f.restarted_pods(p, step.scope, self.inventory) if self.rehearsal else []
            if pods:
                self._inventory = self._inventory.with_changes(pods=pods)


def walk(plan: Plan, inventory: Inventory, rehearsal: bool | None = None) -> Iterator[tuple[Stage, Overlay]]:
    """Each stage with the overlay it starts from: the source plus the YAML of every earlier stage (for a rehearsal,
    by default as the plan's mode says, with their restarts too).

    Built incrementally and lazily: each overlay is made when it is first read, from the one before it. The
    cluster as each run of stages leaves it is kept with the source's inventory (for as long as it lives), keyed by
    what those stages apply, so that the next walk over the same stages (the next move of a rehearsal, the next page
    of the app) starts from it and applies only the stages after it; and, for a source read through the inventory
    cache, in that cache too (cluster.cache.derived), so that the next command over the same plan does."""
    rehearsal = plan.mode == PlanMode.REHEARSAL if rehearsal is None else rehearsal
    known: dict[tuple[Any, ...], Inventory] = per_inventory(inventory, "overlay-walks", lambda _: {})
    overlay = Overlay(inventory, rehearsal)
    walked: tuple[Any, ...] = (plan.id, rehearsal)
    for stage in plan.stages:
        yield stage, overlay
        walked += (_effect(stage),)
        overlay = Overlay(_after(inventory, known, walked, overlay, stage), rehearsal)


# The rooms whose code makes an overlay: the planner adds stages with the features' restarts and commands, which
# read the cluster through analysis and cluster.
_MAKERS = ("analysis", "cluster", "features", "planner")


def _after(source: Inventory, known: dict[tuple[Any, ...], Inventory], walked: tuple[Any, ...], before: Overlay,
           stage: Stage) -> Callable[[bool], Inventory]:
    """How to make the overlay after `stage` (its stages `walked`) from the one `before` it."""
    def make(keep: bool) -> Inventory:
        if walked not in known:
            def build() -> Inventory:
                copy = Overlay(before.made(keep=False), before.rehearsal)
                copy.add(stage)
                return copy.inventory

            known[walked] = cache.derived(source, json.dumps(walked, default=str), cache.code_of(_MAKERS), build,
                                          keep)
        return known[walked]

    return make


def _effect(stage: Stage) -> tuple[Any, ...]:
    """What decides how a stage changes the overlay it is added to (the overlay before it aside)."""
    record = stage.record
    return (stage.id, stage.status == StageStatus.ROLLED_BACK, found_on(stage), record.apply_yaml,
            json.dumps(stage.features, sort_keys=True))


def overlay_at(plan: Plan, inventory: Inventory, stage: Stage, including: bool = False,
               rehearsal: bool | None = None) -> Overlay:
    """The overlay a stage starts from (with `including`, the one it leaves)."""
    for st, overlay in walk(plan, inventory, rehearsal):
        if st.id == stage.id:
            if including:
                overlay.add(stage)
            return overlay
    raise MeshstepError(f"stage {stage.order} is not in plan {plan.name!r}")


def cluster_now(plan: Plan, inventory: Inventory, stage: Stage) -> Inventory:
    """The cluster as a stage's exit check and rollback read it: the fresh read of the cluster for a real plan; for
    a rehearsal, the overlay with the stage's YAML applied once it was rehearsed."""
    if plan.mode != PlanMode.REHEARSAL:
        return inventory
    applied = stage.status in lifecycle.APPLIED_OR_LATER
    return overlay_at(plan, inventory, stage, including=applied).inventory
