"""The feature: meshstep's unit of adoption and its feature flag. One module per feature in this package; a
module registers its feature by defining a `Feature` subclass instance named `FEATURE`.

A feature explains itself (problem, pitfalls, docs), gates itself (checks), renders the objects that turn it on
for one scope of one cluster, rolls them back, and detects where it is really on. What it renders is validated
by features.validation."""
from __future__ import annotations

import difflib
import importlib
import json
import pkgutil
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml

from analysis.base import (
    Context,
    Message,
    Outcome,
    analyze_checks,
    catalog_message,
    execute,
    findings_of,
    gate_checks,
    ordered,
)
from analysis.catalog import fill
from analysis.effective import OFF, ON, Effective, unknown_kind
from analysis.findings import line
from cluster.changes import clean, ref_of
from cluster.errors import MeshstepError
from cluster.inventory import Inventory, gc_paused, reading
from cluster.kubectl_apply import merge_patch, stored, with_removals
from cluster.model import Ref
from cluster.owners import FIELD_MANAGER, taken
from cluster.queries import per_inventory
from features.validation import validate_object

CATEGORIES = ("install", "traffic", "observability", "security")
MESH = "mesh"


@dataclass(frozen=True)
class Param:
    name: str
    type: type  # str, int, float or bool
    default: Any
    help: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None  # a regular expression the whole (string) value must match, e.g. a duration

    def parse(self, feature: str, raw: Any) -> Any:
        """The value of a --set (a string, or JSON-read already), checked; a MeshstepError names what is wrong."""
        try:
            # JSON-read values (flags, the app) are not coerced blindly: 2.5 is not an int, 1 is not a bool, and
            # a string parameter given `true` or `10` means the text as written, not Python's str(True)
            if isinstance(raw, (list, dict)) or isinstance(raw, bool) and self.type in (int, float):
                raise ValueError(raw)
            if self.type is int and isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            if self.type is bool and not isinstance(raw, (bool, str)):
                raise ValueError(raw)
            if self.type is str and not isinstance(raw, str):
                raw = json.dumps(raw)
            if self.type is bool and isinstance(raw, str):
                if raw.lower() not in ("true", "false", "yes", "no", "1", "0"):
                    raise ValueError(raw)
                value: Any = raw.lower() in ("true", "yes", "1")
            else:
                value = self.type(raw)
        except (TypeError, ValueError):
            raise MeshstepError(
                f"{feature}: {self.name}={raw!r} is not a valid {self.type.__name__} ({self.help})") from None
        if self.choices and value not in self.choices:
            raise MeshstepError(f"{feature}: {self.name}={value!r}: choose one of {', '.join(map(str, self.choices))}")
        if self.pattern and not re.fullmatch(self.pattern, str(value)):
            raise MeshstepError(f"{feature}: {self.name}={value!r} is not valid ({self.help})")
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            raise MeshstepError(f"{feature}: {self.name}={value!r} must be between {self.minimum} and {self.maximum}")
        return value

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type.__name__, "default": self.default, "help": self.help,
                "choices": list(self.choices)}


@dataclass(frozen=True)
class Observation:
    """Where a feature is really on, with the objects that show it and the params read back from them."""

    feature: str
    scope: str
    evidence: list[str]
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"feature": self.feature, "scope": self.scope, "evidence": self.evidence, "params": self.params}


@dataclass(frozen=True)
class Gate(Outcome):
    """A feature's gate for one scope: what its checks gave (its unmet dependencies and the fields others own among
    the findings), and whether its rendering has objects, whose field owners MST0008 looked at."""

    renders_objects: bool = False


@dataclass(frozen=True)
class Rendered:
    """What to apply for one feature in one scope (or, for a rollback, what to apply and delete)."""

    feature: str
    scope: str
    params: dict[str, Any]
    objects: tuple[dict[str, Any], ...]
    delete: tuple[Ref, ...] = ()
    notes: tuple[str, ...] = ()  # shell lines that go with the objects: commands, and reminders as `# ` comments
    rollback: bool = False

    @property
    def yaml(self) -> str:
        """Multi-document YAML, in a stable order, each object headed by what produced it."""
        what = "rollback of " if self.rollback else ""
        params = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items())) or "defaults"
        docs = ["".join(comment(n.removeprefix("#").removeprefix(" ")) for n in self.notes)] if self.notes else []
        for obj in self.objects:
            docs.append(comment(f"meshstep: {what}{self.feature}, scope {self.scope}, params: {params}")
                        + yaml.safe_dump(obj, sort_keys=False, default_flow_style=False))
        for ref in self.delete:
            ns = f" -n {ref.namespace}" if ref.namespace else ""
            docs.append(comment(f"delete {ref} (meshstep: {what}{self.feature}, scope {self.scope})")
                        + comment(f"kubectl delete {ref.kind.lower()} {ref.name}{ns}"))
        return "---\n".join(docs)


# What ends a line in YAML (PyYAML reads YAML 1.1: NEL and the Unicode line and paragraph separators too).
_LINE_BREAK = re.compile("[\r\n\x85\u2028\u2029]")


def comment(text: str) -> str:
    """`text` as one YAML comment line. A line break in it (a cluster's value quoted in a note: a label a command
    sets, an object's name) is written as its escape: else the comment would end there and the rest be read as
    YAML, objects a value wrote into what people apply."""
    return "# " + _LINE_BREAK.sub(lambda m: m.group().encode("unicode_escape").decode(), text) + "\n"


# A deletion in a rendering's YAML is a comment, not a document: `# delete Kind [namespace/]name (meshstep: …)`
# and the kubectl command. `# meshstep:` heads an object, and only an object. (Before 2026-11-30 a deletion was
# headed `# meshstep: …: delete Kind [namespace/]name`: plans stored then keep that YAML.)
DELETION = re.compile(r"^# delete (\S+) (?:([^\s/]+)/)?(\S+) \(meshstep: .*\)$"
                      r"|^# meshstep: .*: delete (\S+) (?:([^\s/]+)/)?(\S+)$", re.MULTILINE)


def deletions_of(text: str) -> list[Ref]:
    """The objects a rendering's YAML deletes."""
    return [Ref(m[0] or m[3], (m[1] or m[4]) or None, m[2] or m[5]) for m in DELETION.findall(text)]


def beyond_deletions(text: str) -> bool:
    """Whether a rendering's YAML holds anything but deletions: an object, a note."""
    return any(line.strip() not in ("", "---") and not DELETION.match(line) and not line.startswith("# kubectl delete ")
               for line in text.splitlines())


class Feature:
    """Base of every feature; subclasses set the class attributes and implement `build` and `detect`."""

    id: str
    title: str
    category: str
    problem: str  # the question a team answers before turning it on
    depends_on: tuple[str, ...] = ()
    # Dependencies it meets for the features after it, besides its own id: a waypoint is an ambient namespace's L7
    # proxy as the sidecars are a sidecar namespace's, so routing that depends on sidecar-injection may follow it.
    provides: tuple[str, ...] = ()
    params: tuple[Param, ...] = ()
    scopes: tuple[str, ...] = (MESH, "namespace")
    pitfalls: tuple[str, ...] = ()
    docs: str = ""
    # A step of an operation (a canary upgrade's relabel, tag move, removal) rather than a feature that stays on:
    # a plan verifies it by detection, but status, drift and the flag matrix do not list it as on.
    operation: bool = False
    # What the feature is there to change, as paths of features.invariants.facts (shell patterns): every other
    # field of an object it extends must come out of the rendering as it went in.
    owns: tuple[str, ...] = ()
    # Whether the feature moves who enforces and routes (sidecar, ztunnel, waypoint) without changing what is
    # enforced: then no request may be decided otherwise, and no L7 route be left unapplied, once it is on
    # (features.invariants, MST0816). Features there to change decisions or routes (authorization, routing) are not.
    keeps_decisions: bool = False
    # in_effect answers from the resolver (analysis.effective), not from detection: the behaviour can be in effect
    # with no object of the feature's own (Istio's default PERMISSIVE, a STRICT inherited from the root namespace).
    resolved: bool = False

    # ---------------------------------------------------------------- to implement

    def build(self, p: dict[str, Any], scope: str, inv: Inventory) -> list[dict[str, Any]]:
        """The objects that turn the feature on in `scope`; MeshstepError when the cluster cannot have it."""
        raise NotImplementedError

    def detect(self, inv: Inventory) -> list[Observation]:
        raise NotImplementedError

    def in_effect(self, inv: Inventory, scope: str) -> Effective:
        """Whether what the feature brings is in effect for `scope` (in that namespace or mesh-wide; for the mesh,
        anywhere in it), and why: by detection, unknown where the source cannot show a kind detection reads.
        Features whose behaviour Istio has by default answer from the resolver (analysis.effective) instead."""
        with reading() as kinds:  # the kinds detection really reads, not a list kept beside it
            seen = [o for o in self.detect(inv) if scope == MESH or o.scope in (scope, MESH)]
        if seen:
            return Effective(self.id, scope, ON, f"on from {', '.join(seen[0].evidence)}")
        for kind in sorted(kinds | set(_UNDERLYING)):
            u = unknown_kind(inv, kind)
            if u is not None:
                return Effective(self.id, scope, None, f"unknown: {u}; check with `{u.check}`")
        return Effective(self.id, scope, OFF, f"off: nothing turns it on in {scope}")

    def notes(self, p: dict[str, Any], scope: str, inv: Inventory, rollback: bool) -> list[str]:
        """Shell lines that go with the objects: commands to run, reminders as `# ` comments."""
        return []

    def restarted_pods(self, p: dict[str, Any], scope: str, inv: Inventory) -> list[dict[str, Any]]:
        """The pods that the notes' `kubectl rollout restart` lines bring back, as they come back on `inv` (the
        cluster with the objects applied): an overlay runs no controllers, so a rehearsal applies these too."""
        return []

    def removes(self, p: dict[str, Any], scope: str, inv: Inventory) -> list[Ref]:
        """The objects the rendering deletes (an object replaced by one of another kind); what undoes it is
        `restores`."""
        return []

    def restores(self, p: dict[str, Any], scope: str, inv: Inventory) -> list[dict[str, Any]]:
        """What the rollback brings back of the objects `removes` deleted, as they were: read on `inv`, the cluster
        with the rendering applied, from the objects that stand for them."""
        return []

    def commanded(self, p: dict[str, Any], scope: str, inv: Inventory) -> list[dict[str, Any]]:
        """The objects that the notes' install commands (`helm install`, `kubectl apply -f URL`) create or change,
        as they are on `inv` once the commands ran: an overlay runs no commands, so a rehearsal applies these, and a
        new plan renders the steps after this one on a cluster that has them."""
        return []

    # ---------------------------------------------------------------- shared behaviour

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def check_scope(self, scope: str, inv: Inventory) -> None:
        if scope == MESH:
            if MESH not in self.scopes:
                raise MeshstepError(f"{self.id} is turned on per namespace: pass --scope NAMESPACE")
        else:
            if "namespace" not in self.scopes:
                raise MeshstepError(f"{self.id} is mesh-wide only: pass --scope mesh")
            if scope not in inv.namespace_names():
                raise MeshstepError(f"{self.id}: namespace {scope!r} is not in the cluster "
                                    f"(namespaces: {', '.join(inv.namespace_names())})")
            if scope == inv.root_namespace:  # its selector-less config governs every namespace
                raise MeshstepError(f"{self.id}: {scope} is Istio's root namespace, where config applies to the "
                                    "whole mesh: " + ("pass --scope mesh" if MESH in self.scopes
                                                      else "turn it on per application namespace"))

    def candidate(self, params: dict[str, Any], scope: str, inv: Inventory) -> tuple[dict[str, Any], list[dict]]:
        """The checked parameters and the schema-validated objects, before analysis is asked about them (render
        asks it for one feature; a new plan asks it once for all its candidate steps). Each object that changes
        carries what undoes the change (see `recorded`)."""
        p = validate_params(self, params)
        self.check_scope(scope, inv)
        objects = [recorded(self.id, o, inv) for o in self.build(p, scope, inv)]
        for obj in objects:
            validate_object(obj, inv)
        return p, objects

    def validate(self, params: dict[str, Any], scope: str, inv: Inventory) -> dict[str, Any]:
        """The checked parameters, refused (MeshstepError) as `render` refuses them: unknown or bad values, a scope
        the feature does not take or the cluster lacks, a service that is not there, a combination that cannot
        render. What `flags set` records is what `render` would accept."""
        return self.candidate(params, scope, inv)[0]

    def render(self, params: dict[str, Any], scope: str, inv: Inventory, check: bool = True) -> Rendered:
        """Validated objects that turn the feature on; refused with the reason when analysis would flag them
        (unless not `check`: the caller analyses several renderings together, with refuse_together)."""
        p, objects = self.candidate(params, scope, inv)
        if check:
            refuse_errors(self.id, objects, inv)
        return Rendered(self.id, scope, _shown(p), written(objects, inv), tuple(self.removes(p, scope, inv)),
                        notes=tuple(self.notes(p, scope, inv, False)))

    def rollback(self, params: dict[str, Any], scope: str, inv: Inventory) -> Rendered:
        """What undoes `render`, on the cluster before it is applied or after: every object the feature changed
        is restored from the record it carries (`recorded`), every object it created is deleted. Applied to the
        cluster with the feature on, it gives back the objects as they were, byte for byte once normalised."""
        p = validate_params(self, params)
        self.check_scope(scope, inv)
        try:
            built = [recorded(self.id, o, inv) for o in self.build(p, scope, inv)]
        except MeshstepError:
            built = []  # the cluster moved on so that it no longer renders: its records still say what to undo
        # on the cluster with the feature applied, the rendering is the cluster's own objects: no overlay needed
        changed = [o for o in built if (c := inv.get(*object_key(o))) is None or clean(c.raw) != o]
        removed = self.removes(p, scope, inv) if built else []
        after = overlay(inv, changed, removed) if changed or removed else inv
        key = ROLLBACK + self.id
        refs = dict.fromkeys([ref_of(o) for o in built] + [
            o.ref for o in recorded_objects(after, target_namespace(scope, inv), scope) if key in o.annotations])
        restore, delete = [], []
        for ref in refs:
            current = after.get(ref.kind, ref.namespace, ref.name)
            record = current.annotations.get(key) if current is not None else None
            if record is None:
                continue  # left as it was
            if record == CREATED:
                delete.append(ref)
            else:
                restore.append(merge_patch(without_record(clean(current.raw), key), json.loads(record)))
        back = [o for o in self.restores(p, scope, after) if after.get(*object_key(o)) is None]
        return Rendered(self.id, scope, _shown(p), written(restore, after) + tuple(back), tuple(delete),
                        tuple(self.notes(p, scope, inv, True)), rollback=True)

    def gate(self, inv: Inventory, scope: str, params: dict[str, Any], traffic: Any = None) -> Gate:
        """The gate: the readiness checks that gate this feature (those whose kinds the source could not show
        skipped, and said so), its dependencies on in this scope (or mesh-wide), and the owners of the fields its
        rendering changes (MST0008). The feature is rendered once for all of them."""
        try:
            built = self.build(validate_params(self, params), scope, inv)
        except MeshstepError:
            built = None  # it cannot render here: the rendering says why; no change to look after, nothing owned
        ctx = Context(inv, scope, dict(params), traffic,  # the overlay built once, for every check that asks
                      after=None if built is None else cache(lambda: inv.with_changes(apply=built)))
        out = execute(gate_checks(self.id), ctx)
        return Gate((*self._unmet_dependencies(inv, scope), *out.findings, *owned_elsewhere(self.id, built or (), inv)),
                    out.ran, out.skipped, bool(built))

    def checks(self, inv: Inventory, scope: str, params: dict[str, Any], traffic: Any = None) -> list[Message]:
        """The gate's messages: its findings, and the checks it skipped and why."""
        return self.gate(inv, scope, params, traffic).messages

    def _unmet_dependencies(self, inv: Inventory, scope: str) -> list[Message]:
        """MST0003 for each dependency whose behaviour is not in effect here; MST0006 for one that cannot be seen."""
        where = Ref("Namespace", None, scope) if scope != MESH else Ref("Mesh", None, "mesh")
        ns = inv.namespaces.get(scope)
        msgs = []
        for dep in self.depends_on:
            state = dependency_state(dep, scope, inv)
            if state.value == ON:
                continue
            if not state.known:  # neither passed nor refused in silence: said, and rendered
                msgs.append(catalog_message(
                    "MST0006", where, f"{self.id} depends on {dep}, and whether it is in effect in {scope} is "
                    f"{state.why}", dependency=dep, scope=scope, check=state.why.rpartition("check with ")[2]))
                continue
            # in an ambient namespace what stands in for the sidecars (a waypoint) is the fix, not sidecars
            fix = next(iter(providers([dep])), dep) if ns is not None and ns.injection == "ambient" else dep
            msgs.append(catalog_message(
                "MST0003", where, f"{self.id} depends on {dep}, which is not on in {scope}"
                + "".join(f" (nor {alt}, which stands in for it)" for alt in providers([dep]))
                + (f": {state.why}" if state.by else ""), dependency=fix, scope=scope))
        return msgs

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "category": self.category, "problem": self.problem,
                "depends_on": list(self.depends_on), "scopes": list(self.scopes),
                "params": [p.to_json() for p in self.params], "pitfalls": list(self.pitfalls), "docs": self.docs}


class Refused(MeshstepError):
    """A rendering the gate or the invariants refuse: the findings, and the YAML that was refused (None when the
    feature could not render at all)."""

    def __init__(self, feature: str, scope: str, findings: list[Message], rendered: Rendered | None,
                 reason: str = "") -> None:
        self.feature, self.scope, self.findings, self.rendered, self.reason = feature, scope, findings, rendered, reason
        super().__init__(f"{feature} cannot be turned on in {scope}: "
                         + "; ".join([*map(line, findings), *[reason][:bool(reason)]]))


# ---------------------------------------------------------------- changes are merges, and say how to undo them

# rollback.meshstep.io/<feature>: on every object a feature changed, what undoes the change — "created", or the
# JSON merge patch (RFC 7386) that turns the object back into what it was. The record travels with the object (as
# kubectl's last-applied-configuration does), so the rollback is exact even once the change is applied.
ROLLBACK = "rollback.meshstep.io/"
CREATED = "created"


def merge_diff(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that turns `new` back into `old`."""
    patch: dict[str, Any] = {k: None for k in new if k not in old}
    for k, v in old.items():
        if k not in new:
            patch[k] = v
        elif isinstance(v, dict) and isinstance(new[k], dict):  # an empty map too: its new keys are removed
            sub = merge_diff(new[k], v)
            if sub:
                patch[k] = sub
        elif new[k] != v:
            patch[k] = v
    return patch


def without_record(o: dict[str, Any], key: str) -> dict[str, Any]:
    """The object without one feature's rollback record (and without an annotations map left empty by that)."""
    notes = (o.get("metadata") or {}).get("annotations") or {}
    if key not in notes:
        return o
    rest = {k: v for k, v in notes.items() if k != key}
    meta = {k: v for k, v in o["metadata"].items() if k != "annotations"} | ({"annotations": rest} if rest else {})
    return o | {"metadata": meta}


def recorded(feature: str, new: dict[str, Any], inv: Inventory) -> dict[str, Any]:
    """`new` (a feature's built object) with the record of what undoes it: relative to the object as it was before
    this feature first changed it, so that rendering again on the changed cluster keeps the first record. An
    object the rendering leaves as it is comes back as it is."""
    key = ROLLBACK + feature
    new = without_record(clean(new), key)
    current = inv.get(*object_key(new))
    if current is not None:
        now = clean(current.raw)
        if without_record(now, key) == new:  # equal dicts: equal normalised YAML
            return now
        record = now["metadata"].get("annotations", {}).get(key)
        if record is None:
            original: dict[str, Any] | None = now
        elif record == CREATED:
            original = None
        else:
            original = merge_patch(without_record(now, key), json.loads(record))
    else:
        original = None
    value = CREATED if original is None else json.dumps(merge_diff(new, original), sort_keys=True,
                                                         separators=(",", ":"))
    meta = new["metadata"]
    return new | {"metadata": meta | {"annotations": {**(meta.get("annotations") or {}), key: value}}}


def recorded_objects(inv: Inventory, namespace: str, scope: str) -> Iterable[Any]:
    """The objects of a scope that may carry rollback records: those of its namespace, and the Namespace itself."""
    for objs in inv.objects.values():
        for o in objs:
            if o.namespace == namespace or o.kind == "Namespace" and o.name == scope:
                if any(k.startswith(ROLLBACK) for k in o.annotations):
                    yield o


def _shown(p: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in p.items() if v not in (None, "")}


@gc_paused()
def observe(inv: Inventory, features: Iterable[str] | None = None) -> list[Observation]:
    """Where each feature (of `features`, default every one that stays on: no operation's step) is on in the
    inventory, by detection."""
    feats = registry().values()
    wanted = set(features) if features is not None else {f.id for f in feats if not f.operation}
    return [o for f in feats if f.id in wanted for o in f.detect(inv)]


# Kinds every detection leans on, through the inventory's indexes rather than of_kind: unreadable, no feature's
# absence can be told.
_UNDERLYING = ("Pod", "Namespace")


def unknown_features(inv: Inventory) -> dict[str, str]:
    """Feature id → why it cannot be told off anywhere in the mesh: its in_effect at mesh scope, unknown. Empty when
    the source showed everything."""
    if not inv.visibility.unreadable():
        return {}
    states = {f.id: f.in_effect(inv, MESH) for f in registry().values()}
    return {fid: state.why for fid, state in states.items() if not state.known}


def in_effect_steps(inv: Inventory, steps: Iterable[tuple[str, str]] = ()) -> set[tuple[str, str]]:
    """The (feature, scope) pairs on in the inventory: what detection finds, and those of `steps` whose features
    answer from the resolver (Feature.resolved) and find their behaviour in effect, whatever made it so."""
    feats = registry()
    found = {(o.feature, o.scope) for o in observe(inv, feats)}
    return found | {(f, s) for f, s in set(steps) - found
                    if feats[f].resolved and feats[f].in_effect(inv, s).value == ON}


def dependency_state(dep: str, scope: str, inv: Inventory) -> Effective:
    """Whether the behaviour `dep` brings is in effect for a feature in `scope`, whatever made it so (a feature
    that provides it, or Istio's own default): on if any of them is, else unknown if any is, else off."""
    feats = registry()
    states = [feats[f].in_effect(inv, scope) for f in (dep, *providers([dep]))]
    return next((s for s in states if s.value == ON), None) or next((s for s in states if not s.known), states[0])


def dependency_gap(dep: str, scope: str, on: set[tuple[str, str]], inv: Inventory | None = None) -> Effective | None:
    """None when `dep` is on for a feature in `scope`, given the (feature, scope) pairs a plan turns on before it
    (in that namespace or mesh-wide; for a mesh-wide feature, anywhere in the mesh) or, given the cluster, in effect
    there (dependency_state); else what is in effect instead: off, or unknown with the reason."""
    met = {dep, *providers([dep])}
    if scope == MESH and any(f in met for f, _ in on):
        return None
    if scope != MESH and any((f, MESH) in on or (f, scope) in on for f in met):
        return None
    if inv is None:
        return Effective(dep, scope, OFF, f"off: no earlier stage turns on {dep}")
    state = dependency_state(dep, scope, inv)
    return None if state.value == ON else state


def unmet(feature: str, scope: str, on: set[tuple[str, str]], inv: Inventory | None = None) -> list[str]:
    """The dependencies of `feature` in `scope` that are off: neither `on` nor the cluster meets them. One whose
    state is unknown is not among them: the feature's gate says so (MST0006) when it runs."""
    return [d for d in registry()[feature].depends_on
            if (gap := dependency_gap(d, scope, on, inv)) is not None and gap.known]


def providers(deps: Iterable[str]) -> list[str]:
    """The features that provide one of `deps` for the features after them (Feature.provides)."""
    wanted = set(deps)
    return [f.id for f in registry().values() if wanted & set(f.provides)]


# The modules of this package that make the framework rather than a feature.
FRAMEWORK = ("base", "invariants", "validation")


@cache
def registry() -> dict[str, Feature]:
    """Every feature, by id: each module of this package defines FEATURE (helpers are named `_…`, the framework's
    own modules are FRAMEWORK); a module that defines none is an error, not a feature silently missing."""
    import features

    found = {}
    for mod in pkgutil.iter_modules(features.__path__):
        if mod.name.startswith("_") or mod.name in FRAMEWORK:
            continue
        feature = getattr(importlib.import_module(f"features.{mod.name}"), "FEATURE", None)
        if not isinstance(feature, Feature):
            raise RuntimeError(f"features/{mod.name}.py defines no FEATURE = SomeFeature(): a feature module "
                               f"registers one (a helper module's name starts with _)")
        if feature.category not in CATEGORIES:
            raise ValueError(f"feature {feature.id}: category must be one of {CATEGORIES}")
        found[feature.id] = feature
    return dict(sorted(found.items()))


def get(feature_id: str) -> Feature:
    """The feature, or an error that suggests the closest ids."""
    feats = registry()
    if feature_id in feats:
        return feats[feature_id]
    close = difflib.get_close_matches(feature_id, list(feats), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}?" if close else "see `meshstep features`"
    raise MeshstepError(f"unknown feature {feature_id!r}: {hint}")


def validate_params(feature: Feature, raw: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with `raw`, each value checked; unknown keys are errors that list the known ones."""
    known = {p.name: p for p in feature.params}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise MeshstepError(f"{feature.id}: unknown parameter(s) {', '.join(unknown)}; it takes: "
                            f"{', '.join(known) or 'no parameters'}")
    return feature.defaults() | {k: known[k].parse(feature.id, v) for k, v in raw.items() if v is not None}


def apply(rendered: Rendered, inv: Inventory) -> Inventory:
    """The inventory as it would be once `rendered` is applied (objects created or replaced, deletions done)."""
    return overlay(inv, rendered.objects, rendered.delete)


def overlay(inv: Inventory, objects: Iterable[dict[str, Any]], delete: Iterable[Ref] = ()) -> Inventory:
    """`inv.with_changes`, built once per inventory and change: the gate, the analysis of a rendering and the
    invariants all look at the same overlay."""
    objects, delete = list(objects), list(delete)
    key = json.dumps([objects, [str(r) for r in delete]], sort_keys=True, default=str)
    return per_inventory(inv, f"overlay {key}", lambda i: i.with_changes(apply=objects, delete=delete))


def analysis_errors(inv: Inventory) -> list[Message]:
    """The error-level analysis findings of an inventory, found once, and on a changed inventory only where the
    change can change them (analysis.base.findings_of). Only the checks of that level run: a check's findings all
    have its level, and what the source could not show (MST0004, MST0005) is no error."""
    checks = [c for c in analyze_checks() if c.level == "error"]
    return ordered(m for r in findings_of(checks, inv, "analysis-errors") for m in r.findings)


def written(objects: Iterable[dict[str, Any]], inv: Inventory) -> tuple[dict[str, Any], ...]:
    """The objects as a stage's YAML writes them over what `inv` has: what they remove, removed explicitly (a null),
    so that `kubectl apply` removes it whoever set it."""
    return tuple(with_removals(o, clean(c.raw)) if (c := inv.get(*object_key(o))) is not None else o
                 for o in objects)


# What MST0008 says of the fields another manager owns that a rendering changes, and of those it leaves out.
_CHANGED = ("{manager} ({operation}) owns {fields}, which {feature} changes: meshstep's server-side apply would be "
            "refused (409)")
_LEFT_OUT = ("{manager} ({operation}) owns {fields}, which {feature} leaves out: server-side apply leaves them as "
             "they are")


def owned_elsewhere(feature: str, objects: Iterable[dict[str, Any]], inv: Inventory) -> list[Message]:
    """MST0008 for each live object and field manager (but meshstep) owning fields that `objects`, written whole
    over the live ones, set to another value or leave out (cluster.owners): meshstep's server-side apply never
    forces, so the first would be refused (409) and the second left where it is."""
    msgs = []
    for o in objects:
        live = inv.get(*object_key(o))
        for t in taken(live.raw, stored(o), FIELD_MANAGER) if live is not None else ():
            said = [fill(template, manager=t.manager, operation=t.operation, fields=", ".join(fields), feature=feature)
                    for template, fields in ((_CHANGED, t.changed), (_LEFT_OUT, t.removed)) if fields]
            text = said[0] if len(said) == 1 else fill("{a}; {b}", a=said[0], b=said[1])
            msgs.append(catalog_message("MST0008", live.ref, text, manager=t.manager,
                                        fields=", ".join((*t.changed, *t.removed))))
    return msgs


def object_key(o: dict[str, Any]) -> tuple[str, str | None, str]:
    return o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]


def flagged(objects: list[dict[str, Any]], inv: Inventory) -> list[Message]:
    """The analysis errors that blame one of `objects` once they are applied to the cluster."""
    if not objects:
        return []
    mine = {object_key(o) for o in objects}
    return [m for m in analysis_errors(overlay(inv, objects)) if (m.ref.kind, m.ref.namespace, m.ref.name) in mine]


def refuse_errors(feature: str, objects: list[dict[str, Any]], inv: Inventory) -> None:
    """Refuse a rendering that the analysis flags with an error blaming one of its objects."""
    for m in flagged(objects, inv)[:1]:
        raise MeshstepError(f"{feature}: the rendered {m.ref} would be flagged by analysis: {line(m)}")


def refuse_together(rendered: list[Rendered], inv: Inventory) -> None:
    """refuse_errors for renderings applied together (a stage's steps, one per namespace of a wave): analysed once,
    on the cluster with all of them applied, instead of once per rendering; the error names the feature whose
    object it blames."""
    objects = [o for r in rendered for o in r.objects]
    for m in flagged(objects, inv)[:1]:
        key = (m.ref.kind, m.ref.namespace, m.ref.name)
        feature = next(r.feature for r in reversed(rendered) if any(object_key(o) == key for o in r.objects))
        raise MeshstepError(f"{feature}: the rendered {m.ref} would be flagged by analysis: {line(m)}")


# ---------------------------------------------------------------- helpers shared by the feature modules


def obj(inv: Inventory, group: str, kind: str, namespace: str, name: str, spec: dict[str, Any],
        labels: dict[str, str] | None = None) -> dict[str, Any]:
    """An Istio object in the API version the cluster serves, labelled as meshstep's."""
    return {"apiVersion": inv.api_version(group, kind), "kind": kind,
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "meshstep", **(labels or {})}},
            "spec": spec}


def target_namespace(scope: str, inv: Inventory) -> str:
    """Where an object for `scope` lives: the namespace, or the root namespace for mesh-wide config."""
    return inv.root_namespace if scope == MESH else scope


def scope_of(o: Any, inv: Inventory) -> str:
    """The scope an Istio config object governs: mesh for root-namespace objects without a selector."""
    if o.namespace == inv.root_namespace and not (o.spec.get("selector") or o.spec.get("workloadSelector")
                                                   or o.spec.get("targetRefs")):
        return MESH
    return o.namespace or MESH


def observations_by_scope(feature_id: str, objs: Iterable[Any], inv: Inventory,
                          scopes: Callable[[Any], Iterable[str]] | None = None) -> list[Observation]:
    """One Observation per scope that `objs` configure (each object's `scopes`, default its scope_of), with the
    objects as evidence."""
    by_scope: dict[str, list[str]] = {}
    for o in objs:
        for scope in scopes(o) if scopes is not None else [scope_of(o, inv)]:
            by_scope.setdefault(scope, []).append(str(o.ref))
    return [Observation(feature_id, scope, ev) for scope, ev in sorted(by_scope.items())]


def services_in(scope: str, inv: Inventory) -> list[Any]:
    """Services of the namespace (mesh: of every namespace with injection) that select pods."""
    names = [scope] if scope != MESH else [n for n, ns in inv.namespaces.items() if ns.injection != "none"]
    return [s for n in names for s in inv.services_by_namespace.get(n, ()) if s.selector and inv.pods_of_service(s)]


def versioned_service(scope: str, inv: Inventory, name: str | None) -> tuple[Any, list[str]]:
    """A service of the namespace whose pods run two or more `version` labels, and those versions."""
    for svc in services_in(scope, inv):
        if name and svc.name != name:
            continue
        versions = sorted({p.labels["version"] for p in inv.pods_of_service(svc) if "version" in p.labels})
        if len(versions) >= 2 or name and versions:
            return svc, versions
    what = f"service {name!r}" if name else "service"
    raise MeshstepError(f"no {what} in {scope} has pods with two `version` labels: deploy the new version "
                        "beside the old one (label pods version=v1/v2), or pass --set service=NAME")


def http_service(scope: str, inv: Inventory, name: str | None) -> Any:
    """The named service of the namespace (else its first, by name) that serves HTTP; L7 policy needs HTTP."""
    for svc in services_in(scope, inv):
        if (not name or svc.name == name) and any(p.istio_protocol in HTTP_PROTOCOLS for p in svc.ports):
            return svc
    what = f"service {name!r}" if name else "service"
    raise MeshstepError(f"no {what} in {scope} with pods and an HTTP port (name it http-*, or set appProtocol: http)")


HTTP_PROTOCOLS = ("HTTP", "HTTP2", "GRPC")
DURATION = r"\d+(\.\d+)?(ms|s|m|h)"  # as Istio's protobuf durations are written in YAML


def http_port(svc: Any) -> int:
    """The service's first port declared HTTP (see http_service): HTTP routes never go to another protocol's."""
    port = next((p for p in svc.ports if p.istio_protocol in HTTP_PROTOCOLS), None)
    if port is None:
        raise MeshstepError(f"service {svc.namespace}/{svc.name} has no port declared HTTP, HTTP2 or gRPC")
    return port.port


