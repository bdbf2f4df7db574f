"""Preprocessing shared by training and inference."""

from __future__ import annotations

import numpy as np

from segloop.data.splits import kfold_split
from segloop.model.preprocessing import normalize, pad_to_multiple


def test_normalize_is_robust_to_intensity_range():
    rng = np.random.default_rng(0)
    base = rng.gamma(2.0, 50.0, size=(20, 24, 18)).astype(np.float32)
    small = normalize(base)
    huge = normalize(base * 10_000.0)  # MSD images range from ~100 to ~1.7 million
    np.testing.assert_allclose(small, huge, atol=1e-4)
    assert abs(float(small.mean())) < 1e-4 and abs(float(small.std()) - 1) < 1e-3


def test_normalize_clips_outliers():
    img = np.ones((10, 10, 10), np.float32)
    img[:5] = 2.0
    img[0, 0, 0] = 1e9
    out = normalize(img)
    assert out.max() < 5  # the single hot voxel is clipped to the 99.5th percentile


def test_pad_to_multiple_and_crop_back():
    arr = np.arange(31 * 40 * 26, dtype=np.float32).reshape(31, 40, 26)
    padded, crop = pad_to_multiple(arr[None, None], 16)
    assert padded.shape == (1, 1, 32, 48, 32)
    np.testing.assert_array_equal(padded[crop][0, 0], arr)
    padded, crop = pad_to_multiple(arr, 16, min_shape=(48, 64, 48))
    assert padded.shape == (48, 64, 48)
    np.testing.assert_array_equal(padded[crop], arr)


def test_kfold_split_is_seeded_and_disjoint():
    names = [f"case_{i:03d}" for i in range(23)]
    a = kfold_split(names, 5, 0, seed=0)
    assert a == kfold_split(list(reversed(names)), 5, 0, seed=0)
    assert not set(a.train) & set(a.validation)
    assert sorted(a.train + a.validation) == names
    folds = [set(kfold_split(names, 5, f, seed=0).validation) for f in range(5)]
    assert set().union(*folds) == set(names) and sum(map(len, folds)) == len(names)
    assert kfold_split(names, 5, 0, seed=1).validation != a.validation


def test_ensemble_network_averages_member_probabilities():
    import torch

    from segloop.model.network import DEFAULT_ARCHITECTURE, build_network, ensemble_architecture, size_divisor

    small = {**DEFAULT_ARCHITECTURE, "channels": [4, 8, 16], "strides": [2, 2]}
    other = {**small, "num_res_units": 1}
    arch = ensemble_architecture([small, other])
    assert size_divisor(arch) == 4
    torch.manual_seed(0)
    net = build_network(arch).eval()
    x = torch.randn(1, 1, 8, 12, 8)
    with torch.no_grad():
        expected = torch.stack([torch.softmax(m(x), 1) for m in net.members]).mean(0)
        got = torch.softmax(net(x), 1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
