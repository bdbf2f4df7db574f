"""Window/level: mapping scan intensities to 8-bit grey for display.

A window is (center, width) in the scan's own units. `auto_window` is computed once per volume
from percentiles of a subsample (cheap, deterministic, cache-friendly); `apply_window` maps one
slice to uint8 with a lookup-free affine clip, fast enough to run on every redraw.
"""

from __future__ import annotations

import numpy as np

AUTO = "Auto (1-99 %)"
FULL = "Full range"

#: Named windows as (center, width); None means "computed from the volume".
PRESETS: dict[str, tuple[float, float] | None] = {
    AUTO: None,
    FULL: None,
    "T1 brain (MNI 0-100)": (50.0, 100.0),
    "CT brain": (40.0, 80.0),
    "CT soft tissue": (40.0, 400.0),
    "CT lung": (-600.0, 1500.0),
    "CT bone": (400.0, 1800.0),
}

#: Largest number of voxels looked at by `auto_window` (a strided subsample beyond this).
_SAMPLE_VOXELS = 2_000_000


def _sample(array: np.ndarray) -> np.ndarray:
    flat = np.asarray(array).reshape(-1)
    step = max(1, flat.size // _SAMPLE_VOXELS)
    return flat[::step]


def auto_window(array: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.0) -> tuple[float, float]:
    """Compute a display window spanning the lo..hi percentiles of a volume's intensities.

    Volumes above 2 million voxels are subsampled with a fixed stride, which keeps this cheap and
    deterministic (the same volume always gives the same window, so results cache well).
    Width is never zero, so a constant volume still displays (mid-grey).

    Parameters
    ----------
    array : np.ndarray of float or int, any shape
        Volume (or slice) intensities in the scan's own units.
    lo_pct, hi_pct : float, optional
        Percentiles (0..100) mapped to black and white.

    Returns
    -------
    center, width : float
        When the percentiles coincide (very sparse or constant data) the full min..max range is
        used; width is 1.0 when that is empty too; (0.0, 1.0) for an empty array.

    Examples
    --------
    >>> import numpy as np
    >>> auto_window(np.arange(101.0))
    (50.0, 98.0)
    >>> auto_window(np.full((2, 2, 2), 7.0))
    (7.0, 1.0)
    """
    sample = _sample(array)
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(sample, [lo_pct, hi_pct])
    lo, hi = float(lo), float(hi)
    if hi <= lo:  # very sparse or constant data: fall back to the full range
        lo, hi = float(sample.min()), float(sample.max())
    width = hi - lo if hi > lo else 1.0
    return (lo + hi) / 2.0, width


def full_window(array: np.ndarray) -> tuple[float, float]:
    """Compute a display window spanning the whole intensity range of a volume.

    Parameters
    ----------
    array : np.ndarray of float or int, any shape, not empty
        Intensities in the scan's own units.

    Returns
    -------
    center, width : float
        Mid-range and max - min; width is 1.0 for a constant volume.

    Raises
    ------
    ValueError
        When `array` is empty.

    Examples
    --------
    >>> import numpy as np
    >>> full_window(np.array([0.0, 10.0]))
    (5.0, 10.0)
    """
    lo, hi = float(np.min(array)), float(np.max(array))
    width = hi - lo if hi > lo else 1.0
    return (lo + hi) / 2.0, width


def preset_window(name: str, array: np.ndarray) -> tuple[float, float]:
    """Return the display window of a named preset; Auto and Full range are computed from `array`.

    Parameters
    ----------
    name : str
        A key of `PRESETS`, e.g. `AUTO`, `FULL` or "CT brain".
    array : np.ndarray, any shape
        Volume intensities; only read for `AUTO` and `FULL`.

    Returns
    -------
    center, width : float
        In the scan's own units.

    Raises
    ------
    ValueError
        When `name` is not a preset.

    Examples
    --------
    >>> import numpy as np
    >>> preset_window("CT brain", np.zeros(3))
    (40.0, 80.0)
    """
    if name not in PRESETS:
        raise ValueError(f"unknown window preset {name!r}; expected one of {list(PRESETS)}")
    if name == AUTO:
        return auto_window(array)
    if name == FULL:
        return full_window(array)
    return PRESETS[name]  # type: ignore[return-value]


def apply_window(slice2d: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map intensities to 8-bit grey: center - width/2 -> 0, center + width/2 -> 255, clipped.

    Computed in float32 and rounded half up; cheap enough to run on every redraw.

    Parameters
    ----------
    slice2d : np.ndarray of float or int, any shape
        Intensities (usually one slice) in the scan's own units.
    center, width : float
        Window in the same units; a width <= 0 is treated as 1e-6 (a hard threshold at `center`).

    Returns
    -------
    np.ndarray of uint8, same shape as `slice2d`
        New array of grey levels.

    Examples
    --------
    >>> import numpy as np
    >>> apply_window(np.array([[-10.0, 0.0, 50.0, 100.0, 200.0]]), center=50.0, width=100.0)
    array([[  0,   0, 128, 255, 255]], dtype=uint8)
    """
    width = float(width) if width > 0 else 1e-6
    lo = float(center) - width / 2.0
    scale = np.float32(255.0 / width)
    out = (np.asarray(slice2d, dtype=np.float32) - np.float32(lo)) * scale
    np.clip(out, 0.0, 255.0, out=out)
    out += 0.5  # round half up on the way to uint8
    return out.astype(np.uint8)
