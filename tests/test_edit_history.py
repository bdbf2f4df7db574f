"""Undo/redo of label edits: exact arrays restored, redo cleared, memory bound, empty edits skipped."""

import numpy as np
import pytest

from segloop.editing import operations
from segloop.editing.history import Edit, EditHistory, apply_edit

SHAPE = (5, 6, 7)


def make_edits(labels, history):
    """Run a mixed sequence of operations, pushing each; returns the array after each step."""
    states = [labels.copy()]
    ops = [
        lambda: operations.paint_box(labels, "axial", 3, (0, 3), (1, 4), 1),
        lambda: operations.paint_box(labels, "axial", 3, (1, 1), (2, 2), 0),  # punch a hole
        lambda: operations.brush_stroke(labels, "coronal", 2, [(1, 1), (5, 3)], 1.5, 2),
        lambda: operations.fill_holes(labels, 1, "axial"),
        lambda: operations.grow(labels, 1),
        lambda: operations.paint_box(labels, "sagittal", 2, (0, 6), (0, 5), 0, only_label=2),
        lambda: operations.copy_from_neighbour(labels, "axial", 0, 3),
    ]
    for op in ops:
        edit = op()
        assert not edit.is_empty
        assert history.push(edit)
        states.append(labels.copy())
    return states


def test_undo_redo_sequence_restores_exact_arrays():
    labels = np.zeros(SHAPE, np.uint8)
    labels[4, 5, 6] = 3
    history = EditHistory()
    states = make_edits(labels, history)
    assert len(history) == 7 and history.can_undo and not history.can_redo
    for expected in reversed(states[:-1]):
        edit = history.undo(labels)
        assert isinstance(edit, Edit)
        assert np.array_equal(labels, expected)
    assert not history.can_undo and history.undo(labels) is None
    assert np.array_equal(labels, states[0])
    for expected in states[1:]:
        assert history.redo(labels) is not None
        assert np.array_equal(labels, expected)
    assert history.redo(labels) is None
    # undo twice, redo once: the state two steps back then one forward
    history.undo(labels)
    history.undo(labels)
    assert np.array_equal(labels, states[-3])
    history.redo(labels)
    assert np.array_equal(labels, states[-2])


def test_new_edit_clears_redo():
    labels = np.zeros(SHAPE, np.uint8)
    history = EditHistory()
    first = operations.paint_box(labels, "axial", 1, (0, 1), (0, 1), 1)
    history.push(first)
    history.push(operations.paint_box(labels, "axial", 2, (0, 1), (0, 1), 1))
    history.undo(labels)
    assert history.can_redo and history.redo_descriptions == ["Box fill label 1 on axial 2"]
    last = operations.paint_box(labels, "coronal", 0, (0, 1), (0, 1), 2)
    history.push(last)
    assert not history.can_redo and history.redo(labels) is None
    assert history.descriptions == ["Box fill label 1 on axial 1", "Box fill label 2 on coronal 0"]
    assert history.bytes_used == first.nbytes + last.nbytes


def test_empty_edit_is_not_recorded():
    labels = np.zeros(SHAPE, np.uint8)
    history = EditHistory()
    history.push(operations.paint_box(labels, "axial", 1, (0, 1), (0, 1), 1))
    history.undo(labels)
    edit = operations.paint_box(labels, "axial", 1, (0, 1), (0, 1), 0)  # erasing background: no change
    assert edit.is_empty and len(edit) == 0
    assert history.push(edit) is False
    assert not history.can_undo
    assert history.can_redo  # an empty edit does not throw away the redo stack


def test_memory_bound_drops_oldest():
    labels = np.zeros(SHAPE, np.uint8)
    one = operations.paint_box(labels, "axial", 0, (0, 0), (0, 3), 1)  # 4 voxels
    size = one.nbytes
    assert size == 4 * (4 + 1 + 1)
    history = EditHistory(max_bytes=2 * size)
    history.push(one)
    history.push(operations.paint_box(labels, "axial", 1, (0, 0), (0, 3), 1))
    history.push(operations.paint_box(labels, "axial", 2, (0, 0), (0, 3), 1))
    assert history.bytes_used == 2 * size <= history.max_bytes
    assert history.descriptions == ["Box fill label 1 on axial 1", "Box fill label 1 on axial 2"]
    assert history.dropped == 1
    history.undo(labels)
    history.undo(labels)
    assert history.undo(labels) is None
    expected = np.zeros(SHAPE, np.uint8)
    expected[1:5, 5, 0] = 1  # the dropped first edit cannot be undone
    assert np.array_equal(labels, expected)
    # an edit bigger than the whole budget is not kept
    big = operations.paint_box(labels, "axial", 3, (0, 5), (0, 4), 1)
    assert history.push(big) is False and not history.can_undo and not history.can_redo
    assert history.bytes_used == 0


def test_apply_edit_records_arbitrary_changes():
    labels = np.zeros(SHAPE, np.uint8)
    prediction = np.zeros(SHAPE, np.uint8)
    prediction[1:3, 2:4, 3] = 2

    def accept(arr, new):
        arr[...] = new

    history = EditHistory()
    edit = apply_edit(labels, accept, prediction, description="Accept prediction")
    assert len(edit) == 4 and edit.description == "Accept prediction"
    assert history.push(edit)
    history.undo(labels)
    assert not labels.any()
    history.redo(labels)
    assert np.array_equal(labels, prediction)


def test_edit_refuses_a_different_shape():
    labels = np.zeros(SHAPE, np.uint8)
    edit = operations.paint_box(labels, "axial", 0, (0, 1), (0, 1), 1)
    with pytest.raises(ValueError):
        edit.undo(np.zeros((7, 6, 5), np.uint8))
