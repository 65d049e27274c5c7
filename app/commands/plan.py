"""`meshstep plan`: the staged adoption plan — one feature at a time, gated, verified, reversible."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from app.commands import (
    ActorOpt,
    ClusterOpt,
    DbOpt,
    Format,
    FormatOpt,
    PrometheusOpt,
    SourceOpt,
    TelemetryOpt,
    WindowOpt,
    actor_name,
    cli,
    cluster_name,
    emit_json,
    emit_table,
    feature_params,
    load_evidence,
    load_inventory,
    open_store,
)
from planner import plan as planner

plan_app = typer.Typer(help="Staged adoption: one Istio feature at a time, gated, verified, reversible.",
                       no_args_is_help=True)
cli.add_typer(plan_app, name="plan")

NameOpt = Annotated[str | None, typer.Option("--name", help="The plan (default: the cluster's active plan).")]


@contextmanager
def _plan(name: str | None, source: str | None, cluster: str | None, db: str | None) -> Iterator[tuple[Any, ...]]:
    """What a plan command works on: the source's inventory, the store, and the plan (named, else the active one of
    the source's cluster)."""
    from state import planning

    inv = load_inventory(source)
    with open_store(db) as store:
        yield inv, store, planning.find_plan(store, cluster_name(cluster, inv.source), name)


@plan_app.command("new")
def plan_new(
    template: Annotated[str, typer.Option("--template", help=f"{' | '.join(planner.TEMPLATES)}")] = "routing-first",
    namespaces: Annotated[str | None, typer.Option("--namespaces", help="a,b,c (default: every application "
                                                                         "namespace)")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name of the plan (default: the template's).")] = None,
    source: SourceOpt = None, cluster: ClusterOpt = None, db: DbOpt = None, actor: ActorOpt = None,
    format: FormatOpt = Format.table,
) -> None:
    """Make a plan for a cluster from a template; stages already on are recognised as done."""
    from state import planning  # sqlmodel and alembic: loaded only by the commands that use them

    inv = load_inventory(source)
    ns = [n.strip() for n in namespaces.split(",") if n.strip()] if namespaces else None
    with open_store(db) as store:
        p = planning.create(store, cluster_name(cluster, inv.source), inv, template, ns, name, actor_name(actor))
        _show(p, format)


@plan_app.command("show")
def plan_show(name: NameOpt = None, source: SourceOpt = None, cluster: ClusterOpt = None, db: DbOpt = None,
              format: FormatOpt = Format.table) -> None:
    """The plan's stages and where each stands."""
    from state import planning

    with open_store(db) as store:
        _show(planning.find_plan(store, cluster_name(cluster, source), name), format)


def _show(p, format: Format) -> None:
    from state import planning

    stages = planning.stage_rows(p)
    if format == Format.json:
        emit_json({"name": p.name, "template": p.template, "cluster": p.cluster, "status": p.status,
                   "stages": [{k: v for k, v in row.items() if k != "now"} | {"features": s.features, "goal": s.goal}
                              for row, s in zip(stages, p.stages)]})
        return
    typer.echo(f"plan {p.name} ({p.template}) for cluster {p.cluster}: {p.status}")
    emit_table(stages, ["now", "order", "status", "title", "features", "scope"])


@plan_app.command("next")
def plan_next(name: NameOpt = None, source: SourceOpt = None, cluster: ClusterOpt = None, db: DbOpt = None,
              format: FormatOpt = Format.table, prometheus: PrometheusOpt = None, telemetry: TelemetryOpt = None,
              window: WindowOpt = "1h") -> None:
    """The current stage: its goal, its gate (with hints), and the YAML to apply."""
    from state import planning

    with _plan(name, source, cluster, db) as (inv, _store, p):
        view = planning.next_view(p, inv, load_evidence(prometheus, telemetry, window, inv))
    if view is None:
        typer.echo("the plan is complete: every stage is done")
        return
    st = view.stage
    if format == Format.json:
        emit_json({"order": st.order, "title": st.title, "goal": st.goal, "status": st.status,
                   "features": st.features, "gate": {"passed": view.gate.passed,
                                                     "messages": [m.to_json() for m in view.gate.messages]},
                   "apply_yaml": view.config.apply_yaml, "rollback_yaml": view.config.rollback_yaml,
                   "notes": list(view.config.notes)})
        return
    typer.echo(f"STAGE {st.order}: {st.title}   [{st.status}]")
    typer.echo(f"goal: {st.goal}")
    typer.echo(f"\nGATE — {'passes' if view.gate.passed else 'BLOCKED'}")
    if view.gate.messages:
        from planner.analysis.findings import terminal

        typer.echo(terminal(view.gate.messages, indent="  "))
    else:
        typer.echo("  ✓ every check passes")
    if view.config.notes:
        typer.echo("\nRUN")
        for n in view.config.notes:
            typer.echo(f"  {n}")
    typer.echo("\nAPPLY (kubectl apply -f -)")
    typer.echo(view.config.apply_yaml or "  (nothing to apply: this stage only checks)")


@plan_app.command("advance")
def plan_advance(
    override_reason: Annotated[str | None, typer.Option("--override-reason",
                                                        help="Go past a failing gate; the reason is audited.")] = None,
    name: NameOpt = None, source: SourceOpt = None, cluster: ClusterOpt = None, db: DbOpt = None,
    actor: ActorOpt = None, prometheus: PrometheusOpt = None, telemetry: TelemetryOpt = None,
    window: WindowOpt = "1h",
    verify: Annotated[list[str] | None, typer.Option("--verify", help="A verification threshold, key=value "
                                                     "(repeatable; see README, Telemetry).")] = None,
) -> None:
    """Move the current stage on: planned → ready (gate) → applied → verified (exit check) → done."""
    from state import planning

    with _plan(name, source, cluster, db) as (inv, store, p):
        ev = load_evidence(prometheus, telemetry, window, inv, verify)
        st = planning.advance(store, p, inv, actor_name(actor), override_reason, ev)
    for line in (st.data or {}).get("verification", {}).get("lines", ()) if st.status == "verified" else ():
        typer.echo(line, err=True)  # the traffic before and after, or why it was not compared
    typer.echo(f"stage {st.order} ({st.title}): {st.status}")


@plan_app.command("rollback")
def plan_rollback(
    reason: Annotated[str, typer.Option("--reason", help="Why: kept in the audit trail.")] = "",
    name: NameOpt = None, source: SourceOpt = None, cluster: ClusterOpt = None, db: DbOpt = None,
    actor: ActorOpt = None,
) -> None:
    """Roll back the stage in flight (else the last done): flags restored; prints the YAML that undoes it."""
    from state import planning

    with _plan(name, source, cluster, db) as (inv, store, p):
        st, yaml_text = planning.rollback(store, p, inv, actor_name(actor), reason)
    typer.echo(f"# stage {st.order} ({st.title}) rolled back; apply this to undo it:", err=True)
    typer.echo(yaml_text)


@plan_app.command("add")
def plan_add(
    feature: Annotated[str, typer.Argument(help="Feature id (meshstep features).")],
    scope: Annotated[str, typer.Option("--scope", help="'mesh' or a namespace.")] = "mesh",
    sets: Annotated[list[str] | None, typer.Option("--set", help="key=value parameter")] = None,
    title: Annotated[str | None, typer.Option("--title")] = None,
    goal: Annotated[str, typer.Option("--goal", help="The problem this stage solves, in your words.")] = "",
    name: NameOpt = None, source: SourceOpt = None, cluster: ClusterOpt = None, db: DbOpt = None,
    actor: ActorOpt = None,
) -> None:
    """Append a stage to a plan (a `custom` plan is built this way); order rules are enforced."""
    from state import planning

    feat, params = feature_params(feature, sets)
    with _plan(name, source, cluster, db) as (inv, store, p):
        st = planning.add_stage(store, p, inv, title or f"{feat.title} in {scope}", goal or feat.problem,
                                [planner.Step(feature, scope, params)], actor_name(actor))
    typer.echo(f"stage {st.order} added: {st.title}")


@plan_app.command("export")
def plan_export(directory: Annotated[Path, typer.Argument(help="Where to write the stages' YAML.")],
                name: NameOpt = None, source: SourceOpt = None, cluster: ClusterOpt = None,
                db: DbOpt = None) -> None:
    """Write every stage's YAML and rollback as files, ready for a GitOps repository."""
    from state import planning

    with _plan(name, source, cluster, db) as (inv, _store, p):
        files = planning.stage_files(p, inv)
    directory.mkdir(parents=True, exist_ok=True)
    for fname, text in files.items():
        (directory / fname).write_text(text)
        typer.echo(directory / fname)
