"""The Overview on a cluster in the middle of a canary upgrade: both versions in the header, and the progress."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "upgrade" / "cluster.yaml"


def test_overview_shows_the_upgrade_in_progress(db_url, monkeypatch):
    monkeypatch.setenv("MESHSTEP_SOURCE", str(FIXTURE))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert any("Istio 1.26.4 → 1.27.3" in c.value for c in at.caption)
    assert any(s.value == "Upgrade 1.26.4 → 1.27.3" for s in at.subheader)
    assert at.metric[0].value == "1.26.4 → 1.27.3"
    # what is left to move, the namespace part-way first; the one done is not listed
    [left] = [m.value for m in at.markdown if m.value.startswith("| namespace left |")]
    assert [line.split("|")[1].strip() + ": " + line.split("|")[5].strip() for line in left.splitlines()[2:]] == [
        "orders: restart pending", "shop: not started"]
    assert not at.dataframe
    at.toggle(key="overview-upgrade-namespaces").set_value(True).run()
    progress = next(f for f in at.dataframe if "on_old" in f.value.columns).value
    assert dict(zip(progress["namespace"], progress["state"])) == {
        "orders": "restart pending", "payments": "done", "shop": "not started"}


def test_overview_has_no_upgrade_section_with_one_revision(app):
    assert not any(s.value.startswith("Upgrade ") for s in app.subheader)
    assert any(c.value.startswith("Istio 1.27.3 ·") for c in app.caption)
