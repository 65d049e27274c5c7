"""Fixtures of the feature tests."""
from __future__ import annotations

import pytest

from app.cli import main


@pytest.fixture
def run(capsys, monkeypatch, tmp_path):
    """`meshstep ARGS` → (exit status, stdout, stderr), on a machine without a cluster (default source: demo)."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("MESHSTEP_DATABASE_URL", raising=False)
    monkeypatch.delenv("MESHSTEP_ACTOR", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
