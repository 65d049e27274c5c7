"""`meshstep inventory`: what is in the cluster, as Istio sees it."""
from __future__ import annotations

from app import safe
from app.commands import Format, FormatOpt, SourceOpt, cli, echo, emit_json, emit_table, load_inventory
from cluster import revisions


@cli.command()
def inventory(source: SourceOpt = None, format: FormatOpt = Format.table) -> None:
    """Namespaces, control plane, Istio components and what the source could not show."""
    inv = load_inventory(source)
    report = revisions.with_revisions(inv, inv.report())
    if format == Format.json:
        emit_json(report)
        return
    istio = report["istio"]
    echo(f"source: {safe.shown(report['source'])}   "
         + (safe.message(revisions.headline(inv)) if istio["installed"] else "Istio: not installed"))
    echo("\nCONTROL PLANE")
    emit_table(report["control_plane"]["revisions"])
    echo("\nNAMESPACES")
    emit_table(report["namespaces"])
    if "upgrade" in report:
        up = report["upgrade"]
        echo(f"\nUPGRADE {safe.shown(up['from']['revision'])} ({safe.shown(up['from']['version'])}) → "
             f"{safe.shown(up['to']['revision'])} ({safe.shown(up['to']['version'])}): {up['namespaces_done']} of "
             f"{up['namespaces_total']} namespaces done")
        emit_table(up["namespaces"])
    if report["stale_pods"]:
        echo("\nPODS TO RESTART (their proxy differs from what their namespace injects)")
        emit_table(report["stale_pods"])
    echo("\nCOMPONENTS")
    emit_table(report["components"])
    vis = report["visibility"]
    if vis["not_visible"]:
        echo("\nNOT VISIBLE (could not be read: what depends on it is unknown)")
        emit_table(vis["not_visible"], ["kind", "resource", "reason"])
    if vis["not_installed"]:
        echo(f"\nnot installed: {safe.shown(', '.join(vis['not_installed']))}")
