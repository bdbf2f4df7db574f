"""The current scan and its label map, shared by every page through st.session_state.

There is ONE current case per browser session: every page opens on it, the scan picker shows it and
the address bar names it (`?case=`, kept in step by `sync_case_param`). The viewer or the segment page
sets it; the segmentation page reads and edits the same label array (in place, through
`planes.slice_view`), so both pages always show the same thing.

What the user looks at is remembered per case (`case_view`): the window/level and the slice of each
plane, so coming back to a page, or to a case, shows it as it was left.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st

from segloop.io.volume import Volume

VOLUME_KEY = "current_volume"
LABELS_KEY = "current_labels"
CASE_KEY = "current_case"
SOURCE_KEY = "current_source"
NAMES_KEY = "label_names"
VIEWS_KEY = "case_views"
CASE_PARAM = "case"
#: Query parameters that describe the view of one case (dropped when another case becomes current).
VIEW_PARAMS = ("plane", "slice")


def current_volume() -> Volume | None:
    """The scan being viewed, or None before one is picked."""
    return st.session_state.get(VOLUME_KEY)


def current_labels() -> np.ndarray | None:
    """The current label array (RAS, same shape as the scan), or None when the scan has none yet.

    Its dtype is whatever the labels came with (uint8, or uint16 for labels above 255); nothing
    here casts it, so a value such as 1002 is never wrapped.
    """
    return st.session_state.get(LABELS_KEY)


def current_case() -> str | None:
    """Name of the current case (deep-link name, or the uploaded file name)."""
    return st.session_state.get(CASE_KEY)


def current_source() -> str:
    """Where the current scan came from: 'data folder', 'demo' or 'upload'."""
    return st.session_state.get(SOURCE_KEY, "")


def set_current(volume: Volume, labels: np.ndarray | None, case: str, source: str) -> None:
    """Make `volume` the current scan; `labels` is copied so edits never touch a cached array."""
    if labels is not None and tuple(labels.shape) != volume.shape:
        raise ValueError(f"labels of shape {labels.shape} do not match the scan {volume.shape}")
    st.session_state[VOLUME_KEY] = volume
    st.session_state[LABELS_KEY] = None if labels is None else np.array(labels, copy=True)
    st.session_state[CASE_KEY] = case
    st.session_state[SOURCE_KEY] = source
    st.session_state["labels_revision"] = st.session_state.get("labels_revision", 0) + 1


def set_labels(labels: np.ndarray | None) -> None:
    """Replace the current label array (a prediction, a loaded version...)."""
    vol = current_volume()
    if vol is not None and labels is not None and tuple(labels.shape) != vol.shape:
        raise ValueError(f"labels of shape {labels.shape} do not match the scan {vol.shape}")
    st.session_state[LABELS_KEY] = labels
    st.session_state["labels_revision"] = st.session_state.get("labels_revision", 0) + 1


def sync_case_param() -> None:
    """Make the address bar's `?case=` name the current case (a shared link then opens the same scan).

    Nothing is written before a case is current. Other query parameters are left alone.
    """
    case = current_case()
    if case and st.query_params.get(CASE_PARAM) != case:
        st.query_params[CASE_PARAM] = case


def drop_view_params() -> None:
    """Forget `?plane=&slice=` of the previous case (they described its view, not the new one's)."""
    for key in VIEW_PARAMS:
        if key in st.query_params:
            del st.query_params[key]


def case_view(case: str | None = None) -> dict:
    """The remembered view of a case (the current one by default), created empty on first use.

    A dict with "slices" ({plane: index}) and "window" ({"preset", "center", "width"} or None until
    set), shared by the Viewer and the Segment page so both open where the user left the case.
    """
    case = current_case() if case is None else case
    views = st.session_state.setdefault(VIEWS_KEY, {})
    if case not in views:
        views[case] = {"slices": {}, "window": None}
    return views[case]


def labels_revision() -> int:
    """Counter bumped whenever the label array is replaced (for cache keys and redraws)."""
    return int(st.session_state.get("labels_revision", 0))


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
