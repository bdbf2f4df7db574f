"""Demo scans for a fresh machine with no data of its own; works offline.

Both come from the MNI152 2009 T1 template shipped inside the nilearn wheel (see `segloop.data.mni` for
the file, its authors and licence):
- "mni152_t1": the whole template (a skull-stripped brain), the default demo: the Segment page finds
  and segments both hippocampi in it on the whole-head path.
- "mni152_left_hippocampus": a crop of the template around the LEFT hippocampus (the box of
  `segloop.data.mni.LEFT_HIPPOCAMPUS_BOX_MM`), about the size of the Decathlon hippocampus crops the
  shipped model was trained on. It is written once, atomically, to `config.workspace_dir()/samples/`
  with a correct affine, so it loads like any NIfTI file.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

from segloop.config import workspace_dir
from segloop.data.folders import SourceCase
from segloop.data.mni import LEFT_HIPPOCAMPUS_BOX_MM, mni152_t1_path
from segloop.errors import SegLoopError
from segloop.io.atomic import atomic_write_bytes

#: The crop's file in the samples cache; the name changes with the box so an old crop is never reused.
CROP_FILE = "mni152_left_hippocampus_" + "_".join(f"{v:g}" for side in LEFT_HIPPOCAMPUS_BOX_MM for v in side) + ".nii.gz"


def crop_box_voxels(
    affine: np.ndarray, shape: tuple[int, ...], box_mm: tuple = LEFT_HIPPOCAMPUS_BOX_MM
) -> tuple[slice, ...]:
    """Find the voxel slices covering a world-coordinate box (all 8 corners mapped through the inverse affine).

    Mapping all corners keeps the whole box inside the crop even when the affine flips or permutes axes.

    Parameters
    ----------
    affine : np.ndarray of float, shape (4, 4)
        Voxel -> world (mm) affine of the image.
    shape : tuple of int
        Image shape; the crop is clipped to its first 3 axes.
    box_mm : tuple of 3 (float, float) pairs, optional
        (min, max) world coordinates in mm per axis; `LEFT_HIPPOCAMPUS_BOX_MM` by default.

    Returns
    -------
    tuple of 3 slice
        For the image's first 3 axes, from the floor of the lowest corner voxel coordinate to the
        ceil of the highest, inclusive (so the stop is that + 1), clipped to the image.

    Raises
    ------
    segloop.errors.SegLoopError
        When the clipped crop is thinner than 2 voxels along an axis (the box lies outside the image).

    Examples
    --------
    >>> import numpy as np
    >>> crop_box_voxels(np.eye(4), (100, 100, 100), ((10, 20), (0, 5), (3.5, 7.2)))
    (slice(10, 21, None), slice(0, 6, None), slice(3, 9, None))
    """
    corners = np.array([[x, y, z, 1.0] for x in box_mm[0] for y in box_mm[1] for z in box_mm[2]])
    vox = (np.linalg.inv(affine) @ corners.T)[:3].T
    lo = np.clip(np.floor(vox.min(axis=0) + 1e-6).astype(int), 0, None)
    hi = np.minimum(np.ceil(vox.max(axis=0) - 1e-6).astype(int) + 1, np.array(shape[:3]))
    if np.any(hi - lo < 2):
        raise SegLoopError("the crop box lies outside the template")
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def left_hippocampus_path(cache_dir: str | Path | None = None) -> Path:
    """Return the left-hippocampus crop as a NIfTI file, writing it once (atomically) into the samples cache.

    Later calls return the cached file without reading the template.

    Parameters
    ----------
    cache_dir : str or pathlib.Path, optional
        Folder for the file; ``workspace_dir() / "samples"`` when None.

    Returns
    -------
    pathlib.Path
        ``cache_dir / CROP_FILE``: a gzipped NIfTI (uint8, 1 mm, the template's MNI affine shifted to
        the crop's origin, qform/sform codes kept).

    Raises
    ------
    segloop.errors.SegLoopError
        When the template cannot be found (see `mni152_t1_path`) or the file cannot be written.
    """
    folder = Path(cache_dir) if cache_dir is not None else workspace_dir() / "samples"
    target = folder / CROP_FILE
    if target.is_file():
        return target
    img = nib.load(str(mni152_t1_path()))
    crop = img.slicer[crop_box_voxels(img.affine, img.shape)]  # nibabel shifts the affine's origin
    out = nib.Nifti1Image(np.asarray(crop.dataobj), crop.affine, header=crop.header)
    out.set_qform(crop.affine, code=int(img.header["qform_code"]) or 1)
    out.set_sform(crop.affine, code=int(img.header["sform_code"]) or 1)
    try:
        atomic_write_bytes(target, gzip.compress(out.to_bytes(), mtime=0))
    except OSError as exc:
        raise SegLoopError(f"cannot write the demo scan to {folder} ({exc.strerror or exc})") from None
    return target


def demo_cases(cache_dir: str | Path | None = None) -> list[SourceCase]:
    """List the built-in demo scans: the whole template (first: the default) and the left-hippocampus crop.

    Parameters
    ----------
    cache_dir : str or pathlib.Path, optional
        Where the crop is cached (see `left_hippocampus_path`).

    Returns
    -------
    list of SourceCase
        Two NIfTI cases without label maps: "mni152_t1" and "mni152_left_hippocampus".

    Raises
    ------
    segloop.errors.SegLoopError
        When the template is missing or the crop cannot be written.
    """
    note = "MNI ICBM152 2009 T1 template (nilearn package data)"
    return [
        SourceCase("mni152_t1", str(mni152_t1_path()), None, "nifti", f"Whole {note} (skull-stripped brain)"),
        SourceCase("mni152_left_hippocampus", str(left_hippocampus_path(cache_dir)), None, "nifti",
                   f"Left hippocampus crop of the {note}"),
    ]
