"""Settings: which cluster the app looks at, and where its records are kept."""
from __future__ import annotations

import streamlit as st

from app import safe, traffic, ui
from cluster.errors import MeshstepError

st.title("Settings")
ui.show_flash()

st.subheader("Source")
st.markdown(f"Now reading **{safe.code(ui.source())}**.")
kind = st.radio("Read from", ["The bundled demo cluster", "A snapshot file", "A kube context"], horizontal=True)


def _switch(src: str, shown: str | None = None) -> None:
    """Use `src` if it can be read; otherwise keep the current source and say why (`shown`: what the user calls
    it, e.g. the name of an uploaded file)."""
    try:
        ui.load(src)
    except MeshstepError as e:
        st.error(f"Cannot read **{safe.md(shown or src)}**: {safe.md_message(e)}\n\nStill reading "
                 f"**{safe.md(ui.source())}**: fix the file, or choose another source.", icon=":material/error:")
        return
    ui.set_source(src)
    ui.flash(f"Now reading **{safe.md(shown or src)}**.")
    st.rerun()


if kind == "The bundled demo cluster":
    st.caption("An Istio 1.27.3 cluster with an injected shop, classic-sidecar payments and a legacy namespace.")
    if st.button("Use the demo", type="primary"):
        _switch("demo")
elif kind == "A snapshot file":
    st.caption("YAML or JSON of Kubernetes objects (kubectl get -A -o yaml …), or a .tar.gz of such files.")
    upload = st.file_uploader("Upload a snapshot", type=["yaml", "yml", "json", "gz", "tgz"])
    if upload is not None and st.button("Read this snapshot", type="primary"):
        _switch(ui.upload_source(upload.name, upload.getvalue()), upload.name)
    # Only under the directories the operator allowed (`meshstep ui --allow-path DIR`): a visitor must not read,
    # or learn of, anything else the server can.
    roots = ui.allowed_roots()
    path = st.text_input("…or a file or directory on the machine running meshstep ui",
                         placeholder=f"{roots[0]}/snapshot.yaml" if roots else "off on this server",
                         help="Under " + ", ".join(map(safe.code, roots)) if roots else
                         "Off: whoever runs this server allows a directory of it when starting the app.")
    if st.button("Read this path", disabled=not path.strip()):
        try:
            _switch(ui.server_path(path.strip()), path.strip())
        except MeshstepError as e:
            st.error(f"Cannot read **{safe.md(path.strip())}**: {safe.md_message(e)}", icon=":material/error:")
else:
    st.caption("A context of your kubeconfig; the app reads the cluster with your credentials (read-only).")
    context = st.text_input("Context name", placeholder="e.g. kind-istio")
    if st.button("Read this cluster", type="primary", disabled=not context):
        _switch(f"context:{context}")

st.subheader("Telemetry")
st.markdown(f"Observed traffic is read from **{safe.code(traffic.current() or 'nowhere')}**.")
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
        st.error(f"Cannot read **{safe.md(value.strip())}**: {safe.md_message(e)}", icon=":material/error:")
    else:
        ui.flash(f"Observed traffic now from **{safe.md(value.strip() or 'nowhere')}**.")
        st.rerun()

st.subheader("State database")
st.markdown(f"Flags, plans, the audit trail and the inventory history are kept in {safe.code(ui.store().url)}.")
st.caption("Another database is chosen when the app is started (or with MESHSTEP_DATABASE_URL); a PostgreSQL "
           "database lets a team share it.")
