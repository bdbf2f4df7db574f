"""Correction tools for the current label map: edits drawn in the volume view (box, lasso, brush, clicks),
3D/slice buttons, undo/redo, saving versions and the version history.

All tools edit the one label array in session state (components.session), in place, so every
plane shows an edit at once. Edits drawn in the browser arrive as events from the volume view
(`components.volume_view`) naming the plane and slice they were drawn on, and are applied by
`apply_view_edit` in a callback, before the page (and its volume table) is drawn; buttons use
on_click callbacks too. Each edit is one undoable step.

Messages and the edit history name labels as the page does ("Grow anterior by 1 voxel", not
"label 1"): the operations return structured edits and refusals (`Edit.what` with the label it is about,
`EditRefused`), which `describe` words with the page's label names.

The array keeps its dtype: uint8, or uint16 for labels above 255 (FreeSurfer-style 1002). Painting
a label the array cannot hold (300 into uint8) swaps in a uint16 copy, as part of the undoable edit
(`segloop.editing.history.apply_widening`); undo swaps the uint8 array back. No value is wrapped.
"""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from components import auth, session
from components.scan_state import BaseVersion, Edits, SavedNote, ScanState
from components.volume_view import move_to
from segloop.display import planes
from segloop.editing import operations
from segloop.editing.history import EditHistory, EditRefused, apply_edit, apply_widening
from segloop.editing.selections import apply_view_event
from segloop.editing.tools import HELP, Tool
from segloop.errors import SegLoopError
from segloop.io.readers import labels_from_array
from segloop.store.identity import Action

AUTHOR_KEY = auth.AUTHOR_KEY  # the name typed in local mode
NAMES_KEY = "seg_label_names"
NONCE_KEY = "seg_nonce"
STASH_MAX = session.MAX_KEPT_EDITS

TOOLS = tuple(Tool)


# --------------------------------------------------------------------------- state
# The labels being edited, their base version, the undo history, the last message and save belong to
# the current scan's `ScanState` (`components.scan_state`), keyed by its content id: a scan never sees
# another scan's work, whatever their names.


def _state() -> ScanState:
    state = session.current()
    if state is None:
        raise SegLoopError("no scan is open")
    return state


def edits() -> Edits:
    """The current scan's edits, started from the labels on screen the first time."""
    state = _state()
    if state.edits is None:
        state.edits = Edits.start(session.current_labels())
    return state.edits


def history() -> EditHistory:
    return edits().history


def message() -> str | None:
    """The editor's last message about the current scan."""
    state = session.current()
    return None if state is None else state.message


def last_box() -> str | None:
    state = session.current()
    return None if state is None else state.last_box


def _adopt(labels: np.ndarray | None) -> None:
    """Make `labels` the session's label array and the one this editor works on."""
    session.set_labels(labels)
    edits().labels = labels


def ensure_state() -> None:
    """Keep the edited labels of the current scan on screen.

    If another page replaced the label array of the same scan (e.g. the Viewer reopened the case), the
    edited array is put back, so unsaved edits survive page switches. Each scan's work lives in its own
    `ScanState`, so switching scans keeps it aside (for `STASH_MAX` other scans, `session.set_current`)
    and brings it back on return; a warning names the scan whose work had to go (once).
    """
    work = edits()
    if work.labels is not None and session.current_labels() is not work.labels:
        session.set_labels(work.labels)
    for name in session.pop_dropped_edits():
        st.warning(f"Your unsaved edits of {name} are gone: this session keeps unsaved edits of at most "
                   f"{STASH_MAX} other cases, and those were the oldest.", icon=":material/warning:")


def _known(key: str | None) -> ScanState | None:
    return None if key is None else session.scans().get(key)


def unsaved_of(key: str | None) -> int:
    """Voxels of unsaved edits this session holds for the scan `key` (a content id; 0 for none)."""
    state = _known(key)
    return 0 if state is None else state.unsaved


def held_labels(key: str | None) -> tuple[np.ndarray, BaseVersion | None] | None:
    """(labels, base) of the scan `key` when this session holds unsaved edits of it, else None.

    `base` is the saved version they descend from, or None.
    """
    state = _known(key)
    if state is None or not state.unsaved:
        return None
    return state.edits.labels, state.edits.base


def base_of(key: str | None) -> BaseVersion | None:
    """The saved version the labels on screen descend from, when `key` is the current scan; else None."""
    state = _known(key)
    if state is None or key != session.current_key() or state.edits is None or state.edits.labels is None:
        return None
    if state.edits.labels is not session.current_labels():
        return None
    return state.edits.base


def stash_room(key: str | None, target: str | None = None) -> tuple[int, str | None]:
    """(STASH_MAX, the name of the scan whose kept edits switching from `key` (to `target`, when known)
    would drop, or None).

    Opening a scan whose edits are kept makes it current, which makes room.
    """
    states = session.scans()
    others = [s for k, s in states.items() if k not in (key, target) and s.unsaved]
    return STASH_MAX, (others[0].name if unsaved_of(key) and len(others) >= STASH_MAX else None)


def restore_view() -> None:
    """Put the current case's window (as the user left it, on any page) into this page's widgets
    `seg_window_*`, before they are drawn; the slices come back through the volume view."""
    from components.slice_viewer import restore_view as _restore

    _restore("seg_")


def set_label_names(names: dict[int, str]) -> None:
    """The label names the page shows; messages and the edit history use them (`Edit.describe`)."""
    st.session_state[NAMES_KEY] = dict(names)


def _names() -> dict[int, str]:
    return st.session_state.get(NAMES_KEY, {})


def _refusal(exc: Exception) -> str:
    """What a refused edit says, naming labels as the page does."""
    return exc.describe(_names()) if isinstance(exc, EditRefused) else str(exc)


def _say(text: str | None) -> None:
    state = session.current()
    if state is not None:
        state.message = text


def on_tool_change() -> None:
    """Tool radio callback: clear the last message, which was about the old tool."""
    st.session_state[NONCE_KEY] = nonce() + 1
    _say(None)


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
    session.bump_labels_revision()


def nonce() -> int:
    return int(st.session_state.get(NONCE_KEY, 0))


def record(edit, message: str | None = None) -> None:
    """Push an applied edit to the history and say what it did, naming labels as the page does."""
    what = edit.describe(_names())
    if edit.is_empty:
        _say(f"{what}: nothing changed.")
        return
    history().push(edit)
    bump()
    widened = "" if edit.widened_from is None else f" (labels now stored as uint16, up from {edit.widened_from})"
    _say(message or f"{what}: {len(edit)} voxels changed{widened}.")


def _use(labels: np.ndarray) -> None:
    """Adopt `labels` when an edit, undo or redo replaced the array (its dtype changed)."""
    if labels is not session.current_labels():
        _adopt(labels)


def set_base(base: BaseVersion | None, labels: np.ndarray) -> None:
    """The saved version the labels now descend from (parent of the next save)."""
    work = edits()
    work.base, work.base_labels = base, labels.copy()


def start_from(labels: np.ndarray | None, version=None) -> None:
    """Show `labels` for the current scan on every page, descending from the saved `version` (a
    LabelVersion; None: not saved), with a new edit history.

    Unsaved edits this session holds for the scan are dropped: callers ask the user first (see
    `unsaved_of`). Work kept for other scans is left alone. The labels keep their values exactly: uint8,
    or uint16 when a label is above 255 (a new array, checked by `labels_from_array`, never wrapped).
    """
    arr = None if labels is None else labels_from_array(np.asarray(labels), "labels")
    state = _state()
    state.edits = Edits.start(arr, BaseVersion.of(version))
    state.saved = None
    session.set_labels(arr)


def unsaved_voxels() -> int:
    """Voxels of the current scan that differ from the version being edited (or the labels it came with)."""
    state = session.current()
    return 0 if state is None else state.unsaved


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
        _say(f"That edit was not applied: {_refusal(exc)}")
        return
    if applied is None:
        return
    if applied.labels is not None:  # widened to hold the label
        _adopt(applied.labels)
    st.session_state[NONCE_KEY] = nonce() + 1
    if applied.pixel_box is not None:
        r0, r1, c0, c1 = applied.pixel_box
        _state().last_box = f"{event['plane']} {int(event['index'])}: rows {r0}–{r1}, columns {c0}–{c1}"
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
        _say(_refusal(exc))


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
        set_base(BaseVersion(pred.version_id, pred.version, pred.model_id, "model"), np.asarray(pred.labels))


def undo() -> None:
    labels, edit = history().undo_labels(editable_labels())
    _use(labels)  # undoing a widening edit gives the narrower array back
    if edit is not None:
        bump()
        _say(f"Undone: {edit.describe(_names())}")


def redo() -> None:
    labels, edit = history().redo_labels(editable_labels())
    _use(labels)
    if edit is not None:
        bump()
        _say(f"Redone: {edit.describe(_names())}")


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
    recent = [e.describe(_names()) for e in hist.undo_edits[-8:][::-1]]
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
    state = _state()
    if state.workspace_id is not None and state.workspace_id != scan_id:  # never another scan's row
        _say("Not saved: the page's scan record is not the scan on screen. Reload the page.")
        return
    base = edits().base
    labels = editable_labels()
    try:  # signed in, the identity is the author (the core checks its role again)
        v = save_label_version(store, scan_id, labels, session.current_volume(), kind="correction", author=author,
                               parent_version_id=base.version_id if base else None,
                               model_id=base.model_id if base else None, identity=auth.current_identity())
    except SegLoopError as exc:
        _say(str(exc))
        return
    set_base(BaseVersion.of(v), labels)
    state.saved = SavedNote(v.version, v.id, v.dice_vs_model, v.changed_voxels, v.path)


def open_version(store, version_id: int) -> None:
    """Callback: continue editing from a saved version."""
    from segloop.store.label_versions import load_version

    v = store.label_version(version_id)
    start_from(load_version(store, version_id, session.current_volume()), v)
    _say(f"Opened version {v.version} ({v.kind}).")


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
    base = edits().base
    origin = f"version {base.version} ({base.kind})" if base else "the labels the scan was opened with"
    if changed:
        st.warning(f"Unsaved changes: {changed} voxels differ from {origin}.", icon=":material/edit_note:")
    else:
        st.caption(f"No unsaved changes (same as {origin}).")
    st.button("Save correction", key="seg_save", type="primary", on_click=save_correction, args=(store, scan.id),
              disabled=scan is None or not may_save, icon=":material/save:")
    saved = _state().saved
    if saved:
        dice = saved.dice or {}
        dice_txt = ", ".join(f"{names.get(int(k), k)} {d:.3f}" for k, d in dice.items()) or "no model version to compare"
        st.success(f"Saved as version {saved.version}. Dice vs the model output: {dice_txt}. "
                   f"Changed voxels vs its parent: {saved.changed if saved.changed is not None else 'n/a'}.")
        st.caption(f"Saved file: `{saved.path}`")


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
