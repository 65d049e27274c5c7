"""`meshstep ui` in Debian's Chromium: the real server, the real browser, the demo cluster and a fresh SQLite file.

The walk: enter a name in the sidebar, make the routing-first plan and the security-first plan with the rehearsal
switch on, and rehearse each to done: every stage's YAML is applied to the plan's overlay (a copy of the demo
cluster) instead of a real cluster, which a browser test could not change. A gate that blocks (STRICT in shop:
catalog's pod predates injection) is overridden with a reason, as a team rehearsing notes what to fix first. The
audit trail then shows the rehearsed transitions as such. (Real walks, with the YAML applied to a cluster, are in
tests/planner/test_plan.py.)

Screenshots of each page are saved in the test's temporary directory, or, with MESHSTEP_SCREENSHOTS=DIR (e.g.
docs/screenshots to refresh the README's), in DIR. Without Chromium the test is skipped,
except under CI (env CI set), where it fails: CI must not pass by not running it."""
from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.browser import app_server, chromium, settled

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`meshstep ui` on the demo with a fresh database."""
    tmp = tmp_path_factory.mktemp("ui")
    with app_server(tmp, "demo", f"sqlite:///{tmp / 'state.db'}") as url:
        yield url


@pytest.fixture(scope="module")
def browser_context(server: str):
    """Chromium whose requests to other hosts are refused and recorded (see no_request_leaves_the_machine)."""
    with chromium() as context:
        yield context


@pytest.fixture(scope="module")
def page(browser_context):
    return browser_context.new_page()


@pytest.fixture(autouse=True)
def no_request_leaves_the_machine(browser_context) -> Iterator[None]:
    """The app asks no host but its own server (no CDN, no font service): any other request fails the test."""
    browser_context.foreign.clear()
    yield
    assert not browser_context.foreign, f"requests to other hosts: {browser_context.foreign}"


def _shot(pg, path: Path) -> None:
    """A screenshot of the page at rest: a change's page runs again after its message (the status widget's "Stop"
    would be in the picture, and the buttons of the state before)."""
    settled(pg)
    pg.screenshot(path=str(path))


def _open(pg, server: str, path: str, title: str) -> None:
    from playwright.sync_api import expect

    pg.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    # The query keeps the name given in the sidebar (?as=…) across reloads.
    expect(pg).to_have_url(re.compile(re.escape(f"{server}/{path}") + r"(\?.*)?$"))
    settled(pg)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: the test's own directory, unless MESHSTEP_SCREENSHOTS names one (relative to the
    repository) to refresh."""
    wanted = os.environ.get("MESHSTEP_SCREENSHOTS")
    out = ROOT / wanted if wanted else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_walk_the_app(server: str, page, shots: Path) -> None:
    from playwright.sync_api import expect

    pg = page
    # The server's first session opens a page other than the Overview (a bookmark): it gets the app's navigation.
    pg.goto(f"{server}/inventory")
    settled(pg)
    expect(pg.get_by_test_id("stSidebarNav").get_by_role("link", name="Overview")).to_be_visible()
    expect(pg.get_by_role("textbox", name="Your name")).to_be_visible()
    pg.goto(server)
    settled(pg)
    expect(pg.get_by_role("heading", name="Cluster demo")).to_be_visible()
    expect(pg.get_by_text("Pods in the mesh")).to_be_visible()

    name = pg.get_by_role("textbox", name="Your name")
    name.fill("alice")
    name.press("Enter")
    expect(pg.get_by_text("Changes are recorded as alice")).to_be_visible()
    settled(pg)

    _open(pg, server, "inventory", "Inventory")
    pg.get_by_role("tab", name="Pods").click()  # the pods, each with why it is or is not in the mesh
    settled(pg)
    _shot(pg, shots / "inventory.png")

    _open(pg, server, "components", "Components")
    expect(pg.get_by_role("heading", name="Explain")).to_be_visible()
    _shot(pg, shots / "components.png")

    _open(pg, server, "plan", "Plan")
    for template in ("routing-first", "security-first"):
        _rehearse_in_the_app(pg, template, shots)
    # a real plan, left at its start, for the Overview's progress
    pg.get_by_role("textbox", name="Name").fill("adopt")
    pg.get_by_role("button", name="Create the plan").click()
    settled(pg)
    expect(pg.get_by_role("heading", name="Stage 1: Verify the Istio install")).to_be_visible()

    _open(pg, server, "features", "Features")
    expect(pg.get_by_role("heading", name="Flag matrix")).to_be_visible()
    _shot(pg, shots / "features.png")

    # The fleet, each cluster read in a process of the server's fork server: two read, one that cannot be.
    _open(pg, server, "fleet", "Fleet")
    pg.get_by_role("textbox", name="Clusters").fill("staging=demo\nprod=demo\ngone=/nonexistent/snapshot.yaml")
    pg.get_by_role("button", name="Read the fleet").click()
    settled(pg)
    expect(pg.get_by_test_id("stMetricValue").first).to_have_text("2 / 3")
    expect(pg.get_by_text(re.compile("gone.*no such file or directory")).first).to_be_visible()
    _shot(pg, shots / "fleet.png")

    _open(pg, server, "audit", "Audit")
    pg.get_by_role("button", name="Verify the chain").click()
    expect(pg.get_by_text("The audit chain is intact")).to_be_visible()
    settled(pg)
    expect(pg.get_by_text("alice").first).to_be_visible()
    # the trail's table is a canvas grid: its cells are in the page for assistive technology, not drawn as text
    expect(pg.get_by_text("stage.rehearsal").first).to_be_attached()
    expect(pg.get_by_text(re.compile("^rehearsal: ")).first).to_be_attached()
    _shot(pg, shots / "audit.png")

    _open(pg, server, "", "Overview")
    expect(pg.get_by_role("heading", name="Cluster demo")).to_be_visible()
    expect(pg.get_by_text(re.compile(r"adopt: \d+ of \d+ stages done"))).to_be_visible()
    _shot(pg, shots / "overview.png")


def _rehearse_in_the_app(pg, template: str, shots: Path) -> None:
    """Make a plan from `template` and rehearse it to done on the Plan page, one button a step."""

    from playwright.sync_api import Error as PlaywrightError

    from planner import lifecycle

    labels = {m.says(True)[0] for m in lifecycle.ADVANCE.values()}
    advance = pg.get_by_role("button", name=re.compile("^(" + "|".join(map(re.escape, labels)) + ")$"))
    pg.get_by_role("combobox", name="Template").click()
    pg.get_by_role("option", name=template).click()
    pg.get_by_role("button", name="Create the plan").click()
    settled(pg)
    pg.get_by_text("Rehearse on the plan's overlay").click()
    settled(pg)
    shot = False
    complete = pg.get_by_text(re.compile(f"Plan {template} is complete: every stage is done in rehearsal"))
    for _ in range(300):
        settled(pg)
        if complete.count():
            break
        refused = pg.get_by_text(re.compile("^Not advanced"))
        assert not refused.count() or "is blocked by" in refused.first.inner_text(), refused.first.inner_text()
        if advance.count() != 1:  # the last run's button is still there beside this run's
            time.sleep(0.5)
            continue
        if not shot and pg.get_by_role("heading", name="Changes").count() and pg.get_by_text("+++ merged/").count():
            pg.screenshot(path=str(shots / "plan.png"), full_page=True)  # a stage's diff and YAML, rehearsed
            shot = True
        override = pg.get_by_role("textbox", name="Override reason")
        try:
            if override.count():
                override.fill("rehearsal: fix noted before the real walk", timeout=10_000)
            advance.click(timeout=10_000)
        except PlaywrightError:  # the page ran again under the pointer (the run after a change): look again
            continue
    else:
        raise AssertionError(f"{template} was not rehearsed to done")
    assert shot, "no stage showed a diff"


def test_an_unreadable_upload_keeps_the_source(server: str, page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    pg = page
    bad = tmp_path / "broken.yaml"
    bad.write_text("kind: [unclosed\n")
    pg.goto(f"{server}/settings")
    settled(pg)
    pg.get_by_text("A snapshot file").click()
    settled(pg)
    pg.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(bad))
    settled(pg)
    pg.get_by_role("button", name="Read this snapshot").click()
    expect(pg.get_by_text("Cannot read broken.yaml")).to_be_visible()
    expect(pg.get_by_text("broken.yaml:2: malformed YAML")).to_be_visible()
    expect(pg.get_by_text("Still reading demo")).to_be_visible()
    expect(pg.get_by_text("meshstep-")).to_have_count(0)  # the upload's temporary copy is not named
    settled(pg)
    pg.screenshot(path=str(tmp_path / "settings.png"))


def test_a_request_to_another_host_is_caught(server: str, page, browser_context) -> None:
    """The guard of every test here works: a request the page makes to another host is refused and recorded."""
    pg = page
    pg.goto(server)
    settled(pg)
    pg.evaluate("() => fetch('https://fonts.gstatic.com/s/i/x.svg').catch(() => null)")
    assert browser_context.foreign == ["https://fonts.gstatic.com/s/i/x.svg"]
    browser_context.foreign.clear()


def test_the_name_given_survives_a_reload(server: str, page) -> None:
    from playwright.sync_api import expect

    pg = page
    pg.goto(f"{server}/features")
    settled(pg)
    if pg.get_by_role("button", name="Not you?").count():  # a name from an earlier test: start without one
        pg.get_by_role("button", name="Not you?").click()
        settled(pg)
    name = pg.get_by_role("textbox", name="Your name")
    name.fill("bob")
    name.press("Enter")
    expect(pg.get_by_text("Changes are recorded as bob")).to_be_visible()
    expect(pg).to_have_url(re.compile(r"\?as=bob$"))
    settled(pg)
    pg.reload()
    settled(pg)
    expect(pg.get_by_text("Changes are recorded as bob")).to_be_visible()
    _open(pg, server, "audit", "Audit")  # and on another page, as the sidebar's links lead there
    expect(pg.get_by_text("Changes are recorded as bob")).to_be_visible()
    pg.get_by_role("button", name="Not you?").click()
    expect(pg).not_to_have_url(re.compile(r"as=bob"))
    settled(pg)
    pg.reload()
    settled(pg)
    expect(pg.get_by_role("textbox", name="Your name")).to_be_visible()


def test_the_components_graph_zooms_pans_and_filters(server: str, page) -> None:
    from playwright.sync_api import expect

    pg = page
    pg.goto(f"{server}/components")
    settled(pg)
    graph = pg.locator("#meshgraph svg")
    expect(graph).to_be_visible()
    # Readable at 1440 px: the SVG is drawn at about its own size, so its 13 px labels stay 12 px or more.
    box = graph.bounding_box()
    assert graph.evaluate("s => s.getScreenCTM().a") >= 12 / 13
    for band in ("CONTROL PLANE", "DATA PLANE", "ADDONS"):
        expect(graph.get_by_text(band)).to_be_visible()
    expect(graph.locator("g.node[data-id=istiod]")).to_be_visible()
    edges = graph.locator("path[marker-end]").count()
    assert edges > 10

    before = graph.get_attribute("viewBox")
    pg.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    pg.mouse.wheel(0, -400)
    zoomed = graph.get_attribute("viewBox")
    assert float(zoomed.split()[2]) < float(before.split()[2])  # zoomed in: a narrower view
    pg.mouse.down()
    pg.mouse.move(box["x"] + box["width"] / 2 + 120, box["y"] + box["height"] / 2 + 40)
    pg.mouse.up()
    assert graph.get_attribute("viewBox").split()[:2] != zoomed.split()[:2]  # panned
    pg.locator("#meshgraph button[data-zoom=fit]").click()
    assert graph.get_attribute("viewBox") == before

    # Only the control plane: istiod's connections to the API server stay, the addons' and the sidecars' go.
    for plane in ("data plane", "addons"):
        pill = pg.get_by_role("button", name=plane, exact=True)
        expect(pill).to_have_attribute("aria-pressed", "true")
        pill.click()
        settled(pg)
    graph = pg.locator("#meshgraph svg")
    expect(graph.locator("g.node[data-id=prometheus]")).to_have_count(0)
    expect(graph.locator("g.node[data-id=sidecar]")).to_have_count(0)
    assert 0 < graph.locator("path[marker-end]").count() < edges
    assert {e.split()[0] for e in graph.locator("g.edge").evaluate_all("gs => gs.map(g => g.dataset.ends)")} <= {
        "istiod", "kube-apiserver"}
