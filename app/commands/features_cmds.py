"""`meshstep features`, `meshstep render` and `meshstep status`: the catalog, the YAML that turns one feature on
(or off) in one scope, and what is on where — observed in the cluster, recorded by the team, and their drift."""
from __future__ import annotations

import sys
from typing import Annotated

import typer

from app.commands import (
    ClusterOpt,
    DbOpt,
    Format,
    FormatOpt,
    PrometheusOpt,
    ScopeOpt,
    SourceOpt,
    TelemetryOpt,
    WindowOpt,
    cli,
    cluster_name,
    emit_json,
    emit_table,
    feature_params,
    load_evidence,
    load_inventory,
    open_store,
)
from planner.analysis.catalog import TRAFFIC_GATED
from planner.telemetry import live

SetOpt = Annotated[list[str] | None, typer.Option("--set", help="A parameter, key=value (repeatable).")]


@cli.command("features")
def features_cmd(format: FormatOpt = Format.table) -> None:
    """The feature catalog: what each feature is, what it needs first and the parameters it takes."""
    from features.base import registry

    feats = [f.to_json() for f in registry().values()]
    if format == Format.json:
        emit_json(feats)
        return
    emit_table([f | {"params": [p["name"] for p in f["params"]]} for f in feats],
               ["id", "title", "category", "depends_on", "params"])


@cli.command("render")
def render_cmd(feature: str, scope: ScopeOpt = "mesh", set_: SetOpt = None, source: SourceOpt = None,
               rollback: Annotated[bool, typer.Option(
                   "--rollback", help="What undoes it: objects to restore, and those to delete.")] = False,
               prometheus: PrometheusOpt = None, telemetry: TelemetryOpt = None, window: WindowOpt = "1h") -> None:
    """The YAML that turns FEATURE on in a scope (or, with --rollback, off again). Notes (label changes, restarts)
    are comments at the top of the YAML; gate warnings go to stderr."""
    feat, p = feature_params(feature, set_)
    inv = load_inventory(source)
    feat.check_scope(scope, inv)
    if rollback:
        rendered = feat.rollback(p, scope, inv)
    else:
        ev = load_evidence(prometheus, telemetry, window, inv)
        traffic = ev.traffic([feat.id])  # read only for a gate that asks who really calls
        if traffic is None and feat.id in TRAFFIC_GATED and live(inv):
            # Why the cluster's own Prometheus gave nothing (the gate's MST0820 warning says only that it did not).
            typer.echo(f"note: {ev.missing}", err=True)
        rendered, msgs = feat.render_gated(p, scope, inv, traffic)
        for m in msgs:
            typer.echo(f"{m.level}: {m.code} {m.message} ({m.hint})", err=True)
    if not rendered.objects and not rendered.delete:
        typer.echo(f"note: nothing to {'undo' if rollback else 'apply'} for {feat.id} in {scope}", err=True)
    sys.stdout.write(rendered.yaml)


@cli.command("status")
def status_cmd(source: SourceOpt = None, db: DbOpt = None, cluster: ClusterOpt = None,
               format: FormatOpt = Format.table) -> None:
    """What is on where: observed in the cluster, recorded as flags, and where the two disagree (drift)."""
    from features.base import observe
    from state.audit import params_text
    from state.drift import recorded_and_drift

    inv = load_inventory(source)
    observed = observe(inv)
    name = cluster_name(cluster, inv.source)  # as `meshstep flags` and the app key records
    with open_store(db) as store:
        status = recorded_and_drift(store, name, observed)
    report = {"cluster": name,
              "observed": [{"feature": o.feature, "scope": o.scope, "evidence": list(o.evidence)} for o in observed],
              **status}
    if format == Format.json:
        emit_json(report)
        return
    typer.echo(f"cluster: {name}   source: {inv.source}")
    typer.echo("\nOBSERVED")
    emit_table(report["observed"])
    typer.echo("\nRECORDED")
    emit_table([{"feature": f["feature"], "scope": f["scope"], "state": f["state"],
                 "params": params_text(f["params"]), "version": f["version"]}
                for f in report["recorded"]])
    typer.echo("\nDRIFT")
    emit_table([{"feature": d["feature"], "scope": d["scope"], "kind": d["kind"], "detail": d["detail"]}
                for d in report["drift"]])

