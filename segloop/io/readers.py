"""Read scans and label maps from disk into RAS `Volume`s, refusing bad input with a clear message.

Formats: NIfTI (.nii/.nii.gz, nibabel); a DICOM series given as a folder, one of its .dcm files,
or a .zip of it (pydicom, see `segloop.io.dicom`); NRRD/MHA/MHD (SimpleITK, LPS geometry
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
from segloop.io import dicom as dicom_series
from segloop.io.volume import Volume, volume_from_array

NIFTI_SUFFIXES = (".nii.gz", ".nii")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
SCAN_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES

#: Limits for zip uploads (DICOM series): member count and total uncompressed size.
MAX_ZIP_MEMBERS = 10000
MAX_ZIP_BYTES = 4 * 1024**3

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def scan_name(path: str | Path) -> str:
    """Return a file's name without its image extension (`case_001.nii.gz` -> `case_001`).

    Recognised extensions (case-insensitive): .nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd, .zip, .dcm.
    Any folder part of `path` is dropped.

    Parameters
    ----------
    path : str or pathlib.Path
        File (or DICOM folder) path.

    Returns
    -------
    str
        The base name with the extension removed; the base name unchanged when the extension is
        not recognised.

    Examples
    --------
    >>> scan_name("data/imagesTr/case_001.nii.gz")
    'case_001'
    >>> scan_name("brain.NRRD")
    'brain'
    >>> scan_name("notes.txt")
    'notes.txt'
    """
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
    """Load a scan from disk as a float32 `Volume` in RAS voxel order.

    NaN/Inf voxels, 2D/4D data, empty dimensions and scans over the voxel limit are refused, so
    everything downstream can assume a finite 3D volume. Trailing axes of size 1 (e.g. a 4D NIfTI
    with one frame) are squeezed away.

    Parameters
    ----------
    path : str or pathlib.Path
        A NIfTI file (.nii, .nii.gz), an NRRD/MHA/MHD file, a folder holding a DICOM series, one
        .dcm file of a series (the whole series with its SeriesInstanceUID is loaded from its
        folder), or a .zip holding a DICOM series or exactly one NIfTI/NRRD/MHA file.

    Returns
    -------
    Volume
        ``array`` is np.ndarray of float32, shape (X, Y, Z), RAS voxel order; ``affine`` maps RAS
        voxel indices to RAS+ world mm; ``source_affine``/``source_shape`` describe the file's own
        grid; ``name`` is `scan_name(path)`; ``meta`` holds ``format``, ``file_dtype`` and, for DICOM,
        series details and ``warnings``.

    Raises
    ------
    segloop.errors.ScanError
        For any file that cannot be used (missing, unreadable, truncated, unsupported type, not 3D,
        a zero-sized axis or fewer than 2 voxels along an axis, over the SEGLOOP_MAX_VOXELS limit,
        complex or non-numeric voxels, NaN/Inf voxels, degenerate affine), with one sentence naming
        the file.
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
    """Load an uploaded file from its browser file name and bytes, as `load_scan` does for a path.

    The bytes go to a private temporary folder that is removed afterwards, whatever happens. The
    file name is reduced to a safe base name (folders and odd characters dropped), so an upload
    cannot write outside that folder.

    Parameters
    ----------
    name : str
        File name reported by the browser; its extension selects the format (a .zip is a DICOM
        series or a single scan file).
    data : bytes
        The uploaded file's content.

    Returns
    -------
    Volume
        As `load_scan`, with ``source_path`` set to the cleaned file name and
        ``meta["uploaded"] = True``.

    Raises
    ------
    segloop.errors.ScanError
        When `data` is empty, or for any reason `load_scan` gives.
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
    """Convert a label map's values to uint8, or uint16 when a value is above 255, never wrapping.

    Any integer dtype is accepted (int16/int32/int64 label maps are common) as long as every value
    is a whole number in 0..65535; floats are accepted when they hold such whole numbers (label maps
    are often saved as float NIfTI); a float map with fractions is refused, as it is most likely an
    image given by mistake. Values are checked before any cast, so 1002 can never become 234.

    Parameters
    ----------
    data : np.ndarray
        Label values, any shape; bool, integer or float dtype.
    fname : str
        File name used in error messages.

    Returns
    -------
    np.ndarray of uint8 or uint16, same shape as `data`
        A new array with the same values: uint8 when the largest value is below 256, else uint16.

    Raises
    ------
    segloop.errors.ScanError
        On NaN/Inf or non-integer floats, negative values, values above 65535, or a non-numeric
        dtype; the message names `fname` and the offending value.

    Examples
    --------
    >>> import numpy as np
    >>> labels_from_array(np.array([0.0, 1.0, 2.0]), "seg.nii.gz")
    array([0, 1, 2], dtype=uint8)
    >>> labels_from_array(np.array([0, 1002, 2017], np.int32), "seg.nii.gz")
    array([   0, 1002, 2017], dtype=uint16)
    >>> labels_from_array(np.array([0, 70000]), "seg.nii.gz")
    Traceback (most recent call last):
    ...
    segloop.errors.ScanError: seg.nii.gz: label value 70000 is out of range; SegLoop label maps hold whole numbers 0..65535
    """
    data = np.asarray(data)
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)):
            raise ScanError(f"{fname}: label map holds NaN or infinite values")
        fractional = data != np.round(data)
        if fractional.any():
            example = float(data[fractional].flat[0])
            raise ScanError(
                f"{fname}: label map holds non-integer values (e.g. {example:g}); is this an image rather than labels?"
            )
    elif data.dtype.kind not in "iub":
        raise ScanError(f"{fname}: label map of type {data.dtype} is not supported")
    if data.size == 0:
        return data.astype(np.uint8)
    low = data.min()
    if low < 0:
        raise ScanError(
            f"{fname}: label map holds negative values (e.g. {_label_text(low)}); labels must be whole numbers 0..65535"
        )
    top = data.max()
    if top > 65535:
        raise ScanError(
            f"{fname}: label value {_label_text(top)} is out of range; SegLoop label maps hold whole numbers 0..65535"
        )
    return data.astype(np.uint8 if top < 256 else np.uint16)


def _label_text(value: np.generic) -> str:
    """A label value as the user would write it (1002, not 1002.0)."""
    if isinstance(value, (int, np.integer, np.bool_)):
        return str(int(value))
    number = float(value)
    return str(int(number)) if number.is_integer() else f"{number:g}"


def load_label(path: str | Path, reference: Volume | None = None) -> Volume:
    """Load a label map from disk as a uint8/uint16 `Volume` in RAS voxel order.

    Parameters
    ----------
    path : str or pathlib.Path
        Label file in any format `load_scan` reads (usually .nii.gz).
    reference : Volume, optional
        The image the labels belong to; when given, the label map must have the same source shape
        and (within 1e-3 mm) the same source affine, so it cannot be silently misaligned.

    Returns
    -------
    Volume
        ``array`` is np.ndarray of uint8 (uint16 when a value is above 255), shape (X, Y, Z), RAS
        voxel order; geometry and ``meta`` as in `load_scan`.

    Raises
    ------
    segloop.errors.ScanError
        For an unusable file (as `load_scan`), label values that are not whole non-negative numbers
        up to 65535 (see `labels_from_array`), or a grid that differs from `reference`.
    """
    path = Path(path)
    data, affine, header, meta = _guarded(path, "label map")
    data = _check_array(data, "label map", path)
    affine = _check_affine(affine, path.name)
    data = labels_from_array(np.asarray(data), path.name)
    if reference is not None:
        check_same_grid(data.shape, affine, reference, path.name)
    return volume_from_array(data, affine, name=scan_name(path), source_path=str(path), header=header, meta=meta)


def check_same_grid(shape: tuple, affine: np.ndarray, reference: Volume, fname: str) -> None:
    """Check that a label map of `shape` and `affine` lies on the reference image's source grid.

    Parameters
    ----------
    shape : tuple of int
        Shape of the label array in the file's own voxel order; only the first 3 entries are compared.
    affine : np.ndarray of float, shape (4, 4)
        The label file's voxel -> world (mm) affine.
    reference : Volume
        The image; compared with its ``source_shape`` and ``source_affine``.
    fname : str
        Label file name used in error messages.

    Returns
    -------
    None

    Raises
    ------
    segloop.errors.ScanError
        When the shapes differ, or the affines differ by more than ``atol=1e-3, rtol=1e-4``.
    """
    if tuple(shape[:3]) != tuple(reference.source_shape):
        raise ScanError(
            f"{fname}: label map shape {tuple(shape[:3])} does not match the image shape {tuple(reference.source_shape)}"
        )
    if not np.allclose(affine, reference.source_affine, atol=1e-3, rtol=1e-4):
        raise ScanError(f"{fname}: label map is not on the image's grid (their affines differ)")
