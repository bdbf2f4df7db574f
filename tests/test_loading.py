"""Loading real scans (NIfTI, DICOM, NRRD), saving labels that line up, and refusing bad input clearly."""

from __future__ import annotations

import gzip
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from segloop.data.splits import msd_cases
from segloop.errors import ScanError, SegLoopError
from segloop.io import readers as loading
from segloop.io.readers import load_label, load_scan, load_scan_bytes
from segloop.io.writers import label_nifti_bytes, save_label

DICOM_SERIES = {"Study1": 32, "Study2": 35, "Study3": 40}


def _series_dir(dicom_dir: Path, study: str) -> Path:
    return next(p for p in (dicom_dir / study).iterdir() if p.is_dir())


# --- real data -------------------------------------------------------------------------------------


def test_all_msd_images_and_labels_load_on_the_same_grid(msd_dir):
    cases = msd_cases(msd_dir)
    assert len(cases) == 220
    float_labels = []
    for case in cases:
        image = load_scan(case.image)
        label = load_label(case.label, reference=image)
        assert image.array.dtype == np.float32 and image.shape == label.shape, case.name
        np.testing.assert_allclose(label.affine, image.affine, atol=1e-4)
        assert np.allclose(image.spacing, 1.0, atol=1e-3), case.name
        assert set(np.unique(label.array).tolist()) <= {0, 1, 2}, case.name
        assert label.array.max() > 0, case.name
        if nib.load(case.label).get_data_dtype().kind == "f":
            float_labels.append(case.name)
    assert "hippocampus_003" in float_labels  # float32-stored labels (003; 243 is not in this copy) are accepted


@pytest.mark.parametrize("study", sorted(DICOM_SERIES))
def test_dicom_series_geometry_matches_headers_and_simpleitk(dicom_dir, study):
    folder = _series_dir(dicom_dir, study)
    vol = load_scan(folder)
    n = DICOM_SERIES[study]
    assert vol.meta["n_slices"] == n and vol.meta["format"] == "DICOM"
    assert vol.source_shape[2] == n and vol.shape[2] == n  # axial slices run inferior -> superior
    assert vol.source_orientation == "LPS"
    assert np.allclose(vol.spacing, 1.0, atol=1e-3)
    assert np.allclose(np.diag(vol.affine)[:3], 1.0)  # RAS array: +x right, +y anterior, +z superior
    assert -32768 <= vol.array.min() < vol.array.max() <= 32767 and vol.array.max() > 50
    # Each slice lies where its file says (ImagePositionPatient, LPS -> RAS), positions strictly increasing.
    positions = sorted(
        [float(v) for v in pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient]
        for f in folder.glob("*.dcm")
    )
    src_z = [(vol.source_affine @ [0, 0, k, 1])[:3] for k in range(n)]
    assert np.all(np.diff([p[2] for p in src_z]) > 0)
    np.testing.assert_allclose(np.array(src_z) * [-1, -1, 1], positions, atol=1e-4)
    # An independent reader (SimpleITK/GDCM) gives the same voxels and the same world geometry.
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    ref = reader.Execute()
    np.testing.assert_array_equal(vol.to_source(vol.array), sitk.GetArrayFromImage(ref).transpose(2, 1, 0))
    idx = (3, 5, 7)
    lps = np.array(ref.TransformIndexToPhysicalPoint(idx))
    np.testing.assert_allclose((vol.source_affine @ [*idx, 1])[:3], lps * [-1, -1, 1], atol=1e-4)


def test_dicom_file_and_zip_upload_load_the_series(dicom_dir):
    folder = _series_dir(dicom_dir, "Study2")
    ref = load_scan(folder)
    one_file = load_scan(folder / "7.dcm")
    np.testing.assert_array_equal(one_file.array, ref.array)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(folder.glob("*.dcm")):
            zf.write(f, f"series/{f.name}")
    up = load_scan_bytes("my series.zip", buf.getvalue())
    np.testing.assert_array_equal(up.array, ref.array)
    np.testing.assert_allclose(up.affine, ref.affine)
    assert up.name == "my series" and up.meta["uploaded"]


def test_mixed_dicom_folder_loads_the_largest_series_with_a_warning(dicom_dir, tmp_path):
    for study in DICOM_SERIES:
        dst = tmp_path / study
        shutil.copytree(_series_dir(dicom_dir, study), dst)
    vol = load_scan(tmp_path)
    assert vol.meta["n_slices"] == 40
    assert "3 DICOM series" in vol.meta["warnings"][0]


def test_nrrd_lps_geometry_becomes_ras(tmp_path):
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(6, 5, 4)  # sitk order (z, y, x)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 0.8, 2.0))
    img.SetOrigin((10.0, -20.0, 30.0))
    c, s = np.cos(0.3), np.sin(0.3)
    img.SetDirection((c, -s, 0, s, c, 0, 0, 0, 1))
    path = tmp_path / "scan.nrrd"
    sitk.WriteImage(img, str(path))
    vol = load_scan(path)
    assert vol.meta["format"] == "NRRD" and vol.meta["file_dtype"] == "int16"
    np.testing.assert_array_equal(vol.to_source(vol.array), arr.transpose(2, 1, 0))
    for idx in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        lps = np.array(img.TransformIndexToPhysicalPoint(idx))
        np.testing.assert_allclose((vol.source_affine @ [*idx, 1])[:3], lps * [-1, -1, 1], atol=1e-5)
    np.testing.assert_allclose(sorted(vol.spacing), [0.5, 0.8, 2.0], atol=1e-6)


# --- saving labels that line up -----------------------------------------------------------------------


def _oblique_affine() -> np.ndarray:
    a, b = np.deg2rad(25), np.deg2rad(-10)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    aff = np.eye(4)
    aff[:3, :3] = rz @ rx @ np.diag([0.9, 1.2, 2.5]) @ np.array([[0, -1, 0], [0, 0, 1], [-1, 0, 0]])
    aff[:3, 3] = [12.5, -40.0, 7.0]
    return aff


@pytest.mark.parametrize(
    "affine", [_oblique_affine(), np.diag([-1.0, 1.5, -2.0, 1.0]) + np.array([[0, 0, 0, 30], [0] * 4, [0] * 4, [0] * 4])],
    ids=["oblique", "flipped"],
)
def test_saved_label_round_trips_voxel_exact(tmp_path, affine):
    rng = np.random.default_rng(0)
    image = rng.normal(100, 20, size=(7, 9, 11)).astype(np.float32)
    scan_img = nib.Nifti1Image(image, affine)
    scan_img.set_qform(affine, code=1)
    scan_img.set_sform(affine, code=4)
    nib.save(scan_img, tmp_path / "scan.nii.gz")
    vol = load_scan(tmp_path / "scan.nii.gz")
    np.testing.assert_array_equal(vol.to_source(vol.array), image)
    label_ras = rng.integers(0, 3, size=vol.shape).astype(np.uint8)
    out = save_label(label_ras, vol, tmp_path / "scan_label.nii.gz")
    saved = nib.load(out)
    assert saved.get_data_dtype() == np.uint8
    np.testing.assert_allclose(saved.affine, affine, atol=1e-5)
    assert int(saved.header["qform_code"]) == 1 and int(saved.header["sform_code"]) == 4
    np.testing.assert_array_equal(np.asarray(saved.dataobj), vol.to_source(label_ras))  # source order
    back = load_label(out, reference=vol)
    np.testing.assert_array_equal(back.array, label_ras)  # RAS order
    assert label_nifti_bytes(label_ras, vol) == out.read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_label_saved_for_dicom_lines_up_in_itk(dicom_dir, tmp_path):
    folder = _series_dir(dicom_dir, "Study1")
    vol = load_scan(folder)
    label = np.zeros(vol.shape, np.uint8)
    label[2:6, 10:14, 20:22] = 1
    label[30, 40, 5] = 300 - 298  # one voxel of label 2 near the far corner
    out = save_label(label, vol, tmp_path / "seg.nii.gz")
    ref = sitk.ImageSeriesReader()
    ref.SetFileNames(ref.GetGDCMSeriesFileNames(str(folder)))
    dcm = ref.Execute()
    seg = sitk.ReadImage(str(out))
    np.testing.assert_allclose(seg.GetOrigin(), dcm.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(seg.GetDirection(), dcm.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(seg.GetSpacing(), dcm.GetSpacing(), atol=1e-6)
    # The labelled voxel sits at the same world point in the saved file as in SegLoop's RAS array.
    src_idx = np.argwhere(sitk.GetArrayFromImage(seg).transpose(2, 1, 0) == 2)[0]
    lps = np.array(seg.TransformIndexToPhysicalPoint(tuple(int(i) for i in src_idx)))
    np.testing.assert_allclose((vol.affine @ [30, 40, 5, 1])[:3], lps * [-1, -1, 1], atol=1e-4)


def test_labels_above_255_are_saved_as_uint16(tmp_path):
    vol = loading.volume_from_array(np.zeros((4, 4, 4), np.float32), np.eye(4))
    lab = np.zeros((4, 4, 4), np.int32)
    lab[1, 2, 3] = 1000
    saved = nib.load(save_label(lab, vol, tmp_path / "big.nii.gz"))
    assert saved.get_data_dtype() == np.uint16 and saved.get_fdata()[1, 2, 3] == 1000


# --- bad input: one clear sentence, nothing else changes ---------------------------------------------------


def _nifti(path: Path, data: np.ndarray, affine=None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


def _truncated(tmp: Path, msd: Path) -> Path:
    raw = (msd / "imagesTr" / "hippocampus_001.nii.gz").read_bytes()
    p = tmp / "truncated.nii.gz"
    p.write_bytes(raw[: len(raw) // 2])
    return p


def _corrupt(tmp: Path, msd: Path) -> Path:
    p = tmp / "corrupt.nii.gz"
    p.write_bytes(gzip.compress(np.random.default_rng(1).bytes(5000)))
    return p


def _text_renamed(tmp: Path, msd: Path) -> Path:
    p = tmp / "notes.nii.gz"
    p.write_text("patient notes, not an image\n")
    return p


def _png_renamed(tmp: Path, msd: Path) -> Path:
    p = tmp / "photo.nii"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    return p


def _png(tmp: Path, msd: Path) -> Path:
    p = tmp / "photo.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    return p


BAD_SCANS = {
    "truncated": (_truncated, "truncated or corrupt"),
    "corrupt bytes": (_corrupt, "not a readable NIfTI"),
    "text renamed": (_text_renamed, "not a readable NIfTI"),
    "png renamed": (_png_renamed, "not a readable NIfTI"),
    "png": (_png, "unsupported file type"),
    "2D": (lambda t, m: _nifti(t / "flat.nii.gz", np.ones((10, 12), np.float32)), "2D"),
    "4D": (lambda t, m: _nifti(t / "fmri.nii.gz", np.ones((5, 5, 5, 3), np.float32)), "4D"),
    "NaN": (lambda t, m: _nifti(t / "nan.nii.gz", np.pad(np.full((1, 1, 1), np.nan, np.float32), 2)), "NaN or infinite"),
    "Inf": (lambda t, m: _nifti(t / "inf.nii.gz", np.pad(np.full((1, 1, 1), np.inf, np.float32), 2)), "NaN or infinite"),
    "zero-sized": (lambda t, m: _nifti(t / "empty.nii.gz", np.zeros((0, 4, 4), np.float32)), "zero-sized"),
    "no DICOM": (lambda t, m: (t / "series").mkdir() or (t / "series" / "a.txt").write_text("x") and t / "series", "no DICOM files"),
    "garbage nrrd": (lambda t, m: (t / "bad.nrrd").write_bytes(b"NRRD0004\ngarbage") and t / "bad.nrrd", "not a readable image"),
    "missing": (lambda t, m: t / "nowhere.nii.gz", "file not found"),
}


@pytest.mark.parametrize("case", sorted(BAD_SCANS))
def test_bad_scans_are_refused_with_one_clear_sentence(msd_dir, tmp_path, case):
    make, expected = BAD_SCANS[case]
    path = make(tmp_path, msd_dir)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ScanError) as err:
        load_scan(path)
    msg = str(err.value)
    assert expected in msg and "\n" not in msg and msg.startswith(path.name)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_voxel_limit_from_environment(msd_dir, monkeypatch):
    path = msd_dir / "imagesTr" / "hippocampus_001.nii.gz"
    monkeypatch.setenv("SEGLOOP_MAX_VOXELS", "1000")
    with pytest.raises(ScanError, match="over the limit of 1,000"):
        load_scan(path)
    monkeypatch.delenv("SEGLOOP_MAX_VOXELS")
    assert load_scan(path).array.size > 1000


def test_bad_label_maps_are_refused_and_not_saved(msd_dir, tmp_path):
    image = load_scan(msd_dir / "imagesTr" / "hippocampus_001.nii.gz")
    shifted = image.source_affine.copy()
    shifted[:3, 3] += 5
    off_grid = _nifti(tmp_path / "off.nii.gz", np.zeros(image.source_shape, np.uint8), shifted)
    with pytest.raises(ScanError, match="not on the image's grid"):
        load_label(off_grid, reference=image)
    wrong_shape = _nifti(tmp_path / "small.nii.gz", np.zeros((5, 5, 5), np.uint8), image.source_affine)
    with pytest.raises(ScanError, match="does not match the image shape"):
        load_label(wrong_shape, reference=image)
    fractional = np.zeros(image.source_shape, np.float32)
    fractional[3, 3, 3] = 0.5
    with pytest.raises(ScanError, match="non-integer"):
        load_label(_nifti(tmp_path / "frac.nii.gz", fractional, image.source_affine), reference=image)
    out = tmp_path / "never.nii.gz"
    with pytest.raises(ScanError, match="non-integer"):
        save_label(np.full(image.shape, 0.5, np.float32), image, out)
    with pytest.raises(SegLoopError, match="does not match the scan shape"):
        save_label(np.zeros((3, 3, 3), np.uint8), image, out)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_hostile_or_bad_uploads_are_refused_and_leave_no_temp_files(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(ScanError, match="unsafe path"):
        load_scan_bytes("evil.zip", _zip_bytes({"../../escape.dcm": b"x"}))
    with pytest.raises(ScanError, match="unsafe path"):
        load_scan_bytes("evil.zip", _zip_bytes({"/etc/cron.d/x": b"x"}))
    monkeypatch.setattr(loading, "MAX_ZIP_MEMBERS", 3)
    with pytest.raises(ScanError, match="over the limit of 3"):
        load_scan_bytes("many.zip", _zip_bytes({f"{i}.dcm": b"x" for i in range(5)}))
    monkeypatch.setattr(loading, "MAX_ZIP_BYTES", 1000)
    with pytest.raises(ScanError, match="unpacks to"):
        load_scan_bytes("bomb.zip", _zip_bytes({"big.dcm": bytes(5000)}))
    with pytest.raises(ScanError, match="no DICOM series"):
        load_scan_bytes("photos.zip", _zip_bytes({"a.txt": b"hello"}))
    with pytest.raises(ScanError, match="not a readable zip"):
        load_scan_bytes("broken.zip", b"PK\x03\x04 not really")
    with pytest.raises(ScanError, match="empty"):
        load_scan_bytes("scan.nii.gz", b"")
    with pytest.raises(ScanError, match="not a readable NIfTI"):
        load_scan_bytes("../../scan.nii.gz", b"garbage")
    assert list(scratch.iterdir()) == []
    assert not (tmp_path.parent / "escape.dcm").exists()


def test_upload_of_a_real_nifti(msd_dir):
    path = msd_dir / "imagesTr" / "hippocampus_003.nii.gz"
    up = load_scan_bytes(path.name, path.read_bytes())
    ref = load_scan(path)
    np.testing.assert_array_equal(up.array, ref.array)
    assert up.name == "hippocampus_003" and up.header is not None
