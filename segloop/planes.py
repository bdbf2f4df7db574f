"""The three viewing planes: how a 2D slice on screen maps to voxels of a RAS volume.

Arrays are in RAS voxel order (axis 0 Left->Right, axis 1 Posterior->Anterior, axis 2
Inferior->Superior). Slices are shown in the radiological convention used by clinical viewers:
the patient's right on the left of the screen, anterior or superior at the top; sagittal slices
show anterior on the left. `slice_view` returns a writable numpy view, so editing tools write
through it and all three planes see the change at once.
"""

from __future__ import annotations

import numpy as np

PLANES = ("axial", "coronal", "sagittal")

#: Which RAS axis a plane's slice index runs along.
PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}

#: Anatomical direction at each screen edge: (left, right, top, bottom).
EDGE_LABELS = {
    "axial": ("R", "L", "A", "P"),
    "coronal": ("R", "L", "S", "I"),
    "sagittal": ("A", "P", "S", "I"),
}


def _check_plane(plane: str) -> None:
    if plane not in PLANE_AXIS:
        raise ValueError(f"unknown plane {plane!r}; expected one of {PLANES}")


def slice_view(array: np.ndarray, plane: str, index: int) -> np.ndarray:
    """Writable 2D view (rows top->bottom, cols left->right on screen) of slice `index`.

    Works on the last three axes, so (C, X, Y, Z) arrays give (C, rows, cols) views.
    """
    _check_plane(plane)
    lead = (slice(None),) * (array.ndim - 3)
    if plane == "axial":
        v = array[lead + (slice(None, None, -1), slice(None, None, -1), index)]
    elif plane == "coronal":
        v = array[lead + (slice(None, None, -1), index, slice(None, None, -1))]
    else:
        v = array[lead + (index, slice(None, None, -1), slice(None, None, -1))]
    return np.swapaxes(v, -1, -2)


def n_slices(shape: tuple[int, ...], plane: str) -> int:
    """Number of slices of a (…, X, Y, Z) shape in a plane."""
    _check_plane(plane)
    return int(shape[-3:][PLANE_AXIS[plane]])


def slice_shape(shape: tuple[int, ...], plane: str) -> tuple[int, int]:
    """(rows, cols) of a slice of a (X, Y, Z) shape in a plane."""
    x, y, z = shape[-3:]
    return {"axial": (y, x), "coronal": (z, x), "sagittal": (z, y)}[plane]


def pixel_spacing(spacing: tuple[float, float, float], plane: str) -> tuple[float, float]:
    """(row_mm, col_mm) of a displayed slice, so anisotropic scans are drawn to scale."""
    sx, sy, sz = spacing
    _check_plane(plane)
    return {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[plane]


def display_to_voxel(plane: str, index: int, row: int, col: int, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """RAS voxel (i, j, k) under screen pixel (row, col) of slice `index`."""
    x, y, z = shape[-3:]
    _check_plane(plane)
    if plane == "axial":
        return (x - 1 - col, y - 1 - row, index)
    if plane == "coronal":
        return (x - 1 - col, index, z - 1 - row)
    return (index, y - 1 - col, z - 1 - row)


def voxel_to_display(plane: str, voxel: tuple[int, int, int], shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(slice index, row, col) at which a RAS voxel appears in a plane."""
    x, y, z = shape[-3:]
    i, j, k = voxel
    _check_plane(plane)
    if plane == "axial":
        return (k, y - 1 - j, x - 1 - i)
    if plane == "coronal":
        return (j, z - 1 - k, x - 1 - i)
    return (i, z - 1 - k, y - 1 - j)
