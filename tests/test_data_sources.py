"""Listing data folders, resolving deep links safely, and the offline demo scans."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segloop.data.folders import list_cases, resolve_case
from segloop.errors import SegLoopError
from segloop.io.readers import load_label, load_scan


def _nifti(path: Path, shape=(4, 5, 6), dtype=np.float32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ones(shape, dtype), np.eye(4)), path)
    return path


@contextlib.contextmanager
def _files_opened() -> Iterator[list[str]]:
    """Record every file the process opens (the interpreter's "open" audit event) inside the block."""
    opened: list[str] = []
    _OPEN_RECORDERS.append(opened)
    try:
        yield opened
    finally:
        _OPEN_RECORDERS.remove(opened)


def _record_open(event: str, args: tuple) -> None:
    if event == "open" and _OPEN_RECORDERS and isinstance(args[0], (str, bytes, os.PathLike)):
        for opened in _OPEN_RECORDERS:
            opened.append(os.fsdecode(args[0]))


_OPEN_RECORDERS: list[list[str]] = []
sys.addaudithook(_record_open)  # audit hooks cannot be removed: it records only inside `_files_opened`


def test_msd_folder_lists_all_pairs_from_file_names_only(msd_dir):
    with _files_opened() as opened:
        cases = list_cases(msd_dir)
    inside = [f for f in opened if Path(f).resolve().is_relative_to(Path(msd_dir).resolve())]
    assert inside == []  # names only: not one scan, label or dataset.json of the folder is opened
    assert len(cases) == 220 and [c.name for c in cases] == sorted(c.name for c in cases)
    first = cases[0]
    assert first.name == "hippocampus_001" and first.kind == "nifti"
    assert Path(first.label_path).parent.name == "labelsTr"
    assert all(c.label_path and Path(c.label_path).name == Path(c.image_path).name for c in cases)


def test_dicom_tree_lists_one_case_per_series(dicom_dir):
    cases = list_cases(dicom_dir)
    assert [c.kind for c in cases] == ["dicom"] * 3
    assert [c.name.split("/")[0] for c in cases] == ["Study1", "Study2", "Study3"]
    case = resolve_case(dicom_dir, cases[2].name)
    assert load_scan(case.image_path).shape[2] == 40
    series = Path(cases[0].image_path)  # a data folder that is itself one series
    assert [(c.name, c.kind) for c in list_cases(series)] == [(series.name, "dicom")]


def test_plain_folder_with_label_conventions(tmp_path):
    _nifti(tmp_path / "alpha.nii.gz")
    _nifti(tmp_path / "alpha_seg.nii.gz", dtype=np.uint8)
    _nifti(tmp_path / "beta.nii")
    _nifti(tmp_path / "labels" / "beta.nii.gz", dtype=np.uint8)
    _nifti(tmp_path / "sub" / "gamma.nii.gz")
    _nifti(tmp_path / "sub" / "gamma_label.nii.gz", dtype=np.uint8)
    (tmp_path / "notes.txt").write_text("not a scan")
    (tmp_path / ".hidden.nii.gz").write_bytes(b"")
    cases = {c.name: c for c in list_cases(tmp_path)}
    assert sorted(cases) == ["alpha", "beta", "sub/gamma"]
    assert Path(cases["alpha"].label_path).name == "alpha_seg.nii.gz"
    assert Path(cases["beta"].label_path) == tmp_path / "labels" / "beta.nii.gz"
    assert Path(cases["sub/gamma"].label_path).name == "gamma_label.nii.gz"
    vol = load_scan(resolve_case(tmp_path, "sub/gamma").image_path)
    assert load_label(cases["sub/gamma"].label_path, reference=vol).shape == vol.shape


def test_deep_links_cannot_leave_the_data_folder(tmp_path):
    data = tmp_path / "data"
    _nifti(data / "inside.nii.gz")
    secret = _nifti(tmp_path / "secret.nii.gz")
    os.symlink(secret, data / "leak.nii.gz")
    os.symlink(tmp_path, data / "up")
    names = [c.name for c in list_cases(data)]
    assert names == ["inside"]  # symlinks pointing outside are not listed
    assert resolve_case(data, "inside").image_path == str((data / "inside.nii.gz").resolve())
    for bad in ["../secret", "/etc/passwd", "leak", "up/secret", "..", "a/../../secret", "~/x", "C:\\x", ""]:
        with pytest.raises(SegLoopError):
            resolve_case(data, bad)
    with pytest.raises(SegLoopError, match="no case named 'nothing'"):
        resolve_case(data, "nothing")
    with pytest.raises(SegLoopError, match="not allowed"):
        resolve_case(data, "../secret")


def test_missing_data_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SegLoopError, match="data folder not found"):
        list_cases(tmp_path / "absent")


def test_demo_scans_load_offline(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the demo data must not touch the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setenv("SEGLOOP_WORKSPACE", str(tmp_path / "ws"))
    from segloop.data.demo import demo_cases

    cases = {c.name: c for c in demo_cases()}
    assert set(cases) == {"mni152_t1", "mni152_left_hippocampus"}
    brain = load_scan(cases["mni152_t1"].image_path)
    assert brain.shape == (197, 233, 189) and np.allclose(brain.spacing, 1.0)
    crop_path = Path(cases["mni152_left_hippocampus"].image_path)
    assert crop_path.parent == tmp_path / "ws" / "samples"
    crop = load_scan(crop_path)
    # The crop's corners lie at the requested MNI coordinates (left hemisphere: x < 0).
    from segloop.data.mni import LEFT_HIPPOCAMPUS_BOX_MM

    (x0, x1), (y0, y1), (z0, z1) = LEFT_HIPPOCAMPUS_BOX_MM
    np.testing.assert_allclose(crop.affine @ [0, 0, 0, 1], [x0, y0, z0, 1], atol=1.0)
    np.testing.assert_allclose(crop.affine @ [*(np.array(crop.shape) - 1), 1], [x1, y1, z1, 1], atol=1.0)
    # Same voxels as the template at the same world points.
    i, j, k = np.round(np.linalg.inv(brain.affine) @ crop.affine @ [0, 0, 0, 1])[:3].astype(int)
    np.testing.assert_array_equal(crop.array, brain.array[i : i + crop.shape[0], j : j + crop.shape[1], k : k + crop.shape[2]])
    assert crop.array.std() > 10  # brain tissue, not an empty corner
    mtime = crop_path.stat().st_mtime_ns
    assert cases["mni152_t1"] == demo_cases()[0]  # the whole template is the default demo
    assert demo_cases()[1].image_path == str(crop_path) and crop_path.stat().st_mtime_ns == mtime  # cached
    shutil.rmtree(tmp_path / "ws")
