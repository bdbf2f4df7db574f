"""Pick the current scan: a case of SEGLOOP_DATA_DIR, a built-in demo scan, a scan kept in the workspace
(an earlier upload), or an upload.

There is one current case per browser session (`components.session`); the Scan box shows it and the
address bar names it (`?case=`), on every page:

- `?case=<name>` naming another case than the current one (a deep link, a shared link, a link on the
  Cases page, the browser's back button) opens that case;
- otherwise the current case stays, so every page opens on the case the user was looking at;
  before any case is open, the default demo (or the data folder's first case) opens;
- picking a case in the Scan box or uploading a scan makes it current and rewrites `?case=`.

An uploaded scan is registered in the workspace (stored there once, by content), so a link naming
it opens the same scan in another session. A scan that cannot be read shows its ScanError message
(an upload by its file name, never by a temporary path) and leaves the current scan as it was.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile

import numpy as np
import streamlit as st

from components import editor, label_source, session
from segloop import config
from segloop.errors import SegLoopError

UPLOAD_TYPES = ["nii", "gz", "zip", "nrrd", "mha", "mhd"]
DEFAULT_DEMO = "mni152_t1"
MAX_UPLOAD_MB = 500
PICK_KEY = "case_select"
UPLOAD_KEY = "scan_upload"
_PICKED_KEY = "_case_picked"  # set by the Scan box's callback: the case the user just picked
_PENDING_UPLOAD_KEY = "_pending_upload"  # set by the uploader's callback: (file name, bytes)
_CONFIRM_KEY = "_case_switch_to_confirm"  # a case picked while switching would drop kept unsaved edits
_UPLOAD_ID_KEY = "_upload_id"
WORKSPACE_SOURCE = "workspace"


@st.cache_resource(show_spinner="Loading scan…", max_entries=8)
def _load_case_cached(image_path: str, label_path: str | None, _key: str):
    """(Volume, labels or None), loaded once per file version (the key holds path+mtime+size)."""
    from segloop.io.readers import load_label, load_scan

    vol = load_scan(image_path)
    labels = load_label(label_path, reference=vol).array if label_path else None
    vol.array.setflags(write=False)  # shared between sessions: never edited in place
    return vol, labels


def load_source_case(case) -> tuple:
    """Load a data_sources.SourceCase (cached by path + mtime)."""
    key = session.file_key(case.image_path) + "||" + session.file_key(case.label_path)
    return _load_case_cached(case.image_path, case.label_path, key)


@st.cache_data(show_spinner=False, ttl=30)
def _list_cases(folder: str) -> list:
    from segloop.data.folders import list_cases

    return list_cases(folder)


def available_cases() -> tuple[list, str]:
    """(cases, source description): SEGLOOP_DATA_DIR's cases, else the demo scans."""
    folder = config.data_dir()
    if folder is not None:
        return _list_cases(str(folder)), f"data folder {folder}"
    from segloop.data.demo import demo_cases

    return demo_cases(), "built-in demo scans"


def _source_kind(source: str) -> str:
    return "demo" if "demo" in source else "data folder"


def open_case(case, source: str, announce: bool = True) -> bool:
    """Make a SourceCase current; returns False (with st.error when `announce`) when it cannot be read."""
    try:
        vol, labels = load_source_case(case)
    except SegLoopError as exc:
        if announce:
            st.error(str(exc))
        return False
    if vol.name != case.name:  # a scan kept in the workspace is stored under its content id
        vol = dataclasses.replace(vol, name=case.name)
    session.set_current(vol, labels, case.name, source)
    label_source.show_default(labels)  # its latest saved labels, or unsaved edits the session holds
    return True


def _workspace_store():
    from segloop.store.database import Datastore

    return Datastore()


def stored_case(name: str):
    """The newest scan registered in the workspace under `name` (an earlier upload) as a SourceCase, or None."""
    from segloop.data.folders import SourceCase

    try:
        found = [s for s in _workspace_store().scans_named(name) if s.image_path]
    except Exception:  # noqa: BLE001 - no usable workspace: such links cannot be followed
        return None
    if not found:
        return None
    rec = found[-1]
    return SourceCase(name=rec.name, image_path=rec.image_path, label_path=None, kind="nifti")


def open_named(name: str, by_name: dict, source: str, announce: bool = True) -> bool:
    """Make the case called `name` current: a case of the data folder (or a demo), else a scan kept in the
    workspace. `announce`: say with st.error when there is no such case or it cannot be read."""
    if name in by_name:
        return open_case(by_name[name], _source_kind(source), announce)
    stored = stored_case(name)
    if stored is not None:
        return open_case(stored, WORKSPACE_SOURCE, announce)
    if announce:
        st.error(f"no case named {name!r} in the {source} or the workspace")
    return False


def follow_address_bar(by_name: dict, source: str, announce: bool = True) -> None:
    """Open the case `?case=` names when it is not the current one (deep, shared or history links)."""
    wanted = st.query_params.get(session.CASE_PARAM)
    if wanted and wanted != session.current_case():
        open_named(wanted, by_name, source, announce)


def keep_case_in_url() -> None:
    """For pages without a scan picker: follow a `?case=` link, then make `?case=` name the current case."""
    wanted = st.query_params.get(session.CASE_PARAM)
    if wanted and wanted != session.current_case():
        try:
            cases, source = available_cases()
        except SegLoopError:
            cases, source = [], ""
        open_named(wanted, {c.name: c for c in cases}, source, announce=False)
    session.sync_case_param()


def upload_error_message(message: str, file_name: str) -> str:
    """A load error about an upload with temporary paths replaced by the uploaded file's name.

    The reader works on a copy in a temporary folder; its messages may quote that path, which
    means nothing to the user (and says where the server keeps temporary files).
    """
    tmp = re.escape(tempfile.gettempdir().rstrip("/") or "/tmp")
    message = re.sub(tmp + r"/segloop-upload-[^/\s]+/[^\s:'\"()\[\],]+", file_name, message)
    return re.sub(r":?\s*" + tmp + r"/[^\s'\"()\[\],]*", "", message)  # other temporary paths: dropped


def _upload_name(vol, file_name: str) -> str:
    """The case name of an upload: the scan's name, marked when a data folder case already has it."""
    name = (vol.name or file_name).strip() or "upload"
    try:
        cases, _ = available_cases()
        taken = {c.name for c in cases}
    except SegLoopError:
        taken = set()
    return f"{name} (uploaded)" if name in taken else name


def _register_upload(vol, name: str) -> str:
    """Register an uploaded scan in the workspace (stored there once, by content); returns its case name:
    `name`, or the name the workspace already knows the same voxels by."""
    from segloop.store.predictions import ensure_scan

    try:
        return ensure_scan(_workspace_store(), name, vol, "upload").name
    except Exception:  # noqa: BLE001 - still viewable; only links to it will not open in other sessions
        return name


def apply_upload(name: str, data: bytes, max_mb: int = MAX_UPLOAD_MB) -> bool:
    """Load uploaded bytes as the current scan; shows st.error and changes nothing when it fails.

    The scan is registered in the workspace (by content), so `?case=<its name>` opens it again; when
    its content is a scan the workspace already knows, it takes that scan's name.
    """
    from segloop.io.readers import load_scan_bytes

    if len(data) > max_mb * 1024 * 1024:
        st.error(f"{name}: {len(data) / 1e6:.0f} MB is over the upload limit of {max_mb} MB")
        return False
    try:
        vol = load_scan_bytes(name, data)
    except SegLoopError as exc:
        st.error(upload_error_message(str(exc), name))
        return False
    case = _register_upload(vol, _upload_name(vol, name))
    if vol.name != case:
        vol = dataclasses.replace(vol, name=case)
    session.set_current(vol, None, case, "upload")
    label_source.show_default(None)  # a scan the workspace knows comes with its saved labels
    return True


def _on_pick() -> None:
    st.session_state[_PICKED_KEY] = st.session_state.get(PICK_KEY)


def _confirm_switch(case: str | None) -> None:
    """Button callback: the user agreed to switch (`case`) although kept unsaved edits will go, or stays (None)."""
    st.session_state.pop(_CONFIRM_KEY, None)
    if case is not None:
        st.session_state[_PICKED_KEY] = (case, "confirmed")


def _on_upload() -> None:
    upload = st.session_state.get(UPLOAD_KEY)
    if upload is not None and st.session_state.get(_UPLOAD_ID_KEY) != upload.file_id:
        st.session_state[_UPLOAD_ID_KEY] = upload.file_id
        st.session_state[_PENDING_UPLOAD_KEY] = (upload.name, upload.getvalue())


def scan_picker() -> None:
    """Scan box + uploader, both showing the session's current case; keeps `?case=` naming it."""
    try:
        cases, source = available_cases()
    except SegLoopError as exc:
        st.error(str(exc))
        return
    st.session_state["data_source"] = source
    by_name = {c.name: c for c in cases}
    names = list(by_name)
    before = session.current_case()

    # what the user did last (upload, Scan box) wins; else the address bar; else the current case
    pending = st.session_state.pop(_PENDING_UPLOAD_KEY, None)
    picked = st.session_state.pop(_PICKED_KEY, None)
    handled = False
    if pending is not None:
        handled = apply_upload(*pending)
    elif picked is not None:
        confirmed = isinstance(picked, tuple)
        picked = picked[0] if confirmed else picked
        if picked != before and not confirmed and editor.stash_room(before, picked)[1] is not None:
            st.session_state[_CONFIRM_KEY] = picked  # ask first: this switch would lose work
        elif picked != before:
            handled = open_named(picked, by_name, source)
    if handled and session.current_case() != before:
        session.drop_view_params()  # they described the previous case's view
    else:
        follow_address_bar(by_name, source)
    if session.current_case() is None and names:
        open_case(by_name[DEFAULT_DEMO if DEFAULT_DEMO in by_name else names[0]], _source_kind(source))

    current = session.current_case()
    options = names if current is None or current in by_name else [current] + names
    if current is not None:
        st.session_state[PICK_KEY] = current  # the box always shows the session's current case

    suffix = " (uploaded)" if session.current_source() == "upload" else " (workspace)"

    def label(name: str, known: frozenset = frozenset(by_name), suffix: str = suffix) -> str:
        return name if name in known or name.endswith(suffix) else name + suffix

    col_pick, col_up = st.columns([2, 3])
    with col_pick:
        if options:
            st.selectbox("Scan", options, key=PICK_KEY, help=source, on_change=_on_pick, format_func=label)
        unsaved_warning(current)
        _ask_before_dropping(current)
    with col_up:
        st.file_uploader(
            "…or upload a scan (.nii, .nii.gz, .nrrd, .mha, DICOM .zip)",
            type=UPLOAD_TYPES,
            key=UPLOAD_KEY,
            on_change=_on_upload,
        )
    if not names:
        st.info(f"No scans found in the {source}.")
    session.sync_case_param()


def unsaved_warning(case: str | None) -> None:
    """Before the user switches cases: say that unsaved edits of `case` are kept aside, and for how many cases."""
    unsaved = editor.unsaved_of(case)
    if not unsaved:
        return
    room, drops = editor.stash_room(case)
    if drops:  # switching now would lose work: say it loudly
        st.warning(f"{case} has unsaved edits ({unsaved} voxels). This session keeps unsaved edits of up to {room} "
                   f"other cases; switching now drops those kept for {drops}. Save on the Segment page to keep them.",
                   icon=":material/edit_note:")
        return
    # one line, so the views stay on screen: the edits are safe for this session
    st.caption(f":material/edit_note: {case}: {unsaved} unsaved voxels, kept aside if you switch (up to {room} cases "
               f"this session); save to keep them.")


def _ask_before_dropping(current: str | None) -> None:
    """The question asked when the case picked would push another case's unsaved edits out of the session."""
    target = st.session_state.get(_CONFIRM_KEY)
    if target is None:
        return
    drops = editor.stash_room(current, target)[1]
    if drops is None:  # nothing would be lost any more (saved meanwhile): just go
        st.session_state.pop(_CONFIRM_KEY, None)
        st.session_state[_PICKED_KEY] = (target, "confirmed")
        st.rerun()
    st.warning(f"Open {target}? Your unsaved edits of {drops} would be lost: this session keeps unsaved edits of "
               f"at most {editor.STASH_MAX} other cases.", icon=":material/help:")
    c1, c2 = st.columns(2)
    c1.button(f"Open {target}, drop {drops}'s edits", key="case_switch_confirm", on_click=_confirm_switch,
              args=(target,), type="primary")
    c2.button(f"Stay on {current}", key="case_switch_cancel", on_click=_confirm_switch, args=(None,))


def describe(volume) -> str:
    """Compact caption: shape, spacing, orientation, intensity range."""
    sp = ", ".join(f"{s:.3g}" for s in volume.spacing)
    arr = volume.array
    return (
        f"{volume.name} · shape {' × '.join(str(s) for s in volume.shape)} · spacing {sp} mm · "
        f"file orientation {volume.source_orientation} (shown in RAS) · intensity {float(np.min(arr)):.4g}…{float(np.max(arr)):.4g}"
    )
