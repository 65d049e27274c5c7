"""`meshstep notify`: the webhooks' deliveries (planner.notify). A command queues what it tells of and delivers it in
the background; what an ended command left pending is delivered here (or by the next command that tells)."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from app.commands import Format, FormatOpt, cli, emit_json, emit_table
from cluster.errors import MeshstepError

notify_app = typer.Typer(help="Signed webhooks: deliver what is pending, and say where each delivery stands.",
                         no_args_is_help=True)
cli.add_typer(notify_app, name="notify")


@notify_app.command()
def deliver(
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait out each retry's backoff until every delivery "
                                                                "is delivered or failed (else: one try at what is "
                                                                "due).")] = True,
    format: FormatOpt = Format.table,
) -> None:
    """Deliver the pending deliveries of the delivery log (MESHSTEP_DELIVERY_LOG), signed, retried with backoff;
    then every delivery and where it stands. Exits 1 when one is still pending, or one tried now failed."""
    from planner.notify import Notifier

    notifier = Notifier.from_env()
    if notifier is None:
        raise MeshstepError("no webhooks: set MESHSTEP_WEBHOOKS (and MESHSTEP_WEBHOOK_SECRET) to deliver")
    made = notifier.drain() if wait else notifier.deliver_due() or []
    tried = {a.delivery for a in made}
    rows = [{"delivery": s.delivery.id, "event": s.delivery.event, "url": s.delivery.url, "state": s.state,
             "tries": len(s.attempts),
             "queued": f"{datetime.fromtimestamp(s.delivery.at, UTC):%Y-%m-%d %H:%M:%S}",
             "last": s.attempts[-1].error or str(s.attempts[-1].status) if s.attempts else ""}
            for s in notifier.log.standings(notifier.retries, notifier.backoff)]
    emit_json(rows) if format == Format.json else emit_table(rows)
    if any(r["state"] == "pending" or r["state"] == "failed" and r["delivery"] in tried for r in rows):
        raise typer.Exit(1)
