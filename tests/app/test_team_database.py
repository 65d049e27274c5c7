"""The team's database: two `meshstep ui` servers (real subprocesses on free loopback ports, driven in Debian's
Chromium) and the store, as a third writer, on one PostgreSQL schema at once. Each sees the others' writes, an
out-of-date write is refused rather than lost, and the audit chain holds every change, in order."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, closing
from pathlib import Path

import pytest

from cluster.errors import ConflictError
from state import audit
from state.store import Store
from tests.app.browser import CHROMIUM, CHROMIUM_ARGS, ROOT, free_port, need, settled, wait_until_up
from tests.app.test_browser import _open
from tests.state.conftest import pg_url  # noqa: F401  (the fixture: a fresh schema of its own)

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


def _ui(db: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "app.cli", "ui", "--port", str(port), "--source", "demo", "--db", db]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()


@pytest.fixture
def servers(pg_url: str, tmp_path: Path) -> Iterator[list[str]]:  # noqa: F811
    """Two servers started at once on the same empty schema: both create (migrate) it as they start."""
    with ExitStack() as stack:
        started = []
        for name in ("a", "b"):
            proc, url = _ui(pg_url, tmp_path / f"{name}.log")
            stack.callback(_stop, proc)
            started.append((proc, url, tmp_path / f"{name}.log"))
        for proc, url, log in started:
            wait_until_up(url, proc, log)
        yield [url for _proc, url, _log in started]


@pytest.fixture
def browser():
    need(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", Path(CHROMIUM).exists())
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        expect.set_options(timeout=30_000)
        try:
            yield b
        finally:
            b.close()


def _session(browser, url: str, who: str):
    """A browser session of its own on `url`, signed in as `who`, on the Plan page."""
    from playwright.sync_api import expect

    pg = browser.new_page(viewport={"width": 1400, "height": 1300})
    pg.set_default_timeout(60_000)
    pg.goto(f"{url}/plan")
    settled(pg)
    name = pg.get_by_role("textbox", name="Your name")
    name.fill(who)
    name.press("Enter")
    expect(pg.get_by_text(f"Changes are recorded as {who}")).to_be_visible()
    settled(pg)
    return pg


def _reopen_plan(pg, url: str) -> None:
    """Leave the Plan page and come back, in the same session (a reload would start a new one, nameless)."""
    _open(pg, url, "", "Overview")
    _open(pg, url, "plan", "Plan")


def _advance(pg, button: str, order: int, status: str) -> None:
    from playwright.sync_api import expect

    pg.get_by_role("button", name=button).click()
    # the first advance also says that it fixed the plan's mode ("Plan … is now real for good.")
    expect(pg.get_by_test_id("stAlertContentSuccess").first).to_have_text(
        re.compile(rf"^Stage {order} is now {status}\.( Plan \S+ is now real for good\.)?$"))
    settled(pg)


def test_two_servers_and_the_store_share_one_postgresql_database(servers, browser, pg_url: str) -> None:  # noqa: F811
    from playwright.sync_api import expect

    a, b = servers
    alice, bob = _session(browser, a, "alice"), _session(browser, b, "bob")
    with closing(Store.open(pg_url)) as store:
        # alice makes the plan on server A; bob, on server B, sees it at once and takes its first stage on.
        alice.get_by_role("button", name="Create the plan").click()
        settled(alice)
        expect(alice.get_by_role("heading", name="Stage 1: Verify the Istio install")).to_be_visible()
        _reopen_plan(bob, b)
        expect(bob.get_by_role("heading", name="Stage 1: Verify the Istio install")).to_be_visible()
        # The install stage has nothing to apply: its gate and exit check pass at once, and it is done.
        _advance(bob, "Check the gate", 1, "done")
        expect(bob.get_by_role("heading", name="Stage 2: Inject sidecars into legacy")).to_be_visible()
        _advance(bob, "Check the gate", 2, "ready")

        # Meanwhile carol writes through the store (as the CLI does), with the versions she read.
        flag = store.set_flag("demo", "mtls-strict", "mesh", {}, "on", "carol", reason="wanted", expected_version=0)
        store.set_flag("demo", "mtls-strict", "mesh", {}, "off", "carol", reason="not yet",
                       expected_version=flag.version)
        with pytest.raises(ConflictError, match="carol"):  # a write from an out-of-date read is refused, not lost
            store.set_flag("demo", "mtls-strict", "mesh", {}, "on", "dave", reason="stale",
                           expected_version=flag.version)

        # alice, on server A, goes on from where bob left the stage (ready), not from what she saw before.
        _reopen_plan(alice, a)
        _advance(alice, "I applied it: mark applied", 2, "applied")
        _reopen_plan(bob, b)  # bob's page shows the stage as alice left it: applied, with its rollback
        expect(bob.get_by_role("button", name="Verify on the cluster")).to_be_visible()

        plan = store.list_plans("demo")[0]
        assert plan.created_by == "alice"
        stage = next(s for s in plan.stages if s.order == 2)
        assert stage.status == "applied" and stage.updated_by == "alice"
        assert [(f.state, f.changed_by) for f in store.list_flags("demo") if f.feature == "mtls-strict"] == [
            ("off", "carol")]
        events = store.audit_events()
        moves = [(e.actor, e.after["status"]) for e in events if e.action == "stage.status"]
        assert moves == [("bob", "done"), ("bob", "ready"), ("alice", "applied")]
        assert {"alice", "bob", "carol"} <= {e.actor for e in events} and "dave" not in {e.actor for e in events}
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert audit.verify(store) is None
    expect(alice.get_by_text(re.compile(r"Stage 2 is now applied"))).to_be_visible()
