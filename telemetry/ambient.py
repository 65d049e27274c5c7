"""A switch to ambient mode seen in traffic: who carried a namespace's inbound traffic in a window — the node's
ztunnel over HBONE (mutual TLS) or in plaintext, or the sidecars of pods not restarted yet — and which callers a
proxy denied (ztunnel's connections closed with response_flags DENY, the 403s of sidecars and waypoints), and
the connections ztunnel could not open to the destination (response_flags CONNECT).

ztunnel exports Istio's TCP metrics (istio_tcp_connections_opened_total, _closed_total, _sent/_received_bytes) for
the connections it accepts (reporter="destination") and opens (reporter="source"), connection_security_policy
mutual_tls for HBONE; its series are told from the sidecars' by the pod label Istio's Prometheus addon copies from
ztunnel's DaemonSet (app="ztunnel"). Waypoints report requests with reporter="waypoint"
(https://istio.io/latest/docs/ambient/migrate/enable-ambient-mode/). ztunnel's response flags are "-", DENY (a policy
refused the connection) and CONNECT (no upstream connection could be made): istio/ztunnel src/proxy/metrics.rs."""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from telemetry.edges import count_text
from telemetry.series import REQUESTS, TCP_CLOSED, TCP_OPENED, Matchers, Telemetry

ZTUNNEL = "ztunnel"  # the `app` label of ztunnel's series (its DaemonSet's pod label, copied by the addon)
DENY = "DENY"  # ztunnel's response_flags on a connection its authorization policies refused
CONNECT = "CONNECT"  # … and on one it could not open to the destination (ResponseFlags::ConnectionFailure)
_DESTINATION = ("destination_workload_namespace", "destination_workload")
_CALL = ("source_workload_namespace", "source_workload", *_DESTINATION)
Call = tuple[str, str]  # (caller, callee) as namespace/workload


@dataclass(frozen=True)
class AmbientStage:
    """What a stage does to ambient mode: the namespaces it switches to ambient or puts behind a waypoint, whether it
    switches them (then their traffic must be carried by ztunnel over HBONE, not by sidecars), and whether it puts
    the waypoint in their traffic's path (istio.io/use-waypoint: then the waypoint must report their requests)."""

    namespaces: tuple[str, ...]
    switched: bool
    waypoint: bool = False


@dataclass(frozen=True)
class Carried:
    """Who carried one window's inbound traffic of the namespaces, and whom a proxy denied."""

    hbone: float  # connections ztunnel accepted in mutual TLS (HBONE)
    plaintext: float  # connections ztunnel accepted without it (callers outside the mesh)
    sidecars: dict[tuple[str, str], float]  # (namespace/workload, pod) → requests and connections a sidecar served
    denied: dict[Call, dict[str, float]] = field(default_factory=dict)  # call → how it was denied → how many
    failed: dict[Call, float] = field(default_factory=dict)  # call → connections ztunnel could not open (CONNECT)
    waypoint_requests: float = 0.0  # requests a waypoint reported (reporter="waypoint")
    unreached: float = 0.0  # of `failed`, those the caller's ztunnel counted: none reached the destination's

    @property
    def failed_share(self) -> float | None:
        """The percentage of the connections into the namespaces ztunnel could not open, of every one tried: those
        the destination's ztunnel accepted and those that never reached it (None: ztunnel tried none, as when
        sidecars carried them)."""
        tried = self.connections + self.unreached
        return 100.0 * sum(self.failed.values()) / tried if tried else None

    @property
    def connections(self) -> float:
        return self.hbone + self.plaintext

    @property
    def hbone_share(self) -> float | None:
        return 100.0 * self.hbone / self.connections if self.connections else None

    def text(self) -> str:
        share = (f"HBONE {self.hbone_share:.1f}% of {count_text(self.connections)} connections ztunnel accepted"
                 if self.hbone_share is not None else "HBONE n/a (ztunnel accepted no connection)")
        served = sum(self.sidecars.values())
        return share + (f"; sidecars served {count_text(served)} requests and connections" if served else "")


def _workload(ns: str, name: str) -> str:
    return f"{ns}/{name}"


def carried(tel: Telemetry, namespaces: tuple[str, ...], start: float, end: float) -> Carried:
    """The window's traffic into the namespaces' workloads, by the proxy that served it."""
    into = {"destination_workload_namespace": "|".join(re.escape(n) for n in namespaces)}
    served: dict[tuple[str, str], float] = defaultdict(float)
    hbone = plaintext = 0.0
    for lb, v in tel.increase(TCP_OPENED, ("app", "connection_security_policy", *_DESTINATION, "pod"), start, end,
                              {"reporter": "destination", **into}):
        if lb.get("app") != ZTUNNEL:
            served[_workload(*(lb.get(k, "") for k in _DESTINATION)), lb.get("pod", "")] += v
        elif lb.get("connection_security_policy") == "mutual_tls":
            hbone += v
        else:
            plaintext += v
    waypoint = 0.0
    for lb, v in tel.increase(REQUESTS, ("reporter", *_DESTINATION, "pod"), start, end,
                              {"reporter": "destination|waypoint", **into}):
        if lb.get("reporter") == "waypoint":
            waypoint += v
        else:
            served[_workload(*(lb.get(k, "") for k in _DESTINATION)), lb.get("pod", "")] += v
    # Under half a request is no request: the part of a window's edge that `increase` extrapolates.
    failed, unreached = _failed(tel, into, start, end)
    return Carried(hbone, plaintext, {k: v for k, v in served.items() if v >= 0.5}, _denied(tel, into, start, end),
                   failed, waypoint if waypoint >= 0.5 else 0.0, unreached)


def _call(lb: dict[str, str]) -> Call:
    src_ns, src, dst_ns, dst = (lb.get(k, "") for k in _CALL)
    return _workload(src_ns, src), _workload(dst_ns, dst)


def _failed(tel: Telemetry, into: Matchers, start: float, end: float) -> tuple[dict[Call, float], float]:
    """Each call's connections ztunnel closed CONNECT in the window: the destination could not be reached; and how
    many of them the caller's ztunnel counted. Either end's ztunnel may count one, once a connection: the caller's
    (reporter=source) when it cannot reach the destination's, which then never accepted it; the destination's
    (reporter=destination) only what reached it, which it counted as opened too."""
    found: dict[Call, float] = defaultdict(float)
    unreached = 0.0
    for lb, v in tel.increase(TCP_CLOSED, (*_CALL, "reporter"), start, end,
                              {"response_flags": CONNECT, "app": ZTUNNEL, **into}):
        if v >= 0.5:
            found[_call(lb)] += v
            unreached += v if lb.get("reporter") == "source" else 0.0
    return dict(found), unreached


def _denied(tel: Telemetry, into: Matchers, start: float, end: float) -> dict[Call, dict[str, float]]:
    """Each call a proxy denied in the window: ztunnel's connections closed DENY, the sidecars' and waypoints' 403s
    (Istio's metrics do not tell an RBAC 403 from the application's own: Envoy sets no response flag for it)."""
    found: dict[Call, dict[str, float]] = defaultdict(dict)
    asked = ((TCP_CLOSED, ("app",), {"reporter": "destination", "response_flags": DENY, "app": ZTUNNEL},
              lambda _lb: "connection(s) denied by ztunnel (response_flags=DENY)"),
             (REQUESTS, ("reporter",), {"reporter": "destination|waypoint", "response_code": "403"},
              lambda lb: f"403 response(s) from the {'waypoint' if lb.get('reporter') == 'waypoint' else 'sidecar'}"))
    for metric, by, match, how in asked:
        for lb, v in tel.increase(metric, (*_CALL, *by), start, end, {**match, **into}):
            if v >= 0.5:
                call = _call(lb)
                found[call][how(lb)] = found[call].get(how(lb), 0.0) + v
    return dict(found)


@dataclass(frozen=True)
class Switch:
    """The namespaces' traffic before and after an ambient stage, and what it says."""

    stage: AmbientStage
    before: Carried
    after: Carried

    def lines(self) -> list[str]:
        where = ", ".join(self.stage.namespaces)
        out = [f"who carried the traffic into {where} (ztunnel: the connections its app={ZTUNNEL} pods accepted; "
               "sidecars: the requests and connections they served):",
               f"  before: {self.before.text()}", f"  after:  {self.after.text()}"]
        if self.stage.switched and not self.after.sidecars:
            out.append(f"  ✓ no pod of {where} still served by a sidecar")
        if kept := sorted(set(self.before.denied) & set(self.after.denied)):
            out.append("  denied before and after: " + ", ".join(f"{a} → {b}" for a, b in kept))
        return out

    def problems(self, min_hbone_share: float, before_mtls_share: float | None, max_drop: float) -> list[str]:
        """A switch that leaves more plaintext than the threshold (or than before), each new denial, and a share of
        connections ztunnel could not open that rose more than `max_drop` points (the success rate's threshold)."""
        out = []
        # Before a switch sidecars carried the connections: no share of ztunnel's to compare with, so none is
        # claimed (a sidecar's failures are not counted as ztunnel's CONNECT); the share after is judged alone.
        before, after = self.before.failed_share, self.after.failed_share
        if after is not None and after - (before or 0.0) > max_drop:
            calls = ", ".join(f"{a} → {b} ({count_text(n)})" for (a, b), n in sorted(self.after.failed.items()))
            where = ", ".join(self.stage.namespaces)
            how = (f"{after - before:.2f}% more of the connections into {where} ({before:.2f}% → {after:.2f}%, "
                   f"response_flags=CONNECT; at most {max_drop:g} points allowed)" if before is not None else
                   f"{after:.2f}% of the connections into {where} (response_flags=CONNECT; none measured before: "
                   f"ztunnel carried none of them; at most {max_drop:g}% allowed)")
            out.append(f"ztunnel could not connect {how}: {calls}")
        share, required = self.after.hbone_share, min_hbone_share
        if before_mtls_share is not None:
            required = min(required, before_mtls_share)
        if self.stage.switched and share is not None and share + 1e-9 < required:
            out.append(f"only {share:.1f}% of the connections ztunnel accepted in {', '.join(self.stage.namespaces)} "
                       f"were HBONE (mutual TLS) after the switch ({count_text(self.after.plaintext)} plaintext; at "
                       f"least {required:.1f}% expected, --verify min_hbone_share=N)")
        for call in sorted(set(self.after.denied) - set(self.before.denied)):
            how = ", ".join(f"{count_text(n)} {what}" for what, n in sorted(self.after.denied[call].items()))
            out.append(f"new denial after the stage: {call[0]} → {call[1]}: {how}; none before")
        return out

    def unfinished(self) -> list[str]:
        """The pods whose sidecars still served traffic after the switch: not restarted, not carried by ztunnel; or,
        after a stage that puts a waypoint in the path, requests no waypoint reported."""
        if self.stage.waypoint and not self.after.waypoint_requests and self.after.sidecars:
            where = ", ".join(self.stage.namespaces)
            return [f"no request reported by a waypoint in {where} after the stage, while sidecars served "
                    f"{count_text(sum(self.after.sidecars.values()))}: the waypoint is not in the path (its Gateway "
                    "not programmed, or istio.io/use-waypoint not honoured)",
                    "  → " + "; ".join(f"istioctl waypoint status -n {ns}" for ns in self.stage.namespaces)
                    + ", then verify again"]
        if not self.stage.switched or not self.after.sidecars:
            return []
        pods = [f"{w} (pod {pod}: {count_text(n)})" if pod else f"{w} ({count_text(n)})"
                for (w, pod), n in sorted(self.after.sidecars.items())]
        namespaces = sorted({w.split("/", 1)[0] for w, _pod in self.after.sidecars})
        return [f"still served by sidecars after the switch (pods not restarted, so not carried by ztunnel): "
                f"{', '.join(pods)}",
                "  → restart them (" + "; ".join(f"kubectl rollout restart deployment -n {ns}" for ns in namespaces)
                + ", or their StatefulSets/DaemonSets), then verify again"]

    def to_json(self) -> dict[str, Any]:
        return {"namespaces": list(self.stage.namespaces), "switched": self.stage.switched,
                "on_sidecars": [f"{w} {pod}".strip() for w, pod in sorted(self.after.sidecars)],
                "denied_after": [f"{a} → {b}" for a, b in sorted(self.after.denied)]}


def switch(tel: Telemetry, stage: AmbientStage, before: tuple[float, float], after: tuple[float, float]) -> Switch:
    return Switch(stage, carried(tel, stage.namespaces, *before), carried(tel, stage.namespaces, *after))
