"""The `meshstep` command: one Typer app; each module in this package adds its commands to it.

Adding a command is adding a module here (registered by existing, like features)."""
from __future__ import annotations

import enum
import getpass
import json
import logging
import os
import re
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app import safe

cli = typer.Typer(
    name="meshstep",
    help="Staged adoption planner and feature-flag manager for Istio.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@cli.callback()
def _group(verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Say on stderr what a live read retries (and why), as it happens.")] = False) -> None:
    """Staged adoption planner and feature-flag manager for Istio."""
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("meshstep: %(message)s"))
    log = logging.getLogger("meshstep")
    log.handlers = [handler]  # set anew by each run: one --verbose does not carry over to the next in-process run
    log.setLevel(logging.INFO if verbose else logging.WARNING)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a record comes, not the one there was when it was made."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class Format(str, enum.Enum):
    table = "table"
    json = "json"


SourceOpt = Annotated[
    str | None,
    typer.Option("--source", "-s", help="demo | live | context:NAME | a snapshot file, directory or .tar.gz "
                 "(default: live when a kubeconfig exists, else demo)"),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-o", help="Output format.")]
DbOpt = Annotated[str | None, typer.Option(
    "--db", help="SQLAlchemy URL of the state database (default: $MESHSTEP_DATABASE_URL, else meshstep.db in "
                 "the user data directory).")]
ClusterOpt = Annotated[str | None, typer.Option(
    "--cluster", help="The cluster the records are kept under (default: the source's name: demo, live, "
                      "context:NAME or the snapshot's path, as the app uses).")]
ActorOpt = Annotated[str | None, typer.Option(
    "--actor", envvar="MESHSTEP_ACTOR", help="Who makes the change (default: $MESHSTEP_ACTOR, else the OS user).")]
ScopeOpt = Annotated[str, typer.Option("--scope", help="'mesh' or a namespace.")]
PrometheusOpt = Annotated[str | None, typer.Option(
    "--prometheus", envvar="MESHSTEP_PROMETHEUS_URL", help="Prometheus holding Istio's metrics (http://host:9090; "
    "default: $MESHSTEP_PROMETHEUS_URL, else for a live cluster its Prometheus addon through the API server).")]
TelemetryOpt = Annotated[str | None, typer.Option(
    "--telemetry", help="An OpenMetrics / Prometheus text file of Istio's metrics instead ('demo': the demo's).")]
WindowOpt = Annotated[str, typer.Option("--window", help="How far back observed traffic counts (10m, 1h, 7d).")]

if TYPE_CHECKING:
    from state.store import Store


@contextmanager
def open_store(db: str | None) -> Iterator[Store]:
    """The state database, closed afterwards (imported here, not at start-up: commands without state stay fast)."""
    from state.store import Store

    store = Store.open(db)
    try:
        yield store
    finally:
        store.close()


def cluster_name(cluster: str | None, source: str | None = None) -> str:
    """The cluster records are kept under: as given, else the source's name (the app keys records the same way)."""
    from cluster.sources import source_label

    return cluster or source_label(source)


def actor_name(actor: str | None) -> str:
    return actor or getpass.getuser()


def feature_params(feature_id: str, sets: list[str] | None) -> tuple[Any, dict[str, Any]]:
    """The feature and its parameters from --set key=value items: defaults overlaid with the values as typed,
    each parsed and checked by the parameter itself (unknown feature, unknown key or bad value: MeshstepError)."""
    from cluster.errors import MeshstepError
    from features.base import get, validate_params

    feature = get(feature_id)
    raw = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise MeshstepError(f"--set {item!r}: write it as key=value")
        raw[key] = value
    return feature, validate_params(feature, raw)


def load_inventory(source: str | None):
    """The inventory for a --source value (a large snapshot's from the cache, when read before: cluster.cache);
    errors surface as MeshstepError."""
    from cluster import cache
    from cluster.inventory import freeze

    inv = cache.inventory(source)
    # What the command reads from here on lives until it ends: out of the collector's sight (as `meshstep ui` keeps
    # its server's), else each full collection walks the whole inventory again (0.3-0.9 s of CPU for a render of
    # 10,000 pods).
    freeze()
    return inv


def not_visible_warning(inv: Any) -> None:
    """One line on stderr naming what the source could not read, with the server's reason."""
    if inv.visibility.not_visible:
        echo("warning: could not read " + "; ".join(f"{n.resource} ({safe.message(n.reason)})"
                                                  for n in inv.visibility.not_visible)
             + ": what their objects would show is unknown", err=True)


def load_evidence(prometheus: str | None, telemetry: str | None, window: str, inv: Any,
                  verify: list[str] | None = None) -> Any:
    """The traffic evidence for a command (telemetry.evidence.Evidence: `ev.missing` says why when it has none)."""
    from telemetry.evidence import evidence

    return evidence(prometheus, telemetry, inv, window, verify or ())


def echo(text: Any = "", err: bool = False, nl: bool = True) -> None:
    """Every line the CLI writes for people (and the YAML it renders): whatever it quotes from a cluster, a snapshot,
    telemetry or a user has its control and bidi characters escaped, whether stdout is a terminal or not — an
    escape sequence in an annotation must not rewrite what the terminal shows (app/safe.py). Values the YAML holds
    are already escaped by YAML's own quoting (a safe_dump is ASCII), so that it parses to them exactly."""
    typer.echo(safe.terminal(str(text)), err=err, nl=nl)


def terminal_width() -> int | None:
    """The columns of the terminal stdout writes to; None when stdout is no terminal (a pipe, a file): there lines
    stay whole, for grep and diff."""
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns if sys.stdout.isatty() else None
    except (OSError, ValueError, AttributeError):  # a captured stdout has no file descriptor
        return None


# A line that is a command to copy (or its comment's continuation would not be one): never wrapped.
_COMMAND = re.compile(r"^\s*(?:kubectl|istioctl|helm|curl|meshstep)\s")


def fit(text: str, width: int | None) -> str:
    """Prose lines wrapped to `width` at spaces, each continuation under the line's text (a comment's after its
    `# `); commands and words longer than a line kept whole; `width` None: `text` as it is."""
    if not width:
        return text
    out = []
    for line in text.split("\n"):
        if len(line) <= width or _COMMAND.match(line):
            out.append(line)
            continue
        lead = re.match(r"\s*(?:# )?", line).group()
        hang = lead if lead.endswith("# ") else lead + "  "
        out += textwrap.wrap(line, width, initial_indent="", subsequent_indent=hang, break_long_words=False,
                             break_on_hyphens=False, drop_whitespace=True) if line.strip() else [line]
    return "\n".join(out)


def emit_json(data: Any) -> None:
    # ASCII (json.dumps escapes every control and non-ASCII character): nothing hidden reaches a terminal.
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def emit_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """A plain aligned text table; empty input prints a dash line."""
    if not rows:
        echo("(none)")
        return
    columns = columns or list(rows[0])
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def cell(value: Any) -> str:
    """A value as a table shows it (here, and in the app as here): "-" for none, a list joined by commas; cut and
    escaped as safe.shown() shows a value."""
    if value is None:
        return "-"
    if isinstance(value, (list, tuple, set)):
        return safe.shown(",".join(map(str, value))) or "-"
    return safe.shown(value)
