"""HD95 without torch gives MONAI's `compute_hausdorff_distance(percentile=95, spacing=...)` numbers.

MONAI is the reference: evaluation no longer needs it, but the development environment has it, so the
comparison runs wherever torch and MONAI are installed and is skipped (not failed) elsewhere.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from segloop.model.metrics import hd95_per_label, surface_voxels

torch = pytest.importorskip("torch", reason="the MONAI reference needs torch (pip install 'segloop[train]')")
monai_metrics = pytest.importorskip("monai.metrics", reason="the MONAI reference needs MONAI")

TOL = 1e-5  # mm; both sides end in float32


def monai_hd95(pred: np.ndarray, ref: np.ndarray, labels, spacing) -> dict[int, float]:
    out = {}
    for k in labels:
        p, r = pred == k, ref == k
        if not p.any() or not r.any():
            out[k] = float("nan")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            val = monai_metrics.compute_hausdorff_distance(torch.from_numpy(p[None, None]), torch.from_numpy(r[None, None]),
                                                           include_background=True, percentile=95, spacing=list(spacing))
        out[k] = float(val.item())
    return out


def _assert_same(pred, ref, labels, spacing) -> float:
    ours, theirs = hd95_per_label(pred, ref, labels, spacing), monai_hd95(pred, ref, labels, spacing)
    worst = 0.0
    for k in labels:
        if math.isnan(theirs[k]):
            assert math.isnan(ours[k]), (k, ours[k])
        else:
            assert ours[k] == pytest.approx(theirs[k], abs=TOL), (k, ours[k], theirs[k])
            worst = max(worst, abs(ours[k] - theirs[k]))
    return worst


def _blobs(rng, shape, n_labels, smooth):
    """Random smooth label maps: thresholded Gaussian-filtered noise, several labels, several components."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), smooth)
    cuts = np.quantile(field, np.linspace(0.55, 0.95, n_labels + 1))
    return np.digitize(field, cuts[:-1]).astype(np.uint8)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.5, 0.8, 3.0), (1.2, 0.4, 0.9)])
def test_random_masks_match_monai(seed, spacing):
    rng = np.random.default_rng(seed)
    ref = _blobs(rng, (40, 36, 30), 3, 2.5)
    pred = _blobs(rng, (40, 36, 30), 3, 2.5)
    _assert_same(pred, ref, [1, 2, 3], spacing)


def test_realistic_prediction_errors_match_monai(msd_dir):
    """A real hippocampus label map against eroded, dilated, shifted and speckled versions of itself."""
    from segloop.io.readers import load_label, load_scan

    img = load_scan(msd_dir / "imagesTr" / "hippocampus_001.nii.gz")
    ref = load_label(msd_dir / "labelsTr" / "hippocampus_001.nii.gz", reference=img).array.astype(np.uint8)
    rng = np.random.default_rng(0)
    spacing = (1.0, 1.0, 2.5)  # anisotropic on purpose
    variants = [
        np.roll(ref, (1, -2, 1), axis=(0, 1, 2)),
        np.where(ndimage.binary_erosion(ref > 0), ref, 0),
        np.where(ndimage.binary_dilation(ref > 0, iterations=2) & (ref == 0), 1, ref),
        np.where(rng.random(ref.shape) < 0.002, 2, ref),  # speckles far from the surface: the tail HD95 sees
        ref[::-1],
    ]
    for pred in variants:
        _assert_same(pred.astype(np.uint8), ref, [1, 2], spacing)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), shape=st.tuples(*[st.integers(1, 16)] * 3),
       spacing=st.tuples(*[st.floats(0.2, 4.0)] * 3), density=st.floats(0.05, 0.9))
def test_any_masks_and_spacing_match_monai(seed, shape, spacing, density):
    """Tiny, thin, border-touching and speckled masks too: single voxels, lines, the whole volume."""
    rng = np.random.default_rng(seed)
    pred = (rng.random(shape) < density).astype(np.uint8)
    ref = (rng.random(shape) < density).astype(np.uint8)
    _assert_same(pred, ref, [1], spacing)


def test_empty_masks_give_nan_as_before():
    ref = np.zeros((10, 10, 10), np.uint8)
    ref[2:6, 2:6, 2:6] = 1
    empty = np.zeros_like(ref)
    assert math.isnan(hd95_per_label(empty, ref, [1], (1, 1, 1))[1])
    assert math.isnan(hd95_per_label(ref, empty, [1], (1, 1, 1))[1])
    assert math.isnan(hd95_per_label(empty, empty, [1], (1, 1, 1))[1])
    assert hd95_per_label(ref, ref, [1], (1, 1, 1)) == {1: 0.0}


def test_surface_is_monai_mask_edges():
    rng = np.random.default_rng(5)
    a, b = (_blobs(rng, (25, 20, 15), 1, 2.0) > 0 for _ in range(2))
    a[0, :, :] = True  # touching the volume's border: the border counts as outside
    ea, eb = monai_metrics.utils.get_mask_edges(a, b, crop=False)
    np.testing.assert_array_equal(surface_voxels(a), ea)
    np.testing.assert_array_equal(surface_voxels(b), eb)
