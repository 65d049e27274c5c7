"""`meshstep ui`: the web app (Streamlit) on this machine, reading the same source and database as the CLI."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from app.commands import DbOpt, SourceOpt, cli

APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"


def streamlit_command(port: int, address: str) -> list[str]:
    """The `streamlit run` command line: headless (no browser opened), no usage statistics sent anywhere."""
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.port", str(port), "--server.address", address, "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--global.developmentMode", "false",
            # A viewer's toolbar (no Deploy button); the installed app's files do not change while it runs.
            "--client.toolbarMode", "viewer", "--server.fileWatcherType", "none"]


def streamlit_env(source: str | None, db: str | None) -> dict[str, str]:
    """This process's environment, with the source and the database the app reads (app/ui.py)."""
    env = dict(os.environ)
    if source:
        env["MESHSTEP_SOURCE"] = source
    if db:
        env["MESHSTEP_DATABASE_URL"] = db
    return env


@cli.command()
def ui(
    port: Annotated[int, typer.Option("--port", "-p", help="Port to serve the app on.")] = 8501,
    address: Annotated[str, typer.Option("--address", help="Address to listen on (0.0.0.0 exposes the app to the "
                                                            "network: it has no authentication of its own).")]
    = "127.0.0.1",
    source: SourceOpt = None, db: DbOpt = None,
) -> None:
    """Run the web app: overview, inventory, plan, features, components, audit (Ctrl-C stops it)."""
    typer.echo(f"meshstep ui on http://{address}:{port}  (Ctrl-C to stop)", err=True)
    proc = subprocess.Popen(streamlit_command(port, address), env=streamlit_env(source, db))
    # Stopping `meshstep ui` stops the server: a service manager or a test sends SIGTERM to this process only.
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    while True:
        try:
            rc = proc.wait()
            break
        except KeyboardInterrupt:  # Streamlit got the same Ctrl-C and is stopping on its own
            continue
    raise typer.Exit(0 if rc in (0, -signal.SIGTERM, -signal.SIGINT) else rc)
