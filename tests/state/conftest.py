"""Every store test runs against SQLite (a temp file) and the PostgreSQL server on this machine (a fresh schema
per test, dropped afterwards). Without the server the PostgreSQL half is skipped — except under CI, where it
fails: CI must not pass by silently testing SQLite alone."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from state.store import Store

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pg_admin() -> psycopg.Connection:
    try:
        return psycopg.connect(PG_DSN, autocommit=True)
    except psycopg.OperationalError as e:
        message = f"PostgreSQL at 127.0.0.1:5432 (user postgres, database test) is unreachable: {e}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A SQLAlchemy URL whose search_path is a fresh schema of its own."""
    schema = f"meshstep_{uuid.uuid4().hex[:16]}"
    with _pg_admin() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with _pg_admin() as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url)
    yield s
    s.close()
