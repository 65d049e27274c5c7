"""Walking a plan to done on its overlay from the CLI, as the template tests do."""
from __future__ import annotations

from collections.abc import Sequence

import pytest


def rehearse_to_done(name: str, source: Sequence[str], capsys: pytest.CaptureFixture[str], limit: int = 60) -> None:
    """`meshstep plan advance --rehearse` until plan `name` is complete: every move must pass (no gate blocks, no
    exit check fails, nothing is overridden)."""
    from app.cli import main

    for _ in range(limit):
        rc = main(["plan", "advance", "--rehearse", "--name", name, *source])
        out, err = capsys.readouterr()
        assert rc == 0, err
        if "is complete" in out:
            return
    raise AssertionError(f"plan {name} did not reach done in {limit} moves")
