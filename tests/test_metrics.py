"""Dice / HD95 per case and summarised: a missing structure is a counted failure, never a better mean."""

from __future__ import annotations

import csv
import io
import math

import nibabel as nib
import numpy as np
import pytest

from segloop.errors import SegLoopError
from segloop.model.metrics import (
    dice_per_label,
    evaluate_case,
    evaluate_folders,
    format_evaluation,
    per_case_rows,
    presence_per_label,
    summarize,
)

SPACING = (1.0, 1.0, 3.0)  # anisotropic: one voxel along axis 2 is 3 mm


def _ref() -> np.ndarray:
    """Two structures, each one voxel thick along axis 2 (so a one-slice shift is exactly 3 mm)."""
    lab = np.zeros((16, 16, 10), np.uint8)
    lab[2:8, 2:8, 4] = 1
    lab[9:14, 9:14, 6] = 2
    return lab


def _shift_z(lab: np.ndarray, k: int) -> np.ndarray:
    """Label k moved one slice along axis 2 (3 mm at SPACING), the others untouched."""
    out = lab.copy()
    out[lab == k] = 0
    out[np.roll(lab == k, 1, axis=2)] = k
    return out


def _drop(lab: np.ndarray, k: int) -> np.ndarray:
    out = lab.copy()
    out[out == k] = 0
    return out


def test_perfect_prediction_is_dice_1_hd95_0():
    ref = _ref()
    res = evaluate_case(ref.copy(), ref, [1, 2], SPACING)
    assert res["dice"] == {1: 1.0, 2: 1.0}
    assert res["hd95"] == {1: 0.0, 2: 0.0}
    assert res["missing"] == {1: False, 2: False} and res["spurious"] == {1: False, 2: False}


def test_shifted_prediction_hd95_is_in_mm_with_anisotropic_spacing():
    ref = _ref()
    pred = _shift_z(ref, 1)
    res = evaluate_case(pred, ref, [1, 2], SPACING)
    assert res["hd95"][1] == pytest.approx(3.0)  # one slice along the 3 mm axis
    assert res["dice"][1] == 0.0  # one-voxel-thick slabs no longer overlap
    assert res["hd95"][2] == 0.0 and res["dice"][2] == 1.0
    assert evaluate_case(pred, ref, [1], (1.0, 1.0, 1.0))["hd95"][1] == pytest.approx(1.0)
    # same voxel shift along axis 0 with 0.5 mm voxels: 2 voxels -> 1 mm
    pred0 = ref.copy()
    pred0[ref == 1] = 0
    pred0[np.roll(ref == 1, 2, axis=0)] = 1
    assert evaluate_case(pred0, ref, [1], (0.5, 1.0, 3.0))["hd95"][1] == pytest.approx(1.0)


def test_dice_of_label_absent_from_both_is_1_and_not_flagged():
    ref = _drop(_ref(), 2)
    res = evaluate_case(ref.copy(), ref, [1, 2], SPACING)
    assert res["dice"][2] == 1.0 and math.isnan(res["hd95"][2])
    assert not res["missing"][2] and not res["spurious"][2]
    assert dice_per_label(np.zeros(3), np.zeros(3), [1]) == {1: 1.0}


def _three_cases() -> dict:
    ref = _ref()
    return {"a": evaluate_case(ref.copy(), ref, [1, 2], SPACING),
            "b": evaluate_case(_shift_z(ref, 2), ref, [1, 2], SPACING),
            "c": evaluate_case(_drop(ref, 2), ref, [1, 2], SPACING)}  # label 2 missing


def test_missing_structure_is_counted_dice_0_and_hd95_over_present_cases():
    per_case = _three_cases()
    c = per_case["c"]
    assert c["dice"][2] == 0.0 and math.isnan(c["hd95"][2])
    assert c["missing"][2] and not c["spurious"][2]
    s = summarize(per_case, [1, 2])
    d, h = s["dice"][2], s["hd95"][2]
    assert d["n"] == 3 and d["cases"] == 3 and d["missing"] == 1 and d["spurious"] == 0
    assert d["mean"] == pytest.approx((1.0 + 0.0 + 0.0) / 3)  # the shifted slab and the missing one are 0
    assert h["n"] == 2 and h["cases"] == 3 and h["missing"] == 1 and h["spurious"] == 0
    assert h["mean"] == pytest.approx((0.0 + 3.0) / 2) and h["std"] == pytest.approx(1.5)
    assert s["dice"][1] == {"mean": 1.0, "std": 0.0, "n": 3, "cases": 3, "missing": 0, "spurious": 0}
    assert s["hd95"][1] == {"mean": 0.0, "std": 0.0, "n": 3, "cases": 3, "missing": 0, "spurious": 0}


def test_adding_a_missing_case_never_improves_the_summary():
    ref = _ref()
    per_case = {"a": evaluate_case(ref.copy(), ref, [1, 2], SPACING),
                "b": evaluate_case(_shift_z(ref, 2), ref, [1, 2], SPACING)}
    before = summarize(per_case, [1, 2])
    per_case["c"] = evaluate_case(_drop(ref, 2), ref, [1, 2], SPACING)
    after = summarize(per_case, [1, 2])
    assert after["dice"][2]["mean"] < before["dice"][2]["mean"]
    assert after["hd95"][2]["mean"] >= before["hd95"][2]["mean"]  # not lowered by leaving a case out
    assert after["hd95"][2]["missing"] == before["hd95"][2]["missing"] + 1
    assert after["dice"][2]["missing"] == before["dice"][2]["missing"] + 1
    # even against a perfect set: a missed structure must not look as good as a found one
    perfect = {"a": per_case["a"]}
    with_miss = {"a": per_case["a"], "c": per_case["c"]}
    p, m = summarize(perfect, [2]), summarize(with_miss, [2])
    assert m["dice"][2]["mean"] < p["dice"][2]["mean"]
    assert m["hd95"][2]["missing"] == 1 and p["hd95"][2]["missing"] == 0


def test_spurious_label_is_flagged_and_counted_apart_from_missing():
    ref = _drop(_ref(), 2)
    pred = _ref()  # predicts label 2 where the reference has none
    res = evaluate_case(pred, ref, [1, 2], SPACING)
    assert res["spurious"][2] and not res["missing"][2]
    assert res["dice"][2] == 0.0 and math.isnan(res["hd95"][2])
    s = summarize({"x": res, "y": evaluate_case(ref.copy(), ref, [1, 2], SPACING)}, [1, 2])
    assert s["hd95"][2]["spurious"] == 1 and s["hd95"][2]["missing"] == 0 and s["hd95"][2]["n"] == 0
    assert math.isnan(s["hd95"][2]["mean"])
    assert s["dice"][2]["mean"] == pytest.approx(0.5)  # 0 (spurious) and 1 (absent from both)
    assert presence_per_label(pred, ref, [1, 2]) == {"missing": {1: False, 2: False},
                                                      "spurious": {1: False, 2: True}}


def test_summarize_reads_results_without_flags_conservatively():
    nan = float("nan")
    old = {"a": {"dice": {1: 0.0}, "hd95": {1: nan}}, "b": {"dice": {1: 1.0}, "hd95": {1: nan}},
           "c": {"dice": {1: 0.9}, "hd95": {1: 1.0}}}
    s = summarize(old, [1])
    assert s["hd95"][1]["missing"] == 1 and s["hd95"][1]["n"] == 1  # "b" is absent from both
    assert s["dice"][1]["n"] == 3


def _write(path, lab, spacing=SPACING):
    nib.save(nib.Nifti1Image(lab.astype(np.uint8), np.diag([*spacing, 1.0])), str(path))


@pytest.fixture
def folders(tmp_path):
    ref = _ref()
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    pred_dir.mkdir()
    ref_dir.mkdir()
    preds = {"case_a": ref.copy(), "case_b": _shift_z(ref, 2), "case_c": _drop(ref, 2)}
    for name, pred in preds.items():
        _write(pred_dir / f"{name}.nii.gz", pred)
        _write(ref_dir / f"{name}.nii.gz", ref)
    _write(pred_dir / "orphan.nii.gz", ref)  # no reference
    return pred_dir, ref_dir


def test_evaluate_folders_counts_missing_and_keeps_existing_keys(folders):
    pred_dir, ref_dir = folders
    result = evaluate_folders(pred_dir, ref_dir)
    assert {"cases", "labels", "mean", "per_case", "missing_reference"} <= set(result)
    assert result["cases"] == 3 and result["labels"] == [1, 2]
    assert list(result["per_case"]) == ["case_a", "case_b", "case_c"]
    assert result["missing_reference"] == ["orphan"]
    h, d = result["mean"]["hd95"][2], result["mean"]["dice"][2]
    assert (h["n"], h["missing"], h["spurious"], h["cases"]) == (2, 1, 0, 3)
    assert h["mean"] == pytest.approx(1.5)  # 0 mm and 3 mm (spacing read from the files)
    assert (d["n"], d["missing"]) == (3, 1) and d["mean"] == pytest.approx(1 / 3)
    assert result["mean"]["hd95"][1]["mean"] == 0.0 and result["mean"]["dice"][1]["mean"] == 1.0


def test_evaluate_folders_missing_folder_is_an_error(tmp_path):
    with pytest.raises(SegLoopError, match="prediction folder not found"):
        evaluate_folders(tmp_path / "nope", tmp_path)


def test_per_case_rows_write_a_csv(folders):
    result = evaluate_folders(*folders)
    rows = per_case_rows(result, {1: "left", "2": "right"})  # int or str keys
    assert [r["case"] for r in rows] == ["case_a", "case_b", "case_c"]
    assert list(rows[0]) == ["case", "left_dice", "left_hd95_mm", "left_missing", "left_spurious",
                             "right_dice", "right_hd95_mm", "right_missing", "right_spurious"]
    c = rows[2]
    assert c["right_dice"] == 0.0 and c["right_hd95_mm"] is None and c["right_missing"] == 1
    assert rows[1]["right_hd95_mm"] == pytest.approx(3.0) and rows[1]["right_missing"] == 0
    assert sum(r["right_missing"] for r in rows) == result["mean"]["hd95"][2]["missing"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    back = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert back[2]["right_hd95_mm"] == "" and back[2]["right_missing"] == "1"
    assert list(per_case_rows(result)[0])[1] == "label1_dice"


def test_format_evaluation_shows_per_case_values_and_missing_count(folders):
    result = evaluate_folders(*folders)
    text = format_evaluation(result, {2: "right"})
    lines = text.splitlines()
    assert lines[0].split() == ["case", "label", "1", "Dice", "label", "1", "HD95", "mm",
                                "right", "Dice", "right", "HD95", "mm"]
    assert lines[1].split() == ["case_a", "1.0000", "0.00", "1.0000", "0.00"]
    assert lines[2].split() == ["case_b", "1.0000", "0.00", "0.0000", "3.00"]
    assert lines[3].split() == ["case_c", "1.0000", "0.00", "0.0000", "missing"]
    assert "3 cases" in lines
    right = next(ln for ln in lines if ln.startswith("label 2 (right):"))
    assert "Dice 0.3333" in right and "HD95 1.50 +/- 1.50 mm over 2 cases, 1 missing, 0 spurious" in right
    assert lines[-1] == "no reference for: orphan"


def test_format_evaluation_when_no_case_has_both():
    ref = _drop(_ref(), 2)
    per_case = {"x": evaluate_case(_ref(), ref, [2], SPACING)}
    result = {"cases": 1, "labels": [2], "mean": summarize(per_case, [2]), "per_case": per_case}
    text = format_evaluation(result)
    assert "spurious" in text.splitlines()[1]
    assert "HD95 n/a" in text and "0 missing, 1 spurious" in text
