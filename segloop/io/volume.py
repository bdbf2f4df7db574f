"""A 3D scan or label map held in canonical RAS voxel order, with what is needed to go back.

Every array SegLoop works on (display, inference, editing, training) is in RAS order:
axis 0 runs Left->Right, axis 1 Posterior->Anterior, axis 2 Inferior->Superior. The source
file's own grid and affine are kept, so anything saved later lines up with the original file
in other tools (3D Slicer, ITK-SNAP).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)

RAS = axcodes2ornt(("R", "A", "S"))


@dataclass
class Volume:
    """A 3D array in RAS voxel order plus its geometry and where it came from.

    Parameters
    ----------
    array : np.ndarray, shape (X, Y, Z)
        Voxel values in RAS order (float32 for scans, uint8/uint16 for label maps).
    affine : np.ndarray of float, shape (4, 4)
        RAS voxel index -> RAS+ world position in mm.
    source_affine : np.ndarray of float, shape (4, 4)
        The file's own voxel -> RAS+ world affine, kept to write results back on the file's grid.
    source_shape : tuple of 3 int
        Shape of the array in the file's own voxel order.
    name : str, optional
        Display name, usually the file name without extension.
    source_path : str, optional
        Where the data came from (a path, or the file name of an upload).
    header : nibabel.Nifti1Header, optional
        The NIfTI header when the source was NIfTI, else None.
    meta : dict, optional
        Loader facts: ``format``, ``file_dtype``, DICOM details, ``warnings``...
    """

    array: np.ndarray
    affine: np.ndarray  # voxel (RAS order) -> world mm, RAS+ world
    source_affine: np.ndarray  # the file's own affine
    source_shape: tuple[int, int, int]
    name: str = ""
    source_path: str = ""
    header: nib.Nifti1Header | None = None
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the RAS array, as a tuple of 3 Python ints (X, Y, Z)."""
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the RAS axes (tuple of 3 float), the column norms of the affine."""
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]

    @property
    def source_orientation(self) -> str:
        """Axis codes of the file's own voxel order (str of 3 letters), e.g. 'LPS' for most DICOM."""
        return "".join(nib.aff2axcodes(self.source_affine))

    def to_source(self, array_ras: np.ndarray) -> np.ndarray:
        """Put an array on this volume's RAS grid back into the source file's voxel order.

        Parameters
        ----------
        array_ras : np.ndarray, shape (X, Y, Z)
            Array in this volume's RAS voxel order, any dtype.

        Returns
        -------
        np.ndarray, shape `source_shape`
            The same values, axes permuted and flipped into the file's order; C-contiguous, dtype kept.
        """
        return from_ras(array_ras, self.source_affine)

    def like(self, array_ras: np.ndarray, name: str | None = None) -> "Volume":
        """Make a volume on the same grid from another array (a label map for this scan, say).

        Parameters
        ----------
        array_ras : np.ndarray, shape (X, Y, Z)
            Array in this volume's RAS voxel order; used as is, not copied.
        name : str, optional
            Name of the new volume; this volume's name when None.

        Returns
        -------
        Volume
            Copies of this volume's affines, the same source shape, path and header, and a shallow
            copy of ``meta``.

        Raises
        ------
        ValueError
            When `array_ras` does not have this volume's shape.
        """
        if tuple(array_ras.shape) != self.shape:
            raise ValueError(f"array shape {array_ras.shape} does not match volume shape {self.shape}")
        return Volume(
            array=array_ras,
            affine=self.affine.copy(),
            source_affine=self.source_affine.copy(),
            source_shape=self.source_shape,
            name=name if name is not None else self.name,
            source_path=self.source_path,
            header=self.header,
            meta=dict(self.meta),
        )


def _ras_transform(affine: np.ndarray) -> np.ndarray:
    return ornt_transform(io_orientation(affine), RAS)


def to_ras(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder a source-grid array into RAS voxel order.

    Only axis permutations and flips: no resampling, so voxel values are kept exactly. Each voxel
    axis is matched to the world axis it is closest to (`nibabel.orientations.io_orientation`), so
    oblique scans are reordered to the nearest RAS order, not rotated.

    Parameters
    ----------
    array : np.ndarray, shape (I, J, K, ...)
        Array in the file's own voxel order; only the first 3 axes are reordered.
    affine : np.ndarray of float, shape (4, 4)
        The file's voxel -> RAS+ world (mm) affine.

    Returns
    -------
    array_ras : np.ndarray, shape (X, Y, Z, ...)
        C-contiguous array in RAS voxel order, dtype kept.
    affine_ras : np.ndarray of float, shape (4, 4)
        Voxel -> world affine of `array_ras`: the same world positions as before for every voxel.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.arange(8).reshape(2, 2, 2)
    >>> ras, aff = to_ras(a, np.diag([-1.0, 2.0, 3.0, 1.0]))  # axis 0 runs Right -> Left
    >>> ras[:, 0, 0].tolist(), a[:, 0, 0].tolist()
    ([4, 0], [0, 4])
    >>> aff[:3, 3].tolist()
    [-1.0, 0.0, 0.0]
    """
    transform = _ras_transform(affine)
    out = apply_orientation(array, transform)
    new_affine = affine @ inv_ornt_aff(transform, array.shape[:3])
    return np.ascontiguousarray(out), new_affine


def from_ras(array_ras: np.ndarray, source_affine: np.ndarray) -> np.ndarray:
    """Put a RAS-ordered array back into the source file's voxel order (the inverse of `to_ras`).

    Parameters
    ----------
    array_ras : np.ndarray, shape (X, Y, Z, ...)
        Array in RAS voxel order.
    source_affine : np.ndarray of float, shape (4, 4)
        The file's own voxel -> world affine (not the RAS one).

    Returns
    -------
    np.ndarray
        C-contiguous array in the file's voxel order, dtype kept.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.arange(8).reshape(2, 2, 2)
    >>> affine = np.diag([-1.0, 2.0, 3.0, 1.0])
    >>> bool(np.array_equal(from_ras(to_ras(a, affine)[0], affine), a))
    True
    """
    back = ornt_transform(RAS, io_orientation(source_affine))
    return np.ascontiguousarray(apply_orientation(array_ras, back))


def volume_from_array(
    array: np.ndarray,
    affine: np.ndarray,
    name: str = "",
    source_path: str = "",
    header: nib.Nifti1Header | None = None,
    meta: dict | None = None,
) -> Volume:
    """Build a `Volume` from an array in the file's own voxel order and the file's affine.

    Parameters
    ----------
    array : np.ndarray, shape (I, J, K)
        Voxel values in the file's order; reordered (not resampled) to RAS by `to_ras`.
    affine : np.ndarray of float, shape (4, 4)
        The file's voxel -> RAS+ world (mm) affine; stored as ``source_affine``.
    name, source_path : str, optional
        Stored as is.
    header : nibabel.Nifti1Header, optional
        The NIfTI header, when the file was NIfTI.
    meta : dict, optional
        Loader facts; an empty dict when None.

    Returns
    -------
    Volume
        With ``array`` in RAS order (dtype kept), the matching RAS ``affine``, ``source_shape`` from
        the first 3 axes of `array`.

    Examples
    --------
    >>> import numpy as np
    >>> vol = volume_from_array(np.zeros((4, 5, 6), np.float32), np.diag([-1.0, 1.0, 2.5, 1.0]), name="demo")
    >>> vol.shape, vol.spacing, vol.source_orientation
    ((4, 5, 6), (1.0, 1.0, 2.5), 'LAS')
    """
    ras, ras_affine = to_ras(array, affine)
    return Volume(
        array=ras,
        affine=ras_affine,
        source_affine=np.asarray(affine, dtype=float).copy(),
        source_shape=tuple(int(s) for s in array.shape[:3]),  # type: ignore[arg-type]
        name=name,
        source_path=source_path,
        header=header,
        meta=meta or {},
    )


def content_id(volume: Volume) -> str:
    """A scan's identity: sha256 of its voxels and geometry, whatever its name, path or file format.

    The same image opened twice (from a data folder and as an upload, as .nii and as .nii.gz) gets the
    same id; two different images that share a name get different ids. Computed on the RAS array as
    loaded, so the source file's axis order does not matter.

    Parameters
    ----------
    volume : Volume
        The loaded scan.

    Returns
    -------
    str
        64 lowercase hex digits.

    Examples
    --------
    >>> import numpy as np
    >>> a = volume_from_array(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.eye(4))
    >>> b = volume_from_array(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.eye(4), name="other")
    >>> content_id(a) == content_id(b), len(content_id(a))
    (True, 64)
    """
    h = hashlib.sha256()
    array = np.ascontiguousarray(volume.array)
    h.update(f"{array.dtype.str}|{array.shape}|".encode())
    h.update((np.round(np.asarray(volume.affine, dtype=np.float64), 4) + 0.0).tobytes())  # + 0.0: no -0.0
    h.update(memoryview(array).cast("B"))
    return h.hexdigest()
