"""The app's telemetry: which Prometheus (or metrics file) the session reads, and the traffic it observed.

Chosen on the Settings page, kept per session like the source; read on the server with the telemetry's own
timeout, cached for a minute, so that a slow Prometheus costs one wait, not one per page."""
from __future__ import annotations

import os

import streamlit as st

from telemetry.edges import SharePoint, Traffic, mtls_share_over_time
from telemetry.evidence import Evidence, evidence
from telemetry.series import DEFAULT_WINDOW

_KEY = "telemetry"


def current() -> str | None:
    """A Prometheus URL, a metrics file (`demo`: the demo's), or None; default `meshstep ui --prometheus URL` /
    `--telemetry FILE` ($MESHSTEP_TELEMETRY), else $MESHSTEP_PROMETHEUS_URL."""
    if _KEY not in st.session_state:
        st.session_state[_KEY] = (os.environ.get("MESHSTEP_TELEMETRY") or os.environ.get("MESHSTEP_PROMETHEUS_URL")
                                  or None)
    return st.session_state[_KEY]


def set_current(value: str | None) -> None:
    st.session_state[_KEY] = value or None
    _read.clear()
    _share.clear()


def _options(value: str | None) -> tuple[str | None, str | None]:
    """(--prometheus, --telemetry) for a setting."""
    if value and value.startswith(("http://", "https://")):
        return value, None
    return None, value


@st.cache_resource(ttl=60, show_spinner="Reading Istio's metrics…", max_entries=4)
def _read(value: str, window: str) -> Traffic | None:
    return evidence(*_options(value), None, window).traffic()


def observed(window: str = DEFAULT_WINDOW) -> Traffic | None:
    """The traffic of the window, or None when no telemetry is set; a failing one raises MeshstepError (shown by
    ui.errors())."""
    value = current()
    return _read(value, window) if value else None


def stage_evidence() -> Evidence | None:
    """What a stage's gate sees and its verification compares (planning), from the telemetry set; None when none
    is. One that fails is said in the gate and the verification (as a cluster's own Prometheus is), not raised: the
    page stays usable."""
    value = current()
    if not value:
        return None
    ev = evidence(*_options(value), None)
    ev.explicit = False
    return ev


@st.cache_resource(ttl=60, show_spinner="Reading Istio's metrics…", max_entries=4)
def _share(value: str) -> tuple[str, list[SharePoint]]:
    tel = evidence(*_options(value), None).telemetry
    return tel.label, mtls_share_over_time(tel)


def mtls_share() -> tuple[str, list[SharePoint]] | None:
    """(where from, the mutual-TLS share step by step over the last hours), or None when no telemetry is set."""
    value = current()
    return _share(value) if value else None
