"""What every page of the Streamlit app shares: the source and its cached inventory, the state database, who is
making changes, and errors shown as st.error instead of tracebacks.

`meshstep ui` passes its --source and --db through MESHSTEP_SOURCE and MESHSTEP_DATABASE_URL."""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from app import access as access_
from app import controls, rows, safe
from cluster import cache
from cluster.errors import MeshstepError, SourceError
from cluster.inventory import Inventory, build_inventory, freeze
from cluster.sources import default_source, load_snapshot
from features.base import Observation
from planner import fleet
from planner.fleet import Reading

if TYPE_CHECKING:  # imported where first used: `meshstep ui` reads the cluster before it spends a second on them
    import pandas as pd

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


# ---------------------------------------------------------------- what a visitor may read on the server

ALLOW_ENV = "MESHSTEP_ALLOW_PATHS"  # `meshstep ui --allow-path DIR`, joined with os.pathsep
UPLOAD_PREFIX = "upload:"
_UPLOADS_KEPT = 4  # as many as inventories are cached
_uploads: dict[str, tuple[str, bytes]] = {}  # upload source → (the file's name, its bytes)


def allowed_roots() -> list[Path]:
    """The directories under which a visitor may name a file or directory of the server (none by default)."""
    return [Path(p).resolve() for p in os.environ.get(ALLOW_ENV, "").split(os.pathsep) if p]


def server_path(text: str) -> str:
    """A path a visitor typed, if it lies under an allowed directory (symlinks resolved); otherwise an error that
    says the same whether or not the path exists, so that nothing outside the allowed directories can be probed."""
    roots = allowed_roots()
    if not roots:
        raise MeshstepError("reading files of the server is off: whoever runs this server allows a directory of it "
                            "when starting the app; upload the snapshot instead")
    real = Path(os.path.realpath(Path(text).expanduser()))
    if not any(real == r or r in real.parents for r in roots):
        raise MeshstepError(f"{text} is not under a directory this server allows ({', '.join(map(str, roots))})")
    return str(real)


def upload_source(name: str, data: bytes) -> str:
    """The source an uploaded snapshot is read as; its bytes are kept (the last few) so that a re-read needs no
    file: the upload is read from a temporary directory removed as soon as it is read, however that ends."""
    key = f"{UPLOAD_PREFIX}{hashlib.sha256(data).hexdigest()[:12]}:{name}"
    _uploads.pop(key, None)
    _uploads[key] = (name, data)
    while len(_uploads) > _UPLOADS_KEPT:
        _uploads.pop(next(iter(_uploads)))
    return key


def _read_upload(src: str) -> Inventory:
    if src not in _uploads:
        raise SourceError(f"the upload {src.split(':', 2)[-1]} is no longer kept by the server: upload it again")
    name, data = _uploads[src]
    suffix = ".tar.gz" if name.endswith((".tar.gz", ".tgz")) else Path(name).suffix
    with tempfile.TemporaryDirectory(prefix="meshstep-upload-") as tmp:
        path = Path(tmp) / f"snapshot{suffix}"
        path.write_bytes(data)
        try:
            snapshot = load_snapshot(str(path))
            snapshot.label = name  # recorded under the uploaded file's name, not the temporary path
            return build_inventory(snapshot)
        except MeshstepError as e:
            raise SourceError(str(e).replace(str(path), name)) from None


def roots_for(src: str) -> list[Path] | None:
    """Where a path source may read: anywhere for the one the operator started the app with, else only under the
    allowed directories (a symlink inside them must not lead out)."""
    if src in ("demo", "live") or src.startswith("context:") or src == os.environ.get(SOURCE_ENV):
        return None
    return allowed_roots()


# cache_resource, not cache_data: an Inventory is immutable (changes make a new one), and cache_data would pickle
# it on every hit — 3 s for a 10,000-pod cluster, on every page of every rerun (benchmarks/app.py).
@st.cache_resource(show_spinner=False, max_entries=4)
def _inventory(src: str) -> Inventory:
    inv = _read_upload(src) if src.startswith(UPLOAD_PREFIX) else cache.inventory(src, roots=roots_for(src))
    # It lives until the cluster is re-read: out of the cyclic collector's sight (it holds no cycles, and is freed
    # by reference counting all the same), or each full collection during a page's run walks its million objects.
    freeze()
    return inv


@st.cache_resource(show_spinner=False, max_entries=4)
def _reading(key: tuple[str, int]) -> Reading:
    src = key[0]
    if src.startswith(UPLOAD_PREFIX):
        return fleet.reading_of(_inventory(src))
    return fleet.reading(src, roots_for(src), inventory=lambda: _inventory(src))


def load(src: str) -> Inventory:
    """The inventory of `src`, read once and then served from the cache; raises MeshstepError."""
    # Reading a live cluster of thousands of pods takes seconds: say so while it happens.
    with st.spinner(f"Reading {safe.md(src)}…"):
        return _inventory(src)


# Kept here, not in the page: `meshstep ui` makes them while the server starts (warm_up).
@st.cache_resource(show_spinner=False, max_entries=4)  # shared, never changed: not copied on each hit
def _inventory_tables(reading: tuple[str, int]) -> dict[str, pd.DataFrame]:
    """The Inventory page's four tables for one reading of the source, built once: a 10,000-pod cluster is not
    re-tabulated on every click."""
    import pandas as pd

    return {name: pd.DataFrame(safe.cells(table))
            for name, table in rows.inventory_rows(_inventory(reading[0])).items()}


def inventory_tables() -> dict[str, pd.DataFrame]:
    """The Inventory page's tables (Namespaces, Workloads, Pods, Services) for the current source; read them, do
    not change them (they are shared by every session)."""
    return _inventory_tables(reading())


# Set when the server's first page run is over (streamlit_app.main): `meshstep ui` builds what that page does not
# show (the Inventory page's tables) only then, not while the page runs beside it in the one interpreter.
SERVED = threading.Event()


def warm_up(src: str | None, db: str | None) -> None:
    """What the Overview shows of `src` (default: as source() would choose) and the database, into the caches every
    page uses (what `meshstep ui` does while the server starts); raises MeshstepError."""
    _reading((src or default_source(), _readings()["count"]))
    _store(db)


def warm_up_pages(src: str | None) -> None:
    """Fill the caches of the pages after the first (the inventory, and the Inventory page's tables); raises
    MeshstepError."""
    _inventory_tables((src or default_source(), _readings()["count"]))


def inventory() -> Inventory:
    """The current source's inventory; on failure the page shows what to do and stops."""
    src = source()
    try:
        inv = load(src)
    except MeshstepError as e:
        st.error(f"Cannot read the source **{safe.md(src)}**: {safe.md_message(e)}\n\nChoose another source on "
                 "the Settings page.")
        st.stop()
    with suppress(MeshstepError):  # every list refused: nothing to follow over time (the Overview says why)
        _record_first_load(_reading(reading()))
    return inv


def cluster_reading() -> Reading:
    """What the current source shows (planner.fleet.Reading: versions, mesh membership, features observed, what it
    could not read), kept per content of a snapshot; on failure the page shows what to do and stops."""
    src = source()
    try:
        with st.spinner(f"Reading {safe.md(src)}…"):
            read = _reading(reading())
    except MeshstepError as e:
        st.error(f"Cannot read the source **{safe.md(src)}**: {safe.md_message(e)}\n\nChoose another source on "
                 "the Settings page.")
        st.stop()
    _record_first_load(read)
    return read


def observations() -> tuple[Observation, ...]:
    """Where detection finds each feature on, for the current source."""
    return cluster_reading().observed


@st.cache_resource(show_spinner=False)
def _readings() -> dict[str, int]:
    return {"count": 0}


def reading() -> tuple[str, int]:
    """The current source and how many times the cluster was re-read: what a page keys its own caches on, so that
    **Re-read the cluster** refreshes them too."""
    return source(), _readings()["count"]


def refresh() -> None:
    """Forget every cached inventory, so the next page reads the source again."""
    _readings()["count"] += 1
    _inventory.clear()
    _reading.clear()
    _inventory_tables.clear()
    st.session_state.pop("recorded", None)


def cluster(inv: Inventory) -> str:
    """The cluster name records are kept under: the source's label ("demo" for the bundled demo)."""
    return inv.source


# A reading is kept when the cluster's adoption changed, else at most this often: every browser tab is a session,
# and one reading per session would fill the audit trail with identical events.
RECORD_EVERY = timedelta(hours=1)


def _record_first_load(read: Reading) -> None:
    """Keep an inventory summary when it changed (or an hour after the last): the Overview's adoption chart."""
    recorded = st.session_state.setdefault("recorded", set())
    if read.source in recorded or not read.cluster:  # a set of manifests is not a cluster to follow over time
        return
    recorded.add(read.source)
    summary = {"cluster": read.source, "source": read.source, **read.mesh,
               "features_observed": sorted(({"feature": o.feature, "scope": o.scope} for o in read.observed),
                                           key=lambda f: (f["feature"], f["scope"]))}
    with errors("Could not record this inventory in the history"):
        store().record_inventory(summary, actor() or "meshstep ui", unless_same_within=RECORD_EVERY)


# ---------------------------------------------------------------- state database


@st.cache_resource(show_spinner=False)
def _store(url: str | None) -> Store:
    from state.store import Store

    return Store.open(url)


def store() -> Store:
    """The state database of $MESHSTEP_DATABASE_URL (`meshstep ui --db`), else the default SQLite file."""
    try:
        return _store(os.environ.get("MESHSTEP_DATABASE_URL"))
    except MeshstepError as e:
        st.error(f"{safe.md_message(e)}\n\nWhoever runs this server starts the app with a database it can "
                 "write.")
        st.stop()


# ---------------------------------------------------------------- identity


# The name given in the sidebar also lives in the page's address (?as=alice): a reload or a bookmark keeps it
# without a cookie or any storage on the server, and each browser tab keeps its own. It is what the person typed,
# not a credential (the typed name never was one: authentication is Streamlit's, see actor()).
_ACTOR_PARAM = "as"


def actor() -> str | None:
    """Who makes changes: the signed-in person (an Actor with the verified identity) when sign-in is configured,
    else the name given this session (or kept in the address by an earlier one in this tab): self-declared."""
    access = access_.current()
    if not access.local:
        return access.actor
    if _ACTOR_KEY not in st.session_state:
        st.session_state[_ACTOR_KEY] = (st.query_params.get(_ACTOR_PARAM) or "").strip() or None
    return st.session_state[_ACTOR_KEY]


def _take_name() -> None:
    st.session_state[_ACTOR_KEY] = (st.session_state.pop("actor_input", "") or "").strip() or None


def _forget_name() -> None:
    st.session_state[_ACTOR_KEY] = None
    st.query_params.pop(_ACTOR_PARAM, None)


def identity_sidebar() -> None:
    """Who is signed in and with which roles; without sign-in, ask once per session who is making changes."""
    access = access_.current()
    if not access.local:
        roles = ", ".join(r for r in access_.ROLES if access.has(r))
        st.sidebar.caption(f"Signed in as **{safe.md(access.actor)}** ({roles})")
        st.sidebar.button("Sign out", on_click=st.logout, type="tertiary", icon=":material/logout:")
        return
    name = actor()
    if name:
        # Put back on every run: switching pages gives the page a new address without it.
        if st.query_params.get(_ACTOR_PARAM) != name:
            st.query_params[_ACTOR_PARAM] = name
        # Kept under a key of its own: a widget's value is dropped on the runs that do not draw it.
        st.sidebar.markdown(f"Changes are recorded as **{safe.md(name)}** (self-declared).")
        st.sidebar.button("Not you?", on_click=_forget_name, type="tertiary", icon=":material/person:")
        return
    st.sidebar.text_input("Your name", key="actor_input", on_change=_take_name, placeholder="then press Enter",
                          help="Asked once per session: the audit trail names you with each change you make.")


def require_actor(role: str = access_.OPERATOR, action: str = "make changes") -> str | None:
    """The actor when they hold `role`, else an error naming the role `action` needs (and None); without sign-in,
    a warning asking for a name when nobody has said who they are."""
    if not access_.permit(role, action):
        return None
    name = actor()
    if not name:
        st.warning("Enter your name in the sidebar first: every change is recorded with who made it.")
    return name


# ---------------------------------------------------------------- rendered config

_LABEL_NOTE = re.compile(r"^kubectl label namespace (\S+) ((?:\S+=\S*\s*)+?)(?:\s+--overwrite)?$")


def labels_in_both(notes: Sequence[str], yaml_text: str) -> list[str]:
    """The `kubectl label namespace` lines of `notes` whose labels the YAML's Namespace of that name also sets: the
    two do the same thing, and a reader must be told to use one."""
    wanted = {m[1]: dict(kv.split("=", 1) for kv in m[2].split()) for n in notes if (m := _LABEL_NOTE.match(n))}
    if not wanted:
        return []
    import yaml  # only for the few renderings that label a namespace

    namespaces = {(o.get("metadata") or {}).get("name"): (o.get("metadata") or {}).get("labels") or {}
                  for o in yaml.safe_load_all(yaml_text) if isinstance(o, dict) and o.get("kind") == "Namespace"}
    return [n for n in notes if (m := _LABEL_NOTE.match(n)) and m[1] in namespaces
            and wanted[m[1]].items() <= namespaces[m[1]].items()]


def show_config(notes: Sequence[str], yaml_text: str, empty: str = "# nothing to apply") -> None:
    """The commands and the YAML of a rendering, long lines wrapped (nothing cut off); where a command and the
    YAML set the same namespace label, which of the two to use."""
    if notes:
        st.markdown("**Run**")
        st.code(safe.terminal(controls.for_app("\n".join(notes))), language="sh", wrap_lines=True)
    if both := labels_in_both(notes, yaml_text):
        st.info(", ".join(map(safe.code, both)) + " and the Namespace in the YAML below set the same label: "
                "**use one**. Apply the YAML when your namespaces are kept in Git (it is the namespace as the "
                "cluster has it now, with the label added); run the command to label it by hand. Then restart the "
                "pods as the other lines say: injection happens when a pod is created.", icon=":material/info:")
    st.markdown("**Apply**")
    st.code(safe.terminal(yaml_text) or empty, language="yaml", wrap_lines=True)


# ---------------------------------------------------------------- errors and messages


@contextmanager
def errors(what: str = "") -> Iterator[None]:
    """Show a MeshstepError (whose message says what to do) as st.error instead of raising it; `what` and the
    message are shown as text (both may name what the cluster or a user says)."""
    try:
        yield
    except MeshstepError as e:
        st.error((f"{safe.md_message(what)}: " if what else "") + safe.md_message(e))


def status(store: Store, read: Reading) -> dict[str, list[dict]]:
    """The cluster's recorded flags and their drift, as `meshstep status` computes them; and, above it, one line
    naming what the source could not read (a feature whose evidence is there is unknown, not off)."""
    from state.drift import recorded_and_drift

    if read.not_visible:
        st.warning("Not visible: " + "; ".join(f"{n.resource} ({n.reason})" for n in read.not_visible)
                   + ". What their objects would show is unknown, not off.", icon=":material/visibility_off:")
    return recorded_and_drift(store, read.source, read.observed, read.unknown)


def flash(message: str, kind: str = "success") -> None:
    """A message shown once after the rerun that follows a change: Markdown, so a value in it goes through
    safe.md() first."""
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
        st.error(f"Something went wrong on this page: {safe.md_message(str(e))}\n\nPress **Re-read the cluster** "
                 "in the sidebar and try again; if it persists, report it with the server log.")
