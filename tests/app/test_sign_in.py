"""Sign-in with OpenID Connect in Debian's Chromium: `meshstep ui --auth FILE` against a real OpenID provider on
loopback (oidc-provider-mock: discovery, authorization code flow, signed ID tokens), one provider and one app server
for every case, with a plan made beforehand with the CLI (self-declared) and the policy "one approver, not the
requester". A viewer signs in and is refused the advance, told which role it needs; nothing is written for them.
Then the walk: an operator (who is an approver too) advances the plan to a stage with YAML to apply — the audit
events carry the verified identity (issuer, subject, email from the ID token) — and can neither approve their own
stage nor apply it unapproved; an approver approves it (their verified identity in the audit); the operator
applies it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from state.store import Store
from tests.app.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LOOPBACK,
    ROOT,
    VIEWPORT,
    free_port,
    need,
    settled,
    wait_until_up,
)

pytestmark = pytest.mark.browser

OPERATOR = ("olivia", {"email": "olivia@example.com", "groups": ["platform-team", "change-board"]})
VIEWER = ("victor", {"email": "victor@example.com", "groups": ["auditors"]})
APPROVER = ("ann", {"email": "ann@example.com", "groups": ["change-board"]})
USERS = dict((OPERATOR, VIEWER, APPROVER))


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    """The OpenID provider on loopback, its users predefined (one click on its authorization page each)."""
    from oidc_provider_mock import User, run_server_in_thread

    # The provider serves plain HTTP on loopback; Authlib refuses that unless told it is a test.
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
    users = [User(sub=sub, claims=claims) for sub, claims in USERS.items()]
    with run_server_in_thread(user_claims=users) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture(scope="module")
def app_server(provider: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`meshstep ui --auth secrets.toml` on a free port; (its URL, its database URL)."""
    tmp = tmp_path_factory.mktemp("sign-in")
    port, log = free_port(), tmp / "server.log"
    url, db = f"http://localhost:{port}", f"sqlite:///{tmp / 'state.db'}"
    secrets = tmp / "secrets.toml"
    secrets.write_text(f"""
[auth]
redirect_uri = "{url}/oauth2callback"
cookie_secret = "{os.urandom(16).hex()}"
client_id = "meshstep"
client_secret = "not-a-real-secret"
server_metadata_url = "{provider}/.well-known/openid-configuration"

[meshstep]
groups_claim = "groups"
[meshstep.roles]
viewer = ["auditors"]
operator = ["platform-team"]
approver = ["change-board"]
admin = ["platform-admins"]
""")
    for args in (["plan", "new", "--source", "demo"],
                 ["plan", "policy", "--cluster", "demo", "--approvers", "1", "--not-the-requester", "--reason",
                  "production: four eyes"]):
        subprocess.run([sys.executable, "-m", "app.cli", *args, "--db", db, "--actor", "cli-user"], cwd=ROOT,
                       check=True, capture_output=True, timeout=120)
    cmd = [sys.executable, "-m", "app.cli", "ui", "--port", str(port), "--source", "demo", "--db", db,
           "--auth", str(secrets)]
    env = {**os.environ, "AUTHLIB_INSECURE_TRANSPORT": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        wait_until_up(url, proc, log)
        yield url, db
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    need(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", Path(CHROMIUM).exists())
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        expect.set_options(timeout=30_000)
        try:
            yield b
        finally:
            b.close()


def _signed_in(browser, url: str, sub: str):
    """A fresh browser context (its own cookies) signed in as `sub` through the provider's authorization page;
    the app's every request stays on loopback."""
    from urllib.parse import urlsplit

    from playwright.sync_api import expect

    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(60_000)
    foreign: list[str] = []

    def check(route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
            return
        route.abort()
        if route.request.frame.url.startswith(url):  # the app's own; the provider's page wants a CDN's stylesheet
            foreign.append(route.request.url)

    context.route("**/*", check)
    pg = context.new_page()
    pg.goto(url)
    settled(pg)
    expect(pg.get_by_role("heading", name="Sign in")).to_be_visible()
    pg.get_by_role("button", name="Sign in").click()
    pg.get_by_role("button", name=sub, exact=True).click()  # the provider's one-click predefined user
    pg.wait_for_url(f"{url}/**")
    settled(pg)
    expect(pg.get_by_text(f"Signed in as {USERS[sub]['email']}")).to_be_visible()
    assert not foreign, foreign
    return context, pg


def _open_plan(pg, url: str) -> None:
    pg.get_by_test_id("stSidebarNav").get_by_role("link", name="Plan").click()
    pg.wait_for_url(f"{url}/plan**")
    settled(pg)


# The advance button of whichever step the current stage is at.
ADVANCE = re.compile(r"^(Check the gate|Check the gate again|I applied it: mark applied|Verify on the cluster|"
                     r"Mark done)$")


def _events(db: str) -> list:
    store = Store.open(db)
    try:
        return store.audit_events()
    finally:
        store.close()


def test_a_viewer_reads_but_cannot_advance(app_server, browser) -> None:
    from playwright.sync_api import expect

    url, db = app_server
    before = len(_events(db))
    context, pg = _signed_in(browser, url, "victor")
    try:
        expect(pg.get_by_text("Signed in as victor@example.com (viewer)")).to_be_visible()
        _open_plan(pg, url)
        pg.get_by_role("button", name=ADVANCE).click()
        settled(pg)
        expect(pg.get_by_text("To advance a stage you need the operator role; victor@example.com has: "
                              "viewer.")).to_be_visible()
    finally:
        context.close()
    # Reading the cluster records its adoption figures (as any visit does); nothing else is written.
    assert [e.action for e in _events(db)[before:]] in ([], ["inventory.record"])


def _click(pg, name) -> None:
    pg.get_by_role("button", name=name).click()
    settled(pg)


def _identity(sub: str, provider: str) -> dict:
    return {"verified": True, "issuer": provider, "subject": sub, "email": USERS[sub]["email"]}


def test_the_operator_cannot_approve_their_own_stage_and_the_approver_can(app_server, provider, browser) -> None:
    from playwright.sync_api import expect

    url, db = app_server
    before = len(_events(db))
    context, pg = _signed_in(browser, url, "olivia")
    try:
        expect(pg.get_by_text("local mode")).to_have_count(0)
        _open_plan(pg, url)
        _click(pg, "Check the gate")  # stage 1, the install check: nothing to apply, done at once
        expect(pg.get_by_role("heading", name=re.compile(r"^Stage 2: "))).to_be_visible()
        _click(pg, "Check the gate")  # stage 2 ready: its YAML taken, waiting for an approval
        expect(pg.get_by_text("0 of 1 approvals (none yet); 1 more needed, not olivia@example.com")).to_be_visible()
        _click(pg, "Approve")
        expect(pg.get_by_text("olivia@example.com asked for stage 2 (moved it to ready): this cluster's policy "
                              "needs someone else")).to_be_visible()
        _click(pg, "I applied it: mark applied")
        expect(pg.get_by_text(re.compile(r"stage 2 \(.*\) cannot be applied: 0 of 1 approvals"))).to_be_visible()
    finally:
        context.close()
    moved = [e for e in _events(db)[before:] if e.action == "stage.status"]
    assert [e.after["status"] for e in moved] == ["done", "ready"]
    assert all((e.actor, e.identity) == ("olivia@example.com", _identity("olivia", provider)) for e in moved)
    [made] = [e for e in _events(db) if e.action == "plan.create"]  # with the CLI: self-declared
    assert (made.actor, made.identity) == ("cli-user", {"verified": False, "how": "self-declared"})

    context, pg = _signed_in(browser, url, "ann")
    try:
        _open_plan(pg, url)
        pg.get_by_role("textbox", name="Approval note or rejection reason").fill("read the YAML: fine")
        _click(pg, "Approve")
        expect(pg.get_by_text("1 of 1 approvals (ann@example.com)")).to_be_visible()
        _click(pg, "I applied it: mark applied")  # an approver is no operator
        expect(pg.get_by_text("To advance a stage you need the operator role; ann@example.com has: viewer, "
                              "approver.")).to_be_visible()
    finally:
        context.close()
    approved = _events(db)[-1]
    assert (approved.action, approved.actor, approved.identity, approved.reason) == (
        "stage.approve", "ann@example.com", _identity("ann", provider), "read the YAML: fine")

    context, pg = _signed_in(browser, url, "olivia")
    try:
        _open_plan(pg, url)
        _click(pg, "I applied it: mark applied")
        expect(pg.get_by_text("Stage 2 is now applied")).to_be_visible()
    finally:
        context.close()
    applied = [e for e in _events(db) if e.action == "stage.status"][-1]
    assert (applied.after["status"], applied.actor) == ("applied", "olivia@example.com")
