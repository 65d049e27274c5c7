"""`meshstep flags` and `meshstep audit`: what the team decided, and the trail of who decided it."""
from __future__ import annotations

import enum
from typing import Annotated

import typer

from app import safe
from app.commands import (
    ActorOpt,
    ClusterOpt,
    DbOpt,
    Format,
    FormatOpt,
    ScopeOpt,
    SourceOpt,
    actor_name,
    cli,
    cluster_name,
    echo,
    emit_json,
    emit_table,
    feature_params,
    load_inventory,
    open_store,
)
from cluster.errors import MeshstepError
from state.actors import how_known

ReasonOpt = Annotated[str, typer.Option("--reason", help="Why: kept in the audit trail.")]
ExpectOpt = Annotated[int | None, typer.Option(
    "--expect-version", help="Refuse (exit 3) unless the flag is at this version (as `flags list` showed it); 0: "
                             "not recorded yet. Without it, the change replaces whatever version is recorded.")]

flags_app = typer.Typer(help="Feature flags: which features the team wants on, where.", no_args_is_help=True)
cli.add_typer(flags_app, name="flags")


class Export(str, enum.Enum):
    markdown = "markdown"
    csv = "csv"
    json = "json"


@flags_app.command("list")
def flags_list(cluster: ClusterOpt = None, db: DbOpt = None, format: FormatOpt = Format.table) -> None:
    """The flags recorded for a cluster."""
    with open_store(db) as store:
        rows = [f.model_dump(mode="json") for f in store.list_flags(cluster_name(cluster))]
    if format == Format.json:
        emit_json(rows)
        return
    from state.reports import params_text

    emit_table([r | {"params": params_text(r["params"])} for r in rows],
               ["feature", "scope", "state", "params", "version", "changed_by", "changed_at", "reason"])


@flags_app.command("set")
def flags_set(feature: str, scope: ScopeOpt, reason: ReasonOpt,
              set_: Annotated[list[str] | None, typer.Option("--set", help="A parameter, key=value (repeatable).")
                              ] = None,
              state: Annotated[str, typer.Option("--state", help="off | enabling | on | disabling")] = "on",
              cluster: ClusterOpt = None, actor: ActorOpt = None, expect_version: ExpectOpt = None,
              db: DbOpt = None, source: SourceOpt = None) -> None:
    """Record that FEATURE should be in a state (default on) in a scope, with its parameters: checked against the
    source's cluster as `render` checks them (the scope, the services named, values it cannot render)."""
    feat, params = feature_params(feature, set_)
    inv = load_inventory(source)
    if state in ("on", "enabling"):
        params = feat.validate(params, scope, inv)
    else:  # turning it off needs no rendering, but the scope must be one it takes
        feat.check_scope(scope, inv)
    with open_store(db) as store:
        cluster = cluster_name(cluster, source)
        flag = store.set_flag(cluster, feature, scope, params, state, actor_name(actor), reason, expect_version)
    echo(f"{feature} in {safe.shown(scope)} on {safe.shown(cluster)}: {flag.state} (version {flag.version})")
    if expect_version is None and flag.version > 1:
        _replaced(flag.version - 1)


def _replaced(version: int) -> None:
    echo(f"note: this replaced version {version} as it stood, whoever wrote it: pass --expect-version with "
               "the version you looked at to refuse a change made since", err=True)


@flags_app.command("unset")
def flags_unset(feature: str, scope: ScopeOpt, reason: ReasonOpt, cluster: ClusterOpt = None,
                actor: ActorOpt = None, expect_version: ExpectOpt = None, db: DbOpt = None) -> None:
    """Remove a recorded flag."""
    with open_store(db) as store:
        cluster = cluster_name(cluster)
        flag = store.unset_flag(cluster, feature, scope, actor_name(actor), reason, expect_version)
    echo(f"{feature} in {safe.shown(scope)} on {safe.shown(cluster)}: no longer recorded")
    if expect_version is None:
        _replaced(flag.version)


@cli.command("audit")
def audit_cmd(verify: Annotated[bool, typer.Option(
                  "--verify", help="Recompute the hash chain; exit 1 naming the first altered or removed event.")
              ] = False,
              export: Annotated[Export | None, typer.Option("--export", help="Print the trail as a report/file.")
                                ] = None,
              since: Annotated[str | None, typer.Option("--since", help="Only events from this date (UTC) on.")
                               ] = None,
              source: Annotated[str | None, typer.Option(
                  "--source", "-s", help="With --export markdown: the cluster whose drift the report shows "
                                         "(default: as every command's --source)")] = None,
              cluster: ClusterOpt = None, db: DbOpt = None) -> None:
    """The audit trail: who changed what, when and why."""
    from state import audit, reports
    from state.store import Store

    start = reports.parse_since(since) if since else None
    store = Store.open(db, create=False)  # reading the trail never makes a database
    try:
        if verify:
            broken = audit.verify(store)
            key = store.audit_key
            if broken:
                echo(f"audit chain broken: {safe.message(broken)}\n(verified with the audit key {key.fingerprint} from "
                           f"{key.origin}: if the trail was written with another, set ${audit.KEY_ENV} to it)",
                           err=True)
                raise typer.Exit(1)
            events = len(store.audit_events())
            point = audit.read_checkpoint(store.identity)
            signed = ", ".join(f"events {a}-{b} by " + (f"key generation {g} of {len(key.generations)} "
                                                          f"({audit.fingerprint(key.generations[g - 1])})" if g
                                                          else "unkeyed (sha256, before keys)")
                               for a, b, g in audit.key_spans(store))
            echo(f"audit chain verified: {events} events, hash keys {key.fingerprint} ({key.origin}), "
                       f"signed: {signed or 'nothing yet'}; flags, plans and stages agree with it; "
                       + (f"checkpoint at event {point['seq']} ({audit.checkpoints().where})" if point else
                          f"no checkpoint of this database in {audit.checkpoints().where}"),
                       err=export is not None)  # an export owns stdout
        if export == Export.markdown:
            echo(reports.export_markdown(store, start, _observed(source, cluster), escape=safe.md), nl=False)
        elif export is not None:
            events = store.audit_events(start)
            echo(reports.export_csv(events) if export == Export.csv else reports.export_json(events), nl=False)
        elif not verify:
            events = store.audit_events(start)
            names = reports.target_names(store.audit_events() if start else events)
            emit_table([{"seq": ev.seq, "at": f"{ev.at:%Y-%m-%d %H:%M:%S}", "actor": ev.actor,
                         "identity": how_known(ev.identity), "action": ev.action,
                         "target": names.get(ev.target, ev.target), "reason": ev.reason} for ev in events])
    finally:
        store.close()


def _observed(source: str | None, cluster: str | None) -> dict[str, list] | None:
    """What the source's cluster shows, for the report's drift; a source that cannot be read leaves it out, and
    says so."""
    from features.base import observe

    try:
        inv = load_inventory(source)
    except MeshstepError as e:
        echo(f"warning: the report has no drift section: {safe.message(str(e))}", err=True)
        return None
    return {cluster_name(cluster, inv.source): observe(inv)}
