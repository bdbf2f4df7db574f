"""Nothing lost, nothing mixed up: scans identified by content, label folders by scan id, the workspace CLI.

Scans sharing a name are two scans; the same image opened twice is one; every version loads back exactly
what was saved for its own scan, through the store and `python -m segloop workspace` alike, also with
forty writers at once.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segloop.io.readers import load_label, load_scan
from segloop.io.volume import content_id
from segloop.store.database import Datastore
from segloop.store.label_versions import list_versions, load_version, save_label_version
from segloop.store.predictions import ensure_scan

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, ws: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SEGLOOP_WORKSPACE": str(ws)}
    return subprocess.run([sys.executable, "-m", "segloop", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


@pytest.fixture()
def two_scans_one_name(tmp_path: Path, msd_dir: Path) -> tuple[Path, Path]:
    """Two different images both called `patient 01.nii.gz`, in two folders."""
    a, b = tmp_path / "site_a", tmp_path / "site_b"
    a.mkdir(), b.mkdir()
    shutil.copyfile(msd_dir / "imagesTr" / "hippocampus_001.nii.gz", a / "patient 01.nii.gz")
    shutil.copyfile(msd_dir / "imagesTr" / "hippocampus_003.nii.gz", b / "patient 01.nii.gz")
    return a / "patient 01.nii.gz", b / "patient 01.nii.gz"


def test_colliding_names_are_two_scans_with_their_own_versions(tmp_path, two_scans_one_name):
    store = Datastore(workspace=tmp_path / "ws")
    vol_a, vol_b = (load_scan(p) for p in two_scans_one_name)
    a = ensure_scan(store, "patient 01", vol_a, "upload")
    b = ensure_scan(store, "patient 01", vol_b, "upload")
    assert a.id != b.id and (a.name, b.name) == ("patient 01", "patient 01 (2)")  # people can tell them apart
    # a name that cleans to the same folder name as another ("patient_01") changes nothing either
    c = ensure_scan(store, "patient_01", load_scan(two_scans_one_name[0]).like(vol_a.array * 2, "patient_01"), "upload")
    assert len({a.id, b.id, c.id}) == 3
    rng = np.random.default_rng(0)
    saved = {}
    for scan, vol in ((a, vol_a), (b, vol_b), (a, vol_a)):
        labels = rng.integers(0, 3, vol.shape).astype(np.uint8)
        v = save_label_version(store, scan.id, labels, vol, "correction", author="ann")
        saved[v.id] = (vol, labels)
    assert [v.version for v in list_versions(store, a.id)] == [1, 2] and [v.version for v in list_versions(store, b.id)] == [1]
    for vid, (vol, labels) in saved.items():
        np.testing.assert_array_equal(load_version(store, vid, vol), labels)
    assert not list((tmp_path / "ws").rglob("orphaned"))  # nothing was moved aside


def test_same_image_opened_twice_is_one_scan(tmp_path, msd_dir):
    store = Datastore(workspace=tmp_path / "ws")
    src = msd_dir / "imagesTr" / "hippocampus_001.nii.gz"
    plain = tmp_path / "copy.nii"
    plain.write_bytes(gzip.decompress(src.read_bytes()))  # same image, other format and name
    from_folder = ensure_scan(store, "hippocampus_001", load_scan(src), "data folder")
    upload = load_scan(plain)
    upload.source_path = ""  # as an upload: no file of its own
    again = ensure_scan(store, "copy", upload, "upload")
    assert again.id == from_folder.id and content_id(load_scan(plain)) == content_id(load_scan(src))
    assert len(store.scans()) == 1


def test_workspace_cli_round_trip_and_bad_input(tmp_path, two_scans_one_name, msd_dir):
    ws = tmp_path / "ws"
    a_path, b_path = two_scans_one_name
    res = _cli("workspace", "add-scan", str(a_path), str(b_path), str(a_path), "--json", ws=ws)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["name"] for r in rows] == ["patient 01", "patient 01 (2)", "patient 01"]  # unique display names
    assert rows[0]["id"] != rows[1]["id"] and rows[2]["id"] == rows[0]["id"]  # same file twice: one scan

    ref_label = msd_dir / "labelsTr" / "hippocampus_001.nii.gz"
    res = _cli("workspace", "add-label", str(rows[0]["id"]), str(ref_label), "--author", "Dr Slicer", "--json", ws=ws)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["version"] == 1
    # the other scan's grid differs: refused with one line, nothing saved
    res = _cli("workspace", "add-label", str(rows[1]["id"]), str(ref_label), "--author", "x", ws=ws)
    assert res.returncode == 2 and res.stderr.startswith("error:") and "Traceback" not in res.stderr
    res = _cli("workspace", "versions", str(rows[1]["id"]), "--json", ws=ws)
    assert json.loads(res.stdout) == []
    res = _cli("workspace", "versions", str(rows[0]["id"]), "--json", ws=ws)
    (v,) = json.loads(res.stdout)
    assert (v["version"], v["kind"], v["author"]) == (1, "correction", "Dr Slicer")
    out = tmp_path / "out.nii.gz"
    assert _cli("workspace", "export", str(rows[0]["id"]), "--version", "1", "--out", str(out), ws=ws).returncode == 0
    np.testing.assert_array_equal(np.asarray(nib.load(str(out)).dataobj), np.asarray(nib.load(str(ref_label)).dataobj))
    for bad in (["versions", "999"], ["export", str(rows[0]["id"]), "--version", "7", "--out", str(out)]):
        res = _cli("workspace", *bad, ws=ws)
        assert res.returncode == 2 and res.stderr.count("\n") == 1 and res.stderr.startswith("error:")


@pytest.mark.slow
def test_forty_concurrent_writers_lose_nothing(tmp_path, msd_dir):
    """Forty `workspace add-label` processes on one scan at once: forty versions, each exactly its writer's file."""
    ws = tmp_path / "ws"
    image = msd_dir / "imagesTr" / "hippocampus_001.nii.gz"
    scan_id = json.loads(_cli("workspace", "add-scan", str(image), "--json", ws=ws).stdout)[0]["id"]
    ref = nib.load(str(image))
    files = []
    for k in range(40):
        labels = np.zeros(ref.shape, np.uint16)
        labels.flat[k * 97: k * 97 + 50] = 1000 + k  # above 255: the map must stay uint16
        path = tmp_path / f"writer{k:02d}.nii.gz"
        nib.save(nib.Nifti1Image(labels, ref.affine), str(path))
        files.append(path)
    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(lambda f: _cli("workspace", "add-label", str(scan_id), str(f), "--author", f.name.split(".")[0],
                                               "--json", ws=ws), files))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]
    versions = json.loads(_cli("workspace", "versions", str(scan_id), "--json", ws=ws).stdout)
    assert sorted(v["version"] for v in versions) == list(range(1, 41))
    store = Datastore(workspace=ws)
    reference = load_scan(image)
    for v in versions:
        expected = load_label(tmp_path / f"{v['author']}.nii.gz", reference=reference).array
        np.testing.assert_array_equal(load_version(store, v["id"], reference), expected)


def test_schema_1_workspace_keeps_its_versions_and_adopts_content_ids(tmp_path, msd_dir):
    """A workspace made by the previous SegLoop (scans keyed by name) upgrades without losing a version."""
    import sqlite3
    import time

    from segloop.store.database import MIGRATIONS

    ws = tmp_path / "ws"
    ws.mkdir()
    image = msd_dir / "imagesTr" / "hippocampus_001.nii.gz"
    label = msd_dir / "labelsTr" / "hippocampus_001.nii.gz"
    conn = sqlite3.connect(ws / "segloop.db", isolation_level=None)
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO scans (name, image_path, source, created_at) VALUES (?, ?, 'imported', ?)",
                 ("hippocampus_001", str(image.resolve()), time.time()))
    conn.execute("INSERT INTO label_versions (scan_id, version, kind, path, author, created_at) "
                 "VALUES (1, 1, 'correction', ?, 'old rater', ?)", (str(label), time.time()))
    conn.close()

    store = Datastore(workspace=ws)  # migrates to the current schema
    (scan,) = store.scans()
    assert scan.sha256 is None and [v.author for v in list_versions(store, scan.id)] == ["old rater"]
    same = ensure_scan(store, "hippocampus_001", load_scan(image), "data folder")
    assert same.id == scan.id and same.sha256 == content_id(load_scan(image))
    assert [v.author for v in list_versions(store, same.id)] == ["old rater"]
    other = ensure_scan(store, "hippocampus_001", load_scan(msd_dir / "imagesTr" / "hippocampus_003.nii.gz"), "upload")
    assert other.id != scan.id and list_versions(store, other.id) == []  # a namesake never inherits versions
