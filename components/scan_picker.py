"""Pick the current scan: a case of SEGLOOP_DATA_DIR, a built-in demo scan, a scan kept in the workspace
(an earlier upload), or an upload.

There is one current scan per browser session (`components.session`); the Scan box shows it and the
address bar names it (`?case=<name>&scan=<short id>`), on every page:

- a link naming another scan than the current one (a deep link, a shared link, a link on the Cases
  page, the browser's back button) opens that scan. The short id decides (`segloop.store.scan_links`);
  a link with a name only (written before short ids) opens the one scan of that name, and when several
  scans share it the page says so and offers them;
- otherwise the current scan stays, so every page opens on the scan the user was looking at;
  before any scan is open, the default demo (or the data folder's first case) opens;
- picking a scan in the Scan box or uploading one makes it current and rewrites the address bar.

A scan is identified by its content id, never its name: everything the session keeps of it is keyed so
(`components.scan_state`). An uploaded scan is registered in the workspace (stored there once, by
content) under a name no other scan has ("T1w (2)"), so a link to it opens the same voxels in another
session. A scan that cannot be read shows its ScanError message (an upload by its file name, never by a
temporary path) and leaves the current scan as it was.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile

import numpy as np
import streamlit as st

from components import editor, label_source, session
from components.store import get_store
from segloop import config
from segloop.errors import SegLoopError
from segloop.io.volume import content_id
from segloop.store.scan_links import ScanChoice, matches, resolve_link, short_id, unique_name

UPLOAD_TYPES = ["nii", "gz", "zip", "nrrd", "mha", "mhd"]
DEFAULT_DEMO = "mni152_t1"
MAX_UPLOAD_MB = 500
PICK_KEY = "case_select"
UPLOAD_KEY = "scan_upload"
_PICKED_KEY = "_case_picked"  # set by the Scan box's callback: the case the user just picked
_PENDING_UPLOAD_KEY = "_pending_upload"  # set by the uploader's callback: (file name, bytes)
_CONFIRM_KEY = "_case_switch_to_confirm"  # a case picked while switching would drop kept unsaved edits
_UPLOAD_ID_KEY = "_upload_id"
_CANDIDATES_KEY = "_case_candidates"  # (problem, ScanChoices): an old link that several scans answer to
WORKSPACE_SOURCE = "workspace"
FOLDER, WORKSPACE = "folder", "workspace"  # ScanChoice.origin


@st.cache_resource(show_spinner="Loading scan…", max_entries=8)
def _load_case_cached(image_path: str, label_path: str | None, _key: str):
    """(Volume, labels or None, content id), loaded once per file version (the key holds path+mtime+size)."""
    from segloop.io.readers import load_label, load_scan

    vol = load_scan(image_path)
    labels = load_label(label_path, reference=vol).array if label_path else None
    vol.array.setflags(write=False)  # shared between sessions: never edited in place
    return vol, labels, content_id(vol)


def load_source_case(case) -> tuple:
    """Load a case (anything with `image_path` and `label_path`): (Volume, labels or None, content id),
    cached by path + mtime."""
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


def folder_choices(cases: list) -> list[ScanChoice]:
    """The data folder's cases (or the demos) as link targets; their content ids are known once opened."""
    return [ScanChoice(c.name, None, c.image_path, FOLDER, label_path=c.label_path) for c in cases]


def workspace_choices() -> list[ScanChoice]:
    """The scans kept in the workspace (uploads, imported and segmented scans), [] without a usable one."""
    try:
        records = get_store().scans()
    except Exception:  # noqa: BLE001 - no usable workspace: only the data folder's cases
        return []
    return [ScanChoice(r.name, r.sha256, r.image_path, WORKSPACE, shape=r.shape, created_at=r.created_at,
                       workspace_id=r.id, source=r.source) for r in records if r.image_path and r.sha256]


def open_choice(choice: ScanChoice, source: str = "", announce: bool = True, expect: str | None = None) -> bool:
    """Make a scan current: a data folder case (or demo) or a scan kept in the workspace.

    `expect` is a link's short id: the scan opens only when its content id starts with it (a folder case
    whose file now holds other voxels is refused, not shown under a link meant for the old ones).
    Returns False (with st.error when `announce`) when it cannot be read or is not the scan expected.
    """
    try:
        vol, labels, cid = load_source_case(choice)
    except SegLoopError as exc:
        if announce:
            st.error(str(exc))
        return False
    if not matches(cid, expect):
        if announce:
            st.error(f"{choice.name} is not the scan this link means (scan {expect}): its file now holds other "
                     f"voxels (scan {short_id(cid)}).")
        return False
    if choice.origin == WORKSPACE:
        labels, where = None, WORKSPACE_SOURCE  # its saved versions come with it
    else:
        where = _source_kind(source)
    if vol.name != choice.name:  # a scan kept in the workspace is stored under its content id
        vol = dataclasses.replace(vol, name=choice.name)
    session.set_current(vol, labels, cid, choice.name, where, choice.workspace_id)
    label_source.show_default(labels)  # its latest saved labels, or unsaved edits the session holds
    return True


def open_case(case, source: str, announce: bool = True) -> bool:
    """Make a data folder case (a SourceCase) current; False (with st.error when `announce`) when it cannot
    be read."""
    return open_choice(ScanChoice(case.name, None, case.image_path, FOLDER, label_path=case.label_path),
                       source, announce)


def open_link(name: str | None, scan: str | None, folder: list[ScanChoice], source: str,
              announce: bool = True) -> bool:
    """Open the scan a link (`?case=<name>&scan=<short id>`) means; an ambiguous one asks which."""
    found = resolve_link(name, scan, folder, workspace_choices())
    if found.choice is not None:
        return open_choice(found.choice, source, announce, expect=scan if found.needs_check else None)
    if found.candidates:
        st.session_state[_CANDIDATES_KEY] = (found.problem, found.candidates)
    elif announce:
        st.error(f"This link cannot be followed: {found.problem}.")
    return False


def _link_is_current(name: str | None, scan: str | None) -> bool:
    state = session.current()
    if state is None:
        return False
    return matches(state.key, scan) if scan else name == state.name


def follow_address_bar(folder: list[ScanChoice], source: str, announce: bool = True) -> None:
    """Open the scan the address bar names when it is not the current one (deep, shared or history links)."""
    name, scan = st.query_params.get(session.CASE_PARAM), st.query_params.get(session.SCAN_PARAM)
    if (name or scan) and not _link_is_current(name, scan):
        open_link(name, scan, folder, source, announce)


def keep_case_in_url() -> None:
    """For pages without a scan picker: follow a link, then make the address bar name the current scan."""
    try:
        cases, source = available_cases()
    except SegLoopError:
        cases, source = [], ""
    follow_address_bar(folder_choices(cases), source, announce=False)
    session.sync_case_param()


def upload_error_message(message: str, file_name: str) -> str:
    """A load error about an upload with temporary paths replaced by the uploaded file's name.

    The reader works on a copy in a temporary folder; its messages may quote that path, which
    means nothing to the user (and says where the server keeps temporary files).
    """
    tmp = re.escape(tempfile.gettempdir().rstrip("/") or "/tmp")
    message = re.sub(tmp + r"/segloop-upload-[^/\s]+/[^\s:'\"()\[\],]+", file_name, message)
    return re.sub(r":?\s*" + tmp + r"/[^\s'\"()\[\],]*", "", message)  # other temporary paths: dropped


def _upload_record(vol, folder_names: set[str]):
    """Register an uploaded scan in the workspace (stored once, by content); its record, or None when the
    workspace cannot be used. A scan the workspace knows keeps its name; a new one gets a name no scan
    of the workspace or the data folder has (`scan_links.unique_name`: "T1w (2)")."""
    from segloop.store.predictions import ensure_scan

    try:
        store = get_store()
        known = store.scan_by_content(content_id(vol))
        if known is not None:
            return known
        name = unique_name(vol.name or "upload", store.scan_names() | folder_names)
        return ensure_scan(store, name, vol, "upload")
    except Exception:  # noqa: BLE001 - still viewable; only links to it will not open in other sessions
        return None


def apply_upload(name: str, data: bytes, max_mb: int = MAX_UPLOAD_MB) -> bool:
    """Load uploaded bytes as the current scan; shows st.error and changes nothing when it fails.

    The scan is registered in the workspace by content, so a link to it opens the same voxels in another
    session. Its display name is unique: the file's name, numbered when that is taken ("T1w (2)"), or the
    name the workspace already knows the same voxels by. Nothing of another scan comes with it.
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
    try:
        folder_names = {c.name for c in available_cases()[0]}
    except SegLoopError:
        folder_names = set()
    cid = content_id(vol)
    record = _upload_record(vol, folder_names)
    if record is not None:
        case, workspace_id = record.name, record.id
    else:  # no workspace: unique among what this session shows
        others = {s.name for k, s in session.scans().items() if k != cid}
        case, workspace_id = unique_name(vol.name or "upload", others | folder_names), None
    if vol.name != case:
        vol = dataclasses.replace(vol, name=case)
    session.set_current(vol, None, cid, case, "upload", workspace_id)
    label_source.show_default(None)  # a scan the workspace knows comes with its saved labels
    return True


def _on_pick() -> None:
    st.session_state[_PICKED_KEY] = st.session_state.get(PICK_KEY)


def _confirm_switch(choice: ScanChoice | None) -> None:
    """Button callback: the user agreed to switch (to `choice`) although kept unsaved edits will go, or stays (None)."""
    st.session_state.pop(_CONFIRM_KEY, None)
    if choice is not None:
        st.session_state[_PICKED_KEY] = _Confirmed(choice)


def _pick_candidate(choice: ScanChoice) -> None:
    """Button callback: the scan the user picked among those an ambiguous link could mean."""
    st.session_state.pop(_CANDIDATES_KEY, None)
    st.session_state[_PICKED_KEY] = choice


def _on_upload() -> None:
    upload = st.session_state.get(UPLOAD_KEY)
    if upload is not None and st.session_state.get(_UPLOAD_ID_KEY) != upload.file_id:
        st.session_state[_UPLOAD_ID_KEY] = upload.file_id
        st.session_state[_PENDING_UPLOAD_KEY] = (upload.name, upload.getvalue())


@dataclasses.dataclass(frozen=True)
class _Confirmed:
    """A switch the user confirmed although it drops another scan's kept edits."""

    choice: ScanChoice


def _entries(folder: list[ScanChoice]) -> dict[str, ScanChoice]:
    """The Scan box's options (unique strings) and the scan each opens: the data folder's cases, then the
    uploads kept in the workspace."""
    entries = {c.name: c for c in folder}
    paths = {c.image_path for c in folder}
    for s in workspace_choices():
        if s.source != "uploaded" or s.image_path in paths:
            continue
        entries[s.name if s.name not in entries else f"{s.name} · {s.short_id}"] = s
    return entries


def _option_of_current(entries: dict[str, ScanChoice]) -> str | None:
    state = session.current()
    if state is None:
        return None
    for option, choice in entries.items():
        if choice.content_id == state.key or (choice.origin == FOLDER and choice.name == state.name
                                              and state.source in ("data folder", "demo")):
            return option
    return state.name


def target_key(choice: ScanChoice) -> str | None:
    """The identity of the scan a choice opens, when known before reading it (opened before in this session)."""
    if choice.content_id:
        return choice.content_id
    return next((k for k, s in session.scans().items() if s.name == choice.name and s.source in ("data folder", "demo")),
                None)


def _describe_choice(choice: ScanChoice) -> str:
    """What tells two scans apart in a list: name, shape, date added, short id."""
    from components.store import fmt_time

    bits = [choice.name]
    if choice.shape:
        bits.append(" × ".join(str(int(n)) for n in choice.shape))
    if choice.created_at:
        bits.append(f"added {fmt_time(choice.created_at)}")
    if choice.content_id:
        bits.append(f"id {choice.short_id}")
    return " · ".join(bits)


def scan_picker() -> None:
    """Scan box + uploader, both showing the session's current scan; keeps the address bar naming it."""
    try:
        cases, source = available_cases()
    except SegLoopError as exc:
        st.error(str(exc))
        return
    st.session_state["data_source"] = source
    folder = folder_choices(cases)
    entries = _entries(folder)
    before = session.current_key()

    # what the user did last (upload, Scan box, a candidate) wins; else the address bar; else the current scan
    pending = st.session_state.pop(_PENDING_UPLOAD_KEY, None)
    picked = st.session_state.pop(_PICKED_KEY, None)
    handled = False
    if pending is not None:
        handled = apply_upload(*pending)
    elif picked is not None:
        confirmed = isinstance(picked, _Confirmed)
        choice = picked.choice if confirmed else picked if isinstance(picked, ScanChoice) else entries.get(picked)
        target = None if choice is None else target_key(choice)
        if choice is None or (target is not None and target == before):
            pass
        elif not confirmed and editor.stash_room(before, target)[1] is not None:
            st.session_state[_CONFIRM_KEY] = choice  # ask first: this switch would lose work
        else:
            handled = open_choice(choice, source)
    if handled and session.current_key() != before:
        session.drop_view_params()  # they described the previous scan's view
        st.session_state.pop(_CANDIDATES_KEY, None)
    else:
        follow_address_bar(folder, source)
    if session.current() is None and folder:
        names = [c.name for c in folder]
        open_choice(folder[names.index(DEFAULT_DEMO) if DEFAULT_DEMO in names else 0], source)
    if session.current_key() != before:
        entries = _entries(folder)  # an upload just registered belongs in the list, described like the others

    current = _option_of_current(entries)
    options = list(entries) if current is None or current in entries else [current] + list(entries)
    if current is not None:
        st.session_state[PICK_KEY] = current  # the box always shows the session's current scan
    state = session.current()

    def label(option: str) -> str:
        choice = entries.get(option)
        if choice is None or choice.origin == FOLDER:
            if choice is None and state is not None and option == current:
                return option + (" (uploaded)" if state.source == "upload" else " (workspace)")
            return option
        return _describe_choice(choice) + (" (uploaded)" if choice.source == "uploaded" else " (workspace)")

    col_pick, col_up = st.columns([2, 3])
    with col_pick:
        if options:
            st.selectbox("Scan", options, key=PICK_KEY, help=source, on_change=_on_pick, format_func=label)
        _ask_which(session.current_key())
        unsaved_warning()
        _ask_before_dropping()
    with col_up:
        st.file_uploader(
            "…or upload a scan (.nii, .nii.gz, .nrrd, .mha, DICOM .zip)",
            type=UPLOAD_TYPES,
            key=UPLOAD_KEY,
            on_change=_on_upload,
        )
    if not folder:
        st.info(f"No scans found in the {source}.")
    session.sync_case_param()


def _ask_which(current: str | None) -> None:
    """An old link naming several scans: say so and offer them."""
    asked = st.session_state.get(_CANDIDATES_KEY)
    if asked is None:
        return
    problem, candidates = asked
    st.warning(f"{problem[:1].upper()}{problem[1:]}: which one did the link mean? "
               + ("The one open is still shown." if current else ""), icon=":material/help:")
    for i, choice in enumerate(candidates):
        st.button(f"Open {_describe_choice(choice)}", key=f"case_candidate_{i}", on_click=_pick_candidate,
                  args=(choice,))


def unsaved_warning() -> None:
    """Before the user switches scans: say that unsaved edits of the current one are kept aside, and for how many."""
    state = session.current()
    unsaved = 0 if state is None else state.unsaved
    if not unsaved:
        return
    room, drops = editor.stash_room(state.key)
    if drops:  # switching now would lose work: say it loudly
        st.warning(f"{state.name} has unsaved edits ({unsaved} voxels). This session keeps unsaved edits of up to "
                   f"{room} other cases; switching now drops those kept for {drops}. Save on the Segment page to "
                   "keep them.", icon=":material/edit_note:")
        return
    # one line, so the views stay on screen: the edits are safe for this session
    st.caption(f":material/edit_note: {state.name}: {unsaved} unsaved voxels, kept aside if you switch (up to {room} "
               f"cases this session); save to keep them.")


def _ask_before_dropping() -> None:
    """The question asked when the scan picked would push another scan's unsaved edits out of the session."""
    target = st.session_state.get(_CONFIRM_KEY)
    if target is None:
        return
    state = session.current()
    drops = editor.stash_room(session.current_key(), target_key(target))[1]
    if drops is None:  # nothing would be lost any more (saved meanwhile): just go
        st.session_state.pop(_CONFIRM_KEY, None)
        st.session_state[_PICKED_KEY] = _Confirmed(target)
        st.rerun()
    st.warning(f"Open {target.name}? Your unsaved edits of {drops} would be lost: this session keeps unsaved edits "
               f"of at most {editor.STASH_MAX} other cases.", icon=":material/help:")
    c1, c2 = st.columns(2)
    c1.button(f"Open {target.name}, drop {drops}'s edits", key="case_switch_confirm", on_click=_confirm_switch,
              args=(target,), type="primary")
    c2.button(f"Stay on {state.name if state else 'this scan'}", key="case_switch_cancel", on_click=_confirm_switch,
              args=(None,))


def describe(volume) -> str:
    """Compact caption: shape, spacing, orientation, intensity range."""
    sp = ", ".join(f"{s:.3g}" for s in volume.spacing)
    arr = volume.array
    return (
        f"{volume.name} · shape {' × '.join(str(s) for s in volume.shape)} · spacing {sp} mm · "
        f"file orientation {volume.source_orientation} (shown in RAS) · intensity {float(np.min(arr)):.4g}…{float(np.max(arr)):.4g}"
    )
