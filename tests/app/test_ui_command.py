"""`meshstep ui` refuses to start on a port it cannot bind, before printing the address it would serve."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_busy_port_is_refused_before_the_url_is_printed():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "app.cli", "ui", "--port", str(port), "--source", "demo"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.startswith(f"error: cannot serve on 127.0.0.1:{port}") and "--port" in run.stderr
    assert "http://" not in run.stderr + run.stdout and "Traceback" not in run.stderr


def test_the_warm_up_leaves_what_the_first_page_does_not_show_until_it_is_served(tmp_path, monkeypatch):
    """`meshstep ui` reads the cluster and opens the database while the server starts, so that the first page
    waits for nothing it could not show; the Inventory page's tables are built only once the first page is
    served: built meanwhile, they took the interpreter from the first page's run (benchmarks/app.py)."""
    import threading

    from app import rows, ui
    from app.commands.ui import _warm_up

    class Served(threading.Event):
        """The first page's end, which the warm-up is seen waiting for."""

        waited = threading.Event()

        def wait(self, timeout=None):
            self.waited.set()
            return super().wait(timeout)

    built: list[str] = []
    real = rows.inventory_rows
    monkeypatch.setattr(rows, "inventory_rows", lambda inv: built.append(inv.source) or real(inv))
    monkeypatch.setenv(ui.SOURCE_ENV, "demo")
    monkeypatch.setenv("MESHSTEP_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setattr(ui, "SERVED", Served())
    ui.refresh()  # nothing cached from another test
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        warm = threading.Thread(target=_warm_up, args=("127.0.0.1", server.getsockname()[1]), daemon=True)
        warm.start()
        assert ui.SERVED.waited.wait(timeout=120)
        assert built == []  # the cluster read, the database open, the tables not built
        assert (tmp_path / "state.db").exists()
        ui.SERVED.set()  # the first page's run is over
        warm.join(timeout=120)
    assert not warm.is_alive() and built == ["demo"]


def test_the_frontend_s_files_are_served_whole_and_intact(tmp_path):
    """`meshstep ui` has Starlette read a served file in one go (STATIC_READ) rather than 64 KiB at a time: the
    frontend's files arrive as they are on disk, the largest (0.86 MB, 14 reads before) and the smallest."""
    import urllib.request

    import streamlit

    from tests.app.browser import app_server

    files = sorted((Path(streamlit.__file__).parent / "static" / "static" / "js").glob("*.js"),
                   key=lambda f: f.stat().st_size)
    with app_server(tmp_path, "demo", f"sqlite:///{tmp_path / 'state.db'}") as url:
        for f in (files[-1], files[-2], files[0]):
            with urllib.request.urlopen(f"{url}/static/js/{f.name}", timeout=30) as r:
                assert r.read() == f.read_bytes(), f.name
