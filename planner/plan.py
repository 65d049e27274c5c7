"""Staged adoption plans: one feature at a time, gated, verified, reversible.

This module is pure: it turns a template and an inventory into stages, evaluates a stage's entry gate and exit
check, and says which lifecycle transition is allowed. Persisting plans and recording who did what is
`state.planning`'s job."""
from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from features.base import Rendered, apply, dependency_met, flagged, object_key, observe, registry
from planner.analysis import base as analysis
from planner.analysis.common import SYSTEM_NAMESPACES
from planner.errors import MeshstepError
from planner.inventory import Inventory
from planner.model import Ref

# Lifecycle: planned → ready (gate passes) → applied → verified (exit check) → done; or → rolled_back.
IN_FLIGHT = ("ready", "applied", "verified")


@dataclass(frozen=True)
class Step:
    """One feature turned on in one scope (`mesh` or a namespace) with its parameters."""

    feature: str
    scope: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"feature": self.feature, "scope": self.scope, "params": dict(self.params)}


@dataclass(frozen=True)
class StageSpec:
    title: str
    goal: str  # the problem it solves, in the team's words
    steps: tuple[Step, ...]
    # Stages recognised as already on when the plan is made start as done.
    done: bool = False


@dataclass(frozen=True)
class _Blueprint:
    title: str
    goal: str
    features: tuple[str, ...]
    # mesh: one step at mesh scope; each: one stage per namespace; all: one stage, one step per namespace.
    spread: str


_INSTALL = _Blueprint("Verify the Istio install",
                      "Is the control plane healthy, so that every later failure is ours and not the install's?",
                      (), "mesh")
_INJECT = _Blueprint("Inject sidecars into {ns}",
                     "Put {ns}'s workloads in the mesh without changing how they talk to each other.",
                     ("sidecar-injection",), "each")
_INGRESS = _Blueprint("Enter through the ingress gateway",
                      "One controlled entry point for traffic from outside the cluster.", ("ingress-gateway",), "all")
_ROUTING = _Blueprint("Route requests by version",
                      "Decide which version of a service serves requests, independently of deployments.",
                      ("request-routing",), "all")
_RELEASE = _Blueprint("Release with canaries and blue/green",
                      "Deploy is not release: send testers, then a share of users, to a new version before everyone.",
                      ("traffic-shifting",), "all")
_OBSERVE = _Blueprint("See the traffic: metrics, traces, access logs",
                      "Know what calls what, how fast and how often it fails, inside and out of the cluster.",
                      ("metrics", "tracing", "access-logging"), "mesh")
_RESILIENCE = _Blueprint("Resilience: timeouts, retries, circuit breaking",
                         "Stop one slow or failing service from taking its callers down.",
                         ("timeouts-retries", "circuit-breaking"), "all")
_EGRESS = _Blueprint("Make calls out of the cluster visible",
                     "See and time the external APIs the workloads call.", ("egress-service-entry",), "all")
_PERMISSIVE = _Blueprint("mTLS PERMISSIVE mesh-wide",
                         "Encrypt mesh traffic where both sides can, while plaintext callers keep working.",
                         ("mtls-permissive",), "mesh")
_STRICT_NS = _Blueprint("mTLS STRICT in {ns}",
                        "Only mutually authenticated, encrypted traffic reaches {ns}.", ("mtls-strict",), "each")
_STRICT_MESH = _Blueprint("mTLS STRICT mesh-wide", "No plaintext anywhere in the mesh.", ("mtls-strict",), "mesh")
_AUTHZ = _Blueprint("Authorization in {ns}",
                    "Deny by default in {ns}; allow only the callers each service expects.",
                    ("authorization-policy",), "each")
_LOCKDOWN = _Blueprint("Lock down egress",
                       "Only registered external hosts can be reached from the mesh.", ("egress-registry-only",),
                       "mesh")

# Istio's canary upgrade, one revision to the next: revision-install, revision-label, gateway-revision, default-tag and
# single-revision (features/, reading the cluster through planner.revisions).
_UPGRADE = (
    _Blueprint("Install the new revision", "Run the new release's istiod beside the old one, serving nobody yet.",
               ("revision-install",), "mesh"),
    _Blueprint("Move {ns} to the new revision",
               "{ns} runs the new release: relabelled, restarted, every proxy verified on it.", ("revision-label",),
               "each"),
    _Blueprint("Move the gateways to the new revision", "Traffic enters the mesh through the new release.",
               ("gateway-revision",), "mesh"),
    _Blueprint("Point the default tag at the new revision",
               "New and istio-injection=enabled namespaces get the new release.", ("default-tag",), "mesh"),
    _Blueprint("Remove the old revision", "One release to run and patch again.", ("single-revision",), "mesh"),
)

# Ambient mode (istio.io's getting-started path): ztunnel gives every pod of a namespace mTLS and L4 policy the
# moment it is labelled; a waypoint is added only where L7 is needed, and routes are HTTPRoutes (the traffic
# features' default api in an ambient namespace).
_AMBIENT_INSTALL = _Blueprint("Install and verify ztunnel and istio-cni",
                              "Are ztunnel on every node and istio-cni running, so that a namespace moved to ambient "
                              "is carried, not cut off?", ("ambient-install",), "mesh")
_AMBIENT_NS = _Blueprint("Move {ns} to ambient mode",
                         "{ns}'s pods join the mesh without sidecars: ztunnel gives them mutual TLS (HBONE, port "
                         "15008) and L4 telemetry at once, with no restart of theirs needed for L4.",
                         ("ambient-mode",), "each")
_WAYPOINT_NS = _Blueprint("Deploy a waypoint for {ns}",
                          "An L7 proxy for {ns}'s services, where routing, retries and L7 authorization run.",
                          ("waypoint",), "each")
_AMBIENT_ROUTING = _Blueprint("Route requests by version with HTTPRoutes",
                              "Decide which version of a service serves requests, at its waypoint.",
                              ("request-routing",), "all")
_AMBIENT_RELEASE = _Blueprint("Release with weighted HTTPRoutes",
                              "Send testers, then a share of users, to a new version through weighted backendRefs.",
                              ("traffic-shifting",), "all")
_SIDECAR_TO_AMBIENT = (
    _Blueprint("Deploy a waypoint for {ns} before it leaves sidecars",
               "{ns}'s VirtualServices, DestinationRules and L7 policies keep applying once its sidecars are gone: "
               "the waypoint serves them first.", ("waypoint",), "each"),
    _Blueprint("Switch {ns} to ambient mode",
               "Relabel {ns} (istio.io/dataplane-mode=ambient, the injection label removed), restart its sidecar "
               "workloads without sidecars, and verify ztunnel carries them.", ("ambient-mode",), "each"),
)

TEMPLATES: dict[str, tuple[_Blueprint, ...]] = {
    "routing-first": (_INSTALL, _INJECT, _INGRESS, _ROUTING, _RELEASE, _OBSERVE, _RESILIENCE, _EGRESS,
                      _PERMISSIVE, _STRICT_NS, _STRICT_MESH, _AUTHZ, _LOCKDOWN),
    "security-first": (_INSTALL, _INJECT, _PERMISSIVE, _STRICT_NS, _STRICT_MESH, _AUTHZ, _OBSERVE, _INGRESS,
                       _ROUTING, _RELEASE, _RESILIENCE, _EGRESS, _LOCKDOWN),
    "upgrade": _UPGRADE,
    "ambient-first": (_AMBIENT_INSTALL, _AMBIENT_NS, _OBSERVE, _WAYPOINT_NS, _AMBIENT_ROUTING, _AMBIENT_RELEASE,
                      _STRICT_NS, _AUTHZ),
    "sidecar-to-ambient": (_AMBIENT_INSTALL, *_SIDECAR_TO_AMBIENT),
    "custom": (),
}


def default_namespaces(inventory: Inventory) -> list[str]:
    """Namespaces with workloads that a team would adopt: not Kubernetes' own, not the control plane's."""
    control = {c.namespace for c in inventory.components if c.plane in ("control", "addon")}
    control |= {inventory.root_namespace}
    return [n for n in inventory.namespace_names()
            if n not in SYSTEM_NAMESPACES and n not in control and inventory.pods_by_namespace.get(n)]


def new_plan(template: str, inventory: Inventory, namespaces: Iterable[str] | None = None) -> list[StageSpec]:
    """The stages of a template for these namespaces, from what the inventory shows.

    A step whose feature cannot be rendered here (e.g. no service with two versions for a canary), or whose objects
    analysis would flag, is left out; stages already on (every step detected) are marked done. The candidate steps'
    objects are analysed together, once: one analysis per step took a minute on 5,000 pods."""
    if template not in TEMPLATES:
        raise MeshstepError(f"unknown template {template!r}: choose one of {', '.join(TEMPLATES)}")
    targets = list(namespaces) if namespaces is not None else default_namespaces(inventory)
    known = set(inventory.namespace_names())
    unknown = [n for n in targets if n not in known]
    if unknown:
        raise MeshstepError(f"namespace(s) not in the cluster: {', '.join(unknown)}")
    feats = registry()
    observed = observed_steps(inventory)
    groups_of: list[tuple[_Blueprint, str | None, list[Step]]] = []
    for bp in TEMPLATES[template]:
        if bp.spread == "each":
            groups = [(ns, [Step(f, ns) for f in bp.features]) for ns in targets]
        elif bp.spread == "all":
            groups = [(None, [Step(f, ns) for f in bp.features for ns in targets])]
        else:
            groups = [(None, [Step(f, "mesh") for f in bp.features])]
        groups_of += [(bp, ns, steps) for ns, steps in groups]
    candidates: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _, _, steps in groups_of:
        for s in steps:
            if (s.feature, s.scope) not in observed and (s.feature, s.scope) not in candidates:
                with contextlib.suppress(MeshstepError):  # not for this cluster: the step is left out
                    candidates[s.feature, s.scope] = feats[s.feature].candidate(s.params, s.scope, inventory)[1]
    blamed = {(m.ref.kind, m.ref.namespace, m.ref.name)
              for m in flagged([o for objs in candidates.values() for o in objs], inventory)}
    stages: list[StageSpec] = []
    for bp, ns, steps in groups_of:
        steps = [s for s in steps if (s.feature, s.scope) in observed
                 or (s.feature, s.scope) in candidates
                 and not any(object_key(o) in blamed for o in candidates[s.feature, s.scope])]
        if bp.features and not steps:
            continue
        title, goal = bp.title.format(ns=ns), bp.goal.format(ns=ns)
        done = bool(steps) and all((s.feature, s.scope) in observed for s in steps)
        stages.append(StageSpec(title, goal, tuple(steps), done))
    check_order(stages, inventory, observed)
    return stages


def observed_steps(inventory: Inventory) -> set[tuple[str, str]]:
    """(feature, scope) pairs that detection finds on in the inventory, operations' steps included."""
    return {(o.feature, o.scope) for o in observe(inventory, registry())}


def check_order(stages: list[StageSpec], inventory: Inventory, observed: set[tuple[str, str]] | None = None) -> None:
    """Raise when a stage comes before a feature it depends on (unless that is already on in the cluster;
    `observed`: what is, when the caller has it)."""
    feats = registry()
    observed = observed_steps(inventory) if observed is None else observed
    before: set[tuple[str, str]] = set()
    for i, stage in enumerate(stages, 1):
        for step in stage.steps:
            for dep in feats[step.feature].depends_on:
                if not dependency_met(dep, step.scope, before | observed):
                    raise MeshstepError(
                        f"stage {i} ({stage.title}) turns on {step.feature} in {step.scope}, which depends on {dep}: "
                        f"add a stage for {dep} in {step.scope} (or mesh-wide) before it")
        before |= {(s.feature, s.scope) for s in stage.steps}


# ---------------------------------------------------------------- gate, config, exit check


@dataclass(frozen=True)
class GateResult:
    messages: tuple[analysis.Message, ...]

    @property
    def passed(self) -> bool:
        return not any(m.level == "error" for m in self.messages)


def install_messages(inventory: Inventory) -> list[analysis.Message]:
    """The install stage's gate: Istio's CRDs and a ready istiod."""
    out = []
    root = Ref("Namespace", None, inventory.root_namespace)
    if not inventory.istio_installed:
        out.append(analysis.catalog_message("MST0001", root, "no Istio CRDs and no istiod"))
    for r in inventory.revisions:
        if r.istiod_pods and not r.ready_pods:
            out.append(analysis.catalog_message("MST0002", Ref("Namespace", None, r.namespace),
                                                f"istiod revision {r.revision}: none of its {r.istiod_pods} pods is "
                                                f"ready", namespace=r.namespace))
    return out


def gate(stage: StageSpec, inventory: Inventory, traffic: Any = None) -> GateResult:
    """The entry gate: each step's feature checks (readiness analysis and, given `traffic`, what telemetry
    observed included); errors block."""
    feats = registry()
    msgs: list[analysis.Message] = install_messages(inventory) if not stage.steps else []
    for step in stage.steps:
        msgs.extend(feats[step.feature].checks(inventory, step.scope, step.params, traffic))
    unique = {(m.code, str(m.ref), m.message): m for m in msgs}
    return GateResult(tuple(sorted(unique.values(),
                                   key=lambda m: (analysis.LEVELS.index(m.level), m.code, str(m.ref)))))


@dataclass(frozen=True)
class StageConfig:
    apply_yaml: str
    rollback_yaml: str
    notes: tuple[str, ...]  # commands to run (label patches) and reminders (restart the pods)


def config(stage: StageSpec, inventory: Inventory) -> StageConfig:
    """The YAML to apply for a stage, and the YAML of its rollback. Each step is rendered on the cluster as the
    steps before it leave it, so that steps sharing an object (metrics, tracing and access logs in one Telemetry)
    extend it instead of overwriting each other; an object is written once, as the last step leaves it."""
    feats = registry()
    applied: list[Rendered] = []
    rolled: list[Rendered] = []
    notes: list[str] = []
    now = inventory
    for step in stage.steps:
        f = feats[step.feature]
        r = f.render(step.params, step.scope, now)
        applied.append(r)
        notes.extend(r.notes)
        now = apply(r, now)
        rolled.append(f.rollback(step.params, step.scope, inventory))
    return StageConfig(_once(applied, last=True), _once(rolled, last=False), tuple(notes))


def _once(rendered: list[Rendered], last: bool) -> str:
    """The renderings' YAML with each object (and each deletion) once: the last version of an object applied in
    turn, or the first of a rollback (all restore the object as it is now)."""
    seen: set[Any] = set()
    kept: list[Rendered] = []
    for r in (reversed(rendered) if last else rendered):
        objects = tuple(o for o in r.objects if object_key(o) not in seen)
        delete = tuple(d for d in r.delete if d not in seen)
        seen |= {object_key(o) for o in objects} | set(delete)
        kept.append(replace(r, objects=objects, delete=delete))
    return "".join(r.yaml for r in (reversed(kept) if last else kept) if r.objects or r.delete or r.notes)


def error_keys(inventory: Inventory) -> set[str]:
    """Identities of the analysis errors in an inventory, to tell new errors from old ones."""
    msgs = analysis.run(analysis.analyze_checks(), analysis.Context(inventory))
    return {f"{m.code} {m.ref}" for m in msgs if m.level == "error"}


@dataclass(frozen=True)
class ExitResult:
    missing: tuple[Step, ...]  # steps detection does not show on
    new_errors: tuple[str, ...]  # analysis errors that were not there before the stage

    @property
    def passed(self) -> bool:
        return not self.missing and not self.new_errors


def exit_check(stage: StageSpec, inventory: Inventory, baseline_errors: Iterable[str]) -> ExitResult:
    """Verified means: detection shows every step on, and analysis has no errors that were not there before."""
    if not stage.steps:
        return ExitResult((), tuple(m.message for m in install_messages(inventory)))
    observed = observed_steps(inventory)
    missing = tuple(s for s in stage.steps if (s.feature, s.scope) not in observed)
    return ExitResult(missing, tuple(sorted(error_keys(inventory) - set(baseline_errors))))
