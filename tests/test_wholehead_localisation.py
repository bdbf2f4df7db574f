"""Whole-head localisation: registration to MNI152, hippocampus boxes, crops and mapping back.

Test scans are made from the MNI152 template itself, put inside a crude head (CSF, dark skull,
bright scalp) on a neck, then moved by known affines and sampled on scanner grids with permuted
and flipped axes, anisotropic voxels, a cropped field of view, a smooth multiplicative bias field
and noise. The registration must recover the known transform where it matters: at the boxes.
"""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest

from segloop.data.mni import (
    HIPPOCAMPUS_BOXES_MM,
    LEFT_HIPPOCAMPUS_BOX_MM,
    RIGHT_HIPPOCAMPUS_BOX_MM,
    mirror_box,
    mni152_t1_path,
)
from segloop.data.phantom import CT_VALUES, apply_affine, make_scan, phantom, random_scan_to_mni
from segloop.wholehead.regions import BOX_EDGES, box_corners_in_scan, box_grid, box_to_scan, extract_box
from segloop.wholehead.registration import (
    ACCEPT_QUALITY,
    MIN_QUALITY,
    REFUSE_QUALITY,
    Verdict,
    judge,
    _verdict,
    register_to_template,
    template_icv_ml,
)

#: Where the shipped hippocampus model labels hippocampus on the template (left; MNI mm, rounded out).
LEFT_HIPPOCAMPUS_EXTENT_MM = ((-38.0, -14.0), (-42.0, -4.0), (-30.0, 4.0))
#: Seitzman et al. 2018 hippocampus ROI centres (nilearn package data): left head and tail.
SEITZMAN_LEFT_HIPPOCAMPUS_MM = ((-25.57, -11.78, -21.54), (-25.24, -38.78, -2.01))
MAX_ERROR_MM = 4.0

CASES = {
    "1mm, long neck": {"fov_mm": (220.0, 250.0, 300.0), "fov_centre_mni": (0.0, -20.0, -60.0)},
    "1x1x1.5 mm": {"spacing": (1.0, 1.0, 1.5)},
    "0.9x0.9x1.2 mm, darker grey matter": {"spacing": (0.9, 0.9, 1.2), "gamma": 1.4},
    "1.2 mm, top of head cut off": {"spacing": (1.2, 1.2, 1.2), "fov_mm": (200.0, 230.0, 150.0),
                                    "fov_centre_mni": (0.0, -20.0, -10.0)},
    "1.5x1x1 mm, strong bias": {"spacing": (1.5, 1.0, 1.0), "bias": 0.4},
    "0.8 mm, small field of view": {"spacing": (0.8, 0.8, 0.8), "fov_mm": (170.0, 200.0, 180.0),
                                    "fov_centre_mni": (0.0, -20.0, 0.0)},
    "1mm, flatter contrast, noisy": {"gamma": 0.6, "noise": 15.0},
    "1.3 mm": {"spacing": (1.3, 1.3, 1.3)},
}


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def registered(request):
    rng = np.random.default_rng(list(CASES).index(request.param))
    true_scan_to_mni = random_scan_to_mni(rng)
    array, affine = make_scan(true_scan_to_mni, rng, **CASES[request.param])
    return array, affine, true_scan_to_mni, register_to_template(array, affine)


def test_registration_recovers_known_transform(registered):
    _, _, truth, reg = registered
    assert reg.ok, reg.message
    assert reg.quality >= MIN_QUALITY and reg.coverage >= 0.7
    for box in HIPPOCAMPUS_BOXES_MM.values():
        # Every corner and the centre of each box, placed in the scan by the estimate vs the truth.
        points = np.vstack([list(itertools.product(*box)), np.mean(box, axis=1)])
        error = np.linalg.norm(apply_affine(np.linalg.inv(reg.scan_to_mni), points)
                               - apply_affine(np.linalg.inv(truth), points), axis=1)
        assert error.max() < MAX_ERROR_MM, error


def test_boxes_placed_by_registration_contain_the_hippocampus(registered):
    _, _, truth, reg = registered
    true_to_estimated = reg.scan_to_mni @ np.linalg.inv(truth)  # true MNI -> MNI according to the estimate
    for extent, box in ((LEFT_HIPPOCAMPUS_EXTENT_MM, LEFT_HIPPOCAMPUS_BOX_MM),
                        (mirror_box(LEFT_HIPPOCAMPUS_EXTENT_MM), RIGHT_HIPPOCAMPUS_BOX_MM)):
        placed = apply_affine(true_to_estimated, list(itertools.product(*extent)))
        lo, hi = np.array(box).T
        assert np.all(placed > lo) and np.all(placed < hi), placed


def test_etiv_scales_with_head_size(registered):
    # The scan's head is the template scaled by s = 1/det(truth)^(1/3) (volume s^3).
    _, _, truth, reg = registered
    s3 = 1.0 / np.linalg.det(truth[:3, :3])
    assert reg.etiv_ml == pytest.approx(template_icv_ml() * s3, rel=0.03)
    assert reg.atlas_scaling_factor == pytest.approx(1.0 / s3, rel=0.03)


def test_template_icv_is_the_brain_mask_volume():
    assert 1800 < template_icv_ml() < 1950  # nilearn's skull-stripped ICBM 2009 template: 1886.5 mL


def test_crop_of_registered_scan_matches_template_crop(registered):
    array, affine, _, reg = registered
    t1 = nib.load(str(mni152_t1_path()))
    for box in HIPPOCAMPUS_BOXES_MM.values():
        crop, crop_affine = extract_box(array, affine, reg.scan_to_mni, box)
        reference, _ = extract_box(np.asarray(t1.dataobj), t1.affine, np.eye(4), box)
        assert crop.shape == reference.shape == box_grid(box)[0]
        assert np.corrcoef(crop.ravel(), reference.ravel())[0, 1] > 0.85  # bias, noise and contrast differ
        corners, centre = box_corners_in_scan(box, affine, reg.scan_to_mni)
        assert np.all(corners > -0.5) and np.all(corners < np.array(array.shape) - 0.5)  # box inside the scan
        np.testing.assert_allclose(apply_affine(np.linalg.inv(affine) @ crop_affine, (np.array(crop.shape) - 1) / 2),
                                   centre, atol=1e-6)


def _ct_like() -> tuple[np.ndarray, np.ndarray]:
    _, classes, affine = phantom()
    lut = np.array([CT_VALUES[k] for k in range(len(CT_VALUES))], np.float32)
    noise = np.random.default_rng(0).normal(0, 5, classes.shape).astype(np.float32)
    return lut[classes] + noise + 1024.0, affine


def _non_head(kind: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = -100.0
    if kind == "uniform noise":
        return rng.random((200, 200, 200), dtype=np.float32), affine
    if kind == "random blob":
        x, y, z = np.ogrid[-100:100, -100:100, -100:100]
        blob = np.exp(-2 * ((x / 70) ** 2 + (y / 90) ** 2 + (z / 80) ** 2)).astype(np.float32)
        return blob + rng.normal(0, 0.05, blob.shape).astype(np.float32), affine
    if kind == "CT-like head (bone bright)":
        return _ct_like()
    if kind == "40 mm crop":
        t1, _, head_affine = phantom()
        return t1[60:100, 80:120, 120:160], head_affine
    if kind == "blank":
        return np.zeros((180, 180, 180), np.float32), affine
    if kind == "4D":
        return np.zeros((20, 20, 20, 3), np.float32), affine
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["uniform noise", "random blob", "CT-like head (bone bright)", "40 mm crop",
                                  "blank", "4D"])
def test_non_head_input_is_refused(kind):
    reg = register_to_template(*_non_head(kind))
    assert not reg.ok
    assert reg.quality < MIN_QUALITY
    assert len(reg.message) > 20


@pytest.mark.parametrize("linear, coverage, problem", [
    (np.eye(3), 1.0, ""),
    (np.diag([1.2, 0.9, 1.1]), 0.9, ""),
    (np.diag([0.5, 0.5, 0.5]), 1.0, "implausible"),  # a head twice the template's size
    (np.diag([1.7, 1.0, 1.0]), 1.0, "implausible"),
    ([[1.0, 0.9, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], 1.0, "implausible"),  # strong shear
    (np.eye(3), 0.5, "covers only 50%"),
])
def test_implausible_transforms_are_refused(linear, coverage, problem):
    # Registration itself rarely gets this far wrong (it fails the quality check first), so the rule is tested alone.
    scan_to_mni = np.eye(4)
    scan_to_mni[:3, :3] = linear
    message = _verdict(0.9, coverage, scan_to_mni)
    assert problem in message and bool(problem) == bool(message)
    verdict, low, overridable = judge(0.3, coverage, scan_to_mni)
    assert verdict is Verdict.REFUSE
    if problem:  # an impossible transform is never overruled, whatever its match
        assert problem in low and not overridable
    else:  # a poor match alone: a person who looked at the picture may accept it
        assert "does not look like" in low and overridable


def test_verdicts_keep_accept_warn_and_refuse_apart():
    good = np.eye(4)
    assert judge(0.52, 1.0, good)[0] is Verdict.ACCEPT and judge(0.52, 1.0, good)[1] == ""
    verdict, message, overridable = judge((REFUSE_QUALITY + ACCEPT_QUALITY) / 2, 1.0, good)
    assert verdict is Verdict.WARN and "borderline" in message and not overridable
    assert judge(REFUSE_QUALITY - 0.01, 1.0, good)[0] is Verdict.REFUSE
    mirrored = np.diag([-1.0, 1.0, 1.0, 1.0])  # left and right swapped: matches a symmetric brain perfectly
    verdict, message, overridable = judge(0.99, 1.0, mirrored)
    assert verdict is Verdict.REFUSE and "left and right swapped" in message and not overridable


def test_hippocampus_boxes_match_anatomy_and_decathlon_crops():
    assert RIGHT_HIPPOCAMPUS_BOX_MM == mirror_box(LEFT_HIPPOCAMPUS_BOX_MM)
    lo, hi = np.array(LEFT_HIPPOCAMPUS_BOX_MM).T
    extent = np.array(LEFT_HIPPOCAMPUS_EXTENT_MM).T
    assert np.all(extent[0] - lo >= 3) and np.all(hi - extent[1] >= 3)  # margin around the labelled extent
    for roi in SEITZMAN_LEFT_HIPPOCAMPUS_MM:
        assert np.all(np.array(roi) - lo > 4) and np.all(hi - np.array(roi) > 4)
    shape, _ = box_grid(LEFT_HIPPOCAMPUS_BOX_MM)
    assert (32, 44, 28) <= shape <= (38, 55, 42)  # within the Decathlon crops' 5th-95th percentile shapes


def _oblique_grid(rng: np.random.Generator) -> tuple[tuple[int, int, int], np.ndarray, np.ndarray]:
    """A 170 mm scan grid with permuted, flipped, anisotropic axes around both hippocampus boxes, and a
    random scan->MNI transform."""
    scan_to_mni = random_scan_to_mni(rng)
    direction = np.zeros((3, 3))
    direction[rng.permutation(3), np.arange(3)] = np.where(rng.random(3) < 0.5, -1.0, 1.0)
    spacing = rng.uniform(0.8, 1.6, size=3)
    shape = tuple(int(n) for n in np.ceil(170 / spacing))
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing
    centre = apply_affine(np.linalg.inv(scan_to_mni), [0.0, -22.0, -13.0])
    affine[:3, 3] = centre - direction @ (spacing * (np.array(shape) - 1) / 2)
    return shape, affine, scan_to_mni


@pytest.mark.parametrize("seed", range(4))
def test_extract_box_interpolates_linear_ramp_exactly(seed):
    # Trilinear interpolation reproduces a linear function of position exactly: any axis or sign mistake shows.
    rng = np.random.default_rng(seed)
    shape, affine, scan_to_mni = _oblique_grid(rng)
    slope = rng.normal(size=3)
    world = apply_affine(affine, np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3))
    ramp = (world @ slope + 500.0).reshape(shape)
    for box in HIPPOCAMPUS_BOXES_MM.values():
        crop, crop_affine = extract_box(ramp, affine, scan_to_mni, box, spacing_mm=1.5)
        grid_shape, crop_to_mni = box_grid(box, 1.5)
        np.testing.assert_allclose(crop_affine, np.linalg.inv(scan_to_mni) @ crop_to_mni)
        crop_world = apply_affine(crop_affine, np.stack(np.meshgrid(*[np.arange(n) for n in grid_shape], indexing="ij"),
                                                  -1).reshape(-1, 3))
        np.testing.assert_allclose(crop.ravel(), crop_world @ slope + 500.0, rtol=1e-5, atol=1e-3)
        # The crop's voxel order is RAS along MNI axes: its x axis points to the subject's right.
        to_mni = scan_to_mni @ crop_affine
        np.testing.assert_allclose(to_mni[:3, :3], np.eye(3) * 1.5, atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_box_to_scan_puts_a_segmentation_back(seed):
    rng = np.random.default_rng(10 + seed)
    shape, affine, scan_to_mni = _oblique_grid(rng)
    box = LEFT_HIPPOCAMPUS_BOX_MM
    corners, centre = box_corners_in_scan(box, affine, scan_to_mni)
    # An ellipsoid "hippocampus" inside the box, drawn on the scan grid.
    world = apply_affine(affine, np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3))
    mni = apply_affine(scan_to_mni, world) - np.mean(box, axis=1)
    truth = (((mni / [9.0, 15.0, 11.0]) ** 2).sum(axis=1) < 1).reshape(shape)
    fg, crop_affine = extract_box(truth.astype(np.float32), affine, scan_to_mni, box)
    region, values = box_to_scan(np.stack([1 - fg, fg]), crop_affine, shape, affine)
    assert values.shape[0] == 2 and values.shape[1:] == tuple(s.stop - s.start for s in region)
    assert values.dtype == np.float32
    np.testing.assert_allclose(values.sum(axis=0), 1.0, atol=1e-5)
    back = np.zeros(shape, bool)
    back[region] = values[1] > 0.5
    assert 2 * (back & truth).sum() / (back.sum() + truth.sum()) > 0.9  # Dice
    # Only the box's footprint is computed: a small part of the scan, holding the whole box.
    assert np.prod(values.shape[1:]) < 0.1 * np.prod(shape)
    lo, hi = np.array([(s.start, s.stop) for s in region]).T
    assert np.all(corners >= lo - 1) and np.all(corners <= hi)
    assert truth[tuple(np.round(centre).astype(int))]
    # Scan voxels of the footprint that fall outside the box are background.
    idx = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in region], indexing="ij"), -1).reshape(-1, 3)
    in_crop = apply_affine(np.linalg.inv(crop_affine) @ affine, idx)
    outside = np.any((in_crop < -0.5) | (in_crop > np.array(fg.shape) - 0.5), axis=1).reshape(values.shape[1:])
    assert outside.any() and np.all(values[0][outside] == 1.0)


def test_box_outside_the_scan():
    affine = np.eye(4)
    far = np.eye(4)
    far[:3, 3] = 500.0  # the box lands 500 mm away from a 64 mm scan
    crop, crop_affine = extract_box(np.ones((64, 64, 64)), affine, far, LEFT_HIPPOCAMPUS_BOX_MM)
    assert crop.shape == box_grid(LEFT_HIPPOCAMPUS_BOX_MM)[0] and not crop.any()
    region, values = box_to_scan(np.ones((3, *crop.shape), np.float32) / 3, crop_affine, (64, 64, 64), affine)
    assert values.size == 0 and np.zeros((64, 64, 64))[region].size == 0


def test_box_corners_and_edges():
    affine = np.diag([0.9, 1.1, 1.5, 1.0])
    scan_to_mni = np.eye(4)
    scan_to_mni[:3, 3] = [5.0, -3.0, 2.0]
    corners, centre = box_corners_in_scan(LEFT_HIPPOCAMPUS_BOX_MM, affine, scan_to_mni)
    assert corners.shape == (8, 3) and len(BOX_EDGES) == 12
    mni = apply_affine(scan_to_mni @ affine, corners)
    np.testing.assert_allclose(mni, list(itertools.product(*LEFT_HIPPOCAMPUS_BOX_MM)), atol=1e-9)
    np.testing.assert_allclose(apply_affine(scan_to_mni @ affine, [centre])[0], np.mean(LEFT_HIPPOCAMPUS_BOX_MM, axis=1))
    sides = sorted({round(float(np.linalg.norm(mni[a] - mni[b])), 6) for a, b in BOX_EDGES})
    assert sides == sorted(float(hi - lo) for lo, hi in LEFT_HIPPOCAMPUS_BOX_MM)


def test_starts_that_disagree_make_an_accepted_match_a_warning():
    verdict, message, _ = judge(0.6, 1.0, np.eye(4), start_spread_mm=12.0)
    assert verdict is Verdict.WARN and "disagree by 12 mm" in message
    assert judge(0.6, 1.0, np.eye(4), start_spread_mm=0.4)[0] is Verdict.ACCEPT
