"""VirtualService rules that can never match (istioctl's schema validation of VirtualServices, IST0130/IST0131):
a rule whose every match an earlier rule already takes, a second rule without matches, and a match that repeats or
is covered by an earlier URI prefix match. Envoy takes the first rule that matches, so these rules route nothing."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from analysis.base import Context, check
from analysis.catalog import text
from cluster.inventory import Inventory
from cluster.model import KubeObject, Ref
from cluster.queries import istio_objects, per_inventory

_UNREACHABLE = "unreachable"
_INEFFECTIVE = "ineffective"


def _significant(value: Any) -> Any:
    """A match without its unset fields (false, 0, empty), so that `port: 0` and no port compare equal."""
    if isinstance(value, dict):
        out = {k: _significant(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, False, 0, "", {}, [])}
    if isinstance(value, list):
        return [_significant(v) for v in value]
    return value


def _key(match: Any, http: bool) -> str:
    """What a match selects, as a comparable string; an HTTP match's name does not change what it selects."""
    m = dict(match) if isinstance(match, dict) else match
    if http and isinstance(m, dict):
        m.pop("name", None)
    return json.dumps(_significant(m), sort_keys=True)


def _rule_name(route: dict[str, Any], n: int, http: bool) -> str:
    return json.dumps(route["name"]) if http and route.get("name") else f"#{n}"


def _match_name(match: Any, n: int, http: bool) -> str:
    return json.dumps(match["name"]) if http and isinstance(match, dict) and match.get("name") else f"#{n}"


def _string_match(sm: Any) -> str:
    """An exact or prefix StringMatch as `exact:v` / `prefix:v`; anything else (regex, none) as empty."""
    sm = sm or {}
    if sm.get("exact"):
        return f"exact:{sm['exact']}"
    if sm.get("prefix"):
        return f"prefix:{sm['prefix']}"
    return ""


@dataclass(frozen=True)
class _PrefixMatch:
    """An HTTP match on a URI prefix, with the other conditions it carries (as istiod compares them)."""

    rule: str
    match: str
    prefix: str
    port: Any
    method: str
    authority: str
    headers: dict[str, str]
    query: dict[str, str]
    without_headers: dict[str, str]

    def covers(self, later: _PrefixMatch) -> bool:
        """Whether every request `later` matches is taken by this (earlier) match."""
        if not later.prefix.startswith(self.prefix) or later.port != self.port:
            return False
        if not _value_covers(self.method, later.method) or not _value_covers(self.authority, later.authority):
            return False
        return all(_map_covers(a, b) for a, b in ((self.headers, later.headers), (self.query, later.query),
                                                   (self.without_headers, later.without_headers)))


def _value_covers(a: str, b: str) -> bool:
    return a == b or a.startswith(b)


def _map_covers(a: dict[str, str], b: dict[str, str]) -> bool:
    return len(a) == len(b) and all(k in b and _value_covers(v, b[k]) for k, v in a.items())


def _prefix_match(match: dict[str, Any], rule: str, name: str) -> _PrefixMatch | None:
    prefix = ((match.get("uri") or {}).get("prefix")) or ""
    if not prefix:
        return None
    strings = lambda field: {k: _string_match(v) for k, v in (match.get(field) or {}).items()}
    # A match without a method is compared as a GET.
    return _PrefixMatch(rule, name, prefix, match.get("port") or 0, _string_match(match.get("method")) or "exact:GET",
                        _string_match(match.get("authority")), strings("headers"), strings("queryParams"),
                        strings("withoutHeaders"))


def unreachable_rules(routes: list[Any], http: bool) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(unreachable, (rule, reason)) and (ineffective, (rule, match, earlier rule)) for one list of routes."""
    seen: dict[str, int] = {}
    last_without_match = -1
    prefixes: list[_PrefixMatch] = []
    for n, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        name = _rule_name(route, n, http)
        matches = route.get("match") or []
        if not matches:
            if last_without_match >= 0:
                yield _UNREACHABLE, (name, "only the last rule can have no matches")
            last_without_match = n
            continue
        duplicates = 0
        for mn, match in enumerate(matches):
            key = _key(match, http)
            if key in seen:
                yield _INEFFECTIVE, (name, _match_name(match, mn, http), _rule_name(routes[seen[key]], seen[key], http))
                duplicates += 1
                continue
            seen[key] = n
            if http and isinstance(match, dict):
                pm = _prefix_match(match, name, _match_name(match, mn, http))
                if pm is not None:
                    prefixes.append(pm)
        if duplicates == len(matches):
            yield _UNREACHABLE, (name, "all matches used by prior rules")
    # URI prefixes an earlier, shorter prefix with the same other conditions already takes (equal prefixes are
    # duplicates, reported above).
    for i, earlier in enumerate(prefixes):
        for later in prefixes[i + 1:]:
            if later.prefix != earlier.prefix and earlier.covers(later):
                yield _INEFFECTIVE, (later.rule, f"{later.match} of prefix {later.prefix}",
                                     f"{earlier.match} of prefix {earlier.prefix} on {earlier.rule}")


def _findings(vs: KubeObject) -> Iterator[tuple[str, tuple[str, ...]]]:
    s = vs.spec
    for field in ("http", "tcp", "tls"):
        yield from unreachable_rules(list(s.get(field) or ()), http=field == "http")


def _all_findings(inv: Inventory) -> list[tuple[KubeObject, str, tuple[str, ...]]]:
    """(VirtualService, unreachable|ineffective, details) of every VirtualService, found once per inventory for
    both checks."""
    return per_inventory(inv, "route-match-findings", lambda inv: [
        (vs, what, about) for vs in istio_objects(inv, "VirtualService") for what, about in _findings(vs)])


@check("IST0130", "Remove the rule or give it a match no earlier rule has: routes are tried in order and the first "
       "match wins, so this rule never receives traffic (only the last rule may have no match).",
       reads=("VirtualService",))
def unreachable_rule(ctx: Context) -> Iterator[tuple[Ref, str]]:
    for vs, what, about in _all_findings(ctx.inventory):
        if what == _UNREACHABLE:
            rule, reason = about
            yield vs.ref, text("IST0130", rule, reason)


@check("IST0131", "Remove the match, or move the more specific rule before the one that already takes its requests (a "
       "longer URI prefix must come before a shorter one).",
       reads=("VirtualService",))
def ineffective_match(ctx: Context) -> Iterator[tuple[Ref, str]]:
    for vs, what, about in _all_findings(ctx.inventory):
        if what == _INEFFECTIVE:
            rule, match, earlier = about
            yield vs.ref, text("IST0131", rule, match, earlier)
