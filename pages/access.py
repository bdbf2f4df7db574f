"""Access & audit (admins): who may do what in this workspace, and the audit trail of who did what, when.

Shown in the navigation to signed-in admins only; the core refuses role changes and reading the trail to
anyone else whatever this page shows (`segloop.store.identity`).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from components import auth
from components.app_shell import ensure_app_shell
from components.scan_picker import keep_case_in_url
from components.store import fmt_time, get_store
from segloop.errors import SegLoopError
from segloop.store.identity import (
    Action,
    audit_csv,
    audit_trail,
    load_roles_config,
    remove_role,
    roles_file,
    set_role,
)
from segloop.store.vocabulary import ROLE_ORDER, AuditAction

ROLE_HELP = {"none": "no access at all", "viewer": "look", "annotator": "segment, correct, save",
             "reviewer": "approve (and everything an annotator does)",
             "admin": "retrain, activate, roll back, manage roles, read this trail (and everything else)"}

ensure_app_shell()
keep_case_in_url()
identity = auth.require_page(Action.MANAGE_ROLES)
st.title("Access & audit")
if flash := st.session_state.pop("access_flash", None):
    st.success(flash)
store = get_store()

# --------------------------------------------------------------------------- roles
st.subheader("Roles")
st.caption(" · ".join(f"**{r}**: {ROLE_HELP[r]}" for r in ROLE_ORDER))
try:
    config = load_roles_config(store.workspace)
except SegLoopError as exc:
    st.error(str(exc))
    st.stop()
path = roles_file(store.workspace)
st.caption(f"Admins from configuration (never demoted here): {', '.join(config.admins) or 'none'} · "
           f"anyone else signed in without a role: **{config.default}** · roles file: "
           + (f"`{path}`" if path else "none (SEGLOOP_ROLES or roles.toml in the workspace)"))
assigned = store.role_assignments()
rows = [{"E-mail or domain": a.principal, "Role": a.role, "Given in": "the app",
         "By": a.granted_by_email or a.granted_by_subject, "When": fmt_time(a.granted_at)} for a in assigned]
rows += [{"E-mail or domain": p, "Role": str(r), "Given in": "roles file", "By": "", "When": ""}
         for p, r in sorted(config.roles.items()) if p not in {a.principal for a in assigned}]
if rows:
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="access_roles_table", width="stretch")
else:
    st.caption("No roles given yet: everyone but the admins has the default role.")

with st.form("access_role_form", clear_on_submit=True):
    col_p, col_r, col_b = st.columns([3, 2, 1], vertical_alignment="bottom")
    principal = col_p.text_input("E-mail address or @domain", key="access_principal",
                                 placeholder="ann@example.org or @example.org")
    role = col_r.selectbox("Role", list(ROLE_ORDER), index=2, key="access_role", format_func=str)
    if col_b.form_submit_button("Give role", type="primary"):
        try:
            a = set_role(store, identity, principal, role)
            st.session_state["access_flash"] = f"{a.principal} now has the {a.role} role."
            st.rerun()
        except SegLoopError as exc:
            st.error(str(exc))
if assigned:
    col_p, col_b = st.columns([5, 1], vertical_alignment="bottom")
    gone = col_p.selectbox("Take back a role given here", [a.principal for a in assigned], key="access_remove")
    if col_b.button("Take back", key="access_remove_btn"):
        try:
            remove_role(store, identity, gone)
            st.session_state["access_flash"] = f"{gone}: role taken back; the configuration decides again."
            st.rerun()
        except SegLoopError as exc:
            st.error(str(exc))

# --------------------------------------------------------------------------- audit trail
st.subheader("Audit trail")
try:
    entries = audit_trail(store, identity)
except SegLoopError as exc:
    st.error(str(exc))
    st.stop()
st.caption(f"{len(entries)} entries, append-only: saves, approvals, activations, rollbacks, training starts and "
           "cancels, role changes. Times are local here, UTC in the CSV.")
actions = st.multiselect("Actions", [str(a) for a in AuditAction], default=[str(a) for a in AuditAction],
                         key="audit_actions")
shown = [e for e in reversed(entries) if e.action in actions]
st.dataframe(pd.DataFrame([{"When": fmt_time(e.created_at), "Who": e.actor_email or e.actor_name or e.actor_subject,
                            "Subject": e.actor_subject, "Role": e.actor_role, "Action": e.action,
                            "Target": e.target} for e in shown],
                          columns=["When", "Who", "Subject", "Role", "Action", "Target"]),
             hide_index=True, key="audit_table", width="stretch")
st.download_button("Download the audit trail (CSV)", data=audit_csv(entries), file_name="segloop-audit.csv",
                   mime="text/csv", key="audit_download", icon=":material/download:", on_click="ignore")
