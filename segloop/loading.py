"""Read scans and label maps from disk into RAS `Volume`s, refusing bad input with a clear message.

Formats: NIfTI (.nii/.nii.gz, nibabel); a DICOM series given as a folder, one of its .dcm files,
or a .zip of it (pydicom, see `segloop.dicom_series`); NRRD/MHA/MHD (SimpleITK, LPS geometry
converted to a RAS+ affine). `load_scan_bytes` does the same for browser uploads.
Every failure on a bad file is a `ScanError` with one sentence naming the file and the problem.
"""

from __future__ import annotations

import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import nibabel as nib
import numpy as np

from segloop.config import max_voxels
from segloop.errors import ScanError, SegLoopError
from segloop.volume import Volume, volume_from_array

NIFTI_SUFFIXES = (".nii.gz", ".nii")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
SCAN_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES

#: Limits for zip uploads (DICOM series): member count and total uncompressed size.
MAX_ZIP_MEMBERS = 10000
MAX_ZIP_BYTES = 4 * 1024**3

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def scan_name(path: str | Path) -> str:
    """File name without its image extension (`case_001.nii.gz` -> `case_001`)."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES + (".nrrd", ".nhdr", ".mha", ".mhd", ".zip", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _one_line(exc: BaseException, limit: int = 160) -> str:
    """First line of an exception message, shortened: library errors can be pages long."""
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
    if 0 in data.shape:
        raise ScanError(f"{fname}: {what} of shape {tuple(data.shape)} has a zero-sized dimension (no voxels)")
    if data.ndim < 3 or min(data.shape) < 2:
        raise ScanError(f"{fname}: {what} of shape {tuple(data.shape)} is 2D, not a 3D volume (need at least 2 voxels per axis)")
    n = int(np.prod(data.shape, dtype=np.int64))
    if n > max_voxels():
        raise ScanError(
            f"{fname}: {what} has {n:,} voxels, over the limit of {max_voxels():,} (set SEGLOOP_MAX_VOXELS to raise it)"
        )
    return data


def _check_affine(affine: np.ndarray, fname: str) -> np.ndarray:
    affine = np.asarray(affine, dtype=float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ScanError(f"{fname}: the file's affine (voxel-to-world transform) is degenerate")
    return affine


def _nifti_image(path: Path) -> nib.spatialimages.SpatialImage:
    try:
        img = nib.load(str(path))
    except FileNotFoundError:
        raise ScanError(f"{path.name}: file not found") from None
    except Exception as exc:  # nibabel raises many types for garbage input
        raise ScanError(f"{path.name}: not a readable NIfTI file ({_one_line(exc)})") from None
    n = int(np.prod(img.shape, dtype=np.int64))
    if n > max_voxels():  # refuse before reading the data block
        raise ScanError(
            f"{path.name}: {n:,} voxels, over the limit of {max_voxels():,} (set SEGLOOP_MAX_VOXELS to raise it)"
        )
    return img


def _read_nifti(path: Path, what: str) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Header | None]:
    img = _nifti_image(path)
    if len(img.shape) > 3 and any(s != 1 for s in img.shape[3:]):  # before reading all frames
        raise ScanError(f"{path.name}: {len(img.shape)}D {what} of shape {tuple(img.shape)}; SegLoop needs a single 3D volume")
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # truncated gzip, short data block...
        raise ScanError(f"{path.name}: the file is truncated or corrupt ({_one_line(exc)})") from None
    data = _check_array(data, what, path)
    affine = _check_affine(img.affine, path.name)
    header = img.header if isinstance(img.header, nib.Nifti1Header) else None
    return data, affine, header


def _read_itk(path: Path, what: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """NRRD/MHA/MHD through SimpleITK: array in (x, y, z) order and a RAS+ affine."""
    import SimpleITK as sitk

    if not path.is_file():
        raise ScanError(f"{path.name}: file not found")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except Exception as exc:
        raise ScanError(f"{path.name}: not a readable image file ({_one_line(exc)})") from None
    size = tuple(int(s) for s in reader.GetSize())
    if reader.GetNumberOfComponents() != 1:
        raise ScanError(f"{path.name}: {reader.GetNumberOfComponents()}-component (colour/vector) images are not supported")
    if len(size) > 3 and any(s != 1 for s in size[3:]):
        raise ScanError(f"{path.name}: {len(size)}D {what} of size {size}; SegLoop needs a single 3D volume")
    if len(size) < 3:
        raise ScanError(f"{path.name}: {what} of size {size} is 2D, not a 3D volume")
    n = int(np.prod(size, dtype=np.int64))
    if n > max_voxels():
        raise ScanError(f"{path.name}: {n:,} voxels, over the limit of {max_voxels():,} (set SEGLOOP_MAX_VOXELS to raise it)")
    try:
        image = reader.Execute()
    except Exception as exc:
        raise ScanError(f"{path.name}: the file is truncated or corrupt ({_one_line(exc)})") from None
    dim = image.GetDimension()
    data = sitk.GetArrayFromImage(image)  # (.., z, y, x)
    data = np.transpose(data, tuple(range(data.ndim))[::-1])  # (x, y, z, ..)
    direction = np.array(image.GetDirection(), dtype=float).reshape(dim, dim)[:3, :3]
    spacing = np.array(image.GetSpacing(), dtype=float)[:3]
    origin = np.array(image.GetOrigin(), dtype=float)[:3]
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = direction @ np.diag(spacing)
    affine_lps[:3, 3] = origin
    meta = {"format": path.suffix.lstrip(".").upper(), "file_dtype": str(data.dtype)}
    return data, LPS_TO_RAS @ affine_lps, meta


def _read_any(path: Path, what: str) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Header | None, dict]:
    """Dispatch on what `path` is; returns (source-grid array, RAS affine, NIfTI header or None, meta)."""
    from segloop import dicom_series

    lower = path.name.lower()
    if path.is_symlink() and not path.exists():
        raise ScanError(f"{path.name}: file not found (broken link)")
    if path.is_dir():
        data, affine, meta = dicom_series.read_dicom_series(path, max_voxels())
        return data, affine, None, meta
    if not path.exists():
        raise ScanError(f"{path.name}: file not found")
    if lower.endswith(".zip"):
        return _read_zip(path, what)
    if lower.endswith(NIFTI_SUFFIXES):
        data, affine, header = _read_nifti(path, what)
        return data, affine, header, {"format": "NIfTI", "file_dtype": str(header.get_data_dtype()) if header else str(data.dtype)}
    if lower.endswith(ITK_SUFFIXES):
        data, affine, meta = _read_itk(path, what)
        return data, affine, None, meta
    if lower.endswith(".dcm") or dicom_series.is_dicom_file(path):
        import pydicom

        try:
            uid = str(pydicom.dcmread(path, stop_before_pixels=True).get("SeriesInstanceUID", "")) or None
        except Exception as exc:
            raise ScanError(f"{path.name}: not a readable DICOM file ({_one_line(exc)})") from None
        data, affine, meta = dicom_series.read_dicom_series(path.parent, max_voxels(), series_uid=uid)
        return data, affine, None, meta
    raise ScanError(
        f"{path.name}: unsupported file type; use NIfTI (.nii/.nii.gz), NRRD, MHA/MHD, or a DICOM series (folder or .zip)"
    )


def _safe_extract(zip_path: Path, dest: Path) -> None:
    """Extract a zip refusing path traversal, links, too many members or too many bytes."""
    try:
        zf = zipfile.ZipFile(zip_path)
    except Exception as exc:
        raise ScanError(f"{zip_path.name}: not a readable zip file ({_one_line(exc)})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise ScanError(f"{zip_path.name}: the zip holds {len(infos):,} files, over the limit of {MAX_ZIP_MEMBERS:,}")
        total = sum(i.file_size for i in infos)
        if total > MAX_ZIP_BYTES:
            raise ScanError(f"{zip_path.name}: the zip unpacks to {total:,} bytes, over the limit of {MAX_ZIP_BYTES:,}")
        for info in infos:
            name = info.filename.replace("\\", "/")
            parts = PurePosixPath(name).parts
            if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
                raise ScanError(f"{zip_path.name}: the zip contains an unsafe path ({info.filename!r}); refusing to unpack it")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ScanError(f"{zip_path.name}: the zip contains a symbolic link ({info.filename!r}); refusing to unpack it")
        written = 0
        for info in infos:
            if info.is_dir():
                continue
            target = dest.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > MAX_ZIP_BYTES:
                            raise ScanError(f"{zip_path.name}: the zip unpacks to more than {MAX_ZIP_BYTES:,} bytes")
                        out.write(chunk)
            except SegLoopError:
                raise
            except Exception as exc:
                raise ScanError(f"{zip_path.name}: the zip is corrupt ({_one_line(exc)})") from None


def _read_zip(path: Path, what: str) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Header | None, dict]:
    """A zip upload: a DICOM series, or a single NIfTI/NRRD/MHA file."""
    from segloop import dicom_series

    with tempfile.TemporaryDirectory(prefix="segloop-zip-") as tmp:
        root = Path(tmp)
        _safe_extract(path, root)
        if dicom_series.dicom_files(root):
            data, affine, meta = dicom_series.read_dicom_series(root, max_voxels())
            return data, affine, None, meta
        scans = [p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES + (".nrrd", ".mha"))]
        if len(scans) == 1:
            data, affine, header, meta = _read_any(scans[0], what)
            return np.array(data), affine, header, meta
        raise ScanError(f"{path.name}: the zip holds no DICOM series and not exactly one scan file")


def _guarded(path: Path, what: str) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Header | None, dict]:
    """`_read_any` with every unexpected failure turned into a one-line ScanError."""
    try:
        return _read_any(path, what)
    except SegLoopError:
        raise
    except MemoryError:
        raise ScanError(f"{path.name}: not enough memory to load this {what}") from None
    except Exception as exc:
        raise ScanError(f"{path.name}: could not be read ({_one_line(exc)})") from None


def load_scan(path: str | Path) -> Volume:
    """Load an image (NIfTI, DICOM series folder/.dcm/.zip, NRRD, MHA/MHD) as float32 in RAS order.

    NaN/Inf voxels, 2D/4D data, empty dimensions and scans over the voxel limit are refused.
    """
    path = Path(path)
    data, affine, header, meta = _guarded(path, "image")
    data = _check_array(data, "image", path)
    if np.iscomplexobj(data):
        raise ScanError(f"{path.name}: complex-valued images are not supported")
    if data.dtype.kind not in "iufb":
        raise ScanError(f"{path.name}: voxels of type {data.dtype} are not numbers")
    data = data.astype(np.float32, copy=False)
    bad = ~np.isfinite(data)
    if bad.any():
        raise ScanError(f"{path.name}: {int(bad.sum()):,} voxels are NaN or infinite")
    affine = _check_affine(affine, path.name)
    return volume_from_array(data, affine, name=scan_name(path), source_path=str(path), header=header, meta=meta)


def _upload_filename(name: str) -> str:
    base = PurePosixPath(str(name).replace("\\", "/")).name.strip()
    base = "".join(c for c in base if c.isalnum() or c in "._- ")
    return base.lstrip(".") or "upload"


def load_scan_bytes(name: str, data: bytes) -> Volume:
    """Load an uploaded file (its browser file name and bytes); a .zip is a DICOM series.

    The bytes go to a private temporary folder that is removed afterwards, whatever happens.
    """
    fname = _upload_filename(name)
    if not data:
        raise ScanError(f"{fname}: the uploaded file is empty")
    tmp = Path(tempfile.mkdtemp(prefix="segloop-upload-"))
    try:
        path = tmp / fname
        path.write_bytes(data)
        vol = load_scan(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    vol.source_path = fname
    vol.meta["uploaded"] = True
    return vol


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
    data, affine, header, meta = _guarded(path, "label map")
    data = _check_array(data, "label map", path)
    affine = _check_affine(affine, path.name)
    data = labels_from_array(np.asarray(data), path.name)
    if reference is not None:
        check_same_grid(data.shape, affine, reference, path.name)
    return volume_from_array(data, affine, name=scan_name(path), source_path=str(path), header=header, meta=meta)


def check_same_grid(shape: tuple, affine: np.ndarray, reference: Volume, fname: str) -> None:
    """Raise ScanError unless a label of `shape`/`affine` lies on the reference image's grid."""
    if tuple(shape[:3]) != tuple(reference.source_shape):
        raise ScanError(
            f"{fname}: label map shape {tuple(shape[:3])} does not match the image shape {tuple(reference.source_shape)}"
        )
    if not np.allclose(affine, reference.source_affine, atol=1e-3, rtol=1e-4):
        raise ScanError(f"{fname}: label map is not on the image's grid (their affines differ)")
