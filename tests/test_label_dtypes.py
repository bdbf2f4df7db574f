"""Label maps keep their values through edit, undo, redo, save and reload: nothing lost, nothing mixed up.

Label maps with values above 255 (FreeSurfer-style 1002, 2017) are uint16; every editing step must
keep them exactly (no 1002 -> 234 wrap). Random sequences of editing operations are run with
Hypothesis on uint8/uint16 maps (and int16/int32 maps normalised by `labels_from_array`), next to an
int64 copy that cannot wrap, and undo/redo must give back every intermediate state exactly.

Painting a label the map's dtype cannot hold (300 into a uint8 map) widens the map to uint16
(`apply_widening`); undoing that edit gives the uint8 map back.
"""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import streamlit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segloop.display.planes import PLANE_AXIS, n_slices, slice_shape
from segloop.editing import operations
from segloop.editing.history import (
    EditHistory,
    LabelValueError,
    apply_edit,
    apply_widening,
    check_label_value,
    widen_for,
)
from segloop.editing.selections import apply_selection
from segloop.errors import ScanError, SegLoopError
from segloop.io.readers import labels_from_array, load_label, load_scan
from segloop.io.volume import content_id, volume_from_array
from segloop.io.writers import label_nifti_bytes, save_label

PLANES = ("axial", "coronal", "sagittal")

#: Label values each input dtype starts with (int16/int32 stand for maps saved with signed types).
POOLS = {
    "uint8": [0, 1, 2, 3, 255],
    "uint16": [0, 1, 2, 255, 256, 1002, 2017, 65535],
    "int16": [0, 1, 2, 1002, 32767],
    "int32": [0, 1, 3, 2017, 65535],
}
#: Values painted: some fit uint8, some need uint16 (300, 1002, 2017, 65535).
PAINT_VALUES = [0, 1, 2, 3, 255, 256, 300, 1002, 2017, 65535]

# database=None: no example database written into the checkout; failures print their reproducer.
SETTINGS = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- strategies


@st.composite
def label_maps(draw):
    """(input array as given, the normalised uint8/uint16 map the editor works on)."""
    dtype = draw(st.sampled_from(["uint8", "uint8", "uint16", "int16", "int32"]))  # uint8: the widening case
    shape = tuple(draw(st.integers(2, 6)) for _ in range(3))
    data = draw(arrays(np.dtype(dtype), shape, elements=st.sampled_from(POOLS[dtype])))
    return data, labels_from_array(data, f"random_{dtype}.nii.gz")


def _plane_index(draw, shape):
    plane = draw(st.sampled_from(PLANES))
    return plane, draw(st.integers(0, n_slices(shape, plane) - 1))


def _pixel(draw, shape, plane):
    rows, cols = slice_shape(shape, plane)
    return draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1))


def _coord(draw, n):
    return draw(st.floats(-1.0, n + 0.5, allow_nan=False, allow_infinity=False))


@st.composite
def operation(draw, shape):
    """One editing step: (name, value or None, callable taking the label map and returning an Edit).

    `value` is the label the step writes (it may not fit the map's dtype, then the step is run
    through `apply_widening`); None for steps that only erase or move existing labels.
    """
    kind = draw(st.sampled_from([
        "box", "polygon", "mask", "brush", "flood", "erase", "delete", "fill_holes", "islands", "grow",
        "shrink", "copy", "interpolate", "voxel",
    ]))
    plane, index = _plane_index(draw, shape)
    rows, cols = slice_shape(shape, plane)
    value = draw(st.sampled_from(PAINT_VALUES))
    only = draw(st.one_of(st.none(), st.sampled_from(PAINT_VALUES)))
    overwrite = draw(st.booleans())
    if kind == "box":
        r = (_coord(draw, rows), _coord(draw, rows))
        c = (_coord(draw, cols), _coord(draw, cols))
        return kind, value, lambda lab: operations.paint_box(lab, plane, index, r, c, value, only_label=only,
                                                             overwrite=overwrite)
    if kind == "polygon":
        n = draw(st.integers(3, 5))
        r = [_coord(draw, rows) for _ in range(n)]
        c = [_coord(draw, cols) for _ in range(n)]
        return kind, value, lambda lab: operations.paint_polygon(lab, plane, index, r, c, value, only_label=only,
                                                                 overwrite=overwrite)
    if kind == "mask":
        mask = draw(arrays(np.bool_, (rows, cols)))
        return kind, value, lambda lab: operations.paint_mask(lab, plane, index, mask, value, overwrite=overwrite)
    if kind == "brush":
        points = [(_coord(draw, rows), _coord(draw, cols)) for _ in range(draw(st.integers(1, 3)))]
        radius = draw(st.floats(0.5, 2.5))
        return kind, value, lambda lab: operations.brush_stroke(lab, plane, index, points, radius, value,
                                                                overwrite=overwrite)
    if kind == "flood":
        row, col = _pixel(draw, shape, plane)
        return kind, value, lambda lab: operations.flood_fill(lab, plane, index, row, col, value)
    if kind == "erase":
        r, c = (0, rows), (0, cols)
        return kind, None, lambda lab: operations.paint_box(lab, plane, index, r, c, 0, only_label=only)
    if kind == "delete":
        row, col = _pixel(draw, shape, plane)
        conn, in_slice = draw(st.sampled_from([6, 26])), draw(st.booleans())
        return kind, None, lambda lab: operations.delete_component(lab, plane, index, row, col,
                                                                   connectivity=conn, in_slice=in_slice)
    pick = draw(st.integers(0, 7))

    def existing(lab):
        """A label present in the map when the step runs (the same one in the int64 copy), else 1."""
        present = np.unique(lab)
        present = present[present > 0]
        return int(present[pick % present.size]) if present.size else 1

    if kind == "fill_holes":
        where = draw(st.sampled_from(["3d", "plane", "slice"]))
        p, i = (None, None) if where == "3d" else (plane, None if where == "plane" else index)
        return kind, None, lambda lab: operations.fill_holes(lab, existing(lab), p, i)
    if kind == "islands":
        size = draw(st.integers(1, 6))
        return kind, None, lambda lab: operations.remove_islands(lab, existing(lab), size)
    if kind in ("grow", "shrink"):
        fn = operations.grow if kind == "grow" else operations.shrink
        steps = draw(st.integers(0, 2))
        return kind, None, lambda lab: fn(lab, existing(lab), steps)
    if kind == "copy":
        source = draw(st.integers(0, n_slices(shape, plane) - 1))
        return kind, None, lambda lab: operations.copy_from_neighbour(lab, plane, index, source)
    if kind == "interpolate":
        other = draw(st.integers(0, n_slices(shape, plane) - 1))

        def interpolate(lab):
            value = existing(lab)
            axis = PLANE_AXIS[plane]
            drawn = np.flatnonzero((lab == value).any(axis=tuple(a for a in range(3) if a != axis)))
            a, b = (int(drawn[0]), int(drawn[-1])) if drawn.size else (index, other)  # outermost drawn slices
            return operations.interpolate_slices(lab, plane, a, b, value, overwrite=overwrite)

        return kind, None, interpolate
    voxel = tuple(draw(st.integers(0, n - 1)) for n in shape)

    def put(arr):
        arr[voxel] = value

    return kind, value, lambda lab: apply_edit(lab, put, description=f"Set a voxel to {value}")


@st.composite
def scenarios(draw):
    data, labels = draw(label_maps())
    steps = draw(st.lists(operation(labels.shape), min_size=2, max_size=10))
    return data, labels, steps


# --------------------------------------------------------------------------- helpers


def run_step(labels, value, fn):
    """Apply one step to the editor's map (widening when needed) -> (map to use, edit or None)."""
    try:
        if value is None:
            return labels, fn(labels)
        return apply_widening(labels, value, fn)
    except SegLoopError as exc:  # interpolation of a label missing on one slice: nothing changed
        assert "not drawn" in str(exc)
        return labels, None


def assert_same(a, b):
    """Same values AND same dtype."""
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    assert np.array_equal(a, b)


# --------------------------------------------------------------------------- property tests


@SETTINGS
@given(scenarios())
def test_random_edits_undo_and_redo_exactly(scenario):
    data, labels, steps = scenario
    # loading never changes a value: int16/int32 become uint8/uint16 with the same numbers
    assert labels.dtype == (np.uint8 if data.max() < 256 else np.uint16)
    assert np.array_equal(labels.astype(np.int64), data.astype(np.int64))

    original = labels.copy()
    reference = data.astype(np.int64)  # int64 cannot wrap: what the values must be
    history = EditHistory()
    states = [labels.copy()]
    for _kind, value, fn in steps:
        labels, edit = run_step(labels, value, fn)
        ref_before = reference.copy()
        _, ref_edit = run_step(reference, value, fn)
        assert np.array_equal(labels.astype(np.int64), reference), "a label value was wrapped or lost"
        assert labels.dtype in (np.uint8, np.uint16)
        if edit is None or edit.is_empty:
            assert np.array_equal(reference, ref_before)
            continue
        # the edit stores only changed voxels, in the map's own dtype
        assert edit.old.dtype == labels.dtype and edit.new.dtype == labels.dtype
        assert len(edit) == len(ref_edit) == int(np.count_nonzero(reference != ref_before))
        assert (edit.widened_from is not None) == (labels.dtype != states[-1].dtype)
        assert history.push(edit)
        states.append(labels.copy())

    final = labels.copy()
    for expected in reversed(states[:-1]):  # every intermediate state comes back, dtype included
        labels, edit = history.undo_labels(labels)
        assert edit is not None
        assert_same(labels, expected)
    assert history.undo_labels(labels)[1] is None
    assert_same(labels, original)

    for expected in states[1:]:
        labels, edit = history.redo_labels(labels)
        assert edit is not None
        assert_same(labels, expected)
    assert history.redo_labels(labels)[1] is None
    assert_same(labels, final)


@SETTINGS
@given(scenarios())
def test_in_place_undo_redo_keep_values_exactly(scenario):
    """`undo`/`redo` work in place: values exact, a widened map simply stays uint16."""
    _, labels, steps = scenario
    original = labels.copy()
    history = EditHistory()
    for _kind, value, fn in steps:
        labels, edit = run_step(labels, value, fn)
        if edit is not None:
            history.push(edit)
    final = labels.copy()
    while history.undo(labels) is not None:
        pass
    assert np.array_equal(labels.astype(np.int64), original.astype(np.int64))
    while history.redo(labels) is not None:
        pass
    assert_same(labels, final)


@settings(max_examples=25, deadline=None, database=None)
@given(label_maps())
def test_saved_bytes_reload_to_the_same_values(maps):
    """`label_nifti_bytes` (the download) holds the values exactly, in the smallest type that holds them."""
    data, labels = maps
    ref = volume_from_array(np.zeros(labels.shape, np.float32), np.diag([-1.0, -1.0, 2.0, 1.0]), name="ref")
    img = nib.Nifti1Image.from_bytes(gzip.decompress(label_nifti_bytes(labels, ref)))
    stored = np.asanyarray(img.dataobj)
    assert stored.dtype == (np.uint8 if data.max() < 256 else np.uint16)
    assert np.array_equal(stored, ref.to_source(labels))


# --------------------------------------------------------------------------- widening


def test_painting_a_label_above_255_widens_a_uint8_map_and_undo_narrows_it():
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[0, 0, 0] = 7
    history = EditHistory()
    wide, edit = apply_widening(labels, 1002, operations.paint_box, "axial", 2, (0, 1), (0, 1), 1002)
    assert wide.dtype == np.uint16 and str(edit.widened_from) == "uint8"
    assert int((wide == 1002).sum()) == 4 and wide[0, 0, 0] == 7
    assert labels.max() == 7  # the caller's uint8 map is left alone
    history.push(edit)
    wide, _ = history.undo_labels(wide)
    assert_same(wide, labels)
    wide, _ = history.redo_labels(wide)
    assert wide.dtype == np.uint16 and int((wide == 1002).sum()) == 4
    # in-place redo cannot widen a uint8 map: refused, nothing lost from the stacks
    narrow, _ = history.undo_labels(wide)
    with pytest.raises(ValueError, match="redo_labels"):
        history.redo(narrow)
    assert history.can_redo and narrow.max() == 7


def test_widening_is_skipped_when_nothing_changes():
    labels = np.zeros((3, 3, 3), np.uint8)
    out, edit = apply_widening(labels, 300, operations.paint_box, "axial", 0, (5, 6), (5, 6), 300)  # off-slice box
    assert out is labels and edit.is_empty and edit.widened_from is None


def test_operations_refuse_a_label_that_does_not_fit_instead_of_wrapping():
    labels = np.zeros((3, 4, 5), np.uint8)
    with pytest.raises(LabelValueError, match="label 300 does not fit this uint8 label map") as info:
        operations.paint_box(labels, "axial", 1, (0, 1), (0, 2), 300)
    assert isinstance(info.value, SegLoopError) and isinstance(info.value, ValueError)
    assert not labels.any()
    assert widen_for(labels, 255) is labels
    assert widen_for(np.zeros(3, np.uint16), 2017).dtype == np.uint16


def test_selection_widens_and_hands_back_the_new_map():
    labels = np.zeros((4, 5, 6), np.uint8)
    selection = {"box": [{"x": [0.0, 1.0], "y": [0.0, 1.0]}]}
    applied = apply_selection(labels, "axial", 2, selection, "box", 2017, (1.0, 1.0, 1.0))
    assert applied.labels is not None and applied.labels.dtype == np.uint16
    assert int((applied.labels == 2017).sum()) == 4 and not labels.any()
    applied = apply_selection(labels, "axial", 2, selection, "box", 3, (1.0, 1.0, 1.0))
    assert applied.labels is None and int((labels == 3).sum()) == 4


def test_edit_never_writes_values_its_map_cannot_hold():
    wide = np.zeros((2, 2, 2), np.uint16)
    edit = operations.paint_box(wide, "axial", 0, (0, 1), (0, 1), 1002)
    with pytest.raises(ValueError, match="do not fit a uint8"):
        edit.redo(np.zeros((2, 2, 2), np.uint8))


# --------------------------------------------------------------------------- save and reload


def _reference(tmp_path, shape=(6, 5, 4)):
    """A NIfTI scan on an LPS grid with anisotropic voxels and an offset, loaded as SegLoop does."""
    affine = np.array([[-0.9, 0.0, 0.0, 40.0], [0.0, -1.1, 0.0, 25.0], [0.0, 0.0, 2.5, -30.0], [0, 0, 0, 1]])
    image = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), str(path))
    ref = load_scan(path)
    assert ref.source_orientation == "LPS"
    return ref


@pytest.mark.parametrize("dtype,values", [
    (np.uint16, (1002, 2017)),
    (np.uint8, (1, 2)),
    (np.int32, (1002, 2017)),
])
def test_save_and_reload_round_trip_keeps_every_value(tmp_path, dtype, values):
    ref = _reference(tmp_path)
    labels = np.zeros(ref.shape, dtype)
    labels[1:3, 1:4, 0:2] = values[0]
    labels[3:, 2:, 2:] = values[1]
    labels[0, 0, 3] = values[1]  # a lone corner voxel: catches a flipped axis
    path = save_label(labels, ref, tmp_path / "seg.nii.gz")
    stored = nib.load(str(path))
    expected_dtype = np.uint8 if max(values) <= 255 else np.uint16
    assert stored.get_data_dtype() == expected_dtype
    assert np.array_equal(np.asanyarray(stored.dataobj), ref.to_source(labels))  # the scan's original grid
    assert np.allclose(stored.affine, ref.source_affine)
    back = load_label(path, reference=ref)
    assert back.array.dtype == expected_dtype
    assert np.array_equal(back.array.astype(np.int64), labels.astype(np.int64))
    assert set(np.unique(back.array).tolist()) == {0, *values}


def test_edited_uint16_map_round_trips_through_undo_redo_and_save(tmp_path):
    ref = _reference(tmp_path)
    labels = np.zeros(ref.shape, np.uint16)
    labels[1:4, 1:4, 1:3] = 1002
    labels[4:, :, :] = 2017
    original = labels.copy()
    history = EditHistory()
    history.push(operations.paint_box(labels, "axial", 1, (0, 2), (0, 2), 17))
    history.push(operations.grow(labels, 1002, 1))
    history.push(operations.delete_component(labels, "sagittal", 5, 0, 0))
    edited = labels.copy()
    assert history.undo(labels) and history.undo(labels) and history.undo(labels)
    assert_same(labels, original)
    assert history.redo(labels) and history.redo(labels) and history.redo(labels)
    assert_same(labels, edited)
    back = load_label(save_label(labels, ref, tmp_path / "edited.nii.gz"), reference=ref).array
    assert_same(back, edited)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("data,pattern", [
    (np.array([[[0, -3]], [[1, 2]]], np.int16), r"bad\.nii\.gz: label map holds negative values \(e\.g\. -3\)"),
    (np.array([[[0, 70000]], [[1, 2]]], np.int32), r"bad\.nii\.gz: label value 70000 is out of range"),
    (np.array([[[0.0, 1.5]], [[1.0, 2.0]]], np.float32), r"bad\.nii\.gz: label map holds non-integer values \(e\.g\. 1\.5\)"),
])
def test_labels_the_editor_cannot_hold_are_refused_with_the_value(tmp_path, data, pattern):
    with pytest.raises(ScanError, match=pattern):
        labels_from_array(data, "bad.nii.gz")
    ref = volume_from_array(np.zeros((2, 2, 2), np.float32), np.eye(4))
    path = tmp_path / "bad.nii.gz"
    big = np.zeros((2, 2, 2), data.dtype)
    big.flat[: data.size] = data.ravel()
    nib.save(nib.Nifti1Image(big, np.eye(4)), str(path))
    with pytest.raises(SegLoopError, match=pattern):
        load_label(path, reference=ref)
    with pytest.raises(SegLoopError, match=pattern.replace(r"bad\.nii\.gz", "labels")):
        save_label(data, volume_from_array(np.zeros(data.shape, np.float32), np.eye(4), name="labels"),
                   tmp_path / "out.nii.gz")


@pytest.mark.parametrize("value,pattern", [
    (-1, "label value -1 is outside 0..65535"),
    (70000, "label value 70000 is outside 0..65535"),
    (1.5, "label value 1.5 is not a whole number"),
    ("2", "label value '2' is not a number"),
])
def test_painting_a_value_the_editor_cannot_hold_is_refused(value, pattern):
    labels = np.zeros((3, 4, 5), np.uint16)
    for call in (lambda: operations.paint_box(labels, "axial", 1, (0, 1), (0, 1), value),
                 lambda: apply_widening(labels, value, operations.paint_box, "axial", 1, (0, 1), (0, 1), value),
                 lambda: check_label_value(value)):
        with pytest.raises(SegLoopError, match=pattern):
            call()
    assert not labels.any()


# --------------------------------------------------------------------------- the app's editor


@pytest.fixture
def editor(monkeypatch):
    """components.editor on a plain dict as session state (no Streamlit run needed)."""
    state: dict = {}
    monkeypatch.setattr(streamlit, "session_state", state)
    from components import editor, session

    vol = volume_from_array(np.zeros((4, 5, 6), np.float32), np.eye(4), name="case")
    session.set_current(vol, None, content_id(vol), "case", "upload")
    return editor, session, state


def test_editor_keeps_uint16_labels_when_a_version_is_opened(editor):
    editor, session, _ = editor
    labels = np.zeros((4, 5, 6), np.uint16)
    labels[0, 0, 0], labels[1, 1, 1] = 1002, 2017
    editor.start_from(labels, None)  # used to be cast to uint8: 1002 -> 234
    assert_same(session.current_labels(), labels)
    signed = labels.astype(np.int32)
    editor.start_from(signed, None)
    assert_same(session.current_labels(), labels)
    editor.start_from(np.ones((4, 5, 6), np.uint8), None)
    assert session.current_labels().dtype == np.uint8


def test_editor_widens_for_a_selection_and_undo_redo_swap_the_array(editor):
    editor, session, state = editor
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[3, 4, 5] = 9
    editor.start_from(labels, None)
    editor.apply_view_edit({"tool": "box", "plane": "axial", "index": 2, "value": 2017,
                            "selection": {"box": [{"x": [0.0, 1.0], "y": [0.0, 1.0]}]}})
    wide = session.current_labels().copy()
    assert wide.dtype == np.uint16 and int((wide == 2017).sum()) == 4 and wide[3, 4, 5] == 9
    assert "uint16" in editor.message()
    assert editor.unsaved_voxels() == 4
    editor.undo()
    assert_same(session.current_labels(), labels)
    assert editor.unsaved_voxels() == 0
    editor.redo()
    assert_same(session.current_labels(), wide)
    # the widened map is the one every later edit works on
    editor._run(operations.grow, 2017, 1)
    assert int((session.current_labels() == 2017).sum()) > 4
    assert session.current_labels().dtype == np.uint16


def test_editor_reset_to_model_output_keeps_the_users_uint16_map(editor):
    editor, session, _ = editor
    labels = np.zeros((4, 5, 6), np.uint16)
    labels[0] = 1002
    editor.start_from(labels, None)

    class Pred:
        labels = np.ones((4, 5, 6), np.uint8)
        version_id = None

    editor.reset_to_prediction(Pred)
    assert session.current_labels().dtype == np.uint16 and (session.current_labels() == 1).all()
    editor.undo()
    assert_same(session.current_labels(), labels)
