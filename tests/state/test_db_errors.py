"""A state database that fails after it was opened — read-only, damaged, a table dropped — or that meshstep cannot
use at all: one error line naming the database and the fix, exit 2, never a traceback with the SQL."""
from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from app.cli import main
from state.store import Store


def _flags_set(db: str, capsys) -> tuple[int, str]:
    code = main(["flags", "set", "tracing", "--scope", "mesh", "--reason", "r", "--actor", "a", "--cluster", "demo",
                 "--db", db])
    err = capsys.readouterr().err
    return code, err


def _one_clean_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err and "INSERT" not in err and "SELECT" not in err, err
    return err


@pytest.fixture
def sqlite_db(tmp_path) -> tuple[str, os.PathLike]:
    path = tmp_path / "state.db"
    store = Store.open(f"sqlite:///{path}")
    store.set_flag("demo", "metrics", "mesh", {}, "on", "alice", "dashboards")
    store.close()
    return f"sqlite:///{path}", path


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_a_read_only_sqlite_file(sqlite_db, capsys):
    url, path = sqlite_db
    os.chmod(path, 0o444)
    code, err = _flags_set(url, capsys)
    assert code == 2 and "read-only" in _one_clean_line(err)


def test_a_read_only_sqlite_database(tmp_path, capsys):
    # As root ignores file modes, the database is opened read-only by SQLite itself (its URI mode=ro).
    path = tmp_path / "state.db"
    Store.open(f"sqlite:///{path}").close()
    code, err = _flags_set(f"sqlite:///file:{path}?mode=ro&uri=true", capsys)
    assert code == 2
    assert _one_clean_line(err).startswith("error: the state database sqlite:///file")
    assert "attempt to write a readonly database (it is read-only" in err


def test_a_damaged_sqlite_page(sqlite_db, capsys):
    url, path = sqlite_db
    with open(path, "r+b") as f:  # page 2 onwards: the tables' pages, not the header
        f.seek(4096)
        f.write(b"\xde\xad\xbe\xef" * 2048)
    for wal in (f"{path}-wal", f"{path}-shm"):
        if os.path.exists(wal):
            os.remove(wal)
    code = main(["flags", "list", "--cluster", "demo", "--db", url])
    err = capsys.readouterr().err
    assert code == 2 and "(the file is damaged: restore it from a backup)" in _one_clean_line(err)


def test_a_dropped_table(db_url, capsys):
    store = Store.open(db_url)
    store.set_flag("demo", "metrics", "mesh", {}, "on", "alice", "dashboards")
    with store.engine.begin() as c:
        c.execute(text("DROP TABLE flags"))
    store.close()
    code, err = _flags_set(db_url, capsys)
    assert code == 2
    assert _one_clean_line(err).startswith("error: the state database ")
    assert "(a table is missing: the database was changed outside meshstep; restore it from a backup)" in err


@pytest.mark.parametrize(("url", "says"), [
    ("mysql://u@localhost/db", "its driver is not installed (No module named 'MySQLdb'); meshstep keeps state in "
                               "SQLite (sqlite:///PATH) or PostgreSQL"),
    ("nosuchdb://x", "Can't load plugin: sqlalchemy.dialects:nosuchdb"),
    ("not a url", "Could not parse SQLAlchemy URL"),
])
def test_a_database_url_meshstep_cannot_use(url, says, capsys):
    assert main(["flags", "list", "--db", url]) == 2
    err = _one_clean_line(capsys.readouterr().err)
    assert err.startswith(f"error: cannot open the state database {url}: ") and says in err


@pytest.mark.postgres
def test_verify_of_a_postgres_database_without_meshstep_tables_does_not_make_them(pg_url, capsys):
    assert main(["audit", "--verify", "--db", pg_url]) == 2
    err = _one_clean_line(capsys.readouterr().err)
    assert err.startswith("error: the state database postgresql+psycopg://") and "has no meshstep tables" in err
    from sqlalchemy import create_engine, inspect

    engine = create_engine(pg_url)
    assert inspect(engine).get_table_names() == []
    engine.dispose()
