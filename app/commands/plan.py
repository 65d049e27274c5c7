"""`meshstep plan`: the staged adoption plan — one feature at a time, gated, verified, reversible."""
from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

import planner.plan
from app import safe
from app.commands import (
    ActorOpt,
    ClusterOpt,
    DbOpt,
    Format,
    FormatOpt,
    PrometheusOpt,
    SourceOpt,
    TelemetryOpt,
    WindowOpt,
    actor_name,
    cli,
    cluster_name,
    echo,
    emit_json,
    emit_table,
    feature_params,
    load_evidence,
    load_inventory,
    open_store,
)
from planner.waves import DEFAULT as WAVES_DEFAULT
from planner.waves import WAVES_ABOVE

plan_app = typer.Typer(help="Staged adoption: one Istio feature at a time, gated, verified, reversible.",
                       no_args_is_help=True)
cli.add_typer(plan_app, name="plan")

NameOpt = Annotated[str | None, typer.Option("--name", help="The plan (default: the cluster's active plan).")]


@contextmanager
def _plan(name: str | None, source: str | None, cluster: str | None, db: str | None) -> Iterator[tuple[Any, ...]]:
    """What a plan command works on: the source's inventory, the store, and the plan (named, else the active one of
    the source's cluster)."""
    from planner import stages

    inv = load_inventory(source)
    with open_store(db) as store:
        yield inv, store, stages.find_plan(store, cluster_name(cluster, inv.source), name)


@plan_app.command("new")
def plan_new(
    template: Annotated[str, typer.Option("--template",
                                          help=f"{' | '.join(planner.plan.TEMPLATES)}")] = "routing-first",
    namespaces: Annotated[str | None, typer.Option("--namespaces", help="a,b,c (default: every application "
                                                                         "namespace)")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name of the plan (default: the template's).")] = None,
    source: SourceOpt = None, cluster: ClusterOpt = None, db: DbOpt = None, actor: ActorOpt = None,
    format: FormatOpt = Format.table,
    verify: Annotated[list[str] | None, typer.Option("--verify", help="The plan's verification threshold, key=value "
                                                     "(repeatable; kept with the plan; see README, Telemetry).")]
    = None,
    waves: Annotated[str | None, typer.Option("--waves", help="Namespace-scoped stages over waves of namespaces, the "
                                              "pilot first: sizes as counts, shares or `rest` (default "
                                              f"{WAVES_DEFAULT} above {WAVES_ABOVE} namespaces; `off`: one stage "
                                              "per namespace). Kept with the plan.")] = None,
    prometheus: PrometheusOpt = None, telemetry: TelemetryOpt = None, window: WindowOpt = "1h",
    to: Annotated[str | None, typer.Option("--to", help="With --template upgrade on a cluster running one istiod "
                                           "revision: the Istio release to upgrade to (x.y.z, e.g. 1.28.0), installed "
                                           "as revision 1-<minor> beside the running one.")] = None,
) -> None:
    """Make a plan for a cluster from a template; stages already on are recognised as done. On a large cluster the
    namespace-scoped stages go over waves, the pilot (least risky) first, with its reasons said."""
    from planner import stages  # sqlmodel and alembic: loaded only by the commands that use them

    inv = load_inventory(source)
    ns = [n.strip() for n in namespaces.split(",") if n.strip()] if namespaces else None
    # Traffic weighs the pilot's choice only when telemetry is named: a plan is made from config alone otherwise.
    traffic = load_evidence(prometheus, telemetry, window, inv).traffic() if prometheus or telemetry else None
    with open_store(db) as store:
        p = stages.create(store, cluster_name(cluster, inv.source), inv, template, ns, name, actor_name(actor),
                          verify or (), waves, traffic, to)
        _show(p, format)


@plan_app.command("show")
def plan_show(name: NameOpt = None, source: SourceOpt = None, cluster: ClusterOpt = None, db: DbOpt = None,
              format: FormatOpt = Format.table) -> None:
    """The plan's stages and where each stands."""
    from planner import stages

    with open_store(db) as store:
        _show(stages.find_plan(store, cluster_name(cluster, source), name), format)


def _show(p, format: Format) -> None:
    from planner import stages
    from telemetry.series import duration_text
    from telemetry.verification import Thresholds

    rows = stages.stage_rows(p)
    if format == Format.json:
        emit_json({"name": p.name, "template": p.template, "cluster": p.cluster, "status": p.status,
                   "mode": p.mode, "complete": stages.current_stage(p) is None, "left_out": p.left_out,
                   "promoted_from": p.promoted_from, "promotion_after": p.promotion_after,
                   "verify": Thresholds.from_json(p.verify or {}).to_json(), "waves": p.waves, "stopped": p.stopped,
                   "stages": [{k: v for k, v in row.items() if k != "now"} | {"features": s.features, "goal": s.goal}
                              for row, s in zip(rows, p.stages)]})
        return
    echo(f"plan {_title(p)} for cluster {safe.shown(p.cluster)}: {_standing(p)}")
    if p.stopped:
        echo(f"{_stop_line(p)}\n  nothing is applied with --apply until: meshstep plan resume --name "
             f"{shlex.quote(p.name)} --reason \"…\"")
    if p.promoted_from:
        src = p.promoted_from
        echo(f"promoted from plan {safe.shown(src['name'])} on cluster {safe.shown(src['cluster'])}: a stage starts "
             f"here {duration_text(p.promotion_after or 0)} after it was done there at the earliest")
    if p.verify:
        echo(f"verification thresholds: {Thresholds.from_json(p.verify).text(p.verify)} (the others as by "
                   "default; a `plan advance --verify` goes over them)")
    if p.waves:
        _show_waves(p.waves)
    emit_table([row | {"found_on": "found on" if row["found_on"] else "",
                       "scope": row["scope"] if len(row["scope"]) <= _LISTED else [f"{len(row['scope'])} namespaces"]}
                for row in rows], ["now", "order", "status", "found_on", "title", "features", "scope"])
    if p.left_out:
        echo("\nLEFT OUT (the template has them; this cluster cannot have them yet)")
        for x in p.left_out:
            echo(f"  - {safe.shown(x['stage'])}: {x['feature']} in {safe.shown(x['scope'])}: "
                 f"{safe.message(planner.plan.LeftOut.reason_of(x))}")


def _stop_line(p) -> str:
    """`STOPPED after stage 6 (…): MST1006: …; by meshstep at …`: why the plan is stopped, as its stop says."""
    stop = p.stopped
    return (f"STOPPED after stage {stop.get('stage')} ({safe.shown(str(stop.get('title')))}): "
            f"{safe.message(str(stop.get('reason')))} (by {safe.shown(str(stop.get('by')))} at "
            f"{str(stop.get('at', ''))[:19]} UTC)")


# A stage over more namespaces than this shows their count in `plan show`'s table (the waves list them above it).
_LISTED = 5


def _show_waves(waves: dict[str, Any]) -> None:
    """The plan's waves: the pilot with why it goes first, then each wave's namespaces."""
    groups = waves["waves"]
    echo(f"WAVES ({safe.shown(waves['spec'])}): {' → '.join(str(len(g)) for g in groups)} namespaces")
    echo(f"  pilot: {', '.join(safe.shown(n) for n in groups[0])}")
    for reason in waves["pilot_reasons"]:
        echo(f"    - {safe.message(reason)}")
    for i, group in enumerate(groups[1:], 2):
        echo(f"  wave {i}: {', '.join(safe.shown(n) for n in group)}")
    echo()


def _completion(store, p) -> str | None:
    """The line that says the plan is complete, once it has no current stage; None while it has one."""
    from planner import stages

    done = stages.current_stage(store.get_plan(p.id)) is None
    return f"plan {_title(p)} is complete: every stage is done" if done else None


def _title(p) -> str:
    """`routing-first`, or `canary (routing-first)` when the plan has a name of its own."""
    return safe.shown(p.name if p.name == p.template else f"{p.name} ({p.template})")


def _standing(p) -> str:
    from planner import stages
    from state.models import PlanMode

    mode = {PlanMode.REHEARSAL: ", rehearsal on its overlay",
            PlanMode.REAL: ", walking the real cluster"}.get(p.mode or "", "")
    done = stages.done_count(p)
    if stages.current_stage(p) is None:
        return f"complete: every stage is done{mode}"
    return f"{p.status}, {done} of {len(p.stages)} stages done{mode}"


@plan_app.command("list")
def plan_list(source: SourceOpt = None, cluster: ClusterOpt = None, db: DbOpt = None,
              format: FormatOpt = Format.table) -> None:
    """The cluster's plans and where each stands."""
    from planner import stages

    with open_store(db) as store:
        plans = store.list_plans(cluster_name(cluster, source))
    rows = [{"name": p.name, "template": p.template, "status": p.status, "mode": p.mode or "-",
             "done": f"{stages.done_count(p)}/{len(p.stages)}",
             "complete": stages.current_stage(p) is None, "created_by": p.created_by,
             "created_at": p.created_at.isoformat(timespec="seconds")} for p in plans]
    if format == Format.json:
        emit_json(rows)
    elif not rows:
        echo("no plan for this cluster: start one with `meshstep plan new`")
    else:
        emit_table(rows, ["name", "template", "status", "mode", "done", "complete", "created_by", "created_at"])


@plan_app.command("delete")
def plan_delete(
    name: Annotated[str, typer.Argument(help="The plan to delete (meshstep plan list).")],
    reason: Annotated[str, typer.Option("--reason", help="Why: kept in the audit trail.")] = "",
    cluster: ClusterOpt = None, db: DbOpt = None, source: SourceOpt = None, actor: ActorOpt = None,
) -> None:
    """Delete a plan and its stages (the audit trail keeps them; flags stay as they are)."""
    from planner import stages

    with open_store(db) as store:
        p = stages.find_plan(store, cluster_name(cluster, source), name)
        stages.delete(store, p, actor_name(actor), reason)
    echo(f"plan {safe.shown(p.name)} deleted")


@plan_app.command("promote")
def plan_promote(
    name: Annotated[str, typer.Argument(help="The plan to promote (meshstep plan list).")],
    to: Annotated[str, typer.Option("--to", help="The cluster to promote it to (its records' name).")],
    source: Annotated[str | None, typer.Option("--source", help="How to read the TARGET cluster: context:NAME, "
                                                                "a snapshot path, demo.")] = None,
    after: Annotated[str, typer.Option("--after", help="How long a stage must have been done on the plan's "
                                                       "cluster before it may start on the target (7d, 12h, 0d).")]
    = "7d",
    as_name: Annotated[str | None, typer.Option("--as", help="Name of the promoted plan (default: the same).")]
    = None,
    cluster: Annotated[str | None, typer.Option("--cluster", help="The plan's cluster (default: the demo's "
                                                                  "name, as --source would give it).")] = None,
    db: DbOpt = None, actor: ActorOpt = None, format: FormatOpt = Format.table,
) -> None:
    """Make the plan again for another cluster: the same stages and parameters, rendered and gated on the target's
    own objects; a stage starts there only --after it was done (for real) on the plan's cluster."""
    from datetime import timedelta

    from planner import promotion, stages
    from telemetry.series import window_seconds

    wait = timedelta(seconds=window_seconds(after, zero=True))
    inv = load_inventory(source)
    with open_store(db) as store:
        p = stages.find_plan(store, cluster_name(cluster), name)
        _show(promotion.promote(store, p, to, inv, wait, as_name, actor_name(actor)), format)


@plan_app.command("next")
def plan_next(name: NameOpt = None, source: SourceOpt = None, cluster: ClusterOpt = None, db: DbOpt = None,
              format: FormatOpt = Format.table, prometheus: PrometheusOpt = None, telemetry: TelemetryOpt = None,
              window: WindowOpt = "1h") -> None:
    """The current stage: its goal, its gate (the checks it ran, with hints, and the traffic telemetry shows where
    given), and the YAML to apply with its diff."""
    from planner import moves
    from state.models import PlanMode

    with _plan(name, source, cluster, db) as (inv, _store, p):
        view = moves.next_view(p, inv, load_evidence(prometheus, telemetry, window, inv))
    if view is None:
        echo(f"plan {_title(p)} is complete: every stage is done")
        return
    st, cfg = view.stage, view.config
    if format == Format.json:
        emit_json({"order": st.order, "title": st.title, "goal": st.goal, "status": st.status, "mode": p.mode,
                   "features": st.features, "gate": {"passed": view.gate.passed, "ran": list(view.gate.ran),
                                                     "skipped": list(view.gate.skipped),
                                                     "messages": [m.to_json() for m in view.gate.messages]},
                   "already_on": [s.to_json() for s in cfg.skipped], "changes": view.changes.to_json(),
                   "apply_yaml": cfg.apply_yaml, "rollback_yaml": cfg.rollback_yaml, "notes": list(cfg.notes)})
        return
    rehearsal = "   (rehearsal)" if p.mode == PlanMode.REHEARSAL else ""
    echo(f"STAGE {st.order}: {safe.shown(st.title)}   [{st.status}]{rehearsal}")
    echo(f"goal: {safe.message(st.goal)}")
    for s in cfg.skipped:
        echo(f"already on: {s.feature} in {safe.shown(s.scope)} (nothing to render for it)")
    echo(f"\nGATE — {'passes' if view.gate.passed else 'BLOCKED'}: {len(view.gate.ran)} check(s) ran"
         + (f", {len(view.gate.skipped)} skipped" if view.gate.skipped else ""))
    for check in view.gate.ran:
        echo(f"  · {check}")
    for check in view.gate.skipped:
        echo(f"  ? skipped: {safe.message(check)}")
    if view.gate.messages:
        from analysis.findings import terminal

        echo(terminal(view.gate.messages, "  ", safe.message))
    else:
        echo("  ✓ none found anything")
    if cfg.notes:
        echo("\nRUN")
        for n in cfg.notes:
            echo(f"  {n}")
    echo(f"\nCHANGES (against the cluster as the earlier stages leave it): {safe.message(view.changes.summary())}")
    echo(view.changes.diff.rstrip("\n") or "  (none)")
    echo("\nAPPLY (kubectl apply -f -)")
    echo(cfg.apply_yaml or "  (nothing to apply: this stage only checks)")
    echo("\nNEXT")
    for line in _next_commands(p, st, view.gate.passed):
        echo(f"  {line}")


def _next_commands(p, st, gate_passed: bool) -> list[str]:
    """The command(s) that take the stage on from where it is (planner.lifecycle's advance for its status), as
    the plan's mode has them: both ways before the plan's first advance fixes it."""
    from planner.lifecycle import ADVANCE, BLOCKED, PLANNED, READY, ROLLED_BACK
    from state.models import PlanMode

    move = ADVANCE.get(st.status)
    if move is None:
        return ["meshstep plan show  # nothing to advance here"]
    base = f"meshstep plan advance --name {shlex.quote(p.name)}"
    if p.stopped:
        return [f"the plan is stopped ({safe.message(str(p.stopped.get('reason')))}): nothing is applied with --apply "
                "until it is resumed; find and fix the cause, then:",
                f"meshstep plan resume --name {shlex.quote(p.name)} --reason WHY  # who and why, audited",
                f"{base}  # then the stage goes on from {st.status} (with --apply, as before)"]
    ways = {PlanMode.REAL: "", PlanMode.REHEARSAL: " --rehearse"}
    modes = [PlanMode(p.mode)] if p.mode else [PlanMode.REAL, PlanMode.REHEARSAL]
    out = []
    for mode in modes:
        label, _ = move.says(mode == PlanMode.REHEARSAL)
        if st.status == READY and mode == PlanMode.REAL:
            out.append(f"{base} --apply  # meshstep applies the YAML above itself (server-side, checked first)")
            out.append(f"{base} --gitops  # or commit its file from `meshstep plan export`: meshstep waits for Argo CD "
                       "or Flux to apply it, then bakes it")
            label = f"or apply it yourself (kubectl apply -f -), then: {label}"
        where = ("" if len(modes) == 1 else
                 " on the cluster" if mode == PlanMode.REAL else " as a rehearsal, on the plan's copy of the cluster")
        out.append(f"{base}{ways[mode]}  # {label}{where}")
    if len(modes) > 1:
        out.append("(the plan's first advance fixes its mode: it is walked on the cluster or rehearsed, never both)")
    if not gate_passed and st.status in (PLANNED, BLOCKED, ROLLED_BACK):
        out.insert(0, "fix what the gate found (the hints above), then:")
        out.append(f"{base} --override-reason WHY  # or go past the gate, with a reason the audit trail keeps")
    return out


ApplyOpt = Annotated[bool, typer.Option("--apply", help="meshstep applies the stage itself: a server-side dry run, "
                                                        "then server-side apply as field manager meshstep, never "
                                                        "forced, all objects or none; then waits for Istio, bakes it "
                                                        "on traffic and rolls it back by itself on a regression "
                                                        "(needs --source context:NAME).")]
GitOpsOpt = Annotated[bool, typer.Option("--gitops", help="GitOps applies the stage: Argo CD or Flux syncs the "
                                                          "export (meshstep plan export) you committed; meshstep waits "
                                                          "until the cluster holds the stage's objects as rendered "
                                                          "(MESHSTEP_GITOPS_TIMEOUT), then waits for Istio and bakes "
                                                          "as --apply does; a regression stops with the rollback to "
                                                          "commit (needs --source context:NAME).")]
ShadowOpt = Annotated[bool, typer.Option("--shadow-authz", help="With --apply: authorization stages run first in "
                                                                "shadow (istio.io/dry-run), are baked on what they "
                                                                "would deny, then enforced.")]
VerifyOpt = Annotated[list[str] | None, typer.Option("--verify", help="A verification threshold for this advance, "
                                                     "key=value, over the plan's own (repeatable; see README, "
                                                     "Telemetry).")]


def _operator(source: str | None, shadow: bool, gitops: bool = False) -> Any:
    """How --apply (or --gitops) reaches the cluster the plan is read from, its progress on stderr."""
    from planner.operate import operator_for

    return operator_for(source, lambda line: echo(line, err=True), shadow, gitops)


@plan_app.command("advance")
def plan_advance(
    override_reason: Annotated[str | None, typer.Option("--override-reason",
                                                        help="Go past a failing gate; the reason is audited.")] = None,
    rehearse: Annotated[bool, typer.Option("--rehearse", help="Apply the stage's YAML to the plan's overlay (a copy "
                                                              "of the cluster) instead of waiting for a real apply; "
                                                              "a plan's first advance fixes its mode.")] = False,
    apply: ApplyOpt = False, shadow_authz: ShadowOpt = False, gitops: GitOpsOpt = False,
    name: NameOpt = None, source: SourceOpt = None, cluster: ClusterOpt = None, db: DbOpt = None,
    actor: ActorOpt = None, prometheus: PrometheusOpt = None, telemetry: TelemetryOpt = None,
    window: WindowOpt = "1h", verify: VerifyOpt = None,
) -> None:
    """Move the current stage on: planned → ready (gate) → applied → verified (exit check) → done."""
    from planner import moves
    from state.models import StageStatus

    operator = _operator(source, shadow_authz, _one_way(apply, gitops)) if apply or gitops else None
    with _plan(name, source, cluster, db) as (inv, store, p):
        ev = load_evidence(prometheus, telemetry, window, inv, verify)
        st = moves.advance(store, p, inv, actor_name(actor), override_reason, rehearse, ev, operator)
        complete = _completion(store, p)
    verification = st.record.verification if st.status == StageStatus.VERIFIED else None
    for line in (verification or {}).get("lines", ()):
        echo(line, err=True)  # the traffic before and after, or why it was not compared
    echo(f"stage {st.order} ({safe.shown(st.title)}): {st.status}" + (" (rehearsal)" if rehearse else ""))
    if complete:
        echo(complete)


def _one_way(apply: bool, gitops: bool) -> bool:
    """Whether GitOps applies the stages; refused when both ways are asked."""
    if apply and gitops:
        raise typer.BadParameter("--apply (meshstep applies) and --gitops (Argo CD or Flux applies) are the two ways "
                                 "to apply a stage: pass one")
    return gitops


@plan_app.command("run")
def plan_run(
    apply: ApplyOpt = False, shadow_authz: ShadowOpt = False, gitops: GitOpsOpt = False,
    until: Annotated[int | None, typer.Option("--until", help="Stop once this stage is done.")] = None,
    count: Annotated[int | None, typer.Option("--stages", help="Stop once this many stages are done.")] = None,
    name: NameOpt = None, source: SourceOpt = None, cluster: ClusterOpt = None, db: DbOpt = None,
    actor: ActorOpt = None, prometheus: PrometheusOpt = None, telemetry: TelemetryOpt = None,
    window: WindowOpt = "1h", verify: VerifyOpt = None,
) -> None:
    """Walk the plan's stages on the cluster, continuously, each applied by meshstep (--apply) or by GitOps
    (--gitops), baked and verified; the first gate failure, approval needed, refusal by the API server, GitOps not
    coming in time or regression stops the walk (exit 1)."""
    from planner import moves

    if not apply and not gitops:
        raise typer.BadParameter("plan run applies stages: pass --apply (meshstep applies them) or --gitops (Argo CD "
                                 "or Flux does), or walk them with plan advance")
    operator = _operator(source, shadow_authz, _one_way(apply, gitops))
    with _plan(name, source, cluster, db) as (_inv, store, p):
        done = moves.run(store, p, lambda: load_inventory(source), actor_name(actor), operator,
                         lambda inv: load_evidence(prometheus, telemetry, window, inv, verify), until, count)
        complete = _completion(store, p)
    if done.refusal is not None:
        raise done.refusal
    if complete:
        echo(complete)


@plan_app.command("resume")
def plan_resume(
    reason: Annotated[str, typer.Option("--reason", help="What was found and fixed: kept in the audit trail.")] = "",
    name: NameOpt = None, cluster: ClusterOpt = None, db: DbOpt = None, source: SourceOpt = None,
    actor: ActorOpt = None,
) -> None:
    """Resume a plan stopped after a stage was rolled back by itself: meshstep applies its stages again (--apply)."""
    from planner import stages

    with open_store(db) as store:
        p = stages.find_plan(store, cluster_name(cluster, source), name)
        store.resume_plan(p.id, actor_name(actor), reason)
    echo(f"plan {_title(p)} resumed: `meshstep plan run --apply` (or advance --apply) goes on from stage "
         f"{p.stopped.get('stage') if p.stopped else '?'}")


@plan_app.command("rehearse")
def plan_rehearse(
    to: Annotated[int | None, typer.Option("--to", help="Stop once this stage is done (default: the last).")] = None,
    name: NameOpt = None, source: SourceOpt = None, cluster: ClusterOpt = None, db: DbOpt = None,
    actor: ActorOpt = None, prometheus: PrometheusOpt = None, telemetry: TelemetryOpt = None,
    window: WindowOpt = "1h",
) -> None:
    """Walk the plan's stages on its overlay to done (or --to a stage): every gate, invariant and exit check runs,
    nothing is overridden; the first failure stops the walk with its findings and exit status 1."""
    from planner import moves

    with _plan(name, source, cluster, db) as (inv, store, p):
        done = moves.rehearse(store, p, inv, actor_name(actor), to, load_evidence(prometheus, telemetry, window, inv))
        complete = _completion(store, p)
    for st in {st.order: st for st in done.moves}.values():  # where each stage it moved was left
        echo(f"stage {st.order} ({safe.shown(st.title)}): {st.status} (rehearsal)")
    if done.refusal is not None:
        raise done.refusal
    if complete:
        echo(complete)


@plan_app.command("rollback")
def plan_rollback(
    reason: Annotated[str, typer.Option("--reason", help="Why: kept in the audit trail.")] = "",
    apply: Annotated[bool, typer.Option("--apply", help="A stage meshstep applied (--apply) is put back on the "
                                                        "cluster by meshstep: each object as it was before it.")]
    = False,
    gitops: Annotated[bool, typer.Option("--gitops", help="A stage GitOps applied (--gitops): waits until the cluster "
                                                          "holds the rollback you committed, then records it.")]
    = False,
    name: NameOpt = None, source: SourceOpt = None, cluster: ClusterOpt = None, db: DbOpt = None,
    actor: ActorOpt = None,
) -> None:
    """Roll back the plan's stage in flight (else its last done): flags restored; prints the YAML that undoes it
    (with --apply, puts a stage meshstep applied back on the cluster itself)."""
    from planner import moves

    operator = _operator(source, False, _one_way(apply, gitops)) if apply or gitops else None
    with _plan(name, source, cluster, db) as (inv, store, p):
        done = moves.rollback(store, p, inv, actor_name(actor), reason, operator)
    echo(f"# {safe.message(done.said)}", err=True)
    if done.undo_yaml:
        echo(done.undo_yaml)


@plan_app.command("add")
def plan_add(
    feature: Annotated[str, typer.Argument(help="Feature id (meshstep features).")],
    scope: Annotated[str, typer.Option("--scope", help="'mesh' or a namespace.")] = "mesh",
    sets: Annotated[list[str] | None, typer.Option("--set", help="key=value parameter")] = None,
    title: Annotated[str | None, typer.Option("--title")] = None,
    goal: Annotated[str, typer.Option("--goal", help="The problem this stage solves, in your words.")] = "",
    name: NameOpt = None, source: SourceOpt = None, cluster: ClusterOpt = None, db: DbOpt = None,
    actor: ActorOpt = None,
) -> None:
    """Append a stage to a plan (a `custom` plan is built this way); order rules are enforced."""
    from planner import stages

    feat, params = feature_params(feature, sets)
    with _plan(name, source, cluster, db) as (inv, store, p):
        st = stages.add_stage(store, p, inv, title or f"{feat.title} in {scope}", goal or feat.problem,
                              [planner.plan.Step(feature, scope, params)], actor_name(actor))
    echo(f"stage {st.order} added: {safe.shown(st.title)}")


@plan_app.command("export")
def plan_export(directory: Annotated[Path, typer.Argument(help="Where to write the stages' YAML.")],
                name: NameOpt = None, source: SourceOpt = None, cluster: ClusterOpt = None,
                db: DbOpt = None) -> None:
    """Write every stage's YAML and rollback as numbered files for a GitOps repository: applied in order, they
    give the cluster the plan ends with."""
    from planner import export

    with _plan(name, source, cluster, db) as (inv, _store, p):
        written = export.stage_files(p, inv)
    directory.mkdir(parents=True, exist_ok=True)
    for fname, text in written.files.items():
        (directory / fname).write_text(text)
        echo(directory / fname)
    for line in written.skipped:
        echo(f"# no file: {safe.message(line)}", err=True)
