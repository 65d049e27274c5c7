"""What people read in the terminal, pinned on the demo cluster (as linkerd pins `check`'s output): `analyze`,
`plan next`, `explain NAME` and `status`. A change to any of them shows up here as a diff to review.

Regenerate after an intended change: `UPDATE_GOLDEN=1 python -m pytest tests/analysis/test_golden.py`, then read
the diff of tests/fixtures/golden/ before committing it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.cli import main

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"


def _output(capsys, *argv: str) -> str:
    code = main(list(argv))
    out = capsys.readouterr().out
    assert code in (0, 1), f"meshstep {' '.join(argv)} exited {code}"
    return out


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


def _plan_next(capsys, db: str) -> str:
    """The gate of a one-stage plan that injects `legacy`: a warning and two infos to show."""
    _output(capsys, "plan", "new", "--source", "demo", "--template", "custom", "--db", db, "--actor", "golden")
    _output(capsys, "plan", "add", "sidecar-injection", "--scope", "legacy", "--source", "demo", "--db", db,
            "--actor", "golden")
    return _output(capsys, "plan", "next", "--source", "demo", "--db", db)


CASES = {
    "analyze": lambda capsys, db: _output(capsys, "analyze", "--source", "demo"),
    "plan-next": _plan_next,
    "explain-istiod": lambda capsys, db: _output(capsys, "explain", "istiod", "--source", "demo"),
    "status": lambda capsys, db: _output(capsys, "status", "--source", "demo", "--db", db),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_terminal_output_matches_its_golden_file(name, capsys, db):
    out = CASES[name](capsys, db)
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(out, encoding="utf-8")
    assert path.exists(), f"no golden file {path.name}: run with UPDATE_GOLDEN=1"
    assert out == path.read_text(encoding="utf-8"), (
        f"meshstep's {name} output changed; if intended: UPDATE_GOLDEN=1 python -m pytest {__file__}")
