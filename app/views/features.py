"""Features: what is on where — recorded by the team, observed in the cluster — and changing a flag."""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from analysis.effective import UNKNOWN, resolved
from analysis.readiness.scope import mesh_namespaces
from app import access, findings, safe, ui
from cluster.changes import diff
from features._gate import render_gated
from features.base import MESH, Feature, Refused, registry, validate_params

inv = ui.inventory()
store = ui.store()
cluster = ui.cluster(inv)
feats = registry()
observed = ui.observations()

st.title("Features")
status = ui.status(store, ui.cluster_reading())
ui.show_flash()

# ---------------------------------------------------------------- the matrix

recorded = {(f["feature"], f["scope"]): f["state"] for f in status["recorded"]}
seen = {(o.feature, o.scope) for o in observed}
drifting = {(d["feature"], d["scope"]) for d in status["drift"]}
scopes = [MESH] + sorted({s for _, s in seen | set(recorded)} - {MESH})


def _cell(key: tuple[str, str]) -> str:
    parts = [f"recorded {recorded[key]}"] if key in recorded else []
    parts += ["observed"] if key in seen else []
    parts += ["⚠ drift"] if key in drifting else []
    return " · ".join(parts)


st.subheader("Flag matrix")
st.caption("Each cell: the flag recorded for that scope, whether detection observes the feature on there, and ⚠ "
           "where the two disagree (see the Overview for the details).")
matrix = pd.DataFrame(safe.cells({"feature": fid, "category": f.category, **{s: _cell((fid, s)) for s in scopes}}
                                 for fid, f in feats.items()))
st.dataframe(matrix, hide_index=True, width="stretch", height=38 + 35 * len(matrix))

st.subheader("In effect")
st.caption("What Istio does, as it resolves it: the config that sets each behaviour, else Istio's default (with the "
           "istio.io page that states it); unknown where the source could not show the kinds that decide it. "
           "Namespaces are listed where they differ from the mesh.")
effective = pd.DataFrame(safe.cells({"behaviour": e.behaviour, "scope": e.scope, "value": e.value or UNKNOWN,
                                     "why": e.why, "istio.io": e.page} for e in resolved(inv, mesh_namespaces(inv))))
st.dataframe(effective, hide_index=True, width="stretch",
             column_config={"istio.io": st.column_config.LinkColumn("istio.io")})

# ---------------------------------------------------------------- one feature


def _param_inputs(feature: Feature, scope: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """One widget per parameter, typed as the feature declares it; validate_params checks the values."""
    values = {}
    for p in feature.params:
        # Keyed by scope too: another scope's recorded values must not linger in the widgets.
        key, value = f"param-{feature.id}-{scope}-{p.name}", defaults.get(p.name, p.default)
        if p.choices:
            values[p.name] = st.selectbox(p.name, p.choices, index=list(p.choices).index(value)
                                          if value in p.choices else 0, help=p.help, key=key)
        elif p.type is bool:
            values[p.name] = st.checkbox(p.name, bool(value), help=p.help, key=key)
        elif p.type in (int, float):
            values[p.name] = st.number_input(p.name, value=p.type(value or 0), help=p.help, key=key)
        else:
            values[p.name] = st.text_input(p.name, "" if value is None else str(value), help=p.help, key=key)
    # An empty text box means "not set": the feature's default applies.
    return {k: v for k, v in values.items() if v != ""}


st.subheader("A feature")
fid = st.selectbox("Feature", list(feats), format_func=lambda i: f"{feats[i].title} ({i})")
feature = feats[fid]
about, change = st.columns([3, 2])
with about:
    st.markdown(f"**What do we want Istio to solve?** {feature.problem}")
    if feature.depends_on:
        st.markdown("**Needs first:** " + ", ".join(f"`{d}`" for d in feature.depends_on))
    if feature.pitfalls:
        st.markdown("**Pitfalls**\n" + "\n".join(f"- {p}" for p in feature.pitfalls))
    if feature.docs:
        st.markdown(f"[Istio documentation]({feature.docs})")
    where = [f"{safe.code(o.scope)} — " + safe.md_message("; ".join(o.evidence[:2]))
             for o in observed if o.feature == fid]
    st.markdown("**Observed on in:**\n" + "\n".join(f"- {w}" for w in where) if where else "**Observed:** nowhere")

with change:
    scopes_allowed = ([MESH] if MESH in feature.scopes else []) + (
        inv.namespace_names() if "namespace" in feature.scopes else [])
    scope = st.selectbox("Scope", scopes_allowed, help="mesh: the whole mesh (config in the root namespace); "
                                                       "a namespace: that namespace only.")
    current = next((f for f in status["recorded"] if f["feature"] == fid and f["scope"] == scope), None)
    # The version this form was drawn with: a change is refused (conflict) if someone changed the flag since, even
    # between drawing the form and submitting it (this run has already re-read the flags).
    seen_key = f"flag_version_seen:{fid}:{scope}"
    seen = st.session_state.get(seen_key)
    st.session_state[seen_key] = current["version"] if current else 0
    st.caption(f"Recorded: **{current['state']}** (version {current['version']}, by "
               f"{safe.md(current['changed_by'])})"
               if current else "Recorded: nothing yet")
    with st.form("flag"):
        params = _param_inputs(feature, scope, current["params"] if current else {})
        states = ["on", "enabling", "off", "disabling"]
        state = st.selectbox("State", states, index=states.index(current["state"]) if current else 0,
                             help="on / off: what the cluster should have; enabling / disabling: on the way there.")
        reason = st.text_input("Reason", help="Kept in the audit trail with your name.")
        buttons = st.container(horizontal=True)
        with buttons:
            set_clicked = st.form_submit_button("Set flag", type="primary")
            unset_clicked = st.form_submit_button("Unset flag", disabled=current is None)
            render_clicked = st.form_submit_button("Render YAML")

    if render_clicked and access.permit(access.OPERATOR, "render YAML"):
        with ui.errors(f"{fid} cannot be rendered for {scope}"):
            try:
                rendered, gate = render_gated(feature, params, scope, inv)
                refused = False
            except Refused as e:
                if e.rendered is None:
                    raise
                rendered, gate, refused = e.rendered, e.findings, True
            changes = diff(rendered.objects, rendered.delete, inv)
            st.session_state["rendered"] = (fid, scope, rendered.yaml, list(rendered.notes), gate,
                                            changes.summary(), changes.diff, refused)
    elif (set_clicked or unset_clicked) and (actor := ui.require_actor(access.OPERATOR, "change a flag")):
        if not reason:
            st.error("Give a reason: it is kept in the audit trail with your name.")
        else:
            with ui.errors("The flag was not changed"):
                expected = st.session_state[seen_key] if seen is None else seen
                if set_clicked:
                    checked = (feature.validate(params, scope, inv) if state in ("on", "enabling")
                               else validate_params(feature, params))  # as `meshstep flags set` checks it
                    flag = store.set_flag(cluster, fid, scope, checked, state, actor, reason, expected)
                    ui.flash(f"{fid} in {safe.md(scope)}: **{flag.state}** (version {flag.version}).")
                else:
                    store.unset_flag(cluster, fid, scope, actor, reason, expected or None)
                    ui.flash(f"{fid} in {safe.md(scope)}: no longer recorded.")
                st.rerun()

if (shown := st.session_state.get("rendered")) and shown[:2] == (fid, scope):
    st.subheader(f"{fid} for {safe.md(scope)}" + (" — REFUSED" if shown[7] else ""))
    if shown[7]:
        st.error("REFUSED: the gate or the invariants found what this YAML would break (below). Do not apply it.")
    findings.show(shown[4])
    st.markdown(f"**Changes against the cluster:** {safe.md_message(shown[5])}")
    st.code(safe.terminal(shown[6]) or "# no change", language="diff", wrap_lines=True)
    ui.show_config(shown[3], shown[2])
    if not shown[7]:
        st.download_button("Download YAML", shown[2], f"{fid}-{scope}.yaml", mime="application/yaml",
                           icon=":material/download:")
