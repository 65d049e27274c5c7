"""A plan as files for a GitOps repository: each stage's YAML and its rollback, numbered in apply order."""
from __future__ import annotations

import io
import itertools
import re
import zipfile
from dataclasses import dataclass

import yaml

import planner.plan
from cluster.inventory import Inventory
from features.base import beyond_deletions, deletions_of
from planner.operate import stamped, sync_wave
from planner.overlay import walk
from planner.stages import found_on
from state.models import Plan, Stage


@dataclass(frozen=True)
class Export:
    files: dict[str, str]  # file name → YAML, in apply order
    skipped: list[str]  # stages with nothing to write, and why


def waved(text: str, plan: Plan, stage: Stage) -> str:
    """A stage's YAML as GitOps applies it: each object annotated with its plan and stage, as `--apply` annotates
    them, and with the Argo CD sync wave of its stage's order, so that one sync applies the stages in plan order;
    each document's leading comments kept."""
    docs = []
    for doc in text.split("\n---\n"):
        obj = yaml.safe_load(doc)
        if not isinstance(obj, dict):
            docs.append(doc)
            continue
        lines = doc.splitlines()
        head = list(itertools.takewhile(lambda line: line.startswith("#") or not line.strip(), lines))
        body = yaml.safe_dump(sync_wave(stamped(obj, plan, stage), stage), sort_keys=False)
        docs.append("\n".join([*head, body.rstrip("\n")]))
    return "\n---\n".join(docs) + ("\n" if text.endswith("\n") else "")


def stage_files(plan: Plan, inventory: Inventory) -> Export:
    """Every stage's YAML and its rollback as numbered files (`05-enter-through-the-ingress-gateway.yaml`, …) for
    GitOps. Each stage is rendered on the overlay of the stages before it, so that the files applied in order give
    the cluster the plan ends with; stages past their gate keep the YAML taken then. What a stage (or its rollback)
    deletes is a `.delete.yaml` of its own, for `kubectl delete -f`. Objects carry their plan, stage and Argo CD sync
    wave (`waved`). Stages found on when the plan
    was made, and stages with nothing to apply, have no file: they are named in `skipped`."""
    files: dict[str, str] = {}
    skipped: list[str] = []
    for stage, overlay in walk(plan, inventory):
        if not stage.features:
            continue
        if found_on(stage):
            skipped.append(f"stage {stage.order} ({stage.title}): already on when the plan was made; its config is "
                           "the cluster's own objects")
            continue
        cfg = overlay.config(stage)
        if cfg.empty:
            skipped.append(f"stage {stage.order} ({stage.title}): nothing to apply, "
                           + (f"{', '.join(f'{s.feature} in {s.scope}' for s in cfg.skipped)} already on"
                              if cfg.skipped else "it only checks"))
            continue
        for part, text in (("", waved(cfg.apply_yaml, plan, stage)), (".rollback", cfg.rollback_yaml)):
            for fname in file_names(stage, text, part):
                files[fname] = planner.plan.deletion_manifest(deletions_of(text), cfg.objects, overlay.inventory) \
                    if fname.endswith(".delete.yaml") else text
    return Export(files, skipped)


def file_names(stage: Stage, text: str, part: str = "") -> list[str]:
    """The export's files for a stage's YAML (`part` "") or its rollback (".rollback"):
    `05-enter-through-the-ingress-gateway.yaml`, and a `….delete.yaml` for what it deletes. A YAML of nothing but
    deletions (a rollback of what the stage created) has no `.yaml`: comments only, `kubectl apply -f` would refuse
    it."""
    name = f"{stage.order:02d}-{re.sub(r'[^a-z0-9]+', '-', stage.title.lower()).strip('-')}{part}"
    return [f"{name}.yaml"] * beyond_deletions(text) + [f"{name}.delete.yaml"] * bool(deletions_of(text))


def folder_name(plan_name: str) -> str:
    """A plan's name as a file or folder name: letters, digits, dots, dashes and underscores only (a name is what
    a user typed: `../x` must not lead out of where the zip is unpacked)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", plan_name).strip(".-") or "plan"


def archive(export: Export, plan_name: str) -> bytes:
    """The export as a zip of <plan>/<file> (the files in apply order) and, when stages have no file, a
    <plan>/SKIPPED.txt saying which and why; <plan> is the plan's name as folder_name makes it safe."""
    folder = folder_name(plan_name)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in export.files.items():
            z.writestr(f"{folder}/{name}", text)
        if export.skipped:
            z.writestr(f"{folder}/SKIPPED.txt", "".join(f"{line}\n" for line in export.skipped))
    return out.getvalue()
