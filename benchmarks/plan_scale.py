"""Plans and answers at the size of a real cluster (issue 28), on the 10,000-pod synthetic cluster: the stages of
the routing-first and security-first plans in waves, `meshstep plan rehearse` of the whole routing-first plan, and
`status`, `render` and `plan next` with the decoded-inventory cache cold, warm and turned off, and `plan next`
where the rehearsal stopped (its overlay read from the cache). Prints figures, not
pass/fail, each with the load average it was measured at (the machine is shared).

    python -m benchmarks.plan_scale [--snapshot FILE] [--done-snapshot FILE] [--runs 3] [--skip-rehearse]

The synthetic cluster has workloads that opt out of injection; they name no Service of the cluster, so its plan's
STRICT stages warn of them (MST0406) and the rehearsal goes to done (before the STRICT gate judged such a pod by what
it calls, MST0401 refused it there and the rehearsal stopped at stage 12). The same rehearsal is measured on the
cluster without them (`benchmarks.synthetic --no-opt-outs`, or --done-snapshot), for comparison.

Every command runs as a user runs it, `python -m app.cli …` in a process of its own, with a throwaway cache
directory (MESHSTEP_CACHE_DIR) and database: cold is the first command over the snapshot (it reads the snapshot and
keeps it in the cache), warm the ones after it, off the same command with MESHSTEP_CACHE=off (as before the cache).
Wall seconds are the median of `--runs`; CPU seconds (user + system) are the command's own. The commands run
from compiled bytecode, as an installed meshstep does: PYTHONDONTWRITEBYTECODE is dropped from their environment
(with it set, each command compiles meshstep's own modules again, 0.1–0.15 s of CPU).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"stages": 40, "rehearse": 60.0, "warm": 1.5}


def _load() -> str:
    return "load " + "/".join(f"{x:.1f}" for x in os.getloadavg())


def _env(tmp: Path) -> dict[str, str]:
    """The commands' environment: a throwaway cache, and bytecode written and read as a user's install has it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return env | {"MESHSTEP_CACHE_DIR": str(tmp / "cache")}


def _run(args: list[str], env: dict[str, str], check: bool = False) -> tuple[float, float, int, str]:
    """Wall and CPU seconds of `meshstep ARGS` in a process of its own, its exit status and its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if check and done.returncode != 0:
        sys.exit(f"meshstep {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, cpu, done.returncode, done.stdout + done.stderr


def stages(snapshot: Path) -> None:
    """The two templates' plans on the cluster: stage count, namespaces covered, the pilot and why."""
    from cluster.inventory import build_inventory
    from cluster.sources import load_snapshot
    from planner.plan import default_namespaces, new_plan

    inv = build_inventory(load_snapshot(str(snapshot)))
    targets = default_namespaces(inv)
    for template in ("routing-first", "security-first"):
        start = time.perf_counter()
        draft = new_plan(template, inv)
        took = time.perf_counter() - start
        waves = draft.waves
        print(f"{template}: {len(draft.stages)} stages (goal ≤ {GOALS['stages']}), waves "
              f"{' → '.join(str(len(g)) for g in waves.groups) if waves else 'none'}; made in {took:.1f} s "
              f"[{_load()}]")
        for feature in ("sidecar-injection", "mtls-strict", "authorization-policy"):
            staged = {s.scope for st in draft.stages for s in st.steps if s.feature == feature and s.scope != "mesh"}
            left = {x.scope for x in draft.left_out if x.feature == feature}
            print(f"  {feature}: {len(staged)} namespaces in its stages + {len(left)} left out with the reason = "
                  f"{len(staged | left)} of {len(targets)}")
        if waves:
            print(f"  pilot {', '.join(waves.groups[0])}: " + "; ".join(waves.pilot_reasons))


def commands(snapshot: Path, tmp: Path, runs: int) -> None:
    """status, render and plan next: cache off, cold, warm."""
    env = _env(tmp)
    db = f"sqlite:///{tmp / 'state.db'}"
    src = ["--source", str(snapshot)]
    _run(["plan", "new", "--name", "bench", *src, "--db", db], {**env, "MESHSTEP_CACHE": "off"}, check=True)
    todo = {"status": ["status", *src], "render": ["render", "mtls-permissive", *src],
            "plan next": ["plan", "next", "--name", "bench", *src, "--db", db]}
    print(f"{'seconds (wall / cpu)':<22}{'cache off':>20}{'cold':>20}{'warm':>20}   (median of {runs}; goal warm < "
          f"{GOALS['warm']} s)")
    for name, args in todo.items():
        off = [_run(args, {**env, "MESHSTEP_CACHE": "off"}) for _ in range(runs)]
        for entry in (tmp / "cache").glob("*"):
            entry.unlink()
        cold = [_run(args, env)]
        warm = [_run(args, env) for _ in range(runs)]
        row = [f"{statistics.median(w for w, *_ in r):.2f} / {statistics.median(c for _, c, *_ in r):.2f}"
               for r in (off, cold, warm)]
        print(f"{name:<22}{row[0]:>20}{row[1]:>20}{row[2]:>20}   [{_load()}]")


def rehearse(snapshot: Path, tmp: Path, what: str, follow: bool = True) -> None:
    """`plan rehearse` of a new routing-first plan on `snapshot` (`what` it is), to done or to its first refusal;
    then (`follow`) `plan next` where it ended."""
    env = _env(tmp)
    db = f"sqlite:///{tmp / f'rehearse-{snapshot.stem}.db'}"
    src = ["--source", str(snapshot), "--db", db]
    _run(["plan", "new", "--name", "walk", *src], env, check=True)
    wall, cpu, rc, out = _run(["plan", "rehearse", "--name", "walk", *src], env)
    moved = [line for line in out.splitlines() if line.startswith("stage ") and line.endswith("(rehearsal)")]
    end = "to done" if rc == 0 and "is complete" in out else "stopped: " + next(
        (line for line in out.splitlines() if line.startswith("error:")), f"exit status {rc}")
    print(f"plan rehearse (routing-first) on {what}: {wall:.1f} s wall, {cpu:.1f} s CPU (goal < "
          f"{GOALS['rehearse']:.0f} s), {len(moved)} stages moved (those between them were found on), {end} "
          f"[{_load()}]")
    # plan next where the rehearsal stopped: the first reads the overlay the rehearsal kept in the cache
    for i in (1, 2) if follow else ():
        wall, cpu, _, out = _run(["plan", "next", "--name", "walk", *src], env)
        print(f"plan next on the rehearsed plan ({out.splitlines()[0][:60]}…), run {i}: {wall:.2f} s wall, "
              f"{cpu:.2f} s CPU [{_load()}]")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", type=Path, help="a snapshot to read (default: generate the synthetic cluster)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--done-snapshot", type=Path,
                        help="the cluster without opt-outs, rehearsed too for comparison (default: generate the "
                             "synthetic cluster with --no-opt-outs)")
    parser.add_argument("--skip-rehearse", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meshstep-bench-") as d:
        tmp = Path(d)
        snapshot = args.snapshot or _generate(tmp / "cluster.json")
        print(f"snapshot {snapshot} ({snapshot.stat().st_size / 1e6:.0f} MB), {os.cpu_count()} CPUs, {_load()}")
        stages(snapshot)
        commands(snapshot, tmp, args.runs)
        if not args.skip_rehearse:
            rehearse(snapshot, tmp, "the cluster (some workloads opt out of injection, calling no Service of the "
                                    "cluster: STRICT warns of them, MST0406)")
            done = args.done_snapshot or _generate(tmp / "no-opt-outs.json", "--no-opt-outs")
            rehearse(done, tmp, f"{done.name} (no workload opts out of injection)", follow=False)


def _generate(out: Path, *options: str) -> Path:
    """The synthetic cluster (benchmarks.synthetic with `options`), written to `out`."""
    subprocess.run([sys.executable, "-m", "benchmarks.synthetic", "--out", str(out), *options], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return out


if __name__ == "__main__":
    main()
