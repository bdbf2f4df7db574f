"""The numpy sliding window gives MONAI's `sliding_window_inference` outputs (Gaussian mode, overlap 0.25).

MONAI is the reference: inference no longer needs it, but the development environment has it, so
the comparison runs wherever torch and MONAI are installed and is skipped (not failed) elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segloop.model.sliding_window import gaussian_importance_map, scan_starts, sliding_window_inference

torch = pytest.importorskip("torch", reason="the MONAI reference needs torch (pip install 'segloop[train]')")
monai_inferers = pytest.importorskip("monai.inferers", reason="the MONAI reference needs MONAI")
monai_data = pytest.importorskip("monai.data.utils", reason="the MONAI reference needs MONAI")

ATOL = 1e-5


def predictor_np(w: np.ndarray) -> np.ndarray:
    """Deterministic and position-dependent within the window, so overlapping windows disagree and the
    blending weights show: channel 0 the input, channel 1 a nonlinear mix with a ramp along each axis."""
    ramps = sum(np.linspace(-1.0, 1.0, n, dtype=np.float32).reshape([-1 if i == a else 1 for i in range(w.ndim - 2)])
                for a, n in enumerate(w.shape[2:]))
    return np.concatenate([w, np.tanh(w) * 0.5 + ramps + w**2 * 0.1], axis=1).astype(np.float32)


def monai_reference(x: np.ndarray, roi: tuple[int, ...], overlap: float = 0.25) -> np.ndarray:
    def predictor(t):
        return torch.from_numpy(predictor_np(t.numpy()))

    with torch.no_grad():
        return monai_inferers.sliding_window_inference(torch.from_numpy(x), list(roi), 1, predictor,
                                                       overlap=overlap, mode="gaussian").numpy()


def _compare(shape, roi, seed=0, overlap=0.25):
    x = np.random.default_rng(seed).standard_normal((1, 1, *shape)).astype(np.float32)
    ours = sliding_window_inference(x, roi, predictor_np, overlap=overlap)
    ref = monai_reference(x, roi, overlap)
    assert ours.shape == ref.shape == (1, 2, *shape)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)
    return float(np.abs(ours - ref).max())


@pytest.mark.parametrize("shape, roi", [
    ((20, 24, 16), (32, 32, 32)),    # smaller than the window on every axis: padded, cropped back
    ((32, 32, 32), (32, 32, 32)),    # exactly one window
    ((33, 31, 32), (32, 32, 32)),    # one voxel over / under
    ((48, 64, 48), (48, 64, 48)),    # the hippocampus model's patch
    ((150, 97, 70), (48, 64, 48)),   # much larger than the window: many overlapping windows
    ((193, 229, 193), (64, 64, 64)),  # the MNI template's grid, as whole-head inference sees it
])
def test_same_as_monai(shape, roi):
    _compare(shape, roi)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.tuples(*[st.integers(1, 40)] * 3), roi=st.tuples(*[st.integers(1, 24)] * 3),
       overlap=st.sampled_from([0.0, 0.25, 0.5, 0.9]), seed=st.integers(0, 2**16))
def test_same_as_monai_for_any_shape_window_and_overlap(shape, roi, overlap, seed):
    _compare(shape, roi, seed, overlap)


def test_two_dimensional_and_batched_inputs_match_monai():
    x = np.random.default_rng(3).standard_normal((2, 1, 70, 45)).astype(np.float32)
    ours = sliding_window_inference(x, (32, 16), predictor_np)
    np.testing.assert_allclose(ours, monai_reference(x, (32, 16)), atol=ATOL, rtol=0)


@given(size=st.integers(1, 300), roi=st.integers(1, 96), overlap=st.sampled_from([0.0, 0.25, 0.5, 0.75]))
@settings(max_examples=200, deadline=None)
def test_window_starts_are_monai_dense_patch_slices(size, roi, overlap):
    size = max(size, roi)  # sliding_window_inference pads first: the axis is never shorter than the window
    step = monai_inferers.utils._get_scan_interval((size,), (roi,), 1, (overlap,))
    ref = [s[0].start for s in monai_data.dense_patch_slices((size,), (roi,), step)]
    assert scan_starts(size, roi, overlap) == ref


@pytest.mark.parametrize("roi", [(48, 64, 48), (64, 64, 64), (5, 4, 3), (1, 7, 2), (96, 96, 96)])
def test_importance_map_is_monai_gaussian(roi):
    ref = monai_data.compute_importance_map(roi, mode="gaussian", sigma_scale=0.125).numpy()
    ours = gaussian_importance_map(roi)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-7, rtol=1e-6)


def test_bad_arguments_are_refused():
    x = np.zeros((1, 1, 8, 8, 8), np.float32)
    with pytest.raises(ValueError, match="one length per spatial axis"):
        sliding_window_inference(x, (4, 4), predictor_np)
    with pytest.raises(ValueError, match="overlap"):
        sliding_window_inference(x, (4, 4, 4), predictor_np, overlap=1.0)
    with pytest.raises(ValueError, match="spatial shape"):
        sliding_window_inference(x, (4, 4, 4), lambda w: w[:, :, :2])


def test_shipped_model_logits_match_monai_over_many_windows(msd_dir, shipped_model):
    """The real predictor (ONNX Runtime, the shipped model) over a volume of many hippocampus crops."""
    from segloop.io.readers import load_scan
    from segloop.model.inference import get_session
    from segloop.model.preprocessing import normalize, pad_to_multiple

    sess = get_session(shipped_model)
    crops = [normalize(load_scan(msd_dir / "imagesTr" / f"hippocampus_{i}.nii.gz").array, sess.card.input.normalization)
             for i in ("001", "003", "007")]
    shape = np.max([c.shape for c in crops], axis=0)
    tiles = [np.pad(c, [(0, s - n) for s, n in zip(shape, c.shape)]) for c in crops]
    volume = np.concatenate([np.concatenate(tiles, axis=0), np.concatenate(tiles[::-1], axis=0)], axis=1)
    roi = tuple(int(np.ceil(p / 16) * 16) for p in sess.card.input.patch)
    x, _ = pad_to_multiple(volume[None, None].astype(np.float32), 16, min_shape=roi)

    def run(w: np.ndarray) -> np.ndarray:
        return sess.session.run(None, {"image": np.ascontiguousarray(w, np.float32)})[0]

    ours = sliding_window_inference(x, roi, run)
    with torch.no_grad():
        ref = monai_inferers.sliding_window_inference(torch.from_numpy(x), list(roi), 1,
                                                      lambda t: torch.from_numpy(run(t.numpy())),
                                                      overlap=0.25, mode="gaussian").numpy()
    assert x.shape[2] > 2 * roi[0] and x.shape[3] > roi[1]  # several windows along two axes
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    assert (ours.argmax(1) == ref.argmax(1)).all()
