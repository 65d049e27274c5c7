"""Prometheus's HTTP API as a Telemetry: PromQL `sum by (…)` of `increase()` evaluated on the server, over plain
HTTP or the Kubernetes API server's service proxy."""
from __future__ import annotations

import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from telemetry.series import DEFAULT_TIMEOUT, Matchers, Rows, TelemetryError, duration_text

if TYPE_CHECKING:
    pass

def _promql_matchers(match: Matchers) -> str:
    return ",".join(f'{k}=~"{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                    for k, v in sorted(match.items()))


class Prometheus:
    """Prometheus's HTTP API, `/api/v1/query`, through a transport (plain HTTP, or the Kubernetes service proxy)."""

    def __init__(self, transport: _Transport):
        self.transport = transport
        self.label = transport.label

    def query(self, promql: str, at: float) -> list[dict[str, Any]]:
        body = self.transport.get("/api/v1/query", {"query": promql, "time": f"{at:.3f}",
                                                    "timeout": f"{int(self.transport.timeout)}s"})
        return self._answer(body, "vector")

    def _answer(self, body: bytes, kind: str) -> list[dict[str, Any]]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise TelemetryError(f"{self.label} did not answer as Prometheus's API does ({body[:80]!r}): is this "
                                 "the Prometheus URL (http://host:9090)?") from e
        if data.get("status") != "success":
            raise TelemetryError(f"{self.label} refused the query: {data.get('error', data)}")
        if data["data"]["resultType"] != kind:
            raise TelemetryError(f"{self.label} answered a {data['data']['resultType']}, not a {kind}")
        return data["data"]["result"]

    def increase(self, metric: str, by: tuple[str, ...], start: float, end: float, match: Matchers) -> Rows:
        promql = (f"sum by ({','.join(by)}) (increase({metric}{{{_promql_matchers(match)}}}"
                  f"[{duration_text(end - start)}]))")
        return [(r["metric"], float(r["value"][1])) for r in self.query(promql, end)
                if not math.isnan(float(r["value"][1]))]

    def increase_steps(self, metric: str, by: tuple[str, ...], start: float, end: float, step: int,
                       match: Matchers) -> list[tuple[float, Rows]]:
        """The increase over each `step` from `start` to `end`: one range query (`/api/v1/query_range`)."""
        promql = f"sum by ({','.join(by)}) (increase({metric}{{{_promql_matchers(match)}}}[{duration_text(step)}]))"
        body = self.transport.get("/api/v1/query_range", {"query": promql, "start": f"{start:.3f}",
                                                          "end": f"{end:.3f}", "step": str(step),
                                                          "timeout": f"{int(self.transport.timeout)}s"})
        data = self._answer(body, "matrix")
        at: dict[float, Rows] = defaultdict(list)
        for r in data:
            for t, v in r["values"]:
                if not math.isnan(float(v)):
                    at[float(t)].append((r["metric"], float(v)))
        return sorted(at.items(), key=lambda item: item[0])

    def reaches(self, end: float) -> bool:
        return end <= self.now()

    def now(self) -> float:
        return datetime.now(UTC).timestamp()


class _Transport(Protocol):
    label: str
    timeout: float

    def get(self, path: str, params: dict[str, str]) -> bytes: ...


def _api_error(body: bytes) -> str:
    try:
        return orjson.loads(body).get("error") or body[:200].decode(errors="replace")
    except (orjson.JSONDecodeError, AttributeError):
        return body[:200].decode(errors="replace")


@dataclass
class HTTPTransport:
    """Plain HTTP with a timeout on every request."""

    url: str
    timeout: float = DEFAULT_TIMEOUT
    label: str = ""

    def __post_init__(self) -> None:
        if not re.match(r"https?://", self.url):
            raise TelemetryError(f"--prometheus {self.url!r}: give Prometheus's URL, e.g. http://prometheus:9090")
        self.label = self.label or f"Prometheus at {self.url}"

    def get(self, path: str, params: dict[str, str]) -> bytes:
        url = f"{self.url.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as e:
            raise TelemetryError(f"{self.label} answered HTTP {e.code}: {_api_error(e.read())}") from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, TimeoutError):
                raise TelemetryError(f"{self.label} did not answer within {self.timeout:g} s: check that it is up "
                                     "and not overloaded, or narrow --window") from e
            raise TelemetryError(f"{self.label} cannot be reached ({reason}): check --prometheus / "
                                 "MESHSTEP_PROMETHEUS_URL") from e


@dataclass
class KubeProxyTransport:
    """The Prometheus addon's Service, through the Kubernetes API server's service proxy (kubectl's credentials)."""

    api_client: Any
    namespace: str
    service: str
    port: int
    timeout: float = DEFAULT_TIMEOUT
    label: str = ""

    def __post_init__(self) -> None:
        self.label = self.label or (f"Prometheus service {self.namespace}/{self.service}:{self.port} (through the "
                                    "Kubernetes API's service proxy)")

    def get(self, path: str, params: dict[str, str]) -> bytes:
        from urllib3.exceptions import HTTPError

        proxy = f"/api/v1/namespaces/{self.namespace}/services/{self.service}:{self.port}/proxy{path}"
        try:  # as cluster.kubeapi reads: the client's auth and connection pool, the body unparsed
            method, url, headers, _body, _post = self.api_client.param_serialize(
                "GET", proxy, query_params=list(params.items()), header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"])
            resp = self.api_client.call_api(method, url, header_params=headers, _request_timeout=self.timeout)
            data = resp.read()
        except (HTTPError, OSError) as e:
            raise TelemetryError(f"{self.label} cannot be reached or did not answer within {self.timeout:g} s "
                                 f"({e}): give --prometheus URL to reach it another way") from e
        if not 200 <= resp.status < 300:
            raise TelemetryError(f"{self.label} answered HTTP {resp.status}: {_api_error(data or b'')} (give "
                                 "--prometheus URL to reach it another way)")
        return data
