"""The plan engine's tests that keep state use the store fixtures of tests/state (SQLite and PostgreSQL)."""
from tests.state.conftest import db_url, pg_url, store  # noqa: F401  (fixtures)
