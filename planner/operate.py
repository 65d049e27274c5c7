"""Operating a stage on the cluster itself: its objects applied as Kubernetes intends (cluster.apply: a server-side
dry run, then server-side apply as field manager meshstep, never forced, all or none), Istio's acceptance waited
for, then a bake on live traffic judged by the plan's verification thresholds; a regression puts the stage's
objects back as they were by itself. An authorization stage can first run in shadow (Istio's `istio.io/dry-run`
annotation: evaluated, never enforced) and be enforced once its shadow bake saw no caller it would deny. In GitOps
mode the export is applied by Argo CD or Flux: meshstep waits until the cluster holds the stage's objects as it
renders them, then runs the same acceptance wait and bake, and never undoes what GitOps applied."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import msgspec

import planner.plan
from cluster.apply import Cluster, apply_stage, gone, holds, identity, named, roll_back
from cluster.errors import MeshstepError, SourceError
from cluster.snapshot import Limit
from cluster.sources import default_source
from features.base import deletions_of
from state.models import Plan, Stage
from telemetry.series import duration_text
from telemetry.verification import Thresholds, Verification

# How long Istio may take to accept config whose status it reports, and the settle time where it reports none.
ACCEPT_TIMEOUT = Limit("MESHSTEP_ACCEPT_TIMEOUT", 120, "Istio may take to accept a stage's config", unit="seconds")
SETTLE = Limit("MESHSTEP_SETTLE", 10, "a stage's config is given to reach the proxies when Istio reports no "
                                      "status", unit="seconds")
SYNC_TIMEOUT = Limit("MESHSTEP_PROXY_SYNC_TIMEOUT", 60, "the proxies a stage touches may take to acknowledge its "
                                                         "config", unit="seconds")
GITOPS_TIMEOUT = Limit("MESHSTEP_GITOPS_TIMEOUT", 600, "GitOps (Argo CD, Flux) may take to bring a stage's objects "
                                                       "to the cluster", unit="seconds")
POLL = 2.0  # seconds between looks at the objects' status and at the bake's traffic
# A bake looks at the traffic so far this often, so that a regression is rolled back without waiting for the window.
LOOK = Limit("MESHSTEP_BAKE_LOOK", 30, "between looks at a bake's traffic before its window is over", unit="seconds")

PLAN_ANNOTATION, STAGE_ANNOTATION = "meshstep.io/plan", "meshstep.io/stage"
ARGO_SYNC_WAVE = "argocd.argoproj.io/sync-wave"
# https://istio.io/latest/docs/tasks/security/authorization/authz-dry-run/: the policy is evaluated and its
# verdict exported, never enforced.
ISTIO_DRY_RUN = "istio.io/dry-run"
SHADOW_KINDS = ("AuthorizationPolicy",)
# What a proxy counts for a dry-run policy: requests its ALLOW (or DENY) policies in dry run would have denied.
SHADOW_DENIED = r"envoy_http_.*_rbac_istio_dry_run_(allow|deny)_shadow_denied"
_READ_IN_PART = ("Namespace", "ConfigMap", "Secret")
# istiod's per-proxy xDS sync state (pilot/pkg/xds/debug.go, Syncz): for each type, the nonce last sent and acked.
SYNCZ, MONITORING_PORT = "/debug/syncz", 15014
# One object as a GitOps apply must bring it: (identity, the object wanted (None: gone), what the cluster had instead).
Side = tuple[tuple[str, str, str | None, str], dict[str, Any] | None, dict[str, Any] | None]


class BakeRegressed(MeshstepError):
    """MST1006: the bake saw a regression; the stage was rolled back by itself and the plan stopped."""

    exit_code = 1


class NotAccepted(MeshstepError):
    """MST1007: Istio reports the config invalid, or did not reconcile it in time. `code` is the catalog's, which
    the plan's stop keeps; the message says it first."""

    exit_code = 1
    code = "MST1007"

    def __init__(self, said: str) -> None:
        super().__init__(f"{self.code}: {said}")


class ProxiesNotSynced(NotAccepted):
    """MST1009: the proxies the stage touches did not acknowledge its config in time (Envoy rejected it, or istiod
    did not push it)."""

    code = "MST1009"


class NotSynced(MeshstepError):
    """MST1010: GitOps did not bring the stage's objects (or its rollback) to the cluster in time."""

    exit_code = 1


class GitOpsRegressed(MeshstepError):
    """MST1011: a stage GitOps applied regressed in its bake (or Istio refused it): meshstep stops and names the
    rollback to commit, which it cannot apply itself (GitOps would sync the stage back)."""

    exit_code = 1


@dataclass(frozen=True)
class Touched:
    """The proxies a stage touches, as istiod reports them: the istiod pods to ask (namespace, name) — each replica
    lists only the proxies connected to it — and the namespaces whose sidecars and gateways count (None: every
    proxy, for a mesh-wide stage)."""

    istiods: tuple[tuple[str, str], ...]
    namespaces: frozenset[str] | None

    def covers(self, proxy: str) -> bool:
        """Whether proxy `NAME.NAMESPACE` (istiod's ID of it) is one of these."""
        return self.namespaces is None or proxy.rpartition(".")[2] in self.namespaces

    @property
    def where(self) -> str:
        return "in the mesh" if self.namespaces is None else "in " + ", ".join(sorted(self.namespaces))


def touched(inventory: Any, scopes: Iterable[str], applied: Iterable[dict[str, Any]]) -> Touched:
    """The proxies of the stage's scopes and of the namespaces of its objects (all, when a scope is the mesh), and
    every ready istiod pod, of every revision, to ask about them."""
    scopes = set(scopes)
    namespaces = None if "mesh" in scopes else frozenset(
        scopes | {a["key"][2] for a in applied if a["key"][2]})
    pods = (inventory.pod(c.namespace, c.name) for c in inventory.components_by_id.get("istiod", ()) if c.kind == "Pod")
    return Touched(tuple(sorted((p.namespace, p.name) for p in pods if p is not None and p.ready)), namespaces)


def _pushed_at(nonce: str) -> float | None:
    """When the push that sent a nonce happened: istiod's nonces start with the push's version, `RFC3339/N…`."""
    try:
        return datetime.fromisoformat(nonce.split("/", 1)[0].replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class SyncStatus(msgspec.Struct, frozen=True):
    """One proxy as istiod's /debug/syncz lists it (pilot/pkg/xds/debug.go's SyncStatus; its other fields are not
    read): its ID, `NAME.NAMESPACE`, and for each xDS type the nonce last sent and last acknowledged ("": none)."""

    proxy: str = ""
    cluster_sent: str = ""
    cluster_acked: str = ""
    listener_sent: str = ""
    listener_acked: str = ""
    route_sent: str = ""
    route_acked: str = ""
    endpoint_sent: str = ""
    endpoint_acked: str = ""
    extensionconfig_sent: str = ""
    extensionconfig_acked: str = ""

    @property
    def xds(self) -> tuple[tuple[str, str], ...]:
        """(sent, acked) of each xDS type: cluster, listener, route, endpoint, extensionconfig."""
        return ((self.cluster_sent, self.cluster_acked), (self.listener_sent, self.listener_acked),
                (self.route_sent, self.route_acked), (self.endpoint_sent, self.endpoint_acked),
                (self.extensionconfig_sent, self.extensionconfig_acked))


def proxy_synced(status: SyncStatus, since: float | None) -> bool:
    """A proxy has the config written at `since`: every xDS type sent to it is acked, and the latest push it was sent
    is not older than the write (a nonce without a push time, or no write time, leaves the acks to judge)."""
    sent = [(s, a) for s, a in status.xds if s]
    if not sent or any(s != a for s, a in sent):
        return False
    times = [t for s, _a in sent if (t := _pushed_at(s)) is not None]
    return since is None or not times or max(times) >= since


def written_at(applied: Iterable[dict[str, Any]]) -> float | None:
    """The latest time the API server recorded a write of the stage's objects (their managedFields' `time`)."""
    times = [datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() for a in applied
             for e in ((a.get("after") or {}).get("metadata") or {}).get("managedFields") or () if e.get("time")]
    return max(times, default=None)


def stamped(obj: dict[str, Any], plan: Plan, stage: Stage, shadow: bool = False) -> dict[str, Any]:
    """The object with the annotations that name the plan and stage that applied it (and, in shadow, Istio's
    dry-run annotation on authorization policies)."""
    meta = dict(obj.get("metadata") or {})
    # Set last whatever an earlier stage set: the object's own annotations keep their order.
    notes = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in (PLAN_ANNOTATION, STAGE_ANNOTATION)}
    notes[PLAN_ANNOTATION], notes[STAGE_ANNOTATION] = plan.name, str(stage.order)
    if shadow and obj.get("kind") in SHADOW_KINDS:
        notes[ISTIO_DRY_RUN] = "true"
    return {**obj, "metadata": {**meta, "annotations": notes}}


def sync_wave(obj: dict[str, Any], stage: Stage) -> dict[str, Any]:
    """The object as an export writes it for Argo CD: a sync wave of its stage's order, so that one sync applies the
    stages in plan order (https://argo-cd.readthedocs.io/en/stable/user-guide/sync-waves/)."""
    meta = dict(obj.get("metadata") or {})
    notes = {k: v for k, v in (meta.get("annotations") or {}).items() if k != ARGO_SYNC_WAVE}
    return {**obj, "metadata": {**meta, "annotations": {**notes, ARGO_SYNC_WAVE: str(stage.order)}}}


def gate_versions(objects: Iterable[dict[str, Any]], inventory: Any) -> dict[str, str]:
    """The resourceVersion of each object the stage changes, as the gate's read of the cluster saw it ("" for one it
    creates, absent then): the apply sends it as a precondition, so that a change made since re-runs the gate.
    Kinds the inventory keeps typed (Namespaces) have none, and absence says nothing of a kind the read could not
    show or shows only in part (ConfigMaps are read by label): their apply has no precondition."""
    found = {}
    unreadable = inventory.visibility.unreadable()
    for obj in objects:
        _api, kind, ns, name = identity(obj)
        live = None if kind == "Namespace" else inventory.get(kind, ns, name)
        if live is not None:
            if live.metadata.get("resourceVersion"):
                found[named(identity(obj))] = str(live.metadata["resourceVersion"])
        elif kind not in (*_READ_IN_PART, *unreadable):
            found[named(identity(obj))] = ""
    return found


def to_delete(text: str, objects: list[dict[str, Any]], inventory: Any) -> list[dict[str, Any]]:
    """The objects a stage's YAML deletes, as the API server names them (apiVersion, kind, namespace, name: what
    `kubectl delete -f` takes, planner.plan.deletion_manifest); one the cluster no longer has was deleted since the
    gate read it (MST1002: the stage goes back to its gate)."""
    out = []
    for ref in deletions_of(text):
        try:
            out += planner.plan.objects_of(planner.plan.deletion_manifest([ref], objects, inventory))
        except MeshstepError:
            raise gone(("", ref.kind, ref.namespace, ref.name), dry_run=True) from None
    return out


@dataclass
class Operator:
    """How a plan's stages reach the cluster: the cluster written to, where progress lines go, the waits."""

    cluster: Cluster
    progress: Callable[[str], None] = lambda _line: None
    shadow: bool = False  # authorization stages applied first in shadow (istio.io/dry-run), then enforced
    gitops: bool = False  # GitOps (Argo CD, Flux) applies the export; meshstep waits for it, then bakes
    settle: float = field(default_factory=lambda: float(SETTLE.value))
    accept_timeout: float = field(default_factory=lambda: float(ACCEPT_TIMEOUT.value))
    sync_timeout: float = field(default_factory=lambda: float(SYNC_TIMEOUT.value))
    gitops_timeout: float = field(default_factory=lambda: float(GITOPS_TIMEOUT.value))
    poll: float = POLL
    sleep: Callable[[float], None] = time.sleep

    def shadows(self, objects: Iterable[dict[str, Any]]) -> bool:
        """Whether this stage is applied in shadow first: it has authorization policies, and shadow is asked."""
        return self.shadow and any(o.get("kind") in SHADOW_KINDS for o in objects)

    def apply(self, plan: Plan, stage: Stage, objects: list[dict[str, Any]], versions: dict[str, str],
              shadow: bool, deletes: Iterable[dict[str, Any]] = ()) -> tuple[dict[str, Any], ...]:
        """The stage's objects applied and `deletes` deleted (all or none); what each was before and is after
        (None: deleted), for a rollback."""
        done = apply_stage(self.cluster, [stamped(o, plan, stage, shadow) for o in objects], versions, self.progress,
                           [identity(d) for d in deletes])
        for text in done.diffs:
            for line in text.splitlines():
                self.progress(f"  {line}")
        return tuple({"key": list(key), "before": before, "after": after}
                     for (key, before), after in zip(done.before, done.after))

    def put_back(self, applied: Iterable[dict[str, Any]]) -> list[str]:
        """The stage's objects as they were before it (created ones deleted), last first."""
        applied = list(applied)
        return roll_back(self.cluster, [(tuple(a["key"]), a["before"]) for a in applied],
                         [a["after"] for a in applied])

    def seen(self, sides: list[Side], what: str, hint: str) -> tuple[dict[str, Any], ...]:
        """Wait until GitOps has brought each object of `what` to the cluster (`holds`: the fields it changes as it
        renders them; what it deletes gone); the objects as seen, for the stage's record. Raises NotSynced, saying
        what is not there yet and `hint`."""
        deadline = time.monotonic() + self.gitops_timeout
        while True:
            live = {key: self.cluster.read(key) for key, _want, _other in sides}
            pending = [named(key) for key, want, other in sides if not holds(live[key], want, other)]
            if not pending:
                return tuple({"key": list(key), "before": other, "after": live[key]} for key, _want, other in sides)
            if time.monotonic() >= deadline:
                raise NotSynced(f"MST1010: GitOps did not bring {what} to the cluster within "
                                f"{duration_text(self.gitops_timeout)} ({GITOPS_TIMEOUT.env}); not there yet as "
                                f"rendered: {', '.join(pending)}. {hint}")
            self.progress(f"waiting for GitOps (Argo CD, Flux) to apply {what}: {len(sides) - len(pending)} of "
                          f"{len(sides)} object(s) on the cluster as rendered; not yet: {', '.join(pending)}")
            self.sleep(self.poll)

    def accepted(self, applied: Iterable[dict[str, Any]], touched: Touched) -> str:
        """Wait until Istio has accepted the stage's objects (each Reconciled condition true where istiod writes
        status, and no validation error), then until the proxies it touches have the config (`reached`). Raises
        NotAccepted."""
        applied = list(applied)
        keys = [tuple(a["key"]) for a in applied if a["after"] is not None]  # a deleted object reports nothing
        deadline = time.monotonic() + self.accept_timeout
        while True:
            pending, errors, reported = _status(self.cluster, keys)
            if errors:
                raise NotAccepted("Istio reports the stage's config invalid: " + "; ".join(errors))
            if not pending:
                break
            if time.monotonic() >= deadline:
                raise NotAccepted(f"Istio did not reconcile {', '.join(pending)} within "
                                  f"{duration_text(self.accept_timeout)} ({ACCEPT_TIMEOUT.env})")
            self.progress(f"waiting for Istio to accept: {', '.join(pending)}")
            self.sleep(self.poll)
        said = "Istio reconciled every object of the stage" if reported else "no status reported by istiod"
        return f"{said}; {self.reached(touched, written_at(applied))}"

    def reached(self, touched: Touched, since: float | None) -> str:
        """Wait until every proxy `touched` covers has the config written at `since`, as istiod's /debug/syncz says
        (each replica's, read through the API server's pod proxy: a replica lists only the proxies connected to
        it). Where a replica's syncz cannot be read, that is said and the settle time used instead.
        Raises ProxiesNotSynced."""
        if not touched.istiods:
            return self._settled("the cluster's read shows no ready istiod pod")
        deadline = time.monotonic() + self.sync_timeout
        while True:
            try:
                statuses = [s for ns, pod in touched.istiods for s in msgspec.json.decode(
                    self.cluster.proxied(ns, pod, MONITORING_PORT, SYNCZ), type=list[SyncStatus])
                    if touched.covers(s.proxy)]
            # What the read raises (the API server's refusal, or no answer in time: cluster.kubeapi), and an answer
            # that is not istiod's list of SyncStatus; anything else is meshstep's own bug, not an unreadable syncz.
            except (SourceError, msgspec.DecodeError) as e:
                return self._settled(e)
            stale = [s.proxy for s in statuses if not proxy_synced(s, since)]
            if not stale:
                return (f"the config reached the {len(statuses)} proxies {touched.where} (istiod's {SYNCZ}: sent after "
                        "the apply and acknowledged)" if statuses else f"no proxy {touched.where} is connected to "
                        "istiod: none to wait for")
            if time.monotonic() >= deadline:
                raise ProxiesNotSynced(f"{len(stale)} proxies {touched.where} did not acknowledge the stage's "
                                       f"config within {duration_text(self.sync_timeout)} ({SYNC_TIMEOUT.env}): "
                                       f"{', '.join(stale[:5])}{' …' if len(stale) > 5 else ''} (istioctl "
                                       "proxy-status shows what each was sent; a NACK names Envoy's reason)")
            self.progress(f"waiting for the proxies to get the config: {len(statuses) - len(stale)} of "
                          f"{len(statuses)} proxies {touched.where} have it (not yet: {', '.join(stale[:3])}"
                          f"{' …' if len(stale) > 3 else ''})")
            self.sleep(self.poll)

    def _settled(self, why: object) -> str:
        """Where istiod's syncz cannot be read: that said (`why`), and the settle time waited instead."""
        self.progress(f"cannot read istiod's {SYNCZ} through the API server ({why})")
        self.sleep(self.settle)
        return f"proxies' sync not checked: settled {duration_text(self.settle)} ({SETTLE.env}) instead"

    def bake(self, evidence: Any, steps: list[tuple[str, str]], applied_at: Any, thresholds: Thresholds,
             shadow: bool) -> Verification:
        """The stage's traffic watched until its window after the apply is over: the plan's before/after
        verification (in shadow, the requests the dry-run policies would have denied too)."""
        if evidence is None:
            return Verification("unavailable", ("no telemetry given: traffic not compared",), thresholds=thresholds)
        evidence.traffic()  # a Prometheus found in the cluster that does not answer is said, and left out
        if evidence.telemetry is None:
            return evidence.verify(steps, applied_at, thresholds)
        t = replace(thresholds, **evidence.verify_values)
        at = (applied_at if applied_at.tzinfo else applied_at.replace(tzinfo=UTC)).timestamp()
        start, end, said, look = at + t.settle, at + t.settle + t.window, 0.0, time.monotonic() + LOOK.value
        while not evidence.telemetry.reaches(end):
            left = end - evidence.telemetry.now()
            if time.monotonic() >= said:
                self.progress(f"baking: {duration_text(max(1, int(left)))} of the {duration_text(t.window)} window "
                              f"(after {duration_text(t.settle)} to settle) left")
                said = time.monotonic() + 30
            if time.monotonic() >= look and (seen := int(evidence.telemetry.now() - start)) >= 1:
                look = time.monotonic() + LOOK.value
                early = self._judged(evidence, steps, applied_at, thresholds, shadow, start, seen)
                if early.status == "regressed":
                    self.progress(f"regressed {duration_text(seen)} into the window: not waiting for the rest")
                    return early
            self.sleep(min(self.poll, max(left, 0.05)))
        return self._judged(evidence, steps, applied_at, thresholds, shadow, start, None)

    @staticmethod
    def _judged(evidence: Any, steps: list[tuple[str, str]], applied_at: Any, thresholds: Thresholds, shadow: bool,
                start: float, seen: int | None) -> Verification:
        """The verification of the window (or of its first `seen` seconds), shadow denials included in shadow."""
        verdict = evidence.verify(steps, applied_at, thresholds, window=seen)
        if not shadow:
            return verdict
        return shadow_verdict(verdict, evidence.telemetry, steps, start, start + (seen or verdict.thresholds.window))


def live(source: str) -> bool:
    """Whether a source is a cluster's API (live, context:NAME): the only one an operator can write to, or watch."""
    return source == "live" or source.startswith("context:")


def operator_for(source: str | None, progress: Callable[[str], None], shadow: bool = False,
                 gitops: bool = False) -> Operator:
    """How a plan's stages reach the cluster a source reads (the default source when None), for `--apply` (or
    `--gitops`) and the Plan page's buttons alike; progress lines go to `progress`. Raises MeshstepError for a source
    that is no cluster, and for shadow under GitOps (meshstep applies no shadow of what GitOps applies)."""
    source = source or default_source()
    if not live(source):
        raise MeshstepError(f"{'--gitops watches' if gitops else '--apply writes to'} a cluster, and --source {source} "
                            "is not one: give it as --source context:NAME (or live)")
    if shadow and gitops:
        raise MeshstepError("--shadow-authz is for --apply: under --gitops, commit the stage with istio.io/dry-run "
                            "yourself")
    context = source.split(":", 1)[1] if source.startswith("context:") else None
    return Operator(Cluster.connect(context), progress=progress, shadow=shadow, gitops=gitops)


def _status(cluster: Cluster, keys: list[tuple[Any, ...]]) -> tuple[list[str], list[str], bool]:
    """(objects not reconciled yet, validation errors, whether any object reports a status at all)."""
    pending, errors, reported = [], [], False
    for key in keys:
        obj = cluster.read(key) or {}
        status = obj.get("status") or {}
        for m in status.get("validationMessages") or ():
            if str(m.get("level", "")).upper() == "ERROR":
                errors.append(f"{named(key)}: {m.get('documentationUrl') or m.get('type', {}).get('code', '')} "
                              f"{m.get('message', '')}".strip())
        conditions = {c.get("type"): c for c in status.get("conditions") or ()}
        if "Reconciled" in conditions:
            reported = True
            if conditions["Reconciled"].get("status") != "True":
                pending.append(named(key))
    return pending, errors, reported


def shadow_verdict(verdict: Verification, tel: Any, steps: list[tuple[str, str]], start: float,
                   end: float) -> Verification:
    """The verification of a shadow stage: a request its dry-run policies would have denied is a regression, as
    it would be once enforced."""
    scopes = sorted({scope for _f, scope in steps if scope != "mesh"})
    match = {"__name__": SHADOW_DENIED, **({"namespace": "|".join(scopes)} if scopes else {})}
    denied = sum(v for _labels, v in tel.increase("", ("namespace",), start, end, match))
    line = (f"  shadow: {denied:.0f} request(s) the dry-run policies would have denied "
            f"(istio.io/dry-run; {SHADOW_DENIED})")
    if denied >= 1:
        problem = f"{denied:.0f} request(s) would have been denied once enforced"
        return replace(verdict, status="regressed", lines=(*verdict.lines, line, f"  ✗ {problem}"),
                       problems=(*verdict.problems, problem))
    return replace(verdict, lines=(*verdict.lines, line))
