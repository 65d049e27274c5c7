"""The fleet: where each of several clusters stands with Istio, read side by side.

Each cluster is read in a process of its own (decoding a cluster's JSON is CPU work, which one interpreter's
threads do one at a time; its pods are decoded typed, only the fields meshstep reads), and each has its own
deadline: a cluster that does not answer in time, refuses every list or cannot be reached is a failed row with its
reason, never the end of the others. The team's records (flags, plans) come from the one state database, keyed by
each cluster's name."""
from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from functools import cache
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cluster import cache as inventory_cache
from cluster import revisions
from cluster.errors import MeshstepError, SourceError
from cluster.inventory import Inventory
from cluster.snapshot import NotVisible
from cluster.sources import source_label
from features.base import Observation, observe, unknown_features

if TYPE_CHECKING:
    from state.store import Store

DEADLINE = 60.0  # seconds per cluster, by default


@dataclass(frozen=True)
class Member:
    """One cluster of the fleet: the name its records are kept under and the source it is read from."""

    name: str
    source: str


@dataclass(frozen=True)
class Reading:
    """What a cluster showed when read: versions, mesh membership, the features detection finds on, and what the
    source could not show. Made once per content of a snapshot (`reading`): a fleet of unchanged snapshots, and the
    app's first page, need not decode their inventories."""

    istio_version: str | None  # the newest revision's
    versions: tuple[str, ...]  # every revision's, oldest first: two while an upgrade is in progress
    revisions: tuple[str, ...]  # "revision (version)", oldest first
    headline: str
    mesh: dict[str, int]  # Inventory.mesh_summary
    observed: tuple[Observation, ...]
    forbidden: tuple[str, ...]  # kinds the API refused to list: what the reading could not show
    source: str  # the source's label: the name the cluster's records are kept under
    cluster: bool  # a whole cluster (live, demo), not a set of manifests
    installed: bool  # Istio's CRDs or an istiod
    root_namespace: str
    upgrade: revisions.Upgrade | None  # two revisions side by side: how far the move has gone
    not_visible: tuple[NotVisible, ...]  # kinds the source could not read, and why
    unknown: dict[str, str]  # feature id → why it cannot be told off (features.base.unknown_features)


@dataclass(frozen=True)
class ClusterStatus:
    """One row of the fleet: a reading and the team's records for it, or why it could not be read."""

    name: str
    source: str
    seconds: float
    reading: Reading | None = None
    error: str | None = None
    recorded: tuple[str, ...] = ()  # feature@scope of the flags recorded on
    drift: tuple[Any, ...] = ()  # state.drift.Drift
    plan: str | None = None
    stage: str | None = None  # "2/5 Strict mTLS (applied)"; None when no plan, "complete" when done
    timed_out: bool = False  # its read was stopped at the deadline

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cluster": self.name, "source": self.source, "ok": self.ok, "error": self.error,
                               "seconds": round(self.seconds, 3)}
        if self.reading is not None:
            r = self.reading
            out |= {"istio_version": r.istio_version, "versions": list(r.versions), "revisions": list(r.revisions),
                    "headline": r.headline,
                    **r.mesh, "observed": [o.to_json() for o in r.observed], "recorded": list(self.recorded),
                    "drift": [d.to_json() for d in self.drift], "plan": self.plan, "stage": self.stage,
                    "forbidden": list(r.forbidden)}
        return out

    def row(self) -> dict[str, Any]:
        """The fleet table's row."""
        if self.reading is None:
            return {"cluster": self.name, "status": "failed", "istio": None, "revisions": None, "namespaces": None,
                    "pods": None, "observed": None, "recorded": None, "drift": None, "plan": None, "stage": None}
        r, m = self.reading, self.reading.mesh
        return {"cluster": self.name, "status": "ok", "istio": r.istio_version, "revisions": list(r.revisions),
                "namespaces": f"{m['namespaces_in_mesh']}/{m['namespaces_total']}",
                "pods": f"{m['pods_in_mesh']}/{m['pods_total']}", "observed": len(r.observed),
                "recorded": len(self.recorded), "drift": len(self.drift), "plan": self.plan, "stage": self.stage}


def members(contexts: Sequence[str] = (), sources: Sequence[str] = ()) -> list[Member]:
    """The fleet from kubeconfig context names and `NAME=SOURCE` (or bare SOURCE) items; a context's records are
    kept under `context:NAME`, as `--source context:NAME` keeps them, a named source's under its NAME."""
    out = [Member(f"context:{c}", f"context:{c}") for c in contexts]
    for item in sources:
        name, sep, src = item.partition("=")
        if sep and not (name and src):
            raise MeshstepError(f"--sources item {item!r}: write it as NAME=SOURCE (e.g. staging=./snap1) or SOURCE")
        out.append(Member(name, src) if sep else Member(source_label(item), item))
    seen: set[str] = set()
    for m in out:
        if m.name in seen:
            raise MeshstepError(f"cluster {m.name!r} is named twice in the fleet: give each source its own NAME=")
        seen.add(m.name)
    return out


def all_contexts() -> list[str]:
    """Every context of the kubeconfig ($KUBECONFIG, else ~/.kube/config), as kubectl lists them."""
    from kubernetes import config

    from cluster.kubeapi import kubeconfig_paths

    try:
        contexts, _current = config.list_kube_config_contexts(config_file=kubeconfig_paths())
    except (config.ConfigException, OSError, ValueError) as e:
        raise SourceError(f"cannot list the kubeconfig's contexts: {e}") from e
    return [c["name"] for c in contexts]


def read(member: Member, roots: Collection[Path] | None = None) -> Reading:
    """Read one cluster and observe its features (`reading`); raises MeshstepError. `roots`: the directories a path
    source may read (None: anywhere), as load_snapshot takes them."""
    return reading(member.source, roots)


# The rooms whose code decides a reading: a change to any of them makes every kept reading stale.
_READERS = ("cluster", "telemetry", "analysis", "explain", "features", "planner")


def reading(source: str, roots: Collection[Path] | None = None,
            inventory: Callable[[], Inventory] | None = None) -> Reading:
    """The reading of `source`: kept from the last time its content was read (cluster.cache.kept: a snapshot on
    disk, unchanged, read by this code), else made from its inventory (`inventory()`, else read through the cache)
    and kept; raises MeshstepError."""
    return inventory_cache.kept(
        source, roots, "reading", inventory_cache.code_of(_READERS), Reading,
        lambda: reading_of(inventory() if inventory else inventory_cache.inventory(source, roots=roots)))


def reading_of(inv: Inventory) -> Reading:
    """What `inv` shows (Reading); raises SourceError when the source refused every list."""
    if inv.visibility.forbidden and not inv.pods and not inv.namespaces:
        raise SourceError(f"{inv.source}: every list was refused (403 on {', '.join(inv.visibility.forbidden)}):"
                          " give the credentials list/watch on pods, namespaces and Istio's config")
    installed = revisions.installed(inv)
    return Reading(
        istio_version=inv.istio_version,
        versions=tuple(dict.fromkeys(r.version for r in installed if r.version)),
        revisions=tuple(f"{r.revision} ({r.version or '?'})" for r in installed),
        headline=revisions.headline(inv) if inv.istio_installed else "Istio: not installed",
        mesh=dict(inv.mesh_summary), observed=tuple(observe(inv)), forbidden=tuple(inv.visibility.forbidden),
        source=inv.source, cluster=inv.cluster, installed=inv.istio_installed, root_namespace=inv.root_namespace,
        upgrade=revisions.upgrade(inv), not_visible=tuple(inv.visibility.not_visible),
        unknown=unknown_features(inv))


def read_fleet(fleet: Sequence[Member], store: Store | None, deadline: float = DEADLINE) -> list[ClusterStatus]:
    """Every member read (read_all) with the team's records for it (with_records)."""
    rows = read_all(fleet, deadline)
    return with_records(rows, store) if store is not None else rows


# Reading a cluster is mostly CPU work (decoding its JSON), which threads of one interpreter do one at a time: each
# cluster is read in a process of its own, forked from a server process that has meshstep imported and no threads
# (so neither the import nor the app's server threads are copied into each), and killed if it passes its deadline.
_PRELOAD = ["planner.fleet", "kubernetes.client", "kubernetes.config", "planner.fleet_preload"]
MAX_READERS = 16  # clusters read at once: each reading process holds its cluster's inventory until it answers


@cache
def _processes() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _read_in_child(conn: Connection, member: Member, roots: Collection[Path] | None, env: dict[str, str],
                   cwd: str) -> None:
    """A reading process: read `member` as the caller would (its environment and directory: the fork server's
    may be older) and send back ("ok", Reading) or ("error", why)."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        answer: tuple[str, Any] = ("ok", read(member, roots))
    except MeshstepError as e:
        answer = ("error", str(e))
    except Exception as e:  # a cluster's unexpected failure is its row's, not the fleet's
        answer = ("error", f"{type(e).__name__}: {e}")
    conn.send(answer)
    conn.close()


def read_all(fleet: Sequence[Member], deadline: float = DEADLINE,
             roots: Callable[[str], Collection[Path] | None] | None = None) -> list[ClusterStatus]:
    """Every member read concurrently (up to MAX_READERS at once), each in a process of its own that has `deadline`
    seconds from its start; rows in the fleet's order. A read still running at its deadline is stopped and its row
    says it timed out. `roots(source)`: where a path source may read (see read)."""
    ctx = _processes()
    env, cwd = dict(os.environ), os.getcwd()
    rows: dict[int, ClusterStatus] = {}
    waiting = list(enumerate(fleet))
    running: dict[Connection, tuple[int, Member, Any, float]] = {}  # the answer's pipe → index, member, process, start
    try:
        while waiting or running:
            while waiting and len(running) < MAX_READERS:
                i, member = waiting.pop(0)
                receive, send = ctx.Pipe(duplex=False)
                process = ctx.Process(target=_read_in_child, name=f"meshstep-fleet-{member.name}", daemon=True,
                                      args=(send, member, roots(member.source) if roots else None, env, cwd))
                process.start()
                send.close()
                running[receive] = (i, member, process, time.monotonic())
            next_deadline = min(start + deadline for _i, _m, _p, start in running.values())
            for conn in wait(list(running), timeout=max(0.0, next_deadline - time.monotonic())):
                i, member, process, start = running.pop(conn)
                try:
                    status, value = conn.recv()
                except (EOFError, OSError):  # it died without answering (killed, out of memory)
                    process.join(1)
                    status, value = "error", f"the process reading it ended without an answer (exit code " \
                                             f"{process.exitcode})"
                seconds = time.monotonic() - start
                rows[i] = (ClusterStatus(member.name, member.source, seconds, value) if status == "ok" else
                           ClusterStatus(member.name, member.source, seconds, error=value))
                conn.close()
                process.join()
            now = time.monotonic()
            for conn, (i, member, process, start) in list(running.items()):
                if now >= start + deadline:
                    del running[conn]
                    process.kill()
                    process.join()
                    conn.close()
                    rows[i] = ClusterStatus(member.name, member.source, deadline, timed_out=True,
                                            error=f"no answer within the deadline of {deadline:g} s")
    finally:  # interrupted (Ctrl-C): no reading process outlives the fleet
        for conn, (_i, _m, process, _s) in running.items():
            process.kill()
            process.join()
            conn.close()
    return [rows[i] for i in range(len(fleet))]


def with_records(rows: Sequence[ClusterStatus], store: Store) -> list[ClusterStatus]:
    """The rows with each read cluster's recorded flags, drift and active plan from the state database."""
    from planner import stages
    from state.drift import compute_drift

    out = []
    for row in rows:
        if row.reading is None:
            out.append(row)
            continue
        flags = store.list_flags(row.name)
        try:
            plan = stages.find_plan(store, row.name)
        except MeshstepError:  # no active plan
            plan = None
        stage = None
        if plan is not None:
            current = stages.current_stage(plan)
            stage = (f"{current.order}/{len(plan.stages)} {current.title} ({current.status})"
                     if current is not None else "complete")
        out.append(replace(row, recorded=tuple(f"{f.feature}@{f.scope}" for f in flags if f.state == "on"),
                           drift=tuple(compute_drift(flags, row.reading.observed)),
                           plan=plan.name if plan is not None else None, stage=stage))
    return out


def known(store: Store) -> list[Member]:
    """The clusters the team's database knows a source for (recorded with set_cluster): the default fleet."""
    return [Member(c.name, c.source) for c in store.list_clusters() if c.source]


def parse(text: str) -> list[Member]:
    """A fleet written as the Fleet page and `--sources` take it: NAME=SOURCE or SOURCE items, separated by commas
    or lines."""
    return members(sources=[item.strip() for item in text.replace("\n", ",").split(",") if item.strip()])
