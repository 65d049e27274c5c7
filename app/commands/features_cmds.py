"""`meshstep features`, `meshstep render` and `meshstep status`: the catalog, the YAML that turns one feature on
(or off) in one scope, and what is on where — observed in the cluster, recorded by the team, and their drift."""
from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from analysis.catalog import TRAFFIC_GATED, reads_traffic
from analysis.findings import counts, terminal
from app import safe
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
    echo,
    emit_json,
    emit_table,
    feature_params,
    load_evidence,
    load_inventory,
    open_store,
)
from features._gate import render_gated
from telemetry.evidence import live

if TYPE_CHECKING:
    from features.base import Refused, Rendered

SetOpt = Annotated[list[str] | None, typer.Option("--set", help="A parameter, key=value (repeatable).")]


class RenderFormat(str, enum.Enum):
    yaml = "yaml"
    diff = "diff"
    json = "json"


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
               format: Annotated[RenderFormat, typer.Option(
                   "--format", "-o", help="yaml: what to apply; diff: what it changes in the cluster, as kubectl "
                                          "diff shows it; json: both, with the findings.")] = RenderFormat.yaml,
               prometheus: PrometheusOpt = None, telemetry: TelemetryOpt = None, window: WindowOpt = "1h",
               api: Annotated[str | None, typer.Option(
                   "--api", help="istio or gateway-api, for a traffic feature (as --set api=…); default: read "
                                 "from the cluster")] = None) -> None:
    """The YAML that turns FEATURE on in a scope (or, with --rollback, off again), checked by the feature's gate
    (with the traffic telemetry shows, where given or found) and, on the cluster with it applied, by the
    invariants. Notes (label changes, restarts) are comments at the top of the YAML; the changes (created,
    modified, deleted) and gate warnings go to stderr. A refused rendering exits 2 with its findings, and its YAML
    on stderr marked REFUSED."""
    from features.base import Refused

    feat, p = feature_params(feature, [*(set_ or []), *([f"api={api}"] if api else [])])
    inv = load_inventory(source)
    feat.check_scope(scope, inv)
    msgs: list[Any] = []
    try:
        rendered = feat.rollback(p, scope, inv) if rollback else None
        if rendered is None:
            ev = load_evidence(prometheus, telemetry, window, inv)
            traffic = ev.traffic(reads_traffic([feat.id]))  # read only for a gate that asks who really calls
            if traffic is None and feat.id in TRAFFIC_GATED and live(inv):
                # Why the cluster's own Prometheus gave nothing (the gate's MST0820 warning says only that it did not).
                echo(f"note: {safe.message(ev.missing)}", err=True)
            rendered, msgs = render_gated(feat, p, scope, inv, traffic)
    except Refused as e:
        _refused(e, format, inv)
        raise typer.Exit(2) from None
    _emit(rendered, inv, msgs, format)


def _changes(rendered: Rendered, inv: Any) -> Any:
    from cluster.changes import diff

    return diff(rendered.objects, rendered.delete, inv)


def _emit(rendered: Rendered, inv: Any, msgs: list[Any], format: RenderFormat) -> None:
    changes = _changes(rendered, inv)
    if format == RenderFormat.json:
        emit_json(_json(rendered, changes, msgs, refused=False))
        return
    if msgs:  # what the gate warns of: said, not refused
        echo(f"the gate passes with {counts(msgs)}:\n{terminal(msgs, escape=safe.message)}", err=True)
    what = "undo" if rendered.rollback else "apply"
    if changes.empty:
        echo(f"note: nothing to {what} for {rendered.feature} in {safe.shown(rendered.scope)}: the cluster already "
             "has it",
                   err=True)
    else:
        echo(f"changes: {safe.message(changes.summary())}", err=True)
    echo(changes.diff if format == RenderFormat.diff else rendered.yaml, nl=False)


def _json(rendered: Rendered | None, changes: Any, msgs: list[Any], refused: bool) -> dict[str, Any]:
    return {"refused": refused,
            "findings": [m.to_json() for m in msgs],
            "changes": [c | {"object": ch.after} for c, ch in zip(changes.to_json(), changes.changes)]
            if changes else [],
            "yaml": rendered.yaml if rendered else ""}


def _refused(e: Refused, format: RenderFormat, inv: Any) -> None:
    """Why, with the findings as a list (the same as `analyze` and `plan next` show them), then the YAML that was
    refused (on stderr: a pipe to kubectl gets nothing)."""
    changes = _changes(e.rendered, inv) if e.rendered else None
    if format == RenderFormat.json:
        emit_json(_json(e.rendered, changes, e.findings, refused=True))
        return
    echo(f"error: {e.feature} cannot be turned on in {safe.shown(e.scope)}: {counts(e.findings)}"
         + (f"; {safe.message(e.reason)}" if e.reason else ""), err=True)
    echo(terminal(e.findings, escape=safe.message), err=True)
    if e.rendered is not None:
        echo(f"\n# REFUSED: {e.feature} in {safe.shown(e.scope)} — the YAML it would apply, NOT to be applied "
                   f"({len(e.findings)} finding{'s' if len(e.findings) != 1 else ''} above; changes: "
                   f"{safe.message(changes.summary())})", err=True)
        echo(e.rendered.yaml, err=True, nl=False)


@cli.command("status")
def status_cmd(source: SourceOpt = None, db: DbOpt = None, cluster: ClusterOpt = None,
               format: FormatOpt = Format.table) -> None:
    """What is on where: observed in the cluster, recorded as flags, and where the two disagree (drift). What the
    source could not read is listed (NOT VISIBLE; `not_visible` in JSON), a feature whose evidence it holds is
    unknown rather than off, and, as kubectl does for a partial answer, the command then exits 1."""
    from analysis.effective import defaults, resolved
    from analysis.readiness.scope import mesh_namespaces
    from features._mtls import mtls_modes
    from features.base import observe, unknown_features
    from state.drift import recorded_and_drift
    from state.reports import params_text

    inv = load_inventory(source)
    observed = observe(inv)
    name = cluster_name(cluster, inv.source)  # as `meshstep flags` and the app key records
    with open_store(db) as store:
        status = recorded_and_drift(store, name, observed, unknown_features(inv))
    not_visible = [n.to_json() for n in inv.visibility.not_visible]
    report = {"cluster": name,
              "observed": [{"feature": o.feature, "scope": o.scope, "evidence": list(o.evidence)} for o in observed],
              "mtls": mtls_modes(inv),
              "not_visible": not_visible,
              "effective": [e.to_json() for e in resolved(inv, mesh_namespaces(inv))],
              "defaults": {"istio": inv.istio_version, "table": [d.to_json() for d in defaults(inv.istio_version)]},
              **status}
    if format == Format.json:
        emit_json(report)
    else:
        _status_tables(report, inv.source, params_text)
    if not_visible:
        echo(f"error: could not read {', '.join(n['resource'] for n in not_visible)}: this answer is partial "
                   "(what their objects would show is unknown)", err=True)
        raise typer.Exit(1)


def _status_tables(report: dict[str, Any], source: str, params_text: Any) -> None:
    echo(f"cluster: {safe.shown(report['cluster'])}   source: {safe.shown(source)}")
    echo("\nMTLS (the mode each scope's workloads accept, as Istio resolves it)")
    emit_table([m | {"explicit": "yes" if m["explicit"] else "no (Istio's default)"} for m in report["mtls"]],
               ["scope", "mode", "explicit", "by"])
    echo(f"\nIN EFFECT (as Istio resolves it: config, else Istio {report['defaults']['istio'] or ''}'s defaults; "
         "namespaces where it differs from the mesh)")
    emit_table(report["effective"], ["behaviour", "scope", "value", "why"])
    echo("\nOBSERVED")
    emit_table(report["observed"])
    echo("\nRECORDED")
    emit_table([{"feature": f["feature"], "scope": f["scope"], "state": f["state"],
                 "params": params_text(f["params"]), "version": f["version"]}
                for f in report["recorded"]])
    echo("\nDRIFT")
    emit_table([{"feature": d["feature"], "scope": d["scope"], "kind": d["kind"], "detail": d["detail"]}
                for d in report["drift"]])
    if report["not_visible"]:
        echo("\nNOT VISIBLE (could not be read: what depends on it is unknown)")
        emit_table(report["not_visible"], ["kind", "resource", "reason"])
