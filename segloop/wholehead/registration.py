"""Affine registration of a whole-head T1 scan to the MNI152 template, with a quality check and eTIV.

The template is the MNI ICBM152 2009 nonlinear symmetric T1 template shipped inside the nilearn
wheel (1 mm, 197x233x189, skull-stripped by nilearn: every voxel outside the ICBM 2009 brain mask
is 0). Registration is Mattes mutual information, affine, at 8, 4 and 2 mm, with the metric
restricted to the template brain dilated by 6 mm, so the scan's scalp, face and neck carry no
weight. The 8 mm level starts from several guesses because a long neck pulls the scan's centre
of mass 30-50 mm below the brain. About 1-2 s for a 1 mm head on 2 CPU cores.

SimpleITK is given RAS+ millimetres as physical coordinates for both images (not ITK's usual
LPS); with the same convention on both sides the transform is unaffected.
"""

from __future__ import annotations

import functools
import itertools
import time
from dataclasses import dataclass
from enum import StrEnum

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from segloop.data.mni import mni152_t1_path

#: Voxel size (mm) of the finest registration level; the coarser levels are 2x and 4x this.
FINE_MM = 2.0
#: `Registration.quality` at or above which the boxes are placed without asking (`Verdict.ACCEPT`), and below
#: which they are not placed unless a person accepts the registration (`Verdict.REFUSE`); in between the boxes
#: are placed and the scan is flagged for a look at its QC picture (`Verdict.WARN`).
#: Calibrated on real heads (the 5 scans of realheads-dev: 1.6 mm RAS long neck, 1 mm LIA conformed, 0.7 mm
#: LPS, 1x1x3 mm LAS, 2 mm PSR), whose correct registrations score 0.51-0.56 while the same scans
#: misregistered by 8-15 mm, 10-20 degrees or 15 % in scale score 0.04-0.38; template phantoms score
#: 0.97-0.99 registered and 0.30-0.38 misplaced; noise, blobs and CT-like volumes -0.2-0.2; inverted
#: (T2-like) contrast about -1. A skull-stripped template never matches a real head's contrast as well as
#: itself, so the phantoms' 0.5 refused a third of real heads; these thresholds come from real ones.
ACCEPT_QUALITY = 0.47
REFUSE_QUALITY = 0.42
MIN_QUALITY = REFUSE_QUALITY  # the lowest quality whose boxes are placed without a person's say
#: Scale factors of the scan->MNI transform outside this range do not fit a human head.
SCALE_RANGE = (0.6, 1.6)
#: Largest ratio between the transform's largest and smallest scale factor (shear, squashing).
MAX_ANISOTROPY = 1.5
#: Smallest fraction of the template brain that must lie inside the scan's field of view.
MIN_COVERAGE = 0.7
#: Smallest field of view (mm) along every axis: a head, not a crop.
MIN_FOV_MM = 100.0
#: Starting guesses at 8 mm: template brain centre put this far (mm) above (z) and in front of (y)
#: the head's centre of mass, pitched by these angles (degrees). The best 3 of all starts are optimised.
START_GRID = ((-10.0, 10.0, 30.0, 50.0), (-15.0, 0.0, 15.0), (-15.0, 0.0, 15.0))
#: More starts anchored at the top of the head, which a neck of any length leaves where it is: the
#: template brain centre this far (mm) below the head's highest point (brain top to centre 73 mm in the
#: template, plus some 10 mm of scalp and skull), shifted by these amounts in z and y and pitched.
VERTEX_TO_CENTRE_MM = 83.0
#: The optimiser's 3 best starts ending further apart than this (mm) make an accepted match a warning.
MAX_START_SPREAD_MM = 5.0
#: Midway between the two hippocampus boxes (MNI mm): where the starts' agreement is measured.
_HIPPOCAMPUS_MIDPOINT_MM = (0.0, -22.0, -13.0)
VERTEX_GRID = ((-10.0, 0.0, 10.0), (-15.0, 0.0, 15.0), (-15.0, 0.0, 15.0))


class Verdict(StrEnum):
    """What the quality check says of a registration."""

    ACCEPT = "accept"  # the boxes are placed
    WARN = "warn"  # placed, and the scan is flagged: a person should look at its QC picture
    REFUSE = "refuse"  # not placed unless a person accepts the registration (`Registration.overridable`)


@dataclass(frozen=True)
class Registration:
    """Result of `register_to_template`.

    Attributes
    ----------
    scan_to_mni : np.ndarray
        float64 (4, 4): scan world coordinates (RAS+ mm) -> MNI152 coordinates (mm). Identity when
        the input was refused before registering.
    quality : float
        Local correlation (18 mm windows, averaged over the template brain) between the scan
        resampled into MNI space at 2 mm and the template, in [-1, 1]; see `MIN_QUALITY`.
    ok : bool
        True when the boxes may be placed without a person's say: the verdict is accept or warn.
    message : str
        Plain-English reason for a warn or refuse verdict; empty for accept.
    seconds : float
        Wall time of the call.
    coverage : float
        Fraction (0..1) of the template brain inside the scan's field of view.
    atlas_scaling_factor : float
        Buckner et al. 2004's ASF: determinant of the linear part of `scan_to_mni` (>1 for a head
        smaller than the template).
    etiv_ml : float
        Estimated total intracranial volume (mL): ``template_icv_ml() / atlas_scaling_factor``.
    verdict : Verdict
        accept, warn or refuse (see `ACCEPT_QUALITY`).
    overridable : bool
        True when a refusal rests on the match alone, so a person who looked at the QC picture may accept
        the registration (`segment_whole_head(accept_registration=True)`); False when the input is not a
        head scan or the transform cannot be a head's (scale, reflection, coverage).
    start_spread_mm : float
        The optimiser's own consistency: how far (mm) its other two best starts put the point between the
        hippocampi from where the chosen one does (0.0-0.5 mm on the real dev heads); 0 for `assess`.
    """

    scan_to_mni: np.ndarray
    quality: float
    ok: bool
    message: str
    seconds: float
    coverage: float = 0.0
    atlas_scaling_factor: float = float("nan")
    etiv_ml: float = float("nan")
    verdict: Verdict = Verdict.REFUSE
    overridable: bool = False
    start_spread_mm: float = 0.0


@dataclass(frozen=True)
class _Template:
    levels: dict[int, tuple[sitk.Image, sitk.Image]]  # voxel mm -> (float32 image, uint8 metric mask)
    brain: np.ndarray  # bool, sitk (z, y, x) order on levels[2]: where quality is measured
    centre_mm: tuple[float, float, float]  # brain centroid, MNI mm: centre of rotation and scaling
    icv_ml: float


def _threads() -> int:
    # ITK's default is every core; past ~8 threads the overhead outweighs the work on 2 mm images.
    return min(sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(), 8)


def _block_mean(array: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """float32 average over non-overlapping blocks (anti-aliased downsampling); partial blocks dropped."""
    n = [s // f for s, f in zip(array.shape, factors)]
    a = array[: n[0] * factors[0], : n[1] * factors[1], : n[2] * factors[2]]
    return a.reshape(n[0], factors[0], n[1], factors[1], n[2], factors[2]).mean(axis=(1, 3, 5), dtype=np.float32)


def _block_affine(affine: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Voxel->world affine of `_block_mean(array, factors)`: each new voxel sits at its block's centre."""
    scale = np.diag([*map(float, factors), 1.0])
    scale[:3, 3] = (np.asarray(factors) - 1) / 2.0
    return affine @ scale


def _pyramid(array: np.ndarray, affine: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{2: .., 4: .., 8: ..}: (float32 array, affine) at about FINE_MM, 2x and 4x voxels, by block averaging."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    factors = tuple(max(1, round(FINE_MM / s)) for s in spacing)
    levels = {2: (_block_mean(array, factors), _block_affine(affine, factors))}
    for mm in (4, 8):
        a, aff = levels[mm // 2]
        levels[mm] = (_block_mean(a, (2, 2, 2)), _block_affine(aff, (2, 2, 2)))
    return levels


def _to_sitk(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """float32 SimpleITK image of an (X, Y, Z) array; its physical space is the affine's world (RAS+ mm)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.T, dtype=np.float32))
    linear = affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((linear / spacing).ravel().tolist())
    image.SetOrigin(affine[:3, 3].tolist())
    return image


@functools.lru_cache(maxsize=1)
def _template() -> _Template:
    """The template at 2, 4 and 8 mm with its masks, built once per process (~0.4 s)."""
    img = nib.load(str(mni152_t1_path()))
    t1 = np.asarray(img.dataobj, dtype=np.float32)
    brain_1mm = t1 > 0  # nilearn's copy is zero outside the ICBM 2009 brain mask
    images = _pyramid(t1, img.affine)
    brains = _pyramid(brain_1mm, img.affine)
    levels = {}
    for mm, (image, affine) in images.items():
        # The brain plus its rim: the edge against dark CSF and skull is what aligns best.
        mask = ndimage.binary_dilation(brains[mm][0] >= 0.5, iterations=max(1, 6 // mm))
        levels[mm] = (_to_sitk(image, affine), sitk.Cast(_to_sitk(mask, affine), sitk.sitkUInt8))
    centre = img.affine[:3, :3] @ ndimage.center_of_mass(brain_1mm) + img.affine[:3, 3]
    voxel_ml = abs(np.linalg.det(img.affine[:3, :3])) / 1000.0
    return _Template(levels=levels, brain=(brains[2][0] >= 0.5).T.copy(),
                     centre_mm=tuple(float(c) for c in centre), icv_ml=float(brain_1mm.sum() * voxel_ml))


def template_icv_ml() -> float:
    """Intracranial volume of the template (mL), the constant behind `Registration.etiv_ml`.

    It is the volume of the template's non-zero voxels, i.e. of the ICBM152 2009 brain mask that
    nilearn applied when skull-stripping its copy: about 1887 mL. The mask holds cerebrum,
    cerebellum and brainstem (down to the template's lower edge at z = -72 mm) with the ventricles
    and the CSF it encloses; being a brain mask rather than a traced intracranial one, it may leave
    out some CSF between brain and skull. Like FreeSurfer's eTIV (1948 mL for its own atlas), the
    estimate ranks and compares heads; its absolute level follows this constant.
    """
    return _template().icv_ml


def _local_correlation(a: np.ndarray, b: np.ndarray, where: np.ndarray, size: int = 9) -> float:
    """Mean over `where` of the Pearson correlation of `a` and `b` in size^3 windows (within `where`).

    Local, so a smooth bias field, which scales each window's intensities almost uniformly, barely
    changes it, where it would lower one global correlation.
    """
    if not where.any():
        return 0.0
    mean = functools.partial(ndimage.uniform_filter, size=size)
    a = np.where(where, a, 0).astype(np.float32)
    b = np.where(where, b, 0).astype(np.float32)
    n = np.maximum(mean(where.astype(np.float32)), 1e-6)
    ma, mb = mean(a) / n, mean(b) / n
    cov = mean(a * b) / n - ma * mb
    va = np.maximum(mean(a * a) / n - ma * ma, 0)
    vb = np.maximum(mean(b * b) / n - mb * mb, 0)
    r = cov / np.sqrt(np.maximum(va * vb, 1e-12))
    use = where & (n > 0.5) & (vb > 1e-3 * vb[where].mean())  # skip windows where the template is flat
    return float(r[use].mean()) if use.any() else 0.0


def _method(mask: sitk.Image, iterations: int, step_mm: float, sampling: float) -> sitk.ImageRegistrationMethod:
    """One-level Mattes MI registration (the pyramid is built beforehand by block averaging)."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricFixedMask(mask)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(sampling, seed=7)  # fixed seed: the same scan gives the same result
    # Gradients at the sample points only: filtering a whole 2 mm head costs more than the optimisation.
    reg.MetricUseFixedImageGradientFilterOff()
    reg.MetricUseMovingImageGradientFilterOff()
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=step_mm, minStep=0.01, numberOfIterations=iterations, relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-8)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetNumberOfThreads(_threads())
    return reg


def _start_transforms(centre: np.ndarray, anchors: list[tuple[np.ndarray, tuple]]) -> list[sitk.Similarity3DTransform]:
    """Similarity starts: the template brain centre at each anchor point moved by its grid's (dz, dy, pitch)."""
    starts = []
    for anchor, grid in anchors:
        for dz, dy, pitch in itertools.product(*grid):
            t = sitk.Similarity3DTransform()
            t.SetCenter(centre.tolist())
            t.SetRotation((1.0, 0.0, 0.0), float(np.deg2rad(pitch)))
            t.SetTranslation((anchor + [0.0, dy, dz] - centre).tolist())
            starts.append(t)
    return starts


def head_anchors(array: np.ndarray, affine: np.ndarray) -> list[tuple[np.ndarray, tuple]]:
    """Where to start looking for the brain: (anchor point in world mm, its start grid) pairs.

    The head's centre of mass (`START_GRID`: a long neck pulls it 30-50 mm below the brain), and a point
    `VERTEX_TO_CENTRE_MM` below the head's highest point, above the middle of the head's top 110 mm
    (`VERTEX_GRID`), which does not move however much neck and shoulder the scan holds.
    """
    fg = array > array.mean()
    idx = np.argwhere(fg)
    world = idx @ affine[:3, :3].T + affine[:3, 3]
    anchors = [(world.mean(axis=0), START_GRID)]
    top = float(np.percentile(world[:, 2], 99.5))
    upper = world[world[:, 2] > top - 110.0]
    if len(upper):
        anchors.append((np.array([*upper[:, :2].mean(axis=0), top - VERTEX_TO_CENTRE_MM]), VERTEX_GRID))
    return anchors


def _metric(reg: sitk.ImageRegistrationMethod, start: sitk.Transform, fixed: sitk.Image, moving: sitk.Image) -> float:
    reg.SetInitialTransform(start, inPlace=False)
    try:
        return reg.MetricEvaluate(fixed, moving)
    except RuntimeError:  # ITK raises when too few samples fall inside the scan
        return np.inf


def _register(tpl: _Template, moving: dict[int, sitk.Image], anchors: list) -> tuple[sitk.AffineTransform, float]:
    """(MNI -> scan world transform, start spread in mm): similarity from the best 3 starts at 8 mm, then affine
    at 4 and 2 mm from the best of them. The spread is how far (mm, in the scan) the other two put the point
    between the hippocampi from where the best one does: a few tenths of a mm when they agree."""
    fixed, mask = tpl.levels[8]
    probe = _method(mask, 0, 1.0, 1.0)
    starts = _start_transforms(np.array(tpl.centre_mm), anchors)
    starts.sort(key=lambda s: _metric(probe, s, fixed, moving[8]))
    best_value, best, found = np.inf, None, []
    for start in starts[:3]:
        sim = sitk.Similarity3DTransform(start)
        reg = _method(mask, 60, 4.0, 1.0)
        reg.SetInitialTransform(sim, inPlace=True)
        reg.Execute(fixed, moving[8])
        found.append(np.array(sim.TransformPoint(_HIPPOCAMPUS_MIDPOINT_MM)))
        if best is None or reg.GetMetricValue() < best_value:
            best_value, best = reg.GetMetricValue(), sim
    chosen = np.array(best.TransformPoint(_HIPPOCAMPUS_MIDPOINT_MM))
    spread = max(float(np.linalg.norm(f - chosen)) for f in found)  # the optimiser's own consistency
    affine = sitk.AffineTransform(3)
    affine.SetCenter(best.GetCenter())
    affine.SetMatrix(best.GetMatrix())
    affine.SetTranslation(best.GetTranslation())
    for mm, step_mm, sampling in ((4, 2.0, 0.5), (2, 1.0, 0.1)):
        fixed, mask = tpl.levels[mm]
        reg = _method(mask, 100, step_mm, sampling)
        reg.SetInitialTransform(affine, inPlace=True)
        reg.Execute(fixed, moving[mm])
    return affine, spread


def _implausible(coverage: float, scan_to_mni: np.ndarray) -> str:
    """Why a transform cannot be a head's, in plain English; empty when it can."""
    linear = scan_to_mni[:3, :3]
    if np.linalg.det(linear) <= 0:
        return ("the registration to the MNI152 template mirrors the head (left and right swapped): the scan's "
                "orientation in its header is probably wrong")
    scales = np.linalg.svd(linear, compute_uv=False)
    if scales.min() < SCALE_RANGE[0] or scales.max() > SCALE_RANGE[1] or scales.max() / scales.min() > MAX_ANISOTROPY:
        return ("the registration to the MNI152 template is implausible for a human head (scale factors "
                f"{', '.join(f'{s:.2f}' for s in scales)})")
    if coverage < MIN_COVERAGE:
        return f"the scan covers only {coverage:.0%} of the brain; a whole-head scan is needed"
    return ""


def judge(quality: float, coverage: float, scan_to_mni: np.ndarray,
          start_spread_mm: float = 0.0) -> tuple[Verdict, str, bool]:
    """The quality check of a finished registration.

    Parameters
    ----------
    quality : float
        `Registration.quality`.
    coverage : float
        Fraction of the template brain inside the scan's field of view.
    scan_to_mni : np.ndarray
        float (4, 4), scan world mm -> MNI mm.
    start_spread_mm : float, optional
        How far the optimiser's other starts ended from the chosen one (`Registration.start_spread_mm`);
        beyond `MAX_START_SPREAD_MM` an accepted match is only a warning: two places fit about as well.

    Returns
    -------
    verdict : Verdict
    message : str
        Why, for warn and refuse ("" for accept).
    overridable : bool
        Whether a person may accept a refused registration (the match alone refused it).
    """
    problem = _implausible(coverage, scan_to_mni)
    if problem:
        return Verdict.REFUSE, problem, False
    if quality < REFUSE_QUALITY:
        return Verdict.REFUSE, (f"the scan does not look like a whole-head T1 MRI, or its registration to the MNI152 "
                                f"template failed (match {quality:.2f}, needs {REFUSE_QUALITY:.2f}); look at the QC "
                                "picture: if the template outline follows the brain, accept the registration"), True
    if quality < ACCEPT_QUALITY:
        return Verdict.WARN, (f"the registration to the MNI152 template is borderline (match {quality:.2f}; "
                              f"{ACCEPT_QUALITY:.2f} or more is accepted without a look): check the boxes on the scan"), False
    if start_spread_mm > MAX_START_SPREAD_MM:
        return Verdict.WARN, (f"the registration's starts disagree by {start_spread_mm:.0f} mm: another place fits "
                              "the template almost as well; check the boxes on the scan"), False
    return Verdict.ACCEPT, "", False


def _verdict(quality: float, coverage: float, scan_to_mni: np.ndarray) -> str:
    """Why a finished registration cannot be used without a person's say, in plain English; empty when it can."""
    verdict, message, _ = judge(quality, coverage, scan_to_mni)
    return message if verdict is Verdict.REFUSE else ""


def _refused(message: str, t0: float) -> Registration:
    return Registration(np.eye(4), 0.0, False, message, time.perf_counter() - t0)


def register_to_template(array: np.ndarray, affine: np.ndarray) -> Registration:
    """Affinely register a whole-head T1 scan to the MNI152 template.

    Parameters
    ----------
    array : np.ndarray
        Scan intensities, shape (X, Y, Z) in RAS voxel order, any real dtype (NaN and infinities read as 0).
        Any head position, voxels of about 0.8-2 mm (anisotropic too), bias field and a neck in
        the field of view are fine.
    affine : np.ndarray
        float (4, 4): voxel index -> world mm (RAS+), as `Volume.affine`.

    Returns
    -------
    Registration
        `scan_to_mni` (4x4, scan world mm -> MNI mm), `quality`, `ok` and `message`, `seconds`,
        `coverage` and the head size (`atlas_scaling_factor`, `etiv_ml`). Input that is not a
        whole-head T1 scan, or a failed registration, comes back with ``ok=False`` and a message;
        nothing is raised for bad image content.
    """
    t0 = time.perf_counter()
    array = np.asarray(array)
    affine = np.asarray(affine, dtype=float)
    if array.ndim != 3 or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        return _refused(f"a 3D scan of real numbers is needed; this one is {array.dtype} of shape {array.shape}", t0)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        return _refused("the scan's voxel-to-world matrix is missing or broken", t0)
    fov = np.linalg.norm(affine[:3, :3], axis=0) * array.shape
    if fov.min() < MIN_FOV_MM:
        return _refused(f"the scan covers only {' x '.join(f'{v:.0f}' for v in fov)} mm; a whole-head scan "
                        f"(at least {MIN_FOV_MM:.0f} mm along every axis) is needed to find the brain", t0)

    moving = _moving_levels(array, affine)
    if moving is None:
        return _refused("the scan is blank (almost all voxels have the same value)", t0)
    anchors = head_anchors(sitk.GetArrayViewFromImage(moving[4]).T, _sitk_affine(moving[4]))

    tpl = _template()
    try:
        transform, spread = _register(tpl, moving, anchors)
    except RuntimeError:  # ITK raises when too few template samples land inside the scan
        return _refused("the registration to the MNI152 template failed: the scan and the template stopped "
                        "overlapping; is this a whole-head T1 scan?", t0)
    matrix = np.array(transform.GetMatrix()).reshape(3, 3)
    centre = np.array(transform.GetCenter())
    mni_to_scan = np.eye(4)
    mni_to_scan[:3, :3] = matrix
    mni_to_scan[:3, 3] = np.array(transform.GetTranslation()) + centre - matrix @ centre
    scan_to_mni = np.linalg.inv(mni_to_scan)
    quality, coverage = _match(moving[2], scan_to_mni)
    return _finish(scan_to_mni, quality, coverage, time.perf_counter() - t0, spread)


def _moving_levels(array: np.ndarray, affine: np.ndarray) -> dict[int, sitk.Image] | None:
    """The scan at 2, 4 and 8 mm, intensities clipped to its 0.5-99.5 percentiles; None for a blank scan."""
    levels = _pyramid(array, affine)
    for a, _ in levels.values():
        np.nan_to_num(a, copy=False, posinf=0.0, neginf=0.0)
    lo, hi = np.percentile(levels[2][0], [0.5, 99.5])
    if not hi > lo:
        return None
    # Clipping stops a few very bright voxels (vessels, fat, artefacts) from squashing the histogram.
    return {mm: _to_sitk(np.clip(a, lo, hi), aff) for mm, (a, aff) in levels.items()}


def _sitk_affine(image: sitk.Image) -> np.ndarray:
    """Voxel (x, y, z) -> world matrix of a SimpleITK image made by `_to_sitk`."""
    out = np.eye(4)
    out[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    out[:3, 3] = image.GetOrigin()
    return out


def _match(moving: sitk.Image, scan_to_mni: np.ndarray) -> tuple[float, float]:
    """(quality, coverage) of a scan->MNI transform: the scan at 2 mm resampled into the template's space."""
    tpl = _template()
    mni_to_scan = np.linalg.inv(scan_to_mni)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(mni_to_scan[:3, :3].ravel().tolist())
    transform.SetTranslation(mni_to_scan[:3, 3].tolist())
    fixed = tpl.levels[2][0]
    resampled = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, transform, sitk.sitkLinear, np.nan))
    inside = np.isfinite(resampled) & tpl.brain
    coverage = float(inside.sum() / tpl.brain.sum())
    return _local_correlation(resampled, sitk.GetArrayViewFromImage(fixed), inside), coverage


def assess(array: np.ndarray, affine: np.ndarray, scan_to_mni: np.ndarray) -> Registration:
    """The quality check of a given scan->MNI transform (a registration made elsewhere, or moved on purpose).

    Parameters
    ----------
    array, affine : np.ndarray
        The scan, as for `register_to_template`.
    scan_to_mni : np.ndarray
        float (4, 4), scan world mm -> MNI mm.

    Returns
    -------
    Registration
        With this transform, its quality, coverage, verdict and head size.
    """
    t0 = time.perf_counter()
    moving = _moving_levels(np.asarray(array), np.asarray(affine, float))
    if moving is None:
        return _refused("the scan is blank (almost all voxels have the same value)", t0)
    quality, coverage = _match(moving[2], np.asarray(scan_to_mni, float))
    return _finish(np.asarray(scan_to_mni, float), quality, coverage, time.perf_counter() - t0)


def _finish(scan_to_mni: np.ndarray, quality: float, coverage: float, seconds: float,
            start_spread_mm: float = 0.0) -> Registration:
    """A `Registration` of a found transform: its quality check and the head size."""
    verdict, message, overridable = judge(quality, coverage, scan_to_mni, start_spread_mm)
    asf = float(np.linalg.det(scan_to_mni[:3, :3]))
    return Registration(scan_to_mni=scan_to_mni, quality=quality, ok=verdict is not Verdict.REFUSE, message=message,
                        seconds=seconds, coverage=coverage, atlas_scaling_factor=asf,
                        etiv_ml=_etiv(asf), verdict=verdict, overridable=overridable, start_spread_mm=start_spread_mm)


def _etiv(asf: float) -> float:
    """eTIV (mL) for an atlas scaling factor (NaN for a non-positive one)."""
    return _template().icv_ml / asf if asf > 0 else float("nan")
