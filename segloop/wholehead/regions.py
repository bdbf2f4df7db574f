"""Boxes around anatomy in MNI space: cutting them out of a registered scan and putting results back.

A box is ((x0, x1), (y0, y1), (z0, z1)) in MNI millimetres (RAS+: x < 0 is the subject's left).
`extract_box` samples the scan on a grid aligned with the MNI axes, so every crop has the same
orientation (RAS voxel order) whatever the head position; `box_to_scan` maps a crop's class
probabilities back onto the scan's own grid.

The hippocampus boxes themselves are defined once, with their justification, in `segloop.data.mni`.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

from segloop.data.mni import Box

#: Pairs of indices into `box_corners_in_scan`'s corners joined by the box's 12 edges.
BOX_EDGES: tuple[tuple[int, int], ...] = tuple(
    (a, b) for a, b in itertools.combinations(range(8), 2) if (a ^ b).bit_count() == 1)


def box_grid(box_mm: Box, spacing_mm: float = 1.0) -> tuple[tuple[int, int, int], np.ndarray]:
    """The voxel grid that tiles a box.

    Returns
    -------
    shape : tuple of int
        Voxels along MNI x, y, z: round(box side / spacing_mm).
    crop_to_mni : np.ndarray
        float64 (4, 4): crop voxel index -> MNI mm; voxel centres sit half a voxel inside the box faces.
    """
    lo = np.array([b[0] for b in box_mm], dtype=float)
    hi = np.array([b[1] for b in box_mm], dtype=float)
    shape = tuple(int(n) for n in np.maximum(np.round((hi - lo) / spacing_mm), 1))
    crop_to_mni = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    crop_to_mni[:3, 3] = lo + spacing_mm / 2.0
    return shape, crop_to_mni


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A 4x4 affine applied to (N, 3) points."""
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def _region(vox: np.ndarray, shape: tuple[int, ...], margin: int = 1) -> tuple[slice, slice, slice] | None:
    """Slices of the grid covering voxel coordinates `vox` (N, 3), clipped to `shape`; None if outside."""
    lo = np.maximum(np.floor(vox.min(axis=0)).astype(int) - margin, 0)
    hi = np.minimum(np.ceil(vox.max(axis=0)).astype(int) + margin + 1, np.array(shape[:3]))
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))  # type: ignore[return-value]


def _corners(box_mm: Box) -> np.ndarray:
    return np.array(list(itertools.product(*box_mm)), dtype=float)


def extract_box(array: np.ndarray, affine: np.ndarray, scan_to_mni: np.ndarray, box_mm: Box,
                spacing_mm: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Sample a box defined in MNI space out of a scan.

    Parameters
    ----------
    array : np.ndarray
        Scan, shape (X, Y, Z), any real dtype.
    affine : np.ndarray
        float (4, 4): scan voxel -> scan world mm (RAS+).
    scan_to_mni : np.ndarray
        float (4, 4): scan world mm -> MNI mm, from `register_to_template`.
    box_mm : Box
        ((x0, x1), (y0, y1), (z0, z1)) in MNI mm.
    spacing_mm : float
        Crop voxel size in MNI mm. For a head smaller than the template, 1 MNI mm is less than 1 mm
        of the subject: the crop shows the anatomy at template scale.

    Returns
    -------
    crop : np.ndarray
        float32 (nx, ny, nz) (see `box_grid`), RAS voxel order along the MNI axes; trilinear
        interpolation of the scan; 0 where the box leaves the scan's field of view.
    crop_affine : np.ndarray
        float64 (4, 4): crop voxel -> scan world mm. Use it as the crop's affine (e.g. to save it)
        and pass it to `box_to_scan`.
    """
    shape, crop_to_mni = box_grid(box_mm, spacing_mm)
    crop_affine = np.linalg.inv(scan_to_mni) @ crop_to_mni
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    vox = _apply(np.linalg.inv(affine) @ crop_affine, grid)
    region = _region(vox, array.shape)
    if region is None:
        return np.zeros(shape, np.float32), crop_affine
    # Interpolating from the few voxels around the box, not the whole head, keeps this ~10 ms.
    sub = np.asarray(array[region], dtype=np.float32)
    offset = np.array([s.start for s in region])
    crop = ndimage.map_coordinates(sub, (vox - offset).T, order=1, mode="constant", cval=0.0)
    return crop.reshape(shape).astype(np.float32, copy=False), crop_affine


def box_to_scan(prob: np.ndarray, crop_affine: np.ndarray, scan_shape: tuple[int, ...],
                scan_affine: np.ndarray) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Put a crop's class probabilities back onto the scan grid, over the box's footprint only.

    Parameters
    ----------
    prob : np.ndarray
        float (C, nx, ny, nz) probabilities on the crop grid; channel 0 is background.
    crop_affine : np.ndarray
        float (4, 4): crop voxel -> scan world mm, as returned by `extract_box`.
    scan_shape : tuple of int
        (X, Y, Z) of the scan.
    scan_affine : np.ndarray
        float (4, 4): scan voxel -> scan world mm.

    Returns
    -------
    region : tuple of slice
        Where the result goes in the scan: ``full[:, region[0], region[1], region[2]] = values``.
        Empty slices when the box lies outside the scan.
    values : np.ndarray
        float32 (C, *region shape): trilinear interpolation of `prob` at the scan voxels; beyond the
        crop's outermost voxel centres background is 1 and the other channels 0, so every voxel
        still sums to 1 when the crop's channels do.
    """
    shape = prob.shape[1:]
    crop_corners = np.array(list(itertools.product(*[(-0.5, n - 0.5) for n in shape])))
    crop_to_voxel = np.linalg.inv(scan_affine) @ crop_affine
    corners = _apply(crop_to_voxel, crop_corners)
    region = _region(corners, scan_shape, margin=0)
    if region is None:
        return (slice(0, 0),) * 3, np.zeros((prob.shape[0], 0, 0, 0), np.float32)  # type: ignore[return-value]
    idx = np.stack(np.meshgrid(*[np.arange(s.start, s.stop, dtype=float) for s in region], indexing="ij"), axis=-1)
    coords = _apply(np.linalg.inv(crop_to_voxel), idx.reshape(-1, 3)).T
    out = np.empty((prob.shape[0], *idx.shape[:3]), np.float32)
    for c in range(prob.shape[0]):
        out[c] = ndimage.map_coordinates(np.asarray(prob[c], dtype=np.float32), coords, order=1, mode="constant",
                                         cval=1.0 if c == 0 else 0.0).reshape(idx.shape[:3])
    return region, out  # type: ignore[return-value]


def box_corners_in_scan(box_mm: Box, scan_affine: np.ndarray, scan_to_mni: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where a box lies in the scan, for drawing its outline and centring the viewer on it.

    Returns
    -------
    corners : np.ndarray
        float64 (8, 3) scan voxel coordinates (may fall outside the scan) of the box corners, in the
        order of ``itertools.product((x0, x1), (y0, y1), (z0, z1))``; `BOX_EDGES` lists the edges.
    centre : np.ndarray
        float64 (3,) scan voxel coordinates of the box centre.
    """
    corners = _apply(np.linalg.inv(scan_to_mni @ scan_affine), _corners(box_mm))
    return corners, corners.mean(axis=0)
