"""Who may do what in the app: sign-in with OpenID Connect through Streamlit's own st.login/st.user, and roles
from the ID token's groups claim.

Configured by the deployment in the secrets file `meshstep ui --auth FILE` names (Streamlit's `[auth]` section:
redirect_uri, cookie_secret, client_id, client_secret, server_metadata_url), with meshstep's `[meshstep]` section:
`groups_claim` (default "groups") and `[meshstep.roles]`, each role's list of groups (default: the group
`meshstep-<role>`). Without `[auth]` the app runs for one local user with every role, and says so on every page;
`MESHSTEP_REQUIRE_SIGN_IN=1` (set by deploy/) refuses to serve pages then instead."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from app import safe
from state.actors import Actor

VIEWER, OPERATOR, APPROVER, ADMIN = "viewer", "operator", "approver", "admin"
ROLES = (VIEWER, OPERATOR, APPROVER, ADMIN)
# What each role grants besides itself: an operator and an approver read; an admin does everything.
IMPLIES = {VIEWER: (), OPERATOR: (VIEWER,), APPROVER: (VIEWER,), ADMIN: ROLES}
REQUIRE_ENV = "MESHSTEP_REQUIRE_SIGN_IN"


@dataclass(frozen=True)
class Access:
    """This session's person and roles; `local` when no sign-in is configured."""

    actor: Actor | None
    roles: frozenset[str]
    local: bool

    def has(self, role: str) -> bool:
        return role in self.roles


def roles_from(claims: Mapping[str, Any], config: Mapping[str, Any]) -> frozenset[str]:
    """The roles a signed-in person's claims give under `config` (the secrets' [meshstep] section)."""
    groups = claims.get(config.get("groups_claim", "groups")) or ()
    groups = {groups} if isinstance(groups, str) else set(groups)
    mapping: Mapping[str, Sequence[str]] = config.get("roles") or {}
    roles: set[str] = set()
    for role in ROLES:
        if groups & set(mapping.get(role, (f"meshstep-{role}",))):
            roles |= {role, *IMPLIES[role]}
    return frozenset(roles)


def sign_in_configured() -> bool:
    """Whether the secrets hold Streamlit's [auth] section."""
    return st.secrets.load_if_toml_exists() and "auth" in st.secrets


def _meshstep_config() -> Mapping[str, Any]:
    return st.secrets.get("meshstep", {}) if st.secrets.load_if_toml_exists() else {}


def current() -> Access:
    """The session's access; signed in: the verified identity from the ID token and the roles its groups give."""
    if not sign_in_configured():
        return Access(None, frozenset(ROLES), local=True)
    user = st.user
    if not user.get("is_logged_in"):
        return Access(None, frozenset(), local=False)
    claims = user.to_dict()
    email = claims.get("email")
    name = str(email or claims.get("name") or claims.get("sub"))
    actor = Actor(name, issuer=str(claims.get("iss")), subject=str(claims.get("sub")), email=email)
    return Access(actor, roles_from(claims, _meshstep_config()), local=False)


def gate_page() -> Access:
    """Before any page: sign in when configured (a page is a viewer's); say so on every page when it is not."""
    access = current()
    if access.local:
        if os.environ.get(REQUIRE_ENV):
            st.error("Sign-in is required here but not configured: start the app with `meshstep ui --auth FILE` "
                     "naming a secrets file with an [auth] section (see README, Deploy in a cluster).")
            st.stop()
        st.caption(":orange-badge[:material/person: local mode] No sign-in is configured: this app serves one "
                   "local user with every role, and changes are recorded with the name given in the sidebar, "
                   "marked self-declared.")
        return access
    if access.actor is None:
        st.title("Sign in")
        st.write("meshstep records who makes every change: sign in with your organisation's account.")
        st.button("Sign in", type="primary", on_click=st.login, icon=":material/login:")
        st.stop()
    if not access.has(VIEWER):
        st.error(f"Signed in as {safe.md(access.actor)}, who has no meshstep role: ask for the viewer role (a group of "
                 "the [meshstep.roles] configuration).")
        st.button("Sign out", on_click=st.logout)
        st.stop()
    return access


def permit(role: str, action: str) -> bool:
    """Whether this session may do `action` (which needs `role`); when not, an error that names the role."""
    access = current()
    if why := refused(access, role, action):
        st.error(why, icon=":material/lock:")
        return False
    return True


def refused(access: Access, role: str, action: str) -> str | None:
    """Why `access` may not do `action` (which needs `role`), or None when it may."""
    if access.has(role):
        return None
    held = ", ".join(r for r in ROLES if r in access.roles) or "none"
    return f"To {action} you need the {role} role; {access.actor} has: {held}."
