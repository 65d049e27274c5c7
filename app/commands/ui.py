"""`meshstep ui`: the web app (Streamlit) on this machine, reading the same source and database as the CLI."""
from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from app.commands import DbOpt, PrometheusOpt, SourceOpt, TelemetryOpt, cli, echo
from cluster.errors import MeshstepError
from cluster.snapshot import FILE_LIMIT

APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"
TELEMETRY_ENV = "MESHSTEP_TELEMETRY"
STATIC_READ = 4 << 20  # bytes a served file is read in at most (Starlette's default: 64 KiB)
# What every first page runs (the app's helpers, the state database's models, the plan and drift the Overview shows)
# and pandas and pyarrow, which any table or chart needs: imported before the server listens (1-1.2 s on this
# 2-CPU machine), so that a server that answers is ready to serve. Imported after, they were work for the one
# interpreter while the first browser downloaded and started the app's JavaScript on the same CPUs.
FIRST_PAGE_MODULES = ("app.ui", "pandas", "pyarrow", "sqlmodel", "state.store", "state.drift", "planner.stages")


def streamlit_args(port: int, address: str, auth: Path | None = None) -> list[str]:
    """`streamlit run` arguments: headless (no browser opened), no usage statistics sent anywhere; sign-in
    configured by the secrets file `auth` (app/access.py) when given."""
    return ["run", str(APP), "--server.port", str(port), "--server.address", address, "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--global.developmentMode", "false",
            # A viewer's toolbar (no Deploy button); the installed app's files do not change while it runs.
            "--client.toolbarMode", "viewer", "--server.fileWatcherType", "none",
            # An upload is a snapshot file: no larger than meshstep would read one (MESHSTEP_MAX_FILE_MB).
            "--server.maxUploadSize", str(FILE_LIMIT.value),
            *(["--secrets.files", str(auth)] if auth else [])]


def _listening(address: str, port: int, timeout: float = 60) -> None:
    """Return once the server accepts connections on address:port (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((address, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)


def _warm_up(address: str, port: int) -> None:
    """Read what the Overview shows of the source and open the database as soon as the server listens, so that the
    first page does not wait for it (on a 10,000-pod cluster read for the first time that is seconds:
    benchmarks/app.py). A page that asks meanwhile waits for this reading instead of making its own (Streamlit locks
    a cached value while it is computed). Not before the server listens: unlike the imports (FIRST_PAGE_MODULES), a
    reading takes as long as the cluster is large, and would delay the address answering at all (a browser opened on
    it meanwhile shows "connection refused"), where now it shows the page reading."""
    # Outside a script run, Streamlit warns on every st call; these calls only fill caches.
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(logging.ERROR)
    _listening("127.0.0.1" if address in ("0.0.0.0", "") else "::1" if address == "::" else address, port)
    from app import ui
    from cluster.inventory import freeze

    src = os.environ.get(ui.SOURCE_ENV)
    _quietly(ui.warm_up, src, os.environ.get("MESHSTEP_DATABASE_URL"))
    # What the server holds now (the inventory, the modules the first page runs) is out of the collector's sight
    # before that page runs: else Streamlit's full collection after each script run walks it (once over, its
    # "finished" reaches the browser only after that collection), and so does each one the page's work sets off.
    freeze()
    # What the first page does not show (the inventory, the Inventory page's tables: 0.7 s on 10,000 pods) waits for
    # it to be served and drawn: the browser then fetches its tables' and metrics' code from this interpreter, which
    # that work would hold (benchmarks/app.py, restarted: median 2.33 s without the wait, 2.23 s with it).
    ui.SERVED.wait(timeout=_FIRST_PAGE_WAIT)
    time.sleep(_FIRST_PAGE_DRAWN)
    for module in ("state.audit", "planner.moves"):
        importlib.import_module(module)
    _quietly(ui.warm_up_pages, src)
    # What the server keeps from here on (modules, the caches just filled) is out of the collector's sight: else each
    # full collection during a page's run walks all of it again (0.05-0.09 s each, several a first visit).
    freeze()


# How long the warm-up waits for a first page before it builds the other pages' caches anyway, and how long after
# the first page's run its drawing takes (its elements' code fetched and compiled, its tables drawn).
_FIRST_PAGE_WAIT = 60
_FIRST_PAGE_DRAWN = 2.0


def _quietly(fill, *args) -> None:
    """Fill a cache; a failure is the page's to read again and show with what the user can do about it."""
    try:
        fill(*args)
    except Exception:
        logging.getLogger("meshstep.ui").debug("warm-up failed", exc_info=True)


class PortInUse(MeshstepError):
    """The address and port `meshstep ui` was asked to serve on cannot be bound."""


def check_port(address: str, port: int) -> None:
    """Raise PortInUse unless `address:port` can be bound now: Streamlit would fail only after the URL is printed
    (and the warm-up has started reading the source)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # As Tornado binds it: a port left in TIME_WAIT by a server just stopped is free to take.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as e:
            raise PortInUse(f"cannot serve on {address}:{port}: {e.strerror or e} — another program (or meshstep "
                            f"ui) is using that port; stop it, or choose another with --port") from None


@cli.command()
def ui(
    port: Annotated[int, typer.Option("--port", "-p", help="Port to serve the app on.")] = 8501,
    address: Annotated[str, typer.Option("--address", help="Address to listen on (0.0.0.0 exposes the app to the "
                                                            "network: without --auth it has no sign-in).")]
    = "127.0.0.1",
    source: SourceOpt = None, db: DbOpt = None,
    allow_path: Annotated[list[Path] | None, typer.Option(
        "--allow-path", help="A directory whose files and subdirectories visitors may read as a source "
                             "(repeatable; none by default: they can upload a snapshot).")] = None,
    prometheus: PrometheusOpt = None, telemetry: TelemetryOpt = None,
    auth: Annotated[Path | None, typer.Option(
        "--auth", help="Sign-in with OpenID Connect: a secrets file (TOML) with Streamlit's [auth] section and "
                       "meshstep's [meshstep.roles] (README: Sign-in and roles). Without it the app serves one "
                       "local user.")] = None,
) -> None:
    """Run the web app: overview, inventory, plan, features, components, audit (Ctrl-C stops it)."""
    from streamlit.web import cli as streamlit_cli

    # The app (app/ui.py) reads them from the environment: Streamlit passes no arguments to pages.
    if source:
        os.environ["MESHSTEP_SOURCE"] = source
    if db:
        os.environ["MESHSTEP_DATABASE_URL"] = db
    if prometheus and telemetry:
        raise MeshstepError("give either --prometheus or --telemetry, not both")
    if prometheus or telemetry:  # each session's telemetry until changed on the Settings page (app/traffic.py)
        os.environ[TELEMETRY_ENV] = prometheus or telemetry
    for p in allow_path or ():
        if not p.is_dir():
            raise MeshstepError(f"--allow-path {p}: not a directory")
    os.environ["MESHSTEP_ALLOW_PATHS"] = os.pathsep.join(str(p.resolve()) for p in allow_path or ())
    if auth and not auth.is_file():
        raise MeshstepError(f"--auth {auth}: no such file (a secrets TOML file with an [auth] section)")
    check_port(address, port)
    # Streamlit checks once per process, on the first element a page draws, whether it runs in a REPL: it walks the
    # stack and resolves the path of every module loaded (0.1-0.3 s of the first page's run). Under `meshstep ui` it
    # never does: the answer is known, before the first page can ask.
    from streamlit import delta_generator

    delta_generator._use_warning_has_been_displayed = True
    # Streamlit serves its frontend's files (about 60 on a first visit, 3.3 MB) through Starlette's FileResponse,
    # which reads a file 64 KiB at a time, each read a trip to a worker thread and back into this one interpreter,
    # which the warm-up keeps busy meanwhile: read whole, the largest (0.86 MB) is one trip instead of 14.
    from starlette.responses import FileResponse

    FileResponse.chunk_size = STATIC_READ
    for module in FIRST_PAGE_MODULES:
        importlib.import_module(module)
    echo(f"meshstep ui on http://{address}:{port}  (Ctrl-C to stop)", err=True)
    threading.Thread(target=_warm_up, args=(address, port), name="meshstep-warm-up", daemon=True).start()
    # In this process (not a child): SIGTERM and Ctrl-C reach Streamlit's own handlers, which stop the server.
    streamlit_cli.main(args=streamlit_args(port, address, auth.resolve() if auth else None), prog_name="streamlit",
                       standalone_mode=False)
