"""SegLoop: Streamlit entry point. Run with `streamlit run app.py`.

Pages are picked up from the files present in pages/, in the order of PAGE_ORDER, so a page can be
added by dropping its file there (unknown files are appended, titled from their name).
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
}


def page_list(pages_dir: Path = PAGES_DIR) -> list:
    """st.Page objects for the page files present; the viewer is the default page."""
    present = {p.stem: p for p in sorted(pages_dir.glob("*.py")) if not p.stem.startswith("_")}
    stems = [s for s in PAGE_ORDER if s in present] + [s for s in present if s not in PAGE_ORDER]
    pages = []
    for stem in stems:
        title, icon = PAGE_ORDER.get(stem, (stem.replace("_", " ").capitalize(), None))
        pages.append(st.Page(present[stem], title=title, icon=icon, url_path=stem, default=(stem == "viewer")))
    return pages


from components.app_shell import mark_app_shell  # noqa: E402

st.set_page_config(page_title="SegLoop", layout="wide", page_icon=":material/neurology:")
mark_app_shell()
with st.sidebar:
    st.markdown("### SegLoop")
    st.caption("3D segmentation with a human in the loop")
nav = st.navigation(page_list())
nav.run()
with st.sidebar:
    source = st.session_state.get("data_source")
    if source:
        st.caption(f"Data: {source}")
