"""The bench's domain shift: seeded, deterministic, changes intensities but never geometry or labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segloop.data.domain_shift import ShiftParams, bias_field, mr_contrast_shift
from segloop.io.readers import load_label, load_scan


def test_shift_is_seeded_and_keeps_geometry(msd_dir: Path) -> None:
    vol = load_scan(msd_dir / "imagesTr" / "hippocampus_001.nii.gz")
    lbl = load_label(msd_dir / "labelsTr" / "hippocampus_001.nii.gz", reference=vol).array.copy()
    a = mr_contrast_shift(vol.array, seed=3)
    b = mr_contrast_shift(vol.array, seed=3)
    c = mr_contrast_shift(vol.array, seed=4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == vol.array.shape and a.dtype == np.float32
    assert a.min() >= vol.array.min() and a.max() <= vol.array.max()
    # intensities really change: the contrast between the hippocampus and its surroundings moves
    fg = lbl > 0
    ratio_before = vol.array[fg].mean() / vol.array[~fg].mean()
    ratio_after = a[fg].mean() / a[~fg].mean()
    assert abs(ratio_after - ratio_before) > 0.05
    assert np.corrcoef(a.ravel(), vol.array.ravel())[0, 1] < 0.99
    # the input array and the labels are untouched
    assert np.array_equal(lbl, load_label(msd_dir / "labelsTr" / "hippocampus_001.nii.gz", reference=vol).array)
    assert np.array_equal(vol.array, load_scan(msd_dir / "imagesTr" / "hippocampus_001.nii.gz").array)


def test_no_shift_parameters_give_back_the_image() -> None:
    img = np.random.default_rng(0).uniform(10, 500, (12, 14, 10)).astype(np.float32)
    out = mr_contrast_shift(img, seed=0, params=ShiftParams(gamma=1.0, bias_strength=0.0, snr=float("inf")))
    assert np.allclose(out, img, atol=1e-3)


def test_bias_field_is_smooth_and_positive() -> None:
    f = bias_field((30, 40, 30), 0.4, 3, np.random.default_rng(1))
    assert f.shape == (30, 40, 30) and (f > 0).all()
    assert 0.25 < np.log(f).std() < 0.55
    # smooth: neighbouring voxels differ by far less than the field varies overall
    assert np.abs(np.diff(np.log(f), axis=0)).max() < 0.25 * (np.log(f).max() - np.log(f).min())
