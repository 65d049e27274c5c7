"""A stage verified by traffic: requests, success rate, p99 latency and mTLS share before and after it was
applied, judged by thresholds — like with like: a call counted at L7 (requests) in one window and by ztunnel alone
(L4 connections) in the other is compared on its caller's own count (an ingress gateway's or a sidecar's,
reporter=source) when the caller reported it in both, else named, not compared."""
from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cluster.errors import MeshstepError
from telemetry.ambient import ZTUNNEL, AmbientStage, Carried, Switch, switch
from telemetry.edges import count_text
from telemetry.metrics_file import MetricsFile
from telemetry.series import (
    DURATION_BUCKET,
    REQUESTS,
    TCP_OPENED,
    Matchers,
    Rows,
    Telemetry,
    duration_text,
    utc_text,
    window_seconds,
)

if TYPE_CHECKING:
    pass

# ---------------------------------------------------------------- verification of a stage


@dataclass(frozen=True)
class Thresholds:
    """What counts as a regression after a stage; defaults below, each settable for a plan (`plan new --verify
    k=v`) and for one verification (`plan advance --verify k=v`)."""

    window: int = 600  # seconds compared before and after the stage
    settle: int = 60  # seconds after `applied` left out while proxies take the new config
    min_requests: int = 100  # fewer in either window: too little traffic to judge
    max_success_drop: float = 1.0  # percentage points the success rate (non-5xx share) may fall
    max_p99_increase: float = 25.0  # percent the p99 latency may rise …
    min_p99_increase_ms: float = 10.0  # … and by at least this many milliseconds (noise on fast services)
    min_mtls_share: float = 99.0  # percent of requests in mutual TLS after a STRICT stage
    # percent of the connections ztunnel accepts in mutual TLS (HBONE) after a switch to ambient (or as many as
    # were mutual TLS before, if fewer: callers outside the mesh stay plaintext under PERMISSIVE)
    min_hbone_share: float = 99.0

    @classmethod
    def values(cls, items: Iterable[str]) -> dict[str, Any]:
        """The values `key=value` items set, checked; windows take durations (10m), the rest numbers."""
        values: dict[str, Any] = {}
        names = cls.__dataclass_fields__
        for item in items:
            key, sep, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in names:
                raise MeshstepError(f"--verify {item!r}: expected key=value with key one of {', '.join(names)}")
            if key in ("window", "settle"):
                values[key] = window_seconds(value, zero=key == "settle")
                continue
            try:
                values[key] = type(getattr(cls, key))(value)
            except ValueError as e:
                raise MeshstepError(f"--verify {item!r}: {value!r} is not a number") from e
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> Thresholds:
        """The defaults with `values` (as values() gives them, as a plan keeps them)."""
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})

    def text(self, keys: Iterable[str] | None = None) -> str:
        """`key=value` of each threshold (or of `keys`), as `--verify` takes them."""
        return ", ".join(f"{k}={duration_text(v) if k in ('window', 'settle') else v}"
                         for k, v in self.__dict__.items() if keys is None or k in keys)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Figures:
    """One window's figures for the affected workloads: the requests their sidecars, or a waypoint, counted."""

    start: float
    end: float
    requests: float
    server_errors: float
    p99_ms: float | None
    mtls_requests: float
    waypoint_requests: float = 0.0  # of `requests`, those a waypoint counted (reporter=waypoint); the rest, sidecars
    # of `requests`, those their caller counted (reporter=source: a gateway, a sidecar), which Istio reports with
    # connection_security_policy="unknown": not in the mTLS share
    caller_requests: float = 0.0

    @property
    def success_rate(self) -> float | None:
        return 100.0 * (1 - self.server_errors / self.requests) if self.requests else None

    @property
    def mtls_share(self) -> float | None:
        known = self.requests - self.caller_requests
        return 100.0 * self.mtls_requests / known if known >= 0.5 else None

    def text(self) -> str:
        p99 = f"{self.p99_ms:.0f} ms" if self.p99_ms is not None else "n/a"
        sr = f"{self.success_rate:.2f}%" if self.success_rate is not None else "n/a"
        share = f"{self.mtls_share:.1f}%" if self.mtls_share is not None else "n/a"
        by = ""
        if self.waypoint_requests:
            by = (" (reported by the waypoint)" if self.waypoint_requests >= self.requests else
                  f" ({count_text(self.waypoint_requests)} of them reported by the waypoint)")
        if self.caller_requests:
            by += f" ({count_text(self.caller_requests)} of them reported by their caller)"
        return (f"{utc_text(self.start)}–{utc_text(self.end)[11:]}: {count_text(self.requests)} requests{by}, "
                f"success {sr}, p99 {p99}, mTLS {share}")

    def to_json(self) -> dict[str, Any]:
        return {"start": utc_text(self.start), "end": utc_text(self.end), "requests": round(self.requests, 1),
                "success_rate": self.success_rate, "p99_ms": self.p99_ms, "mtls_share": self.mtls_share}


@dataclass(frozen=True)
class Verification:
    """passed | regressed (a threshold crossed, a caller newly denied) | insufficient (too little traffic, the window
    not over yet, or pods of a namespace switched to ambient still served by their sidecars: nothing broke, the
    switch is not done) | unavailable (no telemetry for the stage's time)."""

    status: str
    lines: tuple[str, ...]
    before: Figures | None = None
    after: Figures | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    problems: tuple[str, ...] = ()  # each threshold crossed, as its line says it: for whoever shows them apart
    moved: Switch | None = None  # an ambient stage's traffic by the proxy that carried it
    # the calls counted at L7 in one window and by ztunnel alone in the other, each with its counts (why)
    not_compared: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def blocks(self, override_reason: str | None) -> bool:
        """A regression always stops `verified`; too little traffic does unless a reason to go on is given."""
        return self.status == "regressed" or (self.status == "insufficient" and not override_reason)

    def to_json(self) -> dict[str, Any]:
        moved = self.moved
        return {"status": self.status, "lines": list(self.lines), "problems": list(self.problems),
                "before": _window_json(self.before, moved.before if moved else None),
                "after": _window_json(self.after, moved.after if moved else None),
                "thresholds": self.thresholds.to_json(), **({"ambient": moved.to_json()} if moved else {}),
                **({"not_compared": list(self.not_compared)} if self.not_compared else {})}


def _window_json(f: Figures | None, carried: Carried | None) -> dict[str, Any] | None:
    """A window's figures as a stage's record keeps them; an ambient stage's with the share ztunnel carried over
    HBONE."""
    if f is None:
        return None
    return {**f.to_json(), **({"hbone_share": carried.hbone_share} if carried else {})}


def p99(buckets: Rows, q: float = 0.99) -> float | None:
    """The quantile of summed histogram buckets (by `le`), interpolated inside its bucket as histogram_quantile
    does."""
    bounds = sorted((float(lb["le"]), v) for lb, v in buckets if lb.get("le"))
    if not bounds or bounds[-1][1] <= 0:
        return None
    rank = q * bounds[-1][1]
    lower, below = 0.0, 0.0
    for le, cumulative in bounds:
        if cumulative >= rank:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * (rank - below) / max(cumulative - below, 1e-12)
        lower, below = le, cumulative
    return lower


Call = tuple[str, str, str]  # the caller's namespace and workload, and the destination service it called
_CALL = ("source_workload_namespace", "source_workload", "destination_service")


def _call(lb: dict[str, str]) -> Call:
    return lb.get(_CALL[0], ""), lb.get(_CALL[1], ""), lb.get(_CALL[2], "")


def _call_text(call: Call) -> str:
    return f"{call[0]}/{call[1]} → {call[2]}"


@dataclass(frozen=True)
class Counted:
    """One window's traffic into the affected workloads by call, each counted once, by the proxy that counted it: at
    L7 the requests a waypoint reported where it reported the call's (it sees every request sent to the service,
    those it fails itself included, while a sidecar still behind it counts only those that reach its pod), else the
    destination's sidecar; at L4 the connections of the calls ztunnel alone counted (it counts connections, not
    requests or their response codes). And, in ambient, the requests each caller's own proxy reported
    (reporter=source: an ingress gateway or a sidecar counts at L7 what it sends, whoever serves it)."""

    start: float
    end: float
    requests: Rows  # by reporter, call, response code and mTLS: the rows of the proxy counting each call
    buckets: Rows  # by reporter, call and `le`: likewise
    connections: dict[Call, float]  # the calls no proxy counted at L7: the connections ztunnel accepted
    callers: Rows = ()  # by reporter (source), call, response code: the requests their callers reported
    caller_buckets: Rows = ()  # likewise, by `le`

    @property
    def by_caller(self) -> set[Call]:
        """The calls their caller reported at L7."""
        return {_call(lb) for lb, v in self.callers if v >= 0.5}

    @property
    def l7(self) -> dict[Call, float]:
        """The requests of each call counted at L7."""
        out: dict[Call, float] = defaultdict(float)
        for lb, v in self.requests:
            out[_call(lb)] += v
        return dict(out)

    def figures(self, leave_out: Iterable[Call] = (), by_caller: Iterable[Call] = ()) -> Figures:
        """The window's figures, but for the calls `leave_out`; the calls `by_caller` as their callers counted
        them."""
        left, callers = set(leave_out), set(by_caller)
        rows = [*((lb, v) for lb, v in self.requests if _call(lb) not in left | callers),
                *((lb, v) for lb, v in self.callers if _call(lb) in callers)]
        buckets: dict[str, float] = defaultdict(float)
        for lb, v in [*self.buckets, *self.caller_buckets]:
            if _call(lb) not in left and (_call(lb) in callers) == (lb["reporter"] == "source"):
                buckets[lb["le"]] += v
        return Figures(self.start, self.end, sum(v for _, v in rows),
                       sum(v for lb, v in rows if lb.get("response_code", "").startswith("5")),
                       p99([({"le": le}, v) for le, v in buckets.items()]),
                       sum(v for lb, v in rows if lb.get("connection_security_policy") == "mutual_tls"),
                       sum(v for lb, v in rows if lb["reporter"] == "waypoint"),
                       sum(v for lb, v in rows if lb["reporter"] == "source"))


# Why a call is named instead of compared (Verification.not_compared), as the verification's lines and the app say it.
NOT_COMPARED = ("counted at L7 in one window and by ztunnel alone in the other (it counts connections, not requests, "
                "their response codes or latency), with no count of their caller's own")


def counted(tel: Telemetry, match: Matchers, start: float, end: float, ambient: bool) -> Counted:
    """The window's traffic by call (`ambient`: waypoints' requests, ztunnel's connections and the requests callers
    reported too)."""
    asked = {"reporter": "destination|waypoint|source" if ambient else "destination", **match}
    every = tel.increase(REQUESTS, ("reporter", *_CALL, "response_code", "connection_security_policy"), start,
                         end, asked)
    requests = [(lb, v) for lb, v in every if lb["reporter"] != "source"]
    by: dict[tuple[Call, str], float] = defaultdict(float)
    for lb, v in requests:
        by[_call(lb), lb["reporter"]] += v
    # Under half a request is no request: the part of a window's edge that `increase` extrapolates.
    proxy: dict[Call, str] = {}
    for (call, reporter), v in by.items():
        if v >= 0.5 and proxy.get(call) != "waypoint":
            proxy[call] = reporter
    chosen = [(lb, v) for lb, v in requests if proxy.get(_call(lb)) == lb["reporter"]]
    histogram = tel.increase(DURATION_BUCKET, ("reporter", *_CALL, "le"), start, end, asked)
    buckets = [(lb, v) for lb, v in histogram if proxy.get(_call(lb)) == lb["reporter"]]
    l4 = tel.increase(TCP_OPENED, _CALL, start, end, {"reporter": "destination", "app": ZTUNNEL, **match}) \
        if ambient else []
    return Counted(start, end, chosen, buckets, {_call(lb): v for lb, v in l4 if v >= 0.5 and _call(lb) not in proxy},
                   [(lb, v) for lb, v in every if lb["reporter"] == "source"],
                   [(lb, v) for lb, v in histogram if lb["reporter"] == "source"])


def _unlike(before: Counted, after: Counted) -> dict[Call, str]:
    """Each call counted at L7 in one window and by ztunnel alone in the other, and how: no measure of it is the
    same in both (a request's response code and latency are not a connection's), so neither window compares it."""
    out = {}
    for l7, l4, at, only in ((before, after, "before", "after"), (after, before, "after", "before")):
        requests = l7.l7
        out |= {call: f"{count_text(requests[call])} requests {at}, only {count_text(n)} connections {only}"
                for call, n in l4.connections.items() if call in requests}
    return dict(sorted(out.items()))


def verify(tel: Telemetry, namespaces: list[str] | None, applied_at: float, mtls_mode: str | None = None,
           thresholds: Thresholds | None = None, now: float | None = None,
           ambient: AmbientStage | None = None) -> Verification:
    """Compare the requests the affected workloads served in a window before `applied_at` and one after it (for an
    `ambient` stage, also who carried them: ztunnel over HBONE, sidecars, and whom a proxy denied)."""
    t = thresholds or Thresholds()
    now = tel.now() if now is None else now
    after_start = applied_at + t.settle
    after_end = after_start + t.window
    where = "mesh-wide" if namespaces is None else "in " + ", ".join(namespaces)
    if not tel.reaches(after_end):
        if isinstance(tel, MetricsFile):
            window = f"{utc_text(after_start)}–{utc_text(after_end)[11:]}"
            return Verification("unavailable", (f"{tel.label} ends at {utc_text(tel.now())}, before the window after "
                                                f"the stage ({window}): traffic not compared",), thresholds=t)
        return Verification("insufficient", (f"the window after the stage ends at {utc_text(after_end)} "
                                              f"({duration_text(t.settle)} to settle, then {duration_text(t.window)}"
                                              f"): verify again after it",), thresholds=t)
    match = {"destination_workload_namespace": "|".join(re.escape(n) for n in namespaces)} if namespaces else {}
    first = counted(tel, match, applied_at - t.window, applied_at, ambient is not None)
    moved = switch(tel, ambient, (applied_at - t.window, applied_at), (after_start, after_end)) if ambient else None
    later = _restarted(tel, moved, (applied_at - t.window, applied_at), after_end, now, t.window)
    if later is not None:
        moved, after_start, after_end = later, now - t.window, now
    last = counted(tel, match, after_start, after_end, ambient is not None)
    # Like with like: a call ztunnel alone counted at its destination in a window is compared on its caller's own
    # count (an ingress gateway's, a sidecar's: reporter=source) when the caller reported it in both; else, counted
    # at L7 in one window and by ztunnel alone in the other, it is compared in neither.
    by_caller = (first.connections.keys() | last.connections.keys()) & first.by_caller & last.by_caller
    unlike = {c: how for c, how in _unlike(first, last).items() if c not in by_caller}
    before, after = first.figures(unlike, by_caller), last.figures(unlike, by_caller)
    named = tuple(f"{_call_text(c)} ({how})" for c, how in unlike.items())
    head = (f"traffic {where} (requests the workloads' {'sidecars and waypoints' if ambient else 'sidecars'} "
            f"served, {tel.label}):", f"  before: {before.text()}", f"  after:  {after.text()}",
            *((f"  not compared ({NOT_COMPARED}): " + "; ".join(named),) if named else ()),
            *(("  compared on their caller's own count (reporter=source: ztunnel alone counted them at the "
               "destination): " + "; ".join(_call_text(c) for c in sorted(by_caller)),) if by_caller else ()),
            *(moved.lines() if moved else ()),
            *(("  judged on the latest window: pods were still served by sidecars in the first one after the "
               "switch, and were restarted since",) if later else ()))
    kept = dict(thresholds=t, moved=moved, not_compared=named)
    if low := _quiet(first, last, t):
        return Verification("insufficient", (*head, f"too little traffic to judge: {' and '.join(low)} (at least "
                                             f"{t.min_requests} needed; --verify min_requests=N)",
                                             "  → advance again once the workloads have served traffic, or go on "
                                             "with --override-reason"), before, after, **kept)
    compared = min(before.requests, after.requests) >= t.min_requests
    if not compared:
        why = ("no call was counted at L7 in both windows" if not min(before.requests, after.requests) else
               f"fewer than {t.min_requests} requests in a window were of calls counted at L7 in both")
        head += (f"  success rate and p99 not compared: {why} (ztunnel counts connections, not requests; a waypoint "
                 "in the path reports requests, L7)",)
    # The plaintext callers allowed for after a switch: as many as before, of every request counted then.
    problems = ((_crossed(before, after, t, mtls_mode) if compared else [])
                + (moved.problems(t.min_hbone_share, first.figures().mtls_share, t.max_success_drop)
                   if moved else []))
    if problems:
        return Verification("regressed", (*head, *(f"  ✗ {p}" for p in problems),
                                          "  → find the cause, or roll the stage back: meshstep plan rollback "
                                          "--reason \"…\""), before, after, problems=tuple(problems), **kept)
    if moved and (left := moved.unfinished()):
        return Verification("insufficient", (*head, *left), before, after, **kept)
    judged = "" if compared else (" ztunnel's connections are judged by (HBONE share, denials, connections it "
                                  "could not open); requests not compared")
    return Verification("passed", (*head, f"  ✓ no regression beyond the thresholds{judged}"), before, after, **kept)


def _restarted(tel: Telemetry, moved: Switch | None, before: tuple[float, float], first_end: float, now: float,
               window: int) -> Switch | None:
    """A switch verified again once its pods were restarted, as its unfinished lines ask: the latest window, when
    the first one after the switch still had pods on sidecars, time has passed since it ended, and the latest has
    none (judged on the first window alone, a switch whose restart came after it would stay unfinished for good)."""
    if moved is None or not moved.unfinished() or now <= first_end:
        return None
    latest = switch(tel, moved.stage, before, (now - window, now))
    return None if latest.unfinished() else latest


def _quiet(before: Counted, after: Counted, t: Thresholds) -> list[str]:
    """The windows with too little traffic to judge: each call once, its requests, or for a call ztunnel alone
    counted its connections (a waypoint's requests are ztunnel's connections too: not counted twice)."""
    low = []
    for name, c in (("the before", before), ("the after", after)):
        requests, connections = sum(c.l7.values()), sum(c.connections.values())
        if requests + connections < t.min_requests:
            parts = [f"{count_text(requests)} requests"] if requests or not connections else []
            parts += [f"{count_text(connections)} connections"] if connections else []
            low.append(f"{name} window has {' and '.join(parts)}")
    return low


def _crossed(before: Figures, after: Figures, t: Thresholds, mtls_mode: str | None) -> list[str]:
    """Each threshold the after window crossed (success rate, p99, the mTLS share of an mTLS stage); a window without
    requests compares nothing."""
    if not before.requests or not after.requests:
        return []
    problems = []
    drop = before.success_rate - after.success_rate
    if drop > t.max_success_drop:
        problems.append(f"success rate fell {drop:.2f} points ({before.success_rate:.2f}% → "
                        f"{after.success_rate:.2f}%; at most {t.max_success_drop:g} allowed): "
                        f"{count_text(after.server_errors)} 5xx after, {count_text(before.server_errors)} before")
    if before.p99_ms is not None and after.p99_ms is not None:
        rise = after.p99_ms - before.p99_ms
        if rise > t.min_p99_increase_ms and rise > before.p99_ms * t.max_p99_increase / 100:
            problems.append(f"p99 latency rose {rise:.0f} ms ({before.p99_ms:.0f} → {after.p99_ms:.0f} ms; at most "
                            f"+{t.max_p99_increase:g}% allowed)")
    if mtls_mode == "STRICT" and after.mtls_share is not None and after.mtls_share < t.min_mtls_share:
        problems.append(f"only {after.mtls_share:.1f}% of requests were mutual TLS after STRICT (at least "
                        f"{t.min_mtls_share:g}% expected)")
    if mtls_mode == "PERMISSIVE" and None not in (before.mtls_share, after.mtls_share) and \
            after.mtls_share + 1e-9 < before.mtls_share - t.max_success_drop:
        problems.append(f"the mutual-TLS share fell ({before.mtls_share:.1f}% → {after.mtls_share:.1f}%)")
    return problems
