"""`meshstep explain`: what each Istio component in the cluster is, how it talks, and how to debug it."""
from __future__ import annotations

import enum
from typing import Annotated

import typer

from app.commands import SourceOpt, cli, emit_json, emit_table, load_inventory


class ExplainFormat(str, enum.Enum):
    table = "table"
    json = "json"
    markdown = "markdown"
    dot = "dot"


@cli.command()
def explain(
    name: Annotated[str | None, typer.Argument(help="A pod or a workload (name, or namespace/name), or a component "
                                                    "id (istiod, sidecar, ztunnel, …). Omit for every "
                                                    "component.")] = None,
    source: SourceOpt = None,
    format: Annotated[ExplainFormat, typer.Option("--format", "-o", help="Output format; dot draws the "
                                                  "communication graph.")] = ExplainFormat.table,
) -> None:
    """Every Istio component found, or one pod/workload/component in depth."""
    from planner import explain as ex

    report = ex.explain(load_inventory(source), name)
    if format == ExplainFormat.json:
        emit_json(ex.to_dict(report))
    elif format == ExplainFormat.dot:
        typer.echo(ex.to_dot(report.graph), nl=False)
    elif format == ExplainFormat.markdown:
        typer.echo(ex.to_markdown(report))
    elif name is None:
        # The overview: one row per component instance, the role once per component.
        emit_table([{"component": s.component.id, "plane": s.component.plane, "kind": i.kind,
                     "namespace": i.namespace, "name": i.name}
                    for s in report.summaries for i in s.instances])
        typer.echo("\n" + "\n".join(f"{s.component.id}: {s.component.role}" for s in report.summaries))
        typer.echo("\n`meshstep explain NAME` explains one of them in depth.")
    else:
        typer.echo(ex.to_text(report), nl=False)
