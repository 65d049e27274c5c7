"""Settings: which cluster the app looks at, and where its records are kept."""
from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from app import traffic, ui
from planner.errors import MeshstepError

st.title("Settings")
ui.show_flash()

st.subheader("Source")
st.markdown(f"Now reading **`{ui.source()}`**.")
kind = st.radio("Read from", ["The bundled demo cluster", "A snapshot file", "A kube context"], horizontal=True)


def _switch(src: str, shown: str | None = None) -> None:
    """Use `src` if it can be read; otherwise keep the current source and say why (`shown`: what the user calls
    it, e.g. the name of an uploaded file)."""
    try:
        ui.load(src)
    except MeshstepError as e:
        if shown:  # an upload: its temporary copy is of no further use, and its path means nothing to the user
            Path(src).unlink(missing_ok=True)
            e = str(e).replace(src, shown)
        st.error(f"Cannot read **{shown or src}**: {e}\n\nStill reading **{ui.source()}**: fix the file, or choose "
                 "another source.", icon=":material/error:")
        return
    ui.set_source(src)
    ui.flash(f"Now reading **{shown or src}**.")
    st.rerun()


if kind == "The bundled demo cluster":
    st.caption("An Istio 1.27.3 cluster with an injected shop, classic-sidecar payments and a legacy namespace.")
    if st.button("Use the demo", type="primary"):
        _switch("demo")
elif kind == "A snapshot file":
    st.caption("YAML or JSON of Kubernetes objects (kubectl get -A -o yaml …), or a .tar.gz of such files.")
    upload = st.file_uploader("Upload a snapshot", type=["yaml", "yml", "json", "gz", "tgz"])
    if upload is not None and st.button("Read this snapshot", type="primary"):
        # The sources read paths: keep the upload in a file that outlives this run (the cache refers to it).
        suffix = ".tar.gz" if upload.name.endswith((".tar.gz", ".tgz")) else Path(upload.name).suffix
        with tempfile.NamedTemporaryFile(prefix="meshstep-", suffix=suffix, delete=False) as f:
            f.write(upload.getvalue())
        _switch(f.name, upload.name)
    # The app runs where the files are (`meshstep ui` is local): a path also reads a directory of manifests.
    path = st.text_input("…or a file or directory on the machine running meshstep ui",
                         placeholder="/path/to/snapshot.yaml")
    if st.button("Read this path", disabled=not path.strip()):
        _switch(path.strip())
else:
    st.caption("A context of your kubeconfig; the app reads the cluster with your credentials (read-only).")
    context = st.text_input("Context name", placeholder="e.g. kind-istio")
    if st.button("Read this cluster", type="primary", disabled=not context):
        _switch(f"context:{context}")

st.subheader("Telemetry")
st.markdown(f"Observed traffic is read from **`{traffic.current() or 'nowhere'}`**.")
st.caption("Istio's metrics, for the traffic shown beside each component: a Prometheus URL (http://host:9090), a "
           "metrics file on this machine, or `demo` for the demo cluster's. Empty: none.")
value = st.text_input("Prometheus URL or metrics file", value=traffic.current() or "", key="telemetry_input")
if st.button("Use this telemetry"):
    previous = traffic.current()
    traffic.set_current(value.strip())
    try:
        traffic.observed()
    except MeshstepError as e:
        traffic.set_current(previous)
        st.error(f"Cannot read **{value.strip()}**: {e}", icon=":material/error:")
    else:
        ui.flash(f"Observed traffic now from **{value.strip() or 'nowhere'}**.")
        st.rerun()

st.subheader("State database")
st.markdown(f"Flags, plans, the audit trail and the inventory history are kept in `{ui.store().url}`.")
st.caption("Start the app with `meshstep ui --db URL` (or set MESHSTEP_DATABASE_URL) to use another database; "
           "a PostgreSQL URL lets a team share it.")
