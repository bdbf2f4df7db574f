"""Read scans and label maps from disk into RAS `Volume`s, refusing bad input with a clear message."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from segloop.config import max_voxels
from segloop.errors import ScanError
from segloop.volume import Volume, volume_from_array

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def scan_name(path: str | Path) -> str:
    """File name without its image extension (`case_001.nii.gz` -> `case_001`)."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES + (".nrrd", ".nhdr", ".mha", ".mhd", ".zip", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_array(data: np.ndarray, what: str, path: str | Path) -> np.ndarray:
    """Squeeze to 3D and check size; raises ScanError with a one-line reason."""
    fname = Path(path).name
    if data.ndim > 3:
        extra = data.shape[3:]
        if all(s == 1 for s in extra):
            data = data.reshape(data.shape[:3])
        else:
            raise ScanError(
                f"{fname}: {data.ndim}D {what} of shape {tuple(data.shape)}; SegLoop needs a single 3D volume"
            )
    if data.ndim < 3 or min(data.shape) < 2:
        raise ScanError(f"{fname}: {what} of shape {tuple(data.shape)} is not a 3D volume (need at least 2 voxels per axis)")
    n = int(np.prod(data.shape, dtype=np.int64))
    if n > max_voxels():
        raise ScanError(
            f"{fname}: {what} has {n:,} voxels, over the limit of {max_voxels():,} (set SEGLOOP_MAX_VOXELS to raise it)"
        )
    return data


def _nifti_image(path: Path) -> nib.spatialimages.SpatialImage:
    try:
        img = nib.load(str(path))
    except FileNotFoundError:
        raise ScanError(f"{path.name}: file not found") from None
    except Exception as exc:  # nibabel raises many types for garbage input
        raise ScanError(f"{path.name}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    n = int(np.prod(img.shape, dtype=np.int64))
    if n > max_voxels():  # refuse before reading the data block
        raise ScanError(
            f"{path.name}: {n:,} voxels, over the limit of {max_voxels():,} (set SEGLOOP_MAX_VOXELS to raise it)"
        )
    return img


def _read_nifti(path: Path, what: str) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Header | None]:
    img = _nifti_image(path)
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # truncated gzip, short data block...
        raise ScanError(f"{path.name}: the file is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    data = _check_array(data, what, path)
    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ScanError(f"{path.name}: the file's affine (voxel-to-world transform) is degenerate")
    header = img.header if isinstance(img.header, nib.Nifti1Header) else None
    return data, affine, header


def load_scan(path: str | Path) -> Volume:
    """Load an image (NIfTI) as float32 in RAS order; NaN/Inf voxels are refused."""
    path = Path(path)
    data, affine, header = _read_nifti(path, "image")
    if np.iscomplexobj(data):
        raise ScanError(f"{path.name}: complex-valued images are not supported")
    data = data.astype(np.float32, copy=False)
    bad = ~np.isfinite(data)
    if bad.any():
        raise ScanError(f"{path.name}: {int(bad.sum()):,} voxels are NaN or infinite")
    return volume_from_array(data, affine, name=scan_name(path), source_path=str(path), header=header)


def labels_from_array(data: np.ndarray, fname: str) -> np.ndarray:
    """Label values as uint8 (or uint16 if needed); floats must hold whole non-negative numbers."""
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)):
            raise ScanError(f"{fname}: label map holds NaN or infinite values")
        if not np.array_equal(data, np.round(data)):
            raise ScanError(f"{fname}: label map holds non-integer values; is this an image rather than labels?")
    elif data.dtype.kind not in "iub":
        raise ScanError(f"{fname}: label map of type {data.dtype} is not supported")
    if data.size and data.min() < 0:
        raise ScanError(f"{fname}: label map holds negative values")
    top = int(data.max()) if data.size else 0
    if top > 65535:
        raise ScanError(f"{fname}: label value {top} is out of range")
    return data.astype(np.uint8 if top < 256 else np.uint16)


def load_label(path: str | Path, reference: Volume | None = None) -> Volume:
    """Load a label map in RAS order; with `reference`, it must lie on the same grid as the image."""
    path = Path(path)
    data, affine, header = _read_nifti(path, "label map")
    data = labels_from_array(np.asarray(data), path.name)
    if reference is not None:
        check_same_grid(data.shape, affine, reference, path.name)
    return volume_from_array(data, affine, name=scan_name(path), source_path=str(path), header=header)


def check_same_grid(shape: tuple, affine: np.ndarray, reference: Volume, fname: str) -> None:
    """Raise ScanError unless a label of `shape`/`affine` lies on the reference image's grid."""
    if tuple(shape[:3]) != tuple(reference.source_shape):
        raise ScanError(
            f"{fname}: label map shape {tuple(shape[:3])} does not match the image shape {tuple(reference.source_shape)}"
        )
    if not np.allclose(affine, reference.source_affine, atol=1e-3, rtol=1e-4):
        raise ScanError(f"{fname}: label map is not on the image's grid (their affines differ)")
