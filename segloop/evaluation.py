"""Segmentation metrics: Dice and 95 % Hausdorff distance per label, per case and mean."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from segloop.errors import SegLoopError
from segloop.loading import load_label, scan_name
from segloop.training import dice_per_label


def hd95_per_label(pred: np.ndarray, ref: np.ndarray, labels: list[int],
                   spacing: tuple[float, float, float]) -> dict[int, float]:
    """95 % Hausdorff distance in mm per label (MONAI); NaN when either mask is empty."""
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
    """Dice and HD95 for each label of one case."""
    if pred.shape != ref.shape:
        raise SegLoopError(f"prediction shape {pred.shape} does not match reference shape {ref.shape}")
    return {"dice": dice_per_label(pred, ref, labels), "hd95": hd95_per_label(pred, ref, labels, spacing)}


def summarize(per_case: dict[str, dict[str, dict[int, float]]], labels: list[int]) -> dict[str, Any]:
    """Mean (and std) of each metric per label over cases, ignoring NaN HD95 values."""
    summary: dict[str, Any] = {}
    for metric in ("dice", "hd95"):
        summary[metric] = {}
        for k in labels:
            vals = [c[metric][k] for c in per_case.values() if not math.isnan(c[metric][k])]
            summary[metric][k] = {"mean": float(np.mean(vals)) if vals else float("nan"),
                                  "std": float(np.std(vals)) if vals else float("nan"), "n": len(vals)}
    return summary


def evaluate_folders(pred_dir: str | Path, ref_dir: str | Path, labels: list[int] | None = None) -> dict[str, Any]:
    """Compare every label map in pred_dir with the same-named file in ref_dir."""
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
