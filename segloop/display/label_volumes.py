"""Per-label volumes of a label map, for the label table shown next to the viewer."""

from __future__ import annotations

import numpy as np


def label_volumes_ml(
    labels: np.ndarray, spacing: tuple[float, float, float], names: dict[int, str] | None = None
) -> list[dict]:
    """Count the voxels and volume in mL of every non-zero label value present in a label map.

    Volume in mL = voxels * voxel volume (mm^3) / 1000. Counted with one np.bincount pass, which is
    why only unsigned label maps are accepted (no negative values to guard against).

    Parameters
    ----------
    labels : np.ndarray of uint8, uint16 or bool, shape (X, Y, Z)
        Label map (any shape works; only the counts matter).
    spacing : tuple of 3 float
        Voxel size in mm along the array's axes.
    names : dict of int to str, optional
        Display name per label value; missing values are named "label <value>".

    Returns
    -------
    list of dict
        One dict per label value present, ascending: ``label`` (int), ``name`` (str), ``voxels``
        (int) and ``ml`` (float). Empty when the map holds only background (0).

    Raises
    ------
    ValueError
        When `labels` is not of an unsigned integer (or bool) dtype.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((10, 10, 10), np.uint8)
    >>> labels[:2] = 1
    >>> labels[5] = 2
    >>> label_volumes_ml(labels, (1.0, 1.0, 2.0), {1: "anterior"})  # doctest: +NORMALIZE_WHITESPACE
    [{'label': 1, 'name': 'anterior', 'voxels': 200, 'ml': 0.4},
     {'label': 2, 'name': 'label 2', 'voxels': 100, 'ml': 0.2}]
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
