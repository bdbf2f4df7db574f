"""Read a DICOM series (a folder of slice files) into a source-grid array and a RAS+ affine.

Geometry follows the DICOM standard (PS3.3 C.7.6.2): ImageOrientationPatient gives the row and
column directions, ImagePositionPatient the centre of each slice's first voxel, PixelSpacing the
(row, column) spacing, all in the patient's LPS+ frame. Slices are sorted along the slice normal
(row x column), the slice step is taken from the sorted positions, and the affine is flipped to
RAS+ (x and y negated) so it means the same as a NIfTI affine.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from segloop.errors import ScanError

#: Stop looking after this many files in one folder tree (a guard against pointing at `/`).
MAX_DICOM_FILES = 20000

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_dicom_file(path: str | Path) -> bool:
    """True when the file carries the DICOM 'DICM' marker after its 128-byte preamble."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def dicom_files(folder: str | Path) -> list[Path]:
    """DICOM files under `folder` (recursively, symlinks not followed), sorted by path."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for fname in sorted(files):
            if fname.startswith("."):
                continue
            p = Path(root) / fname
            if not p.is_symlink() and is_dicom_file(p):
                found.append(p)
                if len(found) > MAX_DICOM_FILES:
                    raise ScanError(f"{Path(folder).name}: more than {MAX_DICOM_FILES:,} DICOM files; point at one series")
    return found


def _series_key(ds) -> tuple:
    iop = tuple(round(float(v), 4) for v in ds.get("ImageOrientationPatient", []) or [])
    return (str(ds.get("SeriesInstanceUID", "")), iop, int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0))


def read_dicom_series(
    folder: str | Path, max_voxels: int, series_uid: str | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Load the (largest) series in `folder`: returns (array in [column, row, slice] order, RAS affine, meta).

    The array is float32 with RescaleSlope/RescaleIntercept applied. `meta` holds the file dtype,
    modality, series description/UID, slice count, and `warnings` (e.g. other series skipped).
    """
    import pydicom

    folder = Path(folder)
    files = dicom_files(folder)
    if not files:
        raise ScanError(f"{folder.name}: no DICOM files found in this folder")
    groups: dict[tuple, list] = defaultdict(list)
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:
            continue  # a damaged file is ignored if the rest of the series is fine
        if "Rows" not in ds or "Columns" not in ds:
            continue  # DICOMDIR, structured reports, presentation states...
        if series_uid and str(ds.get("SeriesInstanceUID", "")) != series_uid:
            continue
        groups[_series_key(ds)].append((f, ds))
    if not groups:
        raise ScanError(f"{folder.name}: no DICOM image slices found (only non-image DICOM objects or unreadable files)")
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    key, members = ordered[0]
    warnings = []
    if len(ordered) > 1:
        warnings.append(
            f"the folder holds {len(ordered)} DICOM series; loaded the largest ({len(members)} slices) and skipped "
            f"{sum(len(m) for _, m in ordered[1:])} other file(s)"
        )
    first = members[0][1]
    n_frames = int(first.get("NumberOfFrames", 1) or 1)
    if n_frames > 1:
        raise ScanError(f"{folder.name}: multi-frame (enhanced) DICOM is not supported; export the series as classic slices or NIfTI")
    if "ImageOrientationPatient" not in first or "ImagePositionPatient" not in first:
        raise ScanError(f"{folder.name}: DICOM slices lack ImagePositionPatient/ImageOrientationPatient, so their 3D geometry is unknown")
    if len(members) < 2:
        raise ScanError(f"{folder.name}: the DICOM series has a single slice; SegLoop needs a 3D volume")

    iop = np.array([float(v) for v in first.ImageOrientationPatient], dtype=float)
    row_dir, col_dir = iop[:3], iop[3:]  # row_dir: along a row (increasing column index)
    normal = np.cross(row_dir, col_dir)
    if np.linalg.norm(normal) < 1e-3:
        raise ScanError(f"{folder.name}: ImageOrientationPatient is degenerate")
    normal /= np.linalg.norm(normal)
    try:
        positions = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in members])
    except Exception:
        raise ScanError(f"{folder.name}: some slices lack a valid ImagePositionPatient") from None
    depth = positions @ normal
    order = np.argsort(depth, kind="stable")
    members = [members[i] for i in order]
    positions, depth = positions[order], depth[order]
    gaps = np.diff(depth)
    if np.any(gaps < 1e-4):
        raise ScanError(f"{folder.name}: several slices share the same position; is this more than one series or a time series?")
    if gaps.max() - gaps.min() > max(1e-2, 0.05 * gaps.mean()):
        raise ScanError(
            f"{folder.name}: slices are unevenly spaced ({gaps.min():.3g} to {gaps.max():.3g} mm), missing slices?"
        )
    rows, cols = int(first.Rows), int(first.Columns)
    n_vox = rows * cols * len(members)
    if n_vox > max_voxels:
        raise ScanError(f"{folder.name}: {n_vox:,} voxels, over the limit of {max_voxels:,} (set SEGLOOP_MAX_VOXELS to raise it)")
    ps = [float(v) for v in first.get("PixelSpacing", [1.0, 1.0])]  # (between rows, between columns)
    step = (positions[-1] - positions[0]) / (len(members) - 1)

    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * ps[1]  # array axis 0 = column index j
    affine_lps[:3, 1] = col_dir * ps[0]  # array axis 1 = row index i
    affine_lps[:3, 2] = step
    affine_lps[:3, 3] = positions[0]

    volume = np.empty((cols, rows, len(members)), dtype=np.float32)
    file_dtype = ""
    for k, (f, _) in enumerate(members):
        try:
            ds = pydicom.dcmread(f)
            pix = ds.pixel_array
        except Exception as exc:
            raise ScanError(f"{f.name}: cannot decode the DICOM pixel data ({type(exc).__name__})") from None
        if pix.shape != (rows, cols):
            raise ScanError(f"{f.name}: slice of shape {pix.shape} in a series of {rows}x{cols} slices")
        file_dtype = str(pix.dtype)
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        volume[:, :, k] = (pix.astype(np.float32) * slope + intercept).T
    meta = {
        "format": "DICOM",
        "file_dtype": file_dtype,
        "modality": str(first.get("Modality", "")),
        "series_description": str(first.get("SeriesDescription", "")),
        "series_uid": key[0],
        "n_slices": len(members),
        "slice_spacing_mm": float(np.mean(gaps)),
        "warnings": warnings,
    }
    return volume, LPS_TO_RAS @ affine_lps, meta
