"""Entry point of the `meshstep` command."""
from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from app import commands
from planner.errors import MeshstepError


def _register_commands() -> None:
    for mod in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"{commands.__name__}.{mod.name}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status; user errors print one clear line on stderr, never a traceback."""
    _register_commands()
    try:
        commands.cli(args=argv, prog_name="meshstep")
    except MeshstepError as e:
        typer.echo(f"error: {e}", err=True)
        return e.exit_code
    except SystemExit as e:  # click's standalone mode ends every run with one
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
