"""Preprocessing shared exactly by training and inference: intensity normalisation and padding.

The model card names the normalisation and size divisor; `normalize` and `pad_to_multiple`
are the only implementations, so training and inference cannot drift apart.
"""

from __future__ import annotations

import numpy as np

#: Percentiles used to clip intensities before z-scoring (robust to the 100 .. 1.7 M ranges in MSD).
CLIP_PERCENTILES = (0.5, 99.5)


def normalize(image: np.ndarray, method: str = "clip_zscore") -> np.ndarray:
    """Per-volume intensity normalisation to float32.

    `clip_zscore`: clip to the 0.5/99.5 percentiles, then zero mean and unit variance over the
    whole volume (the scans are tight crops with little background, as in nnU-Net's MRI scheme).

    Parameters
    ----------
    image : np.ndarray of float or int, any shape
        Scan intensities in the scan's own units (the whole volume, not a patch, so training and
        inference see the same statistics).
    method : str, optional
        Normalisation named by the model card; only "clip_zscore" exists.

    Returns
    -------
    np.ndarray of float32, same shape as `image`
        A new array; all zeros for a constant volume (the standard deviation is floored at 1e-8).

    Raises
    ------
    ValueError
        When `method` is not "clip_zscore".

    Examples
    --------
    >>> import numpy as np
    >>> out = normalize(np.arange(1000.0).reshape(10, 10, 10))
    >>> out.dtype, round(float(out.mean()), 6), round(float(out.std()), 4)
    (dtype('float32'), 0.0, 1.0)
    """
    if method != "clip_zscore":
        raise ValueError(f"unknown normalisation {method!r}")
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, CLIP_PERCENTILES)
    img = np.clip(img, lo, hi)
    mean = float(img.mean())
    std = float(img.std())
    return ((img - mean) / max(std, 1e-8)).astype(np.float32)


def pad_to_multiple(array: np.ndarray, divisor: int, min_shape: tuple[int, ...] | None = None,
                    value: float = 0.0) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Pad the last 3 axes symmetrically up to a multiple of `divisor` (and at least `min_shape`).

    Returns the padded array and the slices that crop it back to the original extent.

    Parameters
    ----------
    array : np.ndarray, shape (..., X, Y, Z)
        Image, label map or network output; leading (batch/channel) axes are not padded.
    divisor : int
        Each padded spatial size is a multiple of this (the network's size divisor).
    min_shape : tuple of 3 int, optional
        Smallest padded spatial size, before rounding up to the divisor.
    value : float, optional
        Constant written into the padding.

    Returns
    -------
    padded : np.ndarray, shape (..., X', Y', Z')
        Same dtype as `array`; an odd amount of padding puts the extra voxel at the end of the axis.
    crop : tuple of slice
        ``padded[crop]`` is the original extent (``slice(None)`` for leading axes).

    Examples
    --------
    >>> import numpy as np
    >>> padded, crop = pad_to_multiple(np.ones((5, 6, 7), np.float32), 4)
    >>> padded.shape, crop
    ((8, 8, 8), (slice(1, 6, None), slice(1, 7, None), slice(0, 7, None)))
    >>> bool(np.array_equal(padded[crop], np.ones((5, 6, 7))))
    True
    """
    spatial = array.shape[-3:]
    target = []
    for i, s in enumerate(spatial):
        t = max(s, min_shape[i] if min_shape else 0)
        target.append(int(np.ceil(t / divisor) * divisor))
    pads = [((t - s) // 2, (t - s) - (t - s) // 2) for s, t in zip(spatial, target)]
    lead = [(0, 0)] * (array.ndim - 3)
    padded = np.pad(array, lead + pads, mode="constant", constant_values=value)
    crop = tuple([slice(None)] * (array.ndim - 3) + [slice(b, b + s) for (b, _), s in zip(pads, spatial)])
    return padded, crop
