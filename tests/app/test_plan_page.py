"""The Plan page as a workflow, through AppTest on the demo: a finished plan stays on the page with its stages, its
export and the history; a name already taken is offered another or the deletion of its plan; a deletion and an
override are each one explicit, confirmed act."""
from __future__ import annotations

from cluster.inventory import build_inventory
from cluster.sources import load_snapshot
from planner import stages
from state.store import Store
from tests.app.conftest import open_page, sign_in


def _errors(at) -> list[str]:
    return [e.value for e in at.error]


def _button(at, label: str):
    return next(b for b in at.button if b.label == label)


def _rehearsed_to_done(app) -> None:
    """Make the routing-first plan and rehearse it to done, as a new user would: three clicks."""
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    app.toggle[0].set_value(True).run()
    _button(app, "Rehearse to done").click().run()
    assert not app.exception and not [e for e in _errors(app)], _errors(app)


def test_a_finished_plan_stays_on_the_plan_page_and_the_overview(app, store: Store):
    sign_in(app)
    open_page(app, "plan")
    _rehearsed_to_done(app)
    (plan,) = store.list_plans("demo")
    assert plan.status == "done" and plan.mode == "rehearsal"
    assert any(s.value.startswith("Plan **routing-first** is complete: every stage is done in rehearsal")
               for s in app.success)
    subheaders = [h.value for h in app.subheader]
    assert "Stages" in subheaders and "History" in subheaders
    table = app.table[0].value  # the stages, each scope whole
    assert list(table["title"]) == [s.title for s in plan.stages]
    assert {s.split()[0] for s in table["status"]} == {"done"}
    assert [b.proto.label for b in app.get("download_button")] == ["Export the plan's YAML (zip)"]
    history = next(d.value for d in app.dataframe if "stages done" in d.value.columns)
    assert history.to_dict("records")[0] | {"created": None} == {
        "plan": "routing-first", "template": "routing-first", "status": "done", "mode": "rehearsal",
        "stages done": f"{len(plan.stages)} / {len(plan.stages)}", "created": None, "by": "alice"}
    assert any(e.label == "Delete plan routing-first" for e in app.expander)

    open_page(app, "overview")
    assert any(s.value == "The last plan, **routing-first**, finished: every stage is done in rehearsal."
               for s in app.success)
    assert not any("No active plan" in i.value or "No plan" in i.value for i in app.info)


def _finished_plan(store: Store, name: str = "routing-first"):
    """A plan of the demo that someone finished elsewhere (the CLI, another session)."""
    plan = stages.create(store, "demo", build_inventory(load_snapshot("demo")), "routing-first", None, name, "bob")
    return store.set_plan_status(plan.id, "done", "bob", "finished elsewhere")


def test_a_name_taken_is_offered_another(app, store: Store):
    _finished_plan(store)
    sign_in(app)
    open_page(app, "plan")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    (error,) = _errors(app)
    assert error.startswith("A plan named **routing-first** already exists for demo (done, ") and \
        "create the new one as **routing-first-2**, or delete **routing-first**" in error
    assert [p.name for p in store.list_plans("demo")] == ["routing-first"]
    _button(app, "Create it as routing-first-2").click().run()
    assert not app.exception and not _errors(app), _errors(app)
    assert [(p.name, p.status) for p in store.list_plans("demo")] == [("routing-first", "done"),
                                                                       ("routing-first-2", "active")]
    assert any("Plan **routing-first-2** created" in s.value for s in app.success)


def test_a_name_taken_is_freed_by_a_confirmed_deletion(app, store: Store):
    old = _finished_plan(store)
    sign_in(app)
    open_page(app, "plan")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    next(t for t in app.text_input if t.key == "delete_taken_reason").input("a fresh start")
    app.button(key="FormSubmitter:delete_taken-Delete routing-first and create the new plan").click().run()
    assert any("Tick **Yes, delete plan routing-first** to confirm" in e for e in _errors(app))
    assert [p.id for p in store.list_plans("demo")] == [old.id]  # nothing deleted without the tick

    next(c for c in app.checkbox if c.key == "delete_taken_sure").check()
    next(t for t in app.text_input if t.key == "delete_taken_reason").input("a fresh start")
    app.button(key="FormSubmitter:delete_taken-Delete routing-first and create the new plan").click().run()
    assert not app.exception
    (plan,) = store.list_plans("demo")
    assert (plan.name, plan.status, plan.created_by) == ("routing-first", "active", "alice")  # not bob's
    deleted = next(e for e in store.audit_events() if e.action == "plan.delete")
    assert (deleted.actor, deleted.reason, deleted.target) == ("alice", "a fresh start", f"plan:{old.id}")


def test_a_finished_plan_is_deleted_from_its_page_once_confirmed(app, store: Store):
    sign_in(app)
    open_page(app, "plan")
    _rehearsed_to_done(app)
    next(t for t in app.text_input if t.key == "delete_plan_reason").input("rehearsed, noted")
    app.button(key="FormSubmitter:delete_plan-Delete the plan").click().run()
    assert any("to confirm" in e for e in _errors(app)) and len(store.list_plans("demo")) == 1
    next(t for t in app.text_input if t.key == "delete_plan_reason").input("rehearsed, noted")
    next(c for c in app.checkbox if c.key == "delete_plan_sure").check()
    app.button(key="FormSubmitter:delete_plan-Delete the plan").click().run()
    assert not app.exception and store.list_plans("demo") == []
    assert any("Plan **routing-first** deleted." in w.value for w in app.warning)
    assert app.button(key="FormSubmitter:new_plan-Create the plan")  # no plan left: the form at the top


def _blocked_at_strict_in_shop(app, store: Store):
    """A rehearsal of the plan for shop alone: STRICT in shop is refused (legacy/legacy-billing, outside the plan and
    the mesh, calls orders.shop in plaintext), so the stage is blocked and the override is offered."""
    app.multiselect[0].set_value(["shop"])
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    app.toggle[0].set_value(True).run()
    _button(app, "Rehearse to done").click().run()
    blocked = next(s for s in store.list_plans("demo")[0].stages if s.status == "blocked")
    assert app.header[0].value == f"Stage {blocked.order}: {blocked.title}"
    return blocked


def test_an_override_is_one_button_with_the_reason_typed_before_it_and_a_tick(app, store: Store):
    sign_in(app)
    open_page(app, "plan")
    blocked = _blocked_at_strict_in_shop(app, store)
    assert blocked.title == "mTLS STRICT in shop"
    assert any(m.value.startswith("**Gate:** :red[:material/block: blocked] by MST0402") for m in app.markdown)
    assert [e.label for e in app.expander if e.label.startswith("Go past")] == [
        "Go past the failing gate anyway (admin)"]
    # The primary button checks the gate again: it never overrides.
    assert app.button(key="advance").label == "Check the gate again"
    app.button(key="advance").click().run()
    assert store.get_plan(blocked.plan_id).stages[blocked.order - 1].status == "blocked"

    next(t for t in app.text_input if t.label == "Override reason").input("legacy is injected tonight")
    override = next(b for b in app.button if b.label == "Override and go on")
    override.click().run()  # no tick: nothing happens but the error saying so
    assert any("tick **I override the failing gate**" in e for e in _errors(app))
    assert store.get_plan(blocked.plan_id).stages[blocked.order - 1].status == "blocked"

    next(t for t in app.text_input if t.label == "Override reason").input("legacy is injected tonight")
    next(c for c in app.checkbox if c.label.startswith("I override the failing gate")).check()
    next(b for b in app.button if b.label == "Override and go on").click().run()
    assert not app.exception
    stage = store.get_plan(blocked.plan_id).stages[blocked.order - 1]
    assert (stage.status, stage.override_reason) == ("ready", "legacy is injected tonight")
    event = [e for e in store.audit_events() if e.target == f"stage:{stage.id}"][-1]
    assert (event.actor, event.reason) == ("alice", "rehearsal: entry gate overridden")
    assert event.after["override_reason"] == "legacy is injected tonight"


def test_the_first_step_says_it_fixes_the_plan_s_mode(app, store: Store):
    sign_in(app)
    open_page(app, "plan")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    assert any("Your next step makes this plan **real** for good" in c.value for c in app.caption)
    app.toggle[0].set_value(True).run()
    assert any("Your next step makes this plan a **rehearsal** for good" in c.value for c in app.caption)
    app.button(key="advance").click().run()
    assert any("Plan **routing-first** is now a rehearsal for good." in s.value for s in app.success)
    assert app.toggle[0].disabled and not any("for good" in c.value for c in app.caption)


def test_a_rehearsal_stopped_by_its_gate_says_so_in_lines(app, store: Store):
    """The gate's refusal is written in lines (its head, then each failing check with its hint under it): the
    page shows them as lines, not as one line with `\\n` in it."""
    from markdown_it import MarkdownIt

    sign_in(app)
    open_page(app, "plan")
    _blocked_at_strict_in_shop(app, store)
    (stopped,) = [e for e in _errors(app) if e.startswith("The rehearsal stopped after")]
    html = MarkdownIt("commonmark").render(stopped)
    assert "\\n" not in html and "blocked by 1 failing check(s):<br />" in html, stopped
    lines = html.removeprefix("<p>").removesuffix("</p>\n").split("<br />\n")
    assert any(line.lstrip("\xa0").startswith("× error   MST0402") for line in lines), lines
    assert lines[-1].startswith("fix these and press &quot;Check the gate again&quot;"), lines


def test_an_upgrade_plan_is_made_to_the_release_typed_in_the_form(app, store: Store):
    """The upgrade template on the demo's one revision: without a release the page says what is missing in its own
    words (the "Upgrade to" field, no flag of the command); with 1.28.0 the whole canary upgrade is made."""
    from tests.app.test_no_cli_flags import flags_in

    sign_in(app)
    open_page(app, "plan")
    app.selectbox[0].set_value("upgrade")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    (error,) = _errors(app)
    assert "the cluster runs one istiod revision, 1-27 (Istio 1.27.3)" in error, error
    assert '"Upgrade to" field of the new plan' in error and not flags_in(error), error
    assert store.list_plans("demo") == []

    app.selectbox[0].set_value("upgrade")
    next(t for t in app.text_input if t.label == "Upgrade to").input("1.28.0")
    app.button(key="FormSubmitter:new_plan-Create the plan").click().run()
    assert not app.exception and not _errors(app), _errors(app)
    (plan,) = store.list_plans("demo")
    assert [(s.title, [f["params"] for f in s.features]) for s in plan.stages][0::5] == [
        ("Install the new revision", [{"revision": "1-28", "version": "1.28.0"}]),
        ("Remove the old revision", [{"revision": "1-27"}])]
    assert len(plan.stages) == 6
