"""Glue between the "Segment & correct" page and the core: selections -> edits, recording a prediction.

Plotly reports a box or lasso selection as its outline in figure coordinates (on-screen mm, see
`segloop.render`), and a click as a point; `apply_selection` turns either into one label edit on
the shown slice. `record_model_output` stores a model's prediction of a scan in the datastore (a
'model' label version, the uncertainty map as .npy, and the prediction row). `uncertainty_layer`
adds the uncertainty as a small palette-PNG heat layer to a slice figure (no float heatmaps).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segloop import editing, planes
from segloop.atomic_io import atomic_write_bytes
from segloop.datastore import Datastore, LabelVersion, PredictionInfo, ScanRecord
from segloop.edit_history import Edit
from segloop.render import encode_png, figure_xy_to_pixel, png_data_uri
from segloop.volume import Volume

#: Uncertainty bins drawn by the heat layer (normalised entropy); below the first nothing is drawn.
UNCERTAINTY_THRESHOLDS = (0.1, 0.25, 0.5, 0.75)
#: Heat colours of the bins, yellow (somewhat unsure) to red (very unsure).
UNCERTAINTY_COLORS = ((255, 255, 178), (254, 204, 92), (253, 141, 60), (227, 26, 28))

BOX_TOOLS = ("box", "lasso")
CLICK_TOOLS = ("flood fill", "delete component")


@dataclass(frozen=True)
class AppliedSelection:
    """What a selection did: the edit and, for a box, the pixel rectangle (rows, cols, inclusive)."""

    edit: Edit
    pixel_box: tuple[int, int, int, int] | None = None  # (row0, row1, col0, col1)


def selection_signature(plane: str, index: int, selection: dict[str, Any]) -> str:
    """A stable string for a selection on a slice, to apply each selection only once."""
    sel = {k: selection.get(k) or [] for k in ("box", "lasso")}
    sel["points"] = [(p.get("x"), p.get("y")) for p in (selection.get("points") or [])[:4]]
    return json.dumps([plane, int(index), sel], sort_keys=True, default=str)


def _to_pixels(xs: list[float], ys: list[float], plane: str, spacing: tuple[float, float, float]
               ) -> tuple[np.ndarray, np.ndarray]:
    """Continuous (rows, cols) in pixel units of figure coordinates (pixel centres at integers)."""
    row_mm, col_mm = planes.pixel_spacing(spacing, plane)
    return np.asarray(ys, float) / row_mm, np.asarray(xs, float) / col_mm


def apply_selection(labels: np.ndarray, plane: str, index: int, selection: dict[str, Any], tool: str,
                    value: int, spacing: tuple[float, float, float]) -> AppliedSelection | None:
    """Apply a Plotly selection (`{"box": [...], "lasso": [...], "points": [...]}`) to slice `index`.

    tool "box"/"lasso": fill (value > 0) or erase (value 0) the outline's pixels (centre inside);
    "flood fill": paint bucket at the clicked pixel; "delete component": erase the clicked 3D
    component. Returns None when the selection holds nothing usable for the tool.
    """
    shape = planes.slice_shape(labels.shape, plane)
    if tool in BOX_TOOLS:
        if selection.get("box"):
            b = selection["box"][-1]
            rows, cols = _to_pixels(b["x"], b["y"], plane, spacing)
            mask = editing.box_mask(shape, (rows.min(), rows.max()), (cols.min(), cols.max()))
            edit = editing.paint_box(labels, plane, index, (rows.min(), rows.max()), (cols.min(), cols.max()), value)
            hit = np.argwhere(mask)
            pbox = None if hit.size == 0 else (int(hit[:, 0].min()), int(hit[:, 0].max()),
                                               int(hit[:, 1].min()), int(hit[:, 1].max()))
            return AppliedSelection(edit, pbox)
        if selection.get("lasso"):
            outline = selection["lasso"][-1]
            rows, cols = _to_pixels(outline["x"], outline["y"], plane, spacing)
            return AppliedSelection(editing.paint_polygon(labels, plane, index, rows, cols, value))
        return None
    if tool in CLICK_TOOLS:
        points = [p for p in (selection.get("points") or []) if p.get("x") is not None and p.get("y") is not None]
        if not points:
            return None
        row, col = figure_xy_to_pixel(float(points[0]["x"]), float(points[0]["y"]), plane, spacing)
        if not (0 <= row < shape[0] and 0 <= col < shape[1]):
            return None
        if tool == "flood fill":
            return AppliedSelection(editing.flood_fill(labels, plane, index, row, col, value))
        return AppliedSelection(editing.delete_component(labels, plane, index, row, col))
    raise ValueError(f"unknown selection tool {tool!r}")


def uncertainty_levels(uncertainty: np.ndarray, thresholds: tuple[float, ...] = UNCERTAINTY_THRESHOLDS) -> np.ndarray:
    """uint8 bin index of each voxel's uncertainty: 0 below thresholds[0], k in bin k (1-based)."""
    return np.digitize(np.asarray(uncertainty, np.float32), np.asarray(thresholds, np.float32)).astype(np.uint8)


def uncertainty_layer(levels: np.ndarray, plane: str, index: int, spacing: tuple[float, float, float],
                      opacity: float = 0.6) -> dict | None:
    """A Plotly image trace (palette PNG, transparent where certain) of one slice of uncertainty bins."""
    sl = np.ascontiguousarray(planes.slice_view(levels, plane, index))
    if not sl.any():
        return None
    row_mm, col_mm = planes.pixel_spacing(spacing, plane)
    png = encode_png(sl, palette=list(UNCERTAINTY_COLORS))
    return dict(type="image", source=png_data_uri(png), opacity=opacity, name="uncertainty", hoverinfo="skip",
                x0=0, y0=0, dx=col_mm, dy=row_mm)


def add_layer(figure: dict, layer: dict | None) -> dict:
    """Insert an image layer right after the figure's other image layers (below hover/selection layers)."""
    if layer is not None:
        data = figure["data"]
        n_images = sum(1 for t in data if t.get("type") == "image")
        data.insert(n_images, layer)
    return figure


def ensure_scan(store: Datastore, name: str, volume: Volume, source: str,
                reference_label_path: str | None = None) -> ScanRecord:
    """The datastore record of a scan, registering it by path on first use.

    A scan without a readable file on disk (an upload) is written once into
    `<workspace>/scans/` as NIfTI so its label versions always have their image.
    """
    found = store.scan_by_name(name)
    if found is not None:
        return found
    path = Path(volume.source_path) if volume.source_path else None
    src = "datadir" if source in ("data folder", "demo") else "uploaded"
    if path is None or not path.exists():
        import gzip

        import nibabel as nib

        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "scan"
        path = store.workspace / "scans" / f"{safe}.nii.gz"
        if not path.exists():
            img = nib.Nifti1Image(volume.to_source(volume.array).astype(np.float32), volume.source_affine)
            img.set_qform(volume.source_affine, code=1)
            img.set_sform(volume.source_affine, code=1)
            atomic_write_bytes(path, gzip.compress(img.to_bytes(), compresslevel=6))
        src = "uploaded"
    return store.add_scan(name, path, source=src, reference_label_path=reference_label_path)


def predictions_dir(store: Datastore, scan_name: str) -> Path:
    """Folder of a scan's cached model outputs (uncertainty maps)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", scan_name).lstrip(".") or "scan"
    return store.workspace / "predictions" / safe


def record_model_output(store: Datastore, scan: ScanRecord, reference: Volume, labels: np.ndarray,
                        uncertainty: np.ndarray, model_id: int | None, note: str = ""
                        ) -> tuple[LabelVersion, PredictionInfo | None]:
    """Save a model's output: a 'model' label version, the uncertainty map (.npy) and the prediction row.

    The prediction row needs a registered model; without one (model_id None) only the version is saved.
    """
    from segloop.label_versions import save_label_version

    version = save_label_version(store, scan.id, labels, reference, kind="model", author="model",
                                 model_id=model_id, note=note)
    if model_id is None:
        return version, None
    folder = predictions_dir(store, scan.name)
    unc_path = folder / f"model{model_id}_uncertainty.npy"
    buf = io.BytesIO()
    np.save(buf, np.asarray(uncertainty, np.float16))
    atomic_write_bytes(unc_path, buf.getvalue())
    fg = labels > 0
    mean_unc = float(uncertainty[fg].mean()) if fg.any() else 0.0
    info = store.record_prediction(scan.id, model_id, prediction_path=version.path, uncertainty_path=unc_path,
                                   mean_uncertainty=mean_unc, foreground_voxels=int(fg.sum()))
    return version, info
