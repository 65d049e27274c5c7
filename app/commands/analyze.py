"""`meshstep analyze`: istioctl analyze's checks (same IST codes) plus meshstep's own, read like `linkerd check`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from app import safe
from app.commands import Format, FormatOpt, SourceOpt, cli, echo, emit_json
from cluster.errors import MeshstepError


def _yaml_file(path: Path | None, what: str) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise MeshstepError(f"{what} {path}: cannot read: {e}") from e
    except yaml.YAMLError as e:
        raise MeshstepError(f"{what} {path}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MeshstepError(f"{what} {path}: expected a mapping (as in the `istio` ConfigMap's data), "
                            f"got {type(data).__name__}")
    return data


@cli.command()
def analyze(
    files: Annotated[list[Path] | None, typer.Argument(help="Manifest files or directories to analyze (as "
                                                          "`istioctl analyze FILE...`); default: --source.")] = None,
    source: SourceOpt = None,
    mesh_config: Annotated[Path | None, typer.Option("--mesh-config", help="MeshConfig YAML to analyze with.")] = None,
    mesh_networks: Annotated[Path | None, typer.Option("--mesh-networks", help="MeshNetworks YAML.")] = None,
    suppress: Annotated[list[str] | None, typer.Option(
        "--suppress", "-S", help='Hide messages: "CODE=Kind name", wildcards allowed, e.g. "IST0102=Namespace *".')
    ] = None,
    format: FormatOpt = Format.table,
) -> None:
    """Check Istio configuration as istioctl analyze does; exit 1 when anything is at error level."""
    from analysis.base import Suppression
    from analysis.common import analyze as run_analysis
    from analysis.common import with_dummy_ingress
    from cluster.inventory import build_inventory
    from cluster.sources import files_snapshot, load_snapshot

    if files and source:
        raise MeshstepError("give either --source or FILE arguments, not both")
    rules = [Suppression.parse(s) for s in suppress or ()]
    snapshot = with_dummy_ingress(files_snapshot(list(files))) if files else load_snapshot(source)
    inv = build_inventory(snapshot, mesh_config=_yaml_file(mesh_config, "--mesh-config"),
                          mesh_networks=_yaml_file(mesh_networks, "--mesh-networks"))
    messages = run_analysis(inv, rules)
    if format == Format.json:
        emit_json([m.to_json() for m in messages])
    else:
        _print_table(messages, inv.source)
    if any(m.level == "error" for m in messages):
        raise typer.Exit(1)


def _print_table(messages: list, source: str) -> None:
    """Every finding (level, code, resource, message, hint, reference page), then the count per level."""
    from analysis.findings import counts, terminal

    if not messages:
        echo(f"√ no validation issues found in {safe.shown(source)}")
        return
    echo(terminal(messages, escape=safe.message))
    echo(f"\n{counts(messages)}")
