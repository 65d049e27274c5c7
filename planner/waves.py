"""Waves: on a large cluster, a namespace-scoped feature is turned on over batches of namespaces instead of one
stage per namespace. A pilot wave goes first, chosen for low risk with the reasons said (few pods, little traffic,
no callers from outside the mesh), then batches of growing size (by default 1 → 10% → 30% → the rest), each one a
stage whose gate, YAML, verification and rollback cover all of its namespaces.

A namespace is in the same wave for every feature of a plan, and the waves go in order of risk, so that what a
feature needs in a namespace (its injection before its STRICT mTLS) is turned on by an earlier stage of the same
wave's namespaces."""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

from analysis.callers import calls
from cluster.errors import MeshstepError
from cluster.inventory import Inventory

DEFAULT = "1,10%,30%,rest"
# A plan over more namespaces than this goes in waves unless told otherwise (`--waves off`): below it, one stage per
# namespace is a plan a team can read, and the small clusters' plans stay as they were.
WAVES_ABOVE = 10
OFF = ("off", "none")


def sizes(spec: str, total: int) -> list[int]:
    """The wave sizes a spec gives for `total` namespaces: each item a count (`5`), a share of all the namespaces
    (`10%`, rounded up) or `rest` (the last item only); the last size repeats until every namespace is in a wave."""
    items = [s.strip().lower() for s in spec.split(",") if s.strip()]
    if not items:
        raise MeshstepError(f"--waves {spec!r}: give wave sizes such as {DEFAULT} (or `off`)")
    out: list[int] = []
    for i, item in enumerate(items):
        if item == "rest":
            if i != len(items) - 1:
                raise MeshstepError(f"--waves {spec!r}: `rest` can only be the last wave")
            out.append(total)
            continue
        try:
            n = math.ceil(float(item[:-1]) * total / 100) if item.endswith("%") else int(item)
        except ValueError:
            raise MeshstepError(f"--waves {spec!r}: {item!r} is not a count, a share (10%) or `rest`") from None
        if n < 1:
            raise MeshstepError(f"--waves {spec!r}: every wave needs at least one namespace ({item!r} has none)")
        out.append(n)
    taken, cut = 0, []
    for n in out + [out[-1]] * total:  # the last size repeats
        if taken >= total:
            break
        cut.append(min(n, total - taken))
        taken += cut[-1]
    return cut


@dataclass(frozen=True)
class Risk:
    """What makes a namespace risky to change first: its pods, its traffic, its callers from outside the mesh."""

    namespace: str
    pods: int
    outside: tuple[str, ...]  # callers from outside the mesh meshstep has evidence of (config, or traffic)
    traffic: float | None  # requests and connections into it in the telemetry's window; None: no telemetry

    @property
    def order(self) -> tuple[Any, ...]:
        return (len(self.outside), self.traffic or 0.0, self.pods, self.namespace)


def risks(inventory: Inventory, namespaces: Sequence[str], traffic: Any = None) -> list[Risk]:
    """Each namespace's risk, least risky first. Callers from outside the mesh: from config, a workload without a
    sidecar (in another namespace) or an ingress (a gateway's route, a Kubernetes Ingress) naming one of its
    services; from `traffic` (telemetry.edges.Traffic), a caller the destination's sidecar could not name."""
    outside: dict[str, set[str]] = {n: set() for n in namespaces}
    for c in calls(inventory):
        ns = c.service.namespace if c.service is not None else None
        if ns in outside and (c.end_user or (not c.meshed and c.namespace != ns)):
            outside[ns].add(f"{c.caller} ({c.evidence})")
    load: Counter[str] = Counter()
    if traffic is not None:
        for e in traffic.into(namespaces):
            load[e.destination.namespace] += e.count
        for e in traffic.edges:
            if not e.source.known and e.destination.namespace in outside:
                outside[e.destination.namespace].add(f"{e.caller} (telemetry)")
    out = [Risk(n, len(inventory.pods_by_namespace.get(n, ())), tuple(sorted(outside[n])),
                load[n] if traffic is not None else None) for n in namespaces]
    return sorted(out, key=lambda r: r.order)


@dataclass(frozen=True)
class Waves:
    """A plan's waves: the spec they were cut by, the namespaces of each (the pilot first), and why the pilot."""

    spec: str
    groups: tuple[tuple[str, ...], ...]
    pilot_reasons: tuple[str, ...]

    def name(self, i: int) -> str:
        """Wave `i` (0-based) as people call it: the pilot wave, wave 2 of 4, …"""
        return "pilot wave" if i == 0 else f"wave {i + 1} of {len(self.groups)}"

    def label(self, i: int) -> str:
        """How a stage names wave `i` (0-based) in its title and goal."""
        if i == 0 and len(self.groups[0]) == 1:
            return f"the pilot namespace {self.groups[0][0]}"
        return f"{self.name(i)} ({len(self.groups[i])} namespaces)"

    def index(self, namespaces: Sequence[str]) -> int | None:
        """The wave a stage over `namespaces` goes in (all of them in one wave); None for a stage over no namespace
        (mesh-wide) or over namespaces of several waves (a stage added by hand)."""
        wanted = set(namespaces)
        return next((i for i, g in enumerate(self.groups) if wanted and wanted <= set(g)), None)

    def to_json(self) -> dict[str, Any]:
        return {"spec": self.spec, "waves": [list(g) for g in self.groups], "pilot_reasons": list(self.pilot_reasons)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Waves:
        """A plan's waves as the store keeps them (to_json)."""
        return cls(data["spec"], tuple(tuple(g) for g in data["waves"]), tuple(data["pilot_reasons"]))


def cut(inventory: Inventory, namespaces: Sequence[str], spec: str | None, traffic: Any = None) -> Waves | None:
    """The waves of a plan over `namespaces`: None (one stage per namespace) for `off`, or, by default, for a plan
    over WAVES_ABOVE namespaces or fewer."""
    if spec is not None and spec.strip().lower() in OFF:
        return None
    if spec is None and len(namespaces) <= WAVES_ABOVE:
        return None
    spec = spec or DEFAULT
    ranked = risks(inventory, namespaces, traffic)
    groups, at = [], 0
    for n in sizes(spec, len(ranked)):
        groups.append(tuple(r.namespace for r in ranked[at:at + n]))
        at += n
    pilot = [r for r in ranked if r.namespace in groups[0]]
    return Waves(spec, tuple(groups), tuple(_reasons(pilot, ranked, traffic is not None)))


def _reasons(pilot: list[Risk], ranked: list[Risk], has_traffic: bool) -> list[str]:
    """Why the pilot wave is the least risky, each reason with the figure it compares."""
    typical = median(r.pods for r in ranked)
    pods = sum(r.pods for r in pilot)
    out = [f"{pods} pod(s) in {len(pilot)} namespace(s) (the median namespace has {typical:g})"]
    outside = [c for r in pilot for c in r.outside]
    if not outside:
        out.append("no caller from outside the mesh that meshstep has evidence of (ingress routes, Ingresses, "
                   "workloads without a sidecar" + (", unnamed callers in telemetry)" if has_traffic else ")"))
    else:
        out.append(f"{len(outside)} caller(s) from outside the mesh (every namespace has some): "
                   + "; ".join(outside[:3]) + (" …" if len(outside) > 3 else ""))
    if has_traffic:
        load = sum(r.traffic or 0.0 for r in pilot)
        out.append(f"{load:g} request(s) and connection(s) into it in the telemetry's window (median namespace: "
                   f"{median(r.traffic or 0.0 for r in ranked):g})")
    else:
        out.append("traffic not weighed: no telemetry given (--telemetry FILE or --prometheus URL)")
    return out
