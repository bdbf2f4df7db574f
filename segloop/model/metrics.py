"""Segmentation metrics: Dice and 95 % Hausdorff distance per label, per case and mean."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from segloop.errors import SegLoopError
from segloop.io.readers import load_label, scan_name


def dice_per_label(pred: np.ndarray, ref: np.ndarray, labels: list[int]) -> dict[int, float]:
    """Dice overlap of each label.

    Parameters
    ----------
    pred, ref : np.ndarray
        Integer label maps of the same shape (any dimension).
    labels : list of int
        Label values to score.

    Returns
    -------
    dict of int to float
        Dice in [0, 1] per label; 1.0 when the label is absent from both maps (nothing to find, nothing found).

    Examples
    --------
    >>> import numpy as np
    >>> dice_per_label(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), [1, 2, 3])
    {1: 0.6666666666666666, 2: 0.6666666666666666, 3: 1.0}
    """
    out = {}
    for k in labels:
        p, r = pred == k, ref == k
        denom = int(p.sum()) + int(r.sum())
        out[k] = 1.0 if denom == 0 else 2.0 * int((p & r).sum()) / denom
    return out


def hd95_per_label(pred: np.ndarray, ref: np.ndarray, labels: list[int],
                   spacing: tuple[float, float, float]) -> dict[int, float]:
    """Compute the 95 % Hausdorff distance in mm per label (MONAI); NaN when either mask is empty.

    torch and MONAI are imported only when this is called.

    Parameters
    ----------
    pred, ref : np.ndarray of int, shape (X, Y, Z)
        Predicted and reference label maps on the same grid.
    labels : list of int
        Label values to score.
    spacing : tuple of 3 float
        Voxel size in mm along the array axes, so distances are physical on anisotropic scans.

    Returns
    -------
    dict of int to float
        HD95 in mm per label (95th percentile of the symmetric surface distances); NaN when the
        label is missing from `pred` or `ref`.
    """
    import torch
    from monai.metrics import compute_hausdorff_distance

    out: dict[int, float] = {}
    for k in labels:
        p, r = pred == k, ref == k
        if not p.any() or not r.any():
            out[k] = float("nan")
            continue
        y_pred = torch.from_numpy(p[None, None])
        y = torch.from_numpy(r[None, None])
        val = compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95, spacing=list(spacing))
        out[k] = float(val.item())
    return out


def evaluate_case(pred: np.ndarray, ref: np.ndarray, labels: list[int],
                  spacing: tuple[float, float, float]) -> dict[str, dict[int, float]]:
    """Compute Dice and HD95 for each label of one case.

    Parameters
    ----------
    pred, ref : np.ndarray of int, shape (X, Y, Z)
        Predicted and reference label maps on the same grid.
    labels : list of int
        Label values to score.
    spacing : tuple of 3 float
        Voxel size in mm along the array axes.

    Returns
    -------
    dict
        ``{"dice": {label: float}, "hd95": {label: float in mm}}`` (see `dice_per_label`,
        `hd95_per_label`).

    Raises
    ------
    segloop.errors.SegLoopError
        When the two maps differ in shape.
    """
    if pred.shape != ref.shape:
        raise SegLoopError(f"prediction shape {pred.shape} does not match reference shape {ref.shape}")
    return {"dice": dice_per_label(pred, ref, labels), "hd95": hd95_per_label(pred, ref, labels, spacing)}


def summarize(per_case: dict[str, dict[str, dict[int, float]]], labels: list[int]) -> dict[str, Any]:
    """Average each metric per label over cases, ignoring NaN values (an HD95 with an empty mask).

    Parameters
    ----------
    per_case : dict
        Case name -> `evaluate_case` result.
    labels : list of int
        Label values to summarise; each must be in every case's results.

    Returns
    -------
    dict
        ``{"dice": {label: stats}, "hd95": {label: stats}}`` where stats is ``{"mean": float, "std":
        float, "n": int}``: population standard deviation, ``n`` the number of non-NaN values; mean
        and std are NaN when ``n`` is 0.

    Examples
    --------
    >>> nan = float("nan")
    >>> summarize({"a": {"dice": {1: 0.5}, "hd95": {1: nan}}, "b": {"dice": {1: 1.0}, "hd95": {1: 2.0}}}, [1])
    {'dice': {1: {'mean': 0.75, 'std': 0.25, 'n': 2}}, 'hd95': {1: {'mean': 2.0, 'std': 0.0, 'n': 1}}}
    """
    summary: dict[str, Any] = {}
    for metric in ("dice", "hd95"):
        summary[metric] = {}
        for k in labels:
            vals = [c[metric][k] for c in per_case.values() if not math.isnan(c[metric][k])]
            summary[metric][k] = {"mean": float(np.mean(vals)) if vals else float("nan"),
                                  "std": float(np.std(vals)) if vals else float("nan"), "n": len(vals)}
    return summary


def evaluate_folders(pred_dir: str | Path, ref_dir: str | Path, labels: list[int] | None = None) -> dict[str, Any]:
    """Compare every label map in pred_dir with the same-named file in ref_dir (Dice and HD95 per label).

    Files are matched by `segloop.io.readers.scan_name` (name without extension); only ``*.nii*``
    files are considered.

    Parameters
    ----------
    pred_dir, ref_dir : str or pathlib.Path
        Folders of predicted and reference label maps.
    labels : list of int, optional
        Label values to score; by default every non-zero value found in the references.

    Returns
    -------
    dict
        ``cases`` (int, number of pairs scored), ``labels`` (list of int), ``mean`` (a `summarize`
        result), ``per_case`` (name -> `evaluate_case` result) and ``missing_reference`` (names of
        predictions without a reference).

    Raises
    ------
    segloop.errors.SegLoopError
        When a folder is missing, no prediction has a same-named reference, a prediction is not on
        its reference's grid, or a file cannot be read as a label map.
    """
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    if not pred_dir.is_dir():
        raise SegLoopError(f"{pred_dir}: prediction folder not found")
    if not ref_dir.is_dir():
        raise SegLoopError(f"{ref_dir}: reference folder not found")
    refs = {scan_name(p): p for p in ref_dir.glob("*.nii*")}
    preds = sorted(pred_dir.glob("*.nii*"))
    pairs = [(p, refs[scan_name(p)]) for p in preds if scan_name(p) in refs]
    if not pairs:
        raise SegLoopError(f"no prediction in {pred_dir} has a same-named reference in {ref_dir}")
    per_case: dict[str, dict[str, dict[int, float]]] = {}
    found: set[int] = set()
    loaded = []
    for p, r in pairs:
        ref = load_label(r)
        pred = load_label(p)
        if pred.source_shape != ref.source_shape or not np.allclose(pred.source_affine, ref.source_affine, atol=1e-3):
            raise SegLoopError(f"{p.name}: prediction is not on the reference's grid")
        loaded.append((scan_name(p), pred, ref))
        found |= set(np.unique(ref.array).tolist())
    labels = labels or sorted(v for v in found if v != 0)
    for name, pred, ref in loaded:
        per_case[name] = evaluate_case(pred.array, ref.array, labels, ref.spacing)
    return {"cases": len(per_case), "labels": labels, "mean": summarize(per_case, labels), "per_case": per_case,
            "missing_reference": [scan_name(p) for p in preds if scan_name(p) not in refs]}
