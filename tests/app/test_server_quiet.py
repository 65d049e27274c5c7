"""Opening every page prints nothing on the server's terminal: `meshstep ui` on the demo, every page opened in
Chromium (the Fleet page reading clusters in its fork server's processes, the Plan page with a plan), and the
server's stdout and stderr read afterwards for any warning or error line. A warning a visitor's click makes (the
Fleet page once printed forty, "run it with `streamlit run`" among them) is noise that hides a real one."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.app.browser import app_server, chromium, settled

pytestmark = pytest.mark.browser

PAGES = ("", "inventory", "components", "features", "plan", "fleet", "audit", "settings")
# What logging and Python print for a warning or an error, and Streamlit's own notices.
NOISE = re.compile(r"WARNING|Warning|ERROR|Error|Traceback|streamlit run|ScriptRunContext", re.MULTILINE)


def test_opening_every_page_prints_no_warning(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with app_server(tmp_path, "demo", f"sqlite:///{tmp_path / 'state.db'}") as url, chromium() as context:
        pg = context.new_page()
        log = tmp_path / "server.log"
        started = log.read_text()  # what `meshstep ui` says as it starts (its address): not a page's
        for page in PAGES:
            pg.goto(f"{url}/{page}?as=alice")
            settled(pg)
            if page == "fleet":  # each cluster read in a process of the fork server
                pg.get_by_role("textbox", name="Clusters").fill("staging=demo\nprod=demo\ngone=/nonexistent/x.yaml")
                pg.get_by_role("button", name="Read the fleet").click()
                settled(pg)
                expect(pg.get_by_test_id("stMetricValue").first).to_have_text("2 / 3")
        pg.goto(f"{url}/plan?as=alice")
        settled(pg)
        pg.get_by_role("button", name="Create the plan").click()
        settled(pg)
        expect(pg.get_by_role("heading", name="Stage 1: Verify the Istio install")).to_be_visible()
        assert not context.foreign, context.foreign
    printed = log.read_text()[len(started):]
    assert not NOISE.search(printed), printed
