"""What every page of the Streamlit app shares: the source and its cached inventory, the state database, who is
making changes, and errors shown as st.error instead of tracebacks.

`meshstep ui` passes its --source and --db through MESHSTEP_SOURCE and MESHSTEP_DATABASE_URL."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import streamlit as st

from features.base import Observation, registry
from planner.errors import MeshstepError
from planner.inventory import Inventory, build_inventory
from planner.sources import default_source, load_snapshot
from state.store import Store

log = logging.getLogger("meshstep.ui")

SOURCE_ENV = "MESHSTEP_SOURCE"
_SOURCE_KEY = "source"
_ACTOR_KEY = "actor"
_FLASH_KEY = "flash"


# ---------------------------------------------------------------- source and inventory


def source() -> str:
    """The source this session looks at: chosen on the Settings page, else the one `meshstep ui` was given."""
    if _SOURCE_KEY not in st.session_state:
        st.session_state[_SOURCE_KEY] = os.environ.get(SOURCE_ENV) or default_source()
    return st.session_state[_SOURCE_KEY]


def set_source(value: str) -> None:
    st.session_state[_SOURCE_KEY] = value


@st.cache_data(show_spinner=False, max_entries=4)
def _inventory(src: str) -> Inventory:
    return build_inventory(load_snapshot(src))


@st.cache_data(show_spinner=False, max_entries=4)
def _observations(src: str) -> list[Observation]:
    inv = _inventory(src)
    return [o for f in registry().values() for o in f.detect(inv)]


def load(src: str) -> Inventory:
    """The inventory of `src`, read once and then served from the cache; raises MeshstepError."""
    # Reading a live cluster of thousands of pods takes seconds: say so while it happens.
    with st.spinner(f"Reading {src}…"):
        return _inventory(src)


def inventory() -> Inventory:
    """The current source's inventory; on failure the page shows what to do and stops."""
    src = source()
    try:
        inv = load(src)
    except MeshstepError as e:
        st.error(f"Cannot read the source **{src}**: {e}\n\nChoose another source on the Settings page.")
        st.stop()
    _record_first_load(inv)
    return inv


def observations() -> list[Observation]:
    """Where detection finds each feature on, for the current source."""
    return _observations(source())


def refresh() -> None:
    """Forget every cached inventory, so the next page reads the source again."""
    _inventory.clear()
    _observations.clear()
    st.session_state.pop("recorded", None)


def cluster(inv: Inventory) -> str:
    """The cluster name records are kept under: the source's label ("demo" for the bundled demo)."""
    return inv.source


def mesh_summary(inv: Inventory) -> dict[str, Any]:
    """How far the cluster is in the mesh: namespaces and pods in it, out of all (what the Overview shows and the
    inventory history keeps)."""
    meshed = [p for p in inv.pods if inv.in_mesh(p)]
    return {"namespaces_in_mesh": len({p.namespace for p in meshed}), "namespaces_total": len(inv.namespace_names()),
            "pods_in_mesh": len(meshed), "pods_total": len(inv.pods)}


# A reading is kept when the cluster's adoption changed, else at most this often: every browser tab is a session,
# and one reading per session would fill the audit trail with identical events.
RECORD_EVERY = timedelta(hours=1)


def _record_first_load(inv: Inventory) -> None:
    """Keep an inventory summary when it changed (or an hour after the last): the Overview's adoption chart."""
    recorded = st.session_state.setdefault("recorded", set())
    if inv.source in recorded or not inv.cluster:  # a set of manifests is not a cluster to follow over time
        return
    recorded.add(inv.source)
    summary = {"cluster": cluster(inv), "source": inv.source, **mesh_summary(inv),
               "features_observed": sorted(({"feature": o.feature, "scope": o.scope} for o in observations()),
                                           key=lambda f: (f["feature"], f["scope"]))}
    with errors("Could not record this inventory in the history"):
        history = store().inventory_history(summary["cluster"])
        if history:
            last = history[-1]
            same = all(getattr(last, k) == v for k, v in summary.items() if k not in ("cluster", "source"))
            taken = last.taken_at if last.taken_at.tzinfo else last.taken_at.replace(tzinfo=UTC)
            if same and datetime.now(UTC) - taken < RECORD_EVERY:
                return
        store().record_inventory(summary, actor() or "meshstep ui")


# ---------------------------------------------------------------- state database


@st.cache_resource(show_spinner=False)
def _store(url: str | None) -> Store:
    return Store.open(url)


def store() -> Store:
    """The state database of $MESHSTEP_DATABASE_URL (`meshstep ui --db`), else the default SQLite file."""
    try:
        return _store(os.environ.get("MESHSTEP_DATABASE_URL"))
    except MeshstepError as e:
        st.error(f"{e}\n\nStart the app with `meshstep ui --db URL` pointing at a database you can write.")
        st.stop()


# ---------------------------------------------------------------- identity


def actor() -> str | None:
    """Who makes changes: the signed-in user when authentication is configured, else the name given this session."""
    user = st.user
    if user.get("is_logged_in"):
        return str(user.get("email") or user.get("name"))
    return st.session_state.get(_ACTOR_KEY) or None


def _take_name() -> None:
    st.session_state[_ACTOR_KEY] = (st.session_state.pop("actor_input", "") or "").strip() or None


def _forget_name() -> None:
    st.session_state.pop(_ACTOR_KEY, None)


def identity_sidebar() -> None:
    """Ask once per session who is making changes (without authentication configured); every change records it."""
    if st.user.get("is_logged_in"):
        st.sidebar.caption(f"Signed in as **{actor()}**")
        return
    name = actor()
    if name:
        # Kept under a key of its own: a widget's value is dropped on the runs that do not draw it.
        st.sidebar.markdown(f"Changes are recorded as **{name}**.")
        st.sidebar.button("Not you?", on_click=_forget_name, type="tertiary", icon=":material/person:")
        return
    st.sidebar.text_input("Your name", key="actor_input", on_change=_take_name, placeholder="then press Enter",
                          help="Asked once per session: the audit trail names you with each change you make.")


def require_actor() -> str | None:
    """The actor, or a warning asking for a name (and None) when nobody has said who they are."""
    name = actor()
    if not name:
        st.warning("Enter your name in the sidebar first: every change is recorded with who made it.")
    return name


# ---------------------------------------------------------------- errors and messages


@contextmanager
def errors(what: str = "") -> Iterator[None]:
    """Show a MeshstepError (whose message says what to do) as st.error instead of raising it."""
    try:
        yield
    except MeshstepError as e:
        st.error(f"{what}: {e}" if what else str(e))


def flash(message: str, kind: str = "success") -> None:
    """A message shown once after the rerun that follows a change."""
    st.session_state[_FLASH_KEY] = (kind, message)


def show_flash() -> None:
    if _FLASH_KEY in st.session_state:
        kind, message = st.session_state.pop(_FLASH_KEY)
        getattr(st, kind)(message)


def run_page(page: Any) -> None:
    """Run a page; an unexpected failure is shown as an error (the traceback goes to the server log only)."""
    try:
        page.run()
    except Exception as e:  # the user gets a message; the log keeps the traceback for a report
        if type(e).__module__.startswith("streamlit"):  # st.stop / st.rerun / page switches are control flow
            raise
        log.exception("page failed")
        st.error(f"Something went wrong on this page: {e}\n\nPress **Re-read the cluster** in the sidebar and try "
                 "again; if it persists, report it with the server log.")
