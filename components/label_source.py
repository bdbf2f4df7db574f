"""Which labels of the current case are on screen: the default when a case opens, and the Viewer's version picker.

When a case becomes current (`show_default`, called by the scan picker), every page shows the same labels:
the unsaved edits this session holds for the case, if any (the Segment page's work is never hidden);
else its default saved version (`segloop.store.label_choices.default_label_version`: latest approved,
else latest correction, else latest model output); else the reference labels it came with from the data
folder. `version_picker` lets the user show another saved version, or the reference labels, instead.

Choosing other labels replaces `session.current_labels()` for the case, on every page and in the Segment
page's editor (`editor.start_from`). What is shown is remembered in the scan's own state (`ScanState.shown`),
keyed by its content id. Unsaved edits of the case are never replaced silently: the picker
says how many voxels would be lost and waits for a second click.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from components import editor, session
from components.store import get_store
from segloop.errors import SegLoopError
from segloop.store.label_choices import REFERENCE, default_choice, label_choices, version_key
from segloop.store.label_versions import list_versions, load_version

PICK_KEY = "label_source"
PENDING_KEY = "_label_pick_pending"  # {"scan": content id, "key"}: a choice waiting for the user to give up edits
_ERROR_KEY = "_label_pick_error"
ON_SCREEN = "on screen"  # pseudo-choice: labels that are none of the saved ones (e.g. a prediction not saved)


def _versions() -> list:
    """The saved label versions of the current scan (found by its content id), oldest first; [] when none."""
    key = session.current_key()
    if key is None:
        return []
    try:
        store = get_store()
        scan = store.scan_by_content(key)
        return list_versions(store, scan.id) if scan is not None else []
    except Exception:  # noqa: BLE001 - no usable workspace: only the labels the scan came with
        return []


def _reference() -> np.ndarray | None:
    state = session.current()
    return None if state is None else state.reference


def _shown(key: str | None) -> str | None:
    """Key of the choice on screen for the scan `key`: the version the editor's labels descend from, else
    what was last shown."""
    base = editor.base_of(key)
    if base is not None:
        return version_key(base.version_id)
    state = session.scans().get(key) if key else None
    return None if state is None else state.shown


def _show(key: str | None, versions: list) -> bool:
    """Put the choice `key` on screen for the current scan; False (with a message kept for the picker) when
    its labels cannot be read."""
    state = session.current()
    version = next((v for v in versions if version_key(v.id) == key), None)
    if key == REFERENCE:
        ref = _reference()
        labels = None if ref is None else np.array(ref, copy=True)  # the loaded array is shared: never edited
    elif version is not None:
        try:
            labels = load_version(get_store(), version.id, session.current_volume())
        except (SegLoopError, OSError):
            st.session_state[_ERROR_KEY] = f"Version {version.version} of {state.name} could not be read."
            return False
    else:
        return False
    editor.start_from(labels, version)
    state.shown = key
    return True


def show_default(reference: np.ndarray | None) -> None:
    """Show the labels the user expects for a scan that just became current.

    Parameters
    ----------
    reference : np.ndarray or None
        The labels the scan came with (the data folder's reference labels), kept for the picker and
        never edited; None when it came without.

    Notes
    -----
    Unsaved edits this session holds for the scan come first; else its default saved version; else
    `reference` (already on screen: `session.set_current` put a copy there).
    """
    state = session.current()
    state.reference = reference
    st.session_state.pop(PENDING_KEY, None)
    held = editor.held_labels(state.key)
    if held is not None:
        labels, base = held
        session.set_labels(labels)
        state.message = f"Restored your unsaved edits of {state.name}."
        state.shown = version_key(base.version_id) if base is not None else (REFERENCE if reference is not None else None)
        return
    st.session_state.pop(_ERROR_KEY, None)
    versions = _versions()
    key = default_choice(versions, reference is not None)
    if key not in (REFERENCE, None) and _show(key, versions):
        return
    # no saved version (or it cannot be read): the labels it came with, already on screen
    editor.start_from(session.current_labels(), None)
    state.shown = REFERENCE if reference is not None else None


def _on_pick() -> None:
    scan = session.current_key()
    key = st.session_state.get(PICK_KEY)
    st.session_state.pop(_ERROR_KEY, None)
    if key == _shown(scan) or key == ON_SCREEN:
        st.session_state.pop(PENDING_KEY, None)
        return
    if editor.unsaved_of(scan):
        st.session_state[PENDING_KEY] = {"scan": scan, "key": key}  # asked below the box
        return
    st.session_state.pop(PENDING_KEY, None)
    _show(key, _versions())


def _confirm() -> None:
    pending = st.session_state.pop(PENDING_KEY, None)
    if pending and pending["scan"] == session.current_key():
        _show(pending["key"], _versions())


def _cancel() -> None:
    st.session_state.pop(PENDING_KEY, None)


def version_picker() -> None:
    """'Labels shown' box: the current scan's saved versions (default marked) and its reference labels.

    Picking one shows it on every page; with unsaved edits of the scan, a warning asks first.
    """
    state = session.current()
    if state is None:
        return
    choices = label_choices(_versions(), _reference() is not None)
    if not choices:
        st.caption("No saved labels for this case yet: run the model or draw them on the Segment page.")
        return
    titles = {c.key: c.title for c in choices}
    shown = _shown(state.key)
    if shown not in titles:
        titles = {ON_SCREEN: "Labels on screen (not saved)", **titles}
        shown = ON_SCREEN
    pending = st.session_state.get(PENDING_KEY)
    if pending is not None and (pending["scan"] != state.key or pending["key"] not in titles):
        pending = None
        st.session_state.pop(PENDING_KEY, None)
    st.session_state[PICK_KEY] = pending["key"] if pending else shown  # the box says what is on screen
    st.selectbox("Labels shown", list(titles), key=PICK_KEY, format_func=titles.get, on_change=_on_pick,
                 help="The latest approved version is shown by default, else the latest correction, else the "
                      "latest model output. Choosing another shows it on every page.")
    if error := st.session_state.get(_ERROR_KEY):
        st.error(error)
    unsaved = state.unsaved
    if pending:
        st.warning(f"{state.name} has {unsaved} unsaved edited voxels (Segment page). Showing "
                   f"{titles[pending['key']]} instead replaces them.", icon=":material/warning:")
        c1, c2 = st.columns(2)
        c1.button("Replace my edits", key="label_source_confirm", on_click=_confirm, type="primary")
        c2.button("Keep my edits", key="label_source_cancel", on_click=_cancel)
    elif unsaved and session.current_labels() is (editor.held_labels(state.key) or (None,))[0]:
        st.caption(f"Shown with your {unsaved} unsaved edited voxels (Segment page).")
