"""`meshstep fleet`: where each cluster of the fleet stands, read side by side."""
from __future__ import annotations

from collections import Counter
from typing import Annotated

import typer

from app import safe
from app.commands import ActorOpt, DbOpt, Format, FormatOpt, actor_name, cli, echo, emit_json, emit_table, open_store
from cluster.errors import MeshstepError


def _items(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@cli.command()
def fleet(
    contexts: Annotated[str | None, typer.Option("--contexts", help="Kubeconfig contexts, comma-separated.")] = None,
    all_contexts: Annotated[bool, typer.Option("--all-contexts", help="Every context of the kubeconfig.")] = False,
    sources: Annotated[str | None, typer.Option(
        "--sources", help="Snapshots (or demo, context:NAME), comma-separated, each as NAME=SOURCE (records kept "
                          "under NAME) or SOURCE, e.g. staging=./snap1,prod=./snap2.")] = None,
    deadline: Annotated[float, typer.Option("--deadline", min=0.1, help="Seconds each cluster has to answer.")]
    = 60.0,
    remember: Annotated[bool, typer.Option(
        "--remember", help="Record each named cluster's source in the state database (audited): the team's fleet, "
                           "what `meshstep fleet` without clusters and the Fleet page read.")] = False,
    format: FormatOpt = Format.table, db: DbOpt = None, actor: ActorOpt = None,
) -> None:
    """Per cluster: Istio version and revisions, namespaces and pods in the mesh, features observed and recorded,
    drift, the active plan and its stage. Without clusters named, the ones the state database knows a source for.
    Exits 1 when any cluster failed (all are still shown)."""
    from planner import fleet as fleet_

    names = _items(contexts)
    if all_contexts:
        names += [c for c in fleet_.all_contexts() if c not in names]
    with open_store(db) as store:
        members = fleet_.members(names, _items(sources)) or fleet_.known(store)
        if not members:
            raise MeshstepError("no clusters: pass --contexts a,b, --all-contexts or --sources NAME=SOURCE,... "
                                "(or record the team's clusters and their sources in the state database)")
        if remember:
            for m in members:
                store.set_cluster(m.name, m.source, actor_name(actor), reason="meshstep fleet --remember")
        rows = fleet_.read_fleet(members, store, deadline)
    if format == Format.json:
        emit_json([r.to_json() for r in rows])
    else:
        emit_table([r.row() for r in rows])
        for r in rows:
            if not r.ok:
                echo(f"\n{safe.shown(r.name)}: failed after {r.seconds:.1f} s: {safe.message(r.error)}")
            elif r.drift:
                kinds = Counter(d.kind for d in r.drift)
                echo(f"\n{safe.shown(r.name)}: drift: " + "; ".join(f"{n} {kind}" for kind, n in kinds.items())
                           + f" (meshstep status --source {r.source} --cluster {r.name} lists them)")
    if not all(r.ok for r in rows):
        raise typer.Exit(1)
