"""The rooms by data flow (pyproject's import-linter contracts): each imports only the rooms below it, none is in
an import circle, and each says in its docstring what it owns.

Every import counts, the ones inside functions and under TYPE_CHECKING too: a lazy import is still a dependency."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from app.cli import PACKAGES

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
LAYERS = next(c["layers"] for c in CONFIG["contracts"] if c["type"] == "layers")


def test_the_contracts_hold():
    """lint-imports (import-linter) over the rooms: layers, storage kept out of the lower rooms, no circles."""
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    run = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def test_the_layers_name_every_room_once():
    assert sorted(LAYERS) == sorted(CONFIG["root_packages"]) == sorted(PACKAGES)
    assert LAYERS[0] == "app" and LAYERS[-1] == "cluster"


def _docstring(room: str) -> str:
    return " ".join((ast.get_docstring(ast.parse((ROOT / room / "__init__.py").read_text())) or "").split())


@pytest.mark.parametrize("room", LAYERS)
def test_a_room_says_what_it_owns(room):
    assert len(_docstring(room).split()) >= 8, f"{room}/__init__.py: a docstring that says what the room owns"


def test_a_lower_room_imports_nothing_from_above_even_lazily():
    """The same rule read straight from the source, so a contract's ignore list cannot hide an import."""
    wrong = []
    for room in LAYERS:
        above = set(LAYERS[:LAYERS.index(room)])
        for path in (ROOT / room).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                         else [])
                wrong += [(str(path.relative_to(ROOT)), n) for n in names if n.split(".")[0] in above]
    assert wrong == []
    assert "ignore_imports" not in str(CONFIG)


def test_the_cli_says_to_reinstall_when_a_package_of_meshstep_is_missing(monkeypatch, capsys):
    """An editable install made before a package was added does not find it: one line says what to do."""
    from app import cli

    def missing(*_a, **_k):
        raise ModuleNotFoundError("No module named 'cluster'", name="cluster")

    monkeypatch.setattr(cli, "_register_commands", missing)
    assert cli.main(["plan", "list"]) == 2
    assert "pip install -e ." in capsys.readouterr().err


def test_the_architecture_page_lists_the_rooms_as_the_contracts_and_docstrings_say():
    """docs/architecture.md's room list is generated from the contracts and the rooms' own docstrings; a room
    added, moved or redescribed without the page following it fails here with the text to paste."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    begin = page.index("<!-- rooms:begin")
    shown = page[page.index("-->", begin) + 3:page.index("<!-- rooms:end -->")].strip()
    pic = " → ".join(f"{room}/" for room in LAYERS) + "   (each imports only the rooms to its right)"
    rows = "\n".join(f"| `{room}/` | {_docstring(room)} |" for room in LAYERS)
    expected = f"```\n{pic}\n```\n\n| room | what it owns |\n| --- | --- |\n{rows}"
    assert shown == expected, f"docs/architecture.md is stale; the rooms section should read:\n{expected}"
