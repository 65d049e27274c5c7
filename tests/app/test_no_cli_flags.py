"""No hint in the app names a flag of the `meshstep` command: the app names its own controls (app/controls.py).
Checked on every hint of the catalog, every finding `analyze` gives on the demo and the corpus, every refusal a
rendering gives on the demo, and on every page (the Plan page at each of its states) through AppTest. A command of
another tool (istioctl, helm, kubectl) is what people run themselves, and may carry its own flags."""
from __future__ import annotations

import re

import pytest
import typer.main

from analysis.catalog import CATALOG
from analysis.common import analyze
from app import cli, commands, controls, findings, safe
from cluster.errors import MeshstepError
from features._gate import render_gated
from features.base import MESH, registry
from tests.app.conftest import open_page, sign_in
from tests.features import corpus


def _options(command) -> set[str]:
    names = {o[2:] for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}
    for sub in getattr(command, "commands", {}).values():
        names |= _options(sub)
    return names


cli._register_commands()
FLAGS = _options(typer.main.get_command(commands.cli))
_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")
# A command of another tool, to the end of its code span, parenthesis, sentence or line.
_OTHER = re.compile(r"\b(?:istioctl|helm|kubectl)\s[^`\n;)]*|install with `--set [^`]*`")


def flags_in(text: str) -> set[str]:
    """The `meshstep` flags `text` names outside another tool's command (Markdown's escapes removed first)."""
    plain = _OTHER.sub("", re.sub(r"\\(.)", r"\1", text))
    return {f"--{m}" for m in _FLAG.findall(plain) if m in FLAGS}


def test_the_check_finds_what_it_looks_for():
    assert {"override-reason", "set", "scope", "prometheus", "telemetry"} <= FLAGS
    assert flags_in("or pass --override-reason to go on anyway") == {"--override-reason"}
    assert flags_in("meshstep render waypoint --scope shop") == {"--scope"}
    assert flags_in("install it: istioctl install --set profile=ambient (or helm …)") == set()


def test_the_app_says_the_catalog_s_hints_with_its_controls():
    for entry in CATALOG.values():
        cli = entry.generic_hint
        assert not flags_in(safe.md_message(cli)), (entry.code, safe.md_message(cli))


def test_the_app_keeps_other_tools_commands_and_names_its_controls():
    said = controls.for_app("fix these and run `meshstep plan advance` again, or pass --override-reason to go on "
                            "anyway; istioctl install --set profile=default")
    assert said == ('fix these and press "Check the gate again", or go on anyway with the "Override and go on" '
                    "button (an admin, with a reason); istioctl install --set profile=default")
    assert controls.for_app("egress-service-entry needs --set host=NAME (the external API)") == (
        'egress-service-entry needs the "host" parameter (on the Features page) (the external API)')
    assert controls.for_app("request-authentication needs --set issuer=URL --set jwks_uri=URL") == (
        'request-authentication needs the "issuer" and "jwks_uri" parameters (on the Features page)')
    assert controls.for_app("Deploy a waypoint first (meshstep render waypoint --scope shop), and bind") == (
        "Deploy a waypoint first (render waypoint for shop on the Features page), and bind")


@pytest.mark.parametrize("cluster", [c for c in corpus.corpus() if c.name != "synthetic"], ids=lambda c: c.name)
def test_no_finding_names_a_flag_in_the_app(cluster):
    inv = corpus.loadable(cluster)
    if inv is None:
        pytest.skip("not a readable cluster on purpose")
    for m in analyze(inv):
        assert not flags_in(findings.markdown(m)), findings.markdown(m)


def test_no_refusal_of_a_rendering_names_a_flag_in_the_app(demo_inventory):
    for feature in registry().values():
        for scope in (MESH, *demo_inventory.namespace_names()):
            try:
                rendered, _gate = render_gated(feature, {p.name: p.default for p in feature.params}, scope,
                                               demo_inventory)
            except MeshstepError as e:
                assert not flags_in(safe.md_message(str(e))), (feature.id, scope, safe.md_message(str(e)))
                continue
            notes = controls.for_app("\n".join(rendered.notes))
            assert not flags_in(notes), (feature.id, scope, notes)


def _texts(at) -> str:
    """Every text the page holds: each element's protobuf as text (labels, bodies, help, captions, options)."""
    out: list[str] = []

    def walk(node) -> None:
        if (proto := getattr(node, "proto", None)) is not None:
            out.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(out).encode().decode("unicode_escape", errors="ignore")


def _offending(at) -> list[str]:
    """The lines of the page's texts that name a flag."""
    return [line for line in _texts(at).splitlines() if flags_in(line)]


PAGES = ("overview", "inventory", "components", "features", "plan", "fleet", "audit", "settings")


def test_no_page_names_a_flag(app, store):
    sign_in(app)
    for page in PAGES:
        open_page(app, page)
        assert not _offending(app), (page, _offending(app))
    # the Plan page at each of its states: a new plan, a gate that blocks (and its refusal), done
    open_page(app, "plan")
    app.multiselect[0].set_value(["shop"])  # its STRICT stage is refused: legacy-billing calls orders.shop in plaintext
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    assert not _offending(app), _offending(app)
    app.toggle[0].set_value(True).run()
    next(b for b in app.button if b.label == "Rehearse to done").click().run()
    app.button(key="advance").click().run()  # Check the gate again: refused, with its findings
    assert any(e.value.startswith("Not advanced") for e in app.error)
    assert not _offending(app), _offending(app)
    plan = store.list_plans("demo")[0]
    store.delete_plan(plan.id, "alice", "again, for all namespaces")
    app.run()
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    app.toggle[0].set_value(True).run()
    next(b for b in app.button if b.label == "Rehearse to done").click().run()
    assert store.list_plans("demo")[0].status == "done"
    assert not _offending(app), _offending(app)
