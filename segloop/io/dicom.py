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
    """Tell whether a file is a DICOM Part 10 file: the 'DICM' marker after its 128-byte preamble.

    Only the first 132 bytes are read, so this is cheap enough to run on every file of a folder.

    Parameters
    ----------
    path : str or pathlib.Path
        File to test.

    Returns
    -------
    bool
        True when bytes 128..131 are ``b"DICM"``; False for shorter files, other files and files
        that cannot be opened (missing, a folder, no permission).
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def dicom_files(folder: str | Path) -> list[Path]:
    """List the DICOM files under a folder, recursively, sorted by path.

    Hidden files (name starting with '.') and symbolic links are skipped; a file counts as DICOM
    when `is_dicom_file` says so, whatever its extension.

    Parameters
    ----------
    folder : str or pathlib.Path
        Folder to search (sub-folders included).

    Returns
    -------
    list of pathlib.Path
        The DICOM files, folder by folder in sorted order and sorted by name within a folder;
        empty when there are none (or `folder` does not exist).

    Raises
    ------
    segloop.errors.ScanError
        When more than `MAX_DICOM_FILES` DICOM files are found (a guard against pointing at `/`).
    """
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


def _stored_dtype(ds) -> str:
    """The numpy dtype of the stored pixels, from the header (BitsAllocated, PixelRepresentation)."""
    bits = int(ds.get("BitsAllocated", 16) or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    return f"{'int' if signed else 'uint'}{bits}"


def read_dicom_series(
    folder: str | Path, max_voxels: int, series_uid: str | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Load the largest DICOM series in a folder as a source-grid array and a RAS+ affine.

    Headers are read with pydicom first, so that mixed series, missing geometry and uneven slices get a
    clear message; the pixels are decoded by SimpleITK/GDCM (compressed series too). Slices are grouped
    by (SeriesInstanceUID, orientation, rows, columns); the group with most slices is loaded and the
    others are reported in ``meta["warnings"]``. Unreadable files and non-image objects (DICOMDIR,
    structured reports...) are skipped.

    Parameters
    ----------
    folder : str or pathlib.Path
        Folder holding the slice files (searched recursively, see `dicom_files`).
    max_voxels : int
        Largest number of voxels accepted (rows x columns x slices).
    series_uid : str, optional
        When given, only slices with this SeriesInstanceUID are considered.

    Returns
    -------
    volume : np.ndarray of float32, shape (columns, rows, slices)
        Voxel values with RescaleSlope/RescaleIntercept applied, C-contiguous, in the file's own
        voxel order: axis 0 along a row (column index), axis 1 down a column (row index), axis 2
        along the slice normal in increasing position. Not reordered to RAS; see
        `segloop.io.volume.to_ras`.
    affine : np.ndarray of float64, shape (4, 4)
        Voxel index -> RAS+ world position in mm (the LPS geometry of the headers with x and y
        negated), the same meaning as a NIfTI affine.
    meta : dict
        ``format`` ("DICOM"), ``file_dtype`` (stored pixel type, e.g. "int16"), ``modality``,
        ``series_description``, ``series_uid``, ``n_slices`` (int), ``slice_spacing_mm`` (float, mean
        gap between slice positions) and ``warnings`` (list of str).

    Raises
    ------
    segloop.errors.ScanError
        When the folder holds no image slices, the series is multi-frame or has a single slice,
        geometry tags are missing or degenerate, slices share a position or are unevenly spaced
        (missing slices), the series is over `max_voxels`, or the pixel data cannot be decoded.
    """
    # imported here: loading NIfTI (and training, which only reads NIfTI) then needs neither library
    import pydicom
    import SimpleITK as sitk

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

    # Pixel data through SimpleITK/GDCM, which decodes compressed transfer syntaxes (JPEG, JPEG-LS,
    # JPEG 2000, RLE) and applies RescaleSlope/Intercept; the file order is the geometric one found above.
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f, _ in members])
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else type(exc).__name__
        raise ScanError(f"{folder.name}: cannot decode the DICOM pixel data ({reason})") from None
    pixels = sitk.GetArrayViewFromImage(image)  # (slice, row, column)
    if pixels.shape != (len(members), rows, cols):
        raise ScanError(f"{folder.name}: slices of shape {pixels.shape[1:]} in a series of {rows}x{cols} slices")
    file_dtype = _stored_dtype(first)
    volume = np.ascontiguousarray(pixels.transpose(2, 1, 0), dtype=np.float32)
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
