"""`meshstep explain`: what each Istio component in the cluster is, how it talks, and how to debug it."""
from __future__ import annotations

import enum
from typing import Annotated

import typer

from app import safe
from app.commands import (
    PrometheusOpt,
    SourceOpt,
    TelemetryOpt,
    WindowOpt,
    cli,
    echo,
    emit_json,
    emit_table,
    fit,
    load_evidence,
    load_inventory,
    not_visible_warning,
    terminal_width,
)


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
    prometheus: PrometheusOpt = None, telemetry: TelemetryOpt = None, window: WindowOpt = "1h",
) -> None:
    """Every Istio component found, or one pod/workload/component in depth; with telemetry, the traffic observed
    (every edge, or the subject's), mTLS or plaintext per edge."""
    from explain import render as explain_render
    from explain import report as ex

    inv = load_inventory(source)
    report = ex.explain(inv, name)
    edges, missing = _observed(inv, report, prometheus, telemetry, window, name is not None)
    if format == ExplainFormat.json:
        traffic = [e.to_json() for e in edges] if edges is not None else None
        emit_json(explain_render.to_dict(report) | {"traffic": traffic,
                                                    **({"traffic_missing": missing} if missing else {}),
                                                    "not_visible": [n.to_json() for n in inv.visibility.not_visible]})
    elif format == ExplainFormat.dot:
        echo(explain_render.to_dot(report.graph), nl=False)
    elif format == ExplainFormat.markdown:
        echo(explain_render.to_markdown(report, safe.md_message))
    elif name is None:
        # The overview: one row per component instance, the role once per component.
        emit_table([{"component": s.component.id, "plane": s.component.plane, "kind": i.kind,
                     "namespace": i.namespace, "name": i.name}
                    for s in report.summaries for i in s.instances])
        echo("\n" + fit("\n".join(f"{s.component.id}: {s.component.role}" for s in report.summaries),
                         terminal_width()))
        echo("\n`meshstep explain NAME` explains one of them in depth.")
    else:
        echo(fit(explain_render.to_text(report, safe.message), terminal_width()), nl=False)
    if format == ExplainFormat.table:
        _show_traffic(edges, missing)
    not_visible_warning(inv)


def _observed(inv, report, prometheus, telemetry, window, subjects_only):
    """The observed edges to show (all, or the subjects' own) and, when there are none to read, why."""
    from telemetry.evidence import workload_of

    if subjects_only and not report.subjects:  # a component id: its graph is config, not traffic
        return None, ""
    ev = load_evidence(prometheus, telemetry, window, inv)
    traffic = ev.traffic()
    if traffic is None:
        return None, ev.missing
    if not subjects_only:
        return list(traffic.edges), traffic.window_text
    wanted = {w for s in report.subjects if (w := workload_of(inv, s.ref))}
    return [e for w in sorted(wanted) for e in traffic.of_workload(*w)], traffic.window_text


def _show_traffic(edges, note) -> None:
    from telemetry.evidence import edge_row

    if edges is None and not note:
        return
    echo(fit(f"\nOBSERVED TRAFFIC ({safe.message(note)})" if edges is not None
             else f"\nobserved traffic: {safe.message(note)}", terminal_width()))
    if edges is not None:
        emit_table([edge_row(e) for e in edges])
        if any(not e.source.known for e in edges):
            echo(fit("unknown sources: callers without a sidecar; only the destination's sidecar reports them, "
                     "in plaintext and with no source metadata", terminal_width()))
