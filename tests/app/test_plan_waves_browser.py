"""A plan in waves in Debian's Chromium: `meshstep ui` on a synthetic cluster of 15 application namespaces
(benchmarks/synthetic.py, 400 pods; tests/app/test_plan_waves.py checks the same page through AppTest). A new user
makes the routing-first plan with wave sizes of their own, sees the waves (the pilot with its reasons, every wave's
namespaces), each stage's wave in the table, and rehearses it until STRICT mTLS is refused in the one namespace of
its wave whose workloads opt out of injection and call a Service of their namespace: the gate's line names that
namespace. The stage table is saved as
plan-waves-stages.png, the blocked stage as plan-waves.png (in the test's directory, or MESHSTEP_SCREENSHOTS=DIR).
Without Chromium the test is skipped, except under CI."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from state.store import Store
from tests.app.browser import app_server, chromium, settled
from tests.app.test_plan_waves import _opt_outs, small_cluster

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.browser


def test_a_plan_in_waves_in_the_browser(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    source = tmp_path / "cluster.json"
    objects = small_cluster(source)
    db = f"sqlite:///{tmp_path / 'state.db'}"
    shots = ROOT / os.environ["MESHSTEP_SCREENSHOTS"] if os.environ.get("MESHSTEP_SCREENSHOTS") else tmp_path
    with app_server(tmp_path, str(source), db) as url, chromium() as context:
        pg = context.new_page()
        pg.goto(f"{url}/plan?as=alice")
        settled(pg)
        pg.get_by_role("textbox", name="Wave sizes").fill("1,3,30%,rest")
        pg.get_by_role("button", name="Create the plan").click()
        expect(pg.get_by_text("Plan routing-first created")).to_be_visible()
        settled(pg)
        store = Store.open(db)
        try:
            (plan,) = store.list_plans(str(source))
        finally:
            store.close()
        groups = plan.waves["waves"]
        assert plan.waves["spec"] == "1,3,30%,rest" and [len(g) for g in groups[:3]] == [1, 3, 5]
        expect(pg.get_by_text(f"Waves (1,3,30%,rest): {' → '.join(str(len(g)) for g in groups)} namespaces")
               ).to_be_visible()
        expect(pg.get_by_text(f"Pilot: {groups[0][0]}, chosen because it has")).to_be_visible()
        expect(pg.get_by_text("traffic not weighed: no telemetry given (the \"Prometheus URL or metrics file\" "
                              "field on the Settings page)")).to_be_visible()
        pg.get_by_text(f"The namespaces of each of the {len(groups)} waves").click()
        for i, group in enumerate(groups):
            name = "pilot wave" if i == 0 else f"wave {i + 1} of {len(groups)}"
            expect(pg.get_by_text(f"{name} ({len(group)}): ")).to_have_text(
                f"{name} ({len(group)}): {', '.join(group)}")
        table = pg.get_by_test_id("stTable")
        expect(table.get_by_role("columnheader", name="wave")).to_be_visible()
        for i, title in ((0, "pilot wave"), (len(groups) - 1, f"wave {len(groups)} of {len(groups)}")):
            into = "the pilot namespace" if i == 0 else title
            row = table.get_by_role("row").filter(has_text=f"Inject sidecars into {into}")
            expect(row.get_by_role("cell", name=title, exact=True)).to_be_visible()
            expect(row).to_contain_text(", ".join(sorted(groups[i])))  # every namespace of the wave, none cut
        table.scroll_into_view_if_needed()
        pg.screenshot(path=str(shots / "plan-waves-stages.png"))

        pg.get_by_text("Rehearse on the plan's overlay").click()
        settled(pg)
        pg.get_by_role("button", name="Rehearse to done").click()
        expect(pg.get_by_text("The rehearsal stopped after")).to_be_visible()
        settled(pg)
        store = Store.open(db)
        try:
            blocked = next(s for s in store.get_plan(plan.id).stages if s.status == "blocked")
        finally:
            store.close()
        names = sorted({f["scope"] for f in blocked.features})
        failing = sorted(set(names) & _opt_outs(objects))
        assert blocked.title.startswith("mTLS STRICT in wave") and len(names) > len(failing) >= 1
        expect(pg.get_by_role("heading", name=f"Stage {blocked.order}: {blocked.title}")).to_be_visible()
        expect(pg.get_by_text(f"blocked by MST0401 in {', '.join(failing)} ({len(failing)} of the stage's "
                              f"{len(names)} namespaces)")).to_be_visible()
        expect(pg.get_by_text("Wave: wave ")).to_contain_text(f"{len(names)} namespaces")
        settled(pg)
        pg.screenshot(path=str(shots / "plan-waves.png"), full_page=True)
        assert not context.foreign, context.foreign
