"""Segmentation metrics: Dice and 95 % Hausdorff distance per label, per case and summarised.

A structure present in the reference but absent from the prediction is a *failure*, never a gap
that disappears from the averages:

- per case, its Dice is 0 and its HD95 is NaN (a distance to nothing is undefined), and the case
  result flags it in ``missing`` (``spurious`` flags the opposite: predicted, not in the reference);
- `summarize` averages Dice over **all** cases (the 0 included) and HD95 over the cases where both
  masks exist, and every summary carries the ``missing`` and ``spurious`` counts beside the means,
  so a mean HD95 is always read as "1.4 mm over 38 cases, 2 missing". Adding a case that misses a
  structure therefore lowers (never raises) the Dice mean, leaves the HD95 mean alone and raises
  the missing count.

`per_case_rows` and `format_evaluation` turn an `evaluate_folders` result into CSV rows and a
plain-text table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

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
        Dice in [0, 1] per label; 1.0 when the label is absent from both maps (nothing to find, nothing
        found); 0.0 when it is in only one of them (missing or spurious).

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


def presence_per_label(pred: np.ndarray, ref: np.ndarray, labels: list[int]) -> dict[str, dict[int, bool]]:
    """Flag, per label, a structure missing from the prediction or spurious in it.

    Parameters
    ----------
    pred, ref : np.ndarray
        Integer label maps of the same shape (any dimension).
    labels : list of int
        Label values to check.

    Returns
    -------
    dict
        ``{"missing": {label: bool}, "spurious": {label: bool}}``: ``missing`` is True when the label
        is in `ref` and not in `pred` (a failure to find it), ``spurious`` when it is in `pred` and not
        in `ref`. Both are False when the label is in both maps or in neither.

    Examples
    --------
    >>> import numpy as np
    >>> presence_per_label(np.array([0, 1, 1, 3]), np.array([0, 1, 2, 0]), [1, 2, 3])
    {'missing': {1: False, 2: True, 3: False}, 'spurious': {1: False, 2: False, 3: True}}
    """
    missing, spurious = {}, {}
    for k in labels:
        p, r = bool((pred == k).any()), bool((ref == k).any())
        missing[k], spurious[k] = r and not p, p and not r
    return {"missing": missing, "spurious": spurious}


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """The mask's boundary: its voxels with a 6-neighbour outside it (the volume's edge counts as outside).

    As MONAI's `get_mask_edges` without sub-voxel areas: the mask XOR its binary erosion by the
    face-connected cross.

    Parameters
    ----------
    mask : np.ndarray of bool, any number of dimensions

    Returns
    -------
    np.ndarray of bool, same shape

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((5, 5), bool); m[1:4, 1:4] = True
    >>> surface_voxels(m).astype(int)[1:4, 1:4]
    array([[1, 1, 1],
           [1, 0, 1],
           [1, 1, 1]])
    """
    mask = np.asarray(mask, bool)
    return mask & ~ndimage.binary_erosion(mask)


def _quantile_float32(values: np.ndarray, q: float) -> np.float32:
    """The `q` quantile (linear interpolation) computed in float32 as torch.quantile does."""
    v = np.sort(values.astype(np.float32, copy=False))
    rank = np.float32(q) * np.float32(v.size - 1)
    lo = int(rank)
    hi = int(np.ceil(rank))
    w = rank - np.float32(lo)
    a, b = v[lo], v[hi]
    if abs(w) < 0.5:
        return np.float32(a + w * (b - a))
    return np.float32(b - (b - a) * (np.float32(1) - w))


def hd95_per_label(pred: np.ndarray, ref: np.ndarray, labels: list[int],
                   spacing: tuple[float, float, float]) -> dict[int, float]:
    """Compute the 95 % Hausdorff distance in mm per label; NaN when either mask is empty.

    The same numbers as MONAI's ``compute_hausdorff_distance(percentile=95, spacing=spacing)``, in
    numpy and scipy (no torch): the surfaces are the masks' `surface_voxels`; each surface voxel's
    exact Euclidean distance in mm to the nearest voxel of the other surface is found with a k-d tree;
    the 95th percentile (linear interpolation, float32) is taken per direction, and the larger of
    the two directions is the result. NaN here does **not** mean "no error": a structure missing
    from the prediction is a failure, which `evaluate_case` flags in ``missing`` and `summarize`
    counts; never average these values with ``nanmean`` alone.

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
        HD95 in mm per label (95th percentile of the surface distances, the larger direction); NaN
        when the label is missing from `pred` or `ref` (undefined: a distance to nothing).

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.zeros((12, 12, 12), np.uint8); ref[3:8, 3:8, 3:8] = 1
    >>> pred = np.roll(ref, 2, axis=0)
    >>> hd95_per_label(pred, ref, [1, 2], (1.0, 1.0, 2.0))
    {1: 2.0, 2: nan}
    """
    scale = np.asarray(spacing, np.float64)
    out: dict[int, float] = {}
    for k in labels:
        p, r = pred == k, ref == k
        if not p.any() or not r.any():
            out[k] = float("nan")
            continue
        # only the box around both masks, one voxel wider: the same surfaces, far less volume to erode
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in ndimage.find_objects((p | r).view(np.uint8))[0])
        p, r = p[box], r[box]
        edges = [np.argwhere(surface_voxels(m)).astype(np.float64) * scale for m in (p, r)]
        directed = []
        for a, b in ((0, 1), (1, 0)):
            dist = cKDTree(edges[b], leafsize=32).query(edges[a], k=1)[0]
            directed.append(_quantile_float32(dist.astype(np.float32), 0.95))
        out[k] = float(max(directed))
    return out


def evaluate_case(pred: np.ndarray, ref: np.ndarray, labels: list[int],
                  spacing: tuple[float, float, float]) -> dict[str, dict[int, Any]]:
    """Compute Dice and HD95 for each label of one case, flagging missing and spurious structures.

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
        ``{"dice": {label: float}, "hd95": {label: float in mm}, "missing": {label: bool},
        "spurious": {label: bool}}`` (see `dice_per_label`, `hd95_per_label`,
        `presence_per_label`). A structure missing from the prediction has Dice 0.0, HD95 NaN and
        ``missing`` True; one absent from both maps has Dice 1.0, HD95 NaN and both flags False.

    Raises
    ------
    segloop.errors.SegLoopError
        When the two maps differ in shape.
    """
    if pred.shape != ref.shape:
        raise SegLoopError(f"prediction shape {pred.shape} does not match reference shape {ref.shape}")
    return {"dice": dice_per_label(pred, ref, labels), "hd95": hd95_per_label(pred, ref, labels, spacing),
            **presence_per_label(pred, ref, labels)}


def _flags(case: Mapping[str, Any], k: int) -> tuple[bool, bool]:
    """(missing, spurious) of label k in one case result.

    Results without the flags (built before they existed) are read conservatively: a NaN HD95 with
    Dice below 1 means exactly one mask is empty, and is counted as missing (a failure).
    """
    if "missing" in case and "spurious" in case:
        return bool(case["missing"][k]), bool(case["spurious"][k])
    return (math.isnan(case["hd95"][k]) and case["dice"][k] < 1.0), False


def _stats(vals: list[float], cases: int, missing: int, spurious: int) -> dict[str, Any]:
    return {"mean": float(np.mean(vals)) if vals else float("nan"),
            "std": float(np.std(vals)) if vals else float("nan"),
            "n": len(vals), "cases": cases, "missing": missing, "spurious": spurious}


def summarize(per_case: Mapping[str, Mapping[str, Any]], labels: list[int]) -> dict[str, Any]:
    """Summarise Dice and HD95 per label over cases, counting missing and spurious structures.

    Dice is averaged over **all** cases (a missing or spurious structure counts as 0). HD95 is
    averaged over the cases where the structure is in both maps; the cases where it is missing from
    the prediction are not averaged (their distance is undefined) but counted in ``missing``, which
    every stats dict carries so the mean is never reported without it.

    Parameters
    ----------
    per_case : dict
        Case name -> `evaluate_case` result. Results without ``missing``/``spurious`` flags are
        accepted: a NaN HD95 with Dice below 1 is then counted as missing.
    labels : list of int
        Label values to summarise; each must be in every case's results.

    Returns
    -------
    dict
        ``{"dice": {label: stats}, "hd95": {label: stats}}`` where stats is ``{"mean": float, "std":
        float, "n": int, "cases": int, "missing": int, "spurious": int}``:

        - ``mean``, ``std``: mean and population standard deviation (Dice unitless, HD95 in mm) of
          the ``n`` values averaged; NaN when ``n`` is 0;
        - ``n``: values averaged: every case for Dice, the cases with the label in both maps for HD95;
        - ``cases``: number of cases;
        - ``missing``: cases with the label in the reference and not in the prediction;
        - ``spurious``: cases with the label in the prediction and not in the reference.

        The counts are the same in both stats dicts of a label; for HD95, ``cases - n - missing -
        spurious`` cases have the label in neither map.

    Examples
    --------
    Case "b" misses label 1: its Dice 0 is averaged, its HD95 is not, and it is counted.

    >>> nan = float("nan")
    >>> s = summarize({"a": {"dice": {1: 0.8}, "hd95": {1: 2.0}, "missing": {1: False}, "spurious": {1: False}},
    ...                "b": {"dice": {1: 0.0}, "hd95": {1: nan}, "missing": {1: True}, "spurious": {1: False}}}, [1])
    >>> s["dice"][1]
    {'mean': 0.4, 'std': 0.4, 'n': 2, 'cases': 2, 'missing': 1, 'spurious': 0}
    >>> s["hd95"][1]
    {'mean': 2.0, 'std': 0.0, 'n': 1, 'cases': 2, 'missing': 1, 'spurious': 0}
    """
    summary: dict[str, Any] = {"dice": {}, "hd95": {}}
    cases = len(per_case)
    for k in labels:
        flags = [_flags(c, k) for c in per_case.values()]
        missing, spurious = sum(m for m, _ in flags), sum(s for _, s in flags)
        dice = [float(c["dice"][k]) for c in per_case.values()]
        hd95 = [float(c["hd95"][k]) for c in per_case.values() if not math.isnan(c["hd95"][k])]
        summary["dice"][k] = _stats(dice, cases, missing, spurious)
        summary["hd95"][k] = _stats(hd95, cases, missing, spurious)
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
        result: Dice over all cases, HD95 over the cases with both masks, with ``missing`` and
        ``spurious`` counts), ``per_case`` (name -> `evaluate_case` result, in file-name order) and
        ``missing_reference`` (names of predictions without a reference). See `per_case_rows` and
        `format_evaluation` to write it out.

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
    per_case: dict[str, dict[str, dict[int, Any]]] = {}
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


def _label_name(k: int, label_names: Mapping[Any, str] | None) -> str | None:
    """The name of label k from a mapping keyed by int or str, or None."""
    if not label_names:
        return None
    return label_names.get(k, label_names.get(str(k)))


def per_case_rows(result: Mapping[str, Any], label_names: Mapping[Any, str] | None = None) -> list[dict[str, Any]]:
    """Turn an `evaluate_folders` result into one flat row per case, ready for `csv.DictWriter`.

    Parameters
    ----------
    result : dict
        An `evaluate_folders` result (``labels`` and ``per_case`` are used).
    label_names : dict of int (or str) to str, optional
        Label value -> name used in the column names, e.g. ``{1: "edema"}``; labels without a name
        are called ``label<value>``.

    Returns
    -------
    list of dict
        One dict per case, in ``per_case`` order, with the keys (in this column order) ``case``
        (str) then, per label ``<name>``: ``<name>_dice`` (float in [0, 1]), ``<name>_hd95_mm``
        (float in mm, or None when undefined: the label is missing from the prediction or the
        reference, so a CSV cell is left empty), ``<name>_missing`` and ``<name>_spurious`` (int
        0/1: summing a column gives the count in the summary).

    Examples
    --------
    >>> nan = float("nan")
    >>> result = {"labels": [1], "per_case": {
    ...     "a": {"dice": {1: 1.0}, "hd95": {1: 0.0}, "missing": {1: False}, "spurious": {1: False}},
    ...     "b": {"dice": {1: 0.0}, "hd95": {1: nan}, "missing": {1: True}, "spurious": {1: False}}}}
    >>> per_case_rows(result, {1: "tumour"})  # doctest: +NORMALIZE_WHITESPACE
    [{'case': 'a', 'tumour_dice': 1.0, 'tumour_hd95_mm': 0.0, 'tumour_missing': 0, 'tumour_spurious': 0},
     {'case': 'b', 'tumour_dice': 0.0, 'tumour_hd95_mm': None, 'tumour_missing': 1, 'tumour_spurious': 0}]
    """
    labels = list(result["labels"])
    rows = []
    for case, res in result["per_case"].items():
        row: dict[str, Any] = {"case": case}
        for k in labels:
            col = _label_name(k, label_names) or f"label{k}"
            hd = float(res["hd95"][k])
            missing, spurious = _flags(res, k)
            row[f"{col}_dice"] = float(res["dice"][k])
            row[f"{col}_hd95_mm"] = None if math.isnan(hd) else hd
            row[f"{col}_missing"] = int(missing)
            row[f"{col}_spurious"] = int(spurious)
        rows.append(row)
    return rows


def _hd95_cell(res: Mapping[str, Any], k: int) -> str:
    hd = float(res["hd95"][k])
    if not math.isnan(hd):
        return f"{hd:.2f}"
    missing, spurious = _flags(res, k)
    return "missing" if missing else "spurious" if spurious else "-"


def format_evaluation(result: Mapping[str, Any], label_names: Mapping[Any, str] | None = None) -> str:
    """Format an `evaluate_folders` result as a plain-text table: per-case Dice and HD95, then means.

    Per-case HD95 cells read ``missing`` (label in the reference, not in the prediction),
    ``spurious`` (in the prediction, not in the reference) or ``-`` (in neither) where no distance
    exists. Each label's summary line gives the Dice mean over all cases and the HD95 mean over the
    cases with both masks, always with the missing and spurious counts.

    Parameters
    ----------
    result : dict
        An `evaluate_folders` result (``cases``, ``labels``, ``mean``, ``per_case`` and, if present,
        ``missing_reference`` are used).
    label_names : dict of int (or str) to str, optional
        Label value -> name, shown beside the value.

    Returns
    -------
    str
        The table, lines separated by ``\\n``, without a trailing newline. Dice with 4 decimals,
        HD95 in mm with 2.

    Examples
    --------
    >>> nan = float("nan")
    >>> per_case = {
    ...     "a": {"dice": {1: 1.0}, "hd95": {1: 0.0}, "missing": {1: False}, "spurious": {1: False}},
    ...     "b": {"dice": {1: 0.5}, "hd95": {1: 3.0}, "missing": {1: False}, "spurious": {1: False}},
    ...     "c": {"dice": {1: 0.0}, "hd95": {1: nan}, "missing": {1: True}, "spurious": {1: False}}}
    >>> result = {"cases": 3, "labels": [1], "per_case": per_case, "mean": summarize(per_case, [1]),
    ...           "missing_reference": []}
    >>> print(format_evaluation(result, {1: "tumour"}))
    case  tumour Dice  tumour HD95 mm
    a     1.0000       0.00
    b     0.5000       3.00
    c     0.0000       missing
    3 cases
    label 1 (tumour): Dice 0.5000 +/- 0.4082 over 3 cases   HD95 1.50 +/- 1.50 mm over 2 cases, 1 missing, 0 spurious
    """
    labels = list(result["labels"])
    names = {k: _label_name(k, label_names) for k in labels}
    header = ["case"]
    for k in labels:
        tag = names[k] or f"label {k}"
        header += [f"{tag} Dice", f"{tag} HD95 mm"]
    table = [header]
    for case, res in result["per_case"].items():
        row = [str(case)]
        for k in labels:
            row += [f"{float(res['dice'][k]):.4f}", _hd95_cell(res, k)]
        table.append(row)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    lines.append(f"{result['cases']} cases")
    for k in labels:
        d, h = result["mean"]["dice"][k], result["mean"]["hd95"][k]
        tag = f"label {k} ({names[k]})" if names[k] else f"label {k}"
        hd = (f"HD95 {h['mean']:.2f} +/- {h['std']:.2f} mm over {h['n']} cases" if h["n"]
              else "HD95 n/a (no case has the label in both maps)")
        lines.append(f"{tag}: Dice {d['mean']:.4f} +/- {d['std']:.4f} over {d['n']} cases   "
                     f"{hd}, {h['missing']} missing, {h['spurious']} spurious")
    if result.get("missing_reference"):
        lines.append(f"no reference for: {', '.join(result['missing_reference'])}")
    return "\n".join(lines)
