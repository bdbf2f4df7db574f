"""Whole-head segmentation: both hippocampi of a moved, resampled, biased head agree with the template's.

The reference is the shipped model's segmentation of the untouched MNI152 template. Each synthetic
scan (segloop.data.phantom) is the template inside a head on a neck, moved by a known affine and
sampled on another grid; its label map, mapped back to the template through the true transform, must
match the reference on each side.
"""

from __future__ import annotations

import csv
import functools
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from segloop.data.mni import mni152_t1_path
from segloop.data.phantom import make_scan, random_scan_to_mni
from segloop.errors import SegLoopError
from segloop.io.readers import load_scan
from segloop.io.volume import Volume, volume_from_array
from segloop.wholehead.segment import (
    Mode,
    ScanKind,
    Side,
    asymmetry_percent,
    scan_kind,
    segment_scan,
    volume_report,
)

ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def reference():
    """(labels, affine, segmentation) of the untouched template."""
    vol = load_scan(mni152_t1_path())
    seg = segment_scan(vol)
    return seg.labels, vol.affine, seg


def _to_template_grid(labels: np.ndarray, affine: np.ndarray, scan_to_mni: np.ndarray, tpl_shape, tpl_affine):
    """Nearest-neighbour resampling of a scan-grid label map onto the template grid via the true transform."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in tpl_shape], indexing="ij"), axis=-1).reshape(-1, 3)
    to_scan_vox = np.linalg.inv(affine) @ np.linalg.inv(scan_to_mni) @ tpl_affine
    vox = idx @ to_scan_vox[:3, :3].T + to_scan_vox[:3, 3]
    return ndimage.map_coordinates(labels, vox.T, order=0, mode="constant", cval=0).reshape(tpl_shape)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


CASES = {
    "1x1x1.5 mm, long neck": dict(spacing=(1.0, 1.0, 1.5), fov_mm=(220.0, 250.0, 300.0),
                                  fov_centre_mni=(0.0, -20.0, -60.0)),
    "0.8 mm, small field of view": dict(spacing=(0.8, 0.8, 0.8), fov_mm=(170.0, 200.0, 180.0),
                                        fov_centre_mni=(0.0, -20.0, 0.0)),
    "1.2 mm, strong bias, darker grey matter": dict(spacing=(1.2, 1.2, 1.2), bias=0.4, gamma=1.3),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_moved_head_segments_like_the_template(case):
    rng = np.random.default_rng(100 + list(CASES).index(case))
    truth = random_scan_to_mni(rng)
    array, affine = make_scan(truth, rng, **CASES[case])
    vol = volume_from_array(array, affine, name=case)
    seg = segment_scan(vol)
    assert seg.kind is ScanKind.WHOLE_HEAD and seg.registration.ok
    assert seg.labels.shape == vol.shape and seg.labels.dtype == np.uint8
    ref, tpl_affine, ref_seg = reference()
    back = _to_template_grid(seg.labels, vol.affine, truth, ref.shape, tpl_affine)
    x_mm = (np.arange(ref.shape[0]) * tpl_affine[0, 0] + tpl_affine[0, 3])[:, None, None]
    for side, on_side in ((Side.LEFT, x_mm < 0), (Side.RIGHT, x_mm > 0)):
        assert _dice((back > 0) & on_side, (ref > 0) & on_side) > 0.85, side
        for value in (1, 2):
            assert _dice((back == value) & on_side, (ref == value) & on_side) > 0.75, (side, value)
    # each side's volume (in the subject's mL) is the template's scaled by the head's size
    scale = 1.0 / seg.registration.atlas_scaling_factor
    report, ref_report = volume_report(case, seg), volume_report("template", ref_seg)
    for side in ("left", "right"):
        assert report[f"{side}_total_ml"] == pytest.approx(ref_report[f"{side}_total_ml"] * scale, rel=0.12)
    # the box centres land on the hippocampus the model found
    for s in seg.sides:
        centre = np.round(s.centre).astype(int)
        assert np.all(centre >= 0) and np.all(centre < np.array(vol.shape))
        near = seg.labels[tuple(slice(max(c - 12, 0), c + 12) for c in centre)]
        assert (near > 0).sum() > 500


def test_template_both_sides_found_with_volumes_asymmetry_and_head_size():
    labels, _, seg = reference()
    row = volume_report("mni", seg)
    assert row["path"] == "whole head" and seg.registration.quality > 0.95
    for side in ("left", "right"):
        assert 2.5 < row[f"{side}_total_ml"] < 6.0  # adult hippocampus, one side
        assert row[f"{side}_total_ml"] == pytest.approx(row[f"{side}_anterior_ml"] + row[f"{side}_posterior_ml"])
    assert abs(row["asymmetry_total_pct"]) < 2.0  # the template is symmetric
    assert 1700 < row["etiv_ml"] < 2100 and row["atlas_scaling_factor"] == pytest.approx(1.0, abs=0.02)
    sides = {s.side: s for s in seg.sides}
    assert sides[Side.LEFT].centre[0] < sides[Side.RIGHT].centre[0]  # RAS: left has the smaller x
    assert list(seg.timings) == ["register to MNI152", "segment left", "segment right"]


def test_scan_kind_from_the_field_of_view():
    def vol(shape, spacing):
        return Volume(np.zeros(shape, np.float32), np.diag([*spacing, 1.0]), np.diag([*spacing, 1.0]), shape)

    assert scan_kind(vol((35, 51, 35), (1, 1, 1))) is ScanKind.CROP
    assert scan_kind(vol((176, 240, 256), (1, 1, 1))) is ScanKind.WHOLE_HEAD
    assert scan_kind(vol((256, 256, 60), (0.9, 0.9, 2.0))) is ScanKind.WHOLE_HEAD  # a 120 mm slab
    with pytest.raises(SegLoopError, match="neither a hippocampus crop"):
        scan_kind(vol((110, 110, 110), (1, 1, 1)))


def test_non_head_volume_is_refused_with_a_message():
    rng = np.random.default_rng(0)
    noise = Volume(rng.random((160, 180, 160), dtype=np.float32), np.eye(4), np.eye(4), (160, 180, 160))
    with pytest.raises(SegLoopError, match="could not find the hippocampi"):
        segment_scan(noise)
    with pytest.raises(SegLoopError, match="whole-head scan"):  # a crop forced down the whole-head path
        segment_scan(Volume(np.ones((35, 51, 35), np.float32), np.eye(4), np.eye(4), (35, 51, 35)),
                     mode=Mode.WHOLE_HEAD)


def test_asymmetry_index():
    assert asymmetry_percent(4.0, 4.0) == 0.0
    assert asymmetry_percent(4.4, 4.0) == pytest.approx(100 * 0.4 / 4.2)
    assert asymmetry_percent(3.0, 4.0) < 0
    assert np.isnan(asymmetry_percent(0.0, 0.0))


@pytest.mark.slow
def test_predict_command_writes_labels_and_a_report_and_goes_on_after_a_bad_scan(tmp_path, msd_dir):
    rng = np.random.default_rng(7)
    array, affine = make_scan(random_scan_to_mni(rng), rng, spacing=(1.0, 1.0, 1.2))
    head = tmp_path / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(array, affine), str(head))
    blob = tmp_path / "blob.nii.gz"
    nib.save(nib.Nifti1Image(rng.random((150, 150, 150), dtype=np.float32), np.eye(4)), str(blob))
    crop = msd_dir / "imagesTr" / "hippocampus_001.nii.gz"
    res = subprocess.run([sys.executable, "-m", "segloop", "predict", str(head), str(blob), str(crop),
                          "--out", str(tmp_path / "out"), "--report", str(tmp_path / "volumes.csv")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 2, res.stderr  # one scan failed; the others were written
    assert "error: blob: could not find the hippocampi" in res.stderr and "Traceback" not in res.stderr
    assert "sub-01_T1w" in res.stdout and "whole head" in res.stdout and "crop" in res.stdout
    rows = {r["scan"]: r for r in csv.DictReader(open(tmp_path / "volumes.csv"))}
    assert rows["blob"]["status"] == "failed"
    head_row, crop_row = rows["sub-01_T1w"], rows["hippocampus_001"]
    assert head_row["path"] == "whole head" and crop_row["path"] == "crop"
    for side in ("left", "right"):
        assert 2.0 < float(head_row[f"{side}_total_ml"]) < 7.0
    assert float(head_row["etiv_ml"]) > 1000 and float(head_row["registration_quality"]) > 0.5
    assert float(crop_row["anterior_ml"]) > 0.5 and crop_row["left_total_ml"] == ""
    out = nib.load(str(tmp_path / "out" / "sub-01_T1w.nii.gz"))
    assert out.shape == array.shape or np.allclose(out.affine, nib.load(str(head)).affine)
    np.testing.assert_allclose(out.affine, nib.load(str(head)).affine, atol=1e-5)
    assert set(np.unique(np.asarray(out.dataobj))) == {0, 1, 2}
    assert not (tmp_path / "out" / "blob.nii.gz").exists()
