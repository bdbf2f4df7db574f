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
