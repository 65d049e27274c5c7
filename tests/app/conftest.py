"""The app under streamlit's AppTest: the demo cluster as source and a temporary SQLite database per test."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from state.store import Store

APP = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("MESHSTEP_SOURCE", "demo")
    monkeypatch.setenv("MESHSTEP_DATABASE_URL", url)
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """The database the app writes, opened beside it to check what it wrote."""
    s = Store.open(db_url)
    yield s
    s.close()


@pytest.fixture
def app(db_url: str) -> AppTest:
    """The app, run once: it opens on the Overview."""
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    """Switch to views/<page>.py and check it ran without an exception or an error box."""
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def sign_in(at: AppTest, name: str = "alice") -> None:
    """Give the name the sidebar asks for once per session."""
    at.sidebar.text_input(key="actor_input").input(name).run()
    assert at.session_state["actor"] == name
