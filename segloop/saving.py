"""Write label maps as NIfTI on the reference scan's ORIGINAL grid, so they overlay in 3D Slicer/ITK-SNAP.

The label arrives in SegLoop's RAS voxel order; it is put back into the scan file's own voxel
order (`Volume.to_source`) and written with the scan's own affine (`Volume.source_affine`). For a
NIfTI reference the qform/sform codes are copied, so other tools pick the same transform.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

from segloop.atomic_io import atomic_write_bytes
from segloop.errors import SegLoopError
from segloop.loading import labels_from_array
from segloop.volume import Volume


def label_nifti_image(label_ras: np.ndarray, reference: Volume) -> nib.Nifti1Image:
    """The label map as a NIfTI image on the reference's source grid (uint8, or uint16 above 255)."""
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
    """The .nii.gz bytes of `save_label` (same code path), for a download button."""
    return _encode(label_nifti_image(label_ras, reference), compress=True)


def save_label(label_ras: np.ndarray, reference: Volume, path: str | Path) -> Path:
    """Write a label map (RAS order, on `reference`'s grid) to `path` (.nii.gz or .nii), atomically."""
    path = Path(path)
    lower = path.name.lower()
    if not lower.endswith((".nii.gz", ".nii")):
        raise SegLoopError(f"{path.name}: label maps are saved as NIfTI; use a .nii.gz file name")
    data = _encode(label_nifti_image(label_ras, reference), compress=lower.endswith(".gz"))
    atomic_write_bytes(path, data)
    return path
