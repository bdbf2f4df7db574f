"""Write label maps as NIfTI on the reference scan's ORIGINAL grid, so they overlay in 3D Slicer/ITK-SNAP.

The label arrives in SegLoop's RAS voxel order; it is put back into the scan file's own voxel
order (`Volume.to_source`) and written with the scan's own affine (`Volume.source_affine`). For a
NIfTI reference the qform/sform codes are copied, so other tools pick the same transform.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np

from segloop.errors import SegLoopError
from segloop.io.atomic import atomic_write_bytes
from segloop.io.readers import labels_from_array
from segloop.io.volume import Volume


def label_nifti_image(label_ras: np.ndarray, reference: Volume) -> nib.Nifti1Image:
    """Build the NIfTI image of a label map on the reference scan's source grid.

    The labels are put back into the scan file's voxel order and given the scan's own affine as
    both qform and sform, with the scan's qform/sform codes when it was NIfTI (else code 1,
    "scanner"), so other tools overlay it on the original file without resampling.

    Parameters
    ----------
    label_ras : np.ndarray, shape (X, Y, Z)
        Label values in RAS voxel order on `reference`'s grid; whole non-negative numbers up to 65535.
    reference : Volume
        The scan the labels belong to.

    Returns
    -------
    nibabel.Nifti1Image
        Data of uint8 (uint16 when a value is above 255), shape ``reference.source_shape``; units mm.

    Raises
    ------
    segloop.errors.SegLoopError
        When `label_ras` does not have the reference's shape.
    segloop.errors.ScanError
        When the values are not valid labels (see `segloop.io.readers.labels_from_array`).
    """
    label_ras = np.asarray(label_ras)
    if tuple(label_ras.shape) != reference.shape:
        raise SegLoopError(f"label shape {tuple(label_ras.shape)} does not match the scan shape {reference.shape}")
    data = labels_from_array(label_ras, reference.name or "label map")
    src = reference.to_source(data)
    affine = np.asarray(reference.source_affine, dtype=float)
    img = nib.Nifti1Image(src, affine)
    qcode, scode = 1, 1  # "scanner" when the scan was not NIfTI (DICOM, NRRD...: world = scanner RAS)
    if isinstance(reference.header, nib.Nifti1Header):
        qcode = int(reference.header["qform_code"])
        scode = int(reference.header["sform_code"])
    img.set_qform(affine, code=qcode)
    img.set_sform(affine, code=scode)
    img.header.set_data_dtype(src.dtype)
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = b"SegLoop label map"
    return img


def _encode(img: nib.Nifti1Image, compress: bool) -> bytes:
    raw = img.to_bytes()
    return gzip.compress(raw, compresslevel=6, mtime=0) if compress else raw


def label_nifti_bytes(label_ras: np.ndarray, reference: Volume) -> bytes:
    """Encode a label map as the gzipped NIfTI bytes `save_label` would write, for a download button.

    Same code path as `save_label`, so a downloaded file and a saved one are identical.

    Parameters
    ----------
    label_ras : np.ndarray, shape (X, Y, Z)
        Label values in RAS voxel order on `reference`'s grid.
    reference : Volume
        The scan the labels belong to.

    Returns
    -------
    bytes
        A .nii.gz file (gzip with mtime 0, so the same labels always give the same bytes).

    Raises
    ------
    segloop.errors.SegLoopError
        As `label_nifti_image`.
    """
    return _encode(label_nifti_image(label_ras, reference), compress=True)


def save_label(label_ras: np.ndarray, reference: Volume, path: str | Path) -> Path:
    """Write a label map to a NIfTI file on the reference scan's original grid, atomically.

    Parameters
    ----------
    label_ras : np.ndarray, shape (X, Y, Z)
        Label values in RAS voxel order on `reference`'s grid.
    reference : Volume
        The scan the labels belong to; its source grid and affine are used (see `label_nifti_image`).
    path : str or pathlib.Path
        Target file, ending in .nii.gz (gzipped) or .nii (case-insensitive); replaced if it exists.

    Returns
    -------
    pathlib.Path
        `path`, as a Path.

    Raises
    ------
    segloop.errors.SegLoopError
        When `path` does not end in .nii or .nii.gz, or as `label_nifti_image`.
    OSError
        When the file cannot be written (a previous file is then left intact).
    """
    path = Path(path)
    lower = path.name.lower()
    if not lower.endswith((".nii.gz", ".nii")):
        raise SegLoopError(f"{path.name}: label maps are saved as NIfTI; use a .nii.gz file name")
    data = _encode(label_nifti_image(label_ras, reference), compress=lower.endswith(".gz"))
    atomic_write_bytes(path, data)
    return path


def write_csv(path: str | Path, rows: list[dict]) -> Path:
    """Write a table as CSV, atomically: a crash leaves the previous file or none, never half a table.

    Parameters
    ----------
    path : path
        The CSV file to write (its folder is created).
    rows : list of dict
        One dict per row; the columns are the union of their keys in first-seen order, and a row
        lacking a column leaves that cell empty.

    Returns
    -------
    Path
        `path`.
    """
    atomic_write_bytes(path, csv_text(rows).encode())
    return Path(path)


def csv_text(rows: list[dict]) -> str:
    """A table as CSV text (what `write_csv` writes), e.g. for a download button.

    Parameters
    ----------
    rows : list of dict
        As in `write_csv`.

    Returns
    -------
    str
        A header line, then one line per row, each ending in a newline.

    Examples
    --------
    >>> csv_text([{"a": 1, "b": "x,y"}, {"a": 2}]).splitlines()
    ['a,b', '1,"x,y"', '2,']
    """
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
