"""Sliding-window inference in numpy: Gaussian-weighted blending of overlapping windows.

A numpy twin of MONAI's `sliding_window_inference(inputs, roi_size, 1, predictor, overlap,
mode="gaussian", sigma_scale)` (monai 1.6: `monai.inferers.utils`, `monai.data.utils.dense_patch_slices`
and `compute_importance_map`), so that inference needs neither torch nor MONAI: the same padding of
inputs smaller than the window, the same window positions, the same float32 importance map and the same
weighted average. tests/test_sliding_window.py checks it against MONAI itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def scan_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Start indices of the windows along one axis, as MONAI's `dense_patch_slices` places them.

    Windows step by ``int(roi * (1 - overlap))`` (at least 1; a whole step when the axis is exactly
    one window long) until one reaches the end; the last is moved back to end at the axis's end.

    Parameters
    ----------
    size : int
        Length of the axis, at least `roi` (shorter inputs are padded first).
    roi : int
        Window length.
    overlap : float
        Fraction of a window shared with the next, in [0, 1).

    Returns
    -------
    list of int
        Increasing start indices; every window ``[s, s + roi)`` lies inside the axis.

    Examples
    --------
    >>> scan_starts(100, 48, 0.25)
    [0, 36, 52]
    >>> scan_starts(48, 48, 0.25)
    [0]
    """
    step = roi if roi == size else max(int(roi * (1 - overlap)), 1)
    n = math.ceil(size / step)
    last = next((d for d in range(n) if d * step + roi >= size), None)
    count = last + 1 if last is not None else 1
    return [i * step - max(i * step + roi - size, 0) for i in range(count)]


def gaussian_importance_map(roi: tuple[int, ...], sigma_scale: float = 0.125) -> np.ndarray:
    """Window weights: a separable Gaussian, sigma = `sigma_scale` x window length, float32.

    As MONAI's ``compute_importance_map(roi, mode="gaussian")``: peak 1 at the centre, the product of
    the per-axis Gaussians taken axis by axis in float32, then every weight raised to at least
    ``max(smallest weight, 1e-3)`` so that window corners still count.

    Parameters
    ----------
    roi : tuple of int
        Window shape.
    sigma_scale : float
        Standard deviation as a fraction of each axis's length.

    Returns
    -------
    np.ndarray of float32, shape `roi`

    Examples
    --------
    >>> w = gaussian_importance_map((5, 4))
    >>> w.shape, w.dtype, round(float(w.max()), 4), round(float(w.min()), 6)
    ((5, 4), dtype('float32'), 0.6065, 0.001)
    """
    weights = None
    for i, n in enumerate(roi):
        sigma = n * sigma_scale
        x = np.arange(-(n - 1) / 2.0, (n - 1) / 2.0 + 1, dtype=np.float32)[:n]
        g = np.exp(x**2 / np.float32(-2 * sigma**2)).astype(np.float32)
        weights = g if i == 0 else weights[..., None] * g
    floor = max(float(weights.min()), 1e-3)
    return np.maximum(weights, np.float32(floor)).astype(np.float32)


def sliding_window_inference(inputs: np.ndarray, roi: tuple[int, ...] | list[int],
                             predictor: Callable[[np.ndarray], np.ndarray], overlap: float = 0.25,
                             sigma_scale: float = 0.125) -> np.ndarray:
    """Run `predictor` over overlapping windows of `inputs` and blend the outputs with Gaussian weights.

    Parameters
    ----------
    inputs : np.ndarray, shape (N, C, *spatial)
        Batch of channel-first images; the output has their dtype (float32 for a model's input).
    roi : sequence of int
        Window shape, one length per spatial axis. An axis shorter than its window is padded with
        zeros (half before, the rest after) and cropped back afterwards.
    predictor : callable
        Maps a window batch (N, C, *roi) to outputs (N, K, *roi); called once per window, in MONAI's
        order (the last spatial axis fastest).
    overlap : float
        Fraction of a window shared with its neighbour along each axis, in [0, 1).
    sigma_scale : float
        Gaussian standard deviation as a fraction of the window length (`gaussian_importance_map`).

    Returns
    -------
    np.ndarray, shape (N, K, *spatial)
        Per voxel, the weighted mean of the outputs of every window covering it.

    Raises
    ------
    ValueError
        When `roi` does not have one length per spatial axis, `overlap` is outside [0, 1), or the
        predictor's output does not have the window's spatial shape.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(2 * 1 * 70 * 20, dtype=np.float32).reshape(2, 1, 70, 20)
    >>> out = sliding_window_inference(x, (32, 32), lambda w: np.concatenate([w, -w], axis=1))
    >>> out.shape, bool(np.allclose(out[:, :1], x) and np.allclose(out[:, 1:], -x))
    ((2, 2, 70, 20), True)
    """
    spatial = tuple(inputs.shape[2:])
    roi = tuple(int(r) for r in roi)
    if len(roi) != len(spatial):
        raise ValueError(f"roi {roi} needs one length per spatial axis of inputs {inputs.shape}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be >= 0 and < 1, got {overlap}")
    dtype = inputs.dtype
    pads = [(max(r - s, 0) // 2, max(r - s, 0) - max(r - s, 0) // 2) for s, r in zip(spatial, roi)]
    if any(sum(p) for p in pads):
        inputs = np.pad(inputs, [(0, 0), (0, 0)] + pads)
    size = tuple(inputs.shape[2:])
    starts = [scan_starts(s, r, overlap) for s, r in zip(size, roi)]
    weights = gaussian_importance_map(roi, sigma_scale).astype(dtype, copy=False)

    out = None
    count = np.zeros(size, dtype)
    for corner in np.stack(np.meshgrid(*starts, indexing="ij"), -1).reshape(-1, len(roi)):
        window = (slice(None), slice(None)) + tuple(slice(int(c), int(c) + r) for c, r in zip(corner, roi))
        pred = np.asarray(predictor(inputs[window]))
        if pred.shape[2:] != roi:
            raise ValueError(f"predictor returned spatial shape {pred.shape[2:]} for a window of {roi}")
        if out is None:
            out = np.zeros((inputs.shape[0], pred.shape[1], *size), dtype)
        out[window] += pred * weights
        count[window[2:]] += weights
    out /= count
    crop = tuple(slice(before, before + s) for (before, _), s in zip(pads, spatial))
    return out[(slice(None), slice(None)) + crop]
