"""An OpenMetrics / Prometheus text file of Istio's series as a Telemetry (`--telemetry FILE`, the demo's), parsed
with prometheus_client's parser and summed as Prometheus would."""
from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from telemetry.series import DURATION_BUCKET, REQUESTS, TCP_CLOSED, TCP_OPENED, Matchers, Rows, TelemetryError

if TYPE_CHECKING:
    pass

@dataclass(frozen=True)
class _Series:
    labels: tuple[tuple[str, str], ...]
    points: tuple[tuple[float, float], ...]  # (timestamp, value), oldest first; timestamp nan when the file has none


class MetricsFile:
    """An OpenMetrics (or Prometheus text) file of Istio's series, as `promtool tsdb create-blocks-from openmetrics`
    takes it. With timestamps, windows are read as Prometheus would; without, each value is the count since the
    proxy started, and the file says nothing of time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.label = f"metrics file {self.path}"
        try:
            text = self.path.read_text()
        except OSError as e:
            raise TelemetryError(f"--telemetry {self.path}: {e.strerror or e}") from e
        self.series = self._parse(text)
        stamps = [t for s in self.series.values() for ss in s for t, _ in ss.points if not math.isnan(t)]
        self.last = max(stamps) if stamps else None
        if self.last is None:
            self.label += " (no timestamps: counts since each proxy started)"

    def _parse(self, text: str) -> dict[str, list[_Series]]:
        if text.rstrip().endswith("# EOF"):
            from prometheus_client.openmetrics.parser import text_string_to_metric_families
        else:
            from prometheus_client.parser import text_string_to_metric_families
        points: dict[str, dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]] = defaultdict(
            lambda: defaultdict(list))
        try:
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    if s.name in (REQUESTS, TCP_OPENED, TCP_CLOSED, DURATION_BUCKET):
                        ts = float(s.timestamp) if s.timestamp is not None else math.nan
                        points[s.name][tuple(sorted(s.labels.items()))].append((ts, float(s.value)))
        except ValueError as e:
            raise TelemetryError(f"--telemetry {self.path}: not OpenMetrics or Prometheus text ({e}); write it "
                                 "as Prometheus's /federate or promtool's openmetrics input") from e
        return {name: [_Series(k, tuple(sorted(v))) for k, v in by.items()] for name, by in points.items()}

    def increase(self, metric: str, by: tuple[str, ...], start: float, end: float, match: Matchers) -> Rows:
        patterns = {k: re.compile(v) for k, v in match.items()}
        sums: dict[tuple[str, ...], float] = defaultdict(float)
        for s in self.series.get(metric, ()):
            labels = dict(s.labels)
            if all(p.fullmatch(labels.get(k, "")) for k, p in patterns.items()):
                value = _counter_increase(s.points, start, end)
                if value is not None:
                    sums[tuple(labels.get(k, "") for k in by)] += value
        return [(dict(zip(by, key)), v) for key, v in sums.items()]

    def increase_steps(self, metric: str, by: tuple[str, ...], start: float, end: float, step: int,
                       match: Matchers) -> list[tuple[float, Rows]]:
        """The increase between each two of the file's own sample times in [start, end] (`step` is Prometheus's
        resolution; a file has the one it was written at); without timestamps, one point: the counts so far."""
        if self.last is None:
            return [(self.now(), self.increase(metric, by, start, end, match))]
        stamps = sorted({t for s in self.series.get(metric, ()) for t, _ in s.points if start <= t <= end})
        if len(stamps) == 1:  # one reading: the counts from each series' start to it
            return [(stamps[0], self.increase(metric, by, -math.inf, stamps[0], match))]
        return [(b, self.increase(metric, by, a, b, match)) for a, b in zip(stamps, stamps[1:])]

    def reaches(self, end: float) -> bool:
        return self.last is not None and end <= self.last

    def now(self) -> float:
        # A file is a reading taken at its last sample: "the last hour" is the hour before it.
        return self.last if self.last is not None else datetime.now(UTC).timestamp()


def _counter_increase(points: tuple[tuple[float, float], ...], start: float, end: float) -> float | None:
    """How much a counter grew in (start, end]; a series first seen inside the window counts from zero (Istio
    creates it on its first request), and a drop is a proxy restart."""
    if points and math.isnan(points[0][0]):
        return points[-1][1]  # no timestamps: the count since the proxy started
    inside = [v for t, v in points if start < t <= end]
    if not inside:
        return None
    before = [v for t, v in points if t <= start]
    total, prev = 0.0, before[-1] if before else 0.0
    for v in inside:
        total += v - prev if v >= prev else v
        prev = v
    return total
