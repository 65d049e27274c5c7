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
