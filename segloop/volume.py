"""A 3D scan or label map held in canonical RAS voxel order, with what is needed to go back.

Every array SegLoop works on (display, inference, editing, training) is in RAS order:
axis 0 runs Left->Right, axis 1 Posterior->Anterior, axis 2 Inferior->Superior. The source
file's own grid and affine are kept, so anything saved later lines up with the original file
in other tools (3D Slicer, ITK-SNAP).
"""

from __future__ import annotations

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
    """A 3D array in RAS voxel order plus its geometry and where it came from."""

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
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the RAS axes."""
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]

    @property
    def source_orientation(self) -> str:
        """Axis codes of the file's own voxel order, e.g. 'LPS' for most DICOM."""
        return "".join(nib.aff2axcodes(self.source_affine))

    def to_source(self, array_ras: np.ndarray) -> np.ndarray:
        """Put an array on this volume's RAS grid back into the source file's voxel order."""
        return from_ras(array_ras, self.source_affine)

    def like(self, array_ras: np.ndarray, name: str | None = None) -> "Volume":
        """A volume on the same grid (a label map for this scan, say)."""
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
    """Reorder a source-grid array into RAS voxel order; returns (array, RAS affine).

    Only axis permutations and flips: no resampling, so voxel values are kept exactly.
    """
    transform = _ras_transform(affine)
    out = apply_orientation(array, transform)
    new_affine = affine @ inv_ornt_aff(transform, array.shape[:3])
    return np.ascontiguousarray(out), new_affine


def from_ras(array_ras: np.ndarray, source_affine: np.ndarray) -> np.ndarray:
    """Inverse of `to_ras`: RAS voxel order back to the source file's voxel order."""
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
    """Build a Volume from a source-grid array and its affine."""
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
