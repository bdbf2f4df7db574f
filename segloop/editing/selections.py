"""Selections on a slice figure (box, lasso, click) -> one label edit on the shown slice.

Plotly reports a box or lasso selection as its outline in figure coordinates (on-screen mm, see
`segloop.display.render`), and a click as a point; `apply_selection` turns either into one label edit on
the shown slice. `uncertainty_layer`
adds the uncertainty as a small palette-PNG heat layer to a slice figure (no float heatmaps).
"""

from __future__ import annotations

import json
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


def selection_signature(plane: str, index: int, selection: dict[str, Any]) -> str:
    """Make a stable string for a selection on a slice, so each selection is applied only once.

    The app sees the same selection again on every rerun; comparing signatures tells a new
    selection from an old one.

    Parameters
    ----------
    plane : str
        Viewing plane.
    index : int
        Slice index.
    selection : dict
        Plotly selection state: ``"box"``, ``"lasso"`` and ``"points"`` entries (missing ones count
        as empty); only the x/y of the first 4 points are used.

    Returns
    -------
    str
        JSON text; equal selections on the same slice give equal strings.

    Examples
    --------
    >>> selection_signature("axial", 3, {"box": [{"x": [0, 1], "y": [0, 2]}]})
    '["axial", 3, {"box": [{"x": [0, 1], "y": [0, 2]}], "lasso": [], "points": []}]'
    """
    sel = {k: selection.get(k) or [] for k in ("box", "lasso")}
    sel["points"] = [(p.get("x"), p.get("y")) for p in (selection.get("points") or [])[:4]]
    return json.dumps([plane, int(index), sel], sort_keys=True, default=str)


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
