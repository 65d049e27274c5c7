"""The Plan page of a plan in waves, through AppTest, on a synthetic cluster of 15 application namespaces
(benchmarks/synthetic.py, 400 pods): the waves with the pilot's reasons and every namespace, each stage's wave, the
wave sizes set when the plan is made (in the page's words), and the namespace of a wave where a gate fails.
tests/app/test_plan_waves_browser.py walks the same in Chromium."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from benchmarks.synthetic import synthetic_cluster, write
from planner.waves import WAVES_ABOVE
from state.store import Store
from tests.app.conftest import APP, open_page, sign_in
from tests.app.test_no_cli_flags import flags_in


def small_cluster(out: Path) -> list[dict]:
    """A cluster with more application namespaces than WAVES_ABOVE, of a few hundred pods, written to `out`; each
    workload that opts out of injection calls a Service of its own namespace (`_calls_a_neighbour`)."""
    objects = _calls_a_neighbour(synthetic_cluster(pods=400, services=300, istio_objects=80))
    write(objects, out)
    return objects


def _calls_a_neighbour(objects: list[dict]) -> list[dict]:
    """Gives each workload that opts out of injection env NEIGHBOUR_URL naming, as `<service>.<namespace>`, the
    Service of another app of its namespace: under STRICT there, that app's sidecar refuses its plaintext, a real
    reason for the gate to fail (synthetic.py's own opt-outs name no Service of the cluster)."""
    apps = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace" and "team" in o["metadata"]["labels"]}
    workloads = [o for o in objects
                 if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["namespace"] in apps]
    out = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in workloads
           if o["spec"]["template"]["metadata"]["labels"].get("sidecar.istio.io/inject") == "false"}
    injected = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in workloads} - out
    neighbour: dict[str, str] = {}
    for o in (o for o in objects if o["kind"] == "Service"):
        ns, app = o["metadata"].get("namespace"), (o["spec"].get("selector") or {}).get("app")
        if (ns, app) in injected and ns not in neighbour:
            neighbour[ns] = f"http://{o['metadata']['name']}.{ns}:{o['spec']['ports'][0]['port']}"
    for o in objects:
        ns = o["metadata"].get("namespace")
        if o["kind"] in ("Deployment", "StatefulSet") and (ns, o["metadata"]["name"]) in out:
            containers = o["spec"]["template"]["spec"]["containers"]
        elif o["kind"] == "Pod" and (ns, (o["metadata"].get("labels") or {}).get("app")) in out:
            containers = o["spec"]["containers"]  # as its template makes it
        else:
            continue
        containers[0]["env"].append({"name": "NEIGHBOUR_URL", "value": neighbour[ns]})
    return objects


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("waves") / "cluster.json"
    return out, small_cluster(out)


@pytest.fixture
def app(cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("MESHSTEP_SOURCE", str(cluster[0]))
    monkeypatch.setenv("MESHSTEP_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("MESHSTEP_CACHE_DIR", str(tmp_path / "cache"))
    at = AppTest.from_file(str(APP), default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    sign_in(at)
    return open_page(at, "plan")


def _plan(tmp_path: Path, cluster):
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        (plan,) = store.list_plans(str(cluster[0]))
        return plan
    finally:
        store.close()


def _create(app: AppTest, waves: str = "") -> AppTest:
    next(t for t in app.text_input if t.label == "Wave sizes").input(waves)
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    assert not app.exception, app.exception
    return app


def _markdown(app: AppTest) -> list[str]:
    return [m.value for m in app.markdown]


def test_a_plan_in_waves_shows_its_waves_the_pilot_s_reasons_and_each_stage_s_wave(app, cluster, tmp_path):
    _create(app)
    assert not app.error, [e.value for e in app.error]
    plan = _plan(tmp_path, cluster)
    groups = plan.waves["waves"]
    assert len(sum(groups, [])) > WAVES_ABOVE and len(groups[0]) == 1
    said = "\n".join(_markdown(app))
    assert f"**Waves** (1,10%,30%,rest): {' → '.join(str(len(g)) for g in groups)} namespaces" in said
    pilot = next(m for m in _markdown(app) if m.startswith("**Pilot:**"))
    assert pilot.startswith(f"**Pilot:** {groups[0][0]}, chosen because it has")
    for reason in plan.waves["pilot_reasons"]:
        assert reason.split(" (")[0] in pilot
    assert not flags_in(pilot), pilot  # "no telemetry given" names the Settings page, not --telemetry
    assert "Settings page" in pilot
    (listing,) = [e for e in app.expander if e.label == f"The namespaces of each of the {len(groups)} waves"]
    every = listing.markdown[0].value
    for i, group in enumerate(groups):
        name = "pilot wave" if i == 0 else f"wave {i + 1} of {len(groups)}"
        line = next(line for line in every.splitlines() if line.startswith(f"- **{name}** ({len(group)}): "))
        assert sorted(line.split(": ", 1)[1].split(", ")) == sorted(group)

    table = app.table[0].value
    assert list(table["title"]) == [s.title for s in plan.stages]
    for row, stage in zip(table.to_dict("records"), plan.stages):
        scopes = {f["scope"] for f in stage.features} - {"mesh"}
        wave = next((i for i, g in enumerate(groups) if scopes and scopes <= set(g)), None)
        assert row["wave"] == ("" if wave is None else "pilot wave" if wave == 0 else f"wave {wave + 1} of 4")
        assert row["scope"] == ", ".join(sorted({f["scope"] for f in stage.features}))  # every one, none counted


def test_the_wave_sizes_are_set_when_the_plan_is_made_in_the_page_s_words(app, cluster, tmp_path):
    field = next(t for t in app.text_input if t.label == "Wave sizes")
    assert not flags_in(field.help) and "off" in field.help
    _create(app, "1,x")
    (error,) = [e.value for e in app.error]
    assert "wave sizes" in error.lower() and "'x' is not a count" in error and not flags_in(error), error
    _create(app, "1,5,rest")
    assert not app.error, [e.value for e in app.error]
    plan = _plan(tmp_path, cluster)
    assert plan.waves["spec"] == "1,5,rest"
    assert [len(g) for g in plan.waves["waves"]] == [1, 5, len(sum(plan.waves["waves"], [])) - 6]


def test_a_plan_without_waves_has_a_stage_per_namespace(app, cluster, tmp_path):
    _create(app, "off")
    plan = _plan(tmp_path, cluster)
    assert plan.waves is None
    assert not any(m.startswith("**Waves**") for m in _markdown(app)) and "wave" not in app.table[0].value.columns
    assert any(s.title.startswith("mTLS STRICT in ") and len(s.features) == 1 for s in plan.stages)


def _opt_outs(objects: list[dict]) -> set[str]:
    """The namespaces with pods that opt out of injection (`sidecar.istio.io/inject: "false"`): each calls a Service
    of its namespace (`_calls_a_neighbour`), so STRICT mTLS there is refused (MST0401) until they are injected."""
    return {o["metadata"]["namespace"] for o in objects if o["kind"] == "Pod" and
            {**(o["metadata"].get("labels") or {}), **(o["metadata"].get("annotations") or {})}.get(
                "sidecar.istio.io/inject") == "false"}


def test_a_gate_that_fails_in_one_namespace_of_a_wave_names_it(app, cluster, tmp_path):
    _create(app)
    app.toggle[0].set_value(True).run()
    next(b for b in app.button if b.label == "Rehearse to done").click().run()
    assert not app.exception, app.exception
    plan = _plan(tmp_path, cluster)
    blocked = next(s for s in plan.stages if s.status == "blocked")
    names = sorted({f["scope"] for f in blocked.features})
    failing = sorted(set(names) & _opt_outs(cluster[1]))
    assert blocked.title.startswith("mTLS STRICT in wave") and len(names) > len(failing) >= 1
    assert app.header[0].value == f"Stage {blocked.order}: {blocked.title}"
    gate = next(m for m in _markdown(app) if m.startswith("**Gate:**"))
    assert gate.startswith("**Gate:** :red[:material/block: blocked] by MST0401 in "
                           f"{', '.join(failing)} ({len(failing)} of the stage's {len(names)} namespaces)"), gate
    wave = next(i for i, g in enumerate(plan.waves["waves"]) if set(names) <= set(g))
    head = f"**Wave:** wave {wave + 1} of {len(plan.waves['waves'])}, {len(names)} namespaces"
    if len(names) > 5:
        assert head in _markdown(app)
        listing = next(e for e in app.expander if e.label == f"The {len(names)} namespaces of this stage")
        assert sorted(listing.markdown[0].value.split(", ")) == names
    else:
        assert f"{head}: {', '.join(names)}" in _markdown(app)
