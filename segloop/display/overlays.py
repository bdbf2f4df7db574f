"""What the views draw over a scan besides labels: the model's uncertainty, binned, and box outlines.

`uncertainty_levels` bins a whole uncertainty volume once into heat levels (`UNCERTAINTY_COLORS`), which
the browser's volume view draws transparent where the model is sure; `box_outline` is where a box
(the whole-head path's search region) cuts a slice.
"""

from __future__ import annotations

import numpy as np

from segloop.display import planes

#: Uncertainty bins drawn by the heat layer (normalised entropy); below the first nothing is drawn.
UNCERTAINTY_THRESHOLDS = (0.1, 0.25, 0.5, 0.75)
#: Heat colours of the bins, yellow (somewhat unsure) to red (very unsure).
UNCERTAINTY_COLORS = ((255, 255, 178), (254, 204, 92), (253, 141, 60), (227, 26, 28))


def uncertainty_levels(uncertainty: np.ndarray, thresholds: tuple[float, ...] = UNCERTAINTY_THRESHOLDS) -> np.ndarray:
    """Bin each voxel's uncertainty into heat levels, once per volume, so slices only need a lookup.

    Parameters
    ----------
    uncertainty : np.ndarray of float, any shape
        Uncertainty per voxel, usually normalised entropy in [0, 1].
    thresholds : tuple of float, optional
        Increasing lower edges of the bins; `UNCERTAINTY_THRESHOLDS` by default.

    Returns
    -------
    np.ndarray of uint8, same shape as `uncertainty`
        0 below ``thresholds[0]`` (drawn transparent); k when ``thresholds[k-1] <= u < thresholds[k]``
        (the last bin is open-ended). A value equal to a threshold goes to the higher bin.

    Examples
    --------
    >>> import numpy as np
    >>> uncertainty_levels(np.array([0.0, 0.1, 0.3, 0.6, 0.9]))
    array([0, 1, 2, 3, 4], dtype=uint8)
    """
    return np.digitize(np.asarray(uncertainty, np.float32), np.asarray(thresholds, np.float32)).astype(np.uint8)


def box_outline(corners: np.ndarray, edges: tuple[tuple[int, int], ...], plane: str, index: int,
                shape: tuple[int, ...], spacing: tuple[float, float, float]) -> tuple[list[float], list[float]] | None:
    """Where a box (any parallelepiped in voxel space) cuts a slice, as a closed outline in figure mm.

    Parameters
    ----------
    corners : np.ndarray
        float (8, 3): the box corners in RAS voxel coordinates (they may lie outside the volume).
    edges : tuple of (int, int)
        The 12 pairs of corner indices joined by the box's edges.
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.
    index : int
        Slice index along the plane's axis.
    shape : tuple of int
        (X, Y, Z) of the volume.
    spacing : tuple of 3 float
        Voxel size in mm along the RAS axes.

    Returns
    -------
    tuple of (list of float, list of float) or None
        Figure x and y (mm, as `segloop.display.render` places pixels) of the closed polygon where
        the slice cuts the box; None when the slice misses it.

    Examples
    --------
    >>> import itertools
    >>> corners = np.array(list(itertools.product((2, 6), (2, 6), (2, 6))), float)
    >>> edges = tuple((a, b) for a, b in itertools.combinations(range(8), 2) if (a ^ b).bit_count() == 1)
    >>> xs, ys = box_outline(corners, edges, "axial", 4, (10, 10, 10), (1.0, 1.0, 1.0))
    >>> sorted(set(xs)), sorted(set(ys))
    ([3.0, 7.0], [3.0, 7.0])
    >>> box_outline(corners, edges, "axial", 8, (10, 10, 10), (1.0, 1.0, 1.0)) is None
    True
    """
    axis = planes.PLANE_AXIS[plane]
    points = []
    for a, b in edges:
        p, q = corners[a], corners[b]
        if p[axis] == q[axis] or (p[axis] - index) * (q[axis] - index) > 0:
            continue
        points.append(p + (index - p[axis]) / (q[axis] - p[axis]) * (q - p))
    if len(points) < 3:
        return None
    pts = np.array(points)
    _, rows, cols = planes.voxel_to_display(plane, (pts[:, 0], pts[:, 1], pts[:, 2]), shape)
    rows, cols = np.asarray(rows, float), np.asarray(cols, float)
    order = np.argsort(np.arctan2(rows - rows.mean(), cols - cols.mean()))  # a plane cuts a box in a convex polygon
    row_mm, col_mm = planes.pixel_spacing(spacing, plane)
    xs = [float(c * col_mm) for c in cols[order]]
    ys = [float(r * row_mm) for r in rows[order]]
    return xs + xs[:1], ys + ys[:1]
