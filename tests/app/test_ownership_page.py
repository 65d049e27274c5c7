"""The Plan page's stage view names the field manager that owns what the stage would change (MST0008), as
`plan next` does, from a snapshot taken with `--show-managed-fields`."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP, open_page, sign_in
from tests.features.test_ownership import owned_demo
from tests.rehearsal import runner


def test_the_stage_view_names_the_owner_of_what_the_stage_changes(db_url: str, tmp_path: Path, capsys,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    source = str(owned_demo(tmp_path))
    monkeypatch.setenv("MESHSTEP_SOURCE", source)
    run = runner(capsys)
    assert run("plan", "new", "--template", "custom", "--source", source, "--db", db_url)[0] == 0
    rc, _out, err = run("plan", "add", "traffic-shifting", "--scope", "shop", "--set", "service=reviews",
                        "--source", source, "--db", db_url)
    assert rc == 0, err
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    sign_in(at)
    open_page(at, "plan")
    shown = "\n".join(e.value for e in (*at.markdown, *at.warning, *at.caption))
    assert "MST0008" in shown and "kiali (Update) owns .spec.http" in shown.replace("\\", ""), shown[-3000:]
