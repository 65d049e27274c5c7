"""`meshstep inventory`: what is in the cluster, as Istio sees it."""
from __future__ import annotations

import typer

from app.commands import Format, FormatOpt, SourceOpt, cli, emit_json, emit_table, load_inventory


@cli.command()
def inventory(source: SourceOpt = None, format: FormatOpt = Format.table) -> None:
    """Namespaces, control plane, Istio components and what the source could not show."""
    report = load_inventory(source).report()
    if format == Format.json:
        emit_json(report)
        return
    istio = report["istio"]
    typer.echo(f"source: {report['source']}   Istio: "
               f"{istio['version'] or 'unknown version' if istio['installed'] else 'not installed'}")
    typer.echo("\nCONTROL PLANE")
    emit_table(report["control_plane"]["revisions"])
    typer.echo("\nNAMESPACES")
    emit_table(report["namespaces"])
    typer.echo("\nCOMPONENTS")
    emit_table(report["components"])
    vis = report["visibility"]
    if vis["forbidden"] or vis["not_installed"]:
        typer.echo(f"\nnot visible: forbidden={','.join(vis['forbidden']) or '-'} "
                   f"not installed={','.join(vis['not_installed']) or '-'}")
