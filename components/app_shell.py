"""Make every page run inside app.py's navigation, even on a deep link opened first after a start.

Streamlit keeps its old 'pages/ folder' mode (MPA v1) until the entry script has called
st.navigation once in the server's life. Until then a deep link such as /segment?case=x runs the
page file alone, without app.py's navigation, layout and sidebar. The pages call
`ensure_app_shell()` first: when app.py did not run, they switch that mode off and rerun, which
runs app.py with the same page and query parameters.
"""

from __future__ import annotations

import streamlit as st

_FLAG = "_segloop_app_shell"


def mark_app_shell() -> None:
    """Called by app.py on every run, before the page runs."""
    st.session_state[_FLAG] = True


def ensure_app_shell() -> None:
    """Rerun through app.py when this page was started without it."""
    if st.session_state.get(_FLAG):
        return
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False  # what st.navigation itself does on its first call
        st.rerun()


#: The SegLoop workflow, in order: (page file, title, what the user does there).
WORKFLOW = (
    ("pages/viewer.py", "Viewer", "look at a scan and its labels"),
    ("pages/segment.py", "Segment & correct", "run the model, fix its output, save"),
    ("pages/cases.py", "Cases", "see what is done, review, approve"),
    ("pages/retrain.py", "Retrain", "fine-tune on the corrections"),
    ("pages/models.py", "Models", "compare versions, activate one"),
)


def workflow_steps(here: str = "") -> None:
    """The workflow in one line: a numbered link per page with what it is for (`here` is the page's stem).

    The links carry no `?case=`: every page opens on the session's current case anyway.
    """
    cols = st.columns(len(WORKFLOW))
    for i, (col, (path, title, what)) in enumerate(zip(cols, WORKFLOW), 1):
        label = f"{i}. {title}" + ("  →" if i < len(WORKFLOW) else "")
        with col:
            try:
                st.page_link(path, label=label, disabled=path.endswith(f"/{here}.py"))
            except Exception:  # noqa: BLE001 - the page is not registered (a page run on its own)
                st.markdown(f"**{label}**")
            st.caption(what)
