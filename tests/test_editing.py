"""Label editing operations: exact voxels changed, in all three planes, on small asymmetric volumes.

Expected voxels are computed here with explicit screen->voxel formulas (radiological display:
axial/coronal columns run from the patient's right, rows from anterior/superior), not with the
functions under test.
"""

import math

import numpy as np
import pytest

from segloop.editing import operations
from segloop.errors import SegLoopError

SHAPE = (5, 6, 7)  # X, Y, Z: all different so a swapped axis cannot pass
PLANES = ("axial", "coronal", "sagittal")


def screen_shape(plane, shape=SHAPE):
    x, y, z = shape
    return {"axial": (y, x), "coronal": (z, x), "sagittal": (z, y)}[plane]


def to_voxel(plane, k, r, c, shape=SHAPE):
    """Screen pixel (r, c) of slice k -> RAS voxel, written out per plane."""
    x, y, z = shape
    if plane == "axial":  # rows: anterior (high j) at top; cols: right (high i) at left
        return (x - 1 - c, y - 1 - r, k)
    if plane == "coronal":  # rows: superior (high k) at top
        return (x - 1 - c, k, z - 1 - r)
    return (k, y - 1 - c, z - 1 - r)  # sagittal: anterior at left


def to_screen(plane, voxel, shape=SHAPE):
    """RAS voxel -> (slice, row, col), the inverse of to_voxel."""
    x, y, z = shape
    i, j, k = voxel
    if plane == "axial":
        return k, y - 1 - j, x - 1 - i
    if plane == "coronal":
        return j, z - 1 - k, x - 1 - i
    return i, z - 1 - k, y - 1 - j


def n_slices(plane, shape=SHAPE):
    return shape[{"sagittal": 0, "coronal": 1, "axial": 2}[plane]]


def expected_after(before, plane, k, pixels, value, shape=SHAPE):
    out = before.copy()
    for r, c in pixels:
        out[to_voxel(plane, k, r, c, shape)] = value
    return out


def changed_set(a, b):
    return {tuple(int(v) for v in p) for p in np.argwhere(a != b)}


def check_edit(edit, before, after):
    """The Edit holds exactly the changed voxels with the right old/new values."""
    flat = np.flatnonzero(before != after)
    order = np.argsort(edit.indices)
    assert np.array_equal(np.sort(edit.indices), flat)
    assert np.array_equal(edit.old[order], before.reshape(-1)[flat])
    assert np.array_equal(edit.new[order], after.reshape(-1)[flat])
    assert edit.old.dtype == np.uint8 and edit.new.dtype == np.uint8


def zeros(shape=SHAPE):
    return np.zeros(shape, np.uint8)


# --------------------------------------------------------------------------- box


@pytest.mark.parametrize("plane", PLANES)
def test_box_changes_exactly_the_pixels_whose_centre_is_inside(plane):
    labels = zeros()
    k = n_slices(plane) - 2
    before = labels.copy()
    # rows 0.6..2.4 -> centres 1, 2; cols -0.3..1.5 -> centres 0, 1 (reversed order is fine)
    edit = operations.paint_box(labels, plane, k, (2.4, 0.6), (-0.3, 1.5), 3)
    exp = expected_after(before, plane, k, [(r, c) for r in (1, 2) for c in (0, 1)], 3)
    assert np.array_equal(labels, exp)
    assert len(edit) == 4
    check_edit(edit, before, labels)
    assert edit.description == f"Box fill label 3 on {plane} {k}"


@pytest.mark.parametrize("plane", PLANES)
def test_box_inclusive_edges_and_clipping(plane):
    labels = zeros()
    rows, cols = screen_shape(plane)
    before = labels.copy()
    operations.paint_box(labels, plane, 0, (1.0, 2.0), (3.0, 100.0), 1)
    pixels = [(r, c) for r in (1, 2) for c in range(3, cols)]
    assert np.array_equal(labels, expected_after(before, plane, 0, pixels, 1))
    # a box entirely outside the slice changes nothing
    edit = operations.paint_box(labels, plane, 0, (-5, -1), (0, 3), 1)
    assert edit.is_empty


@pytest.mark.parametrize("plane", PLANES)
def test_erase_only_this_label(plane):
    labels = zeros()
    k = 1
    for c in range(3):
        labels[to_voxel(plane, k, 0, c)] = 1
        labels[to_voxel(plane, k, 1, c)] = 2
    labels[to_voxel(plane, k + 1, 1, 1)] = 2  # another slice: untouched
    before = labels.copy()
    edit = operations.paint_box(labels, plane, k, (0, 5), (0, 5), 0, only_label=2)
    exp = before.copy()
    for c in range(3):
        exp[to_voxel(plane, k, 1, c)] = 0
    assert np.array_equal(labels, exp)
    assert edit.description == f"Erase box on {plane} {k}"
    check_edit(edit, before, labels)
    # plain erase clears everything in the box
    operations.paint_box(labels, plane, k, (0, 5), (0, 5), 0)
    assert changed_set(labels, zeros()) == {to_voxel(plane, k + 1, 1, 1)}


@pytest.mark.parametrize("plane", PLANES)
def test_paint_without_overwriting_other_labels(plane):
    labels = zeros()
    labels[to_voxel(plane, 2, 1, 1)] = 2
    before = labels.copy()
    operations.paint_box(labels, plane, 2, (0, 2), (0, 2), 1, overwrite=False)
    pixels = [(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)]
    assert np.array_equal(labels, expected_after(before, plane, 2, pixels, 1))
    # default overwrites
    operations.paint_box(labels, plane, 2, (0, 2), (0, 2), 1)
    assert labels[to_voxel(plane, 2, 1, 1)] == 1


# --------------------------------------------------------------------------- lasso, mask, brush


@pytest.mark.parametrize("plane", PLANES)
def test_lasso_triangle_exact_pixels(plane):
    labels = zeros()
    rows, cols = screen_shape(plane)
    k = 1
    before = labels.copy()
    # right triangle with legs along the top and left edges; hypotenuse passes through no pixel centre
    edit = operations.paint_polygon(labels, plane, k, [-0.5, -0.5, 3.3], [-0.5, 6.3, -0.5], 2)
    pixels = [(r, c) for r in range(rows) for c in range(cols) if (r + 0.5) / 3.8 + (c + 0.5) / 6.8 < 1]
    assert len(pixels) >= 10
    assert np.array_equal(labels, expected_after(before, plane, k, pixels, 2))
    assert edit.description == f"Lasso fill label 2 on {plane} {k}"


@pytest.mark.parametrize("plane", PLANES)
def test_lasso_includes_pixels_on_the_outline(plane):
    labels = zeros()
    operations.paint_polygon(labels, plane, 0, [0, 0, 4], [0, 4, 0], 1)
    pixels = [(r, c) for r in range(5) for c in range(5) if r + c <= 4]
    assert np.array_equal(labels, expected_after(zeros(), plane, 0, pixels, 1))


@pytest.mark.parametrize("plane", PLANES)
def test_paint_mask(plane):
    labels = zeros()
    rows, cols = screen_shape(plane)
    mask = np.zeros((rows, cols), bool)
    mask[0, cols - 1] = mask[rows - 1, 0] = True
    operations.paint_mask(labels, plane, 3, mask, 4)
    exp = expected_after(zeros(), plane, 3, [(0, cols - 1), (rows - 1, 0)], 4)
    assert np.array_equal(labels, exp)
    with pytest.raises(ValueError):
        operations.paint_mask(labels, plane, 3, np.ones((rows + 1, cols), bool), 1)


@pytest.mark.parametrize("plane", PLANES)
def test_brush_disc_radius(plane):
    labels = zeros()
    rows, cols = screen_shape(plane)
    operations.brush_stroke(labels, plane, 2, [(3, 2)], 2.5, 1)
    pixels = [(r, c) for r in range(rows) for c in range(cols) if (r - 3) ** 2 + (c - 2) ** 2 < 2.5**2]
    assert len(pixels) == 21  # 5x5 square without its 4 corners
    assert np.array_equal(labels, expected_after(zeros(), plane, 2, pixels, 1))


@pytest.mark.parametrize("plane", PLANES)
def test_brush_stroke_covers_the_capsule_along_the_line(plane):
    labels = zeros()
    rows, cols = screen_shape(plane)
    operations.brush_stroke(labels, plane, 0, [(3, 0), (3, 3)], 1.5, 2)

    def dist(r, c):  # distance from pixel centre to the segment (3,0)-(3,3)
        cc = min(max(c, 0), 3)
        return math.hypot(r - 3, c - cc)

    pixels = [(r, c) for r in range(rows) for c in range(cols) if dist(r, c) < 1.5]
    assert np.array_equal(labels, expected_after(zeros(), plane, 0, pixels, 2))
    # erasing with a smaller brush clears only the centre line
    operations.brush_stroke(labels, plane, 0, [(3, 0), (3, 3)], 0.5, 0)
    left = [p for p in pixels if p[0] != 3 or p[1] > 3]
    assert np.array_equal(labels, expected_after(zeros(), plane, 0, left, 2))


# --------------------------------------------------------------------------- flood fill


@pytest.mark.parametrize("plane", PLANES)
def test_flood_fill_stops_at_boundaries(plane):
    labels = zeros()
    rows, cols = screen_shape(plane)
    k = 1
    ring = [(r, c) for r in range(4) for c in range(4) if r in (0, 3) or c in (0, 3)]
    for r, c in ring:
        labels[to_voxel(plane, k, r, c)] = 1
    labels[to_voxel(plane, k + 1, 1, 1)] = 0  # same pixel on another slice stays background
    before = labels.copy()
    inside = [(1, 1), (1, 2), (2, 1), (2, 2)]
    edit = operations.flood_fill(labels, plane, k, 1, 2, 2)
    assert np.array_equal(labels, expected_after(before, plane, k, inside, 2))
    assert edit.description == f"Flood fill label 2 on {plane} {k}"
    # filling the outside background does not leak into the ring or the inside
    before = labels.copy()
    operations.flood_fill(labels, plane, k, rows - 1, cols - 1, 3)
    outside = [(r, c) for r in range(rows) for c in range(cols) if not (r < 4 and c < 4)]
    assert np.array_equal(labels, expected_after(before, plane, k, outside, 3))
    # filling the ring recolours only the ring
    before = labels.copy()
    operations.flood_fill(labels, plane, k, 0, 0, 5)
    assert np.array_equal(labels, expected_after(before, plane, k, ring, 5))


@pytest.mark.parametrize("plane", PLANES)
def test_flood_fill_is_4_connected(plane):
    labels = zeros()
    k = 0
    # a diagonal wall of label 1 separates the top-left corner pixel (0,0)... wall at (0,1),(1,0)
    labels[to_voxel(plane, k, 0, 1)] = 1
    labels[to_voxel(plane, k, 1, 0)] = 1
    before = labels.copy()
    edit = operations.flood_fill(labels, plane, k, 0, 0, 2)
    assert np.array_equal(labels, expected_after(before, plane, k, [(0, 0)], 2))
    assert len(edit) == 1


# --------------------------------------------------------------------------- components


@pytest.mark.parametrize("plane", PLANES)
def test_delete_component_3d_leaves_other_components(plane):
    labels = zeros()
    labels[0:2, 0:2, 0:2] = 1  # component A
    labels[3:5, 4:6, 5:7] = 1  # component B
    labels[2, 0:2, 0:2] = 2  # other label touching A
    before = labels.copy()
    k, r, c = to_screen(plane, (1, 1, 0))
    edit = operations.delete_component(labels, plane, k, r, c)
    exp = before.copy()
    exp[0:2, 0:2, 0:2] = 0
    assert np.array_equal(labels, exp)
    check_edit(edit, before, labels)
    assert edit.description == "Delete component of label 1 in 3D"
    # clicking background changes nothing
    k, r, c = to_screen(plane, (0, 5, 0))
    assert operations.delete_component(labels, plane, k, r, c).is_empty


@pytest.mark.parametrize("plane", PLANES)
def test_delete_component_connectivity(plane):
    labels = zeros()
    labels[1, 1, 1] = 1
    labels[2, 2, 2] = 1  # touches (1,1,1) only by a corner
    k, r, c = to_screen(plane, (1, 1, 1))
    work = labels.copy()
    operations.delete_component(work, plane, k, r, c, connectivity=6)
    assert changed_set(work, zeros()) == {(2, 2, 2)}
    work = labels.copy()
    operations.delete_component(work, plane, k, r, c, connectivity=26)
    assert not work.any()


@pytest.mark.parametrize("plane", PLANES)
def test_delete_component_in_slice_only(plane):
    labels = zeros()
    labels[1:3, 1:3, 1:3] = 1  # a cube spanning two slices of every plane
    k, r, c = to_screen(plane, (1, 1, 1))
    edit = operations.delete_component(labels, plane, k, r, c, in_slice=True)
    axis = {"sagittal": 0, "coronal": 1, "axial": 2}[plane]
    exp = zeros()
    exp[1:3, 1:3, 1:3] = 1
    idx = [slice(None)] * 3
    idx[axis] = k
    exp[tuple(idx)] = 0
    assert np.array_equal(labels, exp)
    assert len(edit) == 4
    assert edit.description == f"Delete component of label 1 on {plane} {k}"


def test_fill_holes_3d_keeps_other_labels():
    labels = zeros()
    labels[0:5, 0:5, 0:5] = 1
    labels[1:4, 1:4, 1:4] = 0  # 27-voxel cavity
    labels[2, 2, 2] = 2
    labels[0, 5, 6] = 0
    before = labels.copy()
    edit = operations.fill_holes(labels, 1)
    exp = before.copy()
    exp[1:4, 1:4, 1:4] = 1
    exp[2, 2, 2] = 2
    assert np.array_equal(labels, exp)
    assert len(edit) == 26


@pytest.mark.parametrize("plane", PLANES)
def test_fill_holes_2d_on_one_slice_and_every_slice(plane):
    labels = zeros()
    ring = [(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)]
    for k in (1, 3):
        for r, c in ring:
            labels[to_voxel(plane, k, r, c)] = 1
    before = labels.copy()
    # rings open along the slice axis: not a 3D hole
    assert operations.fill_holes(labels, 1).is_empty
    edit = operations.fill_holes(labels, 1, plane, 1)
    assert np.array_equal(labels, expected_after(before, plane, 1, [(1, 1)], 1))
    assert len(edit) == 1
    edit = operations.fill_holes(labels, 1, plane)
    assert changed_set(labels, before) == {to_voxel(plane, 1, 1, 1), to_voxel(plane, 3, 1, 1)}
    assert len(edit) == 1


def test_remove_islands_threshold():
    labels = zeros()
    labels[0, 0, 0] = 1  # size 1
    labels[4, 0, 0:3] = 1  # size 3
    labels[0:1, 3:6, 3:5] = 1  # size 6
    labels[4, 5, 6] = 2  # other label, size 1
    before = labels.copy()
    edit = operations.remove_islands(labels, 1, 3)  # strictly smaller than 3 goes
    assert changed_set(labels, before) == {(0, 0, 0)}
    edit = operations.remove_islands(labels, 1, 4)
    assert changed_set(labels, before) == {(0, 0, 0), (4, 0, 0), (4, 0, 1), (4, 0, 2)}
    assert len(edit) == 3
    assert labels[4, 5, 6] == 2 and int((labels == 1).sum()) == 6


def test_grow_counts_and_does_not_overwrite():
    labels = zeros()
    labels[2, 3, 3] = 1
    edit = operations.grow(labels, 1)
    assert int((labels == 1).sum()) == 7 and len(edit) == 6
    assert labels[3, 3, 3] == 1 and labels[3, 4, 3] == 0  # faces only
    labels[:] = 0
    labels[2, 3, 3] = 1
    operations.grow(labels, 1, voxels=2)
    assert int((labels == 1).sum()) == 25  # 1 + 6 + 18
    labels[:] = 0
    labels[2, 3, 3] = 1
    labels[1, 3, 3] = 2
    operations.grow(labels, 1)
    assert labels[1, 3, 3] == 2 and int((labels == 1).sum()) == 6


def test_shrink_counts():
    labels = zeros()
    labels[1:4, 1:4, 2:5] = 1
    labels[0, 0, 0] = 2
    edit = operations.shrink(labels, 1)
    exp = zeros()
    exp[2, 2, 3] = 1
    exp[0, 0, 0] = 2
    assert np.array_equal(labels, exp)
    assert len(edit) == 26
    # a slab at the volume's edge also shrinks there (outside counts as background)
    labels = zeros()
    labels[0:3, :, :] = 1
    operations.shrink(labels, 1)
    exp = zeros()
    exp[1, 1:5, 1:6] = 1
    assert np.array_equal(labels, exp)


# --------------------------------------------------------------------------- slice to slice


@pytest.mark.parametrize("plane", PLANES)
def test_copy_from_neighbour(plane):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, SHAPE).astype(np.uint8)
    before = labels.copy()
    edit = operations.copy_from_neighbour(labels, plane, 2, 3)
    exp = before.copy()
    if plane == "axial":
        exp[:, :, 2] = before[:, :, 3]
    elif plane == "coronal":
        exp[:, 2, :] = before[:, 3, :]
    else:
        exp[2, :, :] = before[3, :, :]
    assert np.array_equal(labels, exp)
    check_edit(edit, before, labels)
    assert edit.description == f"Copy {plane} 3 to {plane} 2"
    with pytest.raises(ValueError):
        operations.copy_from_neighbour(labels, plane, 2, n_slices(plane))


@pytest.mark.parametrize("plane", PLANES)
def test_interpolation_between_circles_gives_intermediate_radius(plane):
    shape = (26, 25, 24)
    labels = np.zeros(shape, np.uint8)
    rows, cols = screen_shape(plane, shape)
    centre = (12, 11)

    def disc_pixels(radius):
        return [(r, c) for r in range(rows) for c in range(cols) if math.hypot(r - centre[0], c - centre[1]) <= radius]

    labels = expected_after(labels, plane, 2, disc_pixels(3), 1, shape)
    labels = expected_after(labels, plane, 10, disc_pixels(9), 1, shape)
    stale = to_voxel(plane, 6, 0, 0, shape)
    labels[stale] = 1  # stale label far outside the interpolated shape: cleared
    other = to_voxel(plane, 6, centre[0], centre[1], shape)
    labels[other] = 2  # another label: not overwritten
    untouched = to_voxel(plane, 11, centre[0], centre[1], shape)
    edit = operations.interpolate_slices(labels, plane, 10, 2, 1)
    assert edit.description == f"Interpolate label 1 between {plane} 2 and 10"
    assert labels[stale] == 0 and labels[other] == 2 and labels[untouched] == 0
    for k in range(3, 10):
        radius = 3 + 6 * (k - 2) / 8
        for r in range(rows):
            for c in range(cols):
                d = math.hypot(r - centre[0], c - centre[1])
                v = labels[to_voxel(plane, k, r, c, shape)]
                if d <= radius - 1 and (r, c) != centre:
                    assert v == 1, (k, r, c)
                elif d >= radius + 1:
                    assert v == 0, (k, r, c)
    areas = [int((np.take(labels, k, axis={"sagittal": 0, "coronal": 1, "axial": 2}[plane]) == 1).sum()) for k in range(2, 11)]
    assert areas == sorted(areas)


def test_interpolation_needs_the_label_on_both_slices():
    labels = zeros()
    labels[1:3, 1:3, 0] = 1
    with pytest.raises(SegLoopError, match="axial slice 4"):
        operations.interpolate_slices(labels, "axial", 0, 4, 1)


def test_edit_is_cheap_on_a_large_volume():
    labels = np.zeros((256, 256, 256), np.uint8)
    edit = operations.paint_box(labels, "coronal", 100, (10, 19), (20, 29), 1)
    assert len(edit) == 100 and edit.indices.dtype == np.int32
    assert edit.nbytes == 100 * (4 + 1 + 1)
    assert labels[255 - 20, 100, 255 - 10] == 1 and int(labels.sum()) == 100


@pytest.mark.parametrize("plane", PLANES)
def test_bad_slice_index_is_rejected(plane):
    with pytest.raises(ValueError):
        operations.paint_box(zeros(), plane, n_slices(plane), (0, 1), (0, 1), 1)


# --------------------------------------------------------------------------- words for people


def test_edits_and_refusals_name_labels_from_structure_not_from_rewritten_text() -> None:
    from segloop.editing.history import EditRefused

    labels = np.zeros((6, 6, 6), np.uint8)
    labels[2:4, 2:4, 2:4] = 2
    names = {1: "anterior", 2: "posterior"}
    edit = operations.grow(labels, 2, 1)
    assert edit.label == 2 and edit.description == "Grow label 2 by 1 voxel"
    assert edit.describe(names) == "Grow posterior by 1 voxel"
    assert edit.describe({2: "{Label} 1"}) == "Grow {Label} 1 by 1 voxel"  # a name is never read as a place
    erase = operations.paint_box(labels, "axial", 3, (0, 2), (0, 2), 0)
    assert erase.describe(names) == "Erase box on axial 3"
    with pytest.raises(EditRefused) as refused:
        operations.interpolate_slices(labels, "axial", 0, 3, 2)
    assert refused.value.label == 2 and str(refused.value).startswith("Label 2 is not drawn on axial slice 0")
    assert refused.value.describe(names).startswith("Posterior is not drawn on axial slice 0")
