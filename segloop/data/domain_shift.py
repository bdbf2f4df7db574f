"""A realistic, seeded MR domain shift: another scanner/protocol's intensity profile, same anatomy.

`mr_contrast_shift` changes only intensities, never geometry (shape, affine) or labels:
1. a non-linear intensity remapping: normalise to the volume's minimum..99th percentile, apply a gamma curve
   (gamma > 1 darkens mid-grey: grey/white matter and CSF move relative to each other, as between
   MPRAGE and a different T1 sequence);
2. a smooth multiplicative bias field (receive-coil inhomogeneity): exp of low-order smooth noise,
   made by upsampling a coarse random grid with cubic splines (scipy.ndimage.zoom);
3. Rician-like noise at a lower SNR (noise in the two quadrature channels, magnitude taken).
The result is rescaled to the original intensity range so file dtypes and windows stay sensible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class ShiftParams:
    """Strength of each component of the shift.

    Parameters
    ----------
    gamma : float, optional
        Exponent of the intensity remapping; 1 leaves intensities as they are.
    bias_strength : float, optional
        Standard deviation of the log bias field; 0 disables the field.
    bias_grid : int, optional
        Control points per axis of the bias field (at least 2 are used); fewer is smoother.
    snr : float, optional
        Mean of the brightest 10 % of voxels over the noise standard deviation; ``inf`` or 0 disables noise.
    """

    gamma: float = 2.5  # intensity remapping exponent (1 = none)
    bias_strength: float = 0.5  # std of the log bias field (0 = none); 0.5 ~ x0.6..x1.6 across the volume
    bias_grid: int = 3  # coarse control points per axis of the bias field (smoothness)
    snr: float = 8.0  # signal (mean of the brightest 10 %) over noise std; lower = noisier; inf = none

    def describe(self) -> str:
        """Describe the shift in one sentence, for model cards and reports.

        Returns
        -------
        str
            E.g. "MR contrast shift: gamma 2.5 intensity remap, smooth multiplicative bias field ...".
        """
        return (f"MR contrast shift: gamma {self.gamma:g} intensity remap, smooth multiplicative bias field "
                f"(log-std {self.bias_strength:g}, {self.bias_grid}^3 control grid), Rician noise at SNR {self.snr:g}")

    def to_dict(self) -> dict:
        """Return the parameters as a plain dict.

        Returns
        -------
        dict
            ``gamma``, ``bias_strength``, ``bias_grid`` and ``snr`` (an infinite ``snr`` is written by
            Python's json as ``Infinity``, which strict JSON readers refuse).
        """
        return asdict(self)


def bias_field(shape: tuple[int, ...], strength: float, grid: int, rng: np.random.Generator) -> np.ndarray:
    """Make a smooth positive multiplicative field, like a receive coil's inhomogeneity.

    A coarse grid of standard-normal values is upsampled with cubic splines, normalised to zero
    mean and unit standard deviation, scaled by `strength` and exponentiated.

    Parameters
    ----------
    shape : tuple of int
        Shape of the field (any number of axes, each at least 1).
    strength : float
        Standard deviation of the log field; 0 gives a field of ones.
    grid : int
        Control points per axis (at least 2 are used); fewer is smoother.
    rng : np.random.Generator
        Source of randomness; the same generator state gives the same field.

    Returns
    -------
    np.ndarray of float32, shape `shape`
        Positive factors; their log has mean 0 and standard deviation `strength` (unless the field is
        constant).
    """
    coarse = rng.normal(0.0, 1.0, size=(max(2, grid),) * len(shape))
    log_field = ndimage.zoom(coarse, [s / c for s, c in zip(shape, coarse.shape)], order=3, mode="nearest")
    log_field = log_field[tuple(slice(0, s) for s in shape)]
    std = float(log_field.std())
    if std > 0:
        log_field = (log_field - log_field.mean()) / std
    return np.exp(strength * log_field).astype(np.float32)


def mr_contrast_shift(image: np.ndarray, seed: int, params: ShiftParams = ShiftParams()) -> np.ndarray:
    """Show an image as another MR scanner/protocol might: same anatomy, different intensity profile.

    Seeded, so a shifted test set can be reproduced exactly; only intensities change, never
    geometry or labels (see the module docstring for the three steps).

    Parameters
    ----------
    image : np.ndarray of float or int, any shape
        Scan intensities in the scan's own units.
    seed : int
        Seed of the random bias field and noise.
    params : ShiftParams, optional
        Strength of each component.

    Returns
    -------
    np.ndarray of float32, same shape as `image`
        The shifted image, clipped to the input's min..max range.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.arange(64, dtype=np.int16).reshape(4, 4, 4)
    >>> shifted = mr_contrast_shift(image, seed=0)
    >>> shifted.dtype, shifted.shape, float(shifted.max()) <= 63.0
    (dtype('float32'), (4, 4, 4), True)
    >>> bool(np.array_equal(shifted, mr_contrast_shift(image, seed=0)))
    True
    """
    img = np.asarray(image, dtype=np.float32)
    rng = np.random.default_rng(seed)
    lo, hi = float(img.min()), float(np.percentile(img, 99.0))
    scale = (hi - lo) or 1.0
    x = (img - lo) / scale
    x = x ** params.gamma
    if params.bias_strength > 0:
        x = x * bias_field(img.shape, params.bias_strength, params.bias_grid, rng)
    if np.isfinite(params.snr) and params.snr > 0:
        signal = float(np.mean(x[x >= np.percentile(x, 90)])) or 1.0
        sigma = signal / params.snr
        x = np.sqrt((x + rng.normal(0.0, sigma, x.shape)) ** 2 + rng.normal(0.0, sigma, x.shape) ** 2)
    out = lo + x * scale
    return np.clip(out, float(img.min()), float(img.max())).astype(np.float32)
