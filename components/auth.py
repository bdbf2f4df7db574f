"""Sign-in and roles in the app: who is using it (Streamlit's `st.login` / `st.user`, OpenID Connect) and
what their role lets them do (`segloop.store.identity`).

With an ``[auth]`` section in Streamlit's secrets (``.streamlit/secrets.toml``, or one that
`components.auth_setup` writes at start-up from environment variables) every page needs a signed-in
person: `gate` shows a sign-in screen until there is one. Without it the app runs as it always did, in
single-user local mode: one local identity that may do everything, the name typed on the Segment and
Cases pages recorded as the author.

The pages ask `allowed` to hide or disable what the role may not do, and pass `current_identity` to the
core, which checks the role again and refuses (`PermissionDenied`) whatever the page shows.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from components.store import get_store
from segloop.errors import SegLoopError
from segloop.store.identity import Identity, local_identity, permits, role_of, roles_allowed
from segloop.store.vocabulary import Role

#: The name typed in local mode (shared by the Segment and Cases pages).
AUTHOR_KEY = "seg_author_name"


def author_name() -> str:
    """The name recorded as the author in local mode: the one typed in this session, else the OS user."""
    return (st.session_state.get(AUTHOR_KEY) or os.environ.get("USER") or "").strip()
#: Pages shown to signed-in admins only (file stems in pages/).
ADMIN_PAGES = ("access",)


def auth_configured() -> bool:
    """Whether sign-in is configured: Streamlit's secrets hold an ``[auth]`` section.

    A secrets file that exists but cannot be read stops the run with a message: it may hold the sign-in
    settings, and falling back to local mode would give every visitor every right.
    """
    if st.secrets.load_if_toml_exists():
        return "auth" in st.secrets
    from streamlit import config

    unreadable = [f for f in config.get_option("secrets.files") if Path(f).is_file()]
    if unreadable:
        st.error(f"The secrets file {unreadable[0]} cannot be read (see the server log); the app stays closed "
                 "until it is fixed.", icon=":material/lock:")
        st.stop()
    return False


def _claims() -> dict | None:
    """The signed-in user's ID token claims, or None when nobody is signed in."""
    try:
        user = st.user.to_dict()
    except Exception:  # noqa: BLE001 - no user information in this run
        return None
    return user if user.get("is_logged_in") else None


def needs_sign_in() -> bool:
    """Whether sign-in is configured and nobody is signed in yet."""
    return auth_configured() and _claims() is None


def _sign_in_screen() -> None:
    st.title("SegLoop")
    st.caption("3D segmentation with a human in the loop")
    st.info("Sign in to use this workspace: every correction, approval and model change is recorded under "
            "your name.", icon=":material/login:")
    st.button("Sign in", key="auth_sign_in", type="primary", on_click=st.login, icon=":material/login:")
    space_host = os.environ.get("SPACE_HOST", "").strip()
    if space_host:  # inside the huggingface.co page the provider's sign-in cannot open (it refuses frames)
        st.caption("On huggingface.co, sign-in opens outside the page's frame: if nothing happens, open the app "
                   "in its own tab first.")
        st.link_button("Open SegLoop in its own tab", f"https://{space_host}", icon=":material/open_in_new:")


def current_identity() -> Identity:
    """Who is using the app: the signed-in person, or the local identity when sign-in is not configured.

    With sign-in configured, stops the run with the sign-in screen while nobody is signed in, and with a
    refusal for a signed-in person whose role is "none".
    """
    if not auth_configured():
        return local_identity(st.session_state.get(AUTHOR_KEY) or None)
    claims = _claims()
    if claims is None:
        _sign_in_screen()
        st.stop()
    try:
        identity = Identity.from_claims(claims)
    except SegLoopError as exc:
        st.error(str(exc))
        st.button("Sign out", key="auth_sign_out_bad", on_click=st.logout)
        st.stop()
    if current_role(identity) == Role.NONE:
        st.title("SegLoop")
        st.warning(f"{identity.label} has no access to this workspace. Ask an admin to give you a role.",
                   icon=":material/lock:")
        st.button("Sign out", key="auth_sign_out_denied", on_click=st.logout)
        st.stop()
    return identity


def current_role(identity: Identity | None = None) -> Role:
    """The role of `identity` (default: `current_identity`) in this workspace, read afresh.

    A broken roles configuration stops the run with its message (never a guess at someone's rights).
    """
    identity = identity or current_identity()
    if identity.local:
        return Role.ADMIN
    try:
        return role_of(get_store(), identity)
    except SegLoopError as exc:
        st.error(f"Roles cannot be read: {exc}")
        st.stop()


def allowed(action: str, identity: Identity | None = None) -> bool:
    """Whether the current user (or `identity`) may do `action` (an `Action` value); always true in local mode."""
    identity = identity or current_identity()
    return identity.local or permits(current_role(identity), action)


def needs(action: str) -> str:
    """Why a control is disabled, e.g. 'Needs the reviewer or admin role.'"""
    return "Needs the " + " or ".join(str(r) for r in roles_allowed(action)) + " role."


def gate() -> tuple[Identity, Role]:
    """Called by app.py before any page: the sign-in screen until someone is signed in, a refusal for a
    signed-in person without a role (`current_identity`); returns who is using the app and their role."""
    identity = current_identity()
    return identity, current_role(identity)


def hidden_pages(identity: Identity, role: Role) -> set[str]:
    """Page stems the navigation leaves out: the admin pages, except for a signed-in admin."""
    return set() if (not identity.local and role == Role.ADMIN) else set(ADMIN_PAGES)


def account_sidebar(identity: Identity, role: Role) -> None:
    """The sidebar line saying who is signed in (with a sign-out button), or that this is local mode."""
    if identity.local:
        st.caption("Local mode: single user, no sign-in.")
        return
    st.caption(f"Signed in as **{identity.label}** ({role})")
    st.button("Sign out", key="auth_sign_out", on_click=st.logout, icon=":material/logout:")


def require_page(action: str) -> Identity:
    """For a page meant for one role up: the identity, or a refusal that stops the run."""
    identity = current_identity()
    if not allowed(action, identity):
        st.warning(f"{identity.label} may not use this page. {needs(action)}", icon=":material/lock:")
        st.stop()
    return identity

