"""Seconds from the HTTP request to the Overview and the Inventory pages fully rendered in headless Chromium, on
the 10,000-pod synthetic cluster. Prints figures, not pass/fail (issue 28's goal: the first Overview of a freshly
started `meshstep ui` under 2 s, a warm visitor's under 1 s), with the machine's CPUs and load average before and
after: on a shared machine the load says what the figures are worth.

    python -m benchmarks.app [--snapshot FILE] [--pods 10000] [--runs 3] [--starts 5] [--cache off|cold|warm]
                             [--pages Overview]

For each page, `meshstep ui` is started afresh on a free loopback port, with that snapshot as its source and a
throwaway database, and a new browser profile opens the page:
- cold: the first load, sent as soon as the server answers — nothing cached anywhere: the server reads and
  builds the inventory (`meshstep ui` starts that at once; the page waits for it) and the page's tables, the
  browser downloads the app's JavaScript;
- second visitor: another browser profile then opens it: the server's caches are full, the browser's are empty;
- warm: that browser loads it again (a new session: a reload, or a second visit): every cache is full;
- restarted: `meshstep ui` is stopped and started afresh on the same address, with the cache and database the run
  left (the app has shown this snapshot before: what its Overview shows is kept, planner.fleet.reading), and the
  page is opened by a new browser profile ("new browser"), then, after another restart, by the browser of the warm
  loads ("returning browser": it keeps Streamlit's JavaScript, served as immutable, and its compiled code); `--starts`
  times each, printed as the median and the range.
Each figure runs from `page.goto` until the page's content is visible — the script run over, and every table and
chart it sent drawn (a table is a canvas drawn after the run) — and no error is shown; "shell" is the part of it
spent before Streamlit's frontend is up (JavaScript download and start, no server work). "From start" is the cold
load counted from launching `meshstep ui` instead: what the server does before it answers counts too.

`--cache` (cluster.cache, in a throwaway directory): `off` reads the snapshot each time, as before the cache;
`cold` starts with an empty cache (the server reads the snapshot and keeps it) and a database it creates, as the
first start ever does; `warm` has a command (`meshstep status`) read the snapshot and open the database first, so
that the freshly started server reads the inventory from the cache and finds the database at its schema, as it does
once any command or app has run (creating a database runs its migrations: alembic, 0.1-0.15 s of the first page's
CPU, once).

meshstep runs from compiled bytecode, as an installed meshstep does: PYTHONDONTWRITEBYTECODE is dropped from its
environment (with it set, as this machine's sessions set it, each start compiles meshstep's own modules again, 0.1 s
of the first page's CPU), as benchmarks.plan_scale does.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# What each page shows once it is drawn (the tables are canvases drawn after the script's run).
PAGES = {"Overview": ("", '[data-testid="stMetric"]', 4), "Inventory": ("inventory", '[data-testid="stDataFrame"]', 1)}
# The page's content visible: the script run over (Streamlit shows its status widget while it runs), and every table
# and chart the run sent drawn.
_DRAWN = """() => !document.querySelector('[data-testid="stStatusWidget"]')
    && [...document.querySelectorAll('[data-testid="stDataFrame"]')].every(t => t.querySelector('canvas'))
    && [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')].every(c => c.querySelector('canvas, svg'))"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cache_env(cache: str, snapshot: Path, tmp: Path) -> dict[str, str]:
    """The environment of `meshstep ui` for a `--cache` choice (for warm, the cache filled and the database made by
    a command first; else no database yet)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {
        "MESHSTEP_CACHE_DIR": str(tmp / "cache")}
    for db in tmp.glob("state.db*"):
        db.unlink()
    if cache == "off":
        return env | {"MESHSTEP_CACHE": "off"}
    for entry in (tmp / "cache").glob("*"):
        entry.unlink()
    if cache == "warm":
        subprocess.run([sys.executable, "-m", "app.cli", "status", "--source", str(snapshot), "--db", _db(tmp)],
                       cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return env


def _db(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'state.db'}"


def _start(snapshot: Path, tmp: Path, env: dict[str, str], port: int) -> tuple[subprocess.Popen, str, float]:
    """`meshstep ui` on `port`, once it answers; and when it was launched."""
    launched = time.perf_counter()
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "ui", "--port", str(port), "--source", str(snapshot),
                             "--db", _db(tmp)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1):
                return proc, url, launched
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"meshstep ui exited:\n{(tmp / 'server.log').read_text()}")
            time.sleep(0.2)
    sys.exit("meshstep ui did not start within 60 s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()  # meshstep ui passes it on to streamlit
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()


def _load(page: Page, url: str, selector: str, count: int) -> tuple[float, float, float]:
    """Seconds from the request to `count` elements matching `selector` shown and the script run over, the seconds
    of it before the frontend was up, and when it was over."""
    start = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_selector('[data-testid="stApp"]', timeout=300_000)
    shell = time.perf_counter() - start
    page.wait_for_function(f"() => document.querySelectorAll('{selector}').length >= {count}", timeout=300_000,
                           polling=20)
    page.wait_for_function(_DRAWN, timeout=300_000, polling=20)
    elapsed = time.perf_counter() - start
    if page.get_by_test_id("stException").count() or page.get_by_test_id("stAlertContentError").count():
        sys.exit(f"{url} shows an error: " + page.locator('[data-testid="stMain"]').inner_text()[:2000])
    return elapsed, shell, time.perf_counter()


def _cpu_seconds(pid: int) -> float:
    """The CPU seconds (user and system) process `pid` has used (Linux's /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", type=Path, help="a snapshot to read (default: generate the synthetic cluster)")
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3, help="warm loads per page (the median is printed)")
    parser.add_argument("--cache", choices=("off", "cold", "warm"), default="off",
                        help="the decoded-inventory cache when meshstep ui starts (see above)")
    parser.add_argument("--pages", nargs="+", choices=list(PAGES), default=list(PAGES))
    parser.add_argument("--starts", type=int, default=5,
                        help="fresh starts of meshstep ui, each opened by a new and by a returning browser")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        sys.exit(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")

    with tempfile.TemporaryDirectory(prefix="meshstep-bench-") as d:
        tmp = Path(d)
        snapshot = args.snapshot
        if snapshot is None:
            snapshot = tmp / "cluster.json"
            subprocess.run([sys.executable, "-m", "benchmarks.synthetic", "--out", str(snapshot), "--pods",
                            str(args.pods)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        print(f"snapshot {snapshot} ({snapshot.stat().st_size / 1e6:.0f} MB), {os.cpu_count()} CPUs, cache "
              f"{args.cache}, load average {_load_average()} (1, 5, 15 min) before")
        results = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            for name in args.pages:
                path, selector, count = PAGES[name]
                port = _free_port()
                env = _cache_env(args.cache, snapshot, tmp)
                proc, url, launched = _start(snapshot, tmp, env, port)
                try:
                    loads, cpu = [], [0.0]
                    for _ in range(2):  # the first browser profile loads it cold, the second as a new visitor
                        context = browser.new_context(viewport={"width": 1400, "height": 1000})
                        page = context.new_page()
                        loads.append(_load(page, f"{url}/{path}", selector, count))
                        cpu.append(_cpu_seconds(proc.pid))
                    warm = [_load(page, f"{url}/{path}", selector, count) for _ in range(args.runs)]
                finally:
                    _stop(proc)
                new, returning = [], []
                for _ in range(args.starts):  # a server started afresh for each, and for each browser
                    for browsed, into in ((browser.new_context(viewport={"width": 1400, "height": 1000}), new),
                                          (context, returning)):
                        proc, url, _ = _start(snapshot, tmp, env, port)
                        try:
                            into.append(_load(browsed.pages[0] if browsed.pages else browsed.new_page(),
                                              f"{url}/{path}", selector, count))
                        finally:
                            if browsed is not context:
                                browsed.close()
                            _stop(proc)
                context.close()
                results[name] = ([*loads, *warm], new, returning), loads[0][2] - launched, (cpu[1], cpu[2] - cpu[1])
            browser.close()
    print(f"load average {_load_average()} after")
    print(f"{'seconds':<10}{'cold':>16}{'from start':>12}{'2nd visitor':>16}{'warm':>16}{'server CPU':>16}"
          f"   (in brackets: the frontend's start; warm: median of {args.runs})")
    for name, ((first_server, _, _), from_start, (first_cpu, second_cpu)) in results.items():
        cold, visitor, *warm = first_server
        row = [f"{total:.2f} ({shell:.2f})" for total, shell, _ in (cold, visitor, _median(warm))]
        print(f"{name:<10}{row[0]:>16}{from_start:>12.2f}{row[1]:>16}{row[2]:>16}"
              f"{f'{first_cpu:.2f} / {second_cpu:.2f}':>16}")
    print(f"restarted, {args.starts} starts: median (min-max) [the frontend's start, median]")
    for name, ((_, new, returning), _, _) in results.items():
        print(f"{name:<10}" + "".join(f"{kind}: {_median(loads)[0]:.2f} ({min(t for t, _, _ in loads):.2f}-"
                                      f"{max(t for t, _, _ in loads):.2f}) [{_median(loads, 1)[1]:.2f}]   "
                                      for kind, loads in (("new browser", new), ("returning browser", returning))))
    print("goal < 2 s. cold: the server's first request, as soon as it answers (it is still reading the cluster); "
          "from start:\nthe same, counted from launching meshstep ui; 2nd visitor: server caches full, browser cache "
          "empty;\nwarm: the same browser loads it again; server CPU: the meshstep ui process's CPU seconds from its "
          "launch to the\ncold page visible / during the 2nd visitor's load (what the load average does not "
          "change much);\nrestarted: a freshly started server's first request once the app has shown this snapshot, "
          "from a new browser\nprofile, and from one that has opened it before, each start a sample (on a 2-CPU "
          "machine one load varies by\n0.3 s either way: the median of several says what a user meets).")


def _median(loads: list[tuple[float, float, float]], at: int = 0) -> tuple[float, float, float]:
    """The load whose figure `at` (0: total, 1: the frontend's start) is the median (the upper one of an even count)."""
    return sorted(loads, key=lambda load: load[at])[len(loads) // 2]


if __name__ == "__main__":
    main()
