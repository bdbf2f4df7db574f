"""Selections -> edits, the uncertainty heat layer, and recording a model output in the datastore."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segloop.display import planes
from segloop.display.overlays import uncertainty_levels
from segloop.editing.selections import apply_selection
from segloop.io.readers import load_label
from segloop.io.volume import volume_from_array
from segloop.store.database import Datastore
from segloop.store.predictions import ensure_scan, record_model_output


def _sel(box=(), lasso=(), points=()) -> dict:
    return {"box": list(box), "lasso": list(lasso), "points": list(points)}


def test_box_on_anisotropic_coronal_slice_uses_mm_per_pixel() -> None:
    labels = np.zeros((10, 8, 6), np.uint8)  # coronal slice: rows = z (6), cols = x (10)
    spacing = (0.5, 1.0, 3.0)  # coronal: row_mm 3.0, col_mm 0.5
    # x 1.1..2.4 mm -> cols 2.2..4.8 -> 3, 4; y 2.0..7.0 mm -> rows 0.67..2.33 -> 1, 2
    out = apply_selection(labels, "coronal", 4, _sel(box=[{"x": [2.4, 1.1], "y": [2.0, 7.0]}]), "box", 3, spacing)
    assert out.pixel_box == (1, 2, 3, 4)
    expected = np.zeros_like(labels)
    planes.slice_view(expected, "coronal", 4)[1:3, 3:5] = 3
    assert np.array_equal(labels, expected)
    assert len(out.edit) == 4


def test_lasso_fills_and_eraser_clears() -> None:
    labels = np.ones((12, 12, 3), np.uint8)
    tri = {"x": [0.0, 8.0, 0.0], "y": [0.0, 0.0, 8.0]}  # right triangle with legs on row 0 and col 0
    out = apply_selection(labels, "axial", 1, _sel(lasso=[tri]), "lasso", 0, (1.0, 1.0, 1.0))
    view = planes.slice_view(labels, "axial", 1)
    rr, cc = np.mgrid[:12, :12]
    inside = (rr + cc <= 8)
    assert (view[inside] == 0).all() and (view[~inside] == 1).all()
    assert len(out.edit) == int(inside.sum())
    assert (planes.slice_view(labels, "axial", 0) == 1).all()  # other slices untouched


def test_clicks_flood_fill_and_delete_component() -> None:
    labels = np.zeros((9, 9, 4), np.uint8)
    labels[1:3, 1:3, :] = 1  # a component through all axial slices
    labels[6:8, 6:8, 1] = 1  # a second, separate component
    spacing = (1.0, 1.0, 1.0)
    _, row, col = planes.voxel_to_display("axial", (1, 1, 2), labels.shape)
    click = {"x": float(col), "y": float(row), "curve_number": 3}
    out = apply_selection(labels, "axial", 2, _sel(points=[click]), "delete component", 0, spacing)
    assert len(out.edit) == 16 and labels[1:3, 1:3, :].sum() == 0 and labels[6:8, 6:8, 1].all()
    # flood fill of background on axial slice 0 with label 2 fills the whole slice
    out = apply_selection(labels, "axial", 0, _sel(points=[click]), "flood fill", 2, spacing)
    assert (labels[:, :, 0] == 2).all() and (labels[:, :, 1:] != 2).all()
    # a box tool ignores clicks; a click tool ignores boxes
    assert apply_selection(labels, "axial", 0, _sel(points=[click]), "box", 2, spacing) is None
    assert apply_selection(labels, "axial", 0, _sel(box=[{"x": [0, 1], "y": [0, 1]}]), "flood fill", 2, spacing) is None


def test_uncertainty_levels_bin_the_map_once() -> None:
    unc = np.zeros((4, 5, 2), np.float32)
    unc[0, 0, 1], unc[1, 0, 1], unc[2, 0, 1], unc[3, 0, 1] = 0.05, 0.2, 0.6, 0.9
    levels = uncertainty_levels(unc)
    assert levels.dtype == np.uint8 and levels.shape == unc.shape
    assert levels[:, 0, 1].tolist() == [0, 1, 3, 4]
    assert not levels[:, :, 0].any()  # nothing uncertain there


def test_record_model_output_saves_version_uncertainty_and_row(tmp_path: Path) -> None:
    store = Datastore(workspace=tmp_path / "ws")
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    vol = volume_from_array(np.random.default_rng(0).random((6, 7, 5)).astype(np.float32), affine, name="up")
    scan = ensure_scan(store, "uploaded scan", vol, "upload")
    assert Path(scan.image_path).is_file()  # an upload without a file is written into the workspace
    assert ensure_scan(store, "uploaded scan", vol, "upload").id == scan.id
    model = _register_dummy_model(store, tmp_path)
    labels = np.zeros(vol.shape, np.uint8)
    labels[2:4, 2:5, 1:3] = 1
    unc = np.full(vol.shape, 0.5, np.float32)
    version, info = record_model_output(store, scan, vol, labels, unc, model.id)
    assert (version.version, version.kind, version.model_id) == (1, "model", model.id)
    assert np.array_equal(load_label(version.path, reference=vol).array, labels)
    assert info.foreground_voxels == 12 and info.mean_uncertainty == pytest.approx(0.5)
    assert np.load(info.uncertainty_path).shape == vol.shape


def _register_dummy_model(store: Datastore, tmp_path: Path):
    from segloop.store.registry import register_model

    onnx = tmp_path / "dummy.onnx"
    onnx.write_bytes(b"not really a model")
    return register_model(store, onnx)
