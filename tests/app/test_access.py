"""Roles from the ID token's groups claim (app/access.py): the configured groups of each role, the defaults, what
each role implies, and the refusal that names the role an action needs."""
from __future__ import annotations

from app.access import ADMIN, APPROVER, OPERATOR, ROLES, VIEWER, Access, refused, roles_from
from state.actors import Actor

CONFIG = {"groups_claim": "groups", "roles": {"viewer": ["auditors"], "operator": ["platform-team"],
                                              "approver": ["change-board"], "admin": ["platform-admins"]}}


def test_roles_come_from_the_configured_groups() -> None:
    assert roles_from({"groups": ["auditors"]}, CONFIG) == {VIEWER}
    assert roles_from({"groups": ["platform-team"]}, CONFIG) == {VIEWER, OPERATOR}
    assert roles_from({"groups": ["change-board", "platform-team"]}, CONFIG) == {VIEWER, OPERATOR, APPROVER}
    assert roles_from({"groups": ["platform-admins"]}, CONFIG) == set(ROLES)
    assert roles_from({"groups": ["meshstep-admin"]}, CONFIG) == set()  # configured groups only
    assert roles_from({}, CONFIG) == set()


def test_default_groups_and_another_claim() -> None:
    assert roles_from({"groups": ["meshstep-operator"]}, {}) == {VIEWER, OPERATOR}
    assert roles_from({"roles": "meshstep-approver"}, {"groups_claim": "roles"}) == {VIEWER, APPROVER}


def test_a_refusal_names_the_role_needed_and_the_roles_held() -> None:
    viewer = Access(Actor("victor@example.com", issuer="https://idp", subject="v"), frozenset({VIEWER}), False)
    assert refused(viewer, OPERATOR, "advance a stage") == ("To advance a stage you need the operator role; "
                                                            "victor@example.com has: viewer.")
    assert refused(viewer, VIEWER, "read") is None
    admin = Access(Actor("ada"), frozenset(ROLES), False)
    assert refused(admin, ADMIN, "override a failing gate") is None
