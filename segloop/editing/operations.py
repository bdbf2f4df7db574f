"""Label-editing operations on uint8 or uint16 label maps in RAS voxel order (X, Y, Z).

Every operation modifies `labels` in place and returns an `Edit` holding only the voxels it changed
(computed by comparing the touched slice or bounding box, never the whole volume), ready for
`EditHistory.push`.

Screen coordinates: 2D operations work on slice `index` of `plane` in the (row, col) pixel grid that
`segloop.display.planes.slice_view` shows, so an edit drawn on screen lands on exactly the voxels the user
saw (`planes.display_to_voxel`). Pixel (r, c) is the unit square centred on the integer point
(r, c) -- the convention of a Plotly image trace with x0=0, dx=1 -- so Plotly's x is `col` and y is
`row`. A pixel belongs to a box or lasso when its CENTRE is inside (boundary included).

Shared options of the painting operations:
- value: label written; 0 erases.
- only_label: when given, only voxels currently equal to it are changed ("erase only this label").
- overwrite: when False, painting leaves voxels of other labels alone (only background or `value`
  voxels change). Ignored when erasing (value 0).

Label values are 0..65535. The map keeps its dtype: an operation never changes it (it works in
place), so painting a label the dtype cannot hold (300 into a uint8 map) is refused with a
`LabelValueError`; run the operation through `segloop.editing.history.apply_widening` to widen
the map to uint16 first, recorded in the edit so undo restores the uint8 map exactly.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage
from skimage.draw import disk, polygon

from segloop.display.planes import PLANE_AXIS, display_to_voxel, n_slices, slice_shape, slice_view
from segloop.editing.history import (LABEL, LABEL_CAPITAL, Edit, EditRefused, LabelValueError, check_label_value,
                                     diff_region, empty_edit, value_fits)
from segloop.errors import SegLoopError

#: 3D structuring elements: 6-connectivity (faces) and 26-connectivity (faces, edges, corners).
STRUCTURE_3D = {6: ndimage.generate_binary_structure(3, 1), 26: ndimage.generate_binary_structure(3, 3)}
#: 2D structuring elements: 4-connectivity (edges) and 8-connectivity (edges and corners).
STRUCTURE_2D = {4: ndimage.generate_binary_structure(2, 1), 8: ndimage.generate_binary_structure(2, 2)}


# --------------------------------------------------------------------------- helpers


def _check_index(labels: np.ndarray, plane: str, index: int) -> int:
    n = n_slices(labels.shape, plane)
    if not 0 <= int(index) < n:
        raise ValueError(f"{plane} slice {index} is outside 0..{n - 1}")
    return int(index)


def _check_value(value: int) -> int:
    return check_label_value(value)


def _check_paint(labels: np.ndarray, value: int) -> int:
    """A value about to be written: a valid label that the map's dtype holds (never wrapped)."""
    value = check_label_value(value)
    if not value_fits(labels, value):
        raise LabelValueError(
            f"{LABEL} does not fit this {labels.dtype} label map; widen it to uint16 first "
            "(segloop.editing.history.apply_widening)", value,
        )
    return value


def _slice_region(shape: tuple[int, ...], plane: str, index: int) -> tuple[slice, ...]:
    region = [slice(0, n) for n in shape]
    region[PLANE_AXIS[plane]] = slice(index, index + 1)
    return tuple(region)


def _bbox_region(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Bounding box of a mask's True voxels, grown by `margin` and clipped; None when empty."""
    region = []
    for axis, n in enumerate(mask.shape):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return None
        region.append(slice(max(int(hit[0]) - margin, 0), min(int(hit[-1]) + 1 + margin, n)))
    return tuple(region)


def _label_name(value: int) -> str:
    """Where a description names the edit's label: filled in by `Edit.describe` (a name, or "label 2")."""
    return LABEL


def _verb(value: int, what: str) -> str:
    return f"Erase {what}" if value == 0 else f"{what.capitalize()} fill {_label_name(value)}"


def _write_mask(view: np.ndarray, mask: np.ndarray, value: int, only_label: int | None, overwrite: bool) -> None:
    """Write `value` into view where mask, honouring only_label and overwrite (see module docstring)."""
    target = mask.copy()
    if only_label is not None:
        target &= view == only_label
    if not overwrite and value != 0:
        target &= (view == 0) | (view == value)
    view[target] = value


def _paint_2d(
    labels: np.ndarray,
    plane: str,
    index: int,
    mask: np.ndarray,
    value: int,
    only_label: int | None,
    overwrite: bool,
    description: str,
    label: int | None = None,
) -> Edit:
    """Write `value` through `mask` on one slice; the edit is about `label` (default: `value`)."""
    region = _slice_region(labels.shape, plane, index)
    before = labels[region].copy()
    _write_mask(slice_view(labels, plane, index), mask, value, only_label, overwrite)
    return diff_region(labels, before, region, description, label=value if label is None else label)


def _centre_range(a: float, b: float, n: int) -> range:
    """Integer pixel centres p with min(a,b) <= p <= max(a,b), clipped to 0..n-1."""
    lo, hi = sorted((float(a), float(b)))
    return range(max(math.ceil(lo), 0), min(math.floor(hi), n - 1) + 1)


# --------------------------------------------------------------------------- 2D painting


def box_mask(shape: tuple[int, int], rows: tuple[float, float], cols: tuple[float, float]) -> np.ndarray:
    """Make a bool mask of the pixels whose centre lies in a closed box (corners in any order, clipped).

    Parameters
    ----------
    shape : tuple of 2 int
        (rows, cols) of the slice.
    rows, cols : tuple of 2 float
        The box's extent in pixel units (pixel centres at integers), in either order.

    Returns
    -------
    np.ndarray of bool, shape `shape`
        True where r0 <= r <= r1 and c0 <= c <= c1; all False when the box holds no pixel centre.

    Examples
    --------
    >>> box_mask((4, 5), (2.6, 0.5), (1, 3)).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]])
    """
    mask = np.zeros(shape, bool)
    r, c = _centre_range(*rows, shape[0]), _centre_range(*cols, shape[1])
    if len(r) and len(c):
        mask[r.start : r.stop, c.start : c.stop] = True
    return mask


def paint_box(
    labels: np.ndarray,
    plane: str,
    index: int,
    rows: tuple[float, float],
    cols: tuple[float, float],
    value: int,
    *,
    only_label: int | None = None,
    overwrite: bool = True,
) -> Edit:
    """Set the pixels of a box selection on one slice to `value` (0 erases).

    rows = (y0, y1), cols = (x0, x1) in pixel units as Plotly reports a box selection on an image;
    pixel (r, c) is inside when r0 <= r <= r1 and c0 <= c <= c1 (its centre is in the closed box).

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z), RAS voxel order
        Label map, modified in place.
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.
    index : int
        Slice index along the plane's RAS axis, 0..n_slices - 1.
    rows, cols : tuple of 2 float
        Box extent in pixel units of the shown slice, in either order; clipped to the slice.
    value : int
        Label written, 0..65535 and within `labels`' dtype; 0 erases.
    only_label : int, optional
        When given, only voxels currently equal to it are changed.
    overwrite : bool, optional
        When False, voxels of other labels are left alone (ignored when erasing).

    Returns
    -------
    Edit
        The voxels changed (description e.g. "Box fill label 2 on axial 1"), ready for `EditHistory.push`.

    Raises
    ------
    ValueError
        When `plane` is unknown or `index` is outside the slice range.
    segloop.editing.history.LabelValueError
        (a ValueError and a SegLoopError) When `value` is outside 0..65535 or does not fit
        `labels`' dtype (see `segloop.editing.history.apply_widening`).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((3, 4, 5), np.uint8)  # an axial slice shows (Y, X) = 4 x 3 pixels
    >>> edit = paint_box(labels, "axial", 1, (0, 1), (0, 2), 2)
    >>> len(edit), edit.description, int((labels[:, :, 1] == 2).sum())
    (6, 'Box fill label 2 on axial 1', 6)
    """
    index, value = _check_index(labels, plane, index), _check_paint(labels, value)
    mask = box_mask(slice_shape(labels.shape, plane), rows, cols)
    return _paint_2d(labels, plane, index, mask, value, only_label, overwrite, f"{_verb(value, 'box')} on {plane} {index}")


def polygon_mask(shape: tuple[int, int], rows: Sequence[float], cols: Sequence[float]) -> np.ndarray:
    """Make a bool mask of the pixels whose centre is inside or on a polygon (skimage.draw.polygon), clipped.

    Parameters
    ----------
    shape : tuple of 2 int
        (rows, cols) of the slice.
    rows, cols : sequence of float
        Vertex positions in pixel units (pixel centres at integers), same length; the outline is
        closed automatically.

    Returns
    -------
    np.ndarray of bool, shape `shape`
        All False when fewer than 3 vertices are given.

    Examples
    --------
    >>> polygon_mask((4, 4), [0, 0, 3], [0, 3, 0]).astype(int)
    array([[1, 1, 1, 1],
           [1, 1, 1, 0],
           [1, 1, 0, 0],
           [1, 0, 0, 0]])
    """
    mask = np.zeros(shape, bool)
    if len(rows) >= 3:
        rr, cc = polygon(np.asarray(rows, float), np.asarray(cols, float), shape=shape)
        mask[rr, cc] = True
    return mask


def paint_polygon(
    labels: np.ndarray,
    plane: str,
    index: int,
    rows: Sequence[float],
    cols: Sequence[float],
    value: int,
    *,
    only_label: int | None = None,
    overwrite: bool = True,
) -> Edit:
    """Fill (or erase, value 0) a lasso outline on one slice: every pixel whose centre is inside or on it.

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z), RAS voxel order
        Label map, modified in place.
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.
    index : int
        Slice index along the plane's RAS axis, 0..n_slices - 1.
    rows, cols : sequence of float
        Outline vertices in pixel units of the shown slice, same length; fewer than 3 changes nothing.
    value : int
        Label written, 0..65535 and within `labels`' dtype; 0 erases.
    only_label : int, optional
        When given, only voxels currently equal to it are changed.
    overwrite : bool, optional
        When False, voxels of other labels are left alone (ignored when erasing).

    Returns
    -------
    Edit
        The voxels changed (description e.g. "Lasso fill label 1 on coronal 40"), ready for `EditHistory.push`.

    Raises
    ------
    ValueError
        When `plane` is unknown or `index` is outside the slice range.
        Also when `rows` and `cols` differ in length.
    segloop.editing.history.LabelValueError
        (a ValueError and a SegLoopError) When `value` is outside 0..65535 or does not fit
        `labels`' dtype (see `segloop.editing.history.apply_widening`).
    """
    index, value = _check_index(labels, plane, index), _check_paint(labels, value)
    if len(rows) != len(cols):
        raise ValueError("rows and cols of the outline must have the same length")
    mask = polygon_mask(slice_shape(labels.shape, plane), rows, cols)
    return _paint_2d(labels, plane, index, mask, value, only_label, overwrite, f"{_verb(value, 'lasso')} on {plane} {index}")


def paint_mask(
    labels: np.ndarray,
    plane: str,
    index: int,
    mask2d: np.ndarray,
    value: int,
    *,
    only_label: int | None = None,
    overwrite: bool = True,
    what: str = "brush",
) -> Edit:
    """Write `value` where a screen-oriented bool mask of the slice's shape is True.

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z), RAS voxel order
        Label map, modified in place.
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.
    index : int
        Slice index along the plane's RAS axis, 0..n_slices - 1.
    mask2d : np.ndarray of bool, shape (rows, cols)
        Pixels to paint, oriented as `segloop.display.planes.slice_view` shows the slice.
    value : int
        Label written, 0..65535 and within `labels`' dtype; 0 erases.
    only_label : int, optional
        When given, only voxels currently equal to it are changed.
    overwrite : bool, optional
        When False, voxels of other labels are left alone (ignored when erasing).
    what : str, optional
        Name of the tool, used in the edit's description.

    Returns
    -------
    Edit
        The voxels changed (description e.g. "Brush fill label 1 on axial 12"), ready for `EditHistory.push`.

    Raises
    ------
    ValueError
        When `plane` is unknown or `index` is outside the slice range.
        Also when `mask2d` does not have the slice's shape.
    segloop.editing.history.LabelValueError
        (a ValueError and a SegLoopError) When `value` is outside 0..65535 or does not fit
        `labels`' dtype (see `segloop.editing.history.apply_widening`).
    """
    index, value = _check_index(labels, plane, index), _check_paint(labels, value)
    mask2d = np.asarray(mask2d, bool)
    expected = slice_shape(labels.shape, plane)
    if mask2d.shape != expected:
        raise ValueError(f"mask shape {mask2d.shape} does not match the {plane} slice shape {expected}")
    return _paint_2d(labels, plane, index, mask2d, value, only_label, overwrite, f"{_verb(value, what)} on {plane} {index}")


def stroke_mask(shape: tuple[int, int], points: Sequence[tuple[float, float]], radius: float) -> np.ndarray:
    """Make the mask of a round brush dragged along a polyline: a union of discs along (row, col) points.

    Disc centres are placed along each segment at most half a pixel apart, so fast strokes leave
    no gaps. A pixel is in a disc when its centre is strictly closer than `radius` to the disc centre.

    Parameters
    ----------
    shape : tuple of 2 int
        (rows, cols) of the slice.
    points : sequence of (float, float)
        (row, col) positions of the stroke in pixel units; one point gives a single disc.
    radius : float
        Brush radius in pixels.

    Returns
    -------
    np.ndarray of bool, shape `shape`
        All False when `radius` <= 0 or `points` is empty.

    Examples
    --------
    >>> stroke_mask((3, 6), [(1, 1), (1, 4)], radius=1).astype(int)
    array([[0, 0, 0, 0, 0, 0],
           [0, 1, 1, 1, 1, 0],
           [0, 0, 0, 0, 0, 0]])
    """
    mask = np.zeros(shape, bool)
    pts = np.asarray(points, float).reshape(-1, 2)
    if radius <= 0 or len(pts) == 0:
        return mask
    centres = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:]):
        n = max(1, math.ceil(2 * float(np.hypot(*(b - a)))))
        t = np.arange(1, n + 1)[:, None] / n
        centres.append(a + t * (b - a))
    for r, c in np.concatenate(centres):
        rr, cc = disk((r, c), radius, shape=shape)
        mask[rr, cc] = True
    return mask


def brush_stroke(
    labels: np.ndarray,
    plane: str,
    index: int,
    points: Sequence[tuple[float, float]],
    radius: float,
    value: int,
    *,
    only_label: int | None = None,
    overwrite: bool = True,
) -> Edit:
    """Paint (or erase, value 0) a round brush of `radius` pixels along (row, col) points on one slice.

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z), RAS voxel order
        Label map, modified in place.
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.
    index : int
        Slice index along the plane's RAS axis, 0..n_slices - 1.
    points : sequence of (float, float)
        (row, col) positions of the stroke in pixel units of the shown slice.
    radius : float
        Brush radius in pixels (see `stroke_mask`).
    value : int
        Label written, 0..65535 and within `labels`' dtype; 0 erases.
    only_label : int, optional
        When given, only voxels currently equal to it are changed.
    overwrite : bool, optional
        When False, voxels of other labels are left alone (ignored when erasing).

    Returns
    -------
    Edit
        The voxels changed (description e.g. "Brush fill label 1 on axial 12"), ready for `EditHistory.push`.

    Raises
    ------
    ValueError
        When `plane` is unknown or `index` is outside the slice range.
    segloop.editing.history.LabelValueError
        (a ValueError and a SegLoopError) When `value` is outside 0..65535 or does not fit
        `labels`' dtype (see `segloop.editing.history.apply_widening`).
    """
    index, value = _check_index(labels, plane, index), _check_paint(labels, value)
    mask = stroke_mask(slice_shape(labels.shape, plane), points, radius)
    return _paint_2d(labels, plane, index, mask, value, only_label, overwrite, f"{_verb(value, 'brush')} on {plane} {index}")


def flood_fill(labels: np.ndarray, plane: str, index: int, row: int, col: int, value: int) -> Edit:
    """Set to `value` the 4-connected region of the clicked pixel's label on one slice (paint bucket).

    The region is the clicked pixel plus every pixel reachable from it through edge neighbours of
    the same value (background included), so clicking background fills the enclosed area.

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z), RAS voxel order
        Label map, modified in place.
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.
    index : int
        Slice index along the plane's RAS axis, 0..n_slices - 1.
    row, col : int
        Clicked pixel of the shown slice.
    value : int
        Label written, 0..65535 and within `labels`' dtype; 0 erases.

    Returns
    -------
    Edit
        The voxels changed (description e.g. "Flood fill label 2 on axial 0"), ready for `EditHistory.push`.

    Raises
    ------
    ValueError
        When `plane` is unknown or `index` is outside the slice range.
        Also when (row, col) is outside the slice.
    segloop.editing.history.LabelValueError
        (a ValueError and a SegLoopError) When `value` is outside 0..65535 or does not fit
        `labels`' dtype (see `segloop.editing.history.apply_widening`).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((4, 4, 4), np.uint8)
    >>> labels[0, 0, 0] = 3  # bottom right of axial slice 0
    >>> edit = flood_fill(labels, "axial", 0, 0, 0, 2)  # click the background at the top left
    >>> len(edit), int(labels[0, 0, 0]), int((labels[:, :, 0] == 2).sum())
    (15, 3, 15)
    """
    index, value = _check_index(labels, plane, index), _check_paint(labels, value)
    view = slice_view(labels, plane, index)
    if not (0 <= row < view.shape[0] and 0 <= col < view.shape[1]):
        raise ValueError(f"pixel ({row}, {col}) is outside the {plane} slice {view.shape}")
    comp, _ = ndimage.label(view == view[row, col], structure=STRUCTURE_2D[4])
    mask = comp == comp[row, col]
    return _paint_2d(labels, plane, index, mask, value, None, True, f"Flood fill {_label_name(value)} on {plane} {index}")


def intensity_fill(
    labels: np.ndarray,
    image: np.ndarray,
    plane: str,
    index: int,
    row: int,
    col: int,
    value: int,
    low: float,
    high: float,
    *,
    only_label: int | None = None,
    overwrite: bool = True,
) -> Edit:
    """Set to `value` the pixels of one slice reached from the clicked pixel through intensities in low..high.

    Region growing on the scan, not on the labels: the region is the clicked pixel plus every pixel
    reachable from it through edge neighbours (4-connectivity) whose image intensity lies in the
    closed range low..high, on the shown slice only. The labels under the region do not matter
    (unless `only_label` or `overwrite` say otherwise).

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z), RAS voxel order
        Label map, modified in place.
    image : np.ndarray of float or int, shape (X, Y, Z), RAS voxel order
        The scan's intensities, same shape as `labels`; only read.
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.
    index : int
        Slice index along the plane's RAS axis, 0..n_slices - 1.
    row, col : int
        Clicked pixel of the shown slice (the seed).
    value : int
        Label written, 0..65535 and within `labels`' dtype; 0 erases.
    low, high : float
        Intensity range in the scan's own units, both ends included, in either order.
    only_label : int, optional
        When given, only voxels currently equal to it are changed.
    overwrite : bool, optional
        When False, voxels of other labels are left alone (ignored when erasing).

    Returns
    -------
    Edit
        The voxels changed (description e.g. "Intensity fill label 1 (100..300) on axial 12"),
        ready for `EditHistory.push`.

    Raises
    ------
    ValueError
        When `plane` is unknown, `index` is outside the slice range, (row, col) is outside the
        slice, `image` and `labels` differ in shape, or `low`/`high` is not a finite number.
    segloop.errors.SegLoopError
        When the clicked pixel's own intensity is outside low..high (a message for the user:
        nothing to grow from).
    segloop.editing.history.LabelValueError
        (a ValueError and a SegLoopError) When `value` is outside 0..65535 or does not fit
        `labels`' dtype (see `segloop.editing.history.apply_widening`).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((4, 4, 1), np.uint8)
    >>> image = np.zeros((4, 4, 1))
    >>> shown = slice_view(image, "axial", 0)  # axial slice 0 as the screen shows it (rows, cols)
    >>> shown[:, :2] = 100.0  # a bright left half...
    >>> shown[0, 0] = 500.0  # ...with one pixel brighter than the range
    >>> edit = intensity_fill(labels, image, "axial", 0, 2, 1, 2, 50, 150)
    >>> len(edit), edit.description
    (7, 'Intensity fill label 2 (50..150) on axial 0')
    >>> slice_view(labels, "axial", 0)
    array([[0, 2, 0, 0],
           [2, 2, 0, 0],
           [2, 2, 0, 0],
           [2, 2, 0, 0]], dtype=uint8)
    """
    index, value = _check_index(labels, plane, index), _check_paint(labels, value)
    image = np.asarray(image)
    if image.shape != labels.shape:
        raise ValueError(f"image of shape {image.shape} does not match the labels {labels.shape}")
    lo, hi = float(low), float(high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"intensity range {low!r}..{high!r} is not finite")
    lo, hi = min(lo, hi), max(lo, hi)
    grey = slice_view(image, plane, index)
    if not (0 <= row < grey.shape[0] and 0 <= col < grey.shape[1]):
        raise ValueError(f"pixel ({row}, {col}) is outside the {plane} slice {grey.shape}")
    seed = float(grey[row, col])
    if not lo <= seed <= hi:
        raise SegLoopError(
            f"The clicked pixel's intensity {seed:.4g} is outside {lo:.4g}..{hi:.4g}: "
            "widen the range or click inside the structure."
        )
    inside = (grey >= lo) & (grey <= hi)
    comp, _ = ndimage.label(inside, structure=STRUCTURE_2D[4])
    mask = comp == comp[row, col]
    description = f"Intensity fill {_label_name(value)} ({lo:g}..{hi:g}) on {plane} {index}"
    return _paint_2d(labels, plane, index, mask, value, only_label, overwrite, description)


# --------------------------------------------------------------------------- components, holes, islands


def delete_component(
    labels: np.ndarray,
    plane: str,
    index: int,
    row: int,
    col: int,
    *,
    connectivity: int = 26,
    in_slice: bool = False,
) -> Edit:
    """Erase the connected component of the clicked voxel's label.

    3D by default (connectivity 26: faces, edges and corners touch; or 6: faces only). With
    in_slice=True only the 2D component on the shown slice is erased (26 -> 8, 6 -> 4 connectivity).
    Clicking background changes nothing.

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z), RAS voxel order
        Label map, modified in place.
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.
    index : int
        Slice index along the plane's RAS axis, 0..n_slices - 1.
    row, col : int
        Clicked pixel of the shown slice.
    connectivity : {26, 6}, optional
        Which neighbours join a component in 3D.
    in_slice : bool, optional
        Erase only the component on the shown slice.

    Returns
    -------
    Edit
        The voxels changed (description e.g. "Delete component of label 3 in 3D"), ready for `EditHistory.push`.
        Empty when the clicked pixel is background.

    Raises
    ------
    ValueError
        When `connectivity` is not 6 or 26, `plane` is unknown, `index` is outside the slice range
        or (row, col) is outside the slice.
    """
    if connectivity not in STRUCTURE_3D:
        raise ValueError("connectivity must be 6 or 26")
    index = _check_index(labels, plane, index)
    view = slice_view(labels, plane, index)
    if not (0 <= row < view.shape[0] and 0 <= col < view.shape[1]):
        raise ValueError(f"pixel ({row}, {col}) is outside the {plane} slice {view.shape}")
    value = int(view[row, col])
    where = f"on {plane} {index}" if in_slice else "in 3D"
    description = f"Delete component of {_label_name(value)} {where}"
    if value == 0:
        return empty_edit(labels, description, label=value)
    if in_slice:
        comp, _ = ndimage.label(view == value, structure=STRUCTURE_2D[8 if connectivity == 26 else 4])
        mask = comp == comp[row, col]
        return _paint_2d(labels, plane, index, mask, 0, None, True, description, label=value)
    region = _bbox_region(labels == value)
    sub = labels[region]
    comp, _ = ndimage.label(sub == value, structure=STRUCTURE_3D[connectivity])
    clicked = display_to_voxel(plane, index, row, col, labels.shape)
    voxel = tuple(v - s.start for v, s in zip(clicked, region))
    before = sub.copy()
    sub[comp == comp[voxel]] = 0
    return diff_region(labels, before, region, description, label=value)


def fill_holes(labels: np.ndarray, value: int, plane: str | None = None, index: int | None = None) -> Edit:
    """Fill the holes of label `value` (background enclosed by it); other labels are never overwritten.

    3D (a cavity enclosed on all sides) when plane is None; with a plane, holes are filled in 2D on
    slice `index`, or on every slice of that plane when index is None.

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z), RAS voxel order
        Label map, modified in place.
    value : int
        Label whose holes are filled, 1..65535.
    plane : {"axial", "coronal", "sagittal"}, optional
        Fill 2D holes in this plane; None fills 3D cavities.
    index : int, optional
        With `plane`: the only slice filled; None fills every slice of the plane.

    Returns
    -------
    Edit
        The voxels changed (description e.g. "Fill holes of label 1 in 3D"), ready for `EditHistory.push`.
        Empty when `value` is not in the label map.

    Raises
    ------
    ValueError
        When `value` is 0 or outside 0..65535, or `index` is outside the plane's slice range (or
        `plane` is unknown when `index` is given; an unknown plane without `index` raises KeyError).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.ones((3, 3, 3), np.uint8)
    >>> labels[1, 1, 1] = 0  # a one-voxel cavity
    >>> edit = fill_holes(labels, 1)
    >>> edit.description, len(edit), int(labels[1, 1, 1])
    ('Fill holes of label 1 in 3D', 1, 1)
    """
    value = _check_value(value)
    if value == 0:
        raise ValueError("cannot fill holes of the background")
    mask = labels == value
    region = _bbox_region(mask)
    if plane is None:
        description = f"Fill holes of {_label_name(value)} in 3D"
    elif index is None:
        description = f"Fill holes of {_label_name(value)} on every {plane} slice"
    else:
        index = _check_index(labels, plane, index)
        description = f"Fill holes of {_label_name(value)} on {plane} {index}"
    if region is None:
        return empty_edit(labels, description, label=value)
    if plane is not None and index is not None:
        view = slice_view(labels, plane, index)
        filled = ndimage.binary_fill_holes(view == value)
        return _paint_2d(labels, plane, index, filled, value, None, False, description)
    sub = labels[region]
    before = sub.copy()
    if plane is None:
        filled = ndimage.binary_fill_holes(before == value)
    else:
        axis = PLANE_AXIS[plane]
        filled = np.zeros_like(before, bool)
        for k in range(before.shape[axis]):
            sl = [slice(None)] * 3
            sl[axis] = k
            filled[tuple(sl)] = ndimage.binary_fill_holes(before[tuple(sl)] == value)
    sub[filled & (before == 0)] = value
    return diff_region(labels, before, region, description, label=value)


def remove_islands(labels: np.ndarray, value: int, min_voxels: int, *, connectivity: int = 26) -> Edit:
    """Erase the 3D connected components of `value` with fewer than `min_voxels` voxels (stray specks).

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z), RAS voxel order
        Label map, modified in place.
    value : int
        Label to clean, 0..65535; 0 changes nothing.
    min_voxels : int
        Components smaller than this are set to 0 (background).
    connectivity : {26, 6}, optional
        Which neighbours join a component.

    Returns
    -------
    Edit
        The voxels changed (description e.g. "Remove islands of label 1 under 10 voxels"), ready for `EditHistory.push`.

    Raises
    ------
    ValueError
        When `value` is outside 0..65535 or `connectivity` is not 6 or 26.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((6, 6, 6), np.uint8)
    >>> labels[:3, :3, :3] = 1
    >>> labels[5, 5, 5] = 1  # a one-voxel island
    >>> len(remove_islands(labels, 1, min_voxels=2)), int((labels == 1).sum())
    (1, 27)
    """
    value = _check_value(value)
    if connectivity not in STRUCTURE_3D:
        raise ValueError("connectivity must be 6 or 26")
    description = f"Remove islands of {_label_name(value)} under {min_voxels} voxels"
    region = _bbox_region(labels == value) if value else None
    if region is None:
        return empty_edit(labels, description, label=value)
    sub = labels[region]
    before = sub.copy()
    comp, n = ndimage.label(before == value, structure=STRUCTURE_3D[connectivity])
    sizes = np.bincount(comp.ravel(), minlength=n + 1)
    small = sizes < min_voxels
    small[0] = False
    sub[small[comp]] = 0
    return diff_region(labels, before, region, description, label=value)


def grow(labels: np.ndarray, value: int, voxels: int = 1) -> Edit:
    """Dilate label `value` by `voxels` steps of the 6-connected (face) structuring element.

    Only background voxels are added; other labels are not overwritten. Steps are in voxels, not mm,
    so growth is anisotropic on anisotropic scans.

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z), RAS voxel order
        Label map, modified in place.
    value : int
        Label to grow, 0..65535; 0 changes nothing.
    voxels : int, optional
        Number of dilation steps; 0 or less changes nothing.

    Returns
    -------
    Edit
        The voxels changed (description e.g. "Grow label 1 by 1 voxel"), ready for `EditHistory.push`.

    Raises
    ------
    ValueError
        When `value` is outside 0..65535.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((5, 5, 5), np.uint8)
    >>> labels[2, 2, 2] = 1
    >>> edit = grow(labels, 1)
    >>> edit.description, int((labels == 1).sum())  # the voxel and its 6 face neighbours
    ('Grow label 1 by 1 voxel', 7)
    """
    value = _check_value(value)
    description = f"Grow {_label_name(value)} by {voxels} voxel{'s' if voxels != 1 else ''}"
    region = _bbox_region(labels == value, margin=voxels) if value and voxels > 0 else None
    if region is None:
        return empty_edit(labels, description, label=value)
    sub = labels[region]
    before = sub.copy()
    grown = ndimage.binary_dilation(before == value, structure=STRUCTURE_3D[6], iterations=voxels)
    sub[grown & (before == 0)] = value
    return diff_region(labels, before, region, description, label=value)


def shrink(labels: np.ndarray, value: int, voxels: int = 1) -> Edit:
    """Erode label `value` by `voxels` steps of the 6-connected structuring element (freed voxels -> 0).

    Outside the volume counts as background, so labels touching the volume's edge shrink there too.

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z), RAS voxel order
        Label map, modified in place.
    value : int
        Label to shrink, 0..65535; 0 changes nothing.
    voxels : int, optional
        Number of erosion steps; 0 or less changes nothing.

    Returns
    -------
    Edit
        The voxels changed (description e.g. "Shrink label 1 by 2 voxels"), ready for `EditHistory.push`.

    Raises
    ------
    ValueError
        When `value` is outside 0..65535.
    """
    value = _check_value(value)
    description = f"Shrink {_label_name(value)} by {voxels} voxel{'s' if voxels != 1 else ''}"
    region = _bbox_region(labels == value) if value and voxels > 0 else None
    if region is None:
        return empty_edit(labels, description, label=value)
    sub = labels[region]
    before = sub.copy()
    mask = before == value
    kept = ndimage.binary_erosion(mask, structure=STRUCTURE_3D[6], iterations=voxels, border_value=0)
    sub[mask & ~kept] = 0
    return diff_region(labels, before, region, description, label=value)


# --------------------------------------------------------------------------- slice to slice


def copy_from_neighbour(labels: np.ndarray, plane: str, index: int, source_index: int) -> Edit:
    """Replace all labels of slice `index` with those of slice `source_index` (usually index ± 1).

    Every voxel of the target slice is overwritten, background included.

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z), RAS voxel order
        Label map, modified in place.
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.
    index : int
        Slice index along the plane's RAS axis, 0..n_slices - 1.
    source_index : int
        Slice copied from, along the same axis; equal to `index` changes nothing.

    Returns
    -------
    Edit
        The voxels changed (description e.g. "Copy axial 11 to axial 12"), ready for `EditHistory.push`.

    Raises
    ------
    ValueError
        When `plane` is unknown or either index is outside the slice range.
    """
    index, source_index = _check_index(labels, plane, index), _check_index(labels, plane, source_index)
    description = f"Copy {plane} {source_index} to {plane} {index}"
    if index == source_index:
        return empty_edit(labels, description)
    region = _slice_region(labels.shape, plane, index)
    before = labels[region].copy()
    slice_view(labels, plane, index)[...] = slice_view(labels, plane, source_index)
    return diff_region(labels, before, region, description)


def _signed_distance(mask: np.ndarray, sampling: tuple[float, float] | None) -> np.ndarray:
    """Signed distance to the mask's boundary: negative inside, positive outside (half-pixel offset)."""
    inside = ndimage.distance_transform_edt(mask, sampling=sampling)
    outside = ndimage.distance_transform_edt(~mask, sampling=sampling)
    half = 0.5 * (min(sampling) if sampling else 1.0)
    return np.where(mask, -(inside - half), outside - half)


def interpolate_slices(
    labels: np.ndarray,
    plane: str,
    index_a: int,
    index_b: int,
    value: int,
    *,
    overwrite: bool = False,
    pixel_spacing: tuple[float, float] | None = None,
) -> Edit:
    """Fill the slices strictly between index_a and index_b with label `value` by shape interpolation.

    The signed distance maps of `value` on the two slices are blended linearly with the slice
    position; the new shape is where the blend is negative. On the slices in between, voxels of
    `value` outside the interpolated shape are cleared, and (unless overwrite=True) other labels are
    not overwritten. `pixel_spacing` (row_mm, col_mm) makes distances physical on anisotropic scans.

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z), RAS voxel order
        Label map, modified in place.
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.
    index_a, index_b : int
        The two drawn slices along the plane's RAS axis, in either order.
    value : int
        Label to interpolate, 1..65535.
    overwrite : bool, optional
        Also overwrite other labels inside the interpolated shape.
    pixel_spacing : tuple of 2 float, optional
        (row_mm, col_mm) of the slice (see `segloop.display.planes.pixel_spacing`); pixels when None.

    Returns
    -------
    Edit
        The voxels changed (description e.g. "Interpolate label 1 between axial 0 and 4"), ready for `EditHistory.push`.
        Empty when the two slices are adjacent (nothing lies between them).

    Raises
    ------
    ValueError
        When `value` is 0 or outside 0..65535, `plane` is unknown or an index is outside the slice range.
    segloop.errors.SegLoopError
        When `value` is not drawn on both slices (a message for the user).
    """
    value = _check_value(value)
    if value == 0:
        raise ValueError("cannot interpolate the background")
    a, b = sorted((_check_index(labels, plane, index_a), _check_index(labels, plane, index_b)))
    description = f"Interpolate {_label_name(value)} between {plane} {a} and {b}"
    mask_a, mask_b = slice_view(labels, plane, a) == value, slice_view(labels, plane, b) == value
    for k, m in ((a, mask_a), (b, mask_b)):
        if not m.any():
            raise EditRefused(f"{LABEL_CAPITAL} is not drawn on {plane} slice {k}; draw it on both slices first.", value)
    if b - a < 2:
        return empty_edit(labels, description, label=value)
    sd_a, sd_b = _signed_distance(mask_a, pixel_spacing), _signed_distance(mask_b, pixel_spacing)
    axis = PLANE_AXIS[plane]
    region = [slice(0, n) for n in labels.shape]
    region[axis] = slice(a + 1, b)
    region = tuple(region)
    before = labels[region].copy()
    for k in range(a + 1, b):
        t = (k - a) / (b - a)
        shape = (1 - t) * sd_a + t * sd_b < 0
        view = slice_view(labels, plane, k)
        view[(view == value) & ~shape] = 0
        _write_mask(view, shape, value, None, overwrite)
    return diff_region(labels, before, region, description, label=value)
