"""Staged adoption plans: one feature at a time, gated, verified, reversible.

This module is pure: it turns a template and an inventory into stages, and evaluates a stage's entry gate and exit
check. Keeping plans and moving their stages is `planner.stages`' and `planner.moves`' job, as the lifecycle table
(`planner.lifecycle`) says."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from analysis.ambient import needs_waypoint
from analysis.base import (
    LEVELS,
    Message,
    Unseen,
    catalog_message,
    unseen_kind,
    unseen_message,
)
from analysis.catalog import Filled, fill
from cluster import istio_releases, revisions
from cluster.errors import MeshstepError
from cluster.files import YAML_LOADER
from cluster.inventory import Inventory
from cluster.live import CRD_KIND
from cluster.model import Ref, Revision
from cluster.owners import shown
from cluster.queries import SYSTEM_NAMESPACES
from cluster.versions import release
from features.base import (
    Rendered,
    analysis_errors,
    apply,
    deletions_of,
    flagged,
    in_effect_steps,
    object_key,
    refuse_together,
    registry,
    unmet,
    validate_params,
)
from planner.waves import Waves
from planner.waves import cut as waves_of


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
class LeftOut:
    """A step (or a whole stage) a new plan leaves out, and why: said to the user, never dropped silently."""

    stage: str
    feature: str
    scope: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        """As a plan keeps it: the reason's template and values apart too, where it was filled from one."""
        parts = {"reason_parts": self.reason.to_json()} if isinstance(self.reason, Filled) else {}
        return {"stage": self.stage, "feature": self.feature, "scope": self.scope, "reason": self.reason} | parts

    @staticmethod
    def reason_of(kept: Mapping[str, Any]) -> str:
        """The reason of a step a plan keeps as left out (to_json), Filled again where it was filled."""
        return Filled.of(kept["reason"], kept.get("reason_parts"))

    def __str__(self) -> str:
        return f"{self.stage}: {self.feature} in {self.scope} left out: {self.reason}"


@dataclass(frozen=True)
class Draft:
    """A new plan's stages, what it left out with the reason, and its waves (None: one stage per namespace)."""

    stages: list[StageSpec]
    left_out: list[LeftOut]
    waves: Waves | None = None


@dataclass(frozen=True)
class _Blueprint:
    title: str
    goal: str
    features: tuple[str, ...]
    # mesh: one step at mesh scope; each: one stage per namespace (per wave, on a plan in waves); all: one stage,
    # one step per namespace.
    spread: str
    # where not every scope is one it is for: given the source, a scope and the steps on there by then (in the
    # cluster, or turned on by an earlier stage), whether to plan its steps there
    only_where: Callable[[Inventory, str, set[tuple[str, str]]], bool] | None = None


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
# single-revision (features/, reading the cluster through cluster.revisions).
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

# The Gateway API CRDs, which waypoints and ambient routes are written in: the first step of both of istio.io's
# ambient paths (getting started installs them after Istio, the migration guide before you begin); the gate is an
# Istio with ambient GA (MST0709) and nodes on a Kubernetes the installed release supports (MST0710), which
# ambient-install checks as well.
_GATEWAY_API_CRDS = _Blueprint("Before you begin: the Gateway API CRDs",
                               "Does the cluster serve Gateway and HTTPRoute, which waypoints and ambient routing are "
                               "written in, on an Istio with ambient GA and a Kubernetes version it supports?",
                               ("gateway-api-crds",), "mesh")

# Sidecars to ambient, as istio.io's migration guide (docs/ambient/migrate/) orders it: before you begin (the
# versions it lists, the Gateway API CRDs), install the ambient components, migrate the policies, then per
# namespace in the order the guide requires — activate the waypoint, label the namespace ambient and remove
# injection, restart, verify HBONE, then remove the old sidecar config (its step 5).
_MIGRATE_INSTALL = _Blueprint("Install ambient components: ztunnel, and istio-cni and istiod under the ambient profile",
                              "Is ztunnel on every node, handed pods by istio-cni and programmed by istiod, while "
                              "every sidecar workload keeps working as it is?", ("ambient-install",), "mesh")
_MIGRATE_POLICIES = _Blueprint("Migrate {ns}'s policies to its waypoint",
                               "{ns}'s VirtualServices become HTTPRoutes, its L7 policies are bound to the waypoint "
                               "(targetRefs) beside the sidecars' own, its waypoint is deployed: what ambient needs "
                               "is in place while the sidecars still route and enforce.", ("ambient-policies",),
                               "each")
_ACTIVATE_WAYPOINT = _Blueprint("Activate a waypoint for {ns} before it leaves sidecars",
                                "{ns}'s routes and L7 policies keep applying once its sidecars are gone: the waypoint "
                                "serves them first (istio.io/use-waypoint).", ("waypoint",), "each")
_SWITCH_NS = _Blueprint("Switch {ns} to ambient mode",
                        "Label {ns} istio.io/dataplane-mode=ambient, remove its injection label, restart its workloads "
                        "without sidecars, and verify ztunnel carries them over HBONE.", ("ambient-mode",), "each")
_CLEANUP_NS = _Blueprint("Clean up {ns}'s sidecar-only config",
                         "Once no pod of {ns} has a sidecar, remove what only sidecars read — the selector-bound "
                         "policies the waypoint's copies replaced, the subsets only the converted VirtualServices "
                         "named, Sidecar resources — kept in a backup ConfigMap to roll back from.",
                         ("ambient-cleanup",), "each")

# Ambient mode (istio.io's getting-started path): ztunnel gives every pod of a namespace mTLS and L4 policy the
# moment it is labelled; a waypoint is added only where L7 is needed, and routes are HTTPRoutes (the traffic
# features' default api in an ambient namespace). A namespace that already has L7 config a waypoint must serve
# (sidecars routing by VirtualService and DestinationRule subsets, L7 policies) would lose it in the move (MST0706),
# and its VirtualServices would be left to a waypoint alone (Alpha, MST0816): it moves as the migration guide moves
# a namespace — its policies to its waypoint, the waypoint activated, the move, the clean-up — and the others move
# at once, their waypoints later.
_AMBIENT_INSTALL = _Blueprint("Install and verify ztunnel and istio-cni",
                              "Are ztunnel on every node and istio-cni running, so that a namespace moved to ambient "
                              "is carried, not cut off?", ("ambient-install",), "mesh")
_AMBIENT_NS = _Blueprint("Move {ns} to ambient mode",
                         "{ns}'s pods join the mesh without sidecars: ztunnel gives them mutual TLS (HBONE, port "
                         "15008) and L4 telemetry at once, with no restart of theirs needed for L4; pods that run a "
                         "sidecar keep it until they are restarted.",
                         ("ambient-mode",), "each")


def _not_ambient(inventory: Inventory, ns: str, on: set[tuple[str, str]]) -> bool:
    """A namespace not in ambient mode yet: its policies can still move to its waypoint before it does."""
    return ("ambient-mode", ns) not in on


def _waypoint_first(inventory: Inventory, ns: str, on: set[tuple[str, str]]) -> bool:
    """A namespace not in ambient mode yet whose policies moved to its waypoint, or whose move would leave L7 config
    to no waypoint (MST0706): its waypoint serves before it moves."""
    return _not_ambient(inventory, ns, on) and (
        ("ambient-policies", ns) in on or next(needs_waypoint(inventory, ns), None) is not None)


def _policies_moved(inventory: Inventory, ns: str, on: set[tuple[str, str]]) -> bool:
    """A namespace whose policies moved to its waypoint: what only its sidecars read is left to clean up."""
    return ("ambient-policies", ns) in on


_AMBIENT_MOVE = (replace(_MIGRATE_POLICIES, only_where=_not_ambient),
                 replace(_ACTIVATE_WAYPOINT, only_where=_waypoint_first), _AMBIENT_NS,
                 replace(_CLEANUP_NS, only_where=_policies_moved))
_WAYPOINT_NS = _Blueprint("Deploy a waypoint for {ns}",
                          "An L7 proxy for {ns}'s services, where routing, retries and L7 authorization run.",
                          ("waypoint",), "each")
_AMBIENT_ROUTING = _Blueprint("Route requests by version with HTTPRoutes",
                              "Decide which version of a service serves requests, at its waypoint.",
                              ("request-routing",), "all")
_AMBIENT_RELEASE = _Blueprint("Release with weighted HTTPRoutes",
                              "Send testers, then a share of users, to a new version through weighted backendRefs.",
                              ("traffic-shifting",), "all")

TEMPLATES: dict[str, tuple[_Blueprint | tuple[_Blueprint, ...], ...]] = {
    "routing-first": (_INSTALL, _INJECT, _INGRESS, _ROUTING, _RELEASE, _OBSERVE, _RESILIENCE, _EGRESS,
                      _PERMISSIVE, _STRICT_NS, _STRICT_MESH, _AUTHZ, _LOCKDOWN),
    "security-first": (_INSTALL, _INJECT, _PERMISSIVE, _STRICT_NS, _STRICT_MESH, _AUTHZ, _OBSERVE, _INGRESS,
                       _ROUTING, _RELEASE, _RESILIENCE, _EGRESS, _LOCKDOWN),
    "upgrade": _UPGRADE,
    "ambient-first": (_GATEWAY_API_CRDS, _AMBIENT_INSTALL, _AMBIENT_MOVE, _OBSERVE, _WAYPOINT_NS, _AMBIENT_ROUTING,
                      _AMBIENT_RELEASE, _STRICT_NS, _AUTHZ),
    "sidecar-to-ambient": (_GATEWAY_API_CRDS, _MIGRATE_INSTALL, _MIGRATE_POLICIES,
                           (_ACTIVATE_WAYPOINT, _SWITCH_NS, _CLEANUP_NS)),
    "custom": (),
}


def default_namespaces(inventory: Inventory) -> list[str]:
    """Namespaces with workloads that a team would adopt: not Kubernetes' own, not the control plane's."""
    control = {c.namespace for c in inventory.components if c.plane in ("control", "addon")}
    control |= {inventory.root_namespace}
    return [n for n in inventory.namespace_names()
            if n not in SYSTEM_NAMESPACES and n not in control and inventory.pods_by_namespace.get(n)]


def new_plan(template: str, inventory: Inventory, namespaces: Iterable[str] | None = None,
             waves: str | None = None, traffic: Any = None, to: str | None = None) -> Draft:
    """The stages of a template for these namespaces, from what the inventory shows; on a large cluster (or as
    `waves` says: planner.waves), a namespace-scoped feature's stages go over waves of namespaces, the pilot first
    (chosen with `traffic`, where given, weighed). `to`: the Istio release the upgrade template moves to
    (upgrade_params).

    A step whose feature cannot be rendered here (e.g. no service with two versions for a canary), whose objects
    analysis would flag, or whose dependency neither the cluster nor an earlier stage turns on, is left out with
    the reason (_refused); stages already on (every step on, by detection or in effect) are marked done. A step is
    planned once (ambient-first's waypoint for a namespace whose policies moved to it comes before its move, not
    again after it), and only where its blueprint is for (`only_where`)."""
    if template not in TEMPLATES:
        raise MeshstepError(f"unknown template {template!r}: choose one of {', '.join(TEMPLATES)}")
    targets = list(namespaces) if namespaces is not None else default_namespaces(inventory)
    known = set(inventory.namespace_names())
    unknown = [n for n in targets if n not in known]
    if unknown:
        raise MeshstepError(f"namespace(s) not in the cluster: {', '.join(unknown)}")
    if to is not None and template != "upgrade":
        raise MeshstepError(f"the release to upgrade to (--to) goes with the upgrade template, not {template}")
    params = upgrade_params(inventory, to) if template == "upgrade" else {}
    cut = waves_of(inventory, targets, waves, traffic)
    # each namespace, or each wave: how an `each` blueprint's title names it, and its namespaces
    units = [(ns, [ns]) for ns in targets] if cut is None else [
        (cut.label(i), list(group)) for i, group in enumerate(cut.groups)]
    groups_of = _groups(TEMPLATES[template], units, targets, params)
    observed = observed_steps(inventory, [s for _, _, steps in groups_of for s in steps])
    refused, off = _refused([s for _, _, steps in groups_of for s in steps], observed, inventory)
    observed -= off
    stages: list[StageSpec] = []
    left_out: list[LeftOut] = []
    before: set[tuple[str, str]] = set()
    for bp, ns, steps in groups_of:
        title, goal = bp.title.format(ns=ns), bp.goal.format(ns=ns)
        kept = []
        for s in steps:
            key = (s.feature, s.scope)
            if key in before or bp.only_where and not bp.only_where(inventory, s.scope, before | observed):
                continue  # an earlier stage turns it on, or the blueprint is not for this scope
            missing = unmet(s.feature, s.scope, before | observed, inventory)
            if key in refused:
                left_out.append(LeftOut(title, s.feature, s.scope, refused[key]))
            elif missing and key not in observed:
                left_out.append(LeftOut(title, s.feature, s.scope,
                                        f"it depends on {', '.join(missing)}, which is not on in {s.scope} and no "
                                        "earlier stage of the plan turns on"))
            else:
                kept.append(s)
        if bp.features and not kept:
            continue
        before |= {(s.feature, s.scope) for s in kept}
        done = bool(kept) and all((s.feature, s.scope) in observed for s in kept)
        stages.append(StageSpec(title, goal, tuple(kept), done))
    check_order(stages, inventory, observed)
    return Draft(stages, left_out, cut)


def _refused(steps: list[Step], observed: set[tuple[str, str]],
             inventory: Inventory) -> tuple[dict[tuple[str, str], Any], set[tuple[str, str]]]:
    """Why each of the steps not on yet cannot be had here: its feature cannot render it, or analysis would flag its
    objects. The candidates' objects are analysed together, once: one analysis per step took a minute on 5,000 pods.
    The steps are asked on the cluster as the install commands of the steps before them leave it (the Gateway API
    CRDs, the ambient profile, a new istiod revision): what a stage installs is never a reason to leave out the
    stages that need it. Also the steps on in the cluster that those commands turn off (one revision serves the mesh
    until the upgrade installs another): not found on, but asked like the others."""
    feats = registry()
    candidates: dict[tuple[str, str], list[dict[str, Any]]] = {}
    refused: dict[tuple[str, str], Any] = {}
    off: set[tuple[str, str]] = set()
    ahead = inventory
    for i, s in enumerate(steps):
        if (s.feature, s.scope) not in (observed - off) | candidates.keys() | refused.keys():
            try:
                candidates[s.feature, s.scope] = feats[s.feature].candidate(s.params, s.scope, ahead)[1]
            except MeshstepError as e:  # not for this cluster: the step is left out, with the reason
                refused[s.feature, s.scope] = str(e)
                continue
            made = feats[s.feature].commanded(validate_params(feats[s.feature], s.params), s.scope, ahead)
            if made:
                ahead = ahead.with_changes(apply=made)
                later = steps[i + 1:]
                off |= ({(t.feature, t.scope) for t in later} & observed) - observed_steps(ahead, later)
    for m in flagged([o for objs in candidates.values() for o in objs], ahead):
        for key, objs in candidates.items():
            if key not in refused and any(object_key(o) == (m.ref.kind, m.ref.namespace, m.ref.name) for o in objs):
                refused[key] = fill("analysis would flag {ref}: {code} {message}", ref=m.ref, code=m.code,
                                    message=m.message)
    return refused, off


def _groups(blueprints: tuple[_Blueprint | tuple[_Blueprint, ...], ...], units: list[tuple[str, list[str]]],
            targets: list[str],
            params: Mapping[str, dict[str, Any]]) -> list[tuple[_Blueprint, str | None, list[Step]]]:
    """Each stage a template makes, as (blueprint, name, steps): a blueprint spread as it says (`each`: per
    namespace, or per wave of `units`); a tuple of `each` blueprints, all of them for one unit before the next (a
    migration's per-namespace sequence). Each step has its feature's `params`."""
    def step(f: str, scope: str) -> Step:
        return Step(f, scope, dict(params.get(f, {})))

    out: list[tuple[_Blueprint, str | None, list[Step]]] = []
    for bp in blueprints:
        if isinstance(bp, tuple):
            out += [(b, name, [step(f, ns) for ns in unit for f in b.features]) for name, unit in units for b in bp]
        elif bp.spread == "each":
            out += [(bp, name, [step(f, ns) for ns in unit for f in bp.features]) for name, unit in units]
        elif bp.spread == "all":
            out.append((bp, None, [step(f, ns) for f in bp.features for ns in targets]))
        else:
            out.append((bp, None, [step(f, "mesh") for f in bp.features]))
    return out


def upgrade_params(inventory: Inventory, to: str | None) -> dict[str, dict[str, Any]]:
    """The upgrade template's parameters, by feature. Without `to`: none (the steps move to the newest revision
    installed, from the oldest), which needs a second revision installed. With `to` (an Istio release, x.y.z), on a
    cluster running one revision: install `to` as revision `1-<minor>` (revisions.revision_name) beside it, move
    everything to that revision, then remove the running one; refused where Istio does not support the upgrade
    (cluster.istio_releases.upgrade_problem)."""
    revs = revisions.installed(inventory)
    if not revs:
        raise MeshstepError("the upgrade template moves the mesh from one istiod revision to another, and istiod is "
                            "not installed")
    old = revs[-1]
    if len(revs) > 1:
        if to is None or to == old.version:
            return {}
        raise MeshstepError(f"an upgrade is under way: revisions {', '.join(_named(r) for r in revs)} are installed, "
                            f"and the upgrade template moves to {old.revision}: finish that upgrade (a plan of the "
                            f"upgrade template without --to) before upgrading to {to}")
    if to is None:
        now = release(old.version or "")
        example = f"{now[0]}.{now[1] + 1}.0" if now else "1.X.Y"
        raise MeshstepError(f"the cluster runs one istiod revision, {_named(old)}: there is no new revision to move "
                            f"to. Name the Istio release to upgrade to with --to VERSION (e.g. {example}): the plan "
                            "installs it as a revision beside this one first")
    problem = istio_releases.upgrade_problem(old.version or "", to)
    if problem:
        raise MeshstepError(f"cannot upgrade revision {_named(old)} to {to}: {problem}")
    rev = revisions.revision_name(to)
    if rev == old.revision:  # a patch release of the running minor: a revision of its own, named after all of it
        rev = to.replace(".", "-")
    return {"revision-install": {"revision": rev, "version": to}, "revision-label": {"revision": rev},
            "gateway-revision": {"revision": rev}, "default-tag": {"revision": rev},
            "single-revision": {"revision": old.revision}}


def _named(r: Revision) -> str:
    return f"{r.revision} (Istio {r.version or 'version unknown'})"


def observed_steps(inventory: Inventory, steps: Iterable[Step] = ()) -> set[tuple[str, str]]:
    """(feature, scope) pairs on in the inventory, operations' steps included: what detection finds, and those of
    `steps` whose behaviour is in effect by Istio's own resolution (PERMISSIVE by default, STRICT inherited)."""
    return in_effect_steps(inventory, [(s.feature, s.scope) for s in steps])


def check_order(stages: list[StageSpec], inventory: Inventory, observed: set[tuple[str, str]] | None = None) -> None:
    """Raise when a stage comes before a feature it depends on (unless that is already on in the cluster;
    `observed`: what is, when the caller has it)."""
    if observed is None:
        observed = observed_steps(inventory, [s for stage in stages for s in stage.steps])
    before: set[tuple[str, str]] = set()
    for i, stage in enumerate(stages, 1):
        for step in stage.steps:
            for dep in unmet(step.feature, step.scope, before | observed, inventory):
                raise MeshstepError(
                    f"stage {i} ({stage.title}) turns on {step.feature} in {step.scope}, which depends on {dep}: "
                    f"add a stage for {dep} in {step.scope} (or mesh-wide) before it")
        before |= {(s.feature, s.scope) for s in stage.steps}


# ---------------------------------------------------------------- gate, config, exit check


@dataclass(frozen=True)
class GateResult:
    messages: tuple[Message, ...]
    ran: tuple[str, ...] = ()  # the checks the gate ran, named (code, what, where), passed or not
    # the checks it could not run, named as `ran` names them, with what the source could not show
    skipped: tuple[str, ...] = ()
    # the scopes (namespaces, or `mesh`) of the steps whose checks gave an error: where in a wave the gate fails
    failing: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not any(m.level == "error" for m in self.messages)


# The install stage's gate: each check as `ran` names it, and the kind it cannot do without.
_INSTALL_CHECKS = {"MST0001": ("Istio's CRDs and istiod are installed", CRD_KIND.kind),
                   "MST0002": ("each istiod revision has a ready pod", "Pod")}


def _install_unseen(inventory: Inventory) -> dict[str, Unseen]:
    """The install checks the source could not let run, with what it did not show. MST0001 needs the CRDs only
    when no istiod shows that Istio is there."""
    why = unseen_kind(inventory)
    return {code: u for code, (_, kind) in _INSTALL_CHECKS.items()
            if not (code == "MST0001" and inventory.istio_installed) and (u := why(kind)) is not None}


def install_messages(inventory: Inventory) -> list[Message]:
    """The install stage's gate: Istio's CRDs and a ready istiod; where the source could not show what a check
    needs, that it was skipped and why."""
    unseen = _install_unseen(inventory)
    out = [unseen_message(u, f"1 check skipped: {code} (install)") for code, u in unseen.items()]
    root = Ref("Namespace", None, inventory.root_namespace)
    if not inventory.istio_installed and "MST0001" not in unseen:
        out.append(catalog_message("MST0001", root, "no Istio CRDs and no istiod"))
    for r in inventory.revisions if "MST0002" not in unseen else ():
        if r.istiod_pods and not r.ready_pods:
            out.append(catalog_message("MST0002", Ref("Namespace", None, r.namespace),
                                                f"istiod revision {r.revision}: none of its {r.istiod_pods} pods is "
                                                f"ready", namespace=r.namespace))
    return out


def gate(stage: StageSpec, inventory: Inventory, traffic: Any = None) -> GateResult:
    """The entry gate: each step's feature checks (readiness analysis and, given `traffic`, what telemetry
    observed included); errors block. A step already on in the inventory is not gated: there is nothing to turn
    on."""
    feats = registry()
    msgs: list[Message] = install_messages(inventory) if not stage.steps else []
    unseen = _install_unseen(inventory) if not stage.steps else {}
    ran = [f"{code} {what}" for code, (what, _) in _INSTALL_CHECKS.items() if not stage.steps and code not in unseen]
    skipped = [f"{code} {_INSTALL_CHECKS[code][0]}: {u.reason}" for code, u in unseen.items()]
    failing: dict[str, None] = {}
    owners_shown = shown(inventory)
    for step in pending_steps(stage, inventory):
        f = feats[step.feature]
        out = f.gate(inventory, step.scope, step.params, traffic)
        msgs.extend(out.messages)
        if any(m.level == "error" for m in out.messages):
            failing[step.scope] = None
        where = f"({step.feature} in {step.scope})"
        ran += [f"MST0003 {dep} is on for {step.feature} in {step.scope}" for dep in f.depends_on]
        owners = f"MST0008 no field {step.feature} changes in {step.scope} is another field manager's"
        if out.renders_objects:  # a step that renders no object (an install by command) has no field to be owned
            if owners_shown:
                ran.append(owners)
            else:
                skipped.append(f"{owners}: the source shows no field owners (a snapshot taken without "
                               "`kubectl get … --show-managed-fields`)")
        ran += [f"{c.code} {c.name} {where}" for c in out.ran]
        skipped += [f"{c.code} {c.name} {where}: {u.reason}" for u, checks in out.skipped for c in checks]
    unique = {(m.code, str(m.ref), m.message): m for m in msgs}
    return GateResult(tuple(sorted(unique.values(),
                                   key=lambda m: (LEVELS.index(m.level), m.code, str(m.ref)))), tuple(ran),
                      tuple(skipped), tuple(failing))


def pending_steps(stage: StageSpec, inventory: Inventory) -> list[Step]:
    """The stage's steps that detection does not show on in the inventory: those it still has to turn on."""
    observed = observed_steps(inventory, stage.steps)
    return [s for s in stage.steps if (s.feature, s.scope) not in observed]


@dataclass(frozen=True)
class StageConfig:
    apply_yaml: str
    rollback_yaml: str
    notes: tuple[str, ...]  # commands to run (label patches) and reminders (restart the pods)
    skipped: tuple[Step, ...] = ()  # steps already on where the stage starts: nothing rendered for them

    @property
    def objects(self) -> list[dict[str, Any]]:
        """The objects the stage applies, as `kubectl apply -f` reads its YAML."""
        return objects_of(self.apply_yaml)

    @property
    def deletions(self) -> list[Ref]:
        """The objects the stage deletes, as its YAML heads them."""
        return deletions_of(self.apply_yaml)

    @property
    def empty(self) -> bool:
        """Nothing to apply, delete or run: the stage only checks."""
        return not self.objects and not self.deletions and not self.notes


def objects_of(text: str) -> list[dict[str, Any]]:
    """The objects of a multi-document YAML text (comment-only documents hold none), read by the C loader (a wave's
    YAML is megabytes)."""
    return [d for d in yaml.load_all(text, Loader=YAML_LOADER) if d]


def deletion_manifest(refs: Iterable[Ref], objects: Iterable[dict[str, Any]], inventory: Inventory) -> str:
    """What `refs` names as `kubectl delete -f` (or a GitOps tool) takes it: each object's apiVersion, kind, name
    and namespace, under its header; a deletion in a rendering's YAML is only a comment. The apiVersion is the one
    `objects` (what the stage applies: a rollback deletes what it created) or the inventory gives it. A pod that a
    controller owns is left out (an overlay, which runs no controllers, deletes it with its workload)."""
    versions = {(o.get("kind"), (o.get("metadata") or {}).get("namespace"), (o.get("metadata") or {}).get("name")):
                o.get("apiVersion") for o in objects}
    docs = []
    for ref in refs:
        pod = inventory.pod(ref.namespace or "default", ref.name) if ref.kind == "Pod" else None
        if pod is not None and pod.workload_kind != "Pod":
            continue  # its controller's: gone with it, or back from it; never an object of a GitOps repository
        known = inventory.get(ref.kind, ref.namespace, ref.name)
        version = versions.get((ref.kind, ref.namespace, ref.name)) or (
            known.api_version if known else "v1" if pod is not None else None)
        if version is None:
            raise MeshstepError(f"{ref}: to be deleted, but neither the stage nor the cluster has it")
        meta = {"name": ref.name, **({"namespace": ref.namespace} if ref.namespace else {})}
        docs.append(f"# meshstep: {ref}, to delete (kubectl delete -f)\n"
                    + yaml.safe_dump({"apiVersion": version, "kind": ref.kind, "metadata": meta}, sort_keys=False))
    return "---\n".join(docs)


def config(stage: StageSpec, inventory: Inventory) -> StageConfig:
    """The YAML to apply for a stage, and the YAML of its rollback, on `inventory` (the cluster as the earlier
    stages leave it). A step already on there is skipped: recognised, not rendered again. Each step is rendered on
    the cluster as the steps before it leave it, so that steps sharing an object (metrics, tracing and access logs
    in one Telemetry) extend it instead of overwriting each other; an object is written once, as the last step
    leaves it. Analysis judges the steps' objects together, once, on the cluster with all of them applied (as the
    stage applies them): once per step was a minute for a wave of 59 namespaces on 10,000 pods."""
    feats = registry()
    applied: list[Rendered] = []
    rolled: list[Rendered] = []
    notes: list[str] = []
    now = inventory
    pending = pending_steps(stage, inventory)
    for step in pending:
        f = feats[step.feature]
        r = f.render(step.params, step.scope, now, check=False)
        applied.append(r)
        notes.extend(r.notes)
        now = apply(r, now)
        rolled.append(f.rollback(step.params, step.scope, inventory))
    refuse_together(applied, inventory)
    skipped = tuple(s for s in stage.steps if s not in pending)
    return StageConfig(_once(applied, last=True), _once(rolled, last=False), tuple(notes), skipped)


def _once(rendered: list[Rendered], last: bool) -> str:
    """The renderings' YAML with each object (and each deletion) once: the last version of an object applied in
    turn, or the first of a rollback (all restore the object as it is now). One multi-document YAML: `---` between
    every two documents, as between the objects of one rendering."""
    seen: set[Any] = set()
    kept: list[Rendered] = []
    for r in (reversed(rendered) if last else rendered):
        objects = tuple(o for o in r.objects if object_key(o) not in seen)
        delete = tuple(d for d in r.delete if d not in seen)
        seen |= {object_key(o) for o in objects} | set(delete)
        kept.append(replace(r, objects=objects, delete=delete))
    return "---\n".join(r.yaml for r in (reversed(kept) if last else kept) if r.objects or r.delete or r.notes)


def error_keys(inventory: Inventory) -> set[str]:
    """Identities of the analysis errors in an inventory, to tell new errors from old ones (found once per
    inventory: the gate's baseline and the exit check of a rehearsal read the same overlays again)."""
    return {f"{m.code} {m.ref}" for m in analysis_errors(inventory)}


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
    missing = tuple(pending_steps(stage, inventory))
    return ExitResult(missing, tuple(sorted(error_keys(inventory) - set(baseline_errors))))
