"""Segment & correct: run the active model on the current scan, fix its output, save versions."""

from __future__ import annotations

import streamlit as st

from components import auth, editor, registration_review, segmentation, session
from components.app_shell import ensure_app_shell
from components.scan_picker import describe, scan_picker
from components.slice_viewer import window_controls
from components.volume_view import SHORTCUT_HELP, box_outlines, volume_view
from segloop.display import planes
from segloop.display.render import OverlayStyle
from segloop.editing.tools import Tool
from segloop.store.identity import Action
from segloop.wholehead.segment import Mode, RegistrationRefused

MODE_LABELS = {Mode.AUTO: "Auto", Mode.CROP: "Crop as it is", Mode.WHOLE_HEAD: "Whole head"}

ensure_app_shell()
st.title("Segment & correct")
scan_picker()
vol = session.current_volume()
if vol is None:
    st.info("Pick a scan above, or upload one.")
    st.stop()
case = session.current_case()
st.caption(describe(vol))

model = segmentation.active_model()
names, colors = segmentation.model_labels(model)
editor.set_label_names(names)
editor.ensure_state()
editor.restore_view()  # slices and window as the user left this case, on this page or the Viewer
mode = st.session_state.get("seg_mode", Mode.AUTO)
pred = segmentation.cached_prediction(model, mode)

values = sorted(names) + [0]
with st.sidebar:  # the tools sit beside the views, so the views and the active tool fit one screen
    st.subheader("Tools")
    tool = st.radio("Tool", editor.TOOLS, horizontal=True, key="seg_tool", on_change=editor.on_tool_change,
                    format_func=lambda t: t.capitalize(), persist_state="session")
    value = st.radio("Label", values, horizontal=True, key="seg_label", persist_state="session",
                     format_func=lambda v: names.get(v, f"label {v}") if v else "Eraser")
    brush = st.slider("Brush radius (pixels)", 1, 15, 3, key="seg_brush", disabled=tool != Tool.BRUSH,
                      persist_state="session")
    with st.popover("Keyboard and mouse", icon=":material/keyboard:"):
        st.markdown(SHORTCUT_HELP)
    st.subheader("Display")
    window = window_controls("seg_")
    opacity = st.slider("Label opacity", 0.0, 1.0, 0.45, 0.05, key="seg_opacity", persist_state="session")
    contour = st.toggle("Contours only", key="seg_contour", persist_state="session")
    show_unc = st.toggle("Show uncertainty", key="seg_show_unc", disabled=pred is None, persist_state="session",
                         help="Heat overlay of the model's uncertainty (normalised entropy): "
                              "yellow ≥ 0.1, orange ≥ 0.25 / 0.5, red ≥ 0.75.")
    show_boxes = st.toggle("Show hippocampus boxes", value=True, key="seg_show_boxes",
                           disabled=pred is None or not pred.sides, persist_state="session",
                           help="Dashed outlines: where the whole-head path looked for each hippocampus.")
style = OverlayStyle.make(colors, opacity=opacity, contour=contour)

# --------------------------------------------------------------------------- segment
# Layout: a one-line model row, then the views (with the tools beside them in the sidebar), then the
# details. Containers keep that order on screen while the code runs in dependency order.
store = segmentation.store()
scan = segmentation.scan_record()
head = st.container()
views = st.container()
st.subheader("Details")
details = st.container()

with head:
    c1, c2 = st.columns([3, 2], vertical_alignment="center")
    c1.caption(f"Active model: **{model.title}**" + (f" — {model.note}" if model.note else ""))
    c2.radio("Path", list(Mode), horizontal=True, key="seg_mode", format_func=MODE_LABELS.get, label_visibility="collapsed",
             help="Auto decides from the scan's field of view: a hippocampus crop like the training data runs as it is; "
                  "a whole head is first registered to the MNI152 template to find both hippocampi.")
    may_segment = auth.allowed(Action.SEGMENT)
    rerun = registration_review.run_requested() and may_segment  # Segment anyway, or boxes moved
    refused = session.current().registration
    if pred is None and not rerun and refused is not None and not refused.ok and not session.current().placement.accept:
        registration_review.refused_panel(f"could not find the hippocampi: {refused.message}")  # as last time
    elif pred is None or rerun:
        if rerun or st.button("Run segmentation", key="seg_run", type="primary", icon=":material/play_arrow:",
                              disabled=not may_segment, help=None if may_segment else auth.needs(Action.SEGMENT)):
            refusal = None
            try:
                with st.status(f"Running {model.title} on {case}…", expanded=True) as status:
                    st.write("Localising (whole head: registration to MNI152), running the network, post-processing…")
                    try:
                        pred = segmentation.run_prediction(model, mode)
                    except RegistrationRefused as exc:  # the picture, and the person's say; the views stay
                        refusal = exc
                        status.update(label="The registration was refused: see its picture below", state="error",
                                      expanded=False)
                    else:
                        status.update(label=f"Segmented in {pred.seconds:.1f} s", state="complete", expanded=False)
            except Exception as exc:  # ModelError and friends: one clear sentence
                st.error(f"Segmentation failed: {exc}")
                st.stop()
            if refusal is not None:
                registration_review.refused_panel(str(refusal))
            else:
                version = store.label_version(pred.version_id) if pred.version_id is not None else None
                editor.start_from(pred.labels, version)
                st.rerun()
        st.caption("Run the model to get a starting point, or correct the labels shown below directly.")
    else:
        st.caption(f"Model {pred.model_title} on **{pred.provider}** · {pred.seconds:.2f} s · path **{pred.kind}**"
                   + (f" · saved as version {pred.version}" if pred.version else ""))
        if pred.sides:
            for col, s in zip(st.columns(len(pred.sides) + 1), pred.sides):
                col.button(f"Go to the {s.side} hippocampus", key=f"seg_goto_{s.side}", on_click=editor.go_to_voxel,
                           args=(s.centre,), icon=":material/my_location:")
            if pred.placed_by == "person":
                st.caption("Boxes placed by a person: the model version saved says so.")
    for w in (pred.warnings if pred is not None else ()):
        st.warning(w)

with details:
    volume_table = st.empty()  # drawn below, once this run's edit (if any) is applied
    if pred is not None:
        st.caption(f"Execution provider: **{pred.provider}** — {pred.provider_note}")
        st.caption(f"Model {pred.model_title} · {pred.seconds:.2f} s · mean uncertainty in the labels "
                   f"{pred.mean_uncertainty:.3f}")
        st.caption(f"Path: **{pred.kind}** · " + " · ".join(f"{step} {s:.2f} s" for step, s in pred.timings.items()))
        if pred.sides:
            rep = pred.report
            st.caption(f"Registration to MNI152: match {rep['registration_quality']:.2f} ({pred.verdict}) · estimated intracranial "
                       f"volume (eTIV, Buckner et al. 2004) {rep['etiv_ml']:.0f} mL · left/right asymmetry "
                       f"{rep['asymmetry_total_pct']:+.1f} %")
            st.dataframe(
                [{"Side": s.side,
                  **{f"{names.get(v, v)} (mL)": round(rep[f"{s.side}_{names.get(v, str(v)).replace(' ', '_')}_ml"], 3)
                     for v in sorted(names)},
                  "Total (mL)": round(rep[f"{s.side}_total_ml"], 3), "Mean uncertainty": round(s.mean_uncertainty, 3)}
                 for s in pred.sides], hide_index=True, key="seg_sides_table")
        if pred.sides:
            registration_review.move_boxes_panel(editor.unsaved_voxels())
        st.button("Reset to the model output", key="seg_reset_model", on_click=editor.reset_to_prediction,
                  args=(pred,), help="Replaces the current labels with the model's output (undoable).")

# --------------------------------------------------------------------------- correct
with views:
    intensity_range = editor.fill_options(window) if tool == Tool.FLOOD_FILL else None
    msg = editor.message()
    st.caption(editor.tool_help(tool, intensity_range is not None) + (f"  \n**{msg}**" if msg else ""))
    levels = pred.levels if (pred is not None and show_unc) else None
    outlines = None
    if pred is not None and show_boxes and pred.sides:
        cache = st.session_state.setdefault("_seg_outlines", {})
        if cache.get("for") != (session.current_key(), id(pred)):
            cache.update({"for": (session.current_key(), id(pred)),
                          "outlines": box_outlines([s.corners for s in pred.sides], vol.shape, vol.spacing)})
        outlines = cache["outlines"]
    volume_view("seg_view", window=window, style=style, names=names, editable=True, tool=tool, value=int(value),
                brush=int(brush), levels=levels, outlines=outlines, height=360, window_prefix="seg_",
                on_edit=editor.apply_view_edit,
                on_command=editor.apply_command)

with details:
    rows = segmentation.volume_rows(pred, session.current_labels(), vol.spacing, names)
    if rows:
        volume_table.dataframe(rows, hide_index=True, key="seg_volumes_table")
    last_box = editor.last_box()
    if last_box:
        st.caption(f"Last box applied: {last_box}")
    edit_plane = st.selectbox("Plane for the slice tools", planes.PLANES, key="seg_plane", persist_state="session")
    left, right = st.columns([3, 2])
    with left:
        editor.slice_tools(edit_plane, int(value), names)
    with right:
        editor.history_panel()

# --------------------------------------------------------------------------- save
st.subheader("Save")
if scan is None:
    st.error("This scan could not be registered in the workspace, so corrections cannot be saved.")
else:
    editor.save_panel(store, scan, names)
    st.subheader("Versions of this scan")
    editor.versions_panel(store, scan)
