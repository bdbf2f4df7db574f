"""Edits drawn on a slice (box, lasso, brush, click) -> one label edit on that slice.

Plotly reports a box or lasso selection as its outline in figure coordinates (on-screen mm, see
`segloop.display.render`), and a click as a point; `apply_selection` turns either into one label edit on
the slice. `apply_view_event` takes an edit event of the browser's volume view, which names the plane
and slice it was drawn on, brush strokes included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from segloop.display import planes
from segloop.display.render import figure_xy_to_pixel
from segloop.editing import operations
from segloop.editing.history import Edit, apply_widening
from segloop.editing.tools import CLICK_TOOLS, OUTLINE_TOOLS, Tool


@dataclass(frozen=True)
class AppliedSelection:
    """What a selection did: the edit and, for a box, the pixel rectangle (rows, cols, inclusive).

    Parameters
    ----------
    edit : Edit
        The voxels changed, ready for `EditHistory.push`.
    pixel_box : tuple of 4 int, optional
        (row0, row1, col0, col1) of the pixels a box selection covered, inclusive; None for other
        tools or a box that covered no pixel centre.
    labels : np.ndarray, optional
        The label map to use from now on when it is not the one given to `apply_selection`: a new
        uint16 map, made because the painted label did not fit the old map's dtype (the edit then
        has ``widened_from`` set). None when the given map was edited in place.
    """

    edit: Edit
    pixel_box: tuple[int, int, int, int] | None = None  # (row0, row1, col0, col1)
    labels: np.ndarray | None = None


def _to_pixels(xs: list[float], ys: list[float], plane: str, spacing: tuple[float, float, float]
               ) -> tuple[np.ndarray, np.ndarray]:
    """Continuous (rows, cols) in pixel units of figure coordinates (pixel centres at integers)."""
    row_mm, col_mm = planes.pixel_spacing(spacing, plane)
    return np.asarray(ys, float) / row_mm, np.asarray(xs, float) / col_mm


def apply_selection(labels: np.ndarray, plane: str, index: int, selection: dict[str, Any], tool: str,
                    value: int, spacing: tuple[float, float, float]) -> AppliedSelection | None:
    """Apply a Plotly selection (`{"box": [...], "lasso": [...], "points": [...]}`) to slice `index`.

    tool "box"/"lasso": fill (value > 0) or erase (value 0) the outline's pixels (centre inside);
    "flood fill": paint bucket at the clicked pixel; "delete component": erase the clicked 3D
    component. Returns None when the selection holds nothing usable for the tool. A label that
    `labels`' dtype cannot hold (300 in a uint8 map) is painted into a uint16 copy, returned in
    ``AppliedSelection.labels`` (see `segloop.editing.history.apply_widening`).

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z), RAS voxel order
        Label map, modified in place (unless the map had to be widened).
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane of the figure.
    index : int
        Slice index along the plane's RAS axis.
    selection : dict
        Plotly selection state in figure coordinates (on-screen mm, see `segloop.display.render`).
        For box/lasso tools the last ``"box"`` entry is used (its ``x``/``y`` corners), else the last
        ``"lasso"`` outline (``x``/``y`` vertex lists); for click tools the first point with x and y.
    tool : str
        A `Tool` value: "box", "lasso", "flood fill" or "delete component".
    value : int
        Label written, 0..65535; 0 erases. Not used by "delete component".
    spacing : tuple of 3 float
        Voxel size in mm along the RAS axes, to turn figure mm into pixels.

    Returns
    -------
    AppliedSelection or None
        None when the selection has no box/lasso (outline tools), or no point or a point outside the
        slice (click tools).

    Raises
    ------
    ValueError
        When `tool` is not one of the four above (e.g. "brush"), or as the operation raises
        (unknown plane, index outside the slice range; a value outside 0..65535 raises
        `segloop.editing.history.LabelValueError`, also a ValueError).
    """
    shape = planes.slice_shape(labels.shape, plane)
    if tool in OUTLINE_TOOLS:
        if selection.get("box"):
            b = selection["box"][-1]
            rows, cols = _to_pixels(b["x"], b["y"], plane, spacing)
            mask = operations.box_mask(shape, (rows.min(), rows.max()), (cols.min(), cols.max()))
            out, edit = apply_widening(labels, value, operations.paint_box, plane, index, (rows.min(), rows.max()),
                                       (cols.min(), cols.max()), value)
            hit = np.argwhere(mask)
            pbox = None if hit.size == 0 else (int(hit[:, 0].min()), int(hit[:, 0].max()),
                                               int(hit[:, 1].min()), int(hit[:, 1].max()))
            return AppliedSelection(edit, pbox, None if out is labels else out)
        if selection.get("lasso"):
            outline = selection["lasso"][-1]
            rows, cols = _to_pixels(outline["x"], outline["y"], plane, spacing)
            out, edit = apply_widening(labels, value, operations.paint_polygon, plane, index, rows, cols, value)
            return AppliedSelection(edit, None, None if out is labels else out)
        return None
    if tool in CLICK_TOOLS:
        points = [p for p in (selection.get("points") or []) if p.get("x") is not None and p.get("y") is not None]
        if not points:
            return None
        row, col = figure_xy_to_pixel(float(points[0]["x"]), float(points[0]["y"]), plane, spacing)
        if not (0 <= row < shape[0] and 0 <= col < shape[1]):
            return None
        if tool == Tool.FLOOD_FILL:
            out, edit = apply_widening(labels, value, operations.flood_fill, plane, index, row, col, value)
            return AppliedSelection(edit, None, None if out is labels else out)
        return AppliedSelection(operations.delete_component(labels, plane, index, row, col))
    raise ValueError(f"unknown selection tool {tool!r}")


def apply_view_event(labels: np.ndarray, event: dict[str, Any], *, image: np.ndarray,
                     spacing: tuple[float, float, float],
                     fill_range: tuple[float, float] | None = None) -> AppliedSelection | None:
    """Apply an edit drawn in the browser's volume view to the slice it was drawn on.

    The event names its plane and slice, so the edit lands on the slice the user saw, whatever
    the server last heard about the view.

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z), RAS voxel order
        Label map, modified in place (unless it had to be widened; see `apply_selection`).
    event : dict
        ``tool`` (a `Tool` value), ``plane``, ``index`` (slice), ``value`` (label, 0 erases) and
        either ``selection`` (box/lasso outline or clicked point in figure mm, as `apply_selection`
        takes) or, for the brush, ``points`` ((row, col) pixel positions) and ``radius`` (pixels).
    image : np.ndarray, shape (X, Y, Z)
        The scan, for flood fill's intensity range.
    spacing : tuple of 3 float
        Voxel size in mm along the RAS axes.
    fill_range : (float, float), optional
        When given, flood fill grows through the connected pixels with intensities in low..high
        (`segloop.editing.operations.intensity_fill`) instead of through the clicked label.

    Returns
    -------
    AppliedSelection or None
        None when the event holds nothing to apply (an empty outline, a click outside the slice).

    Raises
    ------
    ValueError
        For a malformed event: an unknown tool or plane, a slice outside the scan, a label value
        that is not an integer in 0..65535, points that are not numbers.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((4, 5, 6), np.uint8)
    >>> event = {"tool": "brush", "plane": "axial", "index": 2, "value": 1, "points": [[1, 1]], "radius": 1}
    >>> applied = apply_view_event(labels, event, image=labels, spacing=(1.0, 1.0, 1.0))
    >>> np.argwhere(labels).tolist()  # axial pixel (row 1, col 1) of slice 2 is voxel (2, 3, 2)
    [[2, 3, 2]]
    """
    try:
        tool, plane, index = Tool(event.get("tool")), str(event.get("plane")), int(event.get("index"))
        value = int(event.get("value"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not an edit of this view ({exc})") from None
    if plane not in planes.PLANES:
        raise ValueError(f"unknown plane {plane!r}")
    n = planes.n_slices(labels.shape, plane)
    if not 0 <= index < n:
        raise ValueError(f"no slice {index} in the {plane} plane of this scan (it has {n})")
    if tool == Tool.BRUSH:
        try:
            points = [(float(r), float(c)) for r, c in event.get("points") or []]
            radius = float(event.get("radius", 1))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a brush stroke needs (row, col) points and a radius ({exc})") from None
        out, edit = apply_widening(labels, value, operations.brush_stroke, plane, index, points, radius, value)
        return AppliedSelection(edit, None, None if out is labels else out)
    selection = event.get("selection") or {}
    if tool == Tool.FLOOD_FILL and fill_range is not None:
        points = [p for p in (selection.get("points") or []) if p.get("x") is not None and p.get("y") is not None]
        if not points:
            return None
        row, col = figure_xy_to_pixel(float(points[0]["x"]), float(points[0]["y"]), plane, spacing)
        rows, cols = planes.slice_shape(labels.shape, plane)
        if not (0 <= row < rows and 0 <= col < cols):
            return None
        out, edit = apply_widening(labels, value, operations.intensity_fill, image, plane, index, row, col, value,
                                   *fill_range)
        return AppliedSelection(edit, None, None if out is labels else out)
    return apply_selection(labels, plane, index, selection, tool, value, spacing)
