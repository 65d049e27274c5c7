"""The CLI as tests drive it, and walking a plan to done on its overlay from it."""
from __future__ import annotations

from collections.abc import Callable

import pytest

Run = Callable[..., tuple[int, str, str]]


def runner(capsys: pytest.CaptureFixture[str]) -> Run:
    """`run("plan", "next", …)` → (exit status, stdout, stderr) of `meshstep …` in this process."""
    from app.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        rc = main(list(args))
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def rehearse_to_done(run: Run, name: str, *extra: str, override: str | None = None, limit: int = 120) -> list[str]:
    """`meshstep plan advance --rehearse` until plan `name` is complete; returns the first line of each blocked
    gate. Without `override` every move must pass; with it, a blocked gate is passed with that reason, as a team
    rehearsing notes what it must fix first."""
    blocked = []
    for _ in range(limit):
        rc, out, err = run("plan", "advance", "--rehearse", "--name", name, *extra)
        if rc == 1 and "blocked" in err and override:
            blocked.append(err.splitlines()[0])
            rc, out, err = run("plan", "advance", "--rehearse", "--name", name, *extra, "--override-reason", override)
        assert rc == 0, err
        if "is complete" in out:
            return blocked
    raise AssertionError(f"plan {name} did not reach done in {limit} moves")
