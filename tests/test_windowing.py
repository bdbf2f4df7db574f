"""Window/level: presets and the uint8 mapping a radiologist would check."""

from __future__ import annotations

import numpy as np
import pytest

from segloop.display.windowing import AUTO, FULL, PRESETS, apply_window, auto_window, full_window, preset_window


def test_apply_window_maps_ends_and_clips() -> None:
    sl = np.array([[-100.0, 0.0, 50.0, 100.0, 1000.0]], dtype=np.float32)
    out = apply_window(sl, center=50.0, width=100.0)
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 0, 128, 255, 255]]


def test_auto_window_spans_percentiles_and_ignores_outliers() -> None:
    rng = np.random.default_rng(0)
    vol = rng.normal(100.0, 10.0, size=(40, 40, 40)).astype(np.float32)
    vol[0, 0, 0] = 1e6  # one hot voxel must not flatten the display
    center, width = auto_window(vol)
    lo, hi = np.percentile(vol, [1, 99])
    assert center == pytest.approx((lo + hi) / 2, rel=0.02)
    assert width == pytest.approx(hi - lo, rel=0.05)
    assert width < 100


def test_constant_volume_still_displays() -> None:
    vol = np.full((4, 4, 4), 7.0, dtype=np.float32)
    center, width = auto_window(vol)
    assert width > 0
    assert apply_window(vol[:, :, 0], center, width).min() >= 0


def test_presets() -> None:
    vol = np.linspace(-1000, 3000, 1000, dtype=np.float32).reshape(10, 10, 10)
    assert preset_window(FULL, vol) == full_window(vol) == (1000.0, 4000.0)
    assert preset_window("CT bone", vol) == PRESETS["CT bone"]
    assert preset_window(AUTO, vol)[1] < 4000.0
    with pytest.raises(ValueError):
        preset_window("nope", vol)
