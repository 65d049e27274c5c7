"""Reports of the audit trail to hand over: JSON, CSV and Markdown exports (features on, drift, whether the chain
holds) and the text of a flag's parameters. The chain itself is state.audit."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import select

from cluster.errors import MeshstepError
from state.actors import how_known
from state.audit import canonical, check_chain
from state.drift import Observed, compute_drift
from state.models import AuditEvent, AuditHead, Flag, flag_target, utcnow

if TYPE_CHECKING:
    from state.store import Store

EXPORT_FIELDS = ("seq", "at", "actor", "identity", "action", "target", "reason", "before", "after", "prev_hash",
                 "hash")

def parse_since(value: str) -> datetime:
    """A --since value (ISO date or date-time; UTC unless it says otherwise) as an aware datetime."""
    try:
        since = datetime.fromisoformat(value)
    except ValueError:
        raise MeshstepError(f"--since {value!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    return since if since.tzinfo else since.replace(tzinfo=UTC)


def target_names(events: Iterable[AuditEvent]) -> dict[str, str]:
    """Each `plan:ID` and `stage:ID` target of the trail (the chain's stable names) as people know it — `plan:1
    rollout`, `stage:14 rollout #14 mTLS STRICT in shop` — from the snapshots the events carry, so that a plan
    deleted since keeps its name."""
    plans: dict[Any, str] = {}
    stages: dict[Any, dict[str, Any]] = {}
    for ev in events:
        for snap in (ev.before, ev.after):
            if not snap:
                continue
            if ev.target.startswith("plan:") and "name" in snap:
                plans[snap.get("id")] = snap["name"]
                stages |= {st.get("id"): st for st in snap.get("stages") or ()}
            elif ev.target.startswith("stage:") and "title" in snap:
                stages[snap.get("id")] = snap
    out = {f"plan:{pid}": f"plan:{pid} {name}" for pid, name in plans.items()}
    out |= {f"stage:{sid}": f"stage:{sid} {plans.get(st.get('plan_id'), 'plan:' + str(st.get('plan_id')))} "
            f"#{st.get('order')} {st.get('title')}" for sid, st in stages.items()}
    return out


def _event_json(ev: AuditEvent) -> dict[str, Any]:
    row = ev.model_dump(mode="json")
    return {k: row[k] for k in EXPORT_FIELDS}


def export_json(events: Iterable[AuditEvent]) -> str:
    return json.dumps([_event_json(ev) for ev in events], indent=2, ensure_ascii=False) + "\n"


# What makes a spreadsheet (Excel, LibreOffice Calc, Google Sheets) read a cell as a formula when it starts it:
# OWASP's CSV injection guidance (https://owasp.org/www-community/attacks/CSV_Injection) has such a cell written
# with a single quote before it, which the spreadsheet reads as "text" and does not show.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A CSV cell of an exported value: text that a spreadsheet would run as a formula (an actor or a reason that
    someone typed as `=HYPERLINK(…)`) after a single quote, anything else as it is."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def export_csv(events: Iterable[AuditEvent]) -> str:
    """One row per event; before and after as canonical JSON; no cell a spreadsheet would run (_cell)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, EXPORT_FIELDS)
    writer.writeheader()
    for ev in events:
        row = _event_json(ev)
        row |= {k: canonical(row[k]) for k in ("identity", "before", "after")}
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


def export_markdown(store: Store, since: datetime | None = None,
                    observed: Mapping[str, Iterable[Observed]] | None = None, *,
                    escape: Callable[[Any], str]) -> str:
    """An audit report to hand over: which features are on where, since when and by whom, the other recorded
    flags, the drift of each cluster whose observations are given, whether the chain holds, and the events (from
    `since` on) — all read in one snapshot of the database. Every text it quotes (names, actors, reasons, what the
    cluster showed) goes through `escape`, the caller's Markdown escaping of a value (app/safe.py's md): a report is
    opened where Markdown is rendered, and a reason must not become an image fetched by whoever reads it."""
    with store.reader() as s:
        head = s.get(AuditHead, 1)
        events = list(s.exec(select(AuditEvent).order_by(AuditEvent.seq)))
        flags = list(s.exec(select(Flag).order_by(Flag.cluster, Flag.feature, Flag.scope)))
    broken = check_chain(head, events, store.audit_key)
    turned_on = _turned_on(events)
    listed = [ev for ev in events if since is None or ev.at >= since]
    lines = [
        "# meshstep audit report", "",
        f"- Database: {escape(store.url)}",
        f"- Generated: {_time(utcnow())} UTC",
        f"- Audit trail: {len(events)} events, "
        + (f"**hash chain broken: {escape(str(broken))}**" if broken else "hash chain verified"),
        f"- Events listed: {'since ' + _time(since) + ' UTC' if since else 'all'}",
        "", "## Features on", "",
    ]
    lines += _table(escape, ["Cluster", "Feature", "Scope", "Parameters", "On since (UTC)", "Turned on by", "Reason"],
                    [[f.cluster, f.feature, f.scope, params_text(f.params), *_on_since(f, turned_on)]
                     for f in flags if f.state == "on"])
    lines += ["", "## Other recorded flags", ""]
    lines += _table(escape, ["Cluster", "Feature", "Scope", "State", "Changed (UTC)", "By", "Reason"],
                    [[f.cluster, f.feature, f.scope, f.state, _time(f.changed_at), f.changed_by, f.reason]
                     for f in flags if f.state != "on"])
    for cluster, seen in (observed or {}).items():
        items = compute_drift([f for f in flags if f.cluster == cluster], seen)
        lines += ["", f"## Drift in {escape(cluster)}", ""]
        lines += _table(escape, ["Kind", "Feature", "Scope", "Detail", "Evidence"],
                        [[d.kind, d.feature, d.scope, d.detail, "; ".join(d.evidence)] for d in items]
                        ) if items else ["What is recorded is what is observed."]
    lines += ["", "## Events", ""]
    lines += _table(escape, ["#", "Time (UTC)", "Actor", "Identity", "Action", "Target", "Reason"],
                    [[ev.seq, _time(ev.at), ev.actor, how_known(ev.identity), ev.action, ev.target, ev.reason]
                     for ev in listed])
    return "\n".join(lines) + "\n"


def _turned_on(events: Iterable[AuditEvent]) -> dict[str, AuditEvent]:
    """For each flag target now on: the event that last turned it on (parameter changes while on don't count)."""
    since: dict[str, AuditEvent] = {}
    for ev in events:
        if not ev.action.startswith("flag."):
            continue
        if (ev.after or {}).get("state") != "on":
            since.pop(ev.target, None)
        elif (ev.before or {}).get("state") != "on":
            since[ev.target] = ev
    return since


def _on_since(flag: Flag, turned_on: Mapping[str, AuditEvent]) -> list[str]:
    event = turned_on.get(flag_target(flag.cluster, flag.feature, flag.scope))
    if event is None:  # the trail lost it (edited by hand): the flag's own last change is the best we know
        return [_time(flag.changed_at), flag.changed_by, flag.reason]
    return [_time(event.at), event.actor, event.reason]


def _time(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M}"


def params_text(params: Mapping[str, Any]) -> str:
    """A flag's parameters as a person reads them; empty values (the feature chooses) are left out."""
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if v not in (None, "")) or "defaults"


def _table(escape: Callable[[Any], str], header: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table, each cell escaped (a `|` or a newline in a value would end the cell or the row)."""
    if not rows:
        return ["(none)"]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(escape(str(v)) or "-" for v in row) + " |" for row in rows)]
