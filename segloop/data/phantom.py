"""Synthetic whole-head T1 scans with a known pose, for tests and benchmarks of the whole-head path.

The MNI152 template is skull-stripped and no real whole-head scan ships offline, so this builds one:

the template brain gets CSF, a dark skull and bright scalp around it and a neck below, then is moved
by a known affine and sampled on a scanner grid with permuted and flipped axes, a chosen voxel size
and field of view, a smooth multiplicative bias field, noise and a contrast change. The caller knows
the true scan -> MNI transform, so registration and segmentation can be checked against it. It is
crude (no sulcal variation between subjects, affine pose only): real heads are harder.
"""

from __future__ import annotations

import functools

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.transform import Rotation

from segloop.data.mni import mni152_t1_path
from segloop.io.volume import to_ras

# Phantom tissue classes and their T1 and CT-like intensities (template brain values are 28-255).
AIR, BRAIN, CSF, SKULL, SCALP, MUSCLE, FAT = range(7)
T1_VALUES = {CSF: 30.0, SKULL: 10.0, SCALP: 190.0, MUSCLE: 100.0, FAT: 190.0}
CT_VALUES = {AIR: -1000.0, BRAIN: 35.0, CSF: 8.0, SKULL: 1200.0, SCALP: -90.0, MUSCLE: 50.0, FAT: -90.0}


def apply_affine(matrix: np.ndarray, points) -> np.ndarray:
    """A 4x4 affine applied to points: (N, 3) array-like in, float64 (N, 3) out."""
    points = np.asarray(points, dtype=float)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


@functools.lru_cache(maxsize=1)
def phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The head phantom on a 1 mm MNI grid (built once per process).

    Returns
    -------
    t1 : np.ndarray
        float32 (197, 233, 289): T1-like intensities; the template brain keeps its own values (28-255).
    classes : np.ndarray
        uint8, same shape: tissue class per voxel (AIR, BRAIN, CSF, SKULL, SCALP, MUSCLE, FAT).
    affine : np.ndarray
        float64 (4, 4): voxel -> MNI mm (the template's, extended 100 mm down for the neck).
    """
    img = nib.load(str(mni152_t1_path()))
    below = 100  # mm of neck added under the template's lower edge
    t1 = np.zeros((img.shape[0], img.shape[1], img.shape[2] + below), np.float32)
    t1[:, :, below:] = np.asarray(img.dataobj, dtype=np.float32)
    affine = img.affine.copy()
    affine[2, 3] -= below
    classes = np.where(t1 > 0, BRAIN, AIR).astype(np.uint8)
    dist = ndimage.distance_transform_edt(t1 == 0)
    for tissue, (d0, d1) in ((CSF, (0, 3)), (SKULL, (3, 9)), (SCALP, (9, 14))):
        classes[(dist > d0) & (dist <= d1)] = tissue
    x, y, z = np.meshgrid(*[np.arange(n) + affine[k, 3] for k, n in enumerate(t1.shape)], indexing="ij", sparse=True)
    r = np.sqrt((x / 50.0) ** 2 + ((y + 20.0) / 55.0) ** 2)
    neck = (z < -40) & (r < 1.0) & (classes == AIR)
    classes[neck] = MUSCLE
    classes[neck & (r > 0.88)] = FAT
    for tissue, value in T1_VALUES.items():
        t1[classes == tissue] = value
    return t1, classes, affine


def _sitk_image(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.T, dtype=np.float32))
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((affine[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin(affine[:3, 3].tolist())
    return image


@functools.lru_cache(maxsize=1)
def _phantom_image() -> sitk.Image:
    t1, _, affine = phantom()
    return _sitk_image(t1, affine)


def random_scan_to_mni(rng: np.random.Generator, max_deg: float = 20.0, max_shift: float = 30.0,
                       max_scale: float = 0.15) -> np.ndarray:
    """A random head pose as a scan -> MNI transform.

    Rotation of 5 to `max_deg` degrees about a random axis, a shift of up to `max_shift` mm per axis and
    a scaling by up to `max_scale` (plus up to 3 % per axis). Returns float64 (4, 4).
    """
    axis = rng.normal(size=3)
    rotation = Rotation.from_rotvec(axis / np.linalg.norm(axis) * np.deg2rad(rng.uniform(5.0, max_deg))).as_matrix()
    scale = rng.uniform(1 - max_scale, 1 + max_scale) * rng.uniform(0.97, 1.03, size=3)
    m = np.eye(4)
    m[:3, :3] = rotation @ np.diag(scale)
    m[:3, 3] = rng.uniform(-max_shift, max_shift, size=3)
    return m


def make_scan(scan_to_mni: np.ndarray, rng: np.random.Generator, spacing=(1.0, 1.0, 1.0),
              fov_mm=(220.0, 250.0, 280.0), fov_centre_mni=(0.0, -20.0, -40.0), bias: float = 0.25,
              noise: float = 8.0, gamma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Sample the phantom as a scanner would.

    Parameters
    ----------
    scan_to_mni : np.ndarray
        float (4, 4): the head's pose, scan world mm -> MNI mm (e.g. from `random_scan_to_mni`).
    rng : np.random.Generator
        Draws the voxel axis order and flips, the bias field and the noise.
    spacing : tuple of 3 float
        Voxel size in mm along the scan's own voxel axes (before RAS reordering).
    fov_mm, fov_centre_mni : tuple of 3 float
        Field of view in mm and its centre in MNI mm (move it down for a long neck, up to cut the chin).
    bias : float
        Strength of the smooth multiplicative bias field (log scale).
    noise : float
        Standard deviation of the added Gaussian noise (the phantom's intensities are 0-255).
    gamma : float
        Contrast change: intensities are raised to this power.

    Returns
    -------
    array : np.ndarray
        float32 (X, Y, Z) in RAS voxel order, as `segloop.io` would load the file.
    affine : np.ndarray
        float64 (4, 4): voxel -> scan world mm (RAS+).
    """
    perm = rng.permutation(3)
    direction = np.zeros((3, 3))
    direction[perm, np.arange(3)] = np.where(rng.random(3) < 0.5, -1.0, 1.0)
    spacing = np.asarray(spacing, dtype=float)
    size = np.round(np.asarray(fov_mm)[perm] / spacing).astype(int)
    centre = apply_affine(np.linalg.inv(scan_to_mni), fov_centre_mni)
    origin = centre - direction @ (spacing * (size - 1) / 2)
    to_mni = sitk.AffineTransform(3)
    to_mni.SetMatrix(scan_to_mni[:3, :3].ravel().tolist())
    to_mni.SetTranslation(scan_to_mni[:3, 3].tolist())
    out = sitk.Resample(_phantom_image(), size.tolist(), to_mni, sitk.sitkLinear, origin.tolist(), spacing.tolist(),
                        direction.ravel().tolist(), 0.0, sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(out).T
    g = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in array.shape], indexing="ij", sparse=True)
    c = rng.uniform(-1, 1, size=5)
    field = c[0] * g[0] + c[1] * g[1] + c[2] * g[2] + c[3] * g[0] * g[2] + c[4] * g[1] ** 2
    array = array * np.exp(bias * field / np.abs(field).max())
    array = np.abs(array + rng.normal(0, noise, array.shape).astype(np.float32)) ** gamma
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing
    affine[:3, 3] = origin
    return to_ras(array.astype(np.float32), affine)
