"""A plan's export as the app downloads it: a zip of `plan export`'s files under a folder named after the plan,
which a name typed by a user cannot lead out of."""
from __future__ import annotations

import io
import zipfile

from cluster.inventory import build_inventory
from cluster.sources import load_snapshot
from planner import export, stages
from state.store import Store


def test_the_zip_holds_the_export_under_a_safe_folder(tmp_path):
    inv = build_inventory(load_snapshot("demo"))
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        plan = stages.create(store, "demo", inv, "routing-first", None, "../../etc/a plan", "alice")
        files = export.stage_files(plan, inv)
        z = zipfile.ZipFile(io.BytesIO(export.archive(files, plan.name)))
        assert {n: z.read(n).decode() for n in z.namelist() if not n.endswith("SKIPPED.txt")} == {
            f"etc-a-plan/{name}": text for name, text in files.files.items()}
        assert z.read("etc-a-plan/SKIPPED.txt").decode().splitlines() == files.skipped
        assert export.folder_name("..") == "plan"
    finally:
        store.close()
