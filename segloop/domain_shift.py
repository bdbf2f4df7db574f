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
    """Strength of each component of the shift."""

    gamma: float = 2.5  # intensity remapping exponent (1 = none)
    bias_strength: float = 0.5  # std of the log bias field (0 = none); 0.5 ~ x0.6..x1.6 across the volume
    bias_grid: int = 3  # coarse control points per axis of the bias field (smoothness)
    snr: float = 8.0  # signal (mean of the brightest 10 %) over noise std; lower = noisier; inf = none

    def describe(self) -> str:
        return (f"MR contrast shift: gamma {self.gamma:g} intensity remap, smooth multiplicative bias field "
                f"(log-std {self.bias_strength:g}, {self.bias_grid}^3 control grid), Rician noise at SNR {self.snr:g}")

    def to_dict(self) -> dict:
        return asdict(self)


def bias_field(shape: tuple[int, ...], strength: float, grid: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth positive multiplicative field with log-standard-deviation about `strength`."""
    coarse = rng.normal(0.0, 1.0, size=(max(2, grid),) * len(shape))
    log_field = ndimage.zoom(coarse, [s / c for s, c in zip(shape, coarse.shape)], order=3, mode="nearest")
    log_field = log_field[tuple(slice(0, s) for s in shape)]
    std = float(log_field.std())
    if std > 0:
        log_field = (log_field - log_field.mean()) / std
    return np.exp(strength * log_field).astype(np.float32)


def mr_contrast_shift(image: np.ndarray, seed: int, params: ShiftParams = ShiftParams()) -> np.ndarray:
    """The image as another MR protocol might show it (float32, same shape, same intensity range)."""
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
