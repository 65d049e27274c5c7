"""Checks and their messages. A check is a small function with a declared identity (code, name, level, hint),
registered by being defined in a module of this package (one module per check family).

Where istioctl analyze has the same finding, the check uses its IST code, level and resource naming; meshstep's
own readiness checks use MST codes from `catalog.py`."""
from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from planner.errors import MeshstepError
from planner.model import Ref

if TYPE_CHECKING:
    from planner.inventory import Inventory
    from planner.telemetry import Traffic

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


@dataclass(frozen=True)
class Context:
    """What a check runs on: the inventory, and for stage gates the scope (`mesh` or a namespace), params and the
    traffic observed (`planner.telemetry.Traffic`; None when no telemetry was read)."""

    inventory: Inventory
    scope: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    traffic: Traffic | None = None


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

    def run(self, ctx: Context) -> Iterator[Message]:
        for found in self.fn(ctx):
            ref, text, *hint = found
            yield Message(self.code, self.level, ref, text, hint[0] if hint else self.hint)


_REGISTRY: dict[str, Check] = {}
# The same checks by function, for a module that reuses another's check (its identity, its findings) without
# loading the whole package while it is itself being imported.
_BY_FN: dict[CheckFn, Check] = {}


def check(code: str, name: str, level: str, hint: str, gates: tuple[str, ...] = (),
          family: str | None = None) -> Callable[[CheckFn], CheckFn]:
    """Register the decorated function as a check; its family is `family`, else its module's name."""
    if level not in LEVELS:
        raise ValueError(f"{code}: level must be one of {LEVELS}")

    def register(fn: CheckFn) -> CheckFn:
        fam = family or fn.__module__.rsplit(".", 1)[-1]
        key = f"{code}:{fam}:{fn.__module__}.{fn.__qualname__}"
        _REGISTRY[key] = _BY_FN[fn] = Check(code, name, level, fam, hint, fn, gates)
        return fn

    return register


def registry() -> list[Check]:
    """Every check, loading each module of the package once."""
    from planner import analysis

    for mod in pkgutil.iter_modules(analysis.__path__):
        if mod.name != "base":
            importlib.import_module(f"{analysis.__name__}.{mod.name}")
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


def run(checks: Iterable[Check], ctx: Context) -> list[Message]:
    """Messages of the given checks, in a stable order (level, code, resource)."""
    out = [m for c in checks for m in c.run(ctx)]
    return sorted(out, key=lambda m: (LEVELS.index(m.level), m.code, str(m.ref), m.message))


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
