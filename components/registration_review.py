"""A person's say on a whole head's registration: its QC picture, *Segment anyway* and *Move a box*.

A refused or borderline head shows its registration as a picture (`segloop.wholehead.qc`): the MNI152
brain outline and both boxes over the scan in three planes. The person may accept a registration the
check refused on its match alone, or move a box by a few mm, and segment again; the prediction then
comes from `components.segmentation.run_prediction` with the scan's `ScanState.placement`, and the model
version saved says that a person placed the boxes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import streamlit as st

from components import session
from components.scan_state import BoxPlacement
from segloop.wholehead.segment import MAX_BOX_SHIFT_MM, shifted_box

RUN_KEY = "_seg_run_now"  # set by these buttons: the page segments again in this run
_NUDGE_FOR_KEY = "_seg_nudge_for"  # the scan whose box moves the number boxes show
AXES = ("x (right +)", "y (front +)", "z (up +)")


def run_requested() -> bool:
    """Whether a button here asked the page to segment again (once)."""
    return bool(st.session_state.pop(RUN_KEY, False))


def _segment_anyway() -> None:
    state = session.current()
    state.placement = replace(state.placement, accept=True)
    st.session_state[RUN_KEY] = True


def _move_boxes() -> None:
    state = session.current()
    placement = BoxPlacement(state.placement.accept)
    for side in ("left", "right"):
        shift = tuple(float(st.session_state.get(f"seg_nudge_{side}_{i}", 0.0)) for i in range(3))
        placement = placement.moved(side, shift)
    state.placement = placement
    st.session_state[RUN_KEY] = True


@st.cache_data(show_spinner=False, max_entries=8)
def _picture(_volume, scan_key: str, scan_to_mni: tuple, boxes: tuple, title: str) -> bytes:
    """The QC picture (cached by scan identity, transform and boxes)."""
    from segloop.wholehead.qc import qc_png

    return qc_png(_volume, np.array(scan_to_mni).reshape(4, 4), title, dict(boxes))


def picture(title: str) -> None:
    """The current scan's QC picture: the template brain outline and the boxes where they are now."""
    from segloop.data.mni import HIPPOCAMPUS_BOXES_MM

    state = session.current()
    reg = state.registration
    if reg is None:
        return
    shifts = state.placement.shift_map()
    boxes = tuple((side, shifted_box(box, shifts.get(side))) for side, box in HIPPOCAMPUS_BOXES_MM.items())
    png = _picture(session.current_volume(), state.key, tuple(float(v) for v in reg.scan_to_mni.ravel()), boxes, title)
    st.image(png, caption="Yellow: the MNI152 brain outline placed by the registration; orange: left box; cyan: "
                          "right box. Right when the outline follows the brain and each box holds a hippocampus.")


def refused_panel(message: str) -> None:
    """What a head whose registration was refused shows: why, its picture, and the person's choices."""
    state = session.current()
    reg = state.registration
    st.error(f"Segmentation failed: {message}")
    if reg is None:
        return
    picture(f"{state.name}: {reg.verdict} (match {reg.quality:.2f})")
    if reg.overridable:
        st.button("Segment anyway", key="seg_accept_registration", on_click=_segment_anyway, type="primary",
                  icon=":material/gavel:", help="The outline follows the brain and the boxes sit on the hippocampi: "
                                                 "accept this registration. The version saved says a person accepted it.")
    else:
        st.caption("This cannot be overruled: the input is not a head scan, or its transform cannot be a head's.")


def move_boxes_panel(unsaved: int) -> None:
    """The picture of a segmented whole head, and the controls to move a box by a few mm and segment again."""
    state = session.current()
    reg = state.registration
    if reg is None:
        return
    with st.expander("Check the registration, move a box", expanded=state.placement.by_person or reg.verdict != "accept"):
        picture(f"{state.name}: {reg.verdict} (match {reg.quality:.2f})")
        shifts = state.placement.shift_map()
        fresh = st.session_state.get(_NUDGE_FOR_KEY) != state.key  # another scan: show its own moves
        st.session_state[_NUDGE_FOR_KEY] = state.key
        for side in ("left", "right"):
            cols = st.columns(3)
            for i, (col, axis) in enumerate(zip(cols, AXES)):
                key = f"seg_nudge_{side}_{i}"
                if fresh or key not in st.session_state:
                    st.session_state[key] = float(shifts.get(side, (0.0, 0.0, 0.0))[i])
                col.number_input(f"{side.capitalize()} box, {axis} mm", -MAX_BOX_SHIFT_MM, MAX_BOX_SHIFT_MM,
                                 step=1.0, key=key)
        st.button("Segment with the boxes moved", key="seg_move_boxes", on_click=_move_boxes,
                  icon=":material/open_with:", disabled=bool(unsaved),
                  help="Runs the model again in the moved boxes and replaces the labels; the version saved says a "
                       "person placed the boxes." + (" Save or reset your edits first." if unsaved else ""))
