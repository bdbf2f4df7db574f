"""Viewer (the start page): the workflow at a glance, then the current scan in three planes with its
labels and their volumes. Opens on the session's current case, else the default demo."""

from __future__ import annotations

import streamlit as st

from components import session
from components.app_shell import ensure_app_shell, workflow_steps
from components.label_source import version_picker
from components.scan_picker import describe, scan_picker
from components.slice_viewer import overlay_controls, restore_view, window_controls
from components.volume_view import SHORTCUT_HELP, volume_view
from segloop.display import planes
from segloop.display.label_volumes import label_volumes_ml

ensure_app_shell()
st.title("Viewer")
workflow_steps("viewer")
scan_picker()
vol = session.current_volume()
if vol is None:
    st.info("Pick a scan above, or upload one.")
    st.stop()

qp_plane = st.query_params.get("plane")
try:
    qp_slice = int(st.query_params.get("slice", ""))
except ValueError:
    qp_slice = None
restore_view("", qp_plane if qp_plane in planes.PLANES else None, qp_slice)  # as left, on any page

labels = session.current_labels()
names = session.label_names()
st.caption(describe(vol))

with st.sidebar:
    st.subheader("Display")
    with st.popover("Keyboard and mouse", icon=":material/keyboard:"):
        st.markdown(SHORTCUT_HELP.split("**Editing**")[0])
    center, width = window_controls()
    st.subheader("Labels")
    version_picker()  # which saved version (or the reference labels) is on screen
    style = overlay_controls(labels, names)
    layout = st.radio("Layout", ["Three planes", "One plane"], horizontal=True, key="viewer_layout",
                      persist_state="session")
    big_plane = st.selectbox("Plane", planes.PLANES, key="viewer_plane", disabled=layout != "One plane",
                             persist_state="session")

volume_view("viewer_view", plane_names=(big_plane,) if layout == "One plane" else planes.PLANES,
            window=(center, width), style=style, names=names, height=640 if layout == "One plane" else 380)

st.subheader("Label volumes")
if labels is None:
    st.caption("This scan has no label map yet.")
else:
    rows = label_volumes_ml(labels, vol.spacing, names)
    if rows:
        st.dataframe(
            [{"Label": r["label"], "Name": r["name"], "Voxels": r["voxels"], "Volume (mL)": round(r["ml"], 3)} for r in rows],
            hide_index=True,
            key="label_table",
        )
    else:
        st.caption("The label map is empty.")
