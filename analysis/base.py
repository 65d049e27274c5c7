"""Checks and their messages. A check is a small function with a declared identity (its code, whose name and
level the catalog holds, and a hint) and the kinds it reads, registered by being defined in a module of this
package (one module per check family; MODULES lists them).

Where istioctl analyze has the same finding, the check uses its IST code, level and resource naming; meshstep's
own readiness checks use MST codes. Both come from `catalog.py`. A check whose kinds the source could not show
(refused with a 403, or not installed) is skipped, and `skipped` says which and why, as istioctl skips an
analyzer whose input kinds are missing."""
from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from analysis.catalog import CATALOG, identity
from cluster.errors import MeshstepError
from cluster.live import CORE_KINDS, CRD_KIND
from cluster.model import GATEWAY_API_GROUP, Ref

if TYPE_CHECKING:
    from cluster.inventory import Inventory
    from telemetry.edges import Traffic

LEVELS = ("error", "warning", "info")
MST_DOCS = "https://github.com/meshstep/meshstep/blob/main/docs/checks.md"


@dataclass(frozen=True)
class Message:
    code: str  # IST0101 or MST0101
    level: str  # error | warning | info
    ref: Ref  # the resource the message blames, named as istioctl names it
    message: str  # one line
    hint: str = ""  # what to do about it

    @property
    def url(self) -> str:
        if self.code.startswith("IST"):
            return f"https://istio.io/latest/docs/reference/config/analysis/{self.code.lower()}/"
        return f"{MST_DOCS}#{self.code.lower()}"

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "level": self.level, "kind": self.ref.kind, "namespace": self.ref.namespace,
                "name": self.ref.name, "message": self.message, "hint": self.hint, "url": self.url}


def catalog_message(code: str, ref: Ref, text: str, **names: str) -> Message:
    """A message of an MST code raised outside a registered check (the plan's install gate, a feature's
    dependencies): its level and hint, filled in with `names`, from the catalog."""
    entry = CATALOG[code]
    return Message(code, entry.level, ref, text, entry.hint_for(**names))


@dataclass(frozen=True)
class Context:
    """What a check runs on: the inventory, and for stage gates the scope (`mesh` or a namespace), params and the
    traffic observed (`telemetry.edges.Traffic`; None when no telemetry was read)."""

    inventory: Inventory
    scope: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    traffic: Traffic | None = None
    # For a stage's gate: the inventory as the stage's own objects will leave it, built only if a check asks.
    after: Callable[[], Inventory] | None = None


# A check function yields (resource, message text) or (resource, message text, hint overriding the default).
CheckFn = Callable[[Context], Iterable[tuple[Ref, str] | tuple[Ref, str, str]]]


@dataclass(frozen=True)
class Check:
    code: str
    name: str  # istioctl's message name (e.g. NamespaceNotInjected) or meshstep's own
    level: str
    family: str  # the module (injection, service, …, readiness)
    hint: str
    fn: CheckFn = field(repr=False, compare=False)
    # Feature ids whose stage gate this check belongs to; a gate check runs only for a stage, never in `analyze`.
    gates: tuple[str, ...] = ()
    # The kinds whose objects the check reads (Pod, Namespace, VirtualService, …): without them it would report
    # what it cannot see as missing, so it is skipped when the source could not show one.
    reads: tuple[str, ...] = ()

    @property
    def sees_uninstalled(self) -> bool:
        """Whether it runs where an API it reads is not installed. A gate check does: no objects of the kind is
        what it needs to know ("no ServiceEntry registers this host"); an `analyze` check is skipped, as istioctl
        skips an analyzer whose input kinds are missing."""
        return bool(self.gates)

    def run(self, ctx: Context) -> Iterator[Message]:
        for found in self.fn(ctx):
            ref, text, *hint = found
            yield Message(self.code, self.level, ref, text, hint[0] if hint else self.hint)


_REGISTRY: dict[str, Check] = {}
# The same checks by function, for a module that reuses another's check (its identity, its findings) without
# loading the whole package while it is itself being imported.
_BY_FN: dict[CheckFn, Check] = {}


def check(code: str, hint: str | None = None, *, reads: tuple[str, ...], gates: tuple[str, ...] | None = None,
          family: str | None = None) -> Callable[[CheckFn], CheckFn]:
    """Register the decorated function as the check of `code` (its name and level from the catalog) that reads
    the kinds `reads`. An IST check gives its own hint; an MST check's hint and gates default to its catalog
    entry's. Its family is `family`, else its module's name."""
    name, level = identity(code)
    if level not in LEVELS:
        raise ValueError(f"{code}: level must be one of {LEVELS}")
    entry = CATALOG.get(code)
    hint = hint if hint is not None else entry.generic_hint if entry else None
    if not hint:
        raise ValueError(f"{code}: an IST check says what to do about its finding: give it a hint")
    gates = gates if gates is not None else entry.gates if entry else ()

    def register(fn: CheckFn) -> CheckFn:
        # its family: the module of this package it is in, a subpackage's modules (readiness/…) sharing its name
        inner = fn.__module__.removeprefix(f"{__package__}.")
        fam = family or (inner.split(".")[0] if inner != fn.__module__ else inner.rsplit(".", 1)[-1])
        key = f"{code}:{fam}:{fn.__module__}.{fn.__qualname__}"
        _REGISTRY[key] = _BY_FN[fn] = Check(code, name, level, fam, hint, fn, gates, tuple(reads))
        return fn

    return register


# The check families, listed here so that a module added to the package is registered on purpose, and one that
# registers nothing is an error rather than silently missing checks.
MODULES = ("ambient", "annotations", "authn", "authz", "callers", "conditions", "deployment", "deprecation",
           "destinationrule", "envoyfilter", "externalcontrolplane", "gateway", "injection", "k8sgateway",
           "multicluster", "readiness", "routematches", "service", "serviceentry", "sidecar", "telemetry", "traffic",
           "upgrade", "virtualservice", "webhook")
# Modules of the package that hold no checks.
SUPPORT_MODULES = ("base", "catalog", "common", "effective", "enforcement", "findings", "istio_messages",
                   "kubernetes_support")


def registry() -> list[Check]:
    """Every check, loading each family module of the package once; a module that is neither listed in MODULES
    nor SUPPORT_MODULES, or a family that registers no check, is an error."""
    import analysis

    present = {m.name for m in pkgutil.iter_modules(analysis.__path__)}
    unlisted = present - set(MODULES) - set(SUPPORT_MODULES)
    if unlisted:
        raise RuntimeError(f"analysis: module(s) {', '.join(sorted(unlisted))} not listed: add a family "
                           f"module to base.MODULES, a helper module to base.SUPPORT_MODULES")
    for name in MODULES:
        importlib.import_module(f"{analysis.__name__}.{name}")
    families = {c.family for c in _REGISTRY.values()}
    empty = [m for m in MODULES if m not in families]
    if empty:
        raise RuntimeError(f"analysis: family module(s) {', '.join(empty)} register no check")
    return sorted(_REGISTRY.values(), key=lambda c: (c.code, c.family, c.name))


def registered(fn: CheckFn) -> Check:
    """The Check that `check()` registered for a function of an imported module."""
    return _BY_FN[fn]


def analyze_checks() -> list[Check]:
    """The checks `analyze` runs: every check that gates no stage."""
    return [c for c in registry() if not c.gates]


def gate_checks(feature: str) -> list[Check]:
    """The readiness checks that gate enabling `feature`."""
    return [c for c in registry() if feature in c.gates]


def ordered(messages: Iterable[Message]) -> list[Message]:
    return sorted(messages, key=lambda m: (LEVELS.index(m.level), m.code, str(m.ref), m.message))


# ---------------------------------------------------------------- kinds the source could not show

# Gateway API kinds the checks read; every other custom kind they name is Istio's (Gateway included).
GATEWAY_API_KINDS = frozenset({"GatewayClass", "HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute", "ReferenceGrant"})
_LISTED = {k.kind: k.label for k in (*CORE_KINDS, CRD_KIND)}


@dataclass(frozen=True)
class Unseen:
    """What the source could not show, as it names it: a resource it refused to list (`pods`,
    `virtualservices.networking.istio.io`), or an API that is not installed (`istio`, `gateway-api`)."""

    what: str
    unreadable: bool  # its objects are unknown (the list was refused, or failed); else not installed: there are none
    refused: bool = True  # an unreadable kind's list was refused (403), rather than left unanswered

    @property
    def reason(self) -> str:
        if not self.unreadable:
            return f"{self.what} is not installed"
        return f"listing {self.what} " + ("was refused (403 Forbidden)" if self.refused else "failed")

    @property
    def ref(self) -> Ref:
        if self.unreadable:
            return Ref("APIResource", None, self.what)
        return Ref("APIGroup", None, GATEWAY_API_GROUP if self.what == "gateway-api" else "istio.io")


def unseen_kind(inv: Inventory) -> Callable[[str], Unseen | None]:
    """For a kind name, what kept the source from showing its objects (None: they are all there)."""
    vis = inv.visibility
    unreadable = vis.unreadable()

    def why(kind: str) -> Unseen | None:
        if kind in unreadable:
            return Unseen(unreadable[kind].resource, True, unreadable[kind].forbidden)
        if kind in _LISTED:
            return None
        api = "gateway-api" if kind in GATEWAY_API_KINDS else "istio"
        return Unseen(api, False) if api in vis.not_installed else None

    return why


class Reads(Protocol):
    """Anything that declares the kinds it reads: a check, an invariant (features/invariants.py)."""

    @property
    def reads(self) -> tuple[str, ...]: ...

    @property
    def sees_uninstalled(self) -> bool: ...


R = TypeVar("R", bound=Reads)


def runnable(checks: Iterable[R], inv: Inventory) -> tuple[list[R], dict[Unseen, list[R]]]:
    """The checks whose kinds the source showed, and the others by what the source could not show (a check that
    lacks several kinds is listed under each)."""
    why = unseen_kind(inv)
    ok: list[R] = []
    skipped: dict[Unseen, list[R]] = {}
    for c in checks:
        missing = {u for u in map(why, c.reads) if u is not None and (u.unreadable or not c.sees_uninstalled)}
        if not missing:
            ok.append(c)
        for u in sorted(missing, key=lambda u: u.what):
            skipped.setdefault(u, []).append(c)
    return ok, skipped


def skipped_messages(skipped: dict[Unseen, list[Check]]) -> list[Message]:
    """One message per thing the source could not show (MST0004 refused, MST0005 not installed), naming the
    checks skipped for it."""
    out = []
    for u, checks in skipped.items():
        families: dict[str, list[str]] = {}
        for c in checks:
            families.setdefault(c.code, []).append(c.family)
        listed = ", ".join(f"{code} ({', '.join(sorted(set(fams)))})" for code, fams in sorted(families.items()))
        out.append(unseen_message(u, f"{len(checks)} check{'s' * (len(checks) != 1)} skipped: {listed}"))
    return out


def unseen_message(u: Unseen, skipped: str) -> Message:
    """What the source could not show and what was skipped for it (`skipped`), as MST0004 (refused) or MST0005 (not
    installed), its hint saying how to check."""
    if u.unreadable:
        code, text = "MST0004", f"{u.reason.replace(u.what, 'it', 1)}: {skipped}"
        hint = CATALOG[code].hint_for(resource=u.what)
    else:
        code, text = "MST0005", f"not installed: {skipped}"
        hint = CATALOG[code].hint_for(api=u.what, group=u.ref.name)
    return Message(code, identity(code)[1], u.ref, text, hint)


@dataclass(frozen=True)
class Outcome:
    """What running checks gave: the findings of those that ran, which ran, and which were skipped for each thing
    the source could not show."""

    findings: tuple[Message, ...]
    ran: tuple[Check, ...]
    skipped: tuple[tuple[Unseen, tuple[Check, ...]], ...]

    @property
    def messages(self) -> list[Message]:
        """The findings, and one message per thing the source could not show naming what it kept from running
        (MST0004, MST0005), in the stable order."""
        return ordered([*self.findings, *skipped_messages(dict(self.skipped))])


def execute(checks: Iterable[Check], ctx: Context) -> Outcome:
    """The one way checks run (`analyze`, stage gates, invariants, the app): each check whose kinds the source
    showed, on `ctx`; the others skipped, never run on what the source could not show."""
    ok, skipped = runnable(checks, ctx.inventory)
    return Outcome(tuple(m for c in ok for m in c.run(ctx)), tuple(ok),
                   tuple((u, tuple(cs)) for u, cs in skipped.items()))


def run(checks: Iterable[Check], ctx: Context) -> list[Message]:
    """`execute`'s messages: findings, and what was skipped and why."""
    return execute(checks, ctx).messages


# ---------------------------------------------------------------- incremental: a changed cluster


@dataclass(frozen=True)
class Ran:
    """What a check found on an inventory, and what of it the check read (cluster.inventory.FACETS)."""

    check: Check
    findings: tuple[Message, ...]
    read: frozenset[str]
    again: bool  # run on this inventory; else its findings are those of the inventory it was made from


def findings_of(checks: Sequence[Check], inv: Inventory, name: str) -> tuple[Ran, ...]:
    """Each of `checks` whose kinds the source showed, run on `inv` (with no scope: as `analyze` runs them), found
    once per inventory as `name`. On an inventory made from another by a change (Inventory.with_changes), a check
    that read nothing the change changed is not run again: its findings are the other's, which it would find again
    (a stage's overlay is analysed for what its few objects change, not as a whole cluster again)."""
    from cluster.inventory import Traced, changed_since, untraced
    from cluster.queries import per_inventory

    def traced(check: Check, i: Inventory) -> Ran:
        tracer = Traced(i)
        found = tuple(check.run(Context(tracer)))  # type: ignore[arg-type]  # it reads as an Inventory does
        return Ran(check, found, tracer.reads(), True)

    def build(i: Inventory) -> tuple[Ran, ...]:
        i = untraced(i)
        ok, _ = runnable(checks, i)
        since = changed_since(i)
        if since is None or "visibility" in since[1]:
            return tuple(traced(c, i) for c in ok)
        was = {id(r.check): r for r in findings_of(checks, since[0], name)}
        return tuple(replace(r, again=False) if (r := was.get(id(c))) and not (r.read & since[1] or "*" in r.read)
                     else traced(c, i) for c in ok)

    return per_inventory(inv, name, build)


# ---------------------------------------------------------------- suppression (as istioctl analyze does it)

SUPPRESS_ANNOTATION = "galley.istio.io/analyze-suppress"


@dataclass(frozen=True)
class Suppression:
    """`--suppress "CODE=Kind name"`: code and resource are shell-style patterns (`IST01*`, `Pod *.staging`)."""

    code: str
    resource: str

    @classmethod
    def parse(cls, text: str) -> Suppression:
        code, sep, resource = text.partition("=")
        if not sep or not code.strip() or " " not in resource.strip():
            raise MeshstepError(f"--suppress {text!r}: expected CODE=Kind name, e.g. \"IST0102=Namespace default\" "
                                f"(wildcards allowed: \"IST0107=Pod *.staging\")")
        return cls(code.strip(), resource.strip())

    def matches(self, m: Message) -> bool:
        if not fnmatch.fnmatchcase(m.code, self.code):
            return False
        # istioctl names a resource `Kind name.namespace`; meshstep prints `Kind namespace/name`: accept both.
        names = {str(m.ref)}
        if m.ref.namespace:
            names.add(f"{m.ref.kind} {m.ref.name}.{m.ref.namespace}")
        return any(fnmatch.fnmatchcase(n, self.resource) for n in names)


def suppress(messages: Iterable[Message], rules: Iterable[Suppression] = (),
             annotations_of: Callable[[Ref], dict[str, str]] | None = None) -> list[Message]:
    """Messages that neither a --suppress rule nor the blamed resource's analyze-suppress annotation silences.
    The annotation lists codes separated by commas, or `*` for all."""
    rules = list(rules)
    kept = []
    for m in messages:
        if any(r.matches(m) for r in rules):
            continue
        codes = {c.strip() for c in (annotations_of(m.ref) if annotations_of else {}).get(SUPPRESS_ANNOTATION, "")
                 .split(",")}
        if m.code in codes or "*" in codes:
            continue
        kept.append(m)
    return kept
