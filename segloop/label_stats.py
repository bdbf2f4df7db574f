"""Per-label volumes of a label map, for the label table shown next to the viewer."""

from __future__ import annotations

import numpy as np


def label_volumes_ml(
    labels: np.ndarray, spacing: tuple[float, float, float], names: dict[int, str] | None = None
) -> list[dict]:
    """[{label, name, voxels, ml}] for every non-zero label value present, counted with np.bincount.

    Volume in mL = voxels * voxel volume (mm^3) / 1000.
    """
    lab = np.asarray(labels)
    if lab.dtype.kind not in "ub":
        raise ValueError(f"label map of type {lab.dtype} is not an unsigned integer array")
    counts = np.bincount(lab.ravel())
    voxel_ml = float(np.prod([float(s) for s in spacing])) / 1000.0
    names = names or {}
    return [
        {"label": int(v), "name": names.get(int(v), f"label {int(v)}"), "voxels": int(counts[v]), "ml": float(counts[v]) * voxel_ml}
        for v in np.flatnonzero(counts)
        if v != 0
    ]
