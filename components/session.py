"""The current scan and its label map, shared by every page through st.session_state.

There is ONE current scan per browser session: every page opens on it, the scan picker shows it and
the address bar names it (`?case=<name>&scan=<short id>`, kept in step by `sync_case_param`). The
viewer or the segment page sets it; the segmentation page reads and edits the same label array (in
place, through `planes.slice_view`), so both pages always show the same thing.

Everything else the app keeps of a scan (its view, predictions, unsaved edits, the labels chosen) is one
`components.scan_state.ScanState` per scan identity, its content id (`scans`, `current`): never keyed by
the display name, so two scans that share a file name never share anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st

from components.scan_state import ScanState
from segloop.io.volume import Volume
from segloop.store.scan_links import short_id

VOLUME_KEY = "current_volume"
LABELS_KEY = "current_labels"
SCAN_KEY = "current_scan"  # the current scan's identity: its content id
CASE_KEY = "current_case"  # the current scan's display name (for messages; never a key of anything)
SCANS_KEY = "scans"  # content id -> ScanState, least recently current first
NAMES_KEY = "label_names"
REVISION_KEY = "labels_revision"
CASE_PARAM = "case"  # ?case=<display name>: for people, and links written before ?scan=
SCAN_PARAM = "scan"  # ?scan=<short content id>: the scan a link means
#: Query parameters that describe the view of one case (dropped when another case becomes current).
VIEW_PARAMS = ("plane", "slice")
#: Scans whose state (views, predictions, saved-label choice) a session keeps; those with unsaved edits
#: are never dropped here (the editor bounds them, `components.editor.STASH_MAX`).
MAX_SCANS = 24
#: Scans whose predictions a session keeps (each holds label and uncertainty arrays).
MAX_PREDICTED = 4
#: Scans other than the current one whose unsaved edits a session keeps aside.
MAX_KEPT_EDITS = 3
_DROPPED_KEY = "_edits_dropped"  # names of scans whose kept edits had to go, not yet told


def current_volume() -> Volume | None:
    """The scan being viewed, or None before one is picked."""
    return st.session_state.get(VOLUME_KEY)


def current_labels() -> np.ndarray | None:
    """The current label array (RAS, same shape as the scan), or None when the scan has none yet.

    Its dtype is whatever the labels came with (uint8, or uint16 for labels above 255); nothing
    here casts it, so a value such as 1002 is never wrapped.
    """
    return st.session_state.get(LABELS_KEY)


def scans() -> dict[str, ScanState]:
    """The states of the scans this session has opened, by content id, least recently current first."""
    return st.session_state.setdefault(SCANS_KEY, {})


def current() -> ScanState | None:
    """The state of the current scan, or None before one is open."""
    key = st.session_state.get(SCAN_KEY)
    return None if key is None else scans().get(key)


def current_key() -> str | None:
    """The current scan's identity (content id), or None."""
    return st.session_state.get(SCAN_KEY)


def current_case() -> str | None:
    """Display name of the current scan (for what people read; state is keyed by `current_key`)."""
    state = current()
    return None if state is None else state.name


def current_source() -> str:
    """Where the current scan came from: 'data folder', 'demo', 'workspace' or 'upload'."""
    state = current()
    return "" if state is None else state.source


def set_current(volume: Volume, labels: np.ndarray | None, key: str, name: str, source: str,
                workspace_id: int | None = None) -> ScanState:
    """Make `volume` (identity `key`, its content id) the current scan; `labels` is copied so edits never
    touch a cached array. Returns its state, created on first opening (and renamed to `name` when the
    scan is known under another name now)."""
    if labels is not None and tuple(labels.shape) != volume.shape:
        raise ValueError(f"labels of shape {labels.shape} do not match the scan {volume.shape}")
    states = scans()
    state = states.pop(key, None) or ScanState(key=key, name=name, source=source)
    if key != current_key():  # the editor's last words were about the visit before
        state.message = state.last_box = state.saved = None
    state.name, state.source = name, source
    if workspace_id is not None:
        state.workspace_id = workspace_id
    states[key] = state  # now the most recently current
    st.session_state[VOLUME_KEY] = volume
    st.session_state[LABELS_KEY] = None if labels is None else np.array(labels, copy=True)
    st.session_state[SCAN_KEY] = key
    st.session_state[CASE_KEY] = name
    st.session_state[REVISION_KEY] = labels_revision() + 1
    _trim(states)
    return state


def _trim(states: dict[str, ScanState]) -> None:
    """Bound what a session holds: the unsaved edits of `MAX_KEPT_EDITS` scans besides the current one
    (the least recently current lose theirs first; `pop_dropped_edits` names them), predictions of the
    `MAX_PREDICTED` most recent scans, and at most `MAX_SCANS` states (a scan with unsaved edits keeps its)."""
    order = list(states)
    kept = [k for k in order[:-1] if states[k].unsaved]
    for key in kept[:max(len(kept) - MAX_KEPT_EDITS, 0)]:
        states[key].edits = None
        st.session_state.setdefault(_DROPPED_KEY, []).append(states[key].name)
    for key in order[:-MAX_PREDICTED]:
        states[key].predictions.clear()
    for key in order[:max(len(order) - MAX_SCANS, 0)]:
        if not states[key].unsaved:
            del states[key]


def pop_dropped_edits() -> list[str]:
    """Names of the scans whose kept unsaved edits were dropped to make room, since last asked."""
    return st.session_state.pop(_DROPPED_KEY, None) or []


def set_labels(labels: np.ndarray | None) -> None:
    """Replace the current label array (a prediction, a loaded version...)."""
    vol = current_volume()
    if vol is not None and labels is not None and tuple(labels.shape) != vol.shape:
        raise ValueError(f"labels of shape {labels.shape} do not match the scan {vol.shape}")
    st.session_state[LABELS_KEY] = labels
    st.session_state[REVISION_KEY] = labels_revision() + 1


def link_params(state: ScanState | None = None) -> dict[str, str]:
    """The query parameters of a link to a scan (the current one by default): its name and short id."""
    state = current() if state is None else state
    return {} if state is None else {CASE_PARAM: state.name, SCAN_PARAM: short_id(state.key)}


def sync_case_param() -> None:
    """Make the address bar name the current scan (`?case=<name>&scan=<short id>`): a shared link then
    opens that very scan. Nothing is written before a scan is current; other parameters are left alone."""
    for param, value in link_params().items():
        if st.query_params.get(param) != value:
            st.query_params[param] = value


def drop_view_params() -> None:
    """Forget `?plane=&slice=` of the previous case (they described its view, not the new one's)."""
    for key in VIEW_PARAMS:
        if key in st.query_params:
            del st.query_params[key]


def case_view() -> dict:
    """The remembered view of the current scan (see `ScanState.view`), shared by the Viewer and the
    Segment page so both open where the user left it; a throwaway dict before a scan is open."""
    state = current()
    return {"slices": {}, "window": None} if state is None else state.view


def labels_revision() -> int:
    """Counter bumped whenever the label array is replaced (for cache keys and redraws)."""
    return int(st.session_state.get(REVISION_KEY, 0))


def bump_labels_revision() -> None:
    """Tell cached renders that the labels changed (edited in place)."""
    st.session_state[REVISION_KEY] = labels_revision() + 1


@st.cache_data(show_spinner=False, ttl=60)
def _dataset_label_names(folder: str) -> dict[int, str]:
    from segloop.data.folders import dataset_label_names

    return dataset_label_names(folder)


@st.cache_data(show_spinner=False, ttl=60)
def _default_label_names() -> dict[int, str]:
    try:
        from segloop.model.card import card_path_for, load_card
        from segloop.model.inference import default_model_path

        return dict(load_card(card_path_for(default_model_path())).label_names)
    except Exception:  # no shipped model yet: plain names
        return {}


def label_names() -> dict[int, str]:
    """Label value -> name: set by a page (e.g. from a model card), else the data folder's
    dataset.json, else the shipped model's names."""
    names = st.session_state.get(NAMES_KEY)
    if names:
        return dict(names)
    from segloop.config import data_dir

    folder = data_dir()
    if folder is not None and current_source() == "data folder":
        found = _dataset_label_names(str(folder))
        if found:
            return found
    return _default_label_names()


def set_label_names(names: dict[int, str]) -> None:
    st.session_state[NAMES_KEY] = dict(names)


def file_key(path: str | Path | None) -> str:
    """path + mtime + size: a cache key that changes when the file does."""
    if not path:
        return ""
    try:
        st_ = os.stat(path)
    except OSError:
        return str(path)
    return f"{path}|{st_.st_mtime_ns}|{st_.st_size}"
