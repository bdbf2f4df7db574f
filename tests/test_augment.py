"""Batched training augmentation (segloop.training.augment): geometry, label safety, determinism."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from segloop.training.augment import NO_AUGMENTATION, AugmentParams, augment_batch, rotation_scale_matrix


def _batch(n=3, shape=(20, 24, 16), seed=0):
    g = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(g.normal(size=(n, 1, *shape)), (0, 0, 2, 2, 2)).astype(np.float32)
    lbl = np.zeros((n, 1, *shape), np.float32)
    lbl[:, :, 4:10, 6:14, 4:9] = 1
    lbl[:, :, 10:15, 6:14, 4:9] = 2
    return torch.from_numpy(img), torch.from_numpy(lbl)


def test_nothing_applied_leaves_the_batch_unchanged():
    img, lbl = _batch()
    out_i, out_l = augment_batch(img, lbl, np.random.default_rng(0), NO_AUGMENTATION)
    assert torch.equal(out_i, img) and torch.equal(out_l, lbl)


def test_flip_is_left_right_only():
    """RAS axis 0 is the only flip: an anterior-posterior flip would swap the labels' meaning."""
    img, lbl = _batch()
    out_i, out_l = augment_batch(img, lbl, np.random.default_rng(0), replace(NO_AUGMENTATION, p_flip=1.0))
    assert torch.equal(out_i, img.flip(2)) and torch.equal(out_l, lbl.flip(2))


def test_affine_samples_where_scipy_does():
    """The rotation and scaling about the patch centre, in voxel axes, match scipy's affine_transform
    (same matrix, offset about the centre) inside the patch."""
    img, lbl = _batch(n=1, shape=(22, 26, 18))
    rng = np.random.default_rng(5)
    params = replace(NO_AUGMENTATION, p_affine=1.0)
    out_i, out_l = augment_batch(img, lbl, rng, params)
    # replay the draws augment_batch made to know the matrix it used
    replay = np.random.default_rng(5)
    replay.random((7, 1))
    angles = replay.uniform(-params.rotate, params.rotate, (1, 3))[0]
    scales = replay.uniform(1 - params.scale, 1 + params.scale, (1, 3))[0]
    a = rotation_scale_matrix(angles, scales)
    centre = (np.asarray(img.shape[2:]) - 1) / 2
    want = ndimage.affine_transform(img[0, 0].numpy().astype(np.float64), a, offset=centre - a @ centre, order=1,
                                    mode="grid-constant", cval=0.0)
    assert np.abs(out_i[0, 0].numpy() - want).max() < 1e-4
    want_l = ndimage.affine_transform(lbl[0, 0].numpy(), a, offset=centre - a @ centre, order=0,
                                      mode="grid-constant", cval=0.0)
    assert np.mean(out_l[0, 0].numpy() != want_l) < 0.01  # nearest neighbour may round ties differently


def test_identity_matrix_resamples_exactly():
    img, lbl = _batch(n=2)
    a = rotation_scale_matrix(np.zeros(3), np.ones(3))
    assert np.array_equal(a, np.eye(3))
    params = replace(NO_AUGMENTATION, p_affine=1.0, rotate=0.0, scale=0.0)
    out_i, out_l = augment_batch(img, lbl, np.random.default_rng(1), params)
    assert torch.allclose(out_i, img, atol=1e-6) and torch.equal(out_l, lbl)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 4))
def test_every_transform_keeps_shapes_and_label_values(seed, n):
    img, lbl = _batch(n=n, seed=seed % 1000)
    everything = AugmentParams(p_affine=1, p_flip=1, p_noise=1, p_blur=1, p_scale_intensity=1, p_low_res=1, p_gamma=1)
    out_i, out_l = augment_batch(img, lbl, np.random.default_rng(seed), everything)
    assert out_i.shape == img.shape and out_l.shape == lbl.shape
    assert out_i.dtype == torch.float32 and torch.isfinite(out_i).all()
    assert set(torch.unique(out_l).tolist()) <= {0.0, 1.0, 2.0}
    assert not torch.equal(out_i, img)


def test_same_generator_state_same_batch_and_inputs_untouched():
    img, lbl = _batch(n=4)
    keep_i, keep_l = img.clone(), lbl.clone()
    a = augment_batch(img, lbl, np.random.default_rng(42))
    b = augment_batch(img, lbl, np.random.default_rng(42))
    c = augment_batch(img, lbl, np.random.default_rng(43))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert torch.equal(img, keep_i) and torch.equal(lbl, keep_l)


def test_gamma_keeps_each_case_mean_and_spread():
    img, lbl = _batch(n=3)
    out_i, _ = augment_batch(img, lbl, np.random.default_rng(0), replace(NO_AUGMENTATION, p_gamma=1.0))
    assert not torch.allclose(out_i, img)
    for k in range(3):
        assert float(out_i[k].mean()) == pytest.approx(float(img[k].mean()), abs=1e-4)
        assert float(out_i[k].std()) == pytest.approx(float(img[k].std()), rel=1e-3)


def test_blur_smooths_and_keeps_the_mean_inside():
    img, lbl = _batch(n=2)
    noisy = img + torch.from_numpy(np.random.default_rng(0).normal(0, 1, img.shape).astype(np.float32))
    out_i, _ = augment_batch(noisy, lbl, np.random.default_rng(0), replace(NO_AUGMENTATION, p_blur=1.0))
    lap = lambda t: float(torch.diff(t, dim=2).abs().mean())  # noqa: E731
    assert lap(out_i) < 0.6 * lap(noisy)
    assert float(out_i.mean()) == pytest.approx(float(noisy.mean()), abs=0.05)


def test_draws_do_not_depend_on_what_was_selected():
    """The generator advances by the same amount whatever the batch chose, so a stopped and
    resumed run draws the same numbers for its later batches."""
    img, lbl = _batch(n=3)
    r1, r2 = np.random.default_rng(9), np.random.default_rng(9)
    augment_batch(img, lbl, r1, AugmentParams())
    augment_batch(img, lbl, r2, NO_AUGMENTATION)
    assert r1.random() == r2.random()


# --------------------------------------------------------------------------- coarser acquisition (issue 22)


def test_thick_slices_blur_along_their_axis_only_and_the_labels_stay_sharp():
    from segloop.training.augment import resolution_factors, simulate_resolution

    x = torch.zeros(1, 1, 24, 24, 24)
    x[:, :, :, :, 12] = 1.0  # a thin bright sheet across z
    x[:, :, 12, :, :] += 1.0  # and one across x
    y = simulate_resolution(x, (1.0, 1.0, 4.0))
    assert float(y[0, 0, 5, 5, 12]) < 0.5 and float(y[0, 0, 5, 5, 14]) > 0.05  # z smeared over ~4 slices
    assert float(y[0, 0, 12, 5, 5]) == pytest.approx(1.0, abs=0.02)  # x untouched
    img, lbl = _batch(n=4)
    params = replace(NO_AUGMENTATION, p_resolution=1.0)
    out_i, out_l = augment_batch(img, lbl, np.random.default_rng(3), params)
    assert torch.equal(out_l, lbl) and not torch.allclose(out_i, img)
    factors = resolution_factors(np.random.default_rng(3), 1000, AugmentParams(p_resolution=0.5))
    coarse = (factors > 1).any(axis=1)
    assert 0.4 < coarse.mean() < 0.6
    thick = (factors > 1).sum(axis=1) == 1
    assert 0.35 < (thick[coarse]).mean() < 0.65 and factors[thick].max() <= 5.0 and factors[thick].max() >= 4.5
    assert np.all(factors[coarse & ~thick] >= 1.5) and np.all(factors[coarse & ~thick] <= 2.5)


def test_coarser_acquisition_off_keeps_the_random_stream_of_existing_runs():
    """A run started before the option existed, resumed with it at 0, draws exactly what it drew."""
    img, lbl = _batch(n=3)
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    a = augment_batch(img, lbl, r1, AugmentParams())
    b = augment_batch(img, lbl, r2, AugmentParams(p_resolution=0.0))
    assert torch.equal(a[0], b[0]) and r1.random() == r2.random()
    r3 = np.random.default_rng(5)
    augment_batch(img, lbl, r3, AugmentParams(p_resolution=0.3))  # on: it draws more, after the others
    assert np.random.default_rng(5).random() != r3.random()


def test_the_monai_pipeline_gets_the_same_transform_and_saves_its_random_state():
    from segloop.training.loop import _augmenter, _random_states

    plain = _augmenter((24, 24, 24), 0)
    coarse = _augmenter((24, 24, 24), 0, resolution=1.0)
    assert len(coarse.transforms) == len(plain.transforms) + 1
    assert len(_random_states(coarse)) == len(_random_states(plain)) + 1  # resumed runs continue it exactly
    from segloop.training.augment import monai_resolution_transform

    t = monai_resolution_transform(AugmentParams(p_resolution=1.0))
    t.set_random_state(seed=1)
    img, lbl = _batch(n=1, shape=(24, 24, 24))
    out = t({"image": img[0].numpy(), "label": lbl[0].numpy()})
    assert (t.factors > 1).any() and np.array_equal(out["label"], lbl[0].numpy())  # only the image is degraded
    assert out["image"].shape == (1, 24, 24, 24) and not np.allclose(out["image"], img[0].numpy())
