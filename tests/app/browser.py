"""What the browser tests share: `meshstep ui` on a free loopback port, and Debian's Chromium with one context whose
every request is checked. Without Chromium a test is skipped, except under CI (env CI set), where it fails."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# The screen the README's screenshots are taken at: a laptop's 1440 px.
VIEWPORT = {"width": 1440, "height": 1100}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def need(what: str, ok: bool) -> None:
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{what} (CI installs it: see .ci/run)")
        pytest.skip(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"meshstep ui exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"meshstep ui did not answer on {url} within {timeout} s:\n{log.read_text()}")


@contextmanager
def app_server(tmp: Path, source: str, db: str) -> Iterator[str]:
    """`meshstep ui --source SOURCE --db DB` on a free loopback port, its log in `tmp`; its URL. Stopped (and
    killed if need be) afterwards."""
    port, log = free_port(), tmp / "server.log"
    cmd = [sys.executable, "-m", "app.cli", "ui", "--port", str(port), "--source", source, "--db", db]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, proc, log)
        yield url
    finally:
        proc.terminate()  # meshstep ui passes it on to streamlit
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # its own session: the streamlit child goes too
            proc.wait()


@contextmanager
def chromium() -> Iterator[Any]:
    """Chromium with one context whose every request is checked: one to a host other than the app's own server is
    recorded in `context.foreign` and refused."""
    need(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", Path(CHROMIUM).exists())
    from urllib.parse import urlsplit

    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.foreign = []

            def check(route) -> None:
                url = route.request.url
                if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).hostname in LOOPBACK:
                    route.continue_()
                else:
                    context.foreign.append(url)
                    route.abort()

            context.route("**/*", check)
            context.set_default_timeout(60_000)
            expect.set_options(timeout=30_000)  # a run on a busy test machine takes seconds
            yield context
        finally:
            browser.close()


def settled(pg) -> None:
    """Wait for the script run to end: Streamlit shows its status widget while a page runs."""
    time.sleep(0.3)
    pg.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
    pg.wait_for_load_state("networkidle")
    time.sleep(0.5)  # charts and tables draw after the run
    assert not pg.get_by_test_id("stException").count(), pg.get_by_test_id("stException").first.inner_text()
