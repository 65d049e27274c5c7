"""Drift: what the team recorded (flags) against what detection observes in the cluster.

Observations are duck-typed (`feature`, `scope`, `evidence`, `params`), as `features.base.Observation` has them:
state does not import features."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from state.store import Store

RECORDED_NOT_OBSERVED = "recorded on, not observed"
OBSERVED_NOT_RECORDED = "observed, not recorded"
PARAMS_DIFFER = "parameters differ"
# Recorded on, and detection could not look: a kind its evidence lives in could not be read.
UNKNOWN = "unknown"


class Observed(Protocol):
    feature: str
    scope: str
    evidence: Sequence[str]
    params: Mapping[str, Any]


class Recorded(Protocol):
    feature: str
    scope: str
    state: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Drift:
    kind: str  # one of the three kinds above
    feature: str
    scope: str
    detail: str  # one line a person can act on
    recorded: dict[str, Any] | None  # the recorded params (None: no flag on)
    observed: dict[str, Any] | None  # the observed params (None: not observed)
    evidence: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"evidence": list(self.evidence)}


def compute_drift(flags: Iterable[Recorded], observed: Iterable[Observed],
                  unknown: Mapping[str, str] | None = None) -> list[Drift]:
    """Drift of one cluster's flags against its observations. Flags on their way (enabling, disabling) drift
    neither way: either observation is expected mid-change. Only parameters the observation reports and the
    flag records are compared (defaults are the feature's business, not the store's), and a recorded empty value
    is "let the feature choose" (e.g. the default revision), so whatever the cluster shows for it matches. A
    feature in `unknown` (feature → why) that is not observed is unknown, not "recorded on, not observed"."""
    recorded = {(f.feature, f.scope): f for f in flags}
    seen: dict[tuple[str, str], Observed] = {}
    for o in observed:
        seen.setdefault((o.feature, o.scope), o)
    out = []
    for (feature, scope), f in recorded.items():
        if f.state != "on":
            continue
        o = seen.get((feature, scope))
        if o is None and unknown and feature in unknown:
            out.append(Drift(UNKNOWN, feature, scope, unknown[feature], dict(f.params), None))
            continue
        if o is None:
            out.append(Drift(RECORDED_NOT_OBSERVED, feature, scope,
                             "recorded on, but detection finds no sign of it in the cluster", dict(f.params), None))
            continue
        differ = {k: (f.params[k], v) for k, v in o.params.items()
                  if f.params.get(k) not in (None, "") and f.params[k] != v}
        if differ:
            detail = "; ".join(f"{k}: recorded {r!r}, observed {v!r}" for k, (r, v) in sorted(differ.items()))
            out.append(Drift(PARAMS_DIFFER, feature, scope, detail, dict(f.params), dict(o.params),
                             tuple(o.evidence)))
    for (feature, scope), o in seen.items():
        f = recorded.get((feature, scope))
        if f is None or f.state == "off":
            detail = "recorded off" if f else "no flag recorded for it"
            out.append(Drift(OBSERVED_NOT_RECORDED, feature, scope, f"on in the cluster, but {detail}", None,
                             dict(o.params), tuple(o.evidence)))
    return sorted(out, key=lambda d: (d.feature, d.scope, d.kind))


def recorded_and_drift(store: Store, cluster: str, observed: Iterable[Observed],
                       unknown: Mapping[str, str] | None = None) -> dict[str, list[dict]]:
    """For `meshstep status`: the cluster's recorded flags and their drift, JSON-ready."""
    flags = store.list_flags(cluster)
    return {"recorded": [f.model_dump(mode="json") for f in flags],
            "drift": [d.to_json() for d in compute_drift(flags, observed, unknown)]}
