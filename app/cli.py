"""Entry point of the `meshstep` command."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys

import typer

from app import commands, safe
from cluster.errors import MeshstepError


def _register_commands() -> None:
    for mod in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"{commands.__name__}.{mod.name}")
    _whole_sentences(commands.cli)


def _whole_sentences(app: typer.Typer) -> None:
    """A list of commands shows each one's first paragraph of help, and Typer keeps the line breaks of the docstring
    there: at 80 columns a sentence broke where the source line ended. Each command's short help is that paragraph
    as one line, for the list to wrap at its own width."""
    for info in app.registered_commands:
        doc = info.help or inspect.getdoc(info.callback) or ""
        info.short_help = info.short_help or " ".join(doc.split("\n\n")[0].split())
    for group in app.registered_groups:
        _whole_sentences(group.typer_instance)


# meshstep's own top-level packages (pyproject's packages.find)
# meshstep's rooms, bottom to top (pyproject's import-linter contracts keep them so)
PACKAGES = ("cluster", "state", "telemetry", "analysis", "explain", "features", "planner", "app")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status; user errors print one clear line on stderr, never a traceback."""
    try:
        _register_commands()
        commands.cli(args=argv, prog_name="meshstep")
    except MeshstepError as e:
        # The message may quote a file, a resource or a value: what is hidden in them is shown escaped.
        typer.echo(f"error: {safe.terminal(str(e))}", err=True)  # its lines kept: findings and figures follow it
        return e.exit_code
    except SystemExit as e:  # click's standalone mode ends every run with one
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except ModuleNotFoundError as e:
        # An editable install maps the packages it saw when it was made: one added since (cluster/, say) is not found
        # until meshstep is installed again.
        if (e.name or "").split(".")[0] not in PACKAGES:
            raise
        typer.echo(f"error: meshstep's package {e.name!r} is not installed: the install is older than the code; run "
                   "`pip install -e .` again in this checkout", err=True)
        return 2
    finally:
        # What load_inventory froze for the command's run is thawed when it ends for a caller that runs commands in
        # its own process (passing argv: the tests), whose collector stays as it was. `meshstep` itself (argv None)
        # ends frozen: thawed, the collection at the interpreter's exit would walk it all (0.2 s of a status).
        if argv is not None:
            from cluster.inventory import unfreeze

            unfreeze()
    return 0


if __name__ == "__main__":
    sys.exit(main())
