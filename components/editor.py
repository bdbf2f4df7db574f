"""Correction tools for the current label map: edits drawn in the volume view (box, lasso, brush, clicks),
3D/slice buttons, undo/redo, saving versions and the version history.

All tools edit the one label array in session state (components.session), in place, so every
plane shows an edit at once. Edits drawn in the browser arrive as events from the volume view
(`components.volume_view`) naming the plane and slice they were drawn on, and are applied by
`apply_view_edit` in a callback, before the page (and its volume table) is drawn; buttons use
on_click callbacks too. Each edit is one undoable step.

Messages and the edit history name labels as the page does ("Grow anterior by 1 voxel", not
"label 1"): `name_labels` rewrites the operations' descriptions with the page's label names.

The array keeps its dtype: uint8, or uint16 for labels above 255 (FreeSurfer-style 1002). Painting
a label the array cannot hold (300 into uint8) swaps in a uint16 copy, as part of the undoable edit
(`segloop.editing.history.apply_widening`); undo swaps the uint8 array back. No value is wrapped.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace

import numpy as np
import streamlit as st

from components import auth, session
from components.volume_view import move_to
from segloop.display import planes
from segloop.editing import operations
from segloop.editing.history import EditHistory, apply_edit, apply_widening
from segloop.editing.selections import apply_view_event
from segloop.editing.tools import HELP, Tool
from segloop.errors import SegLoopError
from segloop.io.readers import labels_from_array
from segloop.store.identity import Action

HISTORY_KEY = "seg_history"
BASE_KEY = "seg_base"  # {"version_id", "version", "model_id", "kind"} of the saved version being edited
BASE_LABELS_KEY = "seg_base_labels"
MARKER_KEY = "seg_marker"
NONCE_KEY = "seg_nonce"
LAST_BOX_KEY = "seg_last_box"
MESSAGE_KEY = "seg_message"
SAVED_KEY = "seg_saved"
AUTHOR_KEY = auth.AUTHOR_KEY  # "seg_author_name": the name typed in local mode
NAMES_KEY = "seg_label_names"
HISTORY_BYTES = 64 * 1024 * 1024

TOOLS = tuple(Tool)


# --------------------------------------------------------------------------- state


def history() -> EditHistory:
    hist = st.session_state.get(HISTORY_KEY)
    if hist is None:
        hist = st.session_state[HISTORY_KEY] = EditHistory(HISTORY_BYTES)
    return hist


WORK_KEY = "seg_work"  # {"marker": (case, id(volume)), "labels": the array being edited}
STASH_KEY = "seg_stash"  # case -> unsaved work of scans the user switched away from
STASH_MAX = 3
GIVEN_KEY = "seg_given"  # {"labels", "base"}: labels another page put on screen, and the version they are
_STATE_KEYS = (HISTORY_KEY, BASE_KEY, BASE_LABELS_KEY)


def _adopt(labels: np.ndarray | None) -> None:
    """Make `labels` the session's label array and the one this editor works on."""
    session.set_labels(labels)
    work = st.session_state.get(WORK_KEY)
    if work is not None:
        work["labels"] = labels


def _differs(labels: np.ndarray | None, base: np.ndarray | None) -> int:
    """Voxels of `labels` that differ from `base` (all non-zero voxels without a base)."""
    if labels is None:
        return 0
    if base is None:
        return int(np.count_nonzero(labels))
    return int(np.count_nonzero(labels != base))


def ensure_state() -> None:
    """Keep the edited labels of the current scan, and switch editor state when the scan changes.

    If another page replaced the label array of the same scan (e.g. the Viewer reopened the case),
    the edited array is put back, so unsaved edits survive page switches. Switching to another scan
    keeps that scan's unsaved work aside (`STASH_MAX` scans) and restores it when the user comes back;
    when a scan's unsaved work has to go to make room, a warning names it (once). Labels another page
    chose for a scan (`take_labels`) descend from the version it said.
    """
    vol = session.current_volume()
    case = session.current_case()
    marker = (case, id(vol))
    work = st.session_state.get(WORK_KEY)
    given = st.session_state.pop(GIVEN_KEY, None)
    if work is not None and work["marker"] == marker:
        if work["labels"] is not None and session.current_labels() is not work["labels"]:
            session.set_labels(work["labels"])
        return
    stash = st.session_state.setdefault(STASH_KEY, {})
    if work is not None and work["labels"] is not None and unsaved_voxels(work["labels"]):
        stash[work["marker"][0]] = {"labels": work["labels"], **{k: st.session_state.get(k) for k in _STATE_KEYS}}
    kept = stash.pop(case, None)  # before making room: the scan being opened never loses its own work
    while len(stash) > STASH_MAX:
        dropped = next(iter(stash))
        stash.pop(dropped)
        st.warning(f"Your unsaved edits of {dropped} are gone: this session keeps unsaved edits of at most "
                   f"{STASH_MAX} other cases, and those were the oldest.", icon=":material/warning:")
    st.session_state[LAST_BOX_KEY] = None
    st.session_state[SAVED_KEY] = None
    st.session_state[MESSAGE_KEY] = None
    if kept is not None and tuple(kept["labels"].shape) == vol.shape:
        st.session_state[WORK_KEY] = {"marker": marker, "labels": kept["labels"]}
        session.set_labels(kept["labels"])
        for k in _STATE_KEYS:
            st.session_state[k] = kept[k]
        st.session_state[MESSAGE_KEY] = f"Restored your unsaved edits of {case}."
    else:
        labels = session.current_labels()
        st.session_state[WORK_KEY] = {"marker": marker, "labels": labels}
        st.session_state[HISTORY_KEY] = EditHistory(HISTORY_BYTES)
        from_version = given is not None and labels is not None and given["labels"] is labels
        st.session_state[BASE_KEY] = given["base"] if from_version else None
        st.session_state[BASE_LABELS_KEY] = None if labels is None else labels.copy()


def unsaved_of(case: str | None) -> int:
    """Voxels of unsaved edits this session holds for `case`: being edited, or kept aside (0 for none)."""
    work = st.session_state.get(WORK_KEY)
    if work is not None and work["marker"][0] == case:
        return _differs(work["labels"], st.session_state.get(BASE_LABELS_KEY))
    kept = st.session_state.get(STASH_KEY, {}).get(case)
    return 0 if kept is None else _differs(kept["labels"], kept[BASE_LABELS_KEY])


def held_labels(case: str | None) -> tuple[np.ndarray, dict | None] | None:
    """(labels, base) of `case` when this session holds unsaved edits of it, else None.

    `base` is the saved version they descend from ({"version_id", "version", "model_id", "kind"}) or None.
    """
    if not unsaved_of(case):
        return None
    work = st.session_state.get(WORK_KEY)
    if work is not None and work["marker"][0] == case:
        return work["labels"], st.session_state.get(BASE_KEY)
    kept = st.session_state[STASH_KEY][case]
    return kept["labels"], kept[BASE_KEY]


def base_of(case: str | None) -> dict | None:
    """The saved version ({"version_id", "version", "model_id", "kind"}) the editor's labels of `case` descend
    from, when the editor is working on `case` and its labels are on screen; else None."""
    work = st.session_state.get(WORK_KEY)
    if work is None or work["marker"][0] != case or work["labels"] is None:
        return None
    if work["labels"] is not session.current_labels():
        return None
    return st.session_state.get(BASE_KEY)


def take_labels(labels: np.ndarray | None, version=None) -> None:
    """Show `labels` for the current case on every page, descending from the saved `version` (None: not saved).

    Unsaved edits this session holds for the case are dropped: callers ask the user first (see
    `unsaved_of`). Work kept for other cases is left alone.
    """
    case = session.current_case()
    st.session_state.get(STASH_KEY, {}).pop(case, None)
    work = st.session_state.get(WORK_KEY)
    if work is not None and work["marker"][0] == case and labels is not None:
        start_from(labels, version)
    else:
        session.set_labels(labels)
    # picked up by ensure_state when the editor next starts on this case
    st.session_state[GIVEN_KEY] = {"labels": session.current_labels(), "base": _base_record(version)}


def stash_room(case: str | None, target: str | None = None) -> tuple[int, str | None]:
    """(STASH_MAX, the case whose kept edits switching from `case` (to `target`, when known) would drop, or None).

    Opening a case whose edits are kept takes them out of the store first, which makes room.
    """
    stash = st.session_state.get(STASH_KEY, {})
    others = [c for c in stash if c not in (case, target)]
    return STASH_MAX, (others[0] if unsaved_of(case) and len(others) >= STASH_MAX else None)


def restore_view() -> None:
    """Put the current case's window (as the user left it, on any page) into this page's widgets
    `seg_window_*`, before they are drawn; the slices come back through the volume view."""
    from components.slice_viewer import restore_view as _restore

    _restore("seg_")


def set_label_names(names: dict[int, str]) -> None:
    """The label names the page shows; messages and the edit history use them (`name_labels`)."""
    st.session_state[NAMES_KEY] = dict(names)


_LABEL_RE = re.compile(r"\b([Ll])abel (\d+)\b")


def name_labels(text: str, names: dict[int, str] | None = None) -> str:
    """Replace "label 1" in a message with the label's name ("anterior"); 0 is the background.

    Values without a name stay as they are; "Label 1" at the start of a sentence gives "Anterior".

    >>> name_labels("Grow label 1 by 1 voxel; label 7 stays", {1: "anterior"})
    'Grow anterior by 1 voxel; label 7 stays'
    >>> name_labels("Label 2 is not drawn on axial slice 3", {2: "posterior"})
    'Posterior is not drawn on axial slice 3'
    """
    names = st.session_state.get(NAMES_KEY, {}) if names is None else names

    def sub(m: re.Match) -> str:
        value = int(m.group(2))
        name = names.get(value) or ("background" if value == 0 else None)
        if not name:
            return m.group(0)
        return name[:1].upper() + name[1:] if m.group(1) == "L" else name

    return _LABEL_RE.sub(sub, text)


def _say(text: str) -> None:
    st.session_state[MESSAGE_KEY] = name_labels(text)


def on_tool_change() -> None:
    """Tool radio callback: clear the last message, which was about the old tool."""
    st.session_state[NONCE_KEY] = nonce() + 1
    st.session_state[MESSAGE_KEY] = None


def tool_help(tool: str, by_intensity: bool = False) -> str:
    """What a tool does, in plain words (flood fill: what exactly it fills)."""
    if tool == Tool.FLOOD_FILL:
        if by_intensity:
            return ("Click a pixel: region growing from it on that slice. The pixels connected to it (edge "
                    "neighbours) whose scan intensity is within the range set above take the label, whatever "
                    "label they had; nothing changes on other slices.")
        return ("Click a pixel: the connected pixels of the same label on that slice (the clicked pixel's label, "
                "background included, through edge neighbours) take the label; nothing changes on other slices.")
    return HELP[Tool(tool)]


FILL_KEYS = ("seg_fill_by_intensity", "seg_fill_low", "seg_fill_high")


def fill_options(window: tuple[float, float]) -> tuple[float, float] | None:
    """Flood fill's intensity option: a toggle and min/max intensities (first set to the window's range).

    Returns (low, high) when the fill should grow within those intensities, else None.
    """
    k_on, k_low, k_high = FILL_KEYS
    if k_low not in st.session_state or k_high not in st.session_state:
        center, width = window
        st.session_state[k_low] = float(f"{center - width / 2:.4g}")
        st.session_state[k_high] = float(f"{center + width / 2:.4g}")
    c1, c2, c3 = st.columns([2, 1, 1])
    on = c1.toggle("Only intensities in a range (region growing)", key=k_on, persist_state="session",
                   help="Fill from the clicked pixel through the connected pixels whose scan intensity is within "
                        "min..max, as desktop editors' region growing does.")
    low = c2.number_input("Min intensity", key=k_low, format="%.4g", disabled=not on, persist_state="session")
    high = c3.number_input("Max intensity", key=k_high, format="%.4g", disabled=not on, persist_state="session")
    return (float(low), float(high)) if on else None


def editable_labels() -> np.ndarray:
    """The current label array (its own dtype kept), created empty (uint8) for a scan that has none yet."""
    labels = session.current_labels()
    if labels is None:
        vol = session.current_volume()
        labels = np.zeros(vol.shape, np.uint8)
        _adopt(labels)
    if not labels.flags.writeable:
        labels = labels.copy()
        _adopt(labels)
    return labels


def bump() -> None:
    """Tell cached renders that the labels changed."""
    st.session_state["labels_revision"] = session.labels_revision() + 1


def nonce() -> int:
    return int(st.session_state.get(NONCE_KEY, 0))


def record(edit, message: str | None = None) -> None:
    """Push an applied edit to the history (described with label names) and say what it did."""
    edit = replace(edit, description=name_labels(edit.description))
    if edit.is_empty:
        _say(f"{edit.description}: nothing changed.")
        return
    history().push(edit)
    bump()
    widened = "" if edit.widened_from is None else f" (labels now stored as uint16, up from {edit.widened_from})"
    _say(message or f"{edit.description}: {len(edit)} voxels changed{widened}.")


def _use(labels: np.ndarray) -> None:
    """Adopt `labels` when an edit, undo or redo replaced the array (its dtype changed)."""
    if labels is not session.current_labels():
        _adopt(labels)


def set_base(version, labels: np.ndarray) -> None:
    """The saved version the labels now descend from (parent of the next save)."""
    st.session_state[BASE_KEY] = _base_record(version)
    st.session_state[BASE_LABELS_KEY] = labels.copy()


def _base_record(version) -> dict | None:
    """What the editor keeps of the saved version the labels descend from."""
    return None if version is None else {
        "version_id": version.id, "version": version.version, "model_id": version.model_id, "kind": version.kind}


def start_from(labels: np.ndarray, version) -> None:
    """Replace the labels (a prediction, an opened version) and forget the edit history.

    The labels keep their values exactly: uint8, or uint16 when a label is above 255 (a new array,
    checked by `labels_from_array`, never wrapped).
    """
    arr = labels_from_array(np.asarray(labels), "labels")
    _adopt(arr)
    history().clear()
    set_base(version, arr)
    st.session_state[SAVED_KEY] = None


def unsaved_voxels(labels: np.ndarray | None = None) -> int:
    """Voxels that differ from the version being edited (or from the labels the scan came with)."""
    labels = session.current_labels() if labels is None else labels
    return _differs(labels, st.session_state.get(BASE_LABELS_KEY))


# --------------------------------------------------------------------------- edits from the volume view


def shown_slice(plane: str) -> int:
    """The slice of `plane` the user is looking at (as the volume view last reported it)."""
    vol = session.current_volume()
    n = planes.n_slices(vol.shape, plane)
    return int(min(max(int(session.case_view()["slices"].get(plane, n // 2)), 0), n - 1))


def _fill_range() -> tuple[float, float] | None:
    k_on, k_low, k_high = FILL_KEYS
    if not st.session_state.get(k_on):
        return None
    return float(st.session_state[k_low]), float(st.session_state[k_high])


def apply_view_edit(event: dict) -> None:
    """Apply an edit drawn in the volume view (a callback: runs before the page is drawn).

    `segloop.editing.selections.apply_view_event` applies it to the plane and slice the event
    names; a malformed event is refused with a message and changes nothing.
    """
    vol = session.current_volume()
    if vol is None:
        return
    labels = editable_labels()
    try:
        applied = apply_view_event(labels, event, image=vol.array, spacing=vol.spacing, fill_range=_fill_range())
    except (ValueError, SegLoopError) as exc:
        _say(f"That edit was not applied: {exc}")
        return
    if applied is None:
        return
    if applied.labels is not None:  # widened to hold the label
        _adopt(applied.labels)
    st.session_state[NONCE_KEY] = nonce() + 1
    if applied.pixel_box is not None:
        r0, r1, c0, c1 = applied.pixel_box
        st.session_state[LAST_BOX_KEY] = f"{event['plane']} {int(event['index'])}: rows {r0}–{r1}, columns {c0}–{c1}"
    record(applied.edit)


def apply_command(command: dict) -> None:
    """A keyboard shortcut from the volume view: undo, redo, or switch tool or label (a callback)."""
    action = command.get("action")
    if action == "undo":
        undo()
    elif action == "redo":
        redo()
    elif action == "tool" and command.get("tool") in set(Tool):
        st.session_state["seg_tool"] = Tool(command["tool"])
        on_tool_change()
    elif action == "label":
        value = int(command.get("value", -1))
        if value == 0 or value in st.session_state.get(NAMES_KEY, {}):
            st.session_state["seg_label"] = value


def go_to_voxel(voxel) -> None:
    """Move the three planes to a voxel (a button callback); the view marks it with the crosshair."""
    move_to(voxel=voxel)


# --------------------------------------------------------------------------- buttons (callbacks)


def _run(op, *args, **kwargs) -> None:
    try:
        record(op(editable_labels(), *args, **kwargs))
    except (ValueError, SegLoopError) as exc:
        _say(str(exc))


def reset_to_prediction(pred) -> None:
    """Callback: put the model's output back (one undoable edit); the model version becomes the base."""
    labels = editable_labels()
    top = int(np.max(pred.labels)) if np.size(pred.labels) else 0

    def _copy(arr: np.ndarray) -> None:
        arr[...] = pred.labels

    # the user's map may be uint8 while an output is not: widen rather than let numpy wrap values
    try:
        labels, edit = apply_widening(labels, top, apply_edit, _copy, description="Reset to the model output")
    except (ValueError, SegLoopError) as exc:
        _say(str(exc))
        return
    _use(labels)
    record(edit)
    if pred.version_id is not None:
        st.session_state[BASE_KEY] = {"version_id": pred.version_id, "version": pred.version,
                                      "model_id": pred.model_id, "kind": "model"}
        st.session_state[BASE_LABELS_KEY] = np.array(pred.labels, copy=True)


def undo() -> None:
    labels, edit = history().undo_labels(editable_labels())
    _use(labels)  # undoing a widening edit gives the narrower array back
    if edit is not None:
        bump()
        st.session_state[MESSAGE_KEY] = f"Undone: {edit.description}"


def redo() -> None:
    labels, edit = history().redo_labels(editable_labels())
    _use(labels)
    if edit is not None:
        bump()
        st.session_state[MESSAGE_KEY] = f"Redone: {edit.description}"


def slice_tools(plane: str, value: int, names: dict[int, str]) -> None:
    """Buttons acting on the chosen label: holes, islands, grow/shrink, copy and interpolate slices."""
    vol = session.current_volume()
    index = shown_slice(plane)
    n = planes.n_slices(vol.shape, plane)
    name = names.get(value, "eraser")
    disabled = value == 0
    c1, c2, c3 = st.columns(3)
    c1.button(f"Fill holes of {name} (3D)", key="seg_fill_holes", disabled=disabled, on_click=_run,
              args=(operations.fill_holes, value))
    c2.button(f"Grow {name} by 1 voxel", key="seg_grow", disabled=disabled, on_click=_run,
              args=(operations.grow, value, 1))
    c3.button(f"Shrink {name} by 1 voxel", key="seg_shrink", disabled=disabled, on_click=_run,
              args=(operations.shrink, value, 1))
    c1, c2 = st.columns([1, 2])
    min_size = c1.number_input("Smallest island kept (voxels)", 1, 100000, 20, key="seg_min_island")
    c2.button(f"Remove islands of {name} under {int(min_size)} voxels", key="seg_islands", disabled=disabled,
              on_click=_run, args=(operations.remove_islands, value, int(min_size)))
    c1, c2 = st.columns(2)
    c1.button(f"Copy {plane} slice {index - 1} here", key="seg_copy_prev", disabled=index == 0, on_click=_run,
              args=(operations.copy_from_neighbour, plane, index, max(index - 1, 0)))
    c2.button(f"Copy {plane} slice {index + 1} here", key="seg_copy_next", disabled=index >= n - 1, on_click=_run,
              args=(operations.copy_from_neighbour, plane, index, min(index + 1, n - 1)))
    c1, c2, c3 = st.columns([1, 1, 2])
    a = c1.number_input("From slice", 0, n - 1, max(index - 2, 0), key="seg_interp_a")
    b = c2.number_input("To slice", 0, n - 1, min(index + 2, n - 1), key="seg_interp_b")
    c3.button(f"Interpolate {name} between {plane} {int(a)} and {int(b)}", key="seg_interp", disabled=disabled,
              on_click=_run, args=(operations.interpolate_slices, plane, int(a), int(b), value),
              kwargs={"pixel_spacing": planes.pixel_spacing(vol.spacing, plane)})


def history_panel() -> None:
    """Undo/redo buttons and the recent edits."""
    hist = history()
    c1, c2 = st.columns(2)
    c1.button("Undo", key="seg_undo", disabled=not hist.can_undo, on_click=undo, icon=":material/undo:",
              use_container_width=True)
    c2.button("Redo", key="seg_redo", disabled=not hist.can_redo, on_click=redo, icon=":material/redo:",
              use_container_width=True)
    recent = hist.descriptions[-8:][::-1]
    if recent:
        st.caption("Recent edits (newest first):")
        st.markdown("\n".join(f"- {d}" for d in recent))
    else:
        st.caption("No edits yet.")


# --------------------------------------------------------------------------- save and versions


def save_correction(store, scan_id: int) -> None:
    """Callback: save the labels as a new 'correction' version descending from the base version."""
    from segloop.store.label_versions import save_label_version

    author = (st.session_state.get("seg_author") or "").strip()
    st.session_state[AUTHOR_KEY] = author
    base = st.session_state.get(BASE_KEY) or {}
    labels = editable_labels()
    try:  # signed in, the identity is the author (the core checks its role again)
        v = save_label_version(store, scan_id, labels, session.current_volume(), kind="correction", author=author,
                               parent_version_id=base.get("version_id"), model_id=base.get("model_id"),
                               identity=auth.current_identity())
    except SegLoopError as exc:
        _say(str(exc))
        return
    set_base(v, labels)
    st.session_state[SAVED_KEY] = {"version": v.version, "id": v.id, "dice": v.dice_vs_model,
                                   "changed": v.changed_voxels, "path": v.path}


def open_version(store, version_id: int) -> None:
    """Callback: continue editing from a saved version."""
    from segloop.store.label_versions import load_version

    v = store.label_version(version_id)
    start_from(load_version(store, version_id, session.current_volume()), v)
    st.session_state[MESSAGE_KEY] = f"Opened version {v.version} ({v.kind})."


def _remember_author() -> None:
    st.session_state[AUTHOR_KEY] = (st.session_state.get("seg_author") or "").strip()


def save_panel(store, scan, names: dict[int, str]) -> None:
    """Author name (local mode; signed in, the identity), unsaved-change warning, Save button and what the last
    save recorded."""
    identity = auth.current_identity()
    may_save = auth.allowed(Action.SAVE, identity)
    if identity.local:
        if "seg_author" not in st.session_state:
            st.session_state["seg_author"] = st.session_state.get(AUTHOR_KEY, "")
        st.text_input("Your name (recorded with the version)", key="seg_author", on_change=_remember_author)
    else:
        st.caption(f"Saved versions are recorded as **{identity.label}**."
                   + ("" if may_save else f" {auth.needs(Action.SAVE)}"))
    changed = unsaved_voxels()
    base = st.session_state.get(BASE_KEY)
    origin = f"version {base['version']} ({base['kind']})" if base else "the labels the scan was opened with"
    if changed:
        st.warning(f"Unsaved changes: {changed} voxels differ from {origin}.", icon=":material/edit_note:")
    else:
        st.caption(f"No unsaved changes (same as {origin}).")
    st.button("Save correction", key="seg_save", type="primary", on_click=save_correction, args=(store, scan.id),
              disabled=scan is None or not may_save, icon=":material/save:")
    saved = st.session_state.get(SAVED_KEY)
    if saved:
        dice = saved["dice"] or {}
        dice_txt = ", ".join(f"{names.get(int(k), k)} {d:.3f}" for k, d in dice.items()) or "no model version to compare"
        st.success(f"Saved as version {saved['version']}. Dice vs the model output: {dice_txt}. "
                   f"Changed voxels vs its parent: {saved['changed'] if saved['changed'] is not None else 'n/a'}.")
        st.caption(f"Saved file: `{saved['path']}`")


def versions_panel(store, scan) -> None:
    """The scan's saved versions, with download and 'Open this version'."""
    from segloop.io.writers import label_nifti_bytes
    from segloop.store.label_versions import list_versions, load_version

    versions = list_versions(store, scan.id)
    if not versions:
        st.caption("No saved versions of this scan yet.")
        return
    st.dataframe(
        [{"Version": v.version, "Kind": v.kind, "Author": v.author, "Parent": _parent_number(versions, v),
          "Saved": time.strftime("%Y-%m-%d %H:%M", time.localtime(v.created_at)),
          "Dice vs model": ", ".join(f"{k}: {d:.3f}" for k, d in (v.dice_vs_model or {}).items()),
          "Changed voxels": v.changed_voxels} for v in reversed(versions)],
        hide_index=True, key="seg_versions_table",
    )
    by_number = {v.version: v for v in versions}
    latest = versions[-1].version
    if st.session_state.get("_seg_latest_listed") != (scan.id, latest):  # a new version: pick it
        st.session_state["_seg_latest_listed"] = (scan.id, latest)
        st.session_state["seg_version_pick"] = latest
    pick = st.selectbox("Version", list(reversed(by_number)), key="seg_version_pick",
                        format_func=lambda n: f"v{n} · {by_number[n].kind} · {by_number[n].author or '—'}")
    v = by_number[pick]
    c1, c2 = st.columns(2)
    c1.button("Open this version", key="seg_open_version", on_click=open_version, args=(store, v.id),
              icon=":material/edit:")
    vol = session.current_volume()

    def _bytes(version_id: int = v.id) -> bytes:  # built only when the user clicks (deferred download)
        return label_nifti_bytes(load_version(store, version_id, vol), vol)

    c2.download_button("Download .nii.gz", _bytes, file_name=f"{scan.name}_v{v.version:03d}_{v.kind}.nii.gz",
                       mime="application/gzip", key="seg_download_version", icon=":material/download:",
                       on_click="ignore")


def _parent_number(versions, v) -> int | None:
    by_id = {x.id: x.version for x in versions}
    return by_id.get(v.parent_version_id)
