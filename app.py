"""SegLoop: Streamlit entry point. Run with `streamlit run app.py`.

Pages are picked up from the files present in pages/, in the order of PAGE_ORDER, so a page can be
added by dropping its file there (unknown files are appended, titled from their name).

With sign-in configured (an [auth] section in Streamlit's secrets) nothing but the sign-in screen runs
until someone is signed in (`components.auth.gate`); without it the app runs in single-user local mode.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).resolve().parent / "pages"

#: file stem -> (title, icon), in navigation order.
PAGE_ORDER = {
    "viewer": ("Viewer", ":material/view_in_ar:"),
    "segment": ("Segment & correct", ":material/brush:"),
    "cases": ("Cases", ":material/folder_open:"),
    "retrain": ("Retrain", ":material/model_training:"),
    "models": ("Models", ":material/hub:"),
    "access": ("Access & audit", ":material/admin_panel_settings:"),
}


def page_list(pages_dir: Path = PAGES_DIR, hidden: set[str] | frozenset[str] = frozenset()) -> list:
    """st.Page objects for the page files present, less the `hidden` stems; the viewer is the default page."""
    present = {p.stem: p for p in sorted(pages_dir.glob("*.py"))
               if not p.stem.startswith("_") and p.stem not in hidden}
    stems = [s for s in PAGE_ORDER if s in present] + [s for s in present if s not in PAGE_ORDER]
    pages = []
    for stem in stems:
        title, icon = PAGE_ORDER.get(stem, (stem.replace("_", " ").capitalize(), None))
        pages.append(st.Page(present[stem], title=title, icon=icon, url_path=stem, default=(stem == "viewer")))
    return pages


from components import auth  # noqa: E402
from components.app_shell import mark_app_shell  # noqa: E402

st.set_page_config(page_title="SegLoop", layout="wide", page_icon=":material/neurology:")
mark_app_shell()
with st.sidebar:
    st.markdown("### SegLoop")
    st.caption("3D segmentation with a human in the loop")
if auth.needs_sign_in():  # no page list either: it replaces the pages/-folder list a deep link may have shown
    st.navigation(page_list(), position="hidden")
identity, role = auth.gate()  # the sign-in screen, and nothing else, until someone is signed in
nav = st.navigation(page_list(hidden=auth.hidden_pages(identity, role)))
nav.run()
with st.sidebar:
    source = st.session_state.get("data_source")
    if source:
        st.caption(f"Data: {source}")
    auth.account_sidebar(identity, role)
