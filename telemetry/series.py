"""The series Istio's proxies export, windows of time over them, and the one question every source answers:
`increase(metric, by, start, end, match)` (the Telemetry protocol)."""
from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from cluster.errors import MeshstepError
from cluster.sources import DEMO_DIR

if TYPE_CHECKING:
    pass

DEMO_METRICS = DEMO_DIR / "telemetry.om"
DEFAULT_WINDOW = "1h"
DEFAULT_TIMEOUT = 10.0  # seconds: a slow or silent Prometheus is named within this, never waited on

REQUESTS = "istio_requests_total"
TCP_OPENED = "istio_tcp_connections_opened_total"
TCP_CLOSED = "istio_tcp_connections_closed_total"  # ztunnel's carry response_flags: DENY where a policy refused
DURATION_BUCKET = "istio_request_duration_milliseconds_bucket"
UNKNOWN = "unknown"  # what Istio's proxies write for a peer they have no metadata of
# Istio's metric labels of a caller and a callee; connection_security_policy is mutual_tls, none or unknown.
EDGE_LABELS = ("reporter", "source_workload", "source_workload_namespace", "destination_workload",
               "destination_workload_namespace", "destination_service", "destination_service_name",
               "connection_security_policy")
EGRESS_CLUSTERS = ("PassthroughCluster", "BlackHoleCluster")

Matchers = dict[str, str]  # label → anchored regular expression, as PromQL's =~
Rows = list[tuple[dict[str, str], float]]  # the label set of each group and its summed increase


class TelemetryError(MeshstepError):
    """Prometheus or the metrics file could not answer; the message names it and what to check."""


# ---------------------------------------------------------------- windows


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def window_seconds(text: str, zero: bool = False) -> int:
    """A Prometheus duration (`90s`, `10m`, `1h`, `7d`) in seconds; 0 only where `zero` allows it."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text or "")
    if not m or (int(m.group(1)) == 0 and not zero):
        raise MeshstepError(f"window {text!r}: write a duration as Prometheus does, e.g. 10m, 1h or 7d")
    return int(m.group(1)) * _UNITS[m.group(2)]


def duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def utc_text(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


# ---------------------------------------------------------------- sources


class Telemetry(Protocol):
    label: str  # where the series come from, as messages name it

    def increase(self, metric: str, by: tuple[str, ...], start: float, end: float, match: Matchers) -> Rows:
        """`sum by (by) (increase(metric{match}[end-start]))` at `end`."""

    def reaches(self, end: float) -> bool:
        """Whether the series cover time `end` (a file stops where it was taken)."""

    def now(self) -> float:
        """The time a window ending "now" ends at."""

    def increase_steps(self, metric: str, by: tuple[str, ...], start: float, end: float, step: int,
                       match: Matchers) -> list[tuple[float, Rows]]:
        """`increase` over each step from `start` to `end`, as (the step's end, its rows), oldest first."""
