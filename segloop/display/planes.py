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
    """Return slice `index` of a RAS array as it appears on screen, as a writable view.

    Rows run top -> bottom and columns left -> right on screen, in the radiological convention of
    the module docstring. Because it is a view (no copy), editing tools write through it and all
    three planes see the change at once. Works on the last three axes, so (C, X, Y, Z) arrays give
    (C, rows, cols) views.

    Parameters
    ----------
    array : np.ndarray, shape (..., X, Y, Z), RAS voxel order
        Volume of any dtype.
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.
    index : int
        Slice index along the plane's RAS axis (Z for axial, Y for coronal, X for sagittal);
        negative indices count from the end, as in numpy.

    Returns
    -------
    np.ndarray, shape (..., rows, cols)
        A non-contiguous view of `array`: (Y, X) for axial, (Z, X) for coronal, (Z, Y) for sagittal.

    Raises
    ------
    ValueError
        When `plane` is not one of the three planes.
    IndexError
        When `index` is outside the plane's slice range.

    Examples
    --------
    >>> import numpy as np
    >>> volume = np.arange(24).reshape(2, 3, 4)  # X=2, Y=3, Z=4
    >>> view = slice_view(volume, "axial", 0)
    >>> view.shape
    (3, 2)
    >>> int(view[0, 0]) == int(volume[1, 2, 0])  # top left: the patient's right (x=1), anterior (y=2) corner
    True
    >>> view[0, 0] = -1
    >>> int(volume[1, 2, 0])
    -1
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
    """Return the number of slices of a volume in a plane.

    Parameters
    ----------
    shape : tuple of int
        Shape (..., X, Y, Z) of a RAS volume; leading axes are ignored.
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.

    Returns
    -------
    int
        Z for axial, Y for coronal, X for sagittal.

    Raises
    ------
    ValueError
        When `plane` is not one of the three planes.

    Examples
    --------
    >>> n_slices((2, 3, 4), "axial"), n_slices((2, 3, 4), "sagittal")
    (4, 2)
    """
    _check_plane(plane)
    return int(shape[-3:][PLANE_AXIS[plane]])


def slice_shape(shape: tuple[int, ...], plane: str) -> tuple[int, int]:
    """Return the on-screen (rows, cols) shape of a slice of a volume in a plane.

    Parameters
    ----------
    shape : tuple of int
        Shape (..., X, Y, Z) of a RAS volume; leading axes are ignored.
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.

    Returns
    -------
    tuple of 2 int
        (Y, X) for axial, (Z, X) for coronal, (Z, Y) for sagittal: the shape `slice_view` gives.

    Raises
    ------
    KeyError
        When `plane` is not one of the three planes.

    Examples
    --------
    >>> slice_shape((2, 3, 4), "axial"), slice_shape((2, 3, 4), "coronal")
    ((3, 2), (4, 2))
    """
    x, y, z = shape[-3:]
    return {"axial": (y, x), "coronal": (z, x), "sagittal": (z, y)}[plane]


def pixel_spacing(spacing: tuple[float, float, float], plane: str) -> tuple[float, float]:
    """Return the pixel size of a displayed slice in mm, so anisotropic scans are drawn to scale.

    Parameters
    ----------
    spacing : tuple of 3 float
        Voxel size in mm along the RAS axes (X, Y, Z).
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.

    Returns
    -------
    tuple of 2 float
        (row_mm, col_mm): the pixel height and width on screen.

    Raises
    ------
    ValueError
        When `plane` is not one of the three planes.

    Examples
    --------
    >>> pixel_spacing((1.0, 2.0, 3.0), "axial"), pixel_spacing((1.0, 2.0, 3.0), "sagittal")
    ((2.0, 1.0), (3.0, 2.0))
    """
    sx, sy, sz = spacing
    _check_plane(plane)
    return {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[plane]


def display_to_voxel(plane: str, index: int, row: int, col: int, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Return the RAS voxel (i, j, k) shown at screen pixel (row, col) of slice `index`.

    No bounds check: the caller makes sure (row, col) lies inside the slice. Also works
    element-wise on integer arrays of rows and columns.

    Parameters
    ----------
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.
    index : int
        Slice index along the plane's RAS axis.
    row, col : int
        Pixel position in the slice as `slice_view` shows it (0, 0 = top left).
    shape : tuple of int
        Shape (..., X, Y, Z) of the RAS volume.

    Returns
    -------
    tuple of 3 int
        Voxel indices (i, j, k) along the RAS axes.

    Raises
    ------
    ValueError
        When `plane` is not one of the three planes.

    Examples
    --------
    >>> display_to_voxel("axial", 0, 0, 0, (2, 3, 4))  # top left: right-most, most anterior voxel
    (1, 2, 0)
    """
    x, y, z = shape[-3:]
    _check_plane(plane)
    if plane == "axial":
        return (x - 1 - col, y - 1 - row, index)
    if plane == "coronal":
        return (x - 1 - col, index, z - 1 - row)
    return (index, y - 1 - col, z - 1 - row)


def voxel_to_display(plane: str, voxel: tuple[int, int, int], shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Return where a RAS voxel appears in a plane: (slice index, row, col), the inverse of `display_to_voxel`.

    Parameters
    ----------
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.
    voxel : tuple of 3 int
        Voxel indices (i, j, k) along the RAS axes.
    shape : tuple of int
        Shape (..., X, Y, Z) of the RAS volume.

    Returns
    -------
    tuple of 3 int
        The slice index along the plane's axis, then the row and column in that slice's `slice_view`.

    Raises
    ------
    ValueError
        When `plane` is not one of the three planes.

    Examples
    --------
    >>> voxel_to_display("axial", (1, 2, 0), (2, 3, 4))
    (0, 0, 0)
    """
    x, y, z = shape[-3:]
    i, j, k = voxel
    _check_plane(plane)
    if plane == "axial":
        return (k, y - 1 - j, x - 1 - i)
    if plane == "coronal":
        return (j, z - 1 - k, x - 1 - i)
    return (i, z - 1 - k, y - 1 - j)
