"""The browser volume view's server side: what is packed for the browser, and edits coming back from it.

The browser cuts slices with `plane_geometry`'s offsets and windows codes with the same formula as
`apply_window`; these tests check both against the server's own `planes.slice_view` and
`apply_window`, so what the user sees in the browser is the slice the editing tools write to.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import streamlit
from hypothesis import given, settings
from hypothesis import strategies as st

from segloop.display import planes
from segloop.display.volume_payload import pack, pack_labels, pack_scan, plane_geometry, quantize
from segloop.display.windowing import apply_window
from segloop.editing.selections import apply_view_event
from segloop.io.volume import content_id, volume_from_array

shapes = st.tuples(*(st.integers(1, 9) for _ in range(3)))


@settings(max_examples=60, deadline=None)
@given(shape=shapes, plane=st.sampled_from(planes.PLANES), data=st.data())
def test_browser_offsets_pick_exactly_the_pixels_slice_view_shows(shape, plane, data) -> None:
    flat = np.arange(np.prod(shape)).reshape(shape)
    g = plane_geometry(shape, plane)
    k = data.draw(st.integers(0, g["n"] - 1))
    view = planes.slice_view(flat, plane, k)
    assert view.shape == (g["rows"], g["cols"])
    rr, cc = np.meshgrid(np.arange(g["rows"]), np.arange(g["cols"]), indexing="ij")
    offsets = g["origin"] + k * g["slice"] + rr * g["row_step"] + cc * g["col_step"]
    assert np.array_equal(flat.ravel()[offsets], view)
    assert g["n"] == shape[g["axis"]]


def _browser_window(codes: np.ndarray, slope: float, intercept: float, center: float, width: float) -> np.ndarray:
    """The browser's lookup (components/volume_view.js windowLUT), in float64 as JavaScript computes it."""
    w = width if width > 0 else 1e-6
    g = ((codes.astype(np.float64) * slope + intercept) - (center - w / 2)) * (255 / w)
    return np.floor(np.clip(g, 0, 255) + 0.5).astype(np.uint8)


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.floats(-5000, 5000, allow_nan=False, width=32), min_size=2, max_size=60),
    integral=st.booleans(),
    center=st.floats(-3000, 3000), width=st.floats(0.5, 6000),
)
def test_windowing_in_the_browser_matches_the_server(values, integral, center, width) -> None:
    a = np.array(values, np.float32)
    if integral:
        a = np.round(a)
    a = a.reshape(1, 1, -1)
    codes, slope, intercept, exact = quantize(a)
    if integral and a.max() - a.min() <= 65535:
        assert exact and np.array_equal(codes * slope + intercept, a)
    assert np.all(np.abs(codes * slope + intercept - a) <= slope / 2 + 1e-6 * max(1.0, float(np.abs(a).max())))
    shown = _browser_window(codes, slope, intercept, center, width)
    server = apply_window(a, center, width)
    # exact codes: the same grey level up to rounding; quantised ones: off by at most half a code step
    allowed = 1 if exact else 1 + int(np.ceil(slope / 2 * 255 / width))
    assert np.abs(shown.astype(int) - server.astype(int)).max() <= allowed


def test_scans_are_packed_exactly_when_their_integers_fit() -> None:
    crop = np.random.default_rng(0).integers(2, 140, (5, 6, 7)).astype(np.float32)  # a Decathlon crop's range
    p = pack_scan(crop)
    assert p.dtype == "uint8" and p.exact
    codes = np.frombuffer(zlib.decompress(p.data), np.uint8).reshape(p.shape)
    assert np.array_equal(codes * p.slope + p.intercept, crop)
    mr = np.random.default_rng(1).integers(0, 4095, (5, 6, 7)).astype(np.int16)  # 12-bit scanner data
    p = pack_scan(mr)
    assert p.dtype == "uint16" and p.exact
    codes = np.frombuffer(zlib.decompress(p.data), "<u2").reshape(p.shape)
    assert np.array_equal(codes * p.slope + p.intercept, mr)


def test_non_finite_voxels_do_not_break_packing() -> None:
    a = np.array([[[np.nan, 1.5, np.inf, 3.25]]], np.float32)
    codes, slope, intercept, exact = quantize(a)
    assert codes.dtype == np.uint16 and codes[0, 0, 0] == 0 and not exact


def test_labels_keep_their_values_and_digests_follow_content() -> None:
    labels = np.zeros((3, 4, 5), np.int32)
    labels[1, 2, 3] = 1002
    p = pack_labels(labels)
    assert p.dtype == "uint16"
    assert np.frombuffer(zlib.decompress(p.data), "<u2").reshape(p.shape)[1, 2, 3] == 1002
    same = pack_labels(labels.astype(np.uint16))
    assert same.digest == p.digest
    labels[0, 0, 0] = 1
    assert pack_labels(labels).digest != p.digest
    with pytest.raises(ValueError, match="0..65535"):
        pack_labels(np.full((2, 2, 2), -1))
    with pytest.raises(ValueError, match="3-D"):
        pack(np.zeros((2, 2), np.uint8))


# --------------------------------------------------------------------------- edits drawn in the browser


def _labels() -> np.ndarray:
    return np.zeros((10, 12, 8), np.uint8)


def _voxels(labels: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(map(int, v)) for v in np.argwhere(labels)}


def _expected(plane: str, index: int, pixels, shape) -> set[tuple[int, int, int]]:
    return {tuple(int(c) for c in planes.display_to_voxel(plane, index, r, c, shape)) for r, c in pixels}


@pytest.mark.parametrize("plane", planes.PLANES)
def test_a_box_lands_on_the_slice_it_was_drawn_on(plane: str) -> None:
    labels = _labels()
    spacing = (1.0, 2.0, 0.5)
    row_mm, col_mm = planes.pixel_spacing(spacing, plane)
    index = planes.n_slices(labels.shape, plane) - 2
    event = {"tool": "box", "plane": plane, "index": index, "value": 2,
             "selection": {"box": [{"x": [0.6 * col_mm, 2.4 * col_mm], "y": [2.6 * row_mm, 0.6 * row_mm]}]}}
    applied = apply_view_event(labels, event, image=labels, spacing=spacing)
    assert applied.pixel_box == (1, 2, 1, 2)
    assert _voxels(labels) == _expected(plane, index, [(r, c) for r in (1, 2) for c in (1, 2)], labels.shape)
    assert set(np.unique(labels)) == {0, 2}


def test_lasso_brush_and_clicks_edit_only_the_named_slice() -> None:
    labels = _labels()
    sp = (1.0, 1.0, 1.0)
    lasso = {"tool": "lasso", "plane": "coronal", "index": 4, "value": 1,
             "selection": {"lasso": [{"x": [0.5, 3.5, 3.5, 0.5], "y": [0.5, 0.5, 2.5, 2.5]}]}}
    apply_view_event(labels, lasso, image=labels, spacing=sp)
    assert {v[1] for v in _voxels(labels)} == {4} and len(_voxels(labels)) == 6
    brush = {"tool": "brush", "plane": "axial", "index": 6, "value": 2, "points": [[5, 3], [5, 6]], "radius": 1}
    apply_view_event(labels, brush, image=labels, spacing=sp)
    assert _voxels(labels == 2) == _expected("axial", 6, [(5, c) for c in range(3, 7)], labels.shape)
    # flood fill of the background on a coronal slice fills that slice only, around the lasso region
    fill = {"tool": "flood fill", "plane": "coronal", "index": 4, "value": 3, "selection": {"points": [{"x": 9, "y": 7}]}}
    apply_view_event(labels, fill, image=labels, spacing=sp)
    assert {v[1] for v in _voxels(labels == 3)} == {4}
    assert int((labels == 3).sum()) == 10 * 8 - 6 - int(((labels == 2)[:, 4, :]).sum())
    # delete component: the clicked 3D piece goes, the others stay
    gone = {"tool": "delete component", "plane": "coronal", "index": 4, "value": 0,
            "selection": {"points": [{"x": 1.0, "y": 1.0}]}}
    apply_view_event(labels, gone, image=labels, spacing=sp)
    assert not (labels == 1).any() and (labels == 2).any()


def test_intensity_fill_grows_within_the_range_from_the_clicked_pixel() -> None:
    labels = _labels()
    image = np.zeros(labels.shape, np.float32)
    image[2:5, 3:7, 4] = 100.0  # a bright patch on axial slice 4
    r, c = planes.voxel_to_display("axial", (3, 4, 4), labels.shape)[1:]
    event = {"tool": "flood fill", "plane": "axial", "index": 4, "value": 1,
             "selection": {"points": [{"x": float(c), "y": float(r)}]}}
    apply_view_event(labels, event, image=image, spacing=(1.0, 1.0, 1.0), fill_range=(50.0, 150.0))
    assert _voxels(labels) == {(x, y, 4) for x in range(2, 5) for y in range(3, 7)}


@pytest.mark.parametrize("event, message", [
    ({"tool": "pencil", "plane": "axial", "index": 1, "value": 1}, "not an edit"),
    ({"tool": "box", "plane": "oblique", "index": 1, "value": 1}, "unknown plane"),
    ({"tool": "box", "plane": "axial", "index": 8, "value": 1}, "no slice 8"),
    ({"tool": "box", "plane": "axial", "index": -1, "value": 1}, "no slice -1"),
    ({"tool": "box", "plane": "axial", "index": 1, "value": "one"}, "not an edit"),
    ({"tool": "brush", "plane": "axial", "index": 1, "value": 1, "points": [["a", 2]], "radius": 2}, "brush stroke"),
    ({"tool": "box", "plane": "axial", "index": 1, "value": 70000,
      "selection": {"box": [{"x": [0, 3], "y": [0, 3]}]}}, "65535"),
])
def test_malformed_edits_are_refused_and_change_nothing(event, message) -> None:
    labels = _labels()
    labels[1, 1, 1] = 1
    before = labels.copy()
    with pytest.raises(ValueError, match=message):
        apply_view_event(labels, event, image=labels, spacing=(1.0, 1.0, 1.0))
    assert np.array_equal(labels, before)


# --------------------------------------------------------------------------- the page's side (components.editor)


@pytest.fixture
def editor(monkeypatch):
    """components.editor and components.volume_view on a plain dict as session state."""
    state: dict = {}
    monkeypatch.setattr(streamlit, "session_state", state)
    from components import editor, session, volume_view

    vol = volume_from_array(np.zeros((10, 12, 8), np.float32), np.eye(4), name="case")
    session.set_current(vol, None, content_id(vol), "case", "upload")
    state[editor.NAMES_KEY] = {1: "anterior", 2: "posterior"}
    editor.start_from(np.zeros(vol.shape, np.uint8), None)
    return editor, session, volume_view, state


def test_an_edit_from_the_view_is_one_undoable_step_named_for_the_user(editor) -> None:
    editor, session, _, state = editor
    event = {"tool": "box", "plane": "axial", "index": 3, "value": 1,
             "selection": {"box": [{"x": [0, 2], "y": [0, 1]}]}}
    editor.apply_view_edit(event)
    assert int(session.current_labels().sum()) == 6 and editor.unsaved_voxels() == 6
    assert "anterior" in editor.message() and "label 1" not in editor.message()
    assert editor.last_box() == "axial 3: rows 0–1, columns 0–2"
    editor.apply_command({"action": "undo"})
    assert not session.current_labels().any()
    editor.apply_command({"action": "redo"})
    assert int(session.current_labels().sum()) == 6


def test_a_malformed_edit_says_so_and_changes_nothing(editor) -> None:
    editor, session, _, state = editor
    editor.apply_view_edit({"tool": "box", "plane": "axial", "index": 99, "value": 1, "selection": {}})
    assert "not applied" in editor.message() and "no slice 99" in editor.message()
    assert not session.current_labels().any() and len(editor.history()) == 0


def test_shortcuts_switch_tool_and_label_only_to_known_ones(editor) -> None:
    editor, _, _, state = editor
    editor.apply_command({"action": "tool", "tool": "lasso"})
    assert state["seg_tool"] == "lasso"
    editor.apply_command({"action": "tool", "tool": "scalpel"})
    assert state["seg_tool"] == "lasso"
    editor.apply_command({"action": "label", "value": 2})
    assert state["seg_label"] == 2
    editor.apply_command({"action": "label", "value": 7})  # no label 7 on this page
    assert state["seg_label"] == 2
    editor.apply_command({"action": "label", "value": 0})
    assert state["seg_label"] == 0


def test_go_to_a_voxel_moves_every_plane_and_the_browser_adopts_it(editor) -> None:
    editor, session, volume_view, _ = editor
    rev = session.case_view().get("slices_rev", 0)
    editor.go_to_voxel((7.4, 2.6, 5))
    view = session.case_view()
    assert view["crosshair"] == [7, 3, 5]
    assert view["slices"] == {"sagittal": 7, "coronal": 3, "axial": 5}
    assert view["slices_rev"] == rev + 1
    editor.go_to_voxel((50, -3, 5))  # clipped to the scan
    assert session.case_view()["crosshair"] == [9, 0, 5]
    assert editor.shown_slice("sagittal") == 9


def test_the_vendored_plotly_bundle_is_the_version_the_plotly_package_ships() -> None:
    import re
    from pathlib import Path

    import plotly

    from components.volume_view import PLOTLY_JS

    def version(path: Path) -> str:
        return re.search(r"plotly\.js (?:\(basic - minified\) )?v(\d+\.\d+\.\d+)", path.read_text()[:400]).group(1)

    assert version(PLOTLY_JS) == version(Path(plotly.__file__).parent / "package_data" / "plotly.min.js")


def test_an_edit_or_view_drawn_on_another_scan_never_lands_on_the_one_now_open(editor) -> None:
    editor, session, volume_view, state = editor
    event = {"tool": "box", "plane": "axial", "index": 3, "value": 1, "selection": {"box": [{"x": [0, 2], "y": [0, 1]}]}}
    for scan in ("0" * 64, None):  # another scan's id, or none (an old page)
        state["seg_view"] = {"edit": {**event, "scan": scan}, "view": {"scan": scan, "slices": {"axial": 7}}}
        volume_view._on_trigger("seg_view", "edit", editor.apply_view_edit)
        volume_view._on_view("seg_view", "seg_")
        assert not session.current_labels().any() and len(editor.history()) == 0
        assert "another scan" in editor.message() and session.case_view()["slices"].get("axial") != 7
    state["seg_view"] = {"edit": {**event, "scan": session.current_key()},
                         "view": {"scan": session.current_key(), "slices": {"axial": 7}}}
    volume_view._on_trigger("seg_view", "edit", editor.apply_view_edit)
    volume_view._on_view("seg_view", "seg_")
    assert int(session.current_labels().sum()) == 6 and session.case_view()["slices"]["axial"] == 7
