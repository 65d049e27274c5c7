"""A real Prometheus per data set: Debian's `prometheus`, its TSDB filled from synthetic Istio series written as
OpenMetrics and loaded with `promtool tsdb create-blocks-from openmetrics`. Without the binaries the tests that need
it skip — except under CI (env CI set), where they fail: CI must not pass by not running them."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from benchmarks.istio_metrics import Flow, PrometheusServer, binaries, openmetrics


def now_minute() -> float:
    """Now, on a whole minute (the synthetic samples are a minute apart)."""
    return time.time() // 60 * 60


def write_metrics(path: Path, flows: Iterable[Flow], start: float, end: float) -> Path:
    path.write_text("\n".join(openmetrics(flows, start, end)) + "\n")
    return path


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """serve(flows, hours=3) → the URL of a real Prometheus holding the flows' series up to the minute before now."""
    if binaries() is None:
        what = "Debian's prometheus/promtool are not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{what} (CI installs them: see .ci/run)")
        pytest.skip(what)
    servers: list[PrometheusServer] = []

    def serve(flows: Iterable[Flow], hours: float = 3.0) -> str:
        end = now_minute() - 60
        work = tmp_path / f"prom{len(servers)}"
        work.mkdir()
        server = PrometheusServer(write_metrics(work / "metrics.om", flows, end - hours * 3600, end), work)
        servers.append(server.__enter__())
        return server.url

    yield serve
    for s in servers:
        s.__exit__()
